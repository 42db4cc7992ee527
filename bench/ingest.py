"""Benchmark: raw memory ingest rate through MemoryService (batch ``add_many`` and single ``add``).

Builds a real ``MemoryService`` as the app does in embedded mode (bundled MiniLM on ONNX, Qdrant
Edge in a temp dir, SQLite history) and measures:

* ``add_many``: ``--memories`` realistic memory sentences (10-25 words, ``bench/memory_search.py``'s
  generator) for one owner, ``--chunk`` per call, each call for one of ``--users`` end-user ids;
  memories/s over the whole run (embedding, vector store writes incl. the store's inline
  ``optimize()`` every 1,000 points, history rows);
* ``add``: ``--singles`` calls, one memory each (the UI path), p50/p95 and calls/s;
* where the time of ``add_many`` goes, two ways: each stage alone on the same kind of input
  (``LocalEmbedder.embed_batch``, ``QdrantEdgeStore.insert`` on a fresh collection with the same
  payloads, ``SqlHistory.batch_add_history``), and ``cProfile`` of one ``add_many`` call.

Run from the repository root::

    .venv/bin/python bench/ingest.py            # 20,000 memories + 500 single adds, ~2 min
    .venv/bin/python bench/ingest.py --quick    # a smoke run in seconds

Waits (up to ``--max-wait`` s) for the 1-minute load average to drop below ``--quiet-load``
before timing, and prints the load average at the start and end of each timed phase.
This is a benchmark, not a test: it asserts nothing about speed, it prints figures.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory_search import (  # noqa: E402
    OWNER,
    fmt_summary,
    load_text,
    machine_lines,
    memory_texts,
    open_service,
    summary,
    take,
    wait_for_quiet,
)

# Stages of add_many as cProfile names them (substring of "file:line(function)" or the builtin's name).
STAGES = (
    ("embedding (LocalEmbedder.embed_batch)", "embedder.py", "embed_batch"),
    ("  ONNX session.run", "", "onnxruntime_pybind11_state.run"),
    ("  tokenizer.encode_batch", "", "method 'encode_batch'"),
    ("vector store insert (QdrantEdgeStore.insert)", "vector_edge.py", "(insert)"),
    ("  of which BM25 embed_document", "", "embed_document"),
    ("  of which inline optimize()", "vector_edge.py", "(_optimize)"),
    ("history (SqlHistory.batch_add_history)", "history.py", "(batch_add_history)"),
    ("lemmatize_for_bm25 (mem0)", "lemmatization.py", "lemmatize_for_bm25"),
    ("validation + payloads (_metadata, NewMemory)", "service.py", "(_metadata)"),
    ("MemoryRecord building (_record)", "service.py", "(_record)"),
)


def stage_times(stats: pstats.Stats) -> list[tuple[str, float]]:
    out = []
    for label, file_part, func_part in STAGES:
        total = 0.0
        for (filename, line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            name = f"{filename}:{line}({func})"
            if file_part and file_part not in filename:
                continue
            if func_part in name or func_part in func:
                total = max(total, ct)  # cumulative time of the function (not summed over recursion)
        out.append((label, total))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memories", type=int, default=20_000, help="memories written with add_many (default 20000)")
    ap.add_argument("--chunk", type=int, default=1_000, help="memories per add_many call (default 1000)")
    ap.add_argument("--users", type=int, default=100, help="end-user ids the calls rotate over (default 100)")
    ap.add_argument("--singles", type=int, default=500, help="timed single add() calls (default 500)")
    ap.add_argument("--stage", type=int, default=4_000, help="memories for the per-stage timings (default 4000)")
    ap.add_argument("--profile", type=int, default=2_000, help="memories in the profiled add_many call (default 2000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model-cache", type=Path, help="ONNX export cache (default: the app's, ~/.cache/optimus)")
    ap.add_argument("--quiet-load", type=float, default=1.0, help="wait until the 1-min load is below this")
    ap.add_argument("--max-wait", type=float, default=1200, help="longest wait for a quiet machine, s (default 1200)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, no waiting: a smoke run in seconds")
    args = ap.parse_args(argv)
    if args.quick:
        args.memories, args.chunk, args.users, args.singles, args.stage, args.profile, args.max_wait = (
            600, 200, 3, 30, 300, 200, 0)

    from core.config import load_settings
    from core.memory.embedder import LocalEmbedder, get_embedder, onnx_cache_dir
    from core.memory.history import SqlHistory, attribution
    from core.memory.types import Scope
    from core.memory.edge_shards import close_all_shards
    from core.memory.vector_edge import QdrantEdgeStore

    model_cache = args.model_cache or load_settings().model_cache
    started, load_start = time.perf_counter(), load_text()
    tmp = Path(tempfile.mkdtemp(prefix="optimus-bench-ingest-"))
    texts = memory_texts(args.seed)
    users = [f"user-{i:03d}" for i in range(args.users)]
    report: list[str] = []
    try:
        service, engine = open_service(tmp, model_cache=model_cache)
        embedder = get_embedder("onnx", cache_dir=model_cache)
        service.add(Scope(OWNER, "warm-up"), "Warm-up memory so the model and the shard are loaded.")
        service.add_many(Scope(OWNER, "warm-up"), take(texts, 64))

        # --- add_many
        print(f"add_many: {args.memories:,} memories, {args.chunk} per call "
              f"(load {wait_for_quiet(args.quiet_load, args.max_wait)})", flush=True)
        batch_load = load_text()
        t0 = time.perf_counter()
        done = calls = 0
        while done < args.memories:
            k = min(args.chunk, args.memories - done)
            service.add_many(Scope(OWNER, users[calls % len(users)]), take(texts, k))
            done += k
            calls += 1
        batch_s = time.perf_counter() - t0
        batch_load_end = load_text()
        print(f"  {done:,} in {batch_s:.1f} s = {done / batch_s:,.0f} memories/s", flush=True)

        # --- single add()
        print(f"add: {args.singles} single calls (load {wait_for_quiet(args.quiet_load, args.max_wait)})", flush=True)
        single_load = load_text()
        singles = take(texts, args.singles)
        lat = []
        t0 = time.perf_counter()
        for i, text in enumerate(singles):
            t = time.perf_counter_ns()
            service.add(Scope(OWNER, users[i % len(users)]), text)
            lat.append((time.perf_counter_ns() - t) / 1e6)
        single_s = time.perf_counter() - t0
        single_load_end = load_text()
        single = summary(lat)
        print(f"  {fmt_summary(single)}; {args.singles / single_s:,.0f} calls/s", flush=True)

        # --- each stage alone, on inputs like add_many's
        print(f"stages alone on {args.stage:,} memories (load {wait_for_quiet(args.quiet_load, args.max_wait)})",
              flush=True)
        stage_load = load_text()
        stage_texts = take(texts, args.stage)
        t0 = time.perf_counter()
        vectors = []
        for a in range(0, len(stage_texts), 256):  # add_many's default batch_size
            vectors += embedder.embed_batch(stage_texts[a:a + 256])
        embed_s = time.perf_counter() - t0
        now = datetime.now(UTC).isoformat()
        payloads = [
            {"owner_id": OWNER, "type": "note", "importance": 3, "confidence": 1.0, "entities": [], "people": [],
             "tags": [], "source": "import", "user_id": users[0], "role": "user", "data": t,
             "hash": hashlib.md5(t.encode()).hexdigest(), "created_at": now, "updated_at": now,
             "text_lemmatized": t}
            for t in stage_texts
        ]
        ids = [str(uuid.uuid4()) for _ in stage_texts]
        probe = QdrantEdgeStore(collection_name="stage_probe", path=str(tmp / "vectors"), embedding_model_dims=384)
        t0 = time.perf_counter()
        for a in range(0, len(stage_texts), 256):
            probe.insert(vectors[a:a + 256], payloads[a:a + 256], ids[a:a + 256])
        insert_s = time.perf_counter() - t0
        probe.delete_col()
        history = SqlHistory(engine)
        rows = [{"memory_id": i, "old_memory": None, "new_memory": t, "event": "ADD", "created_at": now,
                 "updated_at": now, "role": "user"} for i, t in zip(ids, stage_texts, strict=True)]
        t0 = time.perf_counter()
        with attribution(Scope(OWNER, users[0]), "import"):
            for a in range(0, len(rows), 256):
                history.batch_add_history(rows[a:a + 256])
        history_s = time.perf_counter() - t0
        # The alternative backend, for comparison: the same export quantised to int8 (in a temp cache).
        int8_root = tmp / "models"
        int8_dir = onnx_cache_dir(int8_root)
        int8_dir.mkdir(parents=True)
        shutil.copy(onnx_cache_dir(model_cache) / "model.onnx", int8_dir / "model.onnx")
        int8 = LocalEmbedder("onnx-int8", cache_dir=int8_root)
        int8.embed_batch(stage_texts[:64])
        t0 = time.perf_counter()
        for a in range(0, len(stage_texts), 256):
            int8.embed_batch(stage_texts[a:a + 256])
        int8_s = time.perf_counter() - t0
        stage_load_end = load_text()
        n = len(stage_texts)
        stage_rows = [
            ("embedding: LocalEmbedder.embed_batch, 256 per call", embed_s),
            ("vector store: QdrantEdgeStore.insert, 256 per call", insert_s),
            ("history: SqlHistory.batch_add_history, 256 per call", history_s),
            (f"(alternative: embed_batch on {int8.backend}, not the default)", int8_s),
        ]
        for label, s in stage_rows:
            print(f"  {label:55s} {s:6.2f} s  {n / s:8,.0f}/s  {1e3 * s / n:6.3f} ms per memory", flush=True)

        # --- cProfile of one add_many call
        prof_texts = take(texts, args.profile)
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        service.add_many(Scope(OWNER, users[1]), prof_texts)
        profiler.disable()
        prof_s = time.perf_counter() - t0
        stats = pstats.Stats(profiler, stream=io.StringIO())
        stages = stage_times(stats)
        top = io.StringIO()
        pstats.Stats(profiler, stream=top).sort_stats("tottime").print_stats(12)
        total_points = service.store.count()
        service.store.close()
        engine.dispose()

        report += [
            f"params     memories={args.memories:,} chunk={args.chunk} users={args.users} singles={args.singles} "
            f"stage={args.stage:,} profile={args.profile:,} seed={args.seed}; embedder {embedder.backend}; "
            f"points at end {total_points:,}",
            "-" * 100,
            f"add_many   {done:,} memories in {batch_s:.1f} s = {done / batch_s:,.0f} memories/s "
            f"({calls} calls); load {batch_load} -> {batch_load_end}",
            f"add        {fmt_summary(single)}; {args.singles / single_s:,.0f} calls/s; "
            f"load {single_load} -> {single_load_end}",
            "-" * 100,
            f"stages alone, {n:,} memories (load {stage_load} -> {stage_load_end}):",
            *(f"  {label:55s} {s:6.2f} s  {n / s:8,.0f}/s  {1e3 * s / n:6.3f} ms/memory" for label, s in stage_rows),
            f"cProfile of add_many({args.profile:,}): {prof_s:.2f} s under the profiler; cumulative time per stage:",
            *(f"  {label:55s} {t:6.2f} s  {100 * t / prof_s:5.1f} %" for label, t in stages),
            "top functions by own time:",
            *["  " + line for line in top.getvalue().splitlines() if line.strip()
              and ("{" in line or ".py" in line or "ncalls" in line)][:14],
        ]
    finally:
        close_all_shards()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("=" * 100)
    print("Memory ingest benchmark (MemoryService on Qdrant Edge + SQLite, ONNX MiniLM)")
    print("-" * 100)
    print(*machine_lines(), sep="\n")
    print(f"load avg   {load_start} at start, {load_text()} at end (1 / 5 / 15 min)")
    print(*report, sep="\n")
    print(f"total      {time.perf_counter() - started:.0f} s")
    print("=" * 100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
