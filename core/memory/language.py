"""Small, deterministic English text analysis shared by the memory guardrails.

Nothing here calls a model: words, sentences, crude stems, names and the closed vocabularies the
pipeline's checks rely on (relations, exclusive topics, tags). Other languages fall through
gracefully: a text with few English function words is "foreign", and checks that need English
say so instead of guessing (see :func:`is_english`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD = re.compile(r"[0-9]+(?:[.,:][0-9]+)*|[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+|(?<=[.!?])(?=[A-Z])")

STOPWORDS = frozenset("""
a an the and or but so if then than that this these those there here of in on at to from for with by about
as into onto over under after before since until while during per via up down out off again also too very
just really quite still even only ever never not no nor yes yeah yep ok okay oh ah well now currently
i me my mine myself we us our ours you your yours he him his she her hers it its they them their theirs
who whom whose which what when where why how is am are was were be been being do does did doing done
has have had having will would shall should can could may might must let lets let's i'm i've i'd i'll
im ive id ill you're we're they're it's he's she's that's there's isn't aren't wasn't weren't don't
doesn't didn't won't wouldn't can't cannot couldn't shouldn't haven't hasn't hadn't some any all each
every both either neither one ones other another such own same lot lots much many more most few less
""".split())

# Verbs and fillers a fact may use in its own words without the user having said them
# ("Lives in Berlin" from "I moved to Berlin"); they never carry the topic of a fact.
GENERIC = frozenset("""
user person someone people thing things lives live living lived works work working worked likes like
liked loves love loved prefers prefer preferred enjoys enjoy enjoyed has have had gets get got says
said named called name years year old currently now longer anymore already recently new usually
often sometimes always based stays stay owns own makes make made goes go going went want wants
wanted uses use used feels feel felt thinks think knows know plays play played playing does doing
moved moving move
""".split())

RELATIONS: dict[str, str] = {
    # word -> the relation it names; partners share one key so "girlfriend" -> "wife" is one person
    "mom": "mother", "mum": "mother", "mother": "mother", "mommy": "mother", "mama": "mother",
    "dad": "father", "father": "father", "daddy": "father", "papa": "father",
    "parents": "parents",
    "sister": "sister", "sis": "sister", "brother": "brother", "bro": "brother", "sibling": "sibling",
    "son": "son", "daughter": "daughter", "kid": "child", "child": "child", "baby": "child",
    "wife": "partner", "husband": "partner", "girlfriend": "partner", "boyfriend": "partner",
    "partner": "partner", "fiance": "partner", "fiancé": "partner", "fiancee": "partner",
    "fiancée": "partner", "spouse": "partner",
    "grandfather": "grandfather", "grandpa": "grandfather", "granddad": "grandfather",
    "grandmother": "grandmother", "grandma": "grandmother", "granny": "grandmother",
    "grandson": "grandchild", "granddaughter": "grandchild",
    "aunt": "aunt", "uncle": "uncle", "cousin": "cousin", "nephew": "nephew", "niece": "niece",
    "friend": "friend", "colleague": "colleague", "coworker": "colleague", "co-worker": "colleague",
    "boss": "boss", "manager": "boss", "roommate": "roommate", "flatmate": "roommate",
    "neighbor": "neighbour", "neighbour": "neighbour", "teacher": "teacher", "doctor": "doctor",
    "therapist": "therapist", "mentor": "mentor", "classmate": "classmate",
    "stepmother": "stepmother", "stepfather": "stepfather", "stepson": "stepson", "stepdaughter": "stepdaughter",
    "mother-in-law": "mother-in-law", "father-in-law": "father-in-law",
}

PETS = frozenset("dog cat puppy kitten pet parrot hamster rabbit horse bird turtle tortoise snake lizard".split())

# Topics a person has one value of at a time: a new value replaces the old one.
EXCLUSIVE_TOPICS: dict[str, re.Pattern[str]] = {
    "home": re.compile(r"\b(live[sd]?|living|moved|moving|move[sd]?|relocat\w*|based in|resid\w*|home ?town)\b"),
    "diet": re.compile(r"\b(vegetarian|vegan|pescatarian|omnivore|carnivore|keto|eat(s|ing)? (meat|fish|pork|beef)|"
                       r"diet)\b"),
    "job": re.compile(r"\b(works? (as|at|for)|working (as|at|for)|jobs?|employ\w*|profession|occupation|career|"
                      r"quit|retired|unemployed|hired)\b"),
    "age": re.compile(r"\b(\d+ (years?|yrs?) old|aged? \d+|turned \d+|birthday|^is \d{1,3}$)\b"),
    "partner": re.compile(r"\b(girlfriend|boyfriend|wife|husband|partner|fianc\w*|married|engaged|divorced|"
                          r"single|dating|spouse)\b"),
    "children": re.compile(r"\b(\d+|no|one|two|three|four|five|six) (kids|children|sons|daughters)\b"),
}

TAG_WORDS: dict[str, tuple[str, ...]] = {
    # tag -> word stems (prefixes) that put a fact under it; the closed set keeps tags tidy
    "home": ("live", "lived", "moved", "move", "apartment", "flat", "house", "home", "city", "relocat",
             "neighbourhood", "neighborhood", "address", "rent"),
    "food": ("vegetarian", "vegan", "pescatarian", "eat", "food", "meat", "fish", "cook", "dish", "cuisine",
             "lactose", "gluten", "diet", "restaurant", "pizza", "sushi", "coffee", "tea", "drink", "breakfast",
             "dinner", "lunch", "pork", "beef", "chocolate", "wine", "beer", "snack", "spicy"),
    "work": ("work", "job", "company", "office", "engineer", "developer", "teacher", "nurse", "career",
             "colleague", "quit", "hired", "salary", "manager", "designer", "lawyer", "bank", "startup",
             "employ", "profession", "retire", "boss", "promot", "client", "project", "meeting"),
    "family": ("sister", "brother", "mom", "mum", "mother", "dad", "father", "parent", "son", "daughter",
               "kid", "child", "baby", "wife", "husband", "cousin", "grandfather", "grandmother", "grandma",
               "grandpa", "aunt", "uncle", "family", "nephew", "niece"),
    "relationships": ("girlfriend", "boyfriend", "partner", "dating", "married", "engaged", "divorc",
                      "friend", "wedding", "fianc"),
    "pets": ("dog", "cat", "pet", "puppy", "kitten", "parrot", "hamster", "rabbit", "horse"),
    "health": ("allerg", "sick", "doctor", "sleep", "medic", "diabet", "asthma", "injur", "pregnan",
               "therap", "health", "surgery", "pain", "anxiety", "migraine", "blood", "hospital"),
    "travel": ("trip", "travel", "fly", "flight", "vacation", "holiday", "visit", "abroad", "airport",
               "conference", "journey"),
    "hobbies": ("hobby", "hik", "guitar", "piano", "tennis", "run", "marathon", "climb", "paint", "read",
                "book", "music", "band", "jazz", "game", "chess", "yoga", "swim", "cycl", "bike", "garden",
                "photograph", "knit", "sing", "danc", "football", "soccer", "basketball", "film", "movie",
                "surf", "ski"),
    "education": ("school", "universit", "study", "student", "learn", "course", "degree", "class",
                  "exam", "college", "phd", "language"),
    "plans": ("plan", "going to", "tomorrow", "next week", "next month", "appointment", "deadline",
              "schedul", "upcoming"),
    "finance": ("money", "budget", "loan", "mortgage", "saving", "invest", "debt", "tax"),
}

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CALENDAR = frozenset(MONTHS + WEEKDAYS + tuple(m[:3] for m in MONTHS))

NOT_PEOPLE = frozenset("""
i me you user assistant optimus ai bot chatbot model human someone everyone nobody god
he she they him her them we us it this that my mine your our their hi hello hey thanks am pm
""".split()) | _CALENDAR

PLACE_PREPOSITIONS = frozenset("in at to from near into across around outside inside via for visiting".split())
PERSON_VERBS = frozenset("""
is was has had lives lived works worked loves loved likes liked says said died passed moved got just
started studies plays will wants visited called texted told married turned became runs owns cooks
teaches helps knows thinks
""".split())

NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}


def words(text: str) -> list[str]:
    """The words of ``text`` in order, case kept (numbers are words too)."""
    return WORD.findall(text)


def lower_words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in words(text)]


def sentences(text: str) -> list[str]:
    """Split into sentences on end punctuation and line breaks; never returns empty strings."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def stem(word: str) -> str:
    """A crude English stem: enough to match "lives"/"live", "studies"/"study", "moved"/"move"."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) <= 3 or w.isdigit():
        return w
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("e", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: len(w) - len(suffix)] + repl
            break
    return w


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning: no stopwords, no generic verbs."""
    return [w for w in lower_words(text) if w not in STOPWORDS and w not in GENERIC and len(w) > 1]


def stems(text: str) -> set[str]:
    return {stem(w) for w in lower_words(text)}


def same_stem(a: str, b: str) -> bool:
    sa, sb = stem(a), stem(b)
    if sa == sb:
        return True
    short, long_ = sorted((sa, sb), key=len)
    return len(short) >= 5 and long_.startswith(short)


def supported(word: str, pool: Iterable[str]) -> bool:
    """Whether ``word`` (or a word of the same stem) occurs in ``pool``."""
    return any(same_stem(word, other) for other in pool)


def numbers(text: str) -> set[str]:
    """Digits in the text, plus small numbers written as words ("three" -> "3"); "9:00" is "9"."""
    found = {re.sub(r"[:.]00$", "", w) for w in lower_words(text) if w[:1].isdigit()}
    found |= {str(NUMBER_WORDS[w]) for w in lower_words(text) if w in NUMBER_WORDS}
    return found


# Function words of the languages people most often write in besides English; a message with
# more of these than English ones is not analysed as English.
_FOREIGN = frozenset("""
de la le les el los las del des du un une uno una unos unas y e et est es ist und der die das den dem ein eine
einer ich du er sie wir je tu il elle nous vous ils yo soy estoy eres somos eu sou estou em no na nos nas um
uma que qui con por para pour avec sur dans mais pero mas não nao sim oui ja nein sehr muy très mon ma mes
mein meine mi mis meu minha mio mia sono ho hai ha anche che di da il lo gli ik ben het een niet wij zijn
""".split()) - STOPWORDS


def is_english(text: str) -> bool:
    """Whether the English-only checks apply: not when the text has more function words of
    another common language than English ones (short texts count as English)."""
    ws = lower_words(text)
    english = sum(1 for w in ws if w in STOPWORDS)
    foreign = sum(1 for w in ws if w in _FOREIGN)
    if foreign > english:
        return False
    return all(w.isascii() for w in ws) or english > 0


def relation_of(word: str) -> str | None:
    """The relation a word names ("mum" -> "mother", "sisters" -> "sister", "brother's"), or None."""
    w = word.lower().replace("’", "'").removesuffix("'s")
    return RELATIONS.get(w) or (RELATIONS.get(w[:-1]) if w.endswith("s") else None)


def capitalised_names(text: str) -> list[str]:
    """Capitalised words that are not at the start of a sentence (candidate names), in order."""
    names = []
    for sentence in sentences(text):
        ws = words(sentence)
        for i, w in enumerate(ws):
            if i == 0 or not w[:1].isupper() or w.lower() in NOT_PEOPLE:
                continue
            names.append(w)
    return names


def topics(text: str) -> set[str]:
    """The exclusive topics (home, diet, job, age, partner, children) a text is about."""
    low = " ".join(lower_words(text))
    return {name for name, pattern in EXCLUSIVE_TOPICS.items() if pattern.search(low)}


def tags_for(text: str, *, limit: int = 3) -> list[str]:
    """Tags from the closed vocabulary, most specific first (first match wins ties)."""
    low = " ".join(lower_words(text))
    ws = lower_words(text)
    found: list[tuple[int, str]] = []
    for tag, stems_ in TAG_WORDS.items():
        positions = []
        for s in stems_:
            if " " in s:
                if (p := low.find(s)) >= 0:
                    positions.append(len(low[:p].split()))
            else:
                positions.extend(i for i, w in enumerate(ws) if w.startswith(s))
        if positions:
            found.append((min(positions), tag))
    return [tag for _, tag in sorted(found)][:limit]
