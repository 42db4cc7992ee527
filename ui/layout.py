"""Page layouts beyond Streamlit's two widths: a reading column for chat, a narrow card for forms."""

from __future__ import annotations

import streamlit as st

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
