"""Admin tools: users, sessions, health, maintenance and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from core.audit import EVENTS
from core.maintenance import LABELS
from core.devices import describe_user_agent
from core.errors import AppError
from core.rendering import inert_markdown
from ui.auth_session import client_ip
from ui.common import get_runtime, human_bytes, require_admin
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
with maint_tab:
    maintenance = runtime.maintenance
    every = runtime.settings.maintenance_interval
    st.caption(f"Runs by itself every {every} (consolidation daily) in the background worker; one runner at "
               "a time across replicas. *Run now* runs a task at once." if every.total_seconds() else
               "The schedule is off (OPTIMUS_MAINTENANCE_INTERVAL=0): tasks run only when started here.")
    failed_jobs = runtime.queue.depth().get("failed", 0)
    for task, label in LABELS.items():
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        last = maintenance.last_started(task)
        note = f" · {failed_jobs} failed now" if task == "failed_extractions" else ""
        c1.markdown(f"**{label}** · last run {ago(last) if last else 'never'}{note}")
        if c2.button("Run now", key=f"run-{task}", icon=":material/play_arrow:"):
            with st.spinner(f"{label}…"):
                run = maintenance.run(task, trigger="admin", actor_id=admin.id, ip=client_ip())
            if run is None:
                st.toast("Another server is running this task right now.", icon=":material/schedule:")
            elif run.status == "ok":
                runtime.start_worker().wake()
                st.toast(f"{label}: {run.changed} changed.", icon=":material/check:")
            else:
                st.error(f"{label} failed: {run.detail.get('error', 'see the server log')}")
    runs = maintenance.recent(limit=30)
    if runs:
        st.markdown("**Recent runs**")
        st.dataframe(
            [{"task": r.label, "when": r.started_at, "by": "schedule" if r.trigger == "schedule" else "admin",
              "status": r.status, "changed": r.changed,
              "details": ", ".join(f"{k} {v}" for k, v in r.detail.items() if k != "error") or r.detail.get("error", "")}
             for r in runs],
            hide_index=True, width="stretch")

    st.markdown("**Backup**")
    if runtime.storage.mode == "embedded":
        st.caption("One consistent archive of the database and the vector shard, taken while memory writes "
                   "pause for a moment. Restore it with `python -m core restore --from ARCHIVE --data-dir NEW_DIR`.")
        if st.button("Create backup", icon=":material/backup:"):
            from core.backup import create_backup

            with st.spinner("Writing the archive…"):
                try:
                    report = create_backup(runtime, runtime.storage.data_dir / "backups")
                except AppError as exc:
                    st.error(exc.message)
                else:
                    runtime.audit.record("admin.maintenance", actor_id=admin.id, ip=client_ip(),
                                         detail={"task": "backup", "memories": report.counts.memories})
                    st.session_state.backup_path = str(report.path)
                    st.toast(f"Backup written: {report.counts.memories} memories, {report.counts.users} users.")
        if path := st.session_state.get("backup_path"):
            from pathlib import Path

            archive = Path(path)
            if archive.is_file():
                st.download_button(f"Download {archive.name} ({human_bytes(archive.stat().st_size)})",
                                   data=archive.read_bytes(), file_name=archive.name, mime="application/gzip",
                                   icon=":material/download:")
    else:
        st.caption("In server mode back up PostgreSQL with `pg_dump` and the `memories` collection with "
                   "Qdrant's snapshot API (README, Backup and restore).")

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
