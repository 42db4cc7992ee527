"""Between llama.cpp's worker thread and pydantic-ai's event loop: one generation, streamed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio

from core.models.llama_engine import Engine, Job, Prompt

# --------------------------------------------------------------------------------------------
# Worker thread <-> event loop.

_Kind = Literal["ready", "text", "error", "done"]


class Generation:
    """One generation running in a worker thread, read from the event loop.

    The worker posts ``ready`` (prompt fitted, lock held), then ``text`` items, then ``done``; an
    exception is posted as ``error`` and raised on the event loop. ``aclose()`` asks the worker to
    stop and waits until it has released the lock, however far it got.
    """

    def __init__(self, engine: Engine, job: Job, *, reserve: int) -> None:
        self._engine = engine
        self._job = job
        self._reserve = reserve
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[_Kind, Any]] = asyncio.Queue()
        self._finished = asyncio.Event()
        self.prompt: Prompt | None = None
        self.finish_reason: str | None = None

    @property
    def output_tokens(self) -> int:
        return self._job.sampled

    async def start(self) -> Prompt:
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


