"""Chat: conversations, streamed replies, and what memory recalled and learned for each reply."""

from __future__ import annotations

import streamlit as st

from core.errors import AppError
from core.memory.types import MemoryEvent
from core.rendering import inert_markdown, inert_stream
from core.usage import estimate_cost
from pages.common import get_runtime, require_user, selected_model

runtime = get_runtime()
user = require_user()
chat = runtime.chat
convs = runtime.conversations

EVENT_LABEL = {"ADD": ("Learned", ":material/add_circle:"), "UPDATE": ("Updated", ":material/edit:"),
               "DELETE": ("Forgot", ":material/delete:")}


# ------------------------------------------------------------------ conversation list (sidebar)
def _new_conversation() -> None:
    st.session_state.conversation_id = convs.create(user.id).id


with st.sidebar:
    st.button("New chat", icon=":material/add:", on_click=_new_conversation, width="stretch", type="primary")
    query = st.text_input("Search chats", placeholder="Search by title", label_visibility="collapsed")
    listed = convs.list(user.id, search=query or None, limit=50)
    if not listed and not query:
        _new_conversation()
        listed = convs.list(user.id, limit=50)
    ids = [c.id for c in listed]
    current = st.session_state.get("conversation_id")
    if current not in ids and not query:
        current = ids[0] if ids else None
    if listed:
        picked = st.radio("Conversations", ids, index=ids.index(current) if current in ids else 0,
                          format_func=lambda cid: next(c.title for c in listed if c.id == cid),
                          label_visibility="collapsed")
        current = picked
    elif query:
        st.caption("No chat matches that title.")
    st.session_state.conversation_id = current

if not current:
    st.info("Start a new chat from the sidebar.")
    st.stop()

conversation = convs.get(user.id, current)

head, actions = st.columns([4, 2], vertical_alignment="bottom")
head.subheader(conversation.title)
with actions.popover("Chat options", icon=":material/more_horiz:"):
    title = st.text_input("Title", conversation.title, max_chars=200)
    if st.button("Rename", icon=":material/edit:"):
        try:
            convs.rename(user.id, conversation.id, title)
            st.toast("Renamed.")
            st.rerun()
        except AppError as exc:
            st.error(exc.message)
    if st.checkbox("I want to delete this chat"):
        if st.button("Delete chat", type="primary", icon=":material/delete:"):
            convs.delete(user.id, conversation.id)
            st.session_state.pop("conversation_id", None)
            st.toast("Chat deleted.")
            st.rerun()


# ------------------------------------------------------------------ memory panel
def _undo(reply_id: int, origin: str, index: int) -> None:
    try:
        chat.undo_change(user.id, reply_id, origin, index)
        st.toast("Undone.", icon=":material/undo:")
    except AppError as exc:
        st.toast(exc.message, icon=":material/error:")


def _change_line(event: MemoryEvent) -> str:
    """How a change reads in the panel: what was learned, or "was → now" for changes and deletions."""
    word, icon = EVENT_LABEL[event.event]
    was, now = inert_markdown(event.previous_text or ""), inert_markdown(event.text or "")
    if event.event == "UPDATE":
        line = f"{icon} **{word}:** ~~{was}~~ → {now}"
    elif event.event == "DELETE":
        line = f"{icon} **{word}:** ~~{was}~~"
    else:
        line = f"{icon} **{word}:** {now}"
    if event.undone:
        line += " · *undone*"
    return line


def _memory_panel(message) -> None:
    details = message.details or {}
    recalled = details.get("recalled") or []
    changes = [("tool", i, MemoryEvent.from_dict(e)) for i, e in enumerate(details.get("tool_events") or [])]
    learned = chat.turn_events(user.id, message.id)
    status = chat.turn_status(user.id, message.id)
    changes += [("learned", i, e) for i, e in enumerate(learned or [])]
    changes = [(origin, i, e) for origin, i, e in changes if e.applied and e.event in EVENT_LABEL]
    label = f"Memory · {len(recalled)} recalled"
    if changes:
        label += f" · {len(changes)} change{'s' if len(changes) != 1 else ''}"
    elif status in {"pending", "running"}:
        label += " · learning…"
    # Stays as the person left it: the panel is not re-collapsed when learning finishes.
    with st.expander(label, icon=":material/neurology:", expanded=False, key=f"panel-{message.id}"):
        if recalled:
            st.markdown("**Recalled for this reply**")
            for r in recalled:
                st.markdown(f"- {inert_markdown(r['text'])}")
        else:
            st.caption("Nothing was recalled for this reply.")
        if status in {"pending", "running"}:
            st.caption(":material/hourglass_top: Learning from this exchange…")
        elif status == "failed":
            st.caption(":material/error: Learning failed for now; it will be retried.")
        for origin, index, event in changes:
            cols = st.columns([5, 1.3], vertical_alignment="center")
            cols[0].markdown(_change_line(event))
            if event.reason:
                cols[0].caption(event.reason)
            cols[1].button("Undone" if event.undone else "Undo", key=f"undo-{message.id}-{origin}-{index}",
                           on_click=_undo, args=(message.id, origin, index), disabled=not event.undoable,
                           icon=":material/undo:")
        if learned is not None and not changes and status == "done":
            st.caption("Nothing new to remember from this exchange.")


def _reply_caption(message) -> str:
    details = message.details or {}
    parts = [message.model or "model"]
    if message.input_tokens is not None:
        parts.append(f"{message.input_tokens:,} in / {message.output_tokens or 0:,} out tokens")
    cost = details.get("cost_usd")
    parts.append(f"${float(cost):.5f}" if cost else "cost —")
    if details.get("fell_back"):
        parts.append("answered by the fallback model")
    return " · ".join(parts)


# ------------------------------------------------------------------ history
history = convs.messages(conversation.id, user_id=user.id)
if not history:
    st.caption("Say hello. Optimus remembers durable facts you share and uses them next time; "
               "you can see and edit everything it keeps on the Memories page.")
# The newest reply's panel refreshes itself while the pipeline is still learning from it.
live_panel = st.fragment(run_every=2)(_memory_panel)
for index, message in enumerate(history):
    with st.chat_message(message.role):
        st.markdown(inert_markdown(message.content))
        if message.role == "assistant":
            st.caption(_reply_caption(message))
            pending = chat.turn_status(user.id, message.id) in {"pending", "running"}
            (live_panel if pending and index >= len(history) - 2 else _memory_panel)(message)

unanswered = bool(history) and history[-1].role == "user"


def _stream(turn) -> None:
    with st.chat_message("assistant"):
        try:
            st.write_stream(inert_stream(turn))
        except AppError as exc:
            st.error(exc.message, icon=":material/error:")
            st.button("Retry", icon=":material/refresh:", key="retry-after-error")
            return
    st.rerun()


model_id = selected_model(runtime)
if unanswered:
    st.warning("The last message has no reply yet.", icon=":material/schedule:")
    if st.button("Retry the reply", icon=":material/refresh:"):
        try:
            _stream(chat.retry(user.id, conversation.id, model=model_id))
        except AppError as exc:
            st.error(exc.message)

prompt = st.chat_input("Message Optimus")
if model_id and not model_id.startswith(("local", "ollama:", "compatible:")):
    est = estimate_cost(model_id, "x" * 400, context_chars=sum(len(m.content) for m in history[-10:]))
    if est.cost_usd is not None:
        st.caption(f"≈ ${est.cost_usd:.4f} per message here (estimate: ~{est.input_tokens:,} tokens in, "
                   f"{est.output_tokens:,} out)")

if prompt is not None:
    try:
        turn = chat.send(user.id, conversation.id, prompt, model=model_id)
    except AppError as exc:
        st.error(exc.message, icon=":material/error:")
    else:
        with st.chat_message("user"):
            st.markdown(inert_markdown(prompt))
        _stream(turn)
