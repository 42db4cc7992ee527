"""Page layouts beyond Streamlit's two widths: a reading column for chat, a narrow card for forms."""

from __future__ import annotations

import streamlit as st

from ui.messages import escape_markdown

READING_WIDTH_REM = 48
CARD_WIDTH_REM = 26


def reading_column(width_rem: int = READING_WIDTH_REM) -> None:
    """Centre the page's content (and the chat box) in a column of comfortable line length."""
    st.html(
        "<style>"
        f"[data-testid='stMainBlockContainer'], [data-testid='stBottomBlockContainer'] "
        f"{{ max-width: {width_rem}rem; margin-left: auto; margin-right: auto; }}"
        "</style>"
    )


def narrow_card(width_rem: int = CARD_WIDTH_REM) -> None:
    """Centre the page's content in a narrow column, for sign-in and registration forms."""
    reading_column(width_rem)


def left_aligned_buttons(container_key: str) -> None:
    """Buttons inside the container with this key read like a list: labels start at the left."""
    st.html(
        "<style>"
        f".st-key-{container_key} button, .st-key-{container_key} button > div "
        "{ justify-content: flex-start; text-align: left; width: 100%; min-height: 2rem; }"
        f".st-key-{container_key} button p {{ white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }}"
        "</style>"
    )


def health_rows(components) -> None:
    """One row per component: a Material status icon (no emoji font needed), name, detail, latency."""
    for c in components:
        icon = ":green[:material/check_circle:] **up**" if c.ok else ":red[:material/cancel:] **down**"
        status, name, detail = st.columns([1, 2, 5], vertical_alignment="center")
        status.markdown(icon)
        name.markdown(f"**{c.name}**")
        latency = getattr(c, "latency_ms", None)
        detail.markdown(escape_markdown(c.detail) + ("" if latency is None else f" · {latency:.1f} ms"))
