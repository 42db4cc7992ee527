"""Benchmark: search throughput and latency of the REST API under concurrent clients, on loopback.

The server is the real one — ``python -m core.api`` in its own process, on the embedded defaults
(a temp SQLite file in WAL mode, a temp Qdrant Edge shard, the bundled MiniLM embedder through
ONNX) — so the load generator does not share its interpreter. One account is created with one API
key (rate limit off for the run: ``OPTIMUS_API_RATE_LIMIT_PER_MINUTE=0``), ``--memories`` memories
are imported through ``POST /v1/optimus/memories/batch/`` across 10 end-user ids, then
``--clients`` threads, each with its own keep-alive httpx client, share a bounded queue of
``--requests`` searches (``POST /v3/memories/search/``, the call mem0's ``client.search`` makes,
``top_k=5``, half of them filtered by ``user_id``). Each request is timed end to end in the
client. ``--warmup`` uncounted searches run first.

    .venv/bin/python bench/api_load.py                                   # 2,000 searches, 20 clients
    .venv/bin/python bench/api_load.py --requests 200 --clients 4        # quick check

A benchmark, not a test: it prints figures and asserts nothing. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")

import httpx  # noqa: E402

TOPICS = ["Lives in {}", "Has a sister called {}", "Prefers {} tea", "Works at {} as an engineer",
          "Is learning {} on weekends", "Plans a trip to {} in spring", "Is allergic to {}",
          "Keeps the {} in the garage", "Met {} at the conference", "Reads books about {}"]
WORDS = ["Lisbon", "Rita", "green", "Acme", "cello", "Kyoto", "peanuts", "Porto", "Miso", "oolong", "Globex",
         "Portuguese", "Oslo", "penicillin", "Berlin", "jasmine", "Initech", "chess", "Lima", "pollen",
         "bicycle", "Ana", "astronomy", "Nairobi", "sourdough", "kayak", "Hamburg", "Chopin", "Quito", "bees"]
QUERIES = ["What do you remember about my family?", "Where am I travelling next?", "Any food allergies?",
           "What am I learning at the moment?", "Which tea should I buy?", "Where do I work again?",
           "Where is the bike?", "Who did I meet recently?", "What do I like to read?", "Where do I live?"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def create_account(data_dir: Path) -> str:
    """A user and an API key in a fresh database under ``data_dir`` (before the server opens it)."""
    from core.apikeys import ApiKeyStore
    from core.config import load_settings
    from core.storage import open_storage
    from core.users import UserStore

    storage = open_storage(load_settings(data_dir=data_dir))
    try:
        user = UserStore(storage.engine).create("bench")
        return ApiKeyStore(storage.engine).create(user.id, "api_load")[1]
    finally:
        storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="optimus-api-load-"))
    data_dir = tmp / "data"
    key = create_account(data_dir)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIMUS_")}
    env.update(OPTIMUS_DATA_DIR=str(data_dir), OPTIMUS_API_HOST="127.0.0.1", OPTIMUS_API_PORT=str(port),
               OPTIMUS_API_RATE_LIMIT_PER_MINUTE="0", PYTHONPATH=str(REPO))
    if os.environ.get("OPTIMUS_MODEL_CACHE_DIR"):
        env["OPTIMUS_MODEL_CACHE_DIR"] = os.environ["OPTIMUS_MODEL_CACHE_DIR"]
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "core.api", "--log-level", "warning"], cwd=tmp, env=env)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Token {key}"}
    try:
        while True:
            try:
                httpx.get(base + "/health", timeout=5)
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    raise SystemExit("the API server exited during start-up") from None
                time.sleep(0.2)
        startup = time.perf_counter() - started

        t0 = time.perf_counter()
        with httpx.Client(base_url=base, headers=headers, timeout=300) as c:
            for start in range(0, args.memories, 500):
                items = [{"text": rng.choice(TOPICS).format(rng.choice(WORDS)) + f" (note {i})",
                          "tags": [rng.choice(["family", "travel", "food", "work", "hobby"])]}
                         for i in range(start, min(args.memories, start + 500))]
                for user in range(10):
                    part = items[user::10]
                    if part:
                        c.post("/v1/optimus/memories/batch/", json={"user_id": f"user-{user}", "items": part}) \
                            .raise_for_status()
        seeding = time.perf_counter() - t0

        def body(i: int) -> dict:
            query = QUERIES[i % len(QUERIES)]
            flt = {"user_id": f"user-{i % 10}"} if i % 2 else {}
            return {"query": query, "filters": flt, "top_k": 5}

        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            for i in range(args.warmup):
                c.post("/v3/memories/search/", json=body(i)).raise_for_status()

        work: queue.Queue[int] = queue.Queue()
        for i in range(args.requests):
            work.put(i)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            mine: list[float] = []
            with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
                while True:
                    try:
                        i = work.get_nowait()
                    except queue.Empty:
                        break
                    t = time.perf_counter()
                    r = c.post("/v3/memories/search/", json=body(i))
                    mine.append(time.perf_counter() - t)
                    if r.status_code != 200 or not r.json()["results"]:
                        with lock:
                            errors.append(f"{r.status_code} {r.text[:100]}")
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        wall = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - wall
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)

    ms = [v * 1000 for v in latencies]
    print(f"Machine: {os.cpu_count()} CPU ({cpu_model()}), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    print(f"Server: python -m core.api (uvicorn, 1 process), embedded storage, rate limit off; "
          f"start-up {startup:.1f} s; {args.memories:,} memories imported in {seeding:.1f} s")
    print(f"Load: {args.requests:,} searches (top_k=5, half filtered by user_id), {args.clients} concurrent "
          f"keep-alive clients, {args.warmup} warm-up searches first")
    print(f"Throughput: {len(ms) / wall:,.1f} searches/s ({wall:.1f} s wall), errors: {len(errors)}")
    print(f"Latency ms: p50 {pct(ms, 50):.1f} · p95 {pct(ms, 95):.1f} · p99 {pct(ms, 99):.1f} · "
          f"mean {statistics.fmean(ms):.1f} · max {max(ms):.1f}")
    if errors:
        print("First errors:", *errors[:5], sep="\n  ")


if __name__ == "__main__":
    main()
