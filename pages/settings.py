"""Settings: profile, password, preferences, sessions, API keys, and your data (GDPR)."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from core.devices import describe_user_agent
from core.errors import AppError
from core.preferences import Preferences
from core.rendering import inert_markdown
from ui.auth_session import client_ip, current_session, send_to_end_route
from ui.common import get_runtime, require_user
from ui.formatting import ago
from ui.messages import escape_markdown

runtime = get_runtime()
user = require_user()
auth = runtime.auth
session = current_session(runtime)

st.title("Settings")
profile, security, prefs_tab, keys_tab, data_tab = st.tabs(
    ["Profile", "Password & sessions", "Preferences", "API keys", "Your data"])

with profile:
    st.markdown(f"**Username:** {user.username}  \n**Email:** {user.email or '—'}  \n**Role:** {user.role}  \n"
                f"**Member since:** {user.created_at:%Y-%m-%d}")

# ------------------------------------------------------------------ password and sessions
with security:
    with st.form("password", clear_on_submit=True):
        st.subheader("Change password")
        old = st.text_input("Current password", type="password", autocomplete="current-password")
        new = st.text_input("New password", type="password", autocomplete="new-password",
                            help="At least 12 characters and hard to guess.")
        again = st.text_input("Repeat the new password", type="password", autocomplete="new-password")
        if st.form_submit_button("Change password", type="primary"):
            if new != again:
                st.error("The two new passwords differ.")
            else:
                try:
                    ended = auth.change_password(user.id, old, new, current_jti=session.session.jti if session else None,
                                                 ip=client_ip())
                    st.toast(f"Password changed. {ended} other session{'s' if ended != 1 else ''} signed out.",
                             icon=":material/check:")
                except AppError as exc:
                    st.error(exc.message)

    st.subheader("Active sessions")
    now = datetime.now(UTC)
    for s in auth.sessions(user.id):
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        this = session is not None and s.jti == session.session.jti
        c1.markdown(f"{'**This browser** · ' if this else ''}{escape_markdown(describe_user_agent(s.user_agent))} · "
                    f"{s.ip or 'address unknown'} · active {ago(s.last_seen_at)}",
                    help=f"Signed in {s.created_at:%Y-%m-%d %H:%M} UTC · {s.user_agent or 'no user agent sent'}")
        if not this and c2.button("Sign out", key=f"revoke-{s.jti}"):
            try:
                auth.revoke_session(user, s.jti, ip=client_ip())
                st.toast("Session ended.")
                st.rerun()
            except AppError as exc:
                st.error(exc.message)
    if st.button("Sign out everywhere", icon=":material/logout:"):
        auth.logout_everywhere(user.id, ip=client_ip())
        send_to_end_route()
        st.stop()

# ------------------------------------------------------------------ preferences
with prefs_tab:
    store = runtime.preferences
    current = store.get(user.id)
    models = runtime.registry.available_models()
    ids = ["(install default)"] + [m.id for m in models]
    labels = {m.id: m.label for m in models}
    with st.form("preferences"):
        model = st.selectbox("Default model", ids, format_func=lambda i: labels.get(i, i),
                             index=ids.index(current.default_model) if current.default_model in ids else 0)
        top_k = st.slider("Memories recalled into each reply", 0, 20,
                          current.recall_top_k if current.recall_top_k is not None else runtime.settings.recall_top_k)
        auto = st.toggle("Learn from my conversations automatically", value=current.auto_memory,
                         help="When off, Optimus only remembers what you add yourself or ask it to remember.")
        ttl = st.number_input("Forget learned memories after (days, 0 = never)", 0, 3650,
                              current.memory_ttl_days or 0)
        local_only = st.toggle("Use my memories only with local models", value=current.memories_local_only,
                               help="With a hosted model, nothing you told Optimus earlier is sent to it and its "
                                    "tools cannot change your memories; learning runs on this machine.")
        if st.form_submit_button("Save preferences", type="primary"):
            try:
                store.set(user.id, Preferences(default_model=None if model == ids[0] else model, recall_top_k=top_k,
                                               auto_memory=auto, memory_ttl_days=ttl or None,
                                               memories_local_only=local_only))
                if model != ids[0]:
                    st.session_state.model_id = model
                st.toast("Preferences saved.", icon=":material/check:")
            except AppError as exc:
                st.error(exc.message)

# ------------------------------------------------------------------ API keys
with keys_tab:
    keys = runtime.api_keys
    st.caption("Use a key with the REST API at `/api` on this server (mem0's `MemoryClient(api_key=..., "
               "host=\"http://<this server>/api\")`) or with MCP clients at `/mcp` (`Authorization: Bearer <key>`). "
               "A key acts as you and reaches only your memories, the ones your chats use.")
    with st.form("new-key", clear_on_submit=True):
        name = st.text_input("Name", placeholder="e.g. laptop script")
        if st.form_submit_button("Create key", icon=":material/key:"):
            try:
                _, plaintext = keys.create(user.id, name, ip=client_ip())
                st.success("Copy this key now: it is shown only once.")
                st.code(plaintext, language=None)
            except AppError as exc:
                st.error(exc.message)
    listed = keys.for_owner(user.id)
    if not listed:
        st.caption("No keys yet.")
    for k in listed:
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        state = "revoked" if not k.active else f"used {k.usage_count:,}×" + (
            f", last {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else ", never used")
        c1.markdown(f"**{inert_markdown(k.name)}** · `{k.prefix}…` · created {k.created_at:%Y-%m-%d} · {state}")
        if k.active and c2.button("Revoke", key=f"key-{k.id}"):
            keys.revoke(user.id, k.id, ip=client_ip())
            st.toast("Key revoked.")
            st.rerun()

# ------------------------------------------------------------------ GDPR
with data_tab:
    st.subheader("Download my data")
    st.caption("A ZIP with your profile, conversations, memories with their full history, usage and cost, "
               "and security events, plus a README explaining each file.")
    ip = client_ip()
    # A callable runs (and the export is audited) when the button is clicked, not on every rerun.
    st.download_button("Download ZIP", lambda: runtime.gdpr.export_zip(user.id, ip=ip), icon=":material/download:",
                       file_name=f"optimus-{user.username}-{datetime.now(UTC):%Y%m%d}.zip",
                       mime="application/zip", on_click="ignore")
    st.divider()
    st.subheader("Delete my account")
    st.caption("Erases your account, conversations, memories and their history, keys and sessions. "
               "Usage totals stay without your name; the audit log keeps an anonymous record.")
    confirm = st.text_input("Type your username to confirm", key="erase_confirm")
    if st.button("Delete my account forever", type="primary", disabled=confirm.strip().lower() != user.username):
        try:
            runtime.gdpr.erase(user, user.id, confirm_username=confirm, ip=client_ip())
        except AppError as exc:
            st.error(exc.message)
        else:
            send_to_end_route(farewell="erased")  # the sign-in page confirms it
            st.stop()
