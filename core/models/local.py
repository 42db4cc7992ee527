"""The offline model: a GGUF run in-process by llama.cpp, as a pydantic-ai ``Model``.

``get_local_model(settings)`` returns the process-wide :class:`LocalModel`. Constructing it costs
nothing: the GGUF is assembled (see :mod:`core.models.gguf`) and loaded by llama.cpp on the first
request, in a worker thread. One llama.cpp context serves the whole process, behind a lock, so
concurrent chats queue rather than thrash two cores.

What it does with a pydantic-ai request:

- **Chat format.** Messages go through llama.cpp's ``create_chat_completion`` with the GGUF's own
  chat template (Qwen's ChatML for the bundled model). Instructions and the leading system prompts
  become one system message; user prompts, tool results and retry feedback are user turns; earlier
  model text is the assistant's.
- **Streaming.** Generation runs in a worker thread that feeds text deltas through a queue to the
  async stream. Closing or cancelling the stream stops llama.cpp at the next token and frees the
  lock.
- **Structured output.** The profile makes pydantic-ai default to *native* output, with the schema
  also written into the instructions (a 0.5B model cannot see a grammar, only a prompt). Whenever
  the request carries an output schema (native or prompted output, or output tools when text is
  not allowed) generation is constrained by a llama.cpp GBNF grammar compiled from that JSON
  schema, so the reply always parses against it. Integer bounds, which llama.cpp's converter
  ignores, are compiled to an enum when the range is small.
- **Function tools are ignored.** The local model never calls tools; the chat service gives it
  automatic memory recall instead of a recall tool.
- **Context overflow.** When the prompt and the reply budget don't fit the context window, the
  oldest non-system messages are dropped (the response's ``provider_details["dropped_messages"]``
  says how many); if the newest message alone does not fit, :class:`~core.errors.ValidationError`
  says so.
- **Threads.** ``OPTIMUS_LOCAL_MODEL_THREADS=N`` uses N threads throughout. The default (0) uses
  one per core for prompt processing and half of them for generation, which is memory-bound.
  OpenMP workers wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless already set): spinning
  workers are ~1.5x faster on idle cores but 3-10x slower as soon as anything else (Streamlit,
  the embedder, another process) wants a core of a small machine.
- ``ALLOW_MODEL_REQUESTS`` does not apply: pydantic-ai leaves that check to each model class, for
  models that cost money or reach a network, and this one does neither (like pydantic-ai's own
  local sentence-transformers embedder).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic_ai import _utils
from pydantic_ai.messages import (
    BaseToolReturnPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    ModelResponseStreamEvent,
    RetryFeedbackPart,
    RetryPromptPart,
    SpeechPart,
    SystemPromptPart,
    TextContent,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

from core.errors import ConfigError, ValidationError
from core.models.gguf import GGUFSource, gguf_source

if TYPE_CHECKING:
    from pydantic_ai._run_context import RunContext

    from core.config import Settings

log = logging.getLogger(__name__)

SYSTEM = "local"
DEFAULT_REPLY_RESERVE = 512
"""Tokens kept free for the reply when trimming history and the request sets no ``max_tokens``."""
MAX_INT_ENUM = 64
"""Integer ranges up to this many values are compiled into the grammar as an enum."""
_TURN_OVERHEAD = 5
"""Template tokens around one ChatML message (``<|im_start|>role\\n`` … ``<|im_end|>\\n``)."""

LOCAL_PROFILE = ModelProfile(
    supports_tools=True,  # output tools only; function tools are ignored (see module docstring)
    supports_json_schema_output=True,
    supports_json_object_output=True,
    default_structured_output_mode="native",
    native_output_requires_schema_in_instructions=True,
    supports_image_input=False,
    supports_document_input=False,
    supports_audio_file_input=False,
    supports_video_input=False,
    supports_thinking=False,
    # ChatML takes a system message anywhere, so the chat's per-turn note stays a system message
    # (after the fixed instructions, which the prompt cache then reuses) instead of user text.
    supports_inline_system_prompts=True,
    # llama.cpp tokenizes the rendered prompt with special tokens on: a literal "<|im_start|>" typed
    # by the user would open a real turn. pydantic-ai breaks such tokens in content with a joiner.
    may_tokenize_special_tokens_in_content=True,
)


# --------------------------------------------------------------------------------------------
# The llama.cpp engine: one per (file, threads, context), loaded lazily, used under a lock.


@dataclass(frozen=True)
class _Prompt:
    messages: list[dict[str, str]]
    input_tokens: int
    dropped: int


@dataclass
class _Job:
    """One generation, as the worker thread sees it."""

    messages: list[dict[str, str]]
    max_tokens: int | None
    options: dict[str, Any]
    schema: dict[str, Any] | None
    cancel: threading.Event = field(default_factory=threading.Event)
    sampled: int = 0


class _Engine:
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
        self._job: _Job | None = None

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

    def fit(self, messages: list[dict[str, str]], reserve: int) -> _Prompt:
        """Drop the oldest non-system messages until the prompt plus ``reserve`` fits the context."""
        budget = self.context - reserve
        head = [m for m in messages[:1] if m["role"] == "system"]
        body = messages[len(head) :]
        total = self.count_tokens(messages)
        if total <= budget:
            return _Prompt(messages, total, 0)

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
                return _Prompt(kept, total, start)
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

    def generate(self, job: _Job, prompt: _Prompt) -> Iterator[tuple[str, str | None]]:
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


# --------------------------------------------------------------------------------------------
# Worker thread <-> event loop.

_Kind = Literal["ready", "text", "error", "done"]


class _Generation:
    """One generation running in a worker thread, read from the event loop.

    The worker posts ``ready`` (prompt fitted, lock held), then ``text`` items, then ``done``; an
    exception is posted as ``error`` and raised on the event loop. ``aclose()`` asks the worker to
    stop and waits until it has released the lock, however far it got.
    """

    def __init__(self, engine: _Engine, job: _Job, *, reserve: int) -> None:
        self._engine = engine
        self._job = job
        self._reserve = reserve
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[_Kind, Any]] = asyncio.Queue()
        self._finished = asyncio.Event()
        self.prompt: _Prompt | None = None
        self.finish_reason: str | None = None

    @property
    def output_tokens(self) -> int:
        return self._job.sampled

    async def start(self) -> _Prompt:
        """Start the worker; return once the prompt is ready (the model loaded, the lock held)."""
        threading.Thread(target=self._work, name="llama.cpp", daemon=True).start()
        try:
            kind, value = await self._queue.get()
        except BaseException:
            await self.aclose()
            raise
        if kind == "error":
            await self.aclose()
            raise value
        self.prompt = value
        return value

    async def deltas(self) -> AsyncIterator[str]:
        while True:
            kind, value = await self._queue.get()
            if kind == "text":
                text, finish = value
                if finish:
                    self.finish_reason = finish
                if text:
                    yield text
            elif kind == "error":
                raise value
            elif kind == "done":
                return

    async def aclose(self) -> None:
        """Stop generation (at the next token) and wait until the worker has let go of the lock."""
        self._job.cancel.set()
        with anyio.CancelScope(shield=True):
            await self._finished.wait()

    def _post(self, kind: _Kind, value: Any = None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
            if kind == "done":
                self._loop.call_soon_threadsafe(self._finished.set)
        except RuntimeError:  # the event loop is gone: nobody is listening any more
            self._job.cancel.set()

    def _work(self) -> None:
        engine, job = self._engine, self._job
        locked = False
        try:
            while not (locked := engine.lock.acquire(timeout=0.05)):
                if job.cancel.is_set():
                    return
            engine.load()
            prompt = engine.fit(job.messages, self._reserve)
            self._post("ready", prompt)
            if job.cancel.is_set():
                return
            for item in engine.generate(job, prompt):
                self._post("text", item)
                if job.cancel.is_set():
                    break
        except BaseException as exc:  # handed to the event loop, raised there
            self._post("error", exc)
        finally:
            if locked:
                engine.lock.release()
            self._post("done")


# --------------------------------------------------------------------------------------------
# The pydantic-ai model.


class LocalModel(Model):
    """A GGUF run in-process by llama.cpp. Cheap to construct; loads on the first request."""

    unsupported_settings = frozenset({"timeout", "max_retries", "extra_headers", "extra_body"})

    def __init__(
        self,
        source: GGUFSource,
        *,
        threads: int = 0,
        context: int = 4096,
        prompt_cache_mb: int = 0,
        settings: ModelSettings | None = None,
        profile: ModelProfile | None = None,
    ) -> None:
        super().__init__(settings=settings, profile={**LOCAL_PROFILE, "context_window": context, **(profile or {})})
        self._engine = _Engine(source, threads=threads, context=context, prompt_cache_bytes=prompt_cache_mb << 20)

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        e = self._engine
        return f"LocalModel({self.model_name!r}, threads={e.threads}/{e.decode_threads}, context={e.context})"

    @property
    def provider(self) -> None:
        return None

    @property
    def model_name(self) -> str:
        return self._engine.source.name

    @property
    def system(self) -> str:
        return SYSTEM

    @property
    def loaded(self) -> bool:
        """Whether llama.cpp has loaded the GGUF yet (it does on the first request)."""
        return self._engine.loaded

    def close(self) -> None:
        """Free the llama.cpp model and context (waits for a running generation)."""
        self._engine.close()

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        generation, output = self._start(messages, model_settings, params)
        await generation.start()
        try:
            text = "".join([delta async for delta in generation.deltas()])
        finally:
            await generation.aclose()
        return ModelResponse(
            parts=_response_parts(text, output),
            usage=_usage(generation),
            model_name=self.model_name,
            provider_name=SYSTEM,
            provider_details=_details(generation),
            finish_reason=_finish_reason(generation.finish_reason, output),
        )

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        generation, output = self._start(messages, model_settings, params)
        await generation.start()
        try:
            yield LocalStreamedResponse(
                model_request_parameters=params,
                _model_name=self.model_name,
                _generation=generation,
                _output=output,
            )
        finally:
            await generation.aclose()

    async def count_tokens(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> RequestUsage:
        """Tokens of the prompt as it would be sent (after trimming to the context window)."""
        model_settings, params = self.prepare_request(model_settings, model_request_parameters)
        chat = self._chat_messages(messages, params)
        reserve = _reply_reserve(model_settings, self._engine.context)

        def count() -> int:
            with self._engine.lock:
                self._engine.load()
                return self._engine.fit(chat, reserve).input_tokens

        return RequestUsage(input_tokens=await anyio.to_thread.run_sync(count))

    # ---- mapping --------------------------------------------------------------------------

    def _start(
        self, messages: list[ModelMessage], model_settings: ModelSettings | None, params: ModelRequestParameters
    ) -> tuple[_Generation, _Output]:
        output = _Output.of(params)
        if params.function_tools:
            log.debug("local model: ignoring %d function tool(s); it does not call tools", len(params.function_tools))
        job = _Job(
            messages=self._chat_messages(messages, params),
            max_tokens=(model_settings or {}).get("max_tokens"),
            options=_sampling_options(model_settings),
            schema=output.schema,
        )
        return _Generation(self._engine, job, reserve=_reply_reserve(model_settings, self._engine.context)), output

    def _chat_messages(self, messages: Sequence[ModelMessage], params: ModelRequestParameters) -> list[dict[str, str]]:
        """pydantic-ai messages as chat-template messages: one system message, then the turns."""
        system: list[str] = []
        turns: list[dict[str, str]] = []

        def add(role: str, text: str) -> None:
            if not text:
                return
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"] += "\n\n" + text
            else:
                turns.append({"role": role, "content": text})

        for message in messages:
            if isinstance(message, ModelRequest):
                for part in message.parts:
                    if isinstance(part, SystemPromptPart):
                        if turns:
                            add("system", part.content)
                        else:
                            system.append(part.content)
                    else:
                        add("user", _request_part_text(part))
            elif isinstance(message, ModelResponse):
                # Only text is replayed: tool calls and thinking from other models would teach this
                # one formats it cannot use; their results still arrive as user turns.
                add("assistant", "".join(p.content for p in message.parts if isinstance(p, TextPart)))
        # Instructions first: they are the same on every request of a kind, so llama.cpp's prompt
        # cache can resume after them; system parts that vary (the chat's per-turn note) follow.
        instructions = self._get_instruction_parts(messages, params) or []
        system = [part.content for part in instructions if part.content] + system
        head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
        return head + turns


def get_local_model(settings: Settings, *, bundled: str | None = None) -> LocalModel:
    """The process-wide local model for these settings, or the bundled model ``bundled`` (one per
    GGUF, thread count and context size)."""
    key = (gguf_source(settings, bundled), settings.local_model_threads, settings.local_model_context,
           settings.local_model_prompt_cache_mb)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = LocalModel(key[0], threads=key[1], context=key[2], prompt_cache_mb=key[3])
        return model


def close_local_model() -> None:
    """Free every loaded local model (tests, or a process about to reload its settings)."""
    with _models_lock:
        models = list(_models.values())
        _models.clear()
    for model in models:
        model.close()


_models: dict[tuple[GGUFSource, int, int, int], LocalModel] = {}
_models_lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# Structured output and responses.


@dataclass(frozen=True)
class _Output:
    """What the reply must be: free text, a JSON document, or the arguments of an output tool."""

    schema: dict[str, Any] | None = None
    tool: str | None = None
    tool_names: tuple[str, ...] = ()

    @classmethod
    def of(cls, params: ModelRequestParameters) -> _Output:
        if params.output_object is not None and params.output_mode in ("native", "prompted"):
            return cls(schema=params.output_object.json_schema)
        if params.output_tools and not params.allow_text_output:
            tools = params.output_tools
            if len(tools) == 1:
                return cls(schema=tools[0].parameters_json_schema, tool=tools[0].name)
            # Several output tools: the grammar makes the model pick one by name.
            choices = [
                {
                    "type": "object",
                    "properties": {"tool": {"const": t.name}, "arguments": t.parameters_json_schema},
                    "required": ["tool", "arguments"],
                }
                for t in tools
            ]
            return cls(schema={"anyOf": choices}, tool_names=tuple(t.name for t in tools))
        return cls()

    @property
    def is_tool(self) -> bool:
        return self.tool is not None or bool(self.tool_names)


def _response_parts(text: str, output: _Output) -> list[ModelResponsePart]:
    if output.tool is not None:
        return [ToolCallPart(tool_name=output.tool, args=text or "{}")]
    if output.tool_names:
        try:
            choice = json.loads(text)
            return [ToolCallPart(tool_name=choice["tool"], args=choice["arguments"])]
        except (ValueError, KeyError, TypeError):
            pass  # cut short by max_tokens: hand pydantic-ai the text, it asks again
    return [TextPart(text)] if text else []


def _finish_reason(reason: str | None, output: _Output) -> Literal["stop", "length", "tool_call"] | None:
    if reason == "length":
        return "length"
    if reason is None:
        return None
    return "tool_call" if output.is_tool else "stop"


def _usage(generation: _Generation) -> RequestUsage:
    prompt = generation.prompt
    return RequestUsage(input_tokens=prompt.input_tokens if prompt else 0, output_tokens=generation.output_tokens)


def _details(generation: _Generation) -> dict[str, int] | None:
    """``dropped_messages``: how many of the oldest messages did not fit the context window."""
    dropped = generation.prompt.dropped if generation.prompt else 0
    return {"dropped_messages": dropped} if dropped else None


def _reply_reserve(model_settings: ModelSettings | None, context: int) -> int:
    wanted = (model_settings or {}).get("max_tokens") or DEFAULT_REPLY_RESERVE
    return max(1, min(int(wanted), context // 2))


def _sampling_options(model_settings: ModelSettings | None) -> dict[str, Any]:
    settings = model_settings or {}
    options: dict[str, Any] = {}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("seed", "seed"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ):
        if settings.get(ours) is not None:
            options[theirs] = settings[ours]
    if stop := settings.get("stop_sequences"):
        options["stop"] = list(stop)
    return options


def _request_part_text(part: Any) -> str:
    if isinstance(part, UserPromptPart | SpeechPart):
        return _user_text(part.content)
    if isinstance(part, BaseToolReturnPart):
        return f"Result of {part.tool_name}:\n{part.model_response_str()}"
    if isinstance(part, RetryPromptPart | RetryFeedbackPart):
        return part.model_response()
    return ""  # deltas and other bookkeeping parts carry nothing the model reads


def _user_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    pieces = []
    for item in content:
        if isinstance(item, str):
            pieces.append(item)
        elif isinstance(item, TextContent):
            pieces.append(item.content)
        elif (kind := getattr(item, "kind", None)) is not None and kind != "cache-point":
            pieces.append(f"[{kind} omitted: the local model reads text only]")
    return "\n".join(pieces)


@dataclass
class LocalStreamedResponse(StreamedResponse):
    """Text deltas as llama.cpp produces them (or one output-tool call, for tool output)."""

    _model_name: str
    _generation: _Generation
    _output: _Output
    _timestamp: datetime = field(default_factory=_utils.now_utc)

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        output, generation = self._output, self._generation
        self.provider_details = _details(generation)
        buffered: list[str] = []
        async for delta in generation.deltas():
            if output.tool is not None:
                name = None if buffered else output.tool  # a name delta would be appended, so send it once
                buffered.append(delta)
                for event in self._parts_manager.handle_tool_call_delta_events(
                    vendor_part_id="output", tool_name=name, args=delta
                ):
                    yield event
            elif output.tool_names:
                buffered.append(delta)  # the tool's name is only known once the JSON is complete
            else:
                for event in self._parts_manager.handle_text_delta(vendor_part_id="content", content=delta):
                    yield event
            self._usage = _usage(generation)
        if output.tool_names:
            for part in _response_parts("".join(buffered), output):
                yield self._parts_manager.handle_part(vendor_part_id="output", part=part)
        self._usage = _usage(generation)
        self.finish_reason = _finish_reason(generation.finish_reason, output)

    async def close_stream(self) -> None:
        await self._generation.aclose()

    def get_stream_cancel_errors(self) -> tuple[type[BaseException], ...]:
        return ()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def provider_name(self) -> str:
        return SYSTEM

    @property
    def provider_url(self) -> None:
        return None

    @property
    def timestamp(self) -> datetime:
        return self._timestamp


__all__ = ["LOCAL_PROFILE", "LocalModel", "LocalStreamedResponse", "close_local_model", "get_local_model"]
