"""Benchmark: retrieval quality of MemoryService.search, hybrid vs dense-only vs BM25-only.

A retrieval set is generated here, deterministically from ``--seed`` (no network, no files):
one person's memory store of about 2,000 memories, and queries with the id(s) of the memory
that answers each. Three kinds of query, each where a real assistant meets it:

``paraphrase``  about the user's own profile ("Who looks after my teeth?" for "My dentist is
                Dr. Valdenhoff at the Corrie Street practice."): the question shares no content word
                with the memory, so dense retrieval has to carry it; confusers exist (the
                partner's dentist, the sister's job ...).
``identifier``  a rare name, code or number typed almost bare ("order KX-4471?", "Brackwynn
                Ostrell"): one memory among hundreds built from the same templates carries the
                token, which BM25 finds and MiniLM's wordpieces blur.
``mixed``       a rare name plus a paraphrase of the rest ("What does Brackwynn Ostrell do for a
                living?" for "... works as a radiologist ..."): both legs hold part of the answer.

All memories go in with ``MemoryService.add_many`` (real ONNX MiniLM, Qdrant Edge, SQLite) and
every query runs through ``MemoryService.search(owner, query, top_k=10, mode=...)``. Reported:
recall@10 and MRR@10 per mode, overall and per kind. ``--dump PATH`` writes the set as JSONL.

Run from the repository root::

    .venv/bin/python bench/retrieval.py            # ~2,000 memories, ~360 queries, about a minute
    .venv/bin/python bench/retrieval.py --quick    # a smoke run in seconds

This is a benchmark, not a test: it asserts nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory_search import OWNER, load_text, machine_lines, open_service  # noqa: E402

# ------------------------------------------------------------------------------------------------
# The retrieval set


@dataclass
class Memory:
    key: str
    text: str


@dataclass
class Query:
    kind: str
    text: str
    relevant: list[str] = field(default_factory=list)  # Memory.key values


# The user's profile: (memory, paraphrased question). Questions share no content word with the
# memory on purpose (a stop word like "my" is fine); the confusers below talk about other people.
PROFILE = [
    ("I work as a cardiac nurse at Saint Aldric hospital, mostly on night shifts.", "What is my job?"),
    ("My dentist is Dr. Valdenhoff at the practice on Corrie Street.", "Who looks after my teeth?"),
    ("I am allergic to penicillin and I break out in hives when I take it.",
     "Which medicine must doctors never give me?"),
    ("My blood type is O negative.", "What group is my blood?"),
    ("I drive a dark green 2017 Skoda Octavia estate.", "What car do I have?"),
    ("My partner Ilse and I got married on the 3rd of June 2019.", "When is our wedding anniversary?"),
    ("I grew up in a small fishing village called Porthkerris in Cornwall.", "Where is my hometown?"),
    ("We have a ginger cat named Biscotti who is eleven years old.", "What pet do we own?"),
    ("I cannot eat gluten because I have coeliac disease.", "Are there foods I need to avoid?"),
    ("My daughter Noor attends Hillcrest primary school in year four.", "Where does my kid go to class?"),
    ("My morning coffee is a flat white with oat milk and no sugar.", "How do I take my first drink of the day?"),
    ("I speak Dutch, English and some conversational Portuguese.", "Which languages do I know?"),
    ("I play bass guitar in a covers band on Thursday nights.", "What instrument am I into?"),
    ("My shoe size is 44 in European sizing.", "What size are my feet?"),
    ("I am vegetarian but I still eat eggs and dairy.", "Do I eat meat?"),
    ("I commute by train and change at Utrecht Centraal every morning.", "How do I get to the office?"),
    ("My laptop is a ThinkPad T14 running Fedora.", "What computer do I use?"),
    ("I support Feyenoord and go to matches with my brother.", "Which football club am I a fan of?"),
    ("My favourite band is Radiohead, especially the album OK Computer.", "What music do I like most?"),
    ("I am training for the Rotterdam marathon next April.", "Which race am I preparing for?"),
    ("My mother's maiden name is Verhoeven.", "What was mum's surname before she married?"),
    ("I take levothyroxine every morning for an underactive thyroid.", "What pills am I on?"),
    ("My bank is ING and my savings go into a separate Oranje account.", "Where do I keep my money?"),
    ("I'm scared of heights and avoid ladders and glass lifts.", "Do I have any phobias?"),
    ("I studied mechanical engineering at TU Delft.", "What did I do at university?"),
    ("My son Ravi is learning to swim at the municipal pool on Saturdays.", "What lessons does my boy have at the weekend?"),
    ("I'm colour blind, I mix up red and green.", "Do I have trouble seeing anything?"),
    ("My GP is Dr. Oosterbaan at the Wilhelmina health centre.", "Who is my family doctor?"),
    ("I prefer aisle seats on flights because I get up a lot.", "Where do I like to sit when flying?"),
    ("My wedding ring was my grandmother's and is slightly too big.", "Where is my marriage band from?"),
    ("I'm saving up to buy a house in Haarlem within two years.", "What am I putting money aside for?"),
    ("Our wifi at home is called Kasteel-5G and the password is on the router.", "What's the home network name?"),
    ("I volunteer at the food bank on the first Saturday of every month.", "Do I do any charity work?"),
    ("My sister Maartje lives in Ghent and is expecting twins.", "Which sibling is pregnant?"),
    ("My favourite dish is my grandmother's Indonesian rendang.", "What meal do I love most?"),
    ("I have a mild fear of dogs since one bit me as a child.", "Are there animals I'm nervous around?"),
    ("I'm left-handed, so I need the scissors on the left of the desk.", "Which hand do I write with?"),
    ("I sleep badly if the bedroom is warmer than eighteen degrees.", "What temperature helps me rest?"),
    ("My car insurance renews every year on the 1st of October.", "When is the vehicle policy due?"),
    ("I keep a spare house key with the neighbour at number 12, Mrs. Brouwer.", "Who can let me in if I'm locked out?"),
]
CONFUSERS = [
    "I work from the hospital's Rotterdam office on Fridays.",
    "My partner Ilse's dentist is Dr. Kamphuis near the market.",
    "My sister Maartje works as a primary school teacher in Ghent.",
    "My brother drives an old Volvo that keeps breaking down.",
    "Ilse is allergic to cats but she tolerates Biscotti.",
    "My father's blood pressure medicine was changed last month.",
    "Ilse prefers window seats and always sleeps on planes.",
    "Our neighbours at number 14 have a very loud beagle.",
    "Ilse speaks German fluently because she grew up in Aachen.",
    "My brother studied history in Leiden.",
    "Noor wants to learn the violin next year.",
    "Ilse's favourite band is Fleetwood Mac.",
    "I bought Ilse a new laptop bag for her birthday.",
    "Ilse drinks green tea and never touches coffee.",
    "The office coffee machine only makes espresso.",
]

SECOND_QUESTIONS = [
    "Where am I employed?", "Who is the person I see for fillings?", "Which antibiotic am I intolerant of?",
    "Am I a universal donor?", "Which vehicle is mine?", "How long have Ilse and I been husband and wife?",
    "Where was I raised?", "Tell me about our animal.", "Why must I skip bread and pasta?",
    "Which year is Noor in?", "What's my usual cafe order?", "How many tongues can I converse in?",
    "Which group do I perform with?", "Which boot number do I buy?", "Am I a meat eater?",
    "Where do I switch lines on the way to work?", "Which operating system is on my notebook?",
    "Whom do I cheer for in soccer?", "Which record do I love?", "What am I running in spring?",
    "What is my mum's family name?", "What do I swallow at breakfast for my gland?", "Who do I bank with?",
    "What makes me anxious?", "What was my degree?", "What does my boy do on Saturday mornings?",
    "Which colours confuse me?", "Which clinic do I go to when ill?", "Do I want the window when flying?",
    "Whose band do I wear?", "Which town do we hope to settle in?", "What is our router's SSID?",
    "Where do I help out?", "Who has twins on the way?", "Which curry do I adore?",
    "Why am I uneasy around pets?", "Am I a southpaw?", "How cool should my room be at night?",
    "What date is the motor cover up?", "Who holds a copy of my door key?",
]
FIRST_NAMES = ("Anna Bram Carmen Daan Eva Femke Gijs Hanna Iris Jasper Karin Lars Mila Niels Olga Pieter Rosa "
               "Sanne Tim Wout Yara Zoe Aziz Bilal Chloe Dirk Elif Floor Guus Hugo Ines Joris Kees Lotte Mees "
               "Nora Omar Puck Quinten Ruben Sofie Thijs Vera Willem Youssef Amira Bas Cas Dewi Emma").split()
SYLLABLES = ("ost bran kel vin dor mar thel quin rab sev lun gar fen wick holt brack wyn rell tav "
             "zor mick pell dran ves oki ulf ard bex corr ian isk lom nev par rud sten tor vask yel").split()
JOBS = ["works as a radiologist", "is an air traffic controller", "works as a structural engineer",
        "is a primary school teacher", "runs a small bakery", "works as a tax lawyer", "is a wildlife photographer",
        "works as a pharmacist", "is a carpenter", "works as a sound engineer"]
SHOPS = ["Bol", "Coolblue", "Zalando", "IKEA", "MediaMarkt", "Decathlon", "Amazon", "HEMA"]
ITEMS = ["a standing desk", "running shoes", "a coffee grinder", "a winter coat", "a robot vacuum", "a tent",
         "noise-cancelling headphones", "a bookshelf", "a bike helmet", "a rice cooker"]
DISHES = ["ramen", "dumplings", "ceviche", "falafel", "oysters", "tapas", "pho", "pizza"]
THINGS = ["boiler", "roof", "kitchen tap", "garden fence", "washing machine", "front door lock"]
EVENTS = ["wedding", "conference", "climbing gym", "choir rehearsal", "birthday party", "language course"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
FACT_TYPES = 8


class Names:
    """Made-up rare words and codes, each used once."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set()

    def word(self, parts: int | None = None) -> str:
        for _ in range(10_000):
            n = parts or self.rng.choice((2, 2, 3))
            w = "".join(self.rng.choice(SYLLABLES) for _ in range(n)).capitalize()
            if w not in self.used:
                self.used.add(w)
                return w
        raise RuntimeError("ran out of made-up names; add syllables")

    def code(self, letters: int, digits: int, sep: str = "-") -> str:
        while True:
            a = "".join(self.rng.choice("ABCDEFGHJKLMNPRSTUVWXZ") for _ in range(letters))
            c = f"{a}{sep}{self.rng.randint(10 ** (digits - 1), 10 ** digits - 1)}"
            if c not in self.used:
                self.used.add(c)
                return c


def _day(rng: random.Random) -> str:
    d = rng.randint(1, 28)
    return f"{d}{'st' if d in (1, 21) else 'nd' if d in (2, 22) else 'rd' if d in (3, 23) else 'th'}"


def person_fact(kind: int, first: str, last: str, names: Names, rng: random.Random) -> tuple[str, str, str]:
    """(memory, question naming the full name, question naming the first name only).

    The questions paraphrase the fact: apart from the name they share no content word with it.
    """
    full, month = f"{first} {last}", rng.choice(MONTHS)
    if kind == 0:
        return (f"{full} {rng.choice(JOBS)} in {names.word()}.", f"What does {full} do for a living?",
                f"What does {first} do for a living?")
    if kind == 1:
        return (f"{full}'s birthday is on the {_day(rng)} of {month}; a good present would be {rng.choice(ITEMS)}.",
                f"What gift should I get {full}?", f"When was {first} born?")
    if kind == 2:
        return (f"{full} lives at {rng.randint(2, 180)} {names.word()}straat in {names.word()}.",
                f"What is {full}'s home address?", f"Where is {first}'s house?")
    if kind == 3:
        return (f"{full}'s dog {names.word()} needs insulin injections twice a day.",
                f"What medical care does {full}'s animal require?", f"Does {first} have a sick pet?")
    if kind == 4:
        return (f"{full} recommended the restaurant {names.word()} in {names.word()} for its {rng.choice(DISHES)}.",
                f"Where did {full} suggest I eat?", f"Which place to dine did {first} suggest?")
    if kind == 5:
        return (f"{full} lent me the novel '{names.word()}' and wants it back by the end of {month}.",
                f"What am I borrowing from {full}?", f"Which book must I return to {first}?")
    if kind == 6:
        return (f"{full} from {names.word()} repaired the {rng.choice(THINGS)} in {month} and charged "
                f"{rng.randint(8, 60)}0 euros.", f"How much did {full}'s job cost?", f"What did {first} fix for me?")
    return (f"I met {full} at a {rng.choice(EVENTS)} in {names.word()} back in {rng.randint(2008, 2024)}.",
            f"How do I know {full}?", f"Where did I get to know {first}?")


def thing_fact(kind: int, names: Names, rng: random.Random) -> tuple[str, str, str]:
    """(memory, identifier query, mixed query) for an order, flight, project or support ticket."""
    month = rng.choice(MONTHS)
    if kind == 0:
        code = names.code(2, 4)
        return (f"Order {code} from {rng.choice(SHOPS)} is {rng.choice(ITEMS)}, due to arrive on the {_day(rng)} "
                f"of {month}.", f"order {code}", f"When will {code} get here?")
    if kind == 1:
        code = names.code(2, 4, "")
        return (f"My flight {code} to {names.word()} leaves at {rng.randint(6, 21)}:{rng.choice(('05', '20', '45'))} "
                f"from gate {rng.choice('ABCDE')}{rng.randint(1, 40)}.", code, f"What time does {code} depart?")
    if kind == 2:
        code = names.word(3)
        return (f"Project {code} kicks off on the {_day(rng)} of {month} in meeting room "
                f"{rng.randint(1, 6)}.{rng.randint(10, 40)}.", code, f"When does the {code} work begin?")
    code = names.code(3, 5)
    return (f"Support ticket {code} about the broken {rng.choice(THINGS)} was escalated to {names.word()} in "
            f"{month}.", f"ticket {code}", f"Who is handling {code}?")


def build_set(seed: int, people: int, things: int, queries_per_kind: int) -> tuple[list[Memory], list[Query]]:
    """The memories and the queries, each query with the keys of every memory that answers it."""
    rng = random.Random(seed)
    names = Names(rng)
    memories: list[Memory] = []
    queries: list[Query] = []
    for i, ((text, question), second) in enumerate(zip(PROFILE, SECOND_QUESTIONS, strict=True)):
        memories.append(Memory(f"p{i}", text))
        queries += [Query("paraphrase", question, [f"p{i}"]), Query("paraphrase", second, [f"p{i}"])]
    memories += [Memory(f"c{i}", text) for i, text in enumerate(CONFUSERS)]

    # People share realistic first names (each first name belongs to several people) and have rare
    # surnames; each person has 4 of the 8 kinds of fact.
    by_surname: dict[str, list[str]] = defaultdict(list)
    by_first_kind: dict[tuple[str, int], list[str]] = defaultdict(list)
    full_questions: list[tuple[str, str]] = []
    first_questions: dict[tuple[str, int], str] = {}
    for p in range(people):
        first, last = FIRST_NAMES[p % len(FIRST_NAMES)], names.word()
        for kind in rng.sample(range(FACT_TYPES), 4):
            key = f"q{p}.{kind}"
            text, full_q, first_q = person_fact(kind, first, last, names, rng)
            memories.append(Memory(key, text))
            by_surname[last].append(key)
            by_first_kind[(first, kind)].append(key)
            full_questions.append((key, full_q))
            first_questions[(first, kind)] = first_q
    thing_queries: list[tuple[str, str, str]] = []
    for t in range(things):
        text, id_q, mixed_q = thing_fact(t % 4, names, rng)
        memories.append(Memory(f"t{t}", text))
        thing_queries.append((f"t{t}", id_q, mixed_q))

    half = queries_per_kind // 2
    for key, id_q, _ in rng.sample(thing_queries, half):
        queries.append(Query("identifier", id_q, [key]))
    for surname in rng.sample(sorted(by_surname), queries_per_kind - half):
        queries.append(Query("identifier", surname, by_surname[surname]))
    third = queries_per_kind // 3
    for key, question in rng.sample(full_questions, third):
        queries.append(Query("mixed", question, [key]))
    for first_kind in rng.sample(sorted(by_first_kind), third):
        queries.append(Query("mixed", first_questions[first_kind], by_first_kind[first_kind]))
    for key, _, mixed_q in rng.sample(thing_queries, queries_per_kind - 2 * third):
        queries.append(Query("mixed", mixed_q, [key]))
    rng.shuffle(memories)
    return memories, queries


# ------------------------------------------------------------------------------------------------
# Scoring


def recall_mrr(ranked: list[str], relevant: list[str], k: int = 10) -> tuple[float, float]:
    top = ranked[:k]
    recall = len(set(top) & set(relevant)) / len(relevant)
    rr = next((1.0 / (i + 1) for i, key in enumerate(top) if key in relevant), 0.0)
    return recall, rr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=360, help="people, 4 memories each (default 360)")
    ap.add_argument("--things", type=int, default=600, help="orders, flights, projects, tickets (default 600)")
    ap.add_argument("--queries", type=int, default=150, help="identifier and mixed queries, each (default 150)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model-cache", type=Path, help="ONNX export cache (default: the app's, ~/.cache/optimus)")
    ap.add_argument("--dump", type=Path, help="also write the set as JSONL (memories, then queries)")
    ap.add_argument("--show-misses", type=int, default=0, help="print up to N queries hybrid missed")
    ap.add_argument("--quick", action="store_true", help="small set: a smoke run in seconds")
    args = ap.parse_args(argv)
    if args.quick:
        args.people, args.things, args.queries = 60, 80, 30

    from core.config import load_settings
    from core.memory.types import NewMemory, Scope
    from core.memory.edge_shards import close_all_shards

    memories, queries = build_set(args.seed, args.people, args.things, args.queries)
    if args.dump:
        with args.dump.open("w", encoding="utf-8") as fh:
            for m in memories:
                fh.write(json.dumps({"type": "memory", "key": m.key, "text": m.text}) + "\n")
            for q in queries:
                fh.write(json.dumps({"type": "query", "kind": q.kind, "text": q.text, "relevant": q.relevant}) + "\n")
        print(f"wrote {args.dump}")

    model_cache = args.model_cache or load_settings().model_cache
    started, load_start = time.perf_counter(), load_text()
    tmp = Path(tempfile.mkdtemp(prefix="optimus-bench-retrieval-"))
    modes = ("hybrid", "dense", "keyword")
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {m: defaultdict(list) for m in modes}
    misses: list[str] = []
    try:
        service, engine = open_service(tmp, model_cache=model_cache)
        scope = Scope(OWNER, OWNER)
        t0 = time.perf_counter()
        records = service.add_many(scope, [NewMemory(text=m.text) for m in memories])
        load_s = time.perf_counter() - t0
        service.store.optimize()
        key_of = {r.id: m.key for r, m in zip(records, memories, strict=True)}
        text_of = {m.key: m.text for m in memories}
        for q in queries:
            ranked_by_mode = {}
            for mode in modes:
                hits = service.search(OWNER, q.text, top_k=10, mode=mode)
                ranked = [key_of[h.id] for h in hits]
                ranked_by_mode[mode] = ranked
                r, rr = recall_mrr(ranked, q.relevant)
                scores[mode][q.kind].append((r, rr))
                scores[mode]["all"].append((r, rr))
            if len(misses) < args.show_misses and not set(ranked_by_mode["hybrid"]) & set(q.relevant):
                misses.append(f"[{q.kind}] {q.text!r} -> want {text_of[q.relevant[0]]!r}; dense rank "
                              f"{_rank(ranked_by_mode['dense'], q.relevant)}, keyword rank "
                              f"{_rank(ranked_by_mode['keyword'], q.relevant)}")
        service.store.close()
        engine.dispose()
    finally:
        close_all_shards()
        shutil.rmtree(tmp, ignore_errors=True)

    kinds = ("all", "paraphrase", "identifier", "mixed")
    counts = {k: len(scores["hybrid"][k]) for k in kinds}
    print()
    print("=" * 100)
    print("Retrieval benchmark: MemoryService.search modes (recall@10 / MRR@10)")
    print("-" * 100)
    print(*machine_lines(), sep="\n")
    print(f"load avg   {load_start} at start, {load_text()} at end (1 / 5 / 15 min)")
    print(f"set        seed={args.seed}: {len(memories):,} memories ({len(PROFILE)} profile, {len(CONFUSERS)} "
          f"confusers, {args.people} people x 4, {args.things} orders/flights/projects/tickets); queries " +
          ", ".join(f"{k} {counts[k]}" for k in kinds) + f"; loaded with add_many in {load_s:.1f} s")
    print("-" * 100)
    print(f"{'mode':10s}" + "".join(f"{k + f' ({counts[k]})':>24s}" for k in kinds))
    for mode in modes:
        cells = []
        for k in kinds:
            rows = scores[mode][k]
            recall = sum(r for r, _ in rows) / len(rows)
            mrr = sum(rr for _, rr in rows) / len(rows)
            cells.append(f"{recall:.3f} / {mrr:.3f}")
        print(f"{mode:10s}" + "".join(f"{c:>24s}" for c in cells))
    for line in misses:
        print("miss  " + line)
    print(f"total      {time.perf_counter() - started:.0f} s")
    print("=" * 100)
    return 0


def _rank(ranked: list[str], relevant: list[str]) -> str:
    return next((str(i + 1) for i, key in enumerate(ranked) if key in relevant), ">10")


if __name__ == "__main__":
    raise SystemExit(main())
