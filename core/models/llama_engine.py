"""The llama.cpp side of the offline model: one model and context per GGUF, prompt fitting, and the
JSON-schema grammar that constrains structured output. Used through :mod:`core.models.local`."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError, ValidationError
from core.models.gguf import GGUFSource

log = logging.getLogger(__name__)

DEFAULT_REPLY_RESERVE = 512
"""Tokens kept free for the reply when trimming history and the request sets no ``max_tokens``."""
MAX_INT_ENUM = 64
"""Integer ranges up to this many values are compiled into the grammar as an enum."""
_TURN_OVERHEAD = 5
"""Template tokens around one ChatML message (``<|im_start|>role\\n`` … ``<|im_end|>\\n``)."""


# --------------------------------------------------------------------------------------------
# The llama.cpp engine: one per (file, threads, context), loaded lazily, used under a lock.


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    input_tokens: int
    dropped: int


@dataclass
class Job:
    """One generation, as the worker thread sees it."""

    messages: list[dict[str, str]]
    max_tokens: int | None
    options: dict[str, Any]
    schema: dict[str, Any] | None
    cancel: threading.Event = field(default_factory=threading.Event)
    sampled: int = 0


class Engine:
    """A llama.cpp model and context for one GGUF, shared by every request in the process."""

    def __init__(self, source: GGUFSource, *, threads: int, context: int, prompt_cache_bytes: int = 0) -> None:
        self.source = source
        self.prompt_cache_bytes = prompt_cache_bytes
        cores = _available_cores()
        # Prompt processing is compute-bound and scales with cores; generating one token at a time
        # is memory-bound, and with passive OpenMP workers a second thread costs more in wake-ups
        # than it adds (on 2 cores: ~30 tok/s with one thread, ~24 with two; prefill +40% with two).
        self.threads = threads or cores
        self.decode_threads = threads or max(1, cores // 2)
        self.context = context
        self.lock = threading.Lock()
        self._llama: Any = None
        self._formatter: Any = None
        self._job: Job | None = None

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    def load(self) -> None:
        """Assemble/verify the GGUF and load it. Call with ``self.lock`` held."""
        if self._llama is not None:
            return
        path = self.source.ensure()
        # libgomp reads this once, when llama.cpp's library loads. Its default, spinning workers,
        # turns any competition for the cores (Streamlit, the embedder, a second process) into a
        # 10x slowdown on a 2-core machine; passive waiting costs a few percent when idle.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import llama_cpp
            from llama_cpp import llama_chat_format
        except ImportError as exc:  # pragma: no cover - setup.sh installs it
            raise ConfigError(
                "The local model needs llama-cpp-python: run ./scripts/setup.sh "
                "(or `pip install llama-cpp-python==0.3.36`)."
            ) from exc
        try:
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.context,
                n_threads=self.decode_threads,
                n_threads_batch=self.threads,
                flash_attn=True,  # measured ~25% faster prompt processing on 2 cores
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"llama.cpp could not load {path}: {exc}") from exc

        template = llama.metadata.get("tokenizer.chat_template") or llama_chat_format.CHATML_CHAT_TEMPLATE
        eos_id, bos_id = llama.token_eos(), llama.token_bos()
        engine = self

        class _Formatter(llama_chat_format.Jinja2ChatFormatter):
            # The handler llama.cpp builds from the formatter stops on the template's EOS through a
            # stopping criterion that runs once per sampled token: we extend it to count the
            # tokens (usage) and to stop promptly when the stream is closed.
            def __call__(self, **kwargs: Any) -> Any:
                result = super().__call__(**kwargs)
                stop_on_eos = result.stopping_criteria

                def on_token(tokens: Any, logits: Any) -> bool:
                    job = engine._job
                    if job is not None:
                        job.sampled += 1
                        if job.cancel.is_set():
                            return True
                    return bool(stop_on_eos(tokens, logits)) if stop_on_eos is not None else False

                result.stopping_criteria = on_token
                return result

        self._formatter = _Formatter(
            template=template,
            eos_token=llama._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=llama._model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
        llama.chat_handler = self._formatter.to_chat_handler()
        if self.prompt_cache_bytes:
            # Keep the model state after each completion, keyed by its tokens; a later prompt that
            # starts the same way (the memory pipeline's fixed instructions, a chat's system prompt
            # and history) resumes from the longest cached prefix instead of re-reading it. On two
            # cores that is ~65 prompt tokens/s saved per token for the 1.5B model: an extraction
            # with ~500 tokens of instructions drops from ~8 s to ~1.5 s after a chat in between.
            llama.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=self.prompt_cache_bytes))
        self._llama = llama

    def close(self) -> None:
        with self.lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None
                self._formatter = None

    # ---- prompt ---------------------------------------------------------------------------

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        prompt = self._formatter(messages=messages).prompt
        return len(self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def fit(self, messages: list[dict[str, str]], reserve: int) -> Prompt:
        """Drop the oldest non-system messages until the prompt plus ``reserve`` fits the context."""
        budget = self.context - reserve
        head = [m for m in messages[:1] if m["role"] == "system"]
        body = messages[len(head) :]
        total = self.count_tokens(messages)
        if total <= budget:
            return Prompt(messages, total, 0)

        # Estimate per message first (one tokenize each), then confirm with the real template.
        sizes = [self._estimate(m) for m in body]
        estimate = total
        start = 0
        while start < len(body) - 1 and estimate > budget:
            estimate -= sizes[start]
            start += 1
        while True:
            # A conversation resumes with the user, not with a reply to something dropped.
            while start < len(body) - 1 and body[start]["role"] == "assistant":
                start += 1
            kept = head + body[start:]
            total = self.count_tokens(kept)
            if total <= budget:
                return Prompt(kept, total, start)
            if start >= len(body) - 1:
                raise ValidationError(
                    f"The message is too long for the local model: the prompt needs {total} tokens and "
                    f"{reserve} are kept for the reply, but the context window is {self.context} tokens. "
                    "Shorten the message or raise OPTIMUS_LOCAL_MODEL_CONTEXT.",
                    field="message",
                    detail={"prompt_tokens": total, "context": self.context, "reserve": reserve},
                )
            start += 1

    def _estimate(self, message: dict[str, str]) -> int:
        text = message["role"] + "\n" + message["content"]
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)) + _TURN_OVERHEAD

    # ---- generation -----------------------------------------------------------------------

    def generate(self, job: Job, prompt: Prompt) -> Iterator[tuple[str, str | None]]:
        """Yield ``(text delta, finish_reason)`` pairs from llama.cpp. Call with ``self.lock`` held."""
        from llama_cpp import LlamaGrammar

        kwargs = dict(job.options)
        if job.schema is not None:
            kwargs["grammar"] = LlamaGrammar.from_string(_gbnf_for(json.dumps(job.schema)), verbose=False)
        self._job = job
        stream = self._llama.create_chat_completion(
            messages=prompt.messages, stream=True, max_tokens=job.max_tokens, **kwargs
        )
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason")
                if text or finish:
                    yield text, finish
                if job.cancel.is_set():
                    break
        finally:
            stream.close()
            self._job = None
            # Exact count: every reply token but the last sampled one has been evaluated into the
            # context after the prompt (the last is EOS, or the one past max_tokens, or unused).
            job.sampled = max(0, self._llama.n_tokens - prompt.input_tokens)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset/cgroup cpusets, unlike os.cpu_count()
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=64)
def _gbnf_for(schema_json: str) -> str:
    """A llama.cpp grammar for a JSON schema, with the bounds llama.cpp's converter skips made exact."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    schema = _tighten(json.loads(schema_json))
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter asserts on schema features it lacks
        log.warning("local model: JSON schema not expressible as a grammar (%s); constraining to plain JSON", exc)
        return JSON_GBNF


def _tighten(node: Any) -> Any:
    """Rewrite small bounded integer ranges as enums (``importance: 1..5`` -> ``enum [1..5]``)."""
    if isinstance(node, list):
        return [_tighten(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _tighten(v) for k, v in node.items()}
    if node.get("type") == "integer" and "enum" not in node and "const" not in node:
        low, high = node.get("minimum"), node.get("maximum")
        if isinstance(node.get("exclusiveMinimum"), int | float):
            low = math.floor(node["exclusiveMinimum"]) + 1
        if isinstance(node.get("exclusiveMaximum"), int | float):
            high = math.ceil(node["exclusiveMaximum"]) - 1
        if isinstance(low, int | float) and isinstance(high, int | float):
            low, high = math.ceil(low), math.floor(high)
            if 0 <= high - low < MAX_INT_ENUM:
                node["enum"] = list(range(low, high + 1))
    return node


