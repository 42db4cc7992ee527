"""Memories: everything Optimus keeps about you — search, filter, edit, add, delete, history, restore.

Select a memory in the table to edit it, see its history and revert it, right there. Deleted
memories stay restorable under "Recently deleted".
"""

from __future__ import annotations

from datetime import UTC, datetime, time

import streamlit as st

from core.errors import AppError
from core.memory.service import MemoryFilters
from core.memory.types import MEMORY_TYPES, Scope
from ui.common import get_runtime, require_user
from ui.formatting import ago
from ui.messages import inline_text

runtime = get_runtime()
user = require_user()
memory = runtime.memory

st.title("Memories")
st.caption("What Optimus remembers about you. Edit anything, delete anything; every change is kept in "
           "each memory's history so it can be reverted, and deleted memories can be restored.")


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


# ------------------------------------------------------------------ header stats
stats = memory.stats(user.id)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Memories", f"{stats.total:,}")
c2.metric("Most common type", max(stats.by_type, key=stats.by_type.get) if stats.by_type else "—")
c3.metric("Top people", ", ".join(p for p, _ in stats.top_people[:3]) or "—")
c4.metric("Top tags", ", ".join(t for t, _ in stats.top_tags[:3]) or "—")

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
                memory.add(Scope.personal(user.id), text, type=kind, importance=importance, tags=_split(tags),
                           people=_split(people), expires_at=expires, source="ui")
                st.toast("Memory added.", icon=":material/check:")
            except AppError as exc:
                st.error(exc.message)

# ------------------------------------------------------------------ search and filters
query = st.text_input("Search", placeholder="Search by meaning and keywords", key="memory_query",
                      label_visibility="collapsed", icon=":material/search:")
with st.expander("Filters", icon=":material/filter_list:"):
    f1, f2, f3 = st.columns(3)
    types = f1.multiselect("Types", sorted(stats.by_type), format_func=lambda t: f"{t} ({stats.by_type[t]})")
    tag_counts, people_counts = dict(stats.tags), dict(stats.people)
    # Only values that occur, most used first, with how many memories carry them.
    tag_filter = f2.multiselect("Tags", list(tag_counts), format_func=lambda t: f"{t} ({tag_counts[t]})")
    people_filter = f3.multiselect("People", list(people_counts), format_func=lambda p: f"{p} ({people_counts[p]})")
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
weak_ids: set[str] = set()
try:
    if query.strip():
        ranked = memory.search_relevant(user.id, query, filters, top_k=100)
        records = ranked.matches + ranked.weak
        weak_ids = {r.id for r in ranked.weak}
    else:
        records = memory.get_all(user.id, filters, limit=500)
except AppError as exc:
    st.error(exc.message)
    st.stop()

# ------------------------------------------------------------------ the table
by_id = {r.id: r for r in records}
if not records:
    if query.strip():
        st.info(f"Nothing matches “{query.strip()}”. Try other words, or clear the filters.",
                icon=":material/search_off:")
    else:
        st.info("No memories here yet. Chat with Optimus and it will learn durable facts you share, "
                "or add one above.", icon=":material/neurology:")
else:
    ids = [r.id for r in records]
    # The selection follows memory ids, not row positions: when the rows change order (a new search,
    # a revert), the table starts over with the same memories selected.
    table_key = f"memory_table-{hash(tuple(ids)) & 0xFFFFFFFF:x}"
    chosen = [i for i in st.session_state.get("selected_memories", []) if i in by_id]

    def _remember_selection(row_ids: list[str] = ids, key: str = table_key) -> None:
        rows = st.session_state[key].selection.rows
        st.session_state.selected_memories = [row_ids[i] for i in rows if i < len(row_ids)]

    rows = [{
        "match": ("weak" if r.id in weak_ids else "good") if query.strip() else None,
        "text": r.text, "type": r.type, "importance": r.importance, "tags": ", ".join(r.tags),
        "people": ", ".join(r.people), "expires": r.expires_at, "created": (r.created_at or "")[:16].replace("T", " "),
    } for r in records]
    st.dataframe(
        rows, key=table_key, hide_index=True, width="stretch", on_select=_remember_selection,
        selection_mode="multi-row", placeholder="—",
        selection_default={"selection": {"rows": [ids.index(i) for i in chosen]}},
        column_order=(["match"] if query.strip() else []) + ["text", "type", "importance", "tags", "people",
                                                             "expires", "created"],
        column_config={
            "match": st.column_config.TextColumn("Match", width="small",
                                                 help="good: clearly about your search; weak: only loosely"),
            "text": st.column_config.TextColumn("Memory", width="large"),
            "type": st.column_config.TextColumn("Type"),
            "importance": st.column_config.NumberColumn("Importance", format="%d"),
            "tags": st.column_config.TextColumn("Tags"),
            "people": st.column_config.TextColumn("People"),
            "expires": st.column_config.DateColumn("Expires"),
            "created": st.column_config.TextColumn("Created"),
        },
    )
    shown = f"{len(records)} memor{'ies' if len(records) != 1 else 'y'}"
    if query.strip():
        good = len(records) - len(weak_ids)
        st.caption(f"{good} good match{'es' if good != 1 else ''}"
                   + (f", {len(weak_ids)} weak" if weak_ids else "") + " · select a row to edit it or see its history")
    else:
        st.caption(f"{shown} (newest first) · select a row to edit it or see its history")

    chosen = [i for i in st.session_state.get("selected_memories", []) if i in by_id]
    if len(chosen) > 1:
        with st.popover(f"Delete {len(chosen)} selected", icon=":material/delete:"):
            st.write(f"Delete {len(chosen)} memories? You can restore them from “Recently deleted” below.")
            if st.button("Yes, delete", type="primary", key="delete-many"):
                for mem_id in chosen:
                    try:
                        memory.delete(user.id, mem_id, source="ui")
                    except AppError as exc:
                        st.error(exc.message)
                st.session_state.selected_memories = []
                st.toast(f"Deleted {len(chosen)} memories.", icon=":material/delete:")
                st.rerun()
    elif len(chosen) == 1:
        # ---------------------------------------------------------- the selected memory, in place
        rec = by_id[chosen[0]]
        with st.container(border=True, key="selected_memory"):
            st.markdown("**Selected memory**")
            with st.form(f"edit-{rec.id}", border=False):
                new_text = st.text_area("Memory", rec.text, max_chars=2000)
                e1, e2, e3 = st.columns(3)
                new_type = e1.selectbox("Type", MEMORY_TYPES, index=MEMORY_TYPES.index(rec.type))
                new_importance = e2.slider("Importance", 1, 5, rec.importance)
                new_expires = e3.date_input("Expires", value=rec.expires_at)
                new_tags = st.text_input("Tags", ", ".join(rec.tags), placeholder="comma-separated")
                new_people = st.text_input("People", ", ".join(rec.people), placeholder="comma-separated")
                if st.form_submit_button("Save changes", type="primary", icon=":material/save:"):
                    try:
                        memory.update(user.id, rec.id, text=new_text if new_text != rec.text else None, type=new_type,
                                      importance=new_importance, tags=_split(new_tags), people=_split(new_people),
                                      expires_at=new_expires, source="ui")
                        st.toast("Saved.", icon=":material/check:")
                        st.rerun()
                    except AppError as exc:
                        st.error(exc.message)
            with st.popover("Delete", icon=":material/delete:"):
                st.write("Delete this memory? You can restore it from “Recently deleted” below.")
                if st.button("Yes, delete", type="primary", key=f"delete-{rec.id}"):
                    memory.delete(user.id, rec.id, source="ui")
                    st.session_state.selected_memories = []
                    st.toast("Deleted. It is under “Recently deleted”.", icon=":material/delete:")
                    st.rerun()

            st.markdown("**History**")
            for entry in reversed(memory.history(user.id, rec.id)):
                h1, h2 = st.columns([6, 1], vertical_alignment="center")
                old, new = inline_text(entry.old_memory), inline_text(entry.new_memory)
                change = {"ADD": f"added “{new}”", "UPDATE": f"“{old}” → “{new}”",
                          "DELETE": f"deleted “{old}”"}.get(entry.event, entry.event)
                h1.markdown(f"{ago(entry.recorded_at)} · {entry.source or 'unknown'} · {change}",
                            help=f"{entry.recorded_at:%Y-%m-%d %H:%M} UTC")
                if entry.event != "DELETE" and entry.new_memory and entry.new_memory != rec.text:
                    if h2.button("Revert", key=f"revert-{entry.id}", icon=":material/history:"):
                        try:
                            memory.revert(user.id, rec.id, entry.id, source="ui")
                            st.toast(f"Reverted to “{inline_text(entry.new_memory[:60])}”.", icon=":material/history:")
                            st.rerun()
                        except AppError as exc:
                            st.error(exc.message)

# ------------------------------------------------------------------ recently deleted
deleted = memory.recently_deleted(user.id, limit=50)
with st.expander(f"Recently deleted ({len(deleted)})", icon=":material/restore_from_trash:"):
    if not deleted:
        st.caption("Nothing deleted. Deleted memories show up here and can be restored.")
    for gone in deleted:
        d1, d2 = st.columns([6, 1], vertical_alignment="center")
        d1.markdown(f"{inline_text(gone.text)}  \n:gray[deleted {ago(gone.deleted_at)} · {gone.source or 'unknown'}"
                    + ("" if gone.exact else " · comes back as text only") + "]")
        if d2.button("Restore", key=f"restore-{gone.memory_id}", icon=":material/restore:"):
            try:
                memory.restore_deleted(user.id, gone.memory_id, source="ui")
                st.toast(f"Restored “{inline_text(gone.text[:60])}”.", icon=":material/restore:")
                st.rerun()
            except AppError as exc:
                st.error(exc.message)
