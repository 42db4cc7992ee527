"""Memories: everything Optimus keeps about you — search, filter, edit, add, delete, history."""

from __future__ import annotations

from datetime import UTC, datetime, time

import streamlit as st

from core.errors import AppError
from core.memory.service import MemoryFilters
from core.memory.types import MEMORY_TYPES, Scope
from core.rendering import inert_markdown
from pages.common import get_runtime, require_user

runtime = get_runtime()
user = require_user()
memory = runtime.memory

st.title("Memories")
st.caption("What Optimus remembers about you. Edit anything, delete anything; every change is kept in "
           "each memory's history so it can be reverted.")

# ------------------------------------------------------------------ header stats
stats = memory.stats(user.id)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Memories", f"{stats.total:,}")
c2.metric("Most common type", max(stats.by_type, key=stats.by_type.get) if stats.by_type else "—")
c3.metric("Top people", ", ".join(p for p, _ in stats.top_people[:3]) or "—")
c4.metric("Top tags", ", ".join(t for t, _ in stats.top_tags[:3]) or "—")
if stats.by_type:
    st.bar_chart(dict(sorted(stats.by_type.items())), horizontal=True, height=140)  # one bar per type

# ------------------------------------------------------------------ add
with st.expander("Add a memory", icon=":material/add:"):
    with st.form("add-memory", clear_on_submit=True):
        text = st.text_area("Text", placeholder="e.g. Prefers window seats on long flights", max_chars=2000)
        a1, a2, a3 = st.columns(3)
        kind = a1.selectbox("Type", MEMORY_TYPES, index=MEMORY_TYPES.index("note"))
        importance = a2.slider("Importance", 1, 5, 3)
        expires = a3.date_input("Expires", value=None)
        tags = st.text_input("Tags", placeholder="comma-separated")
        people = st.text_input("People", placeholder="comma-separated")
        if st.form_submit_button("Add", type="primary", icon=":material/add:"):
            try:
                memory.add(Scope.personal(user.id), text, type=kind, importance=importance,
                           tags=[t.strip() for t in tags.split(",") if t.strip()],
                           people=[p.strip() for p in people.split(",") if p.strip()],
                           expires_at=expires, source="ui")
                st.toast("Memory added.", icon=":material/check:")
            except AppError as exc:
                st.error(exc.message)

# ------------------------------------------------------------------ search and filters
query = st.text_input("Search", placeholder="Search by meaning and keywords", key="memory_query",
                      label_visibility="collapsed")
with st.expander("Filters", icon=":material/filter_list:"):
    f1, f2, f3 = st.columns(3)
    types = f1.multiselect("Types", MEMORY_TYPES)
    tag_filter = f2.multiselect("Tags", [t for t, _ in stats.top_tags])
    people_filter = f3.multiselect("People", [p for p, _ in stats.top_people])
    f4, f5, f6 = st.columns(3)
    imp = f4.slider("Importance", 1, 5, (1, 5))
    dates = f5.date_input("Created between", value=(), help="Pick a start and an end date")
    scopes = [u for u in stats.user_ids if u != user.id]
    scope_pick = f6.selectbox("End-user scope", ["mine"] + scopes,
                              help="Memories kept through the API for your own end users") if scopes else "mine"

after = before = None
if isinstance(dates, tuple) and len(dates) == 2:
    after = datetime.combine(dates[0], time.min, tzinfo=UTC)
    before = datetime.combine(dates[1], time.max, tzinfo=UTC)
filters = MemoryFilters(
    user_id=user.id if scope_pick == "mine" else scope_pick,
    types=tuple(types), tags=tuple(tag_filter), people=tuple(people_filter),
    min_importance=imp[0] if imp[0] > 1 else None, max_importance=imp[1] if imp[1] < 5 else None,
    created_after=after, created_before=before,
)
try:
    if query.strip():
        records = memory.search(user.id, query, filters, top_k=100)
    else:
        records = memory.get_all(user.id, filters, limit=500)
except AppError as exc:
    st.error(exc.message)
    st.stop()

if not records:
    st.info("No memories here yet. Chat with Optimus and it will learn durable facts you share, "
            "or add one above." if not query else "Nothing matches that search.")
    st.stop()

# ------------------------------------------------------------------ the table
rows = [
    {
        "delete": False,
        "text": r.text,
        "type": r.type,
        "importance": r.importance,
        "tags": ", ".join(r.tags),
        "people": ", ".join(r.people),
        "expires": r.expires_at,
        "created": (r.created_at or "")[:16].replace("T", " "),
        "id": r.id,
    }
    for r in records
]
edited = st.data_editor(
    rows,
    key="memory_table",
    hide_index=True,
    width="stretch",
    disabled=["created", "id"],
    column_config={
        "delete": st.column_config.CheckboxColumn("Delete", width="small"),
        "text": st.column_config.TextColumn("Memory", width="large", max_chars=2000, required=True),
        "type": st.column_config.SelectboxColumn("Type", options=list(MEMORY_TYPES), required=True),
        "importance": st.column_config.NumberColumn("Importance", min_value=1, max_value=5, step=1),
        "tags": st.column_config.TextColumn("Tags"),
        "people": st.column_config.TextColumn("People"),
        "expires": st.column_config.DateColumn("Expires"),
        "created": st.column_config.TextColumn("Created"),
        "id": None,
    },
)
st.caption(f"{len(records)} memor{'ies' if len(records) != 1 else 'y'} shown" + (" (best matches first)" if query.strip() else " (newest first)"))

by_id = {r.id: r for r in records}
changes = []
for row in edited:
    rec = by_id[row["id"]]
    new_tags = tuple(t.strip() for t in (row["tags"] or "").split(",") if t.strip())
    new_people = tuple(p.strip() for p in (row["people"] or "").split(",") if p.strip())
    if (row["text"] != rec.text or row["type"] != rec.type or int(row["importance"] or 3) != rec.importance
            or new_tags != rec.tags or new_people != rec.people or row["expires"] != rec.expires_at):
        changes.append((rec, row, new_tags, new_people))
to_delete = [row["id"] for row in edited if row["delete"]]

b1, b2 = st.columns(2)
if b1.button(f"Save {len(changes)} change{'s' if len(changes) != 1 else ''}", type="primary",
             disabled=not changes, icon=":material/save:"):
    saved, failed = 0, []
    for rec, row, new_tags, new_people in changes:
        try:
            memory.update(user.id, rec.id, text=row["text"] if row["text"] != rec.text else None, type=row["type"],
                          importance=int(row["importance"] or 3), tags=new_tags, people=new_people,
                          expires_at=row["expires"], source="ui")
            saved += 1
        except AppError as exc:
            failed.append(f"“{rec.text[:40]}”: {exc.message}")
    if failed:
        st.error("Some changes were not saved:\n\n" + "\n\n".join(failed))
    if saved:
        st.toast(f"Saved {saved} change{'s' if saved != 1 else ''}.", icon=":material/check:")
        st.session_state.pop("memory_table", None)
        st.rerun()

if to_delete:
    with b2.popover(f"Delete {len(to_delete)} selected", icon=":material/delete:"):
        st.write(f"Delete {len(to_delete)} memor{'ies' if len(to_delete) != 1 else 'y'}? "
                 "You can still restore them from their history.")
        if st.button("Yes, delete", type="primary"):
            for mem_id in to_delete:
                try:
                    memory.delete(user.id, mem_id, source="ui")
                except AppError as exc:
                    st.error(exc.message)
            st.toast(f"Deleted {len(to_delete)}.", icon=":material/delete:")
            st.session_state.pop("memory_table", None)
            st.rerun()

# ------------------------------------------------------------------ history
st.subheader("History")
pick = st.selectbox("Memory", [r.id for r in records], format_func=lambda i: by_id[i].text[:90],
                    label_visibility="collapsed")
if pick:
    entries = memory.history(user.id, pick)
    for entry in reversed(entries):
        h1, h2 = st.columns([6, 1], vertical_alignment="center")
        change = {"ADD": f"added “{entry.new_memory}”",
                  "UPDATE": f"“{entry.old_memory}” → “{entry.new_memory}”",
                  "DELETE": f"deleted “{entry.old_memory}”"}.get(entry.event, entry.event)
        change = inert_markdown(change)  # memory text may be anybody's words: no images
        h1.markdown(f"`{str(entry.recorded_at)[:16]}` · {entry.source or 'unknown'} · {change}")
        if entry.event != "DELETE" and entry.new_memory != by_id[pick].text:
            if h2.button("Revert", key=f"revert-{entry.id}"):
                try:
                    memory.revert(user.id, pick, entry.id, source="ui")
                    st.toast("Reverted.")
                    st.rerun()
                except AppError as exc:
                    st.error(exc.message)
