"""What a memory, its scope and its filters may hold, checked where requests enter the memory engine.

Every entry point (pages, agent tools, the REST API, imports, the learning pipeline) reaches the
stores through :class:`~core.memory.service.MemoryService`, which checks its input here before
anything is embedded or written. The bounds keep every stored payload

* decodable by every backend: Qdrant Edge stores JSON nested ~128 deep but cannot decode it, and
  its index rebuild decodes every payload of the shard, so one such memory broke every account's
  writes; qdrant-client decodes recursively in Python and failed at depth 500;
* storable by both SQL engines: PostgreSQL text cannot hold NUL;
* encodable as UTF-8: a lone UTF-16 surrogate (``"\\ud800"`` in JSON) is valid in a Python string
  and in nothing else;
* visible: text or ids made only of zero-width or blank characters cannot be read back or told apart.

All checks are iterative, so hostile depth cannot exhaust the interpreter's stack here.
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from collections.abc import Iterable
from typing import Any

from core.errors import ValidationError

MAX_ID_CHARS = 200  # user_id / agent_id / run_id (the history columns hold 200)
MAX_LABEL_CHARS = 100  # one tag, person or entity
MAX_LABELS = 30  # tags (or people, or entities) on one memory or in one filter
MAX_METADATA_DEPTH = 8  # {"a": {"b": [...]}} is depth 3; mem0's own metadata is flat
MAX_METADATA_ITEMS = 200  # keys and list items, counted over the whole structure
MAX_METADATA_KEY_CHARS = 100
MAX_METADATA_BYTES = 16_384  # compact JSON, UTF-8
MIN_INT, MAX_INT = -(2**63), 2**63 - 1  # what the engines store as integers
ANY = "*"  # in a filter on user_id / agent_id / run_id: "has a value, whatever it is"; never an id

# Letters and symbols that render as nothing: fillers and the blank Braille cell.
_BLANK_GRAPHEMES = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (a NUL, an unpaired surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (an unpaired surrogate at position {exc.start})"
    return None


def has_visible(text: str) -> bool:
    """True if some character of ``text`` shows: a letter, digit, punctuation mark or symbol that is
    not a filler (zero-width characters, spaces, combining marks and blank fillers do not count)."""
    return any(unicodedata.category(c)[0] in "LNPS" and c not in _BLANK_GRAPHEMES for c in text)


def check_text(text: Any, *, field: str, limit: int, what: str = "The text") -> str:
    """``text`` with whitespace runs collapsed, or :class:`ValidationError` saying what is wrong."""
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be text.", field=field)
    problem = text_problem(text)
    if problem:
        raise ValidationError(f"{what} {problem}, which cannot be stored.", field=field)
    cleaned = " ".join(text.split())
    if not has_visible(cleaned):
        raise ValidationError(f"{what} is empty (it has no visible character).", field=field)
    if len(cleaned) > limit:
        raise ValidationError(f"{what} is {len(cleaned):,} characters long; the limit is {limit:,}.", field=field)
    return cleaned


def check_id(value: Any, *, field: str, wildcard: bool = False) -> str:
    """An end-user, agent or run id. ``"*"`` is accepted only where it means "any" (filters)."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text.", field=field)
    if value == ANY:
        if wildcard:
            return value
        raise ValidationError(f"{field} cannot be \"*\": it means \"any {field}\" in filters, so it is never an id.",
                              field=field)
    problem = text_problem(value)
    if problem:
        raise ValidationError(f"{field} {problem}.", field=field)
    if not has_visible(value):
        raise ValidationError(f"{field} is empty (it has no visible character).", field=field)
    if len(value) > MAX_ID_CHARS:
        raise ValidationError(f"{field} is at most {MAX_ID_CHARS} characters.", field=field)
    return value


def clean_labels(values: Iterable[Any] | None, *, field: str) -> list[str]:
    """Tags, people or entities: whitespace collapsed, case-insensitive duplicates dropped, each one
    visible and at most 100 characters, at most 30 of them."""
    if values is None:
        return []
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(f"{field} must be a list of text values.", field=field)
    given = list(itertools.islice(values, 10 * MAX_LABELS + 1))  # never walk an endless list
    if len(given) > 10 * MAX_LABELS:
        raise ValidationError(f"At most {MAX_LABELS} {field}.", field=field)
    out: list[str] = []
    seen: set[str] = set()
    for index, value in enumerate(given):
        if not isinstance(value, str):
            raise ValidationError(f"{field} must be a list of text values.", field=field)
        label = check_text(value, field=field, limit=MAX_LABEL_CHARS, what=f"{field} #{index + 1}")
        if label.lower() not in seen:
            seen.add(label.lower())
            out.append(label)
    if len(out) > MAX_LABELS:
        raise ValidationError(f"At most {MAX_LABELS} {field}.", field=field)
    return out


def check_number(value: Any, *, field: str) -> int | float:
    """A number the engines can store and compare: a finite float or a 64-bit integer."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise ValidationError(f"{field}: integers are limited to 64 bits.", field=field)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{field}: NaN and infinite numbers cannot be stored or compared.", field=field)
        return value
    raise ValidationError(f"{field} must be a number.", field=field)


def check_plain(value: Any, *, field: str) -> str | int | float | bool:
    """A filter operand: text, a number or true/false."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise ValidationError(f"{field} {problem}.", field=field)
        if len(value) > MAX_METADATA_BYTES:
            raise ValidationError(f"{field} is too long to filter on.", field=field)
        return value
    if isinstance(value, bool | int | float):
        return check_number(value, field=field)
    raise ValidationError(f"{field} must be text, a number or true/false.", field=field)


def check_metadata(value: Any, *, field: str = "metadata") -> dict[str, Any]:
    """Free-form metadata: a JSON object of at most 8 levels, 200 keys and list items, 16 KiB.

    Keys are visible text of at most 100 characters; values are text, finite numbers, 64-bit
    integers, true/false, null, lists and objects. Returns a plain copy (tuples become lists).
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be an object of key: value pairs.", field=field)
    items = 0
    size = 0
    root: dict[str, Any] = {}
    # (source container, copy, depth, path) — a work list instead of recursion.
    work: list[tuple[Any, Any, int, str]] = [(value, root, 1, field)]
    while work:
        source, target, depth, path = work.pop()
        if depth > MAX_METADATA_DEPTH:
            raise ValidationError(f"{field} is nested more than {MAX_METADATA_DEPTH} levels deep.", field=path)
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in pairs:
            items += 1
            if items > MAX_METADATA_ITEMS:
                raise ValidationError(f"{field} has more than {MAX_METADATA_ITEMS} keys and list items.", field=field)
            if isinstance(source, dict):
                if not isinstance(key, str):
                    raise ValidationError(f"{field} keys must be text.", field=path)
                problem = text_problem(key)
                if problem or not has_visible(key) or len(key) > MAX_METADATA_KEY_CHARS:
                    raise ValidationError(
                        f"{field} keys are visible text of at most {MAX_METADATA_KEY_CHARS} characters"
                        + (f"; one {problem}." if problem else "."), field=path)
                size += len(key.encode()) + 4
                where = f"{path}.{key}"
            else:
                where = f"{path}.{key}"
            if isinstance(item, dict | list | tuple):
                copy: Any = {} if isinstance(item, dict) else []
                work.append((item, copy, depth + 1, where))
                size += 2
            elif item is None or isinstance(item, bool):
                copy = item
                size += 5
            elif isinstance(item, int | float):
                copy = check_number(item, field=where)
                size += 24
            elif isinstance(item, str):
                problem = text_problem(item)
                if problem:
                    raise ValidationError(f"{where} {problem}.", field=where)
                copy = item
                size += len(item.encode()) + 2
            else:
                raise ValidationError(f"{where} must be text, a number, true/false, null, a list or an object.",
                                      field=where)
            if size > MAX_METADATA_BYTES:
                raise ValidationError(f"{field} is larger than {MAX_METADATA_BYTES:,} bytes.", field=field)
            if isinstance(target, dict):
                target[key] = copy
            else:
                target.append(copy)
    return root


def nesting_depth(value: Any, *, stop_at: int) -> int:
    """How deeply lists and objects nest in ``value`` (0 for a plain value), counting no further
    than ``stop_at`` + 1."""
    deepest = 0
    work: list[tuple[Any, int]] = [(value, 0)]
    while work:
        item, depth = work.pop()
        if isinstance(item, dict | list | tuple):
            depth += 1
            deepest = max(deepest, depth)
            if depth > stop_at:
                return depth
            work.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
