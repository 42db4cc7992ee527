"""Benchmark: what a chat turn costs apart from the model, and how fast the local model is.

Part 1 — non-model overhead per turn. A real ChatService on the embedded defaults (temp SQLite in
WAL mode, a temp Qdrant Edge shard, the bundled MiniLM embedder through ONNX) answers turns with
pydantic-ai's ``TestModel`` (no tools called, a fixed 40-word reply streamed), so what is timed is
Optimus's own work: validate + store the user message, hybrid recall (query embedding + dense +
BM25 + fusion), loading the last turns, the agent plumbing, storing the reply, recording usage,
and queueing the exchange for memory extraction. The user has ``--memories`` memories and the
conversation grows to ``--turns`` turns. Each phase is also timed on its own through the same
public calls.

Part 2 — the local model (skipped with ``--no-local`` or when llama.cpp / the weights are absent):
time to first token and generation speed for a short and a ~1,000-token prompt, streamed through
the same ChatService.

    .venv/bin/python bench/chat_turn.py                      # ~2-3 min
    .venv/bin/python bench/chat_turn.py --turns 50 --memories 200 --no-local   # quick check

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")

import logging  # noqa: E402

logging.disable(logging.WARNING)

from pydantic_ai.models.test import TestModel  # noqa: E402

from core.chat import LOCAL_MAX_REPLY_TOKENS  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.memory.service import MemoryFilters  # noqa: E402
from core.memory.types import Scope  # noqa: E402
from core.runtime import open_runtime  # noqa: E402

REPLY = ("Sure, here is a short answer that is long enough to be streamed in several pieces, "
         "mentioning Lisbon, the cello lessons on Thursday and the dentist appointment next week.")
TOPICS = ["Lives in {}", "Has a sister called {}", "Prefers {} tea", "Works at {} as an engineer",
          "Is learning {} on weekends", "Plans a trip to {} in spring", "Is allergic to {}"]
WORDS = ["Lisbon", "Rita", "green", "Acme", "cello", "Kyoto", "peanuts", "Porto", "Miso", "oolong", "Globex",
         "Portuguese", "Oslo", "penicillin", "Berlin", "jasmine", "Initech", "chess", "Lima", "pollen"]
PROMPTS = ["What do you remember about my family?", "Where am I travelling next?", "Any food allergies?",
           "Remind me what I am learning.", "What tea should I buy?", "Where do I work again?"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def row(name: str, values: list[float]) -> str:
    return (f"| {name} | {statistics.median(values):.2f} | {pct(values, 95):.2f} | {statistics.fmean(values):.2f} "
            f"| {pct(values, 99):.2f} | {max(values):.2f} | {len(values)} |")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.1f} GiB RAM, {platform.system()} {platform.release()}"


def overhead(args: argparse.Namespace, root: Path) -> None:
    settings = load_settings(data_dir=root, storage="embedded", fallback_model="none")
    runtime = open_runtime(settings)
    try:
        person = runtime.users.create("bench")
        scope = Scope.personal(person.id)
        memory = runtime.memory
        items = [TOPICS[i % len(TOPICS)].format(WORDS[(i * 7) % len(WORDS)]) + f" (note {i})"
                 for i in range(args.memories)]
        started = time.perf_counter()
        memory.add_many(scope, items)
        print(f"seeded {args.memories} memories in {time.perf_counter() - started:.1f} s")
        chat = runtime.chat
        model = TestModel(custom_output_text=REPLY, call_tools=[])
        conv = chat.conversations.create(person.id, "bench")
        for i in range(args.warmup):
            chat.send(person.id, conv.id, PROMPTS[i % len(PROMPTS)], model=model).text()

        turns: list[float] = []
        first: list[float] = []
        for i in range(args.turns):
            t0 = time.perf_counter()
            turn = chat.send(person.id, conv.id, PROMPTS[i % len(PROMPTS)], model=model)
            got_first = None
            for _ in turn:
                if got_first is None:
                    got_first = time.perf_counter()
            t1 = time.perf_counter()
            turns.append((t1 - t0) * 1000)
            first.append(((got_first or t1) - t0) * 1000)

        # The phases on their own, through the same public calls the turn makes.
        recall, context, persist, enqueue = [], [], [], []
        for i in range(args.turns):
            text = PROMPTS[i % len(PROMPTS)]
            t0 = time.perf_counter()
            memory.search(person.id, text, MemoryFilters(user_id=person.id), top_k=settings.recall_top_k)
            t1 = time.perf_counter()
            chat.conversations.context(conv.id, settings.context_turns + 1, user_id=person.id)
            t2 = time.perf_counter()
            chat.conversations.append(conv.id, "user", text, user_id=person.id)
            t3 = time.perf_counter()
            chat.learning.queue.enqueue(scope, [{"role": "user", "content": text}], [], conversation_id=conv.id)
            t4 = time.perf_counter()
            recall.append((t1 - t0) * 1000)
            context.append((t2 - t1) * 1000)
            persist.append((t3 - t2) * 1000)
            enqueue.append((t4 - t3) * 1000)

        print(f"\n## Part 1: non-model overhead per turn ({args.turns} turns, {args.memories} memories, "
              f"context {settings.context_turns} turns, recall top-{settings.recall_top_k})\n")
        print("| What (ms) | p50 | p95 | mean | p99 | max | n |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print(row("whole turn (send → last delta, TestModel)", turns))
        print(row("to first delta", first))
        print(row("recall: hybrid search incl. query embedding", recall))
        print(row("context: last turns", context))
        print(row("persist one message", persist))
        print(row("enqueue extraction", enqueue))
        verdict = "met" if pct(turns, 95) <= 50 else "MISSED"
        print(f"\ngoal p95 ≤ 50 ms: {verdict} ({pct(turns, 95):.1f} ms)")
    finally:
        runtime.close()


def local(args: argparse.Namespace, root: Path) -> None:
    settings = load_settings(data_dir=root, storage="embedded", fallback_model="none")
    runtime = open_runtime(settings)
    try:
        if not runtime.registry.is_configured("local"):
            print("\n## Part 2: local model — skipped (llama.cpp or the bundled weights are not installed)")
            return
        person = runtime.users.create("bench-local")
        chat = runtime.chat
        t0 = time.perf_counter()
        runtime.registry.build("local")  # lazy: loading happens on the first request below
        long_prompt = " ".join(f"Fact {i}: the user mentioned {WORDS[i % len(WORDS)]} in passing." for i in range(90))
        warm = chat.conversations.create(person.id, "warm-up")
        started = time.perf_counter()
        chat.send(person.id, warm.id, "Hi", model="local").text()  # assembles the GGUF (once) and loads it
        print(f"\nfirst request (assemble + load + reply): {time.perf_counter() - started:.1f} s")
        cases = [("short prompt", "Tell me, in two friendly sentences, what you can help me with."),
                 ("~1,000-token prompt", long_prompt + "\nSummarise these facts in two sentences.")]
        print(f"\n## Part 2: local model ({runtime.registry.local_label()[1]}, llama.cpp, streamed via ChatService)\n")
        print("| Prompt | input tokens | output tokens | first token (ms) | generation (tokens/s) | total (s) |")
        print("|---|---:|---:|---:|---:|---:|")
        for i, (name, prompt) in enumerate(cases * args.local_runs):
            conv = chat.conversations.create(person.id, f"local {i}")
            started = time.perf_counter()
            turn = chat.send(person.id, conv.id, prompt, model="local")
            first_at = None
            for _ in turn:
                if first_at is None:
                    first_at = time.perf_counter()
            done = time.perf_counter()
            res = turn.result
            gen = max(1e-9, done - (first_at or done))
            rate = (res.output_tokens - 1) / gen if res.output_tokens > 1 else float("nan")
            print(f"| {name} | {res.input_tokens} | {res.output_tokens} | {((first_at or done) - started) * 1000:.0f} "
                  f"| {rate:.1f} | {done - started:.2f} |")
        print(f"(replies are capped at {LOCAL_MAX_REPLY_TOKENS} tokens; whole part {time.perf_counter() - t0:.1f} s)")
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--local-runs", type=int, default=2)
    parser.add_argument("--no-local", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}; python {platform.python_version()}; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="optimus-bench-chat-") as tmp:
        overhead(args, Path(tmp) / "overhead")
        if not args.no_local:
            local(args, Path(tmp) / "local")
    print(f"load at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
