"""Conversation titles: a few words that say what a chat is about, from its first exchange.

Two ways to get one, and the chat service uses both: :func:`derive_title` works instantly and
offline from the person's first message; :func:`ask_model_for_title` asks the chat's own model and
accepts its answer only if it looks like a title (a short single line). A model that is slow, fails,
or answers with anything else leaves the derived title in place.
"""

from __future__ import annotations

import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from pydantic_ai import Agent
from pydantic_ai.models import Model
from pydantic_ai.settings import ModelSettings

MAX_TITLE_WORDS = 10
MAX_TITLE_CHARS = 60
TITLE_PROMPT = """\
Write a title of 2 to 6 words for a chat that starts with the exchange below. Use the language of \
the user's message. Answer with the title only: no quotes, no final full stop.

User: {user}
Assistant: {assistant}"""

# Words that open a message without saying what it is about; dropped from the front of a derived title.
_OPENERS = re.compile(
    r"^(?:(?:hi|hello|hey|hallo|bonjour|hola|ciao|ok(?:ay)?|so|well|please|pls|thanks?|thank you)\b[\s,!.:;-]*)+",
    re.IGNORECASE,
)
_ASKS = re.compile(
    r"^(?:(?:can|could|would|will) you(?: please)?|i (?:want|need|would like) (?:you )?to|help me(?: to)?|"
    r"tell me|remember that|please)\s+",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"[`*_#>\[\]()~|]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_EDGES = " ,.;:!?-、。！？"


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    return " ".join(_MARKUP.sub(" ", text).split())


def _shorten(text: str) -> str:
    words = text.split()
    out: list[str] = []
    for word in words[:MAX_TITLE_WORDS]:
        if len(" ".join([*out, word])) > MAX_TITLE_CHARS:
            break
        out.append(word)
    if not out:  # one very long word (a URL, or a language written without spaces)
        return text[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    title = " ".join(out)
    return title.rstrip(" ,;:-") + "…" if len(out) < len(words) else title


def derive_title(first_message: str) -> str:
    """A title from the person's first message, with no model: its first line and sentence,
    without greetings, "can you…" openers or Markdown, at most ten words."""
    lines = [line for line in (_clean(part) for part in (first_message or "").splitlines()) if line]
    if not lines:
        return "New conversation"
    text = " ".join(lines)
    core = ""
    for sentence in _SENTENCE_END.split(text):
        core = _OPENERS.sub("", sentence)
        while (shorter := _ASKS.sub("", core)) != core:
            core = shorter
        core = core.strip(_EDGES)
        if core:
            break
    core = core or text.strip(_EDGES) or text
    return _shorten(core[0].upper() + core[1:])


def usable_title(answer: str | None) -> str | None:
    """The model's answer as a title, or None when it is not one (empty, several lines, too long)."""
    if not answer:
        return None
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        return None
    title = _clean(lines[0]).strip(" \"'“”‘’«»").removeprefix("Title:").strip(" \"'“”‘’«».")
    if not title or len(title.split()) > MAX_TITLE_WORDS or len(title) > MAX_TITLE_CHARS:
        return None
    return title


# Title requests run here so a slow model can be given up on: its late answer is simply dropped.
_askers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="optimus-title")


@dataclass(frozen=True, slots=True)
class TitleAnswer:
    """What asking a model for a title gave: the title (None if unusable) and the tokens it took."""

    title: str | None
    input_tokens: int = 0
    output_tokens: int = 0


def ask_model_for_title(model: Model, user_text: str, reply_text: str, *, timeout: float) -> TitleAnswer:
    """Ask ``model`` for a title of the exchange. The title is None when the model does not give
    a usable one within ``timeout`` seconds (or fails, or answers with something that is not a title)."""
    agent: Agent[None, str] = Agent(output_type=str, defer_model_check=True)
    prompt = TITLE_PROMPT.format(user=user_text[:1500], assistant=reply_text[:1500])
    settings = ModelSettings(max_tokens=24, temperature=0.2, timeout=timeout)
    pending = _askers.submit(agent.run_sync, prompt, model=model, model_settings=settings)
    try:
        result = pending.result(timeout=timeout)
    except FutureTimeout:
        pending.cancel()
        return TitleAnswer(None)
    except Exception:  # noqa: BLE001 - a title is a nicety: any failure means "use the derived one"
        return TitleAnswer(None)
    usage = result.usage
    return TitleAnswer(usable_title(result.output), usage.input_tokens or 0, usage.output_tokens or 0)
