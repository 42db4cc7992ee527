"""Streamlit glue shared by the pages: the process's runtime and the degraded-mode banner."""

from __future__ import annotations

import streamlit as st

from core.runtime import Runtime, shared_runtime


def get_runtime() -> Runtime:
    """One runtime per server process, shared by every session and by the REST API and MCP
    endpoint on the same port (its services are thread-safe).

    Its worker learns memories from finished turns in the background, off the request path.
    """
    return shared_runtime()


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


def require_user():
    """The signed-in user for this session, or stop the page (the router shows the login page)."""
    from ui.auth_session import current_user  # the accounts layer owns how a session is proven

    user = current_user(get_runtime())
    if user is None:
        st.warning("Please log in.", icon=":material/lock:")
        st.stop()
    return user


def selected_model(runtime: Runtime) -> str | None:
    """The model picker in the sidebar; remembers the choice for this browser session."""
    choices = runtime.registry.available_models()
    if not choices:
        st.sidebar.error("No model is available: configure a provider key or install the local model.")
        return None
    ids = [c.id for c in choices]
    wanted = st.session_state.get("model_id")
    if wanted not in ids:
        wanted = runtime.registry.default_model_id()
    labels = {c.id: c.label for c in choices}
    model_id = st.sidebar.selectbox("Model", ids, index=ids.index(wanted), format_func=labels.get,
                                    key="model_picker")
    st.session_state.model_id = model_id
    return model_id


def require_admin():
    """The signed-in admin, or stop: the router never lists admin pages for others, and this
    check (defence in depth) covers a URL typed by hand."""
    user = require_user()
    if getattr(user, "role", None) != "admin":
        st.error("This page is for administrators.", icon=":material/block:")
        st.stop()
    return user
