"""Streamlit glue shared by the pages: the cached runtime and the degraded-mode banner."""

from __future__ import annotations

import streamlit as st

from core.runtime import Runtime, open_runtime


@st.cache_resource(show_spinner="Opening storage…", on_release=lambda runtime: runtime.close())
def get_runtime() -> Runtime:
    """One runtime per server process, shared by every session (its services are thread-safe).

    Its worker learns memories from finished turns in the background, off the request path.
    """
    runtime = open_runtime()
    runtime.start_worker()
    return runtime


def degraded_banner(runtime: Runtime) -> None:
    """Shout when we run on a fallback: nobody should type into a throwaway instance unknowingly."""
    if runtime.storage.degraded:
        st.error(
            f"**Degraded: running in EPHEMERAL fallback mode.** {runtime.storage.degraded_reason}",
            icon=":material/warning:",
        )
    elif runtime.storage.mode == "ephemeral":
        st.info("Ephemeral demo mode: everything is wiped when the server stops.", icon=":material/timer:")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
