"""mem0-style ``filters`` objects → :class:`MemoryFilters`, with a 422 naming the bad key.

Accepted (mem0's v2/v3 filter language, the subset that maps onto our search):

- ``user_id``, ``agent_id``, ``run_id``: a value, or ``"*"``: "has a value, whatever it is" (so
  ``agent_id="*"`` means "any agent", never "with or without an agent"; ``"*"`` is never an id);
- ``created_at``: ``{"gte"|"gt"|"lte"|"lt": ISO date or datetime}``;
- ``metadata``: ``{key: value}`` pairs that must all match;
- ``categories`` (mem0's name) or ``tags``, ``people``, ``types`` (or ``type``): a value, a list,
  or ``{"in": [...]}`` — any value matches;
- ``importance``: a number or ``{"gte"|"lte": n}``;
- ``{"AND": [filter, ...]}`` combining the above.

``OR``, ``NOT``, ``app_id`` and unknown keys are refused rather than silently ignored.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from core.errors import ValidationError
from core.memory.limits import check_id, check_metadata, check_plain, clean_labels, nesting_depth
from core.memory.service import MemoryFilters

ENTITY_KEYS = ("user_id", "agent_id", "run_id")
MAX_FILTER_DEPTH = 8  # {"AND": [{"metadata": {"k": v}}]} is depth 4
# The ISO 8601 profile everybody parses alike: a date, or a date and time with an optional offset.
# (Python alone also reads week dates such as "2026W01T00"; nothing downstream does.)
_ISO_MOMENT = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?", re.ASCII)


def _fail(key: str, message: str) -> ValidationError:
    return ValidationError(message, field=f"filters.{key}")


def _entity(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(key, f"{key} must be a non-empty string (or \"*\" for any).")
    try:
        return check_id(value, field=key, wildcard=True)
    except ValidationError as exc:
        raise _fail(key, exc.message) from None


def _values(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, dict):
        if set(value) != {"in"}:
            raise _fail(key, f"{key} takes a value, a list, or {{\"in\": [...]}}.")
        value = value["in"]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, f"{key} must be text or a list of text values.")
    try:
        return tuple(clean_labels(value, field=key))
    except ValidationError as exc:
        raise _fail(key, exc.message) from None


def _moment(key: str, value: Any, *, end: bool) -> datetime:
    needs = f"{key} needs ISO dates such as 2026-11-01 or 2026-11-01T12:00:00Z."
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and _ISO_MOMENT.fullmatch(value):
        try:
            if len(value) == 10:  # a bare date covers the whole day
                moment = datetime.combine(date.fromisoformat(value), time.max if end else time.min)
            else:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(key, needs) from None
    else:
        raise _fail(key, needs)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)  # 0001-01-01T00:00+01:00 has no UTC time
    except OverflowError:
        raise _fail(key, f"{key} is outside the dates Optimus can store.") from None
    return moment


def _range(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not value or not set(value) <= {"gte", "gt", "lte", "lt"}:
        raise _fail(key, f"{key} takes {{\"gte\"|\"gt\"|\"lte\"|\"lt\": value}}.")
    return value


def _flatten(raw: dict[str, Any]) -> dict[str, Any]:
    """One flat ``{key: condition}`` dict from a filter that may use ``AND``."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("OR", "NOT", "or", "not"):
            raise _fail(key, f"{key} filters are not supported here; use AND or separate requests.")
        if key in ("AND", "and"):
            if not isinstance(value, list) or not all(isinstance(part, dict) for part in value):
                raise _fail(key, "AND takes a list of filter objects.")
            parts = [_flatten(part) for part in value]
        else:
            parts = [{key: value}]
        for part in parts:
            for k, v in part.items():
                if k in flat and flat[k] != v:
                    if k in ("created_at", "importance", "metadata") and isinstance(v, dict) \
                            and isinstance(flat[k], dict) and not set(v) & set(flat[k]):
                        flat[k] = {**flat[k], **v}  # e.g. AND of gte and lte on one field
                        continue
                    raise _fail(k, f"{k} is given twice with different values.")
                flat[k] = v
    return flat


def parse_filters(raw: dict[str, Any] | None, **overrides: Any) -> MemoryFilters:
    """Turn a request's ``filters`` (plus top-level overrides such as ``user_id``) into MemoryFilters."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValidationError("filters must be an object such as {\"user_id\": \"alice\"}.", field="filters")
    if nesting_depth(raw, stop_at=MAX_FILTER_DEPTH) > MAX_FILTER_DEPTH:
        raise ValidationError(f"filters are nested more than {MAX_FILTER_DEPTH} levels deep.", field="filters")
    flat = _flatten(raw)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in flat and flat[key] != value:
            raise _fail(key, f"{key} is given both at the top level and in filters, with different values.")
        flat[key] = value

    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in ENTITY_KEYS:
            out[key] = _entity(key, value)
        elif key == "app_id":
            raise _fail(key, "app_id is not supported; scope memories with user_id, agent_id or run_id.")
        elif key == "created_at":
            rng = _range(key, value)
            if "gte" in rng or "gt" in rng:
                out["created_after"] = _moment(key, rng.get("gte", rng.get("gt")), end=False)
            if "lte" in rng or "lt" in rng:
                out["created_before"] = _moment(key, rng.get("lte", rng.get("lt")), end=True)
        elif key in ("categories", "tags"):
            out["tags"] = out.get("tags", ()) + _values(key, value)
        elif key == "people":
            out["people"] = _values(key, value)
        elif key in ("types", "type"):
            out["types"] = _values(key, value)
        elif key == "importance":
            if isinstance(value, bool):
                raise _fail(key, "importance is a whole number from 1 to 5.")
            if isinstance(value, int):
                if not 1 <= value <= 5:
                    raise _fail(key, "importance is a whole number from 1 to 5.")
                out["min_importance"] = out["max_importance"] = value
                continue
            rng = _range(key, value)
            for op, bound in rng.items():
                if isinstance(bound, bool) or not isinstance(bound, int) or not 0 <= bound <= 6:
                    raise _fail(key, "importance is a whole number from 1 to 5.")
                if op in ("gte", "gt"):
                    out["min_importance"] = bound + (op == "gt")
                else:
                    out["max_importance"] = bound - (op == "lt")
        elif key == "metadata":
            if not isinstance(value, dict):
                raise _fail(key, "metadata takes an object of key: value pairs.")
            for mk, mv in value.items():
                if not isinstance(mv, str | int | float | bool):
                    raise _fail(f"metadata.{mk}", "metadata filters match plain values (text, number, true/false).")
            try:
                out["metadata"] = {mk: check_plain(mv, field=f"metadata.{mk}")
                                   for mk, mv in check_metadata(value).items()}
            except ValidationError as exc:
                raise _fail(exc.field or key, exc.message) from None
        else:
            raise _fail(key, f"Unknown filter {key!r}. Use user_id, agent_id, run_id, created_at, metadata, "
                             "categories/tags, people, types or importance.")
    return MemoryFilters(**out)
