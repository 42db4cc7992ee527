"""Benchmark: re-embed throughput of ``python -m core reembed`` (memories per second).

A store of ``--memories`` memories (varied sentences, written by the real ``MemoryService`` with
the bundled MiniLM, 384-d) is moved to mem0's OpenAI embedder talking to the embeddings server
of the tests (tests/embedding_stub.py) on loopback, answering 64-d vectors. The figure is the
re-embed alone (read, embed over HTTP, write with BM25, check, swap), through
``core.memory.engine.reembed_store``, on a temp Qdrant Edge shard (embedded) and on
``QdrantClient(":memory:")`` (server code path, qdrant-client's local engine).

The stub answers at once and runs in this process (sharing its two cores and the GIL), so the
figure measures Optimus's side of a re-embed; a hosted provider adds its own latency per batch.

    .venv/bin/python bench/reembed.py                       # 1,000 memories, batches of 100
    .venv/bin/python bench/reembed.py --memories 5000 --batch-size 50

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")

from core.config import load_settings  # noqa: E402
from core.db import make_engine, migrate, sqlite_url  # noqa: E402
from core.memory.engine import build_memory_service, reembed_store  # noqa: E402
from core.memory.types import Scope  # noqa: E402
from core.memory.vector_server import RescoringQdrantClient  # noqa: E402
from core.storage import Storage  # noqa: E402
from core.users import UserStore  # noqa: E402
from tests.embedding_stub import EmbeddingStub  # noqa: E402

SUBJECTS = ["My sister", "My manager", "Our neighbour", "The dentist", "My best friend", "Grandma"]
VERBS = ["loves", "hates", "collects", "teaches", "studies", "writes about", "travels for"]
OBJECTS = ["jazz records", "mountain hiking", "Portuguese cooking", "old maps", "chess openings",
           "sourdough bread", "marathon training", "birdwatching", "vintage cameras", "tax law"]


def sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} (note {i})" for i in range(count)]


def run(backend: str, count: int, batch_size: int, stub: EmbeddingStub, seed: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="optimus-bench-reembed-") as tmp:
        root = Path(tmp)
        engine = make_engine(sqlite_url(root / "optimus.db"))
        migrate(engine)
        mode = "server" if backend == "server" else "embedded"
        storage = Storage(mode, mode, engine, root, root / "vectors" if mode == "embedded" else None,
                          ":memory:" if mode == "server" else None)
        client = RescoringQdrantClient(":memory:") if mode == "server" else None
        service = build_memory_service(load_settings(embedder_backend="onnx"), storage, qdrant_client=client)
        owner = UserStore(engine).create("bench").id
        texts = sentences(count, seed)
        for start in range(0, count, 200):
            service.add_many(Scope.personal(owner), texts[start:start + 200])
        if mode == "embedded":
            service.store.close()
        target = load_settings(embedder="openai:bench-stub", embedding_dims=stub.dims, embedder_base_url=stub.url,
                               openai_compatible_api_key="bench")
        report = reembed_store(target, storage, qdrant_client=client, batch_size=batch_size, progress=lambda _: None)
        assert report.memories == count, report
        engine.dispose()
        return report.seconds, report.memories / report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--backends", nargs="+", default=["edge", "server"], choices=["edge", "server"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f}")
    stub = EmbeddingStub(dims=64).start()
    try:
        for backend in args.backends:
            seconds, rate = run(backend, args.memories, args.batch_size, stub, args.seed)
            print(f"{backend:6}  {args.memories:,} memories re-embedded 384-d MiniLM -> 64-d stub in "
                  f"{seconds:.2f} s: {rate:,.0f} memories/s (batches of {args.batch_size})")
    finally:
        stub.stop()


if __name__ == "__main__":
    main()
