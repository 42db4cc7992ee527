"""Benchmark: listing, counting and summarising one owner's memories as the owner grows.

``MemoryService.get_all`` (the Memories page, the API's list), ``count_matching`` (the API list's
``count``), ``stats`` (the Memories page header, ``/v1/optimus/stats/``) and ``entities``
(mem0's ``users()``) page, count and group in the engine (``core/memory/paging.py``). The
"read everything" row does what they did before: fetch every memory of the owner with its payload
and sort in Python.

The store is a real Qdrant Edge shard in a temp dir (the embedded default) behind a real
``MemoryService``; memories are written straight to the store with random unit vectors and the
payloads the service writes (listing never looks at vectors, so no embedding is needed). Each
owner size gets its own shard; another owner holds as many memories again, so filtering matters.

    .venv/bin/python bench/memory_listing.py                     # 100, 1,000, 10,000 memories
    .venv/bin/python bench/memory_listing.py --sizes 100 --runs 5

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")

import numpy as np  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.db import make_engine, migrate, sqlite_url  # noqa: E402
from core.memory.engine import build_memory_service  # noqa: E402
from core.memory.records import LIST_CAP, MemoryFilters  # noqa: E402
from core.memory.records import rows_of as _rows
from core.storage import Storage  # noqa: E402

TAGS = ["travel", "food", "work", "family", "health", "music", "books", "sport"]
PEOPLE = ["Ana", "Rita", "Miso", "Jon", "Lea"]


def fill(service, owner: str, count: int, rng: np.random.Generator) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(0, count, 1000):
        n = min(1000, count - first)
        vectors = rng.standard_normal((n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        payloads = []
        for i in range(first, first + n):
            created = (start + timedelta(minutes=i)).isoformat()
            payloads.append({
                "owner_id": owner, "user_id": f"end-user-{i % 20}", "data": f"Memory number {i} of {owner}",
                "type": ["note", "fact", "preference"][i % 3], "importance": 1 + i % 5, "confidence": 1.0,
                "tags": [TAGS[i % len(TAGS)], TAGS[(i * 7) % len(TAGS)]], "people": [PEOPLE[i % len(PEOPLE)]],
                "entities": [], "source": "bench", "hash": uuid.uuid4().hex, "created_at": created,
                "updated_at": created, **({"agent_id": f"agent-{i % 3}"} if i % 4 == 0 else {}),
            })
        service.store.insert(vectors=list(vectors), payloads=payloads, ids=[str(uuid.uuid4()) for _ in range(n)])


def timed(fn, runs: int) -> float:
    fn()  # warm
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def read_everything(service, owner: str) -> list:
    """What get_all / stats / entities did before: every memory of the owner, then sort in Python."""
    rows = _rows(service.store.list(filters={"owner_id": owner}, top_k=LIST_CAP))
    return sorted(rows, key=lambda r: ((r.payload or {}).get("created_at") or "", str(r.id)), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    settings = load_settings(embedder_backend="onnx")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")
    header = ["memories", "read everything", "get_all 100", "page 10 (offset 900)", "count_matching", "stats",
              "entities"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            engine = make_engine(sqlite_url(root / "optimus.db"))
            migrate(engine)
            storage = Storage("embedded", "embedded", engine, root, root / "vectors", None)
            service = build_memory_service(settings, storage)
            rng = np.random.default_rng(size)
            fill(service, "owner", size, rng)
            fill(service, "someone-else", size, rng)
            service.store.optimize()
            figures = [
                timed(lambda: read_everything(service, "owner"), args.runs),
                timed(lambda: service.get_all("owner", limit=100), args.runs),
                timed(lambda: service.get_all("owner", limit=100, offset=900), args.runs),
                timed(lambda: service.count_matching("owner", MemoryFilters()), args.runs),
                timed(lambda: service.stats("owner"), args.runs),
                timed(lambda: service.entities("owner"), args.runs),
            ]
            print(f"| {size:,} | " + " | ".join(f"{ms:.1f} ms" for ms in figures) + " |")
            service.store.close()
            engine.dispose()


if __name__ == "__main__":
    main()
