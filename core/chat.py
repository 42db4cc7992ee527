"""The chat service: one user turn from recall to reply, then memory learning off the request path.

A turn, in order:

1. the user's message is validated and **stored first**, so a failing model never loses it;
2. **recall**: hybrid memory search in the user's scope (top-k) plus the last N turns;
3. the agent answers, **streaming** (``run_stream_sync``: Streamlit's script thread has no event
   loop, and an async generator fed to Streamlit breaks pydantic-ai's context vars);
4. the reply is stored with its model and token counts, the run's usage and cost recorded;
5. the exchange goes to the durable extraction queue; the two-phase pipeline runs later in the
   worker, and its events are kept with the reply (``turn_events``) for "learned / updated / forgot".

The agent itself — instructions, the per-turn note, the memory tools — is :mod:`core.chat_agent`.
The local model gets recall only; a person who keeps memories from hosted models gets neither.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic_ai.exceptions import (
    AgentRunError,
    FallbackExceptionGroup,
    ModelAPIError,
    ModelAuthenticationError,
    ModelHTTPError,
    ModelRequestTimeout,
    ModelTimeoutError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, SystemPromptPart, TextPart, UserPromptPart
from pydantic_ai.models import Model
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import UsageLimits

from core.chat_agent import ChatDeps, build_agent, memory_toolset, notes_for
from core.config import Settings
from core.conversations import ConversationStore, Message, validate_text
from core.errors import (
    AppError,
    BudgetExceeded,
    NotFound,
    ProviderAuthError,
    ProviderTimeout,
    ProviderUnavailable,
    ValidationError,
)
from core.memory.learning import LearningService
from core.memory.records import RELEVANCE_FLOOR
from core.memory.service import MemoryFilters, MemoryService
from core.memory.types import MemoryEvent, MemoryRecord, Scope
from core.metrics import METRICS, Metrics
from core.models.registry import LOCAL_MODEL_ID, PROVIDERS, ModelRegistry, split_model_id
from core.preferences import Preferences, PreferenceStore
from core.titles import ask_model_for_title, derive_title
from core.turn_details import RecalledMemory, TurnDetails
from core.usage import UsageStore, price

log = logging.getLogger(__name__)

LOCAL_MAX_REPLY_TOKENS = 768
_ABOUT_ME = re.compile(r"\b(know|remember|recall)\b.*\babout me\b|\bwho am i\b|\babout myself\b|"
                       r"\bwhat do you know\b", re.IGNORECASE)
TITLE_TIMEOUT = 4.0
"""Seconds a hosted model gets to title a new conversation before the derived title stays."""
LOCAL_TIMEOUT = 180.0



# ------------------------------------------------------------------ results
@dataclass
class TurnResult:
    user_message: Message
    reply: Message | None = None
    recalled: list[MemoryRecord] = field(default_factory=list)
    tool_events: list[MemoryEvent] = field(default_factory=list)
    model: str | None = None  # the model that actually answered (after any fallback)
    provider: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None
    latency_ms: float = 0.0
    fell_back: bool = False
    job_id: int | None = None
    memory_private: bool = False  # memory was kept from a hosted model, as the person asked


class ChatTurn:
    """A streaming reply. Iterate for text deltas; afterwards ``result`` holds the stored turn.

    If the model fails, iteration raises an :class:`AppError` (the user's message stays stored
    and ``result.reply`` is None). Closing early (``close()``) cancels the reply.
    """

    def __init__(self, run: Callable[[TurnResult], Iterator[str]], result: TurnResult) -> None:
        self.result = result
        self._iter = run(result)

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def text(self) -> str:
        """Consume the whole stream and return the reply text."""
        return "".join(self)

    def close(self) -> None:
        close = getattr(self._iter, "close", None)
        if close:
            close()


def _describe(exc: BaseException) -> AppError:
    """Turn a model failure into the error a person sees."""
    if isinstance(exc, FallbackExceptionGroup):
        first = exc.exceptions[0] if exc.exceptions else exc
        err = _describe(first)
        err.message += " The fallback model failed as well."
        return err
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, ModelRequestTimeout | ModelTimeoutError | TimeoutError):
        return ProviderTimeout("The model did not answer in time. Your message is saved; try again.")
    if isinstance(exc, ModelAuthenticationError) or (
        isinstance(exc, ModelHTTPError) and exc.status_code in (401, 403)
    ):
        provider = next((p for p in PROVIDERS.values() if p.id in str(getattr(exc, "model_name", ""))), None)
        where = f"set {provider.key_env} to a valid key" if provider else "check the provider's API key"
        return ProviderAuthError(f"The provider rejected the API key: {where}, then restart.")
    if isinstance(exc, UsageLimitExceeded):
        return BudgetExceeded("This reply would exceed your daily model budget. Your message is saved.")
    if isinstance(exc, ModelAPIError):
        return ProviderUnavailable(f"The model provider failed ({exc}). Your message is saved; try again.")
    if isinstance(exc, UnexpectedModelBehavior):
        return ProviderUnavailable(f"The model sent an unusable reply ({exc}). Your message is saved; try again.")
    if isinstance(exc, AgentRunError):
        return ProviderUnavailable(f"The reply failed ({exc}). Your message is saved; try again.")
    raise exc


def _status(err: AppError) -> Literal["error", "timeout"]:
    return "timeout" if isinstance(err, ProviderTimeout) else "error"


# ------------------------------------------------------------------ the service
class ChatService:
    def __init__(
        self,
        *,
        settings: Settings,
        conversations: ConversationStore,
        memory: Callable[[], MemoryService] | MemoryService,
        learning: LearningService,
        usage: UsageStore,
        registry: ModelRegistry,
        metrics: Metrics = METRICS,
        preferences: PreferenceStore | None = None,
    ) -> None:
        self.settings = settings
        self.conversations = conversations
        self._memory = memory
        self.learning = learning
        self.usage = usage
        self.registry = registry
        self.metrics = metrics
        self.preferences = preferences
        self.agent = build_agent()
        self._toolset = memory_toolset()
        self._replying: dict[str, int] = {}  # conversation id -> replies streaming right now
        self._settled = threading.Condition()

    @property
    def memory(self) -> MemoryService:
        return self._memory() if callable(self._memory) else self._memory

    # -- helpers
    def _resolve(self, model: str | Model | None) -> tuple[Model, str, bool]:
        """(model object, id for records, whether it may call tools)."""
        if isinstance(model, Model):
            return model, f"{model.system}:{model.model_name}", True
        model_id = model or self.registry.default_model_id()
        choice = self.registry.choice(model_id)
        return self.registry.build(choice.id), choice.id, choice.tools

    def _history(self, turns: list[Message], note: str) -> list[ModelMessage]:
        """Earlier turns, then this turn's note (date and recalled memories) just before the new message."""
        history: list[ModelMessage] = []
        for m in turns:
            if m.role == "user":
                history.append(ModelRequest(parts=[UserPromptPart(m.content)]))
            elif m.role == "assistant":
                history.append(ModelResponse(parts=[TextPart(m.content)], model_name=m.model))
        history.append(ModelRequest(parts=[SystemPromptPart(note)]))
        return history

    def _check_budget(self, user_id: str) -> Decimal | None:
        budget = self.settings.daily_budget_usd
        if not budget:
            return None
        spent = self.usage.spent_today(user_id)
        if spent >= budget:
            raise BudgetExceeded(
                f"You have used your daily model budget (${spent:.4f} of ${budget:.2f}). "
                "It resets at 00:00 UTC; the local model stays available."
            )
        return budget - spent

    def prefs(self, user_id: str) -> Preferences:
        if self.preferences is None:
            return Preferences()
        try:
            return self.preferences.get(user_id)
        except Exception as exc:  # noqa: BLE001 - preferences are a nicety; the turn goes on without them
            log.warning("preferences unavailable for %s: %s", user_id, exc)
            return Preferences()

    def recall(self, scope: Scope, text: str, *, top_k: int | None = None) -> list[MemoryRecord]:
        """The memories a turn starts from. A memory store that is down costs recall, not the reply."""
        k = self.settings.recall_top_k if top_k is None else top_k
        if k <= 0:
            return []
        scoped = MemoryFilters(user_id=scope.user_id)
        try:
            if _ABOUT_ME.search(text):  # "What do you remember about me?": the person's most important facts
                records = self.memory.get_all(scope.owner_id, scoped, limit=max(k * 4, 20))
                return sorted(records, key=lambda r: (r.importance, r.created_at or ""), reverse=True)[:k]
            # Only memories related to the message: unrelated ones cost prompt tokens and mislead small models.
            return self.memory.search(scope.owner_id, text, scoped, top_k=k, threshold=RELEVANCE_FLOOR)
        except AppError as exc:
            log.warning("recall skipped: %s", exc)
            return []

    # -- the turn
    def send(self, user_id: str, conversation_id: str, text: str, *, model: str | Model | None = None,
             scope: Scope | None = None) -> ChatTurn:
        """Store the user's message and start the reply. Raises before storing on bad input."""
        scope = scope or Scope.personal(user_id)
        if scope.owner_id != user_id:
            raise ValidationError("A chat turn belongs to its user.", field="scope")
        self.conversations.get(user_id, conversation_id)  # ownership, before anything is stored
        if model is not None and not isinstance(model, Model):
            split_model_id(model)  # unknown ids are the caller's mistake: nothing stored
        user_message = self.conversations.append(conversation_id, "user", text, user_id=user_id)
        result = TurnResult(user_message=user_message)
        return ChatTurn(lambda r: self._run(r, scope, model), result)

    def retry(self, user_id: str, conversation_id: str, *, model: str | Model | None = None) -> ChatTurn:
        """Answer the conversation's last user message again (after a failed reply)."""
        last = self.conversations.context(conversation_id, 1, user_id=user_id)
        if not last or last[-1].role != "user":
            raise ValidationError("There is no unanswered message to retry.")
        result = TurnResult(user_message=last[-1])
        return ChatTurn(lambda r: self._run(r, Scope.personal(user_id), model), result)

    def regenerate(self, user_id: str, conversation_id: str, *, model: str | Model | None = None) -> ChatTurn:
        """Answer the conversation's last user message again, in place of the reply it has (if any)."""
        last = self.conversations.context(conversation_id, 1, user_id=user_id)
        if not last:
            raise ValidationError("There is no message to answer yet.")
        if last[-1].role == "assistant":
            self.conversations.truncate(user_id, conversation_id, last[-1].id)
        return self.retry(user_id, conversation_id, model=model)

    def edit(self, user_id: str, message_id: int, text: str, *, model: str | Model | None = None) -> ChatTurn:
        """Send ``text`` in place of one of the person's earlier messages: that message and everything
        after it are replaced by the edited message and a new reply. Bad text changes nothing."""
        original = self.conversations.message(user_id, message_id)
        if original.role != "user":
            raise ValidationError("Only your own messages can be edited.", field="message_id")
        validate_text(text, limit=self.conversations.max_chars)  # refuse before anything is removed
        if model is not None and not isinstance(model, Model):
            split_model_id(model)
        self.conversations.truncate(user_id, original.conversation_id, original.id)
        return self.send(user_id, original.conversation_id, text, model=model)

    def wait_for_replies(self, conversation_id: str, *, timeout: float) -> bool:
        """Wait until no reply of this conversation is streaming in this process (one being stopped
        saves what it said first). True when none is; False after ``timeout`` seconds."""
        with self._settled:
            return self._settled.wait_for(lambda: not self._replying.get(conversation_id), timeout=timeout)

    def _run(self, result: TurnResult, scope: Scope, model_ref: str | Model | None) -> Iterator[str]:
        conv_id = result.user_message.conversation_id
        with self._settled:
            self._replying[conv_id] = self._replying.get(conv_id, 0) + 1
        try:
            yield from self._reply(result, scope, model_ref)
        finally:
            with self._settled:
                self._replying[conv_id] -= 1
                if not self._replying[conv_id]:
                    del self._replying[conv_id]
                self._settled.notify_all()

    def _reply(self, result: TurnResult, scope: Scope, model_ref: str | Model | None) -> Iterator[str]:
        user_msg = result.user_message
        conv_id = user_msg.conversation_id
        remaining = self._check_budget(scope.owner_id)
        prefs = self.prefs(scope.owner_id)
        if model_ref is None and prefs.default_model:
            available = {c.id for c in self.registry.available_models()}
            model_ref = prefs.default_model if prefs.default_model in available else None
        model, model_id, tools = self._resolve(model_ref)
        provider, _, model_name = model_id.partition(":")
        is_local = provider == LOCAL_MODEL_ID
        if model_id == LOCAL_MODEL_ID:
            provider, model_name = "local", LOCAL_MODEL_ID
        context = self.conversations.context(conv_id, self.settings.context_turns + 1, user_id=scope.owner_id)
        prior = [m for m in context if m.id < user_msg.id][-self.settings.context_turns:]
        # "Use my memories only with local models": a hosted model gets no recall and no memory tools.
        result.memory_private = prefs.memories_local_only and not is_local
        if result.memory_private:
            tools = False
        else:
            result.recalled = self.recall(scope, user_msg.content, top_k=prefs.recall_top_k)
        deps = ChatDeps(scope=scope, memory=self.memory, conversation_id=conv_id, recalled=result.recalled,
                        local=is_local, tools=tools)
        limits = UsageLimits(request_limit=8, cost_limit=remaining) if remaining is not None else UsageLimits(
            request_limit=8)
        settings = ModelSettings(request_timeout=self.settings.model_timeout)
        if is_local:
            # A 0.5B model on a CPU: bound the reply and give it the time that takes (~30 tokens/s,
            # plus prompt processing at ~130 tokens/s for a long history).
            settings = ModelSettings(max_tokens=LOCAL_MAX_REPLY_TOKENS,
                                     request_timeout=max(self.settings.model_timeout, LOCAL_TIMEOUT))
        started = time.perf_counter()
        chunks: list[str] = []
        try:
            with self.agent.run_stream_sync(
                user_msg.content,
                message_history=self._history(prior, notes_for(result.recalled, datetime.now(UTC).date().isoformat(),
                                                               private=result.memory_private)),
                deps=deps,
                model=model,
                model_settings=settings,
                usage_limits=limits,
                toolsets=[self._toolset] if tools else None,
            ) as run:
                for delta in run.stream_text(delta=True, debounce_by=None):
                    chunks.append(delta)
                    yield delta
                reply_text = "".join(chunks) or str(run.get_output() or "")
                responses = [m for m in run.new_messages() if isinstance(m, ModelResponse)]
        except GeneratorExit:
            # Stopped by the person (or the page went away): what was said so far is kept, marked as stopped.
            result.latency_ms = (time.perf_counter() - started) * 1000
            result.tool_events = deps.tool_events
            if "".join(chunks).strip():
                self._finish(result, scope, "".join(chunks), [], provider, model_name, prior,
                             learn=prefs.auto_memory, stopped=True)
            else:
                self.usage.record(user_id=scope.owner_id, conversation_id=conv_id, purpose="chat",
                                  provider=provider, model=model_name, latency_ms=result.latency_ms,
                                  status="cancelled")
            self.metrics.chat_requests.labels("cancelled").inc()
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then shown as an AppError
            err = _describe(exc)
            elapsed = time.perf_counter() - started
            self.usage.record(user_id=scope.owner_id, conversation_id=conv_id, purpose="chat", provider=provider,
                              model=model_name, latency_ms=elapsed * 1000,
                              status=_status(err), error=f"{type(exc).__name__}: {exc}")
            self.metrics.chat_requests.labels(_status(err)).inc()
            self.metrics.model_run(provider=provider, model=model_name, purpose="chat", seconds=elapsed,
                                   status=_status(err))
            result.tool_events = deps.tool_events
            self._count_events(deps.tool_events, "agent")
            raise err from exc
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.tool_events = deps.tool_events
        self._count_events(deps.tool_events, "agent")
        self._finish(result, scope, reply_text, responses, provider, model_name, prior, learn=prefs.auto_memory)
        if not prior:
            # A reply that came from the fallback says the chosen model is struggling: do not ask it again.
            self._title(scope.owner_id, conv_id, user_msg.content, reply_text, model,
                        local=is_local or result.fell_back or not (result.model or "").startswith(model_name),
                        provider=provider, model_name=model_name)
        self.metrics.chat_requests.labels("ok").inc()
        self.metrics.model_run(provider=result.provider or provider, model=result.model or model_name,
                               purpose="chat", seconds=result.latency_ms / 1000, status="ok",
                               input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                               cost_usd=result.cost_usd)

    def _count_events(self, events: list[MemoryEvent], source: str) -> None:
        for event in events:
            if event.applied:
                self.metrics.memory_event(event.event, source)

    def _title(self, user_id: str, conv_id: str, user_text: str, reply_text: str, model: Model, *, local: bool,
               provider: str, model_name: str) -> None:
        """Name a new conversation after its first exchange, unless the person already named it.

        The derived title goes in at once; a hosted model is then asked for a better one and given
        ``TITLE_TIMEOUT`` seconds. The local model is not asked: on a CPU it would keep the person
        waiting (and the learning worker needs it).
        """
        try:
            if not self.conversations.title_untitled(user_id, conv_id, derive_title(user_text)):
                return
            if local:
                return
            started = time.perf_counter()
            answer = ask_model_for_title(model, user_text, reply_text, timeout=TITLE_TIMEOUT)
            if answer.input_tokens or answer.output_tokens:
                self.usage.record(user_id=user_id, conversation_id=conv_id, purpose="title", provider=provider,
                                  model=model_name, input_tokens=answer.input_tokens,
                                  output_tokens=answer.output_tokens, latency_ms=(time.perf_counter() - started) * 1000,
                                  cost_usd=price(provider, model_name, answer.input_tokens, answer.output_tokens))
            if answer.title:
                current = self.conversations.get(user_id, conv_id)
                if current.title == derive_title(user_text):  # not renamed meanwhile
                    self.conversations.rename(user_id, conv_id, answer.title)
        except AppError as exc:  # the reply is stored; a missing title is not worth failing the turn for
            log.warning("could not title conversation %s: %s", conv_id, exc.message)

    def _finish(self, result: TurnResult, scope: Scope, reply_text: str, responses: list[ModelResponse],
                provider: str, model_name: str, prior: list[Message], *, learn: bool = True,
                stopped: bool = False) -> None:
        conv_id = result.user_message.conversation_id
        answered = responses[-1] if responses else None
        if answered is not None and answered.model_name:
            result.model = answered.model_name
            result.provider = answered.provider_name or provider
        else:
            result.model, result.provider = model_name, provider
        # A self-hosted OpenAI-compatible server answers as provider "openai" under the model's own
        # name: only a different provider *and* a different model mean the fallback answered.
        result.fell_back = bool(answered and answered.provider_name and provider not in {"local"}
                                and answered.provider_name != provider
                                and not (answered.model_name or "").startswith(model_name))
        if provider in {"compatible", "ollama"} and not result.fell_back:
            result.provider = provider  # not "openai": that would price a self-hosted model as OpenAI's
        result.input_tokens = sum(r.usage.input_tokens or 0 for r in responses)
        result.output_tokens = sum(r.usage.output_tokens or 0 for r in responses)
        costs = [r.usage.cost for r in responses if r.usage.cost is not None]
        if stopped:
            result.cost_usd = None  # the provider bills a stopped stream, but says nothing of it to us
        elif costs:
            result.cost_usd = sum((Decimal(str(c)) for c in costs), Decimal(0))
        else:
            result.cost_usd = price(result.provider or provider, result.model or model_name, result.input_tokens,
                                    result.output_tokens)
        if not reply_text.strip():
            reply_text = "(The model returned an empty reply.)"
        details = TurnDetails(
            recalled=tuple(RecalledMemory(m.id, m.text, m.score) for m in result.recalled),
            tool_events=tuple(result.tool_events), cost_usd=result.cost_usd,
            latency_ms=round(result.latency_ms, 1), fell_back=result.fell_back, stopped=stopped,
            memory_private=result.memory_private,
        )
        result.reply = self.conversations.append(
            conv_id, "assistant", reply_text[: self.conversations.max_chars], user_id=scope.owner_id,
            model=f"{result.provider}:{result.model}" if result.provider != "local" else LOCAL_MODEL_ID,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens, details=details,
        )
        self.usage.record(
            user_id=scope.owner_id, conversation_id=conv_id, purpose="chat", provider=result.provider or provider,
            model=result.model or model_name, requests=len(responses), input_tokens=result.input_tokens,
            output_tokens=result.output_tokens, cost_usd=result.cost_usd, latency_ms=result.latency_ms,
            status="cancelled" if stopped else "ok",
        )
        if not learn:  # the person turned automatic memory off
            return
        exchange = [{"role": "user", "content": result.user_message.content},
                    {"role": "assistant", "content": reply_text}]
        context = [{"role": m.role, "content": m.content} for m in prior[-6:]]
        try:
            result.job_id = self.learning.enqueue(scope, exchange, context, conversation_id=conv_id,
                                                  message_id=result.reply.id)
        except Exception as exc:  # noqa: BLE001 - the reply is stored; learning from it can wait
            log.error("could not queue memory extraction for message %s: %s", result.reply.id, type(exc).__name__)

    def turn_events(self, user_id: str, reply_id: int) -> list[MemoryEvent] | None:
        """What memory learned from the turn ending with ``reply_id``; None while still pending."""
        job = self.learning.queue.for_message(user_id, reply_id)
        if job is None or job.events is None:
            return None
        return job.events

    def turn_status(self, user_id: str, reply_id: int) -> str | None:
        job = self.learning.queue.for_message(user_id, reply_id)
        return None if job is None else job.status

    def undo_change(self, user_id: str, reply_id: int, origin: Literal["tool", "learned"], index: int) -> MemoryEvent:
        """Undo one memory change shown with a reply, exactly, and remember that it was undone.

        ``origin`` says whether the change was made by the assistant's tools during the reply or
        learned afterwards; ``index`` is its position in that list. Returns the event as it was.
        """
        reply = self.conversations.message(user_id, reply_id)
        if origin == "tool":
            details = reply.details or TurnDetails()
            if not 0 <= index < len(details.tool_events):
                raise NotFound("No such memory change.")
            event = details.tool_events[index]
            if event.undone:
                raise ValidationError("This change was already undone.")
            self.memory.undo(user_id, event)
            self.conversations.update_details(user_id, reply_id, details.with_tool_event_undone(index))
        else:
            job = self.learning.queue.for_message(user_id, reply_id)
            if job is None or job.events is None or not 0 <= index < len(job.events):
                raise NotFound("No such memory change.")
            event = job.events[index]
            if event.undone:
                raise ValidationError("This change was already undone.")
            self.memory.undo(user_id, event)
            self.learning.queue.mark_undone(user_id, job.id, index)
        self.metrics.memory_event("UNDO", "ui")
        return event
