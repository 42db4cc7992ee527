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

import json
import logging
import threading
from collections.abc import AsyncIterator, Sequence
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

from core.models.gguf import GGUFSource, gguf_source
from core.models.llama_bridge import Generation
from core.models.llama_engine import DEFAULT_REPLY_RESERVE, Engine, Job

if TYPE_CHECKING:
    from pydantic_ai._run_context import RunContext

    from core.config import Settings

log = logging.getLogger(__name__)

SYSTEM = "local"

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
        self._engine = Engine(source, threads=threads, context=context, prompt_cache_bytes=prompt_cache_mb << 20)

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
    ) -> tuple[Generation, _Output]:
        output = _Output.of(params)
        if params.function_tools:
            log.debug("local model: ignoring %d function tool(s); it does not call tools", len(params.function_tools))
        job = Job(
            messages=self._chat_messages(messages, params),
            max_tokens=(model_settings or {}).get("max_tokens"),
            options=_sampling_options(model_settings),
            schema=output.schema,
        )
        return Generation(self._engine, job, reserve=_reply_reserve(model_settings, self._engine.context)), output

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


def _usage(generation: Generation) -> RequestUsage:
    prompt = generation.prompt
    return RequestUsage(input_tokens=prompt.input_tokens if prompt else 0, output_tokens=generation.output_tokens)


def _details(generation: Generation) -> dict[str, int] | None:
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
    _generation: Generation
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
