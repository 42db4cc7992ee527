"""Which existing memory a new fact is about, and the changes code can decide on its own.

A model may only UPDATE or DELETE a memory that is *about the same thing* as the new fact; this
module decides what "the same thing" means, so a true fact is never overwritten by an unrelated
one whatever the model answers:

- the **subject** must match: the user themself, or the same person/pet ("sister Ana", "cousin
  Sam" is not "colleague Sam"; a correction may rename: "my brother is Tim, not Tom");
- and the two must share an **exclusive topic** (home, diet, job, age, partner, number of
  children), a **salient word** (a name, a thing: "jazz", "locker code"), mention what the user
  just referred to ("I moved *from Lisbon*"), or be near-paraphrases (cosine ≥ 0.80).

Cosine alone cannot do this with MiniLM: a true move scores 0.46 ("Lives in Berlin" / "Lives in
Lisbon") and a job change 0.28, while an unrelated fact scores 0.45–0.57 ("Sister Ana is a nurse
in Porto" / "Lives in Lisbon"); see bench/learning_quality.py.

Some changes need no model at all (:func:`rule_for`): a new value of an exclusive topic of the
same subject replaces the old one (moves, diet, job, age, partner), a death replaces the living
fact, and an explicit retraction ("no longer", "cancelled", "forget that …") deletes it. A fact the
user marks as an addition ("my *other* sister", "I *also* …") never replaces anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.memory.facts import normalise_fact
from core.memory.language import (
    GENERIC,
    PETS,
    RELATIONS,
    STOPWORDS,
    lower_words,
    numbers,
    relation_of,
    same_stem,
    topics,
    words,
)

_USERS_OWN_TOPICS = frozenset({"partner", "children"})
SAME_THING_COSINE = 0.80
"""Cosine above which two facts count as paraphrases of each other even without shared words."""
NEAR_DUPLICATE = 0.95

Rule = Literal["replace", "retract", "same"]

_RETRACTION = re.compile(
    r"\b(no longer|not \w+ anymore|n't \w+ anymore|not anymore|anymore|stopped|cancell?ed|called off|broke up|"
    r"is over|ended|gave up|given up|forgot|forget|does not|doesn't|do not|don't|did not|didn't|isn't|is not|"
    r"never)\b", re.IGNORECASE)
_STRONG_RETRACTION = re.compile(
    r"\b(no longer|anymore|stopped|cancell?ed|called off|broke up|is over|gave up|given up)\b", re.IGNORECASE)
_DEATH = re.compile(r"\b(died|passed away|passed|put down|deceased|is dead|was killed|lost (?:her|his|their) "
                    r"battle)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a fact is about: the user (``relation is None and name is None``) or someone/some pet."""

    relation: str | None = None
    name: str | None = None

    @property
    def is_user(self) -> bool:
        return self.relation is None and self.name is None


def subject_of(fact: str, people: frozenset[str] = frozenset()) -> Subject:
    """The subject of a fact from its first words ("Sister Ana …", "Mom …", "Ana is …",
    "Has a sister named Ana …", "Dog Rex died"); the user when none is named."""
    ws = words(fact)
    low = [w.lower() for w in ws]
    for i, w in enumerate(low[:4]):
        rel = relation_of(w) or (w if w in PETS else None)
        if rel is None:
            continue
        if i > 0 and low[0] not in _BEFORE_RELATION:
            break  # "Works with a colleague" is about the user
        name = _name_after(ws, i + 1)
        return Subject(rel, name)
    if len(low) > 1 and low[0] in people:
        return Subject(None, low[0])  # "Ana is a nurse", when Ana is someone the user introduced
    return Subject()


_BEFORE_RELATION = frozenset("""
has had lives visits is their other another older elder younger big little twin step best ex late new
""".split())


def _name_after(ws: list[str], start: int) -> str | None:
    """The name following a relation word: "sister Ana", "sister named Ana", "sister, Beatriz"."""
    for w in ws[start:start + 4]:
        low = w.lower()
        if low in ("named", "called", "is", "was", "name", "'s"):
            continue
        if w[:1].isupper() and low not in RELATIONS:
            return low
        break
    return None


def _salient(fact: str) -> list[str]:
    return [w for w in lower_words(fact)
            if w not in STOPWORDS and w not in GENERIC and w not in _BROAD and len(w) > 2 and relation_of(w) is None]


# Words too broad to make two facts about the same thing ("Likes Thai food" / "Loves Italian food").
_BROAD = frozenset("""
food foods cuisine dish dishes drink drinks music movie movies film films book books sport sports game games
thing things stuff place places time times day days week weeks weekend weekends lot kind type types
""".split())


def compatible(new: Subject, old: Subject, *, new_text: str, old_text: str, said: set[str]) -> bool:
    """Whether two subjects may be the same one (see the module docstring)."""
    if new.is_user and old.is_user:
        return True
    if new.is_user or old.is_user:
        person, other_text = (old, new_text) if new.is_user else (new, old_text)
        other = {w.lower() for w in words(other_text)}
        return bool(person.name and person.name in other or person.relation and any(
            relation_of(w) == person.relation or w == person.relation for w in other))
    if new.relation and old.relation and new.relation != old.relation:
        return False
    if new.name and old.name and new.name != old.name:
        return old.name in said  # "my brother is Tim, not Tom"
    return True


@dataclass(frozen=True, slots=True)
class Link:
    """Why an existing memory is about the same thing as a candidate."""

    why: str
    strong: bool  # the same exclusive topic of the same subject: a new value replaces the old
    topic: str | None = None


def about_same_thing(new_text: str, old_text: str, *, cosine: float | None, said: set[str],
                     people: frozenset[str] = frozenset()) -> Link | None:
    """How ``old_text`` relates to ``new_text``, or None when it is about something else."""
    new_s, old_s = subject_of(new_text, people), subject_of(old_text, people)
    shared_topics = topics(new_text) & topics(old_text)
    # The user's partner and children are part of the user's own story, whichever way a fact puts
    # it: "Married Maria" / "Is Maria's girlfriend", "Has three kids" / "Kids: two".
    own = shared_topics & _USERS_OWN_TOPICS
    if not own and not compatible(new_s, old_s, new_text=new_text, old_text=old_text, said=said):
        return None
    if shared_topics and (new_s.is_user == old_s.is_user or own):
        topic = sorted(own or shared_topics)[0]
        return Link(f"same {topic}", True, topic)
    new_words, old_words = _salient(new_text), _salient(old_text)
    shared = [w for w in new_words if any(same_stem(w, o) for o in old_words)]
    if shared:
        return Link(f"both mention {shared[0]}", False)
    mentioned = [o for o in old_words if o in said and o[:1].isalpha()]
    if mentioned:
        return Link(f"the user mentioned {mentioned[0]}", False)
    if cosine is not None and cosine >= SAME_THING_COSINE:
        return Link(f"near paraphrase (cosine {cosine:.2f})", False)
    return None


def said_about(fact: str, statements: Sequence[str], people: frozenset[str]) -> str | None:
    """When a fact written about the user is really about someone else the user spoke of ("Is a
    nurse in Porto" from "My sister Ana is a nurse in Porto"), the user's own clause about that
    person ("Sister Ana is a nurse in Porto"); None when the fact is the user's."""
    own = subject_of(fact, people)
    if own.relation is not None:
        return None
    wanted = [w for w in _salient(fact)]
    best, overlap = None, 0
    for statement in statements:
        for clause in normalise_fact(statement):
            shared = sum(1 for w in _salient(clause) if any(same_stem(w, f) for f in wanted))
            if shared > overlap:
                best, overlap = clause, shared
    if best is None:
        return None
    theirs = subject_of(best, people)
    if theirs.is_user or not own.is_user and (theirs.relation is None or own.name != theirs.name):
        return None  # the user's own fact, or already about the right person
    return best


def is_duplicate(new_text: str, old_text: str, cosine: float | None) -> bool:
    """The same fact again: same words, or a near paraphrase with the same numbers and names."""
    if _norm(new_text) == _norm(old_text):
        return True
    if cosine is None or cosine < NEAR_DUPLICATE:
        return False
    names = {w.lower() for w in words(new_text) if w[:1].isupper()}
    old_names = {w.lower() for w in words(old_text) if w[:1].isupper()}
    return numbers(new_text) == numbers(old_text) and names - {_first(new_text)} == old_names - {_first(old_text)}


def _first(text: str) -> str:
    ws = words(text)
    return ws[0].lower() if ws else ""


def _norm(text: str) -> str:
    return " ".join(lower_words(text))


def is_retraction(text: str) -> bool:
    """The fact says something stopped being true ("No longer plays tennis", "Rome trip is cancelled")."""
    return bool(_STRONG_RETRACTION.search(text))


def rule_for(new_text: str, old_text: str, link: Link, *, additive: bool, correction: bool) -> Rule | None:
    """A change code can decide without a model, or None to ask the model.

    ``additive``: the user marked the news as an addition; ``correction``: as a correction
    ("actually", "sorry", "not Tom").
    """
    if additive:
        return None
    if _DEATH.search(new_text):
        return "replace"
    if is_retraction(new_text):
        return "retract"
    if link.strong and not _RETRACTION.search(new_text):
        return "replace"
    new_numbers, old_numbers = numbers(new_text), numbers(old_text)
    if new_numbers and old_numbers and new_numbers != old_numbers:
        return "replace"  # "Has three kids" after "Has two kids"; a new locker code
    if correction:
        return "replace"
    return None
