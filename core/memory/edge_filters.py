"""mem0's filter dialect as Qdrant Edge filters, and the "not expired" condition."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import qdrant_edge as qe

from core.errors import ValidationError
from core.memory.fields import TEXT_FIELD
from core.memory.paging import EXPIRES, LIVE_ON


def build_filter(filters: dict[str, Any] | None) -> qe.Filter | None:
    """Translate mem0's filter dialect to an Edge ``Filter``; unknown operators raise ``ValidationError``.

    Dialect (mem0/memory/main.py ``search``/``get_all`` docs and mem0's qdrant store):
    ``{"f": v}`` equality (a list means "any of"), ``{"f": "*"}`` field present,
    ``{"f": {"eq"|"ne"|"in"|"nin"|"gt"|"gte"|"lt"|"lte"|"contains"|"icontains": v}}`` (several operators
    on one field are AND-ed), ranges on numbers or ISO-8601 dates, and ``AND``/``OR``/``NOT`` (or mem0's
    ``$and``/``$or``/``$not``) over lists of filters.
    """
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise ValidationError(f"filters must be a dict, got {type(filters).__name__}", field="filters")
    logical = {"AND": "AND", "$and": "AND", "OR": "OR", "$or": "OR", "NOT": "NOT", "$not": "NOT"}
    must: list[Any] = []
    should: list[Any] = []
    must_not: list[Any] = []
    seen_logical: set[str] = set()
    for key, value in filters.items():
        op = logical.get(key)
        if key == LIVE_ON:  # not expired on that day: in the engine, so expired memories take no slot
            must.append(live_condition(live_day(value)))
            continue
        if op is None:
            must.extend(_field_conditions(key, value))
            continue
        # mem0 rewrites OR -> $or but keeps the original key too; evaluate each group once.
        if op in seen_logical:
            continue
        seen_logical.add(op)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ValidationError(f"{key} takes a list of filter dicts", field=key)
        subs = [sub for sub in (build_filter(item) for item in value) if sub is not None]
        if op == "AND":
            must.extend(subs)
        elif op == "OR":
            if not subs and value:
                continue  # every alternative is "match all"
            if not subs:
                raise ValidationError("OR needs at least one condition", field=key)
            must.append(qe.Filter(should=subs))
        else:
            must_not.extend(subs)
    if not (must or should or must_not):
        return None
    return qe.Filter(must=must or None, should=should or None, must_not=must_not or None)


_RANGE_OPS = ("gt", "gte", "lt", "lte")
_OPERATORS = {"eq", "ne", "in", "nin", "contains", "icontains", *_RANGE_OPS}


def _field_conditions(key: str, value: Any) -> list[Any]:
    if not isinstance(key, str) or not key:
        raise ValidationError(f"filter field names must be non-empty strings, got {key!r}", field="filters")
    if not isinstance(value, dict):
        return [_equals(key, value)]
    unknown = set(value) - _OPERATORS
    if unknown:
        raise ValidationError(
            f"unsupported filter operator(s) {sorted(unknown)} on {key!r}; supported: {sorted(_OPERATORS)}",
            field=key,
        )
    if not value:
        raise ValidationError(f"empty operator dict for {key!r}", field=key)
    conditions: list[Any] = []
    ranges = {op: value[op] for op in _RANGE_OPS if op in value}
    if ranges:
        conditions.append(qe.FieldCondition(key=key, range=_range(key, ranges)))
    for op, operand in value.items():
        if op in _RANGE_OPS:
            continue
        if op == "eq":
            conditions.append(_equals(key, operand))
        elif op == "ne":
            # "not equal" also keeps points without the field, as SQL's IS DISTINCT FROM would.
            conditions.append(qe.Filter(must_not=[_equals(key, operand)]))
        elif op in ("in", "nin"):
            if not isinstance(operand, (list, tuple, set)) or not operand:
                raise ValidationError(f"{op!r} on {key!r} takes a non-empty list", field=key)
            match = qe.FieldCondition(key=key, match=qe.MatchAny(_match_list(key, operand)))
            conditions.append(match if op == "in" else qe.Filter(must_not=[match]))
        elif op == "contains":
            if not isinstance(operand, str) or not operand:
                raise ValidationError(f"'contains' on {key!r} takes a non-empty string", field=key)
            conditions.append(qe.FieldCondition(key=key, match=qe.MatchSubstring(operand)))
        elif op == "icontains":
            if not isinstance(operand, str) or not operand:
                raise ValidationError(f"'icontains' on {key!r} takes a non-empty string", field=key)
            if key != TEXT_FIELD:
                # Qdrant matches case-insensitively only through a lowercase full-text index, which
                # exists for the memory text alone; a case-sensitive match here would be a silent lie.
                raise ValidationError(
                    f"'icontains' is supported on {TEXT_FIELD!r} only (word match, case-insensitive); "
                    f"use 'contains' (case-sensitive substring) on {key!r}",
                    field=key,
                )
            conditions.append(qe.FieldCondition(key=key, match=qe.MatchText(operand)))
    return conditions


def _equals(key: str, value: Any) -> Any:
    if value == "*":
        return qe.Filter(must_not=[qe.IsEmptyCondition(key)])
    if value is None:
        return qe.IsNullCondition(key)
    if isinstance(value, (list, tuple, set)):
        if not value:
            raise ValidationError(f"list filter on {key!r} is empty", field=key)
        return qe.FieldCondition(key=key, match=qe.MatchAny(_match_list(key, value)))
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return qe.FieldCondition(key=key, match=qe.MatchValue(value))
    if isinstance(value, uuid.UUID):
        return qe.FieldCondition(key=key, match=qe.MatchValue(str(value)))
    if isinstance(value, float):
        if value.is_integer():
            return qe.FieldCondition(key=key, match=qe.MatchValue(int(value)))
        return qe.FieldCondition(key=key, range=qe.RangeFloat(gte=value, lte=value))
    raise ValidationError(f"cannot filter {key!r} on a {type(value).__name__}", field=key)


def _match_list(key: str, values: Iterable[Any]) -> list[Any]:
    items = [str(v) if isinstance(v, uuid.UUID) else v for v in values]
    if all(isinstance(v, str) for v in items):
        return items
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return items
    raise ValidationError(f"list filter on {key!r} must hold only strings or only integers", field=key)


def _range(key: str, bounds: dict[str, Any]) -> Any:
    values = list(bounds.values())
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if any(isinstance(v, float) and math.isnan(v) for v in values):
            raise ValidationError(f"NaN in range filter on {key!r}", field=key)
        return qe.RangeFloat(**{op: float(v) for op, v in bounds.items()})
    iso = {}
    for op, v in bounds.items():
        if isinstance(v, (datetime, date)):
            iso[op] = v.isoformat()
        elif isinstance(v, str):
            try:
                datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationError(
                    f"range filter on {key!r}: {v!r} is neither a number nor an ISO-8601 date", field=key
                ) from None
            iso[op] = v
        else:
            raise ValidationError(f"range filter on {key!r}: cannot compare with {type(v).__name__}", field=key)
    return qe.RangeDateTime(**iso)



def live_day(value: Any) -> date:
    try:
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(f"{LIVE_ON} takes an ISO date, got {value!r}", field="filters") from None


def live_condition(live_on: date) -> Any:
    return qe.Filter(should=[qe.IsEmptyCondition(EXPIRES),
                             qe.FieldCondition(key=EXPIRES, range=qe.RangeDateTime(gte=live_on.isoformat()))])


def with_live(flt: Any, live_on: date | None) -> Any:
    """``flt`` narrowed to points not expired on ``live_on`` (no expiry, or one on or after that day)."""
    if live_on is None:
        return flt
    live = live_condition(live_on)
    return live if flt is None else qe.Filter(must=[flt, live])
