"""What the user actually said in the newest exchange, sentence by sentence.

The memory pipeline learns only from the user's own statements. This module sorts the user's
newest message into statements, questions, requests, greetings/small talk, hypotheticals and the
two memory commands ("remember that …", "forget that …"), and :func:`grounding_problem` checks a
candidate fact against the statements: every name and number must be the user's, most of its
content words too, and none may come from the assistant's reply. That is what keeps questions,
greetings and the assistant's own (possibly wrong) answers out of long-term memory whatever the
extraction model writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from core.memory.language import (
    capitalised_names,
    content_words,
    is_english,
    lower_words,
    numbers,
    sentences,
    supported,
    words,
)

SentenceKind = Literal["statement", "question", "request", "greeting", "hypothetical", "remember", "forget"]

_LEAD = re.compile(
    # interjections only when punctuation follows ("No, I moved…" but not "No kids yet"), and
    # discourse markers that never carry a fact ("By the way I…", "Actually I…")
    r"^(?:(?:(?:oh|ah|well|ok|okay|yes|yeah|yep|no|nope|hmm|haha|lol|hey|hi|hello|thanks|thank you|great|cool|"
    r"nice|wow|sorry|sure|right)\s*[,;:!.-]+\s*)|(?:(?:btw|by the way|actually|anyway|also|and|but|so|fun fact|"
    r"just so you know|fyi|for the record|guess what)\b[\s,;:!.-]*))+",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^(what|where|when|who|whom|whose|why|how|which|do|does|did|can|could|would|will|should|shall|is|are|am|"
    r"was|were|have|has|had|may|might|isn't|aren't|don't|doesn't|didn't|won't|wouldn't|any|anything|got any)\b",
    re.IGNORECASE,
)
_REQUEST_START = re.compile(
    r"^(please|pls|can you|could you|would you|will you|help|tell|give|show|write|explain|recommend|suggest|"
    r"find|list|make|create|let's|let us|translate|summari[sz]e|check|book|remind|draft|fix|describe|compare|"
    r"calculate|generate|search|look up|send|answer|say|name|imagine you)\b",
    re.IGNORECASE,
)
_HYPOTHETICAL = re.compile(r"^(if|what if|imagine|suppose|supposing|hypothetically|in theory|assuming)\b|\bi wish\b",
                           re.IGNORECASE)
_REMEMBER = re.compile(
    r"^(?:please\s+|can you\s+|could you\s+)?(?:remember|note|keep in mind|don't forget|do not forget|make a note|"
    r"save|store)\b(?:\s+(?:that|this|down))?[\s:,-]*(?P<rest>.*)$",
    re.IGNORECASE,
)
_FORGET = re.compile(
    r"^(?:please\s+|can you\s+|could you\s+|i want you to\s+)?(?:forget|delete|remove|erase|drop|stop remembering)\b"
    r"(?:\s+(?:that|about|the (?:fact|memory|note) that|the (?:fact|memory|note) about|what i said about))?"
    r"[\s:,-]*(?P<rest>.*)$",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(
    r",\s+(?:and\s+|but\s+|so\s+)?(?=(?:can|could|would|will|do|does|what|where|how|any|please|tell|recommend|"
    r"suggest|help)\b)",
    re.IGNORECASE,
)
_FIRST_PERSON_START = re.compile(r"(?:i|i'm|i've|i am|my|we|we're|our)\b", re.IGNORECASE)
_SMALL_TALK = re.compile(
    r"^(how are you|how's it going|how is it going|what's up|whats up|good (morning|afternoon|evening|night)|"
    r"nice to meet you|see you|talk (to you )?later|have a (nice|good) (day|one)|the weather is|it's (so )?"
    r"(hot|cold|sunny|rainy|raining|snowing)|it is (so )?(hot|cold|sunny|rainy))",
    re.IGNORECASE,
)
GREETING_WORDS = frozenset("""
hi hello hey hiya yo thanks thank you ty good morning afternoon evening night bye goodbye see ya cheers ok okay
cool nice great awesome lol haha hehe sure yes no yeah yep nope welcome fine well alright perfect maybe
understood got it sounds wonderful excellent amazing love that thx much appreciated please np there
so very really was is it this helpful useful lot lots bunch brilliant lovely
""".split())
_PASSING = re.compile(r"^(?:is|feels|was|felt|seems)\s+(?:\w+\s+){0,2}(?:today|right now|at the moment|tonight|"
                      r"this (?:morning|afternoon|evening))\W*$", re.IGNORECASE)
ASSISTANT_WORDS = frozenset({"optimus", "assistant", "chatbot", "bot"})
ADDITIVE = re.compile(r"\b(also|another|other|too|as well|second|additionally|in addition|besides|plus)\b",
                      re.IGNORECASE)
CORRECTION = re.compile(r"\b(actually|sorry|mistake|i meant|correction|wrong|not \w+|i misspoke|typo)\b",
                        re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str  # for the memory commands: what to remember or forget, without the command
    kind: SentenceKind


@dataclass(frozen=True, slots=True)
class Utterance:
    """The user's newest message, sorted into sentence kinds."""

    text: str
    sentences: tuple[Sentence, ...]
    english: bool
    asked: str = ""  # the assistant's question this message answers, when it ended with one
    _pool: tuple[str, ...] = field(default=(), repr=False)

    @property
    def statements(self) -> list[str]:
        """What the user stated (and asked to be remembered): the only source of new facts."""
        return [s.text for s in self.sentences if s.kind in ("statement", "remember") and s.text]

    @property
    def retractions(self) -> list[str]:
        """What the user asked to forget."""
        return [s.text for s in self.sentences if s.kind == "forget" and s.text]

    @property
    def informative(self) -> bool:
        return bool(self.statements or self.retractions)

    @property
    def additive(self) -> bool:
        """The user marks the news as an addition ("my other sister", "I also …")."""
        return any(ADDITIVE.search(s) for s in self.statements)

    @property
    def correction(self) -> bool:
        return any(CORRECTION.search(s) for s in self.statements)

    @property
    def stated_words(self) -> tuple[str, ...]:
        return self._pool


_VOCATIVE = re.compile(r"^(?:hi|hello|hey|dear|good (?:morning|afternoon|evening))\s+(?:optimus|there|assistant)\b[\s,;:!.-]*",
                       re.IGNORECASE)


def classify(sentence: str, *, english: bool = True) -> Sentence:
    """The kind of one sentence (the memory commands keep only their payload)."""
    text = sentence.strip().strip('"“”').strip()
    core = _LEAD.sub("", _VOCATIVE.sub("", text)).strip()
    if not core:
        return Sentence(text, "greeting")
    if m := _FORGET.match(core):
        return Sentence(m.group("rest").strip().rstrip(".!"), "forget")
    if m := _REMEMBER.match(core):
        rest = m.group("rest").strip().rstrip(".!")
        return Sentence(rest, "remember" if rest else "request")
    if core.endswith("?"):
        return Sentence(core, "question")
    if not english:
        return Sentence(core, "statement")
    if _SMALL_TALK.match(core):
        return Sentence(core, "greeting")
    low = lower_words(core)
    if low and all(w in GREETING_WORDS for w in low):
        return Sentence(core, "greeting")
    if _HYPOTHETICAL.search(core):
        return Sentence(core, "hypothetical")
    if _QUESTION_START.match(core):
        return Sentence(core, "question")
    if _REQUEST_START.match(core):
        return Sentence(core, "request")
    return Sentence(core, "statement")


def analyse(user_text: str, *, assistant_before: str = "") -> Utterance:
    """Sort the user's message into sentence kinds.

    ``assistant_before`` is the assistant message the user answers (the previous reply); if it
    ended with a question, that question is kept as ``asked`` so a short answer ("Yes, twice a
    week") can be understood. The assistant's statements are never kept.
    """
    english = is_english(user_text)
    parts: list[Sentence] = []
    for raw in sentences(user_text):
        for clause in _CLAUSE_BREAK.split(raw):
            if not clause.strip():
                continue
            # "Suggest a recipe, I hate mushrooms": a request, then a statement of the user's own.
            head, sep, tail = clause.partition(", ")
            first = classify(head, english=english) if sep and _FIRST_PERSON_START.match(tail) else None
            if first is not None and first.kind in ("request", "question"):
                parts.extend([first, classify(tail, english=english)])
            else:
                parts.append(classify(clause, english=english))
    asked = ""
    last = sentences(assistant_before)[-1:] if assistant_before else []
    if last and last[0].endswith("?"):
        asked = last[0][:300]
    pool = tuple(w for s in parts if s.kind in ("statement", "remember") for w in words(s.text))
    return Utterance(user_text, tuple(parts), english, asked, pool)


def grounding_problem(candidate: str, utterance: Utterance, assistant_text: str = "") -> str | None:
    """Why ``candidate`` is not supported by the user's own statements, or None when it is."""
    stated = utterance.statements
    if not stated:
        return "the user stated nothing in this message (question, request, greeting or small talk)"
    cand_words = lower_words(candidate)
    if len(cand_words) < 2 or cand_words[0] in ("not", "no") and len(cand_words) <= 3:
        return "a fragment, not a fact"
    if ASSISTANT_WORDS & set(cand_words):
        return "it is about the assistant, not the user"
    if _PASSING.match(candidate):
        return "a passing state, not a lasting fact"
    source = " ".join(stated)
    pool = list(utterance.stated_words) + words(utterance.asked)
    pool_lower = [w.lower() for w in pool]
    missing_numbers = numbers(candidate) - numbers(source + " " + utterance.asked)
    if missing_numbers:
        return f"the number {sorted(missing_numbers)[0]} is not in what the user said"
    for name in capitalised_names(candidate) + _leading_name(candidate):
        if not supported(name, pool_lower):
            return f"'{name}' is not in what the user said"
    if not utterance.english:
        return None  # content words of another language cannot be compared with an English fact
    content = content_words(candidate)
    if not content:
        return "the fact says nothing specific"
    unsupported = [w for w in content if not supported(w, pool_lower)]
    assistant = {w.lower() for w in words(assistant_text)} - set(pool_lower)
    from_assistant = [w for w in unsupported if supported(w, assistant)]
    if from_assistant:
        return f"'{from_assistant[0]}' comes from the assistant, not the user"
    # A paraphrase may add a word of its own ("Is pescatarian, no longer vegetarian"); a one-word
    # fact may not ("Is vegetarian" when the user spoke about their sister).
    allowed = 0 if len(content) <= 1 else max(1, len(content) // 3)
    if len(unsupported) > allowed:
        return f"most of it is not in what the user said ({', '.join(unsupported[:3])})"
    return None


def _leading_name(text: str) -> list[str]:
    """The first word when it looks like a proper name ("Ana is a nurse"), for the name check."""
    ws = words(text)
    if len(ws) >= 2 and ws[0][:1].isupper() and ws[1].lower() in {"is", "was", "has", "lives", "works", "and"}:
        first = ws[0].lower()
        from core.memory.language import GENERIC, RELATIONS, STOPWORDS

        if first not in STOPWORDS and first not in GENERIC and first not in RELATIONS:
            return [ws[0]]
    return []
