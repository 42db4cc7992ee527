"""Real memory services for tests: Qdrant Edge in a temp dir, or mem0's qdrant store on
``QdrantClient(":memory:")``; the relational side is a temp SQLite file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from core.audit import AuditLog
from core.config import load_settings
from core.db import make_engine, migrate, sqlite_url
from core.memory.engine import build_memory_service
from core.memory.service import MemoryService
from core.storage import Storage
from core.users import UserStore


def open_service(backend: str, root: Path) -> tuple[MemoryService, UserStore, Callable[[], None]]:
    root.mkdir(parents=True, exist_ok=True)
    engine = make_engine(sqlite_url(root / "optimus.db"))
    migrate(engine)
    mode = "server" if backend == "server" else "embedded"
    storage = Storage(mode, mode, engine, root, root / "vectors" if mode == "embedded" else None,
                      ":memory:" if mode == "server" else None)
    settings = load_settings(embedder_backend="onnx")  # model cache comes from the conftest env
    service = build_memory_service(settings, storage, audit=AuditLog(engine))

    def close() -> None:
        close_store = getattr(service.store, "close", None)
        if backend == "edge" and close_store:
            close_store()
        engine.dispose()

    return service, UserStore(engine), close


def scripted_model(extract: Callable[[str], list[str]] | list, decide: Callable[[list], list[str]] | None = None,
                   calls: list | None = None) -> FunctionModel:
    """A FunctionModel answering the pipeline's two agents, as a model would (tool-call output).

    ``extract`` gets the extraction prompt and returns the list of fact strings; a list is used
    as the sequence of raw JSON argument strings to return (for malformed-output tests).
    ``decide`` gets the update question as ``[(new fact, [old facts shown]), ...]`` and returns
    the verdicts ("new", "same 1", "replaces 2", "retracts 1").
    """
    log = calls if calls is not None else []
    raw = iter(extract) if isinstance(extract, list) else None

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        tool = info.output_tools[0]
        prompt = ""
        for msg in messages:
            for part in getattr(msg, "parts", []):
                if getattr(part, "part_kind", "") == "user-prompt":
                    prompt = str(part.content)
        is_extract = "facts" in tool.parameters_json_schema.get("properties", {})
        log.append("extract" if is_extract else "update")
        if is_extract:
            args = next(raw) if raw is not None else json.dumps({"facts": extract(prompt)})
        else:
            assert decide is not None, "the update phase was not expected"
            args = json.dumps({"verdicts": decide(decision_question(prompt))})
        return ModelResponse(parts=[ToolCallPart(tool_name=tool.name, args=args)])

    return FunctionModel(respond)


def decision_question(prompt: str) -> list[tuple[str, list[str]]]:
    """The update prompt as ``[(new fact, [old facts]), ...]``."""
    blocks: list[tuple[str, list[str]]] = []
    for line in prompt.splitlines():
        if m := re.match(r"NEW \d+: (.*)", line):
            blocks.append((m.group(1), []))
        elif (m := re.match(r"\s+OLD \d+: (.*)", line)) and blocks:
            blocks[-1][1].append(m.group(1))
    return blocks


def each(backends: tuple[str, ...] = ("edge", "server")) -> Iterator[str]:
    yield from backends
