"""Binary quantization on Qdrant Edge for 384-d MiniLM memories: recall@10 and latency per encoding.

For each quantization (none / 1bit / 1.5bit / 2bit) and query encoding (default / scalar8bits) a
shard is built with the production settings of ``QdrantEdgeConfig`` (HNSW m=16, ef_construct=100,
payload indexes incl. the owner_id tenant index), optimized, then queried with an owner filter at
oversampling 1 / 2 / 4 (rescore on). Recall@10 is against exact float search over the same owner's
points; latency is single-threaded ``QdrantEdgeStore.search`` (payload included), after warm-up.

Corpus: template sentences about people, places, preferences and plans, embedded with the bundled
all-MiniLM-L6-v2 (the production embedder, ONNX). Sizes above the number of distinct sentences are
filled with noisy copies of their embeddings (Gaussian noise, renormalized), which the output says.
By default the noise is calibrated so a copy is as close to its source as a real sentence is to
its nearest other sentence (median nearest-neighbour cosine among the distinct embeddings).

The choice printed at the end: among the quantized configurations (encoding x query encoding x
oversampling) whose recall@10 is >= 0.95 for both tenants at every size, the one with the lowest
latency (mean p50 of the two tenants at the largest size; p95 shown too). Float (``none``) is
measured as the reference only.

    cd /work/main && .venv/bin/python bench/bq_encoding.py            # 10k and 100k, ~15 min
    cd /work/main && .venv/bin/python bench/bq_encoding.py --quick    # 2k points, ~30 s

Waits (up to ``--max-wait`` s) until the 1-minute load average is below ``--quiet-load`` before
measuring; prints the machine, versions and the load average at start and end.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")

from core.memory.edge_shards import close_all_shards  # noqa: E402
from core.memory.vector_edge import QdrantEdgeStore  # noqa: E402

NAMES = ["Alice", "Bob", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luca",
         "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yusuf", "Zoe"]
RELATIONS = ["sister", "brother", "mother", "father", "colleague", "neighbour", "best friend", "manager",
             "daughter", "son", "partner", "cousin", "landlord", "dentist", "coach"]
PLACES = ["Lisbon", "Oslo", "Kyoto", "Nairobi", "Lima", "Montreal", "Hanoi", "Cape Town", "Reykjavik", "Porto",
          "Seville", "Krakow", "Melbourne", "Istanbul", "Vancouver", "Marrakesh", "Tallinn", "Bologna", "Quito",
          "Busan"]
FOODS = ["ramen", "green tea", "dark chocolate", "sourdough bread", "spicy curry", "oat milk lattes", "sushi",
         "lentil soup", "mango sticky rice", "black coffee", "goat cheese", "falafel", "pho", "tiramisu", "kimchi"]
HOBBIES = ["rock climbing", "playing the cello", "trail running", "knitting", "chess", "birdwatching", "pottery",
           "salsa dancing", "sailing", "painting watercolours", "baking bread", "cycling", "yoga", "gardening",
           "photography", "learning Japanese", "board games", "swimming", "woodworking", "stargazing"]
DAYS = ["on Monday", "next Tuesday", "this weekend", "on Friday evening", "in March", "next summer",
        "at the end of the month", "tomorrow morning", "after the holidays", "in two weeks"]
ACTIVITIES = ["visit", "fly to", "move to", "attend a conference in", "spend a week in", "go hiking near",
              "look for a flat in", "take a cooking class in"]
TEMPLATES = [
    "My {rel} {name} lives in {place}.",
    "{name} is my {rel} and loves {food}.",
    "I really enjoy {hobby}, especially with {name}.",
    "I plan to {act} {place} {day}.",
    "I prefer {food} over {food2}.",
    "{name} recommended {hobby} to me {day}.",
    "I am allergic to {food}, so please avoid it.",
    "My {rel} {name} is learning {hobby}.",
    "I started {hobby} last year and want to continue {day}.",
    "Remind me to call {name} about the trip to {place} {day}.",
    "{name} and I want to {act} {place} together.",
    "I don't like {food} but my {rel} {name} does.",
]


QUESTIONS = [
    "Where does my {rel} {name} live?",
    "What food does {name} love?",
    "Which trips am I planning {day}?",
    "What am I allergic to?",
    "Who recommended {hobby} to me?",
    "What is my {rel} learning at the moment?",
    "Who should I call about {place}?",
    "What do I like to eat?",
    "Which hobbies do I enjoy with {name}?",
    "What are my plans for {place}?",
]


def questions(count: int, seed: int) -> list[str]:
    """Search queries as people type them: questions, which sit farther from their answers than
    the memories sit from each other (top-1 cosine ~0.6 rather than ~0.85)."""
    rng = random.Random(seed)
    return [rng.choice(QUESTIONS).format(name=rng.choice(NAMES), rel=rng.choice(RELATIONS), place=rng.choice(PLACES),
                                         hobby=rng.choice(HOBBIES), day=rng.choice(DAYS)) for _ in range(count)]


def sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        food, food2 = rng.sample(FOODS, 2)
        text = rng.choice(TEMPLATES).format(
            name=rng.choice(NAMES), rel=rng.choice(RELATIONS), place=rng.choice(PLACES), food=food, food2=food2,
            hobby=rng.choice(HOBBIES), day=rng.choice(DAYS), act=rng.choice(ACTIVITIES),
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def embed(texts: list[str]) -> np.ndarray:
    """Unit vectors from the production embedder (ONNX MiniLM, the app's model cache)."""
    from core.config import load_settings
    from core.memory.embedder import get_embedder

    embedder = get_embedder("onnx", cache_dir=load_settings().model_cache)
    return np.vstack([embedder.encode(texts[a:a + 2048]) for a in range(0, len(texts), 2048)])


def calibrated_noise(base: np.ndarray, rng: np.random.Generator, sample: int = 2000) -> tuple[float, float]:
    """σ with cos(copy, source) ≈ 1/sqrt(1 + d·σ²) equal to the median nearest-neighbour cosine of ``base``."""
    idx = rng.choice(len(base), size=min(sample, len(base)), replace=False)
    sims = base[idx] @ base.T
    sims[np.arange(len(idx)), idx] = -1.0
    median_nn = float(np.median(sims.max(axis=1)))
    return float(np.sqrt((1 / median_nn**2 - 1) / base.shape[1])), median_nn


def owners_for(n: int, rng: np.random.Generator) -> np.ndarray:
    """30% to owner o0, the rest spread over 70 small owners of ~1% each."""
    return np.where(rng.random(n) < 0.30, 0, 1 + rng.integers(0, 70, n))


def build(root: Path, name: str, vectors: np.ndarray, owners: np.ndarray, quantization: str, encoding: str):
    store = QdrantEdgeStore(
        collection_name=name, path=str(root), embedding_model_dims=vectors.shape[1], quantization=quantization,
        query_encoding=encoding, optimize_after=0,
    )
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(vectors))]
    start = time.perf_counter()
    for a in range(0, len(vectors), 2000):
        b = a + 2000
        store.insert(vectors[a:b], [{"owner_id": f"o{o}", "data": ""} for o in owners[a:b]], ids[a:b])
    ingest = time.perf_counter() - start
    start = time.perf_counter()
    store.optimize()
    optimize = time.perf_counter() - start
    return store, ingest, optimize


def measure(store: QdrantEdgeStore, vectors, owners, queries, owner: int, oversampling: float, truth, ef: int = 128):
    store._search_params = store.config.model_copy(update={"oversampling": oversampling, "hnsw_ef": ef}).search_params()
    flt = {"owner_id": f"o{owner}"}
    for q in queries[:10]:
        store.search("", q, top_k=10, filters=flt)
    lat, hits_ok, worst = [], 0, 0.0
    for q, expected in zip(queries, truth):
        t = time.perf_counter()
        hits = store.search("", q, top_k=10, filters=flt)
        lat.append((time.perf_counter() - t) * 1000)
        got = [int(uuid.UUID(h.id).int) - 1 for h in hits]
        hits_ok += len(set(got) & set(expected))
        exact = vectors[got] @ q
        worst = max(worst, float(np.max(np.abs(exact - np.array([h.score for h in hits])))))
        assert all(owners[i] == owner for i in got), "owner filter violated"
    recall = hits_ok / (10 * len(queries))
    lat.sort()
    return recall, lat[len(lat) // 2], lat[int(len(lat) * 0.95) - 1], worst


def main() -> None:
    from bench.memory_search import load_text, machine_lines, wait_for_quiet

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--distinct", type=int, default=20_000, help="distinct sentences embedded")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--noise", type=float, help="per-dimension std of the copies' noise (default: calibrated)")
    parser.add_argument("--efs", default="128,256,512", help="hnsw_ef values searched (production: 128)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet-load", type=float, default=1.0, help="wait until the 1-min load is below this")
    parser.add_argument("--max-wait", type=float, default=1200, help="longest wait for a quiet machine, s")
    parser.add_argument("--quick", action="store_true", help="2,000 points, 30 queries, no waiting")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.distinct, args.queries, args.max_wait = "2000", 1500, 30, 0
    sizes = [int(s) for s in args.sizes.split(",")]
    efs = [int(e) for e in args.efs.split(",")]
    load_start = load_text()

    t0 = time.perf_counter()
    corpus = sentences(args.distinct + args.queries, args.seed)
    query_texts, corpus = corpus[: args.queries], corpus[args.queries :]
    emb = embed(corpus + query_texts + questions(args.queries, args.seed + 1))
    base = emb[: len(corpus)]
    query_sets = {"stmt": emb[len(corpus):len(corpus) + args.queries], "question": emb[len(corpus) + args.queries:]}
    print(f"embedded {len(emb)} sentences in {time.perf_counter() - t0:.0f}s", flush=True)

    rng = np.random.default_rng(args.seed)
    median_nn = float("nan")
    if args.noise is None:
        args.noise, median_nn = calibrated_noise(base, rng)
    print(f"noise σ={args.noise:.4f} per dimension (median NN cosine among distinct sentences {median_nn:.3f}); "
          f"load {wait_for_quiet(args.quiet_load, args.max_wait)}", flush=True)
    load_measure = load_text()
    configs = [("none", "default")] + [(q, e) for q in ("1bit", "1.5bit", "2bit") for e in ("default", "scalar8bits")]
    rows = []
    root = Path(tempfile.mkdtemp(prefix="bq_bench_"))
    try:
        for n in sizes:
            if n <= len(base):
                vectors = base[:n]
                note = "distinct sentences"
            else:
                reps = base[rng.integers(0, len(base), n - len(base))]
                noisy = reps + rng.normal(0, args.noise, reps.shape).astype(np.float32)
                noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
                vectors = np.vstack([base, noisy])
                note = f"{len(base)} distinct + {n - len(base)} noisy copies (σ={args.noise})"
            owners = owners_for(n, rng)
            small = int(np.bincount(owners)[1:].argmax()) + 1
            print(f"\n== {n} points: {note}; owner o0 holds {np.mean(owners == 0):.0%}, "
                  f"small owner o{small} {np.mean(owners == small):.1%}", flush=True)
            truth = {}
            for owner in (0, small):
                idx = np.flatnonzero(owners == owner)
                for kind, queries in query_sets.items():
                    sims = queries @ vectors[idx].T
                    truth[owner, kind] = [list(idx[np.argsort(-row)[:10]]) for row in sims]
            for quantization, encoding in configs:
                name = f"n{n}_{quantization}_{encoding}".replace(".", "_")
                store, ingest, optimize = build(root, name, vectors, owners, quantization, encoding)
                for ef in efs:
                    for oversampling in (1.0, 2.0, 4.0, 8.0) if quantization != "none" else (1.0,):
                        for owner, label in ((0, "30%"), (small, "1%")):
                            for kind, queries in query_sets.items():
                                recall, p50, p95, worst = measure(
                                    store, vectors, owners, queries, owner, oversampling, truth[owner, kind], ef
                                )
                                row = dict(n=n, quantization=quantization, encoding=encoding,
                                           oversampling=oversampling, ef=ef, tenant=label, kind=kind, recall=recall,
                                           p50=p50, p95=p95, score_err=worst, ingest=ingest, optimize=optimize)
                                rows.append(row)
                                print(f"{n:>7} {quantization:>6} {encoding:>11} os{oversampling:<3g} ef{ef:<4} "
                                      f"{label:>3} {kind:>8}  recall@10 {recall:.3f}  p50 {p50:.2f} ms  "
                                      f"p95 {p95:.2f} ms  max|score-cos| {worst:.1e}  optimize {optimize:.1f}s",
                                      flush=True)
                store.delete_col()
    finally:
        close_all_shards()
        shutil.rmtree(root, ignore_errors=True)

    # Chosen = the quantized configuration with the lowest latency (mean p50 of both tenants at the
    # largest size) among those whose recall@10 is >= 0.95 for both tenants at every size.
    largest = max(sizes)
    table = []
    for c in sorted({(r["quantization"], r["encoding"], r["oversampling"], r["ef"]) for r in rows}):
        mine = [r for r in rows if (r["quantization"], r["encoding"], r["oversampling"], r["ef"]) == c]
        top = [r for r in mine if r["n"] == largest]
        table.append(dict(config=c, min_recall=min(r["recall"] for r in mine),
                          stmt=min(r["recall"] for r in mine if r["kind"] == "stmt"),
                          question=min(r["recall"] for r in mine if r["kind"] == "question"),
                          p50=float(np.mean([r["p50"] for r in top])), p95=float(np.mean([r["p95"] for r in top])),
                          optimize=top[0]["optimize"]))
    table.sort(key=lambda t: t["p50"])
    print("\n" + "=" * 100)
    print("BQ encoding benchmark (Qdrant Edge, 384-d MiniLM, owner-filtered top-10)")
    print("-" * 100)
    print(*machine_lines(), sep="\n")
    print(f"load avg   {load_start} at start, {load_measure} when builds/measurements began, "
          f"{load_text()} at end (1 / 5 / 15 min)")
    print(f"params     sizes={sizes} distinct={args.distinct} queries={args.queries} noise={args.noise:.4f} "
          f"seed={args.seed}; HNSW m=16 ef_construct=100, hnsw_ef {efs}, rescore on")
    print("-" * 100)
    print("min recall@10 = the worst over both tenants and every size; stmt = held-out memory sentences as")
    print("queries, question = typed questions; latency = mean over tenants and query kinds at the largest size")
    print(f"{'quantization':>12} {'query enc':>11} {'os':>3} {'ef':>4} {'min R stmt':>11} {'min R quest':>12} "
          f"{'p50 @' + str(largest):>12} {'p95 @' + str(largest):>12} {'optimize s':>11}  meets 0.95")
    for t in table:
        q, e, o, ef = t["config"]
        print(f"{q:>12} {e:>11} {o:>3g} {ef:>4} {t['stmt']:11.3f} {t['question']:12.3f} {t['p50']:12.2f} {t['p95']:12.2f} "
              f"{t['optimize']:11.1f}  {'yes' if t['min_recall'] >= 0.95 else 'stmt only' if t['stmt'] >= 0.95 else 'no'}")
    print("-" * 100)
    for label, key in (("both query kinds", "min_recall"), ("statement queries only", "stmt")):
        chosen = next((t for t in table if t["config"][0] != "none" and t[key] >= 0.95), None)
        print(f"chosen ({label}): {chosen['config'] if chosen else None}  (lowest latency among quantized "
              f"configs with recall@10 >= 0.95 for both tenants at {sizes})")
    print(f"total {time.perf_counter() - t0:.0f}s")
    print("=" * 100)


if __name__ == "__main__":
    main()
