"""Benchmark: how well and how fast Optimus learns from conversations.

Runs every scenario of ``bench/learning_scenarios.py`` through the real ``MemoryService`` (temp
SQLite + Qdrant Edge shard + bundled MiniLM) and the real two-phase ``MemoryPipeline``, one
fresh account per scenario, turn by turn as the chat worker would, with

- ``scripted``: a pydantic-ai ``FunctionModel`` that answers as an ideal model would (the
  scenario's ``facts`` and ``verdicts``) — this measures the pipeline's own logic;
- ``local``: the bundled offline model through llama.cpp (``--local-model`` picks which bundled
  GGUF; default: the one the settings choose).

It prints, per model: scenarios passed, unrelated true facts lost, questions / assistant
statements stored, duplicates left, model calls per turn and learn time per turn (p50/p95), plus
every failed scenario with its end state.

    .venv/bin/python bench/learning_quality.py                       # scripted + default local model
    .venv/bin/python bench/learning_quality.py --models scripted     # seconds
    .venv/bin/python bench/learning_quality.py --models local --local-model qwen2.5-coder-0.5b

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")

import logging  # noqa: E402

logging.disable(logging.WARNING)

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart  # noqa: E402
from pydantic_ai.models.function import AgentInfo, FunctionModel  # noqa: E402

from bench.learning_scenarios import HELD_OUT, SCENARIOS, Scenario, Turn  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.memory.pipeline import ExtractionFailed, MemoryPipeline  # noqa: E402
from core.memory.service import MemoryFilters  # noqa: E402
from core.memory.types import MemoryRecord, Scope  # noqa: E402
from core.runtime import open_runtime  # noqa: E402

BANNED_PEOPLE = {"user", "assistant", "optimus", "i", "me", "you", "he", "she", "they", "we"}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))] if values else 0.0


# ------------------------------------------------------------------------------ scripted model
class Script:
    """What the ideal model answers for the turn being learned."""

    turn: Turn | None = None


def scripted_model(script: Script) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = ""
        for msg in messages:
            for part in getattr(msg, "parts", []):
                if getattr(part, "part_kind", "") == "user-prompt":
                    prompt = str(part.content)
        turn = script.turn
        assert turn is not None
        tool = info.output_tools[0] if info.output_tools else None
        schema = tool.parameters_json_schema if tool else info.output_object.json_schema  # type: ignore[union-attr]
        if "facts" in schema.get("properties", {}):
            args = {"facts": list(turn.facts)}
        else:
            args = {"verdicts": _verdicts(prompt, turn)}
        if tool is not None:
            return ModelResponse(parts=[ToolCallPart(tool_name=tool.name, args=args)])
        return ModelResponse(parts=[TextPart(json.dumps(args))])

    return FunctionModel(respond, model_name="scripted-ideal")


def _verdicts(prompt: str, turn: Turn) -> list[str]:
    verdicts: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in prompt.splitlines():
        if m := re.match(r"NEW \d+: (.*)", line):
            blocks.append((m.group(1), []))
        elif (m := re.match(r"\s+OLD \d+: (.*)", line)) and blocks:
            blocks[-1][1].append(m.group(1))
    for new, olds in blocks:
        answer = "new"
        for pattern, verdict in turn.verdicts.items():
            if re.search(pattern, new, re.I):
                word, _, old_pattern = verdict.partition(" ")
                index = next((i for i, old in enumerate(olds, start=1) if re.search(old_pattern, old, re.I)), None)
                if index is not None:
                    answer = f"{word} {index}"
        verdicts.append(answer)
    return verdicts


# ------------------------------------------------------------------------------ running
@dataclass
class Outcome:
    scenario: Scenario
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    lost: int = 0
    stored_forbidden: int = 0
    duplicates: int = 0
    calls: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    failures: int = 0
    end: list[MemoryRecord] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _matches(pattern: str, records: list[MemoryRecord]) -> list[MemoryRecord]:
    return [r for r in records if re.search(pattern, r.text, re.I)]


def run_scenario(runtime, pipeline: MemoryPipeline, script: Script, scenario: Scenario, index: int) -> Outcome:
    out = Outcome(scenario)
    owner = runtime.users.create(f"bench{index}-{int(time.time() * 1000) % 10**8}").id
    scope = Scope.personal(owner)
    history: list[dict[str, str]] = []
    seen_texts: list[str] = []
    ever_matched: set[str] = set()
    for turn in scenario.turns:
        script.turn = turn
        exchange = [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.assistant}]
        started = time.perf_counter()
        try:
            result = pipeline.run(scope, exchange, history[-6:])
            out.calls.append(result.model_calls)
            seen_texts.extend(e.text for e in result.events if e.applied and e.text)
            out.refused.extend(f"{e.text!r} ({e.rejected or e.reason})" for e in result.events
                               if not e.applied or e.event == "NONE")
        except ExtractionFailed as exc:
            out.failures += 1
            out.calls.append(exc.result.model_calls if exc.result else 0)
            out.problems.append(f"turn failed: {exc}")
        out.seconds.append(time.perf_counter() - started)
        history.extend(exchange)
        live = runtime.memory.get_all(owner, MemoryFilters(user_id=owner), limit=1000)
        ever_matched |= {p for p in scenario.expect if _matches(p, live)}
    end = runtime.memory.get_all(owner, MemoryFilters(user_id=owner), limit=1000)
    out.end = end
    for pattern in scenario.expect:
        found = _matches(pattern, end)
        if not found:
            out.problems.append(f"missing /{pattern}/")
            if pattern in ever_matched:
                out.lost += 1
        elif len(found) > 1:
            out.duplicates += len(found) - 1
            out.problems.append(f"{len(found)} memories match /{pattern}/")
    allowed = scenario.expect + scenario.optional
    for record in end:
        if not any(re.search(p, record.text, re.I) for p in allowed):
            out.problems.append(f"unexpected memory: {record.text!r}")
        bad = [p for p in record.people if p.lower() in BANNED_PEOPLE]
        if bad:
            out.problems.append(f"noise people {bad} on {record.text!r}")
    for kind, pattern in scenario.forbid:
        if kind in ("question", "assistant"):
            hits = [t for t in seen_texts if re.search(pattern, t, re.I)]
            if hits:
                out.stored_forbidden += len(hits)
                out.problems.append(f"stored a {kind} statement: {hits[0]!r}")
        elif _matches(pattern, end):
            out.problems.append(f"stale fact still current: /{pattern}/")
    people = {p.lower() for r in end for p in r.people}
    for name in scenario.people:
        if name.lower() not in people:
            out.problems.append(f"{name} is not among people ({sorted(people)})")
    for pattern in scenario.expires:
        if not any(r.expires_at for r in _matches(pattern, end)):
            out.problems.append(f"no expiry on /{pattern}/")
    out.passed = not out.problems
    return out


def report(name: str, outcomes: list[Outcome], *, verbose: bool) -> None:
    passed = sum(o.passed for o in outcomes)
    calls = [c for o in outcomes for c in o.calls]
    seconds = [s for o in outcomes for s in o.seconds]
    print(f"\n### {name}\n")
    print("| figure | value |\n|---|---|")
    print(f"| scenarios passed | {passed}/{len(outcomes)} ({100 * passed / len(outcomes):.0f} %) |")
    print(f"| unrelated true facts lost | {sum(o.lost for o in outcomes)} |")
    print(f"| questions / assistant statements stored | {sum(o.stored_forbidden for o in outcomes)} |")
    print(f"| duplicates left | {sum(o.duplicates for o in outcomes)} |")
    print(f"| failed turns (queued for retry) | {sum(o.failures for o in outcomes)} |")
    print(f"| model calls per turn | mean {statistics.fmean(calls):.2f}, max {max(calls)} "
          f"({sum(1 for c in calls if c == 0)} of {len(calls)} turns needed none) |")
    print(f"| learn time per turn | p50 {statistics.median(seconds):.2f} s, p95 {pct(seconds, 95):.2f} s, "
          f"max {max(seconds):.2f} s ({len(seconds)} turns) |")
    failed = [o for o in outcomes if not o.passed]
    if failed:
        print(f"\nFailed scenarios ({len(failed)}):")
        for o in failed:
            print(f"- {o.scenario.name}: {'; '.join(o.problems)}")
            if verbose:
                for r in o.end:
                    print(f"    · {r.text!r} people={list(r.people)} tags={list(r.tags)} expires={r.expires_at}")
                for line in o.refused:
                    print(f"    × {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="scripted,local", help="comma-separated: scripted, local")
    parser.add_argument("--local-model", default=None, help="bundled model name (default: the settings' choice)")
    parser.add_argument("--only", default=None, help="run only scenarios whose name contains this")
    parser.add_argument("--set", choices=("main", "held-out", "all"), default="main",
                        help="the 46 scenarios the guardrails were developed on, the 12 written after, or both")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the end state of failed scenarios")
    args = parser.parse_args()
    pool = {"main": SCENARIOS, "held-out": HELD_OUT, "all": SCENARIOS + HELD_OUT}[args.set]
    scenarios = [s for s in pool if not args.only or args.only in s.name]
    with tempfile.TemporaryDirectory(prefix="optimus-learning-") as tmp:
        settings = load_settings(data_dir=tmp)
        runtime = open_runtime(settings)
        try:
            load = os.getloadavg()
            print(f"{len(scenarios)} scenarios, {sum(len(s.turns) for s in scenarios)} turns; "
                  f"load average before: {load[0]:.2f} {load[1]:.2f}")
            for name in args.models.split(","):
                script = Script()
                if name == "scripted":
                    model = scripted_model(script)
                    label = "scripted ideal model (FunctionModel)"
                elif name == "local":
                    model = runtime.registry.build(f"local:{args.local_model}" if args.local_model else "local")
                    label = f"bundled local model: {model.model_name}"
                    # load it outside the timings (a person's first turn pays this once per process)
                    MemoryPipeline(runtime.memory, model).run(
                        Scope.personal(runtime.users.create(f"warm{name}").id),
                        [{"role": "user", "content": "I like tea."}, {"role": "assistant", "content": "Ok."}])
                else:
                    raise SystemExit(f"unknown model {name!r}")
                pipeline = MemoryPipeline(runtime.memory, model)
                outcomes = [run_scenario(runtime, pipeline, script, s, i) for i, s in enumerate(scenarios)]
                report(label, outcomes, verbose=args.verbose)
            load = os.getloadavg()
            print(f"\nload average after: {load[0]:.2f} {load[1]:.2f}")
        finally:
            runtime.close()


if __name__ == "__main__":
    main()
