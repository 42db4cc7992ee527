"""Admin tools: users, sessions, health, maintenance and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from core.audit import EVENTS
from core.devices import describe_user_agent
from core.errors import AppError
from core.memory.types import Scope
from core.rendering import inert_markdown
from pages.auth_session import client_ip
from pages.common import get_runtime, human_bytes, require_admin
from ui.formatting import ago
from ui.layout import health_rows
from ui.messages import escape_markdown

runtime = get_runtime()
admin = require_admin()
auth = runtime.auth

st.title("Admin tools")
users_tab, sessions_tab, health_tab, maint_tab, audit_tab = st.tabs(
    ["Users", "Sessions", "Health", "Maintenance", "Audit log"])

# ------------------------------------------------------------------ users
with users_tab:
    people = runtime.users.list_users(limit=500)
    total = runtime.users.count()
    st.caption(f"{total:,} account{'s' if total != 1 else ''}")
    for person in people:
        c1, c2, c3, c4 = st.columns([4, 2, 1, 1], vertical_alignment="center")
        c1.markdown(f"**{person.username}** · {inert_markdown(person.email or 'no email')} · "
                    f"since {person.created_at:%Y-%m-%d}"
                    + (" · :red-badge[locked]" if person.locked else ""))
        role = c2.selectbox("Role", ["user", "admin"], index=["user", "admin"].index(person.role),
                            key=f"role-{person.id}", label_visibility="collapsed")
        if role != person.role:
            try:
                auth.set_role(admin, person.id, role, ip=client_ip())
                st.toast(f"{person.username} is now {role}.")
                st.rerun()
            except AppError as exc:
                st.error(exc.message)
        if person.id != admin.id:
            if person.locked:
                if c3.button("Unlock", key=f"unlock-{person.id}"):
                    auth.unlock_user(admin, person.id, ip=client_ip())
                    st.rerun()
            elif c3.button("Lock", key=f"lock-{person.id}"):
                try:
                    auth.lock_user(admin, person.id, ip=client_ip())
                    st.rerun()
                except AppError as exc:
                    st.error(exc.message)
            with c4.popover("Delete", icon=":material/delete:"):
                typed = st.text_input(f"Type {person.username} to erase this account and all its data",
                                      key=f"erase-{person.id}")
                if st.button("Erase", key=f"erase-go-{person.id}", type="primary",
                             disabled=typed.strip().lower() != person.username):
                    try:
                        report = runtime.gdpr.erase(admin, person.id, confirm_username=typed, ip=client_ip())
                        st.toast(f"Erased {person.username}: {report.memories} memories, "
                                 f"{report.conversations} conversations.")
                        st.rerun()
                    except AppError as exc:
                        st.error(exc.message)

# ------------------------------------------------------------------ sessions
with sessions_tab:
    pick = st.selectbox("Account", [p.id for p in people], format_func=lambda i: next(
        p.username for p in people if p.id == i))
    if pick:
        listed = auth.sessions(pick)
        if not listed:
            st.caption("No active sessions.")
        for s in listed:
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.markdown(f"{escape_markdown(describe_user_agent(s.user_agent))} · {s.ip or 'address unknown'} · "
                        f"active {ago(s.last_seen_at)} · expires {s.expires_at:%H:%M} UTC",
                        help=s.user_agent or "no user agent sent")
            if c2.button("Revoke", key=f"adm-revoke-{s.jti}"):
                auth.revoke_session(admin, s.jti, ip=client_ip())
                st.toast("Session revoked.")
                st.rerun()
        if listed and st.button("Revoke all of this account's sessions"):
            n = auth.revoke_all_sessions(admin, pick, ip=client_ip())
            st.toast(f"Revoked {n} sessions.")
            st.rerun()

# ------------------------------------------------------------------ health
with health_tab:
    report = runtime.health()
    st.markdown(f"**Status:** `{report.status}` · **storage mode:** `{report.mode}`")
    cols = st.columns(max(1, len(report.counts)))
    for col, (name, value) in zip(cols, report.counts.items(), strict=False):
        col.metric(name.replace("_", " ").capitalize(), f"{value:,}")
    with st.container(border=True):
        health_rows(report.components)
    st.caption(" · ".join(f"{k.replace('_', ' ')}: {human_bytes(v)}" for k, v in report.sizes.items()))
    depth = runtime.queue.depth()
    st.caption(f"Extraction queue: {depth}")


# ------------------------------------------------------------------ maintenance
def _audit_maintenance(task: str, detail: dict) -> None:
    runtime.audit.record("admin.maintenance", actor_id=admin.id, ip=client_ip(), detail={"task": task, **detail})


with maint_tab:
    st.caption("Each task runs now and reports what it did.")
    if st.button("Remove expired conversations", icon=":material/auto_delete:"):
        with st.status("Cleaning up conversations…") as status:
            result = runtime.conversations.cleanup()
            status.update(label=f"Done: {result.expired_conversations} conversations and "
                                f"{result.expired_messages + result.trimmed_messages} messages removed.", state="complete")
            _audit_maintenance("conversations.cleanup", {"conversations": result.expired_conversations})
    if st.button("Remove expired memories", icon=":material/event_busy:"):
        with st.status("Cleaning up memories…") as status:
            removed = runtime.memory.cleanup_expired()
            status.update(label=f"Done: {removed} expired memories removed.", state="complete")
            _audit_maintenance("memories.cleanup", {"removed": removed})
    if st.button("Consolidate near-duplicate memories", icon=":material/merge:"):
        with st.status("Consolidating…") as status:
            bar = st.progress(0.0)
            merged = 0
            for i, person in enumerate(people):
                for user_id in runtime.memory.stats(person.id).user_ids or [person.id]:
                    events = runtime.memory.consolidate(Scope(person.id, user_id))
                    merged += sum(e.event == "DELETE" for e in events)
                bar.progress((i + 1) / max(1, len(people)))
            status.update(label=f"Done: {merged} duplicates merged across {len(people)} accounts.", state="complete")
            _audit_maintenance("memories.consolidate", {"merged": merged})
    failed = runtime.queue.depth().get("failed", 0)
    if st.button(f"Retry failed extractions ({failed})", icon=":material/replay:", disabled=not failed):
        n = runtime.queue.retry_failed()
        runtime.start_worker().wake()
        _audit_maintenance("queue.retry", {"jobs": n})
        st.toast(f"{n} jobs queued again.")

# ------------------------------------------------------------------ audit log
with audit_tab:
    f1, f2, f3 = st.columns(3)
    kinds = f1.multiselect("Events", sorted(EVENTS))
    who = f2.selectbox("Actor", ["anyone"] + [p.id for p in people],
                       format_func=lambda i: i if i == "anyone" else next(p.username for p in people if p.id == i))
    days = f3.date_input("Between", value=(datetime.now(UTC).date() - timedelta(days=7), datetime.now(UTC).date()))
    filters = {"events": kinds or None, "actor_id": None if who == "anyone" else who}
    if isinstance(days, tuple) and len(days) == 2:
        filters["since"] = datetime.combine(days[0], time.min, tzinfo=UTC)
        filters["until"] = datetime.combine(days[1] + timedelta(days=1), time.min, tzinfo=UTC)
    events = runtime.audit.query(viewer=admin, limit=500, **filters)
    names = {p.id: p.username for p in people}
    st.dataframe([{"Time": e.at, "Event": e.event, "Actor": names.get(e.actor_id, e.actor_id),
                   "Subject": names.get(e.subject_id, e.subject_id), "Client address": e.ip, "Detail": e.detail}
                  for e in events], hide_index=True, width="stretch", placeholder="—")
    if st.button("Prepare CSV export", icon=":material/csv:"):
        csv_text = runtime.audit.export_csv(viewer=admin, ip=client_ip(), **filters)
        st.download_button("Download CSV", csv_text, file_name="optimus-audit.csv", mime="text/csv",
                           on_click="ignore")
