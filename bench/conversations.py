"""Benchmark: ConversationStore.append() and context() latency on SQLite at scale.

Builds a throw-away SQLite database with the real Alembic migrations, seeds it in bulk with
SQLAlchemy Core (default 10,000 conversations x 100 turns = 1,000,000 messages), then measures
the public API the app uses:

* ``append()``  - one call (one transaction) per message, to random conversations;
* ``context()`` - the last ``default_turns`` (10) messages of random conversations.

Run from the repository root::

    .venv/bin/python bench/conversations.py                                   # full size
    .venv/bin/python bench/conversations.py --conversations 100 --turns 10     # quick check

This is a benchmark, not a test: it asserts nothing about speed, it prints figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text  # noqa: E402

from core.conversations import ConversationStore  # noqa: E402
from core.db import make_engine, migrate, sqlite_url  # noqa: E402
from core.schema import conversations, messages, users  # noqa: E402

DB_FILE = "optimus.db"
CONVERSATIONS_PER_USER = 10
BATCH = 50_000  # rows per executemany / transaction while seeding
MODELS = ("gpt-4o-mini", "claude-3-5-haiku", "llama-3.1-8b")

_WORDS = (
    "the model answers questions about data pipelines retention storage latency index query "
    "conversation message context window token budget cache vector memory user assistant "
    "summary table schema migration backup restore replica write read commit transaction"
).split()


def _text_pool(rng: random.Random, size: int = 512) -> list[str]:
    """Message bodies of realistic, varied length (about 40-1,200 characters)."""
    pool = []
    for _ in range(size):
        n = int(rng.lognormvariate(3.6, 0.8))  # median ~37 words, long tail
        n = max(6, min(n, 200))
        pool.append(" ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + ".")
    return pool


def _percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def _summary(ns: list[int]) -> dict[str, float]:
    ms = sorted(v / 1e6 for v in ns)
    return {
        "n": len(ms),
        "p50": _percentile(ms, 50),
        "p95": _percentile(ms, 95),
        "p99": _percentile(ms, 99),
        "mean": statistics.fmean(ms),
        "max": ms[-1],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _file_sizes(db_path: Path) -> dict[str, int]:
    sizes = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(db_path) + suffix)
        sizes[suffix or "db"] = p.stat().st_size if p.exists() else 0
    return sizes


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f} MiB"


def seed(engine, *, n_convs: int, turns: int, rng: random.Random, pool: list[str]) -> tuple[list[tuple[str, str]], int]:
    """Bulk-insert users, conversations and their messages; return [(conv_id, user_id)] and rows.

    Messages are inserted round-robin by turn (turn 0 of every conversation, then turn 1, ...),
    so one conversation's messages are spread over the table as they are when many people chat
    at once, rather than stored contiguously (which would flatter context()).
    Each conversation ends up exactly as ``append()`` would leave it: ``message_count`` = turns,
    ``updated_at`` = its last message's ``created_at``.
    """
    n_users = max(1, -(-n_convs // CONVERSATIONS_PER_USER))
    start = datetime.now(UTC) - timedelta(days=30)
    # One step per message overall keeps created_at increasing with id, like real appends.
    total = n_convs * turns
    step = timedelta(days=29) / max(1, total)

    user_rows = [
        {"id": uuid.uuid4().hex, "username": f"bench-user-{i:06d}", "email": None, "role": "user", "created_at": start}
        for i in range(n_users)
    ]
    convs = [(uuid.uuid4().hex, user_rows[i % n_users]["id"]) for i in range(n_convs)]

    def msg_time(turn: int, idx: int) -> datetime:
        return start + step * (turn * n_convs + idx + 1)

    last_turn = turns - 1
    conv_rows = [
        {
            "id": cid,
            "user_id": uid,
            "title": f"Bench conversation {i}",
            "created_at": start,
            "updated_at": msg_time(last_turn, i) if turns else start,
            "message_count": turns,
        }
        for i, (cid, uid) in enumerate(convs)
    ]

    with engine.begin() as conn:
        for i in range(0, len(user_rows), BATCH):
            conn.execute(insert(users), user_rows[i : i + BATCH])
    with engine.begin() as conn:
        for i in range(0, len(conv_rows), BATCH):
            conn.execute(insert(conversations), conv_rows[i : i + BATCH])

    stmt = insert(messages)
    batch: list[dict] = []
    inserted = 0
    last_report = time.perf_counter()
    for turn in range(turns):
        role = "user" if turn % 2 == 0 else "assistant"
        for idx, (cid, _uid) in enumerate(convs):
            assistant = role == "assistant"
            batch.append(
                {
                    "conversation_id": cid,
                    "role": role,
                    "content": pool[rng.randrange(len(pool))],
                    "model": MODELS[idx % len(MODELS)] if assistant else None,
                    "input_tokens": rng.randint(200, 4000) if assistant else None,
                    "output_tokens": rng.randint(20, 800) if assistant else None,
                    "created_at": msg_time(turn, idx),
                }
            )
            if len(batch) >= BATCH:
                with engine.begin() as conn:
                    conn.execute(stmt, batch)
                inserted += len(batch)
                batch = []
                if time.perf_counter() - last_report > 10:
                    print(f"  ... {inserted:,} / {total:,} messages", flush=True)
                    last_report = time.perf_counter()
    if batch:
        with engine.begin() as conn:
            conn.execute(stmt, batch)
        inserted += len(batch)
    return convs, inserted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=10_000, help="conversations to seed (default 10000)")
    ap.add_argument("--turns", type=int, default=100, help="messages per seeded conversation (default 100)")
    ap.add_argument("--appends", type=int, default=2_000, help="measured append() calls (default 2000)")
    ap.add_argument("--contexts", type=int, default=5_000, help="measured context() calls (default 5000)")
    ap.add_argument("--warmup", type=int, default=300, help="uncounted calls of each kind first (default 300)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temp database and print its path")
    args = ap.parse_args(argv)
    if args.conversations < 1 or args.turns < 0 or args.appends < 1 or args.contexts < 1 or args.warmup < 0:
        ap.error("--conversations/--appends/--contexts must be >= 1, --turns/--warmup >= 0")

    rng = random.Random(args.seed)
    pool = _text_pool(rng)
    tmp = Path(tempfile.mkdtemp(prefix="optimus-bench-conv-"))
    db_path = tmp / DB_FILE
    engine = make_engine(sqlite_url(db_path))
    try:
        print(f"database: {db_path}")
        t0 = time.perf_counter()
        migrate(engine)
        print(f"migrate:  {time.perf_counter() - t0:.2f} s")

        print(f"seeding {args.conversations:,} conversations x {args.turns} turns ...", flush=True)
        t0 = time.perf_counter()
        convs, n_msgs = seed(engine, n_convs=args.conversations, turns=args.turns, rng=rng, pool=pool)
        seed_s = time.perf_counter() - t0
        print(f"seeded:   {n_msgs:,} messages in {seed_s:.1f} s ({n_msgs / max(seed_s, 1e-9):,.0f} rows/s)")
        with engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        seeded_sizes = _file_sizes(db_path)

        store = ConversationStore(engine)  # production defaults: no cap, no TTL, 10 turns

        def do_append(i: int) -> None:
            cid, uid = convs[rng.randrange(len(convs))]
            assistant = i % 2 == 1
            store.append(
                cid,
                "assistant" if assistant else "user",
                pool[rng.randrange(len(pool))],
                user_id=uid,
                model=MODELS[i % len(MODELS)] if assistant else None,
                input_tokens=rng.randint(200, 4000) if assistant else None,
                output_tokens=rng.randint(20, 800) if assistant else None,
            )

        def do_context(_i: int) -> None:
            cid, uid = convs[rng.randrange(len(convs))]
            got = store.context(cid, user_id=uid)
            if args.turns >= store.default_turns and len(got) != store.default_turns:
                raise RuntimeError(f"context() returned {len(got)} messages, expected {store.default_turns}")

        def measure(fn, n: int) -> list[int]:
            out = []
            for i in range(n):
                t = time.perf_counter_ns()
                fn(i)
                out.append(time.perf_counter_ns() - t)
            return out

        print(f"warm-up:  {args.warmup} append() + {args.warmup} context() (not counted)", flush=True)
        measure(do_append, args.warmup)
        measure(do_context, args.warmup)

        print(f"measuring {args.appends:,} append() ...", flush=True)
        t0 = time.perf_counter()
        append_ns = measure(do_append, args.appends)
        append_wall = time.perf_counter() - t0
        print(f"measuring {args.contexts:,} context() ...", flush=True)
        t0 = time.perf_counter()
        context_ns = measure(do_context, args.contexts)
        context_wall = time.perf_counter() - t0

        with engine.connect() as conn:
            n_users = conn.execute(select(func.count()).select_from(users)).scalar_one()
            n_convs = conn.execute(select(func.count()).select_from(conversations)).scalar_one()
            n_rows = conn.execute(select(func.count()).select_from(messages)).scalar_one()
            n_counted = conn.execute(select(func.sum(conversations.c.message_count))).scalar_one()
        if n_counted != n_rows:
            print(f"WARNING: sum(message_count)={n_counted:,} but messages has {n_rows:,} rows")
        sizes = _file_sizes(db_path)
        engine.dispose()

        a, c = _summary(append_ns), _summary(context_ns)
        print()
        print("=" * 72)
        print("Conversations benchmark (SQLite)")
        print("-" * 72)
        print(f"platform   {platform.platform()}")
        print(f"cpu        {_cpu_model()}  (nproc={os.cpu_count()})")
        print(f"ram        {_ram()}")
        print(f"python     {platform.python_version()} ({platform.python_implementation()})")
        print(f"sqlite     {sqlite3.sqlite_version}")
        print(f"command    {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
        print("-" * 72)
        print(f"seed       {args.conversations:,} conversations x {args.turns} turns = {n_msgs:,} messages "
              f"in {seed_s:.1f} s")
        print(f"rows       users={n_users:,}  conversations={n_convs:,}  messages={n_rows:,} (after appends)")
        print(f"db size    after seed: {_mib(seeded_sizes['db'])} (+ wal {_mib(seeded_sizes['-wal'])}); "
              f"at end: {_mib(sizes['db'])} + wal {_mib(sizes['-wal'])} = {_mib(sizes['db'] + sizes['-wal'])}")
        print("-" * 72)
        print(f"append   p50={a['p50']:.2f} ms  p95={a['p95']:.2f} ms  mean={a['mean']:.2f} ms  "
              f"p99={a['p99']:.2f} ms  max={a['max']:.2f} ms  (n={a['n']:,}, {a['n'] / append_wall:,.0f}/s)")
        print(f"context  p50={c['p50']:.2f} ms  p95={c['p95']:.2f} ms  mean={c['mean']:.2f} ms  "
              f"p99={c['p99']:.2f} ms  max={c['max']:.2f} ms  (n={c['n']:,}, turns={store.default_turns}, "
              f"{c['n'] / context_wall:,.0f}/s)")
        print("=" * 72)
        return 0
    finally:
        engine.dispose()
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
