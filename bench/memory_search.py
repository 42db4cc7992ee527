"""Benchmark: long-term memory search latency (with query embedding), RAM and disk; vector-only 1M.

Two parts, run one at a time (``--part``):

``service``  Builds one owner's memories (spread over ``--users`` end-user ids) with
             ``MemoryService.add_many`` (real bundled MiniLM on ONNX, Qdrant Edge embedded, SQLite
             history), grows them to each of ``--sizes`` in turn, runs the store's ``optimize()``
             after each bulk load so HNSW and the quantized codes are built, then times
             ``MemoryService.search(owner, query, top_k=10)`` in hybrid (default) and dense mode,
             plus hybrid narrowed to one end-user id, each call including the query embedding.
             Also: the pieces alone (embedding, the dense and the BM25 store queries), disk (``du``
             of the shard and of the SQLite file) and RAM (RSS of a fresh process that opens the
             store and runs searches, minus the same process on an empty store).

``vectors``  ``QdrantEdgeStore`` directly with the production config (``QdrantEdgeConfig``
             defaults: binary quantization, its query encoding and oversampling, HNSW m/ef) and
             ``--vectors`` 384-d vectors (default 1,000,000): insertion time, ``optimize()`` time,
             p50/p95 of ``search`` (single thread, after warm-up), recall@10 against exact float
             search (numpy), for typed questions and for memory-like sentences, plus variations
             (oversampling, hnsw_ef, quantization ignored) that show where recall is lost; RAM and
             disk. The vectors are real MiniLM
             embeddings of ``--distinct`` generated memory sentences plus noisy copies of them
             (Gaussian noise, renormalised); the noise is calibrated so a copy sits as close to its
             source as a real sentence's nearest other sentence does (see ``noise_for``).

Run from the repository root::

    .venv/bin/python bench/memory_search.py --part service              # 10k and 100k, ~10 min
    .venv/bin/python bench/memory_search.py --part vectors              # 1M vectors, ~30-40 min
    .venv/bin/python bench/memory_search.py --quick                     # both parts, small, seconds

Before each timed phase the bench waits (``--max-wait``, default 20 min) until the 1-minute load
average is below ``--quiet-load`` (default 1.0), and prints the load average at the start and end
of each timed phase. ``bench/ingest.py`` and ``bench/retrieval.py`` reuse the helpers here.

This is a benchmark, not a test: it asserts nothing about speed, it prints figures.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")

import numpy as np  # noqa: E402

OWNER = "bench-owner"

# ------------------------------------------------------------------------------------------------
# Machine, versions, load, percentiles


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def machine_lines() -> list[str]:
    """Platform, CPU, RAM, Python and the versions of the engines the memory layer runs on."""
    dists = ("qdrant-edge-py", "mem0ai", "onnxruntime", "tokenizers", "numpy", "SQLAlchemy", "qdrant-client")
    return [
        f"platform   {platform.platform()}",
        f"cpu        {cpu_model()}  (nproc={os.cpu_count()})   ram {ram_total()}",
        f"python     {platform.python_version()} ({platform.python_implementation()})   sqlite {sqlite3.sqlite_version}",
        "versions   " + "  ".join(f"{d} {_version(d)}" for d in dists),
        f"command    {' '.join([os.path.relpath(sys.executable), *sys.argv])}",
    ]


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def wait_for_quiet(threshold: float, max_wait: float, *, poll: float = 30.0) -> str:
    """Wait until the 1-minute load average is below ``threshold`` (at most ``max_wait`` s).

    Returns the load average (1/5/15 min) at the moment the timed phase may start.
    """
    start = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - start < max_wait:
        print(f"  waiting for a quiet machine: load {load_text()} (need 1-min < {threshold})", flush=True)
        time.sleep(poll)
    if os.getloadavg()[0] >= threshold:
        print(f"  WARNING: still busy after {max_wait:.0f} s (load {load_text()}); measuring anyway", flush=True)
    return load_text()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summary(ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms) if ms else float("nan"),
        "max": max(ms) if ms else float("nan"),
    }


def fmt_summary(s: dict[str, float]) -> str:
    return (f"p50 {s['p50']:7.2f} ms  p95 {s['p95']:7.2f} ms  mean {s['mean']:7.2f}  "
            f"p99 {s['p99']:7.2f}  max {s['max']:7.2f}  (n={s['n']})")


def timed(fn: Callable[[int], object], n: int, *, warmup: int = 0) -> list[float]:
    """Milliseconds per call of ``fn(i)`` for i in range(n), after ``warmup`` uncounted calls."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(n):
        t = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def rss() -> dict[str, float]:
    """Resident memory of this process in MiB: total, anonymous and file-backed (mmap'd shard files)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def du(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of everything under ``path``."""
    apparent = allocated = 0
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_file():
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


# ------------------------------------------------------------------------------------------------
# Realistic memory texts (10-25 words) and search queries, deterministic per seed

FIRST = ("Alice Bob Carla Dmitri Elena Farid Grace Hiro Ines Jonas Kemi Luca Maya Noah Olga Pedro Quinn Rosa "
         "Sami Tara Umar Vera Wen Yusuf Zoe Aisha Bruno Chloe Diego Emeka Fatima Gustav Hana Ivan Jana Kofi Lena "
         "Mateo Nadia Oscar Priya Rafael Sofia Tomas Ula Viktor Wanjiru Xavier Yara Zeynep Anders Beatriz Cheng "
         "Dalia Erik Freya Goran Helga Imran Juno Kaito Leila Marek Nina Orla Pavel Rania Stellan Thandiwe Uriel "
         "Valentina Wiktor Ximena Yoshi Zainab Amara Bjorn Camille Dario Esme Felix Giulia Henrik Isla Joaquin "
         "Katya Lorenzo Mira Nils Ottilie Paloma Ravi Saoirse Teodor Ursula Vikram Willa Yannick Zora").split()
LAST = ("Moreau Okafor Lindqvist Tanaka Novak Haddad Fischer Costa Ivanova Mensah Rossi Kowalski Nguyen Duarte "
        "Andersen Petrov Sato Gallagher Yilmaz Schulz Bianchi Hoffmann Ramos Virtanen Kim Oyelaran Brennan "
        "Castillo Dubois Eriksen Ferreira Grunwald Horvath Iqbal Jovanovic Kaminski Laine Marchetti Nakamura "
        "Olsen Papadakis Quispe Ribeiro Szabo Takahashi Ueda Vasquez Wojcik Zielinski Abiodun").split()
RELATIONS = ("sister brother mother father colleague neighbour friend manager daughter son partner cousin "
             "landlord dentist coach aunt uncle grandmother grandfather flatmate boss mentor niece nephew "
             "doctor therapist accountant physiotherapist teacher").split()
CITIES = ("Lisbon Oslo Kyoto Nairobi Lima Montreal Hanoi Reykjavik Porto Seville Krakow Melbourne Istanbul "
          "Vancouver Marrakesh Tallinn Bologna Quito Busan Ghent Tbilisi Valparaiso Accra Ljubljana Bergen "
          "Cork Leipzig Oaxaca Hobart Bratislava Tromso Salzburg Cusco Zanzibar Da_Nang Plovdiv Aarhus Gdansk "
          "Nantes Bilbao Cluj Brno Utrecht Tampere Sapporo Chiang_Mai Cartagena Mendoza Kotor Riga").split()
CITIES = [c.replace("_", " ") for c in CITIES]
FOODS = ("ramen|green tea|dark chocolate|sourdough bread|spicy curry|oat milk lattes|sushi|lentil soup|mango sticky "
         "rice|black coffee|goat cheese|falafel|pho|tiramisu|kimchi|peanuts|shellfish|gluten|lactose|mushroom "
         "risotto|pad thai|oysters|cilantro|blue cheese|jasmine tea|sparkling water|croissants|empanadas|"
         "pistachio ice cream|halloumi|beetroot salad|chai|olives|dumplings|ceviche").split("|")
HOBBIES = ("rock climbing|playing the cello|trail running|knitting|chess|birdwatching|pottery|salsa dancing|sailing|"
           "painting watercolours|baking bread|cycling|yoga|gardening|photography|learning Japanese|board games|"
           "swimming|woodworking|stargazing|bouldering|playing the piano|calligraphy|kayaking|beekeeping|"
           "brewing beer|skiing|surfing|fencing|writing poetry|learning Portuguese|restoring old bikes").split("|")
JOBS = ("a cardiac nurse|a data engineer|a primary school teacher|an architect|a freelance translator|a pharmacist|"
        "a product manager|a carpenter|a veterinarian|a civil engineer|a barista|a UX researcher|a lawyer|"
        "a firefighter|a radiologist|an accountant|a marine biologist|a sound engineer|a pastry chef|"
        "a logistics coordinator").split("|")
PRODUCTS = ("a Kindle Paperwhite|a Fairphone 5|a Brompton bike|a Sony WH-1000XM5 headset|a Dyson V15|"
            "a Moka pot|a Garmin Forerunner 965|a ThinkPad X1 Carbon|a Nintendo Switch|a Roomba j7|"
            "an Aeropress|a Leica Q3|a Kobo Libra|a standing desk from Fully|a Vitamix blender").split("|")
PETS = ("a cat|a beagle|two rabbits|a parrot|a golden retriever|a tortoise|three goldfish|a border collie|"
        "a hamster|a rescue greyhound").split("|")
PET_NAMES = "Miso Pepper Biscuit Luna Olive Mochi Rufus Noodle Pixel Juniper Tofu Clementine Ziggy Waffles".split()
WHEN = ("on Monday|next Tuesday|this weekend|on Friday evening|in March|next summer|at the end of the month|"
        "tomorrow morning|after the holidays|in two weeks|on the 14th|before Easter|in early October|"
        "next year|on Sunday afternoon").split("|")
ACTIVITIES = ("visit|fly to|move to|attend a conference in|spend a week in|go hiking near|look for a flat in|"
              "take a cooking class in|run a half marathon in|see a concert in").split("|")
REASONS = ("because the commute is shorter|since my doctor recommended it|to save some money this year|"
           "because it helps me sleep better|as a birthday present for myself|because my knee still hurts|"
           "so that I can spend more time with my kids|after a long discussion with my partner|"
           "which I have wanted to do for years|although I am a bit nervous about it").split("|")

MEMORY_TEMPLATES = (
    "My {rel} {first} lives in {city} and works as {job}.",
    "{first} {last} is my {rel}; we usually meet for {food} {when}.",
    "I really enjoy {hobby}, especially with my {rel} {first}, {reason}.",
    "I plan to {act} {city} {when} with {first} {last}.",
    "I prefer {food} over {food2}, and I avoid {food3} whenever I can.",
    "{first} recommended {hobby} to me {when}, and I signed up at a club in {city}.",
    "I am allergic to {food}, so restaurants must never serve it to me.",
    "My {rel} {first} {last} is learning {hobby} and wants to compete {when}.",
    "I started {hobby} last year and want to keep going {when}, {reason}.",
    "Remind me to call {first} {last} about the trip to {city} {when}.",
    "I work as {job} in {city}, and I have been doing it for {n} years.",
    "I bought {product} {when} {reason}, and so far I am very happy with it.",
    "We have {pet} called {pet_name}, who is {n} years old and loves the park.",
    "My {rel} {first} gave me {product} for my birthday, which was really thoughtful.",
    "I moved from {city} to {city2} {n} years ago {reason}.",
    "{first} {last} owes me {n}0 euros from the dinner in {city}.",
    "My favourite place to eat {food} is a small restaurant near the station in {city}.",
    "Every {weekday} I go {hobby2} with {first} before work, {reason}.",
    "I don't like {food} but my {rel} {first} eats it almost every day.",
    "I need to renew my passport before the trip to {city} {when}.",
    "The wifi password at my {rel}'s flat in {city} is {code}.",
    "My appointment with Dr. {last} is {when} at {hour} o'clock in {city}.",
)
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
HOBBY_VERBS = "swimming running cycling climbing rowing walking skating".split()

QUERY_TEMPLATES = (
    "What does my {rel} {first} do for a living?",
    "Where does {first} live?",
    "What food am I allergic to?",
    "Which trips am I planning {when}?",
    "What hobbies do I have?",
    "When is my appointment with Dr. {last}?",
    "What did I buy recently?",
    "Who recommended {hobby} to me?",
    "What is the name of our {pet_kind}?",
    "How much money does {first} {last} owe me?",
    "What do I prefer to drink in the morning?",
    "Which city did I move from?",
    "What present did my {rel} give me?",
    "Where do I like to eat {food}?",
    "What is the wifi password at my {rel}'s place?",
    "Who do I usually meet for {food}?",
    "What does {first} {last} want to learn?",
    "Do I need to renew any documents before travelling to {city}?",
)


def _fill(template: str, rng: random.Random) -> str:
    food, food2, food3 = rng.sample(FOODS, 3)
    city, city2 = rng.sample(CITIES, 2)
    return template.format(
        first=rng.choice(FIRST), last=rng.choice(LAST), rel=rng.choice(RELATIONS), city=city, city2=city2,
        food=food, food2=food2, food3=food3, hobby=rng.choice(HOBBIES), hobby2=rng.choice(HOBBY_VERBS),
        job=rng.choice(JOBS), product=rng.choice(PRODUCTS), pet=rng.choice(PETS), pet_name=rng.choice(PET_NAMES),
        pet_kind=rng.choice(("cat", "dog", "parrot", "rabbit", "tortoise")), when=rng.choice(WHEN),
        act=rng.choice(ACTIVITIES), reason=rng.choice(REASONS), weekday=rng.choice(WEEKDAYS),
        n=rng.randint(2, 14), code=f"{rng.choice(PET_NAMES).lower()}-{rng.randint(1000, 9999)}",
        hour=rng.randint(8, 18),
    )


def memory_texts(seed: int = 1) -> Iterator[str]:
    """An endless stream of distinct memory sentences (about 10-25 words), the same for a given seed."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while True:
        text = _fill(rng.choice(MEMORY_TEMPLATES), rng)
        if text not in seen:
            seen.add(text)
            yield text


def take(stream: Iterator[str], n: int) -> list[str]:
    return [next(stream) for _ in range(n)]


def query_texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [_fill(rng.choice(QUERY_TEMPLATES), rng) for _ in range(n)]


# ------------------------------------------------------------------------------------------------
# A real MemoryService on a directory (as the app builds it in embedded mode)


def open_service(root: Path, *, model_cache: Path | None = None):
    """``MemoryService`` on SQLite (``root/optimus.db``) and Qdrant Edge (``root/vectors``), ONNX MiniLM.

    Returns ``(service, engine)``. Built by ``core.memory.engine.build_memory_service`` exactly as the
    app does in embedded mode; the ONNX export is cached in ``model_cache`` (default: the app's
    ``Settings.model_cache``, ``~/.cache/optimus``).
    """
    from core.config import load_settings
    from core.db import make_engine, migrate, sqlite_url
    from core.memory.engine import build_memory_service
    from core.storage import Storage

    root.mkdir(parents=True, exist_ok=True)
    engine = make_engine(sqlite_url(root / "optimus.db"))
    migrate(engine)
    storage = Storage("embedded", "embedded", engine, root, root / "vectors", None)
    overrides: dict = {"embedder_backend": "onnx"}
    if model_cache is not None:
        overrides["model_cache_dir"] = model_cache
    settings = load_settings(**overrides)
    return build_memory_service(settings, storage), engine


def shard_dir(root: Path) -> Path:
    from core.memory.engine import COLLECTION

    return root / "vectors" / COLLECTION


# ------------------------------------------------------------------------------------------------
# RAM probe: a fresh process opens a store, runs searches, reports its RSS


def _probe_main(spec: dict) -> None:
    started = time.perf_counter()
    if spec["kind"] == "service":
        from core.memory.embedder import get_embedder

        service, _engine = open_service(Path(spec["root"]), model_cache=Path(spec["model_cache"]))
        get_embedder("onnx", cache_dir=Path(spec["model_cache"])).embed("warm up the model")
        baseline = rss()
        opened = time.perf_counter() - started
        for q in spec["queries"]:
            service.search(OWNER, q, top_k=10)
            service.search(OWNER, q, top_k=10, mode="dense")
    else:
        from core.memory.vector_edge import QdrantEdgeStore

        store = QdrantEdgeStore(collection_name=spec["collection"], path=spec["root"], embedding_model_dims=384,
                                optimize_after=0)
        store.count()
        baseline = rss()
        opened = time.perf_counter() - started
        rng = np.random.default_rng(0)
        for q in rng.standard_normal((len(spec["queries"]), 384)).astype(np.float32):
            store.search("", q, top_k=10, filters={"owner_id": "o0"})
    print(json.dumps({"open_s": opened, "after_open": baseline, "after_queries": rss()}))


def probe_rss(spec: dict) -> dict:
    """Run :func:`_probe_main` in a new interpreter (the store must be closed in this one)."""
    out = subprocess.run([sys.executable, __file__, "--probe", json.dumps(spec)], capture_output=True, text=True,
                         cwd=REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"RSS probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# Part 1: MemoryService search at 10k / 100k


def part_service(args: argparse.Namespace, root: Path) -> list[str]:
    from core.memory.embedder import get_embedder
    from core.memory.service import MemoryFilters
    from core.memory.types import Scope

    sizes = sorted(args.sizes)
    users = [f"user-{i:03d}" for i in range(args.users)]
    queries = query_texts(args.queries + args.warmup, seed=args.seed + 100)
    warm, measured = queries[: args.warmup], queries[args.warmup :]
    report: list[str] = []

    print(f"\n== service part: sizes {sizes}, {args.users} end-user ids, {args.queries} queries", flush=True)
    print(f"   load before start: {wait_for_quiet(args.quiet_load, args.max_wait)}", flush=True)
    rss0 = rss()
    t0 = time.perf_counter()
    service, engine = open_service(root, model_cache=args.model_cache)
    embedder = get_embedder("onnx", cache_dir=args.model_cache_resolved)  # the instance the service uses
    embedder.embed("warm up")
    print(f"   service opened in {time.perf_counter() - t0:.1f} s (embedder backend {embedder.backend})", flush=True)
    store = service.store
    texts = memory_texts(args.seed)
    chunk = args.chunk
    n_done = 0
    build_s = 0.0
    for size in sizes:
        load_start = load_text()
        t0 = time.perf_counter()
        calls = 0
        while n_done < size:
            k = min(chunk, size - n_done)
            user = users[(n_done // chunk) % len(users)]
            service.add_many(Scope(OWNER, user), take(texts, k), source="import")
            n_done += k
            calls += 1
            if calls % 50 == 0:
                el = time.perf_counter() - t0
                print(f"   ... {n_done:,} memories, {el:.0f} s this step", flush=True)
        step_s = time.perf_counter() - t0
        build_s += step_s
        t0 = time.perf_counter()
        store.optimize()
        optimize_s = time.perf_counter() - t0
        info = store.col_info()
        load_end = load_text()
        print(f"   {size:,}: loaded in {step_s:.1f} s, optimize() {optimize_s:.2f} s, "
              f"points {info['points_count']:,}, indexed {info['indexed_vectors_count']:,}, "
              f"segments {info['segments_count']}", flush=True)

        # --- latency
        print(f"   measuring search at {size:,} (load {wait_for_quiet(args.quiet_load, args.max_wait)}) ...",
              flush=True)
        lat_start = load_text()
        one_user = MemoryFilters(user_id=users[0])
        results: dict[str, dict] = {}
        cases = {
            "search hybrid (default)": lambda q: service.search(OWNER, q, top_k=10),
            "search dense": lambda q: service.search(OWNER, q, top_k=10, mode="dense"),
            "search keyword": lambda q: service.search(OWNER, q, top_k=10, mode="keyword"),
            "search hybrid, one user_id": lambda q: service.search(OWNER, q, one_user, top_k=10),
        }
        vectors = [embedder.embed(q) for q in measured]
        flt = {"owner_id": OWNER}
        pieces = {
            "  embed query only": lambda i: embedder.embed(measured[i]),
            "  store dense top-40 only": lambda i: store.search(measured[i], vectors[i], top_k=40, filters=flt),
            "  store BM25 top-40 only": lambda i: store.keyword_search(measured[i], top_k=40, filters=flt),
        }
        # Interleaved: query i runs every case, in an order rotated with i, so page-cache warmth,
        # load spikes and allocator state hit all cases alike.
        calls = [(name, lambda i, fn=fn, qs=warm: fn(qs[i])) for name, fn in cases.items()]
        for i in range(len(warm)):
            for _name, fn in calls:
                fn(i)
            embedder.embed(warm[i])
        calls = [(name, lambda i, fn=fn: fn(measured[i])) for name, fn in cases.items()] + list(pieces.items())
        times: dict[str, list[float]] = {name: [] for name, _ in calls}
        for i in range(len(measured)):
            for k in range(len(calls)):
                name, fn = calls[(i + k) % len(calls)]
                t = time.perf_counter_ns()
                fn(i)
                times[name].append((time.perf_counter_ns() - t) / 1e6)
        results = {name: summary(times[name]) for name, _ in calls}
        lat_end = load_text()
        for name, s in results.items():
            print(f"   {name:28s} {fmt_summary(s)}", flush=True)

        # --- disk and RAM (a fresh process on this store vs on an empty one)
        engine.dispose()
        store.close()
        shard = du(shard_dir(root))
        wal = du(shard_dir(root) / "wal")
        db = du(root / "optimus.db")
        print(f"   disk: shard {mib(shard[0])} apparent / {mib(shard[1])} allocated (WAL {mib(wal[0])} / "
              f"{mib(wal[1])}); SQLite {mib(db[0])}", flush=True)
        ram_line = "ram        not measured (--no-rss)"
        if not args.no_rss:
            spec = {"kind": "service", "root": str(root), "model_cache": str(args.model_cache_resolved),
                    "queries": measured[:50]}
            full = probe_rss(spec)
            empty = probe_rss({**spec, "root": str(root / f"empty-{size}")})
            delta = full["after_queries"]["VmRSS"] - empty["after_queries"]["VmRSS"]
            delta_anon = full["after_queries"]["RssAnon"] - empty["after_queries"]["RssAnon"]
            delta_file = full["after_queries"]["RssFile"] - empty["after_queries"]["RssFile"]
            ram_line = (f"ram        fresh process, open + 100 searches: {full['after_queries']['VmRSS']:.0f} MiB vs "
                        f"{empty['after_queries']['VmRSS']:.0f} MiB empty -> +{delta:.0f} MiB "
                        f"(anon +{delta_anon:.0f}, file-backed +{delta_file:.0f}); open {full['open_s']:.1f} s "
                        f"(empty {empty['open_s']:.1f} s)")
            print("   " + ram_line, flush=True)
        store.count()  # reopen in this process

        report += [
            "-" * 100,
            f"size {size:,} memories (1 owner, {args.users} user_ids); built in {build_s:.1f} s so far "
            f"({n_done / build_s:,.0f} memories/s via add_many incl. inline optimize)",
            f"optimize() after bulk load: {optimize_s:.2f} s; points {info['points_count']:,}, indexed "
            f"{info['indexed_vectors_count']:,}, segments {info['segments_count']}",
            f"load avg   build {load_start} -> {load_end};  latency {lat_start} -> {lat_end}",
            *(f"{name:28s} {fmt_summary(s)}" for name, s in results.items()),
            f"disk       shard {mib(shard[0])} apparent / {mib(shard[1])} allocated "
            f"(of which WAL {mib(wal[0])} / {mib(wal[1])}); SQLite history {mib(db[0])}",
            ram_line,
        ]
    report.append(f"this process RSS: {rss0['VmRSS']:.0f} MiB at start, {rss()['VmRSS']:.0f} MiB at end")
    store.close()
    engine.dispose()
    return report


# ------------------------------------------------------------------------------------------------
# Part 2: vector-only at 1M


def noise_for(base: np.ndarray, dims: int, sample: int, rng: np.random.Generator) -> tuple[float, float]:
    """Noise σ such that a noisy copy's cosine to its source equals the median nearest-neighbour
    cosine among the real embeddings (cos ≈ 1/sqrt(1 + dims·σ²)). Returns (σ, that median)."""
    idx = rng.choice(len(base), size=min(sample, len(base)), replace=False)
    sims = base[idx] @ base.T
    sims[np.arange(len(idx)), idx] = -1.0
    median_nn = float(np.median(sims.max(axis=1)))
    return float(np.sqrt((1 / median_nn**2 - 1) / dims)), median_nn


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int = 10, chunk: int = 100_000) -> np.ndarray:
    """Exact top-k ids by dot product (vectors are unit length), in chunks to bound memory."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for a in range(0, len(vectors), chunk):
        s = queries @ vectors[a:a + chunk].T
        part = np.argpartition(-s, k, axis=1)[:, :k] if s.shape[1] > k else np.tile(np.arange(s.shape[1]), (len(s), 1))
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, part + a], axis=1)
        top = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, top, axis=1), np.take_along_axis(cand_i, top, axis=1)
    return best_i


def knn_profile(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> str:
    sims = np.einsum("qd,qkd->qk", queries, vectors[truth])
    return f"top-1 cos median {np.median(sims[:, 0]):.3f}, top-10 cos median {np.median(sims[:, 9]):.3f}"


def part_vectors(args: argparse.Namespace, root: Path) -> list[str]:
    from core.memory.embedder import get_embedder
    from core.memory.vector_edge import QdrantEdgeConfig, QdrantEdgeStore

    rng = np.random.default_rng(args.seed)
    n, distinct = args.vectors, min(args.distinct, args.vectors)
    print(f"\n== vectors part: {n:,} vectors from {distinct:,} embedded sentences", flush=True)
    embedder = get_embedder("onnx", cache_dir=args.model_cache_resolved)
    t0 = time.perf_counter()
    nq = args.queries + args.warmup
    sentences = take(memory_texts(args.seed + 1), distinct + nq)  # the last nq are held out as queries
    base = np.empty((distinct, 384), dtype=np.float32)
    for a in range(0, distinct, 2048):
        base[a:a + 2048] = embedder.encode(sentences[a:min(distinct, a + 2048)])
    # Two kinds of query: typed questions (what search gets; far from their answers) and held-out
    # memory sentences (what the add-time near-duplicate check sends; close to their neighbours).
    query_sets = {"question": embedder.encode(query_texts(nq, seed=args.seed + 200)),
                  "stmt": embedder.encode(sentences[distinct:])}
    queries = query_sets["question"]
    embed_s = time.perf_counter() - t0
    sigma, median_nn = noise_for(base, 384, 2000, rng) if args.noise is None else (args.noise, float("nan"))
    print(f"   embedded {distinct + len(queries):,} texts in {embed_s:.0f} s; median NN cosine among distinct "
          f"{median_nn:.3f} -> noise σ={sigma:.4f} per dimension", flush=True)
    vectors = np.empty((n, 384), dtype=np.float32)
    vectors[:distinct] = base
    for a in range(distinct, n, 100_000):
        b = min(n, a + 100_000)
        src = base[rng.integers(0, distinct, b - a)]
        noisy = src + rng.normal(0, sigma, src.shape).astype(np.float32)
        vectors[a:b] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    del base
    perm = rng.permutation(n)  # copies are not stored next to their sources
    vectors = vectors[perm]
    gc.collect()

    t0 = time.perf_counter()
    truths = {kind: exact_topk(vectors, qs) for kind, qs in query_sets.items()}
    truth_s = time.perf_counter() - t0
    distinct_rows = vectors[np.flatnonzero(perm < distinct)]
    profiles = {kind: (knn_profile(distinct_rows, qs, exact_topk(distinct_rows, qs)), knn_profile(vectors, qs, truths[kind]))
                for kind, qs in query_sets.items()}
    del distinct_rows
    for kind, (real, full) in profiles.items():
        print(f"   {kind} queries' neighbourhood: real sentences only: {real}; all {n:,}: {full}", flush=True)
    print(f"   exact top-10 ground truth in {truth_s:.1f} s", flush=True)

    cfg = QdrantEdgeConfig(path=str(root), collection_name="vectors")
    print(f"   config: quantization {cfg.quantization}, query encoding {cfg.query_encoding}, oversampling "
          f"{cfg.oversampling}, HNSW m={cfg.hnsw_m} ef_construct={cfg.hnsw_ef_construct} hnsw_ef={cfg.hnsw_ef}",
          flush=True)
    print(f"   load before insert: {wait_for_quiet(args.quiet_load, args.max_wait)}; free: "
          f"{subprocess.run(['free', '-m'], capture_output=True, text=True).stdout.splitlines()[1]}", flush=True)
    rss_before = rss()
    store = QdrantEdgeStore(collection_name="vectors", path=str(root), embedding_model_dims=384, optimize_after=0)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    load_insert = load_text()
    t0 = time.perf_counter()
    step = 2_000
    last = t0
    for a in range(0, n, step):
        b = min(n, a + step)
        store.insert(vectors[a:b], [{"owner_id": "o0", "user_id": f"u{i % 100}"} for i in range(a, b)], ids[a:b])
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            print(f"   ... inserted {b:,} ({b / (last - t0):,.0f}/s); rss {rss()['VmRSS']:.0f} MiB", flush=True)
    insert_s = time.perf_counter() - t0
    print(f"   inserted {n:,} in {insert_s:.1f} s ({n / insert_s:,.0f}/s); load {load_text()}; now optimize() ...",
          flush=True)
    t0 = time.perf_counter()
    store.optimize()
    optimize_s = time.perf_counter() - t0
    load_build_end = load_text()
    info = store.col_info()
    rss_built = rss()
    print(f"   optimize() {optimize_s:.1f} s; points {info['points_count']:,}, indexed "
          f"{info['indexed_vectors_count']:,}, segments {info['segments_count']}; load {load_build_end}", flush=True)

    # --- latency and recall: the production search first, then variations that show where recall
    # is lost (more oversampling: the quantized candidate list; more hnsw_ef: the graph walk;
    # quantization ignored: HNSW on the float vectors; exact: brute force, the truth check).
    import qdrant_edge as qe

    print(f"   measuring (load {wait_for_quiet(args.quiet_load, args.max_wait)}) ...", flush=True)
    lat_start = load_text()

    def params(oversampling: float = cfg.oversampling, ef: int = cfg.hnsw_ef) -> qe.SearchParams:
        return cfg.model_copy(update={"oversampling": oversampling, "hnsw_ef": ef}).search_params()

    owner = {"owner_id": "o0"}
    prod = f"production (os{cfg.oversampling:g}, ef{cfg.hnsw_ef})"
    # limit 40 = what MemoryService.search asks the store for (its fusion pool), of which the first
    # 10 are compared with the exact top 10.
    variants = [(f"{prod}, owner filter", params(), owner, 10), (f"{prod}, no filter", params(), None, 10),
                (f"{prod}, top 10 of a top-40 request", params(), owner, 40)]
    variants += [(f"os{o:g} ef{ef}", params(o, ef), owner, 10)
                 for o, ef in ((1, 128), (2, 128), (4, 128), (8, 128), (16, 128), (32, 256), (cfg.oversampling, 256))
                 if (o, ef) != (cfg.oversampling, cfg.hnsw_ef)]
    variants += [(f"quantization ignored, ef{ef} (float HNSW)",
                  qe.SearchParams(hnsw_ef=ef, quantization=qe.QuantizationSearchParams(ignore=True)), owner, 10)
                 for ef in (128, 256)]
    exact = qe.SearchParams(exact=True, quantization=qe.QuantizationSearchParams(ignore=True))

    def run(search_params: qe.SearchParams, flt: dict | None, q: np.ndarray, limit: int = 10) -> list[int]:
        store._search_params = search_params  # the store's own params are the production ones
        return [uuid.UUID(h.id).int - 1 for h in store.search("", q, top_k=limit, filters=flt)[:10]]

    # Interleaved: each query runs every variant, in an order rotated with the query, so page-cache
    # warmth and load spikes hit all variants alike; warm-up queries go through every variant first.
    rows = []
    for kind, qs in query_sets.items():
        warm, measured, truth_measured = qs[: args.warmup], qs[args.warmup:], truths[kind][args.warmup:]
        for q in warm:
            for _label, sp, flt, limit in variants:
                run(sp, flt, q, limit)
        times: dict[str, list[float]] = {label: [] for label, *_ in variants}
        hits: dict[str, list[float]] = {label: [] for label, *_ in variants}
        for i, q in enumerate(measured):
            for k in range(len(variants)):
                label, sp, flt, limit = variants[(i + k) % len(variants)]
                t = time.perf_counter_ns()
                found = run(sp, flt, q, limit)
                times[label].append((time.perf_counter_ns() - t) / 1e6)
                hits[label].append(len(set(found) & set(truth_measured[i].tolist())) / 10)
        exact_times, exact_hits = [], []
        for i, q in enumerate(measured[:30]):
            t = time.perf_counter_ns()
            found = run(exact, owner, q)
            exact_times.append((time.perf_counter_ns() - t) / 1e6)
            exact_hits.append(len(set(found) & set(truth_measured[i].tolist())) / 10)
        for label, *_ in variants:
            rows.append((label, kind, float(np.mean(hits[label])), summary(times[label])))
        rows.append(("exact float (brute force)", kind, float(np.mean(exact_hits)), summary(exact_times)))
        for label, k, recall, s in rows[-len(variants) - 1:]:
            print(f"   {label:42s} {k:8s} recall@10 {recall:.3f}  {fmt_summary(s)}", flush=True)
    store._search_params = cfg.search_params()
    lat_end = load_text()
    store.close()
    shard = du(root / "vectors")
    wal = du(root / "vectors" / "wal")
    print(f"   disk {mib(shard[0])} apparent / {mib(shard[1])} allocated", flush=True)
    ram_line = "ram        not measured (--no-rss)"
    if not args.no_rss:
        spec = {"kind": "vectors", "root": str(root), "collection": "vectors", "queries": list(range(200))}
        full = probe_rss(spec)
        empty = probe_rss({**spec, "collection": "empty"})
        after, base = full["after_queries"], empty["after_queries"]
        ram_line = (f"ram        fresh process, open + 200 searches: {after['VmRSS']:.0f} MiB vs {base['VmRSS']:.0f} MiB "
                    f"empty -> +{after['VmRSS'] - base['VmRSS']:.0f} MiB (anon +{after['RssAnon'] - base['RssAnon']:.0f}, "
                    f"file-backed +{after['RssFile'] - base['RssFile']:.0f}); open {full['open_s']:.1f} s")
        print("   " + ram_line, flush=True)

    report = [
        "-" * 100,
        f"vectors    {n:,} x 384-d: {distinct:,} real MiniLM embeddings of generated memories + {n - distinct:,} "
        f"noisy copies (σ={sigma:.4f}/dim, calibrated: median NN cosine among the real ones {median_nn:.3f}); "
        f"shuffled; payload owner_id (all o0) + user_id (100 values)",
        f"queries    {args.queries} of each kind (+{args.warmup} warm-up), real MiniLM embeddings: question = "
        f"generated questions, stmt = held-out generated memories; exact truth by numpy in {truth_s:.1f} s",
        *(f"neighbourhood  {kind}: real only: {real};  all: {full}" for kind, (real, full) in profiles.items()),
        f"config     QdrantEdgeConfig defaults: {cfg.quantization} BQ, query {cfg.query_encoding}, oversampling "
        f"{cfg.oversampling}, rescore on, HNSW m={cfg.hnsw_m} ef_construct={cfg.hnsw_ef_construct}, "
        f"hnsw_ef={cfg.hnsw_ef}; optimize_after=0 (one optimize() after the bulk load)",
        f"insert     {insert_s:.1f} s ({n / insert_s:,.0f} vectors/s, QdrantEdgeStore.insert, {step:,} per call); "
        f"load avg at start {load_insert}",
        f"optimize   {optimize_s:.1f} s; points {info['points_count']:,}, indexed {info['indexed_vectors_count']:,}, "
        f"segments {info['segments_count']}; load avg at end {load_build_end}",
        f"load avg   latency phase {lat_start} -> {lat_end}",
        *(f"{label:42s} {kind:8s} recall@10 {r:.3f}  {fmt_summary(s)}" for label, kind, r, s in rows),
        f"disk       shard {mib(shard[0])} apparent / {mib(shard[1])} allocated (WAL {mib(wal[0])} / {mib(wal[1])})",
        f"ram        this process: {rss_before['VmRSS']:.0f} MiB before the store, {rss_built['VmRSS']:.0f} MiB after "
        f"optimize, peak {rss_built['VmHWM']:.0f} MiB (incl. {vectors.nbytes / 2**20:,.0f} MiB of numpy vectors)",
        ram_line,
    ]
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("service", "vectors", "all"), default="all")
    ap.add_argument("--sizes", default="10000,100000", help="memory counts for the service part (default 10000,100000)")
    ap.add_argument("--users", type=int, default=100, help="end-user ids the memories are spread over (default 100)")
    ap.add_argument("--chunk", type=int, default=100, help="memories per add_many call, one user_id each (default 100)")
    ap.add_argument("--queries", type=int, default=300, help="timed queries per case (default 300)")
    ap.add_argument("--warmup", type=int, default=30, help="uncounted queries first (default 30)")
    ap.add_argument("--vectors", type=int, default=1_000_000, help="vectors for the vector-only part (default 1M)")
    ap.add_argument("--distinct", type=int, default=50_000, help="distinct embedded sentences (default 50000)")
    ap.add_argument("--noise", type=float, help="σ of the copies' noise (default: calibrated, see noise_for)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model-cache", type=Path, help="ONNX export cache (default: the app's, ~/.cache/optimus)")
    ap.add_argument("--quiet-load", type=float, default=1.0, help="wait until the 1-min load is below this")
    ap.add_argument("--max-wait", type=float, default=1200, help="longest wait for a quiet machine, s (default 1200)")
    ap.add_argument("--no-rss", action="store_true", help="skip the fresh-process RAM probes")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, no waiting, no RAM probe: a smoke run in seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory and print its path")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        _probe_main(json.loads(args.probe))
        return 0
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        args.sizes, args.users, args.chunk, args.queries, args.warmup = [300], 10, 50, 20, 5
        args.vectors, args.distinct, args.max_wait, args.no_rss = 2_000, 500, 0, True
    if args.model_cache is None:
        from core.config import load_settings

        args.model_cache_resolved = load_settings().model_cache
    else:
        args.model_cache_resolved = args.model_cache
    args.model_cache = args.model_cache_resolved

    started, load_start = time.perf_counter(), load_text()
    tmp = Path(tempfile.mkdtemp(prefix="optimus-bench-search-"))
    report: list[str] = []
    try:
        if args.part in ("service", "all"):
            report += part_service(args, tmp / "service")
        if args.part in ("vectors", "all"):
            report += part_vectors(args, tmp / "vectors")
    finally:
        from core.memory.edge_shards import close_all_shards

        close_all_shards()
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("=" * 100)
    print("Memory search benchmark")
    print("-" * 100)
    print(*machine_lines(), sep="\n")
    print(f"load avg   {load_start} at start, {load_text()} at end (1 / 5 / 15 min)")
    print(f"params     part={args.part} sizes={args.sizes} users={args.users} chunk={args.chunk} "
          f"queries={args.queries} warmup={args.warmup} vectors={args.vectors:,} distinct={args.distinct:,} "
          f"seed={args.seed}")
    print(*report, sep="\n")
    print(f"total      {time.perf_counter() - started:.0f} s")
    print("=" * 100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
