"""From the extractor's raw answer to checked candidates (the code half of phase 1).

Each raw fact is completed (a one-word answer becomes the user's own clause), normalised to third
person and split (:mod:`core.memory.facts`), given back its subject when the model dropped it
(:func:`core.memory.matching.said_about`), merged with its repeats, checked for grounding in the
user's own statements (:mod:`core.memory.utterance`) and given its derived fields. At most
``MAX_CANDIDATES`` survive; the refused ones come back as NONE events saying why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from core.memory.facts import derive_fields, normalise_fact, people_in
from core.memory.language import content_words, lower_words, same_stem
from core.memory.matching import said_about
from core.memory.types import MAX_CANDIDATES, CandidateMemory, MemoryEvent
from core.memory.utterance import Utterance, grounding_problem


def prepare_candidates(raw: Sequence[str], utterance: Utterance, assistant: str, *,
                       today: date) -> tuple[list[CandidateMemory], list[MemoryEvent]]:
    """(candidates to learn, refused facts as events with the reason)."""
    user_text = " ".join(utterance.statements)
    people = frozenset(people_in(user_text))
    facts: list[str] = []
    for text in raw:
        for fact in normalise_fact(_complete(text, utterance)):
            # Written about the user but said about someone else: keep who it is about.
            facts.append(said_about(fact, utterance.statements, people) or fact)
    unique: list[str] = []
    for fact in facts:
        same = next((i for i, kept in enumerate(unique) if _repeats(fact, kept)), None)
        if same is None:
            unique.append(fact)
        elif len(fact) > len(unique[same]):
            unique[same] = fact  # keep the fuller wording of a repeated fact
    kept: list[CandidateMemory] = []
    refused: list[MemoryEvent] = []
    for fact in unique[:MAX_CANDIDATES]:
        problem = grounding_problem(fact, utterance, assistant)
        if problem is not None:
            refused.append(MemoryEvent("NONE", None, fact, applied=False, rejected=f"not stored: {problem}"))
            continue
        derived = derive_fields(fact, user_text, today=today, source_sentence=_source_of(fact, utterance))
        kept.append(CandidateMemory(
            text=derived.text, type=derived.type, importance=derived.importance,
            confidence=derived.confidence, entities=list(derived.entities), people=list(derived.people),
            tags=list(derived.tags), expires_at=derived.expires_at,
        ))
    return kept, refused


def _complete(text: str, utterance: Utterance) -> str:
    """A one-word answer ("Vegetarian", "Daniel") as the user's own short clause ("I'm vegetarian")."""
    ws = lower_words(text)
    if len(ws) != 1:
        return text
    for statement in utterance.statements:
        for clause in re.split(r"[,;]|\band\b|\bbut\b", statement):
            if ws[0] in lower_words(clause) and len(lower_words(clause)) <= 8:
                return clause.strip()
    return text


def _repeats(fact: str, kept: str) -> bool:
    """The same fact twice in one answer ("Loves hiking" / "Really loves hiking")."""
    a, b = set(content_words(fact)), set(content_words(kept))
    if not a or not b:
        return " ".join(lower_words(fact)) == " ".join(lower_words(kept))
    return a <= b or b <= a


def _source_of(fact: str, utterance: Utterance) -> str:
    """The user's statement a fact most likely came from (for hedges and plan dates)."""
    words_ = set(content_words(fact))
    best, score = "", -1
    for statement in utterance.statements:
        overlap = sum(1 for w in content_words(statement) if any(same_stem(w, f) for f in words_))
        if overlap > score:
            best, score = statement, overlap
    return best
