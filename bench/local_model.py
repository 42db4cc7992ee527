"""Benchmark: the offline model (bundled Qwen2.5-Coder-0.5B, llama.cpp in-process) through ``LocalModel``.

For a short prompt (~30 tokens) and a long one (~1,000 tokens of prose) it measures, through
``LocalModel.request_stream`` (the path the chat page uses):

* load time (first request only: assembling/verifying the GGUF, then llama.cpp's load);
* time to first token (TTFT): from opening the stream to the first text delta, i.e. waiting for
  the lock, prompt processing (prefill) and the first sampled token;
* generation speed: reply tokens / time from the first delta to the end of the stream;
* prefill speed: prompt tokens / TTFT.

Each prompt starts with a run number, so llama.cpp's prefix cache never shortens the prefill.
A last section times grammar-constrained JSON output (a memory-extraction schema) against the
same request in free text.

Run from the repository root::

    .venv/bin/python bench/local_model.py                 # 3 runs each, 64 reply tokens (~1 min)
    .venv/bin/python bench/local_model.py --threads 1 --runs 2

This is a benchmark, not a test: it asserts nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel, Field  # noqa: E402
from pydantic_ai.messages import ModelRequest, UserPromptPart  # noqa: E402
from pydantic_ai.models import ModelRequestParameters  # noqa: E402
from pydantic_ai.output import OutputObjectDefinition  # noqa: E402

from core.models.gguf import BundledGGUF, CustomGGUF  # noqa: E402
from core.models.local import LocalModel  # noqa: E402

PROSE = (
    "Optimus is a self-hostable chat application that keeps durable facts about its users in a "
    "long-term vector memory. Each conversation is stored with its turns, and a background "
    "pipeline extracts candidate memories, deduplicates them against what is already known and "
    "decides whether to add, update or delete. "
)


class Candidate(BaseModel):
    text: str = Field(max_length=80)
    type: Literal["fact", "preference", "goal", "relationship"]
    importance: int = Field(ge=1, le=5)


class Extraction(BaseModel):
    memories: list[Candidate] = Field(max_length=2)


def _prompt(run: int, long: bool) -> list[ModelRequest]:
    if long:
        text = f"Run {run}. Read this and summarise it in one sentence.\n\n" + PROSE * 15
    else:
        text = f"Run {run}. Write a haiku about a lighthouse keeper."
    return [ModelRequest(parts=[UserPromptPart(text)])]


async def _one(model: LocalModel, messages, settings, params) -> dict[str, float]:
    start = time.perf_counter()
    first = None
    async with model.request_stream(messages, settings, params) as stream:
        async for _ in stream:
            if first is None:
                first = time.perf_counter()
        response = stream.get()
    end = time.perf_counter()
    first = first or end
    out = response.usage.output_tokens
    return {
        "ttft": first - start,
        "prompt": response.usage.input_tokens,
        "tokens": out,
        "gen_tps": (out - 1) / (end - first) if out > 1 and end > first else float("nan"),
        "prefill_tps": response.usage.input_tokens / (first - start),
        "total": end - start,
    }


def _report(label: str, rows: list[dict[str, float]]) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(
        f"{label:<28} prompt {med('prompt'):6.0f} tok | TTFT {med('ttft') * 1000:7.0f} ms "
        f"(min {min(r['ttft'] for r in rows) * 1000:.0f}) | prefill {med('prefill_tps'):6.1f} tok/s | "
        f"generation {med('gen_tps'):5.1f} tok/s over {med('tokens'):.0f} tok | total {med('total'):.2f} s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="0 = one per core")
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--gguf", type=Path, help="another GGUF (default: the bundled model)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".cache/test-models/local-model"),
        help="where the bundled model is assembled (default: the test suite's cache)",
    )
    args = parser.parse_args()

    source = CustomGGUF(args.gguf) if args.gguf else BundledGGUF(args.data_dir)
    model = LocalModel(source, threads=args.threads, context=args.context)
    engine = model._engine
    print(
        f"model {model.model_name}, threads {engine.threads} (prompt) / {engine.decode_threads} (generation), "
        f"context {args.context}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load avg {os.getloadavg()[0]:.2f}"
    )

    settings = {"max_tokens": args.max_tokens, "temperature": 0.7, "seed": 1}
    params = ModelRequestParameters()
    start = time.perf_counter()
    await model.request(_prompt(-1, False), {"max_tokens": 1}, params)
    print(f"load + first 1-token request: {time.perf_counter() - start:.2f} s")

    for long in (False, True):
        rows = [await _one(model, _prompt(run, long), settings, params) for run in range(args.runs)]
        _report("long prompt" if long else "short prompt", rows)

    # Constrained JSON vs free text, same conversation.
    schema = OutputObjectDefinition(json_schema=Extraction.model_json_schema(), name="Extraction")
    native = ModelRequestParameters(output_mode="native", output_object=schema, allow_text_output=True)
    chat = [
        ModelRequest(
            parts=[
                UserPromptPart(
                    "Run {}. I moved to Lisbon last spring, I'm allergic to peanuts and my sister Ana lives here too. "
                    "List what you learned about me as JSON."
                )
            ]
        )
    ]
    for label, p in (("free text", params), ("JSON grammar (native)", native)):
        rows = []
        for run in range(args.runs):
            messages = [ModelRequest(parts=[UserPromptPart(chat[0].parts[0].content.format(run))])]
            rows.append(await _one(model, messages, {**settings, "max_tokens": 96}, p))
        _report(label, rows)
    print(f"load avg after: {os.getloadavg()[0]:.2f}")
    model.close()


if __name__ == "__main__":
    asyncio.run(main())
