"""From a model's candidate text to a tidy memory: one fact, third person, fields derived by code.

The extraction model writes only what a model must: short fact sentences. Everything else is
derived here from the fact itself and the user's own words, so it is the same whatever the model:

- :func:`normalise_fact` turns "I live in Lisbon", "The user lives in Lisbon" or "User's sister
  Ana is a nurse" into "Lives in Lisbon" / "Sister Ana is a nurse", and splits compound facts
  ("Is vegetarian and lives in Lisbon") so that a later change to one never rewrites the other.
- :func:`derive_fields` gives type, importance, confidence, people, entities, tags and an expiry
  date for time-bound plans ("flying to Tokyo next Friday"), whose relative date is written out.
  People are names the user introduced as people ("my sister Ana", "Ana is …"); "user",
  "assistant", the assistant's name, pronouns and places never are. Tags come from a closed
  vocabulary, so they are always lower-case and comparable.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from core.memory.language import (
    MONTHS,
    NOT_PEOPLE,
    PERSON_VERBS,
    PETS,
    PLACE_PREPOSITIONS,
    RELATIONS,
    WEEKDAYS,
    capitalised_names,
    lower_words,
    relation_of,
    sentences,
    tags_for,
    topics,
    words,
)
from core.memory.types import MemoryType

MAX_FACT_CHARS = 200

_SUBJECT = re.compile(
    r"^(?:the user|user|the person|this person|he|she|they|the human)(?:'s|’s)?\s+", re.IGNORECASE)
_FIRST_PERSON = {
    "i'm": "is", "i am": "is", "im": "is", "i've": "has", "i have": "has", "i was": "was", "i'll": "will",
    "i will": "will", "i'd": "would", "i would": "would", "i can't": "cannot", "i cannot": "cannot",
    "i can": "can", "i don't": "does not", "i do not": "does not", "i didn't": "did not", "i did": "did",
    "i do": "does", "i won't": "will not", "i'm not": "is not", "i am not": "is not", "i had": "had",
    "i used to": "used to", "i must": "must", "i should": "should", "i could": "could", "i may": "may",
    "i might": "might",
}
_FIRST_PERSON_RE = re.compile(
    r"^(" + "|".join(sorted((re.escape(k) for k in _FIRST_PERSON), key=len, reverse=True)) + r")\b", re.IGNORECASE)
_I_VERB = re.compile(r"^i\s+([a-z]+)\b", re.IGNORECASE)
_MY = re.compile(r"^(?:my|our)\s+", re.IGNORECASE)
_COMPOUND = re.compile(
    r"\s*(?:;|,?\s+(?:and|but)\s+(?=(?:i|i'm|i've|i am|is|are|was|has|have|had|lives|works|likes|loves|prefers|plays|owns|speaks|enjoys|"
    r"studies|drives|hates|dislikes|eats|drinks|wants|needs|uses|goes|runs|writes|reads|teaches|cooks|"
    r"volunteers|collects|practices|practises|does|doesn't|does not|can|cannot|will|used to)\b))",
    re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_PREFERENCE = re.compile(r"\b(like[sd]?|love[sd]?|prefer[sd]?|favou?rite|enjoy[sd]?|hate[sd]?|dislike[sd]?|"
                         r"fan of|can't stand|cannot stand|into)\b", re.IGNORECASE)
_ESSENTIAL = re.compile(r"\b(allerg\w*|anaphyla\w*|diabet\w*|epilep\w*|asthma\w*|emergency|medication|"
                        r"pregnan\w*|blood type|heart condition|seizure\w*)\b", re.IGNORECASE)
_IMPORTANT = re.compile(r"\b(died|passed away|passed|funeral|married|divorced|engaged|born|diagnos\w*|"
                        r"surgery|pregnant)\b", re.IGNORECASE)
_HEDGE = re.compile(r"\b(maybe|might|probably|i think|not sure|perhaps|possibly|i guess|kind of|sort of)\b",
                    re.IGNORECASE)
_FUTURE = re.compile(r"\b(will|going to|gonna|plan\w*|trip|flying|flight|travel\w*|visiting|leaving|"
                     r"appointment|meeting|conference|interview|deadline|exam|wedding|upcoming|next|tomorrow|"
                     r"tonight|this weekend|due|starts?|starting|moving)\b", re.IGNORECASE)
_SELF_NAME = re.compile(r"\b(?:i'm|i am|my name is|call me|name's|this is)\s+([A-Z][\w'-]+)", re.IGNORECASE)


def normalise_fact(text: str) -> list[str]:
    """One candidate as tidy third-person facts (compounds split); empty when nothing is left."""
    text = _SPACE.sub(" ", str(text)).strip().strip("-•*\"'“”` ").strip()
    text = re.sub(r"^(?:fact|memory|note)\s*:\s*", "", text, flags=re.IGNORECASE)
    out: list[str] = []
    for part in _COMPOUND.split(text):
        fact = _third_person(part.strip(" ,.;:"))
        if fact and len(fact) >= 3:
            out.append(fact[:MAX_FACT_CHARS].rstrip(" ,;:"))
    return out


_NOW = re.compile(r"^(?:now|currently|nowadays|these days)\s+|\s+(?:now|currently|nowadays|these days)$",
                  re.IGNORECASE)


def _third_person(text: str) -> str:
    text = _NOW.sub("", _SUBJECT.sub("", text)).strip()
    if m := _FIRST_PERSON_RE.match(text):
        text = _FIRST_PERSON[m.group(1).lower()] + text[m.end():]
    elif m := _I_VERB.match(text):
        text = _conjugate(m.group(1)) + text[m.end():]
    text = _MY.sub("", text)
    text = re.sub(r"\b(my|our)\b", "their", text, flags=re.IGNORECASE)
    return text[:1].upper() + text[1:] if text else text


_PAST = frozenset("""
was were had did went got took made ate bought saw met left lost sold found became began broke came drove fell felt
flew gave grew heard kept knew led ran said sent sat spoke spent stood taught thought told won wrote moved used
""".split())


def _conjugate(verb: str) -> str:
    v = verb.lower()
    if v in _PAST or v.endswith("ed"):
        return v  # "I stopped drinking tea" -> "Stopped drinking tea"
    if v in ("have",):
        return "has"
    if v in ("am", "be"):
        return "is"
    if v.endswith(("s", "sh", "ch", "x", "z", "o")):
        return v + "es"
    if v.endswith("y") and len(v) > 2 and v[-2] not in "aeiou":
        return v[:-1] + "ies"
    return v + "s"


@dataclass(frozen=True, slots=True)
class DerivedFields:
    text: str  # the fact, with a relative date written out when one was found
    type: MemoryType = "fact"
    importance: int = 3
    confidence: float = 0.9
    people: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    expires_at: date | None = None
    topics: frozenset[str] = field(default_factory=frozenset)


def people_in(user_text: str) -> dict[str, str]:
    """Names the user introduced as people, lower-case -> as written ("my sister Ana" -> Ana)."""
    found: dict[str, str] = {}
    self_names = {m.group(1).lower() for m in _SELF_NAME.finditer(user_text)}
    for sentence in sentences(user_text):
        ws = words(sentence)
        for i, w in enumerate(ws):
            if not w[:1].isupper() or w.lower() in NOT_PEOPLE or w.lower() in self_names:
                continue
            if relation_of(w) is not None:
                continue
            before = ws[i - 1].lower() if i > 0 else ""
            after = ws[i + 1].lower() if i + 1 < len(ws) else ""
            then = ws[i + 2].lower() if i + 2 < len(ws) else ""
            if before in PLACE_PREPOSITIONS:
                continue  # "in Porto", "at Spotify": a place or an organisation
            if before in PETS or before in ("named", "called") and i > 1 and ws[i - 2].lower() in PETS:
                continue  # "my dog Rex": a pet, kept as an entity
            with_me = after == "and" and then in ("i", "me", "my")
            if i == 0 and not with_me:
                continue  # capitalised only because it starts the sentence: "Pizza is my favourite"
            related_before = any(relation_of(x) for x in ws[max(0, i - 3):i])
            cued = (relation_of(before) is not None or before in {"named", "called", "with", "friend"}
                    or before == "is" and related_before  # "my girlfriend is Maria"
                    or with_me or after in PERSON_VERBS)
            if cued:
                found[w.lower()] = w
    return found


def entities_in(fact: str, user_text: str, people: set[str]) -> list[str]:
    """Places, organisations and other proper names of the fact that the user wrote."""
    user_words = {w.lower() for w in words(user_text)}
    seen: list[str] = []
    for name in capitalised_names(fact):
        low = name.lower()
        if low in people or low in NOT_PEOPLE or relation_of(name) or low not in user_words:
            continue
        if low not in {s.lower() for s in seen}:
            seen.append(name)
    return seen


def derive_fields(fact: str, user_text: str, *, today: date, source_sentence: str | None = None) -> DerivedFields:
    """Type, importance, confidence, people, entities, tags and expiry of one fact."""
    source = source_sentence or user_text
    text, expires = resolve_plan_date(fact, source, today=today)
    known_people = people_in(user_text)
    fact_words = {w.lower() for w in words(text)}
    people = tuple(known_people[w] for w in known_people if w in fact_words)
    entities = tuple(entities_in(text, user_text, set(known_people)))
    low = lower_words(text)
    has_relation = any(relation_of(w) for w in low)
    if has_relation or people:
        kind: MemoryType = "relationship"
    elif _PREFERENCE.search(text):
        kind = "preference"
    else:
        kind = "fact"
    found_topics = frozenset(topics(text))
    if _ESSENTIAL.search(text):
        importance = 5
    elif _IMPORTANT.search(text) or has_relation or {"diet", "partner", "children"} & found_topics:
        importance = 4
    else:
        importance = 3
    confidence = 0.6 if _HEDGE.search(source) else 0.9
    return DerivedFields(text=text, type=kind, importance=importance, confidence=confidence, people=people,
                         entities=entities, tags=tuple(tags_for(text)), expires_at=expires, topics=found_topics)


# ---------------------------------------------------------------------------------- plan dates
_MONTH_RE = "|".join(MONTHS + tuple(m[:3] for m in MONTHS))
_DATE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), "iso"),
    (re.compile(r"\btomorrow\b", re.I), "tomorrow"),
    (re.compile(r"\b(tonight|today)\b", re.I), "today"),
    (re.compile(r"\bthis weekend\b", re.I), "weekend"),
    (re.compile(r"\bnext weekend\b", re.I), "next_weekend"),
    (re.compile(r"\bnext week\b", re.I), "next_week"),
    (re.compile(r"\bnext month\b", re.I), "next_month"),
    (re.compile(r"\bnext year\b", re.I), "next_year"),
    (re.compile(r"\bin (\d+|a|one|two|three|four|five|six) (day|week|month)s?\b", re.I), "in_n"),
    (re.compile(r"\b(?:(next|this|on|coming)\s+)(" + "|".join(WEEKDAYS) + r")\b", re.I), "weekday"),
    (re.compile(r"\b(?:on\s+)?(" + _MONTH_RE + r")\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b", re.I), "month_day"),
    (re.compile(r"\b(?:on\s+)?(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(" + _MONTH_RE + r")\b", re.I),
     "day_month"),
    (re.compile(r"\b(?:in|this|next|by)\s+(" + _MONTH_RE + r")\b", re.I), "month"),
]
_SMALL = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _month_number(name: str) -> int:
    name = name.lower()[:3]
    return next(i for i, m in enumerate(MONTHS, start=1) if m.startswith(name))


def _next_month_date(month: int, day: int, today: date) -> date:
    year = today.year
    day = min(day, calendar.monthrange(year, month)[1])
    when = date(year, month, day)
    if when < today:
        day = min(day, calendar.monthrange(year + 1, month)[1])
        when = date(year + 1, month, day)
    return when


def _human(d: date) -> str:
    return f"{calendar.day_name[d.weekday()]} {d.day} {calendar.month_name[d.month]} {d.year}"


def resolve_plan_date(fact: str, source: str, *, today: date) -> tuple[str, date | None]:
    """For a future plan: (fact with its relative date written out, the day after which it is over).

    Only facts about the future get an expiry ("Is flying to Tokyo next Friday"); a date in a
    lasting fact ("Was born on 3 May") does not. The date is looked for in the fact first, then
    in the user's sentence it came from.
    """
    if not (_FUTURE.search(fact) or _FUTURE.search(source)):
        return fact, None
    for where in (fact, source):
        for pattern, kind in _DATE_PATTERNS:
            m = pattern.search(where)
            if not m:
                continue
            start, end, phrase = _resolve(kind, m, today)
            if end is None or end < today:
                continue
            text = fact
            if where is fact and phrase:
                text = fact[:m.start()] + phrase + fact[m.end():]
            return text, end + timedelta(days=1)
    return fact, None


def _resolve(kind: str, m: re.Match[str], today: date) -> tuple[date | None, date | None, str | None]:
    """(start, last day, words to write instead of the matched phrase)."""
    if kind == "iso":
        try:
            d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None, None, None
        return d, d, None
    if kind == "tomorrow":
        d = today + timedelta(days=1)
        return d, d, f"on {_human(d)}"
    if kind == "today":
        return today, today, f"on {_human(today)}"
    if kind in ("weekend", "next_weekend"):
        saturday = today + timedelta(days=(5 - today.weekday()) % 7)
        if kind == "next_weekend" or (saturday == today and kind == "next_weekend"):
            saturday += timedelta(days=7)
        sunday = saturday + timedelta(days=1)
        return saturday, sunday, f"on the weekend of {_human(saturday)}"
    if kind == "next_week":
        monday = today + timedelta(days=7 - today.weekday())
        return monday, monday + timedelta(days=6), f"in the week of {_human(monday)}"
    if kind == "next_month":
        year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
        last = date(year, month, calendar.monthrange(year, month)[1])
        return date(year, month, 1), last, f"in {calendar.month_name[month]} {year}"
    if kind == "next_year":
        return date(today.year + 1, 1, 1), date(today.year + 1, 12, 31), f"in {today.year + 1}"
    if kind == "in_n":
        n = int(m.group(1)) if m.group(1).isdigit() else _SMALL[m.group(1).lower()]
        days = {"day": 1, "week": 7, "month": 30}[m.group(2).lower()] * n
        d = today + timedelta(days=days)
        return d, d, f"around {_human(d)}"
    if kind == "weekday":
        target = WEEKDAYS.index(m.group(2).lower())
        ahead = (target - today.weekday()) % 7 or 7
        d = today + timedelta(days=ahead)
        return d, d, f"on {_human(d)}"
    if kind == "month_day":
        d = _next_month_date(_month_number(m.group(1)), int(m.group(2)), today)
        return d, d, f"on {_human(d)}"
    if kind == "day_month":
        d = _next_month_date(_month_number(m.group(2)), int(m.group(1)), today)
        return d, d, f"on {_human(d)}"
    if kind == "month":
        month = _month_number(m.group(1))
        year = today.year if month >= today.month else today.year + 1
        last = date(year, month, calendar.monthrange(year, month)[1])
        return date(year, month, 1), last, f"in {calendar.month_name[month]} {year}"
    return None, None, None


def as_note(text: str) -> str:
    """A memory as a sentence about the user, for a model's prompt ("Is vegetarian" -> "The user is
    vegetarian"; "Sister Ana is a nurse" -> "The user's sister Ana is a nurse")."""
    ws = words(text)
    if not ws:
        return text
    first = ws[0].lower()
    if first in RELATIONS or first in ("pet", "dog", "cat"):
        return "The user's " + text[:1].lower() + text[1:]
    verb_like = first.endswith("s") and len(ws) > 1 and ws[1].lower() not in ("is", "was", "has", "and")
    if first in _VERB_STARTS or verb_like:
        return "The user " + text[:1].lower() + text[1:]
    return text


_VERB_STARTS = frozenset("""
is was has had lives works likes loves prefers enjoys plays owns speaks studies drives hates dislikes eats
drinks wants needs uses goes runs writes reads teaches cooks volunteers collects practices does did can
cannot will would used moved started stopped quit got became wants keeps knows believes feels
""".split())
