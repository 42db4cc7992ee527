"""Benchmark: the two bundled offline models side by side — reply sanity and speed in the chat.

For each bundled model (Qwen2.5-Coder-0.5B and -1.5B, Q4 GGUF through llama.cpp), a real
ChatService on the embedded defaults holds the conversations below (some memories recalled,
as a person would have them) and every reply is checked:

- **echo**: the reply repeats the user's statement back (≥ 60 % of its word trigrams), the way
  "I'm vegetarian and I live in Lisbon." was answered with the same sentence;
- **recite**: the reply recites the instructions ("a helpful assistant with a long-term memory",
  "Today is …");
- **empty** replies;

and timed: time to first token, generation tokens/s, whole reply. Learning quality (the other
half of the comparison) is bench/learning_quality.py with ``--local-model``.

    .venv/bin/python bench/local_models.py                     # both models, ~5 min
    .venv/bin/python bench/local_models.py --models qwen2.5-coder-1.5b

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
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

from core.chat_agent import INSTRUCTIONS  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.memory.types import Scope  # noqa: E402
from core.models.gguf import BUNDLED  # noqa: E402
from core.runtime import open_runtime  # noqa: E402

CONVERSATIONS = [
    ["Hi!", "I'm vegetarian and I live in Lisbon.", "My sister Ana is a nurse in Porto.",
     "Where do I live and what do I eat?"],
    ["I moved from Lisbon to Berlin last month.", "Can you recommend a good book?", "My dog Rex died yesterday."],
    ["Hello, who are you?", "I work as a data engineer at Spotify.", "What's the capital of France?"],
    ["I'm training for a marathon in April.", "Any tips for my long runs?", "Thanks, that helps."],
    ["My favourite band is Radiohead.", "I'm learning Japanese on weekends.", "What do you remember about me?"],
    ["I can't sleep well lately.", "I drink coffee in the evening.", "Should I stop?"],
]
MEMORIES = ["Is vegetarian", "Has a cat named Miso", "Works as a nurse"]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def echoes(user: str, reply: str) -> bool:
    if user.rstrip().endswith("?"):
        return False  # answering a question restates it naturally ("The capital of France is Paris")
    u, r = words(user), " ".join(words(reply))
    grams = [" ".join(u[i:i + 3]) for i in range(max(1, len(u) - 2))]
    return bool(grams) and sum(g in r for g in grams) / len(grams) >= 0.6


def recites(reply: str) -> bool:
    low = " ".join(words(reply))
    sentences = [" ".join(words(s)[:6]) for s in re.split(r"[.\n]", INSTRUCTIONS) if len(words(s)) >= 6]
    return "today is" in low or any(s in low for s in sentences)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))] if values else 0.0


def run_model(name: str, root: Path) -> dict:
    settings = load_settings(data_dir=root, storage="embedded", fallback_model="none", local_model=name)
    runtime = open_runtime(settings)
    try:
        person = runtime.users.create("bench")
        runtime.memory.add_many(Scope.personal(person.id), MEMORIES)
        chat = runtime.chat
        chat.send(person.id, chat.conversations.create(person.id).id, "Hi", model="local").text()  # load
        stats = {"turns": 0, "echo": 0, "recite": 0, "empty": 0, "ttft": [], "rate": [], "total": [], "bad": []}
        for conversation in CONVERSATIONS:
            conv = chat.conversations.create(person.id)
            for text in conversation:
                started = time.perf_counter()
                turn = chat.send(person.id, conv.id, text, model="local")
                first = None
                pieces = []
                for delta in turn:
                    first = first or time.perf_counter()
                    pieces.append(delta)
                done = time.perf_counter()
                reply = "".join(pieces)
                result = turn.result
                stats["turns"] += 1
                stats["ttft"].append(((first or done) - started) * 1000)
                stats["total"].append(done - started)
                if result.output_tokens > 1 and first:
                    stats["rate"].append((result.output_tokens - 1) / max(1e-9, done - first))
                flags = [f for f, hit in (("echo", echoes(text, reply)), ("recite", recites(reply)),
                                          ("empty", not reply.strip())) if hit]
                for flag in flags:
                    stats[flag] += 1
                if flags:
                    stats["bad"].append(f"{'/'.join(flags)}: {text!r} -> {reply[:140]!r}")
        return stats
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(s.name.removesuffix("-instruct") for s in BUNDLED.values()))
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="optimus-local-models-") as tmp:
        for name in args.models.split(","):
            stats = run_model(name, Path(tmp) / name)
            rows.append((name, stats))
    print("\n| model | replies | echo | recite | empty | first token p50 / p95 (ms) | tokens/s p50 | reply p50 / p95 (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s['turns']} | {s['echo']} | {s['recite']} | {s['empty']} | "
              f"{statistics.median(s['ttft']):.0f} / {pct(s['ttft'], 95):.0f} | {statistics.median(s['rate']):.1f} | "
              f"{statistics.median(s['total']):.2f} / {pct(s['total'], 95):.2f} |")
    for name, s in rows:
        if s["bad"]:
            print(f"\n{name}:")
            for line in s["bad"]:
                print(f"- {line}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
