"""How chat messages are put on screen: their text, the copy button, right-to-left text.

:func:`render_message_text` is the one place a message's (or a memory's) text becomes markup.
"""

from __future__ import annotations

import html

import streamlit as st

from core.rendering import inert_markdown

# One script per page: a copy button copies its own data-optimus-copy text; every block of a
# message's text gets dir="auto" so Arabic or Hebrew reads right to left and aligns right.
_BEHAVIOUR = """
<script>
(() => {
  if (window.__optimusMessages) return;
  window.__optimusMessages = true;
  const blocks = '[data-testid="stChatMessageContent"] :is(p, li, h1, h2, h3, h4, h5, h6, blockquote, td, th)';
  const mark = () => document.querySelectorAll(blocks + ':not([dir])').forEach(el => el.setAttribute('dir', 'auto'));
  new MutationObserver(mark).observe(document.body, {childList: true, subtree: true});
  mark();
  const copy = async (text) => {
    try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* not a secure context */ }
    const area = document.createElement('textarea');
    area.value = text; area.style.position = 'fixed'; area.style.opacity = '0';
    document.body.appendChild(area); area.select();
    const done = document.execCommand('copy'); area.remove(); return done;
  };
  document.addEventListener('click', async (event) => {
    const button = event.composedPath().find(el => el.dataset && el.dataset.optimusCopy !== undefined);
    if (!button) return;
    const label = button.querySelector('.optimus-copy-label');
    const ok = await copy(button.dataset.optimusCopy);
    label.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { label.textContent = 'Copy'; }, 1500);
  });
})();
</script>
"""

_STYLE = """
<style>
button.optimus-copy {
  display: inline-flex; align-items: center; gap: .35rem; padding: .15rem .5rem; border: none;
  border-radius: .5rem; background: transparent; color: inherit; font: inherit; font-size: .875rem;
  cursor: pointer; opacity: .8;
}
button.optimus-copy:hover { background: rgba(128, 128, 128, .15); opacity: 1; }
button.optimus-copy .optimus-icon { font-family: 'Material Symbols Rounded'; font-size: 1.1rem; line-height: 1; }
[data-testid="stChatMessageContent"] :is(p, li, blockquote) { unicode-bidi: plaintext; text-align: start; }
</style>
"""


def install_message_behaviour() -> None:
    """Once per page run, before messages: the copy buttons' script and the bidi rules."""
    st.html(_STYLE)
    st.html(_BEHAVIOUR, unsafe_allow_javascript=True)


def render_message_text(text: str) -> None:
    """Show a message's (or memory's) text as Markdown that cannot load anything (images become
    links, see :mod:`core.rendering`). The one place message text is rendered."""
    st.markdown(inert_markdown(text))


def inline_text(text: str | None) -> str:
    """A memory's (or any stored) text for use inside a Markdown line we compose: it reads literally,
    so its own Markdown (links, images, emphasis) does nothing."""
    return escape_markdown(text or "")


def copy_button(text: str) -> None:
    """A small "Copy" button that puts ``text`` (the raw Markdown) on the clipboard, in the browser
    only: no rerun, nothing sent to the server."""
    value = html.escape(text, quote=True)
    st.html(
        f'<button type="button" class="optimus-copy" data-optimus-copy="{value}" aria-label="Copy message">'
        '<span class="optimus-icon" aria-hidden="true">content_copy</span>'
        '<span class="optimus-copy-label">Copy</span></button>',
        width="content",
    )


_MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-.!:~|<>$")


def escape_markdown(text: str) -> str:
    """``text`` with every Markdown special character escaped, for labels that must read literally."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in text)
