"""Chat: conversations, streamed replies, and what memory recalled and learned for each reply.

Conversations are picked by id, never by title: the current one is ``st.session_state.conversation_id``
(and ``?chat=<id>`` in the address, so a reload or a bookmark opens the same chat).
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from core.errors import AppError, NotFound
from core.memory.types import MemoryEvent
from core.rendering import inert_stream
from core.turn_details import TurnDetails
from core.usage import cost_label, estimate_cost, provider_of
from ui.common import get_runtime, require_user, selected_model
from ui.formatting import ago, recency_group
from ui.layout import left_aligned_buttons, reading_column
from ui.messages import copy_button, escape_markdown, inline_text, install_message_behaviour, render_message_text

runtime = get_runtime()
user = require_user()
chat = runtime.chat
convs = runtime.conversations

EVENT_LABEL = {"ADD": ("Learned", ":material/add_circle:"), "UPDATE": ("Updated", ":material/edit:"),
               "DELETE": ("Forgot", ":material/delete:")}
CHAT_BOX = "chat_box"

reading_column()
install_message_behaviour()


# ------------------------------------------------------------------ which conversation
def _open(conv_id: str | None) -> None:
    st.session_state.conversation_id = conv_id
    st.session_state.pop("editing", None)
    if conv_id:
        st.query_params["chat"] = conv_id
    else:
        st.query_params.pop("chat", None)


def _new_conversation() -> None:
    # An empty chat is reused rather than piling up untitled ones.
    empty = next((c for c in convs.list(user.id, limit=20) if c.message_count == 0), None)
    _open((empty or convs.create(user.id)).id)


def _current_id() -> str | None:
    wanted = st.session_state.get("conversation_id") or st.query_params.get("chat")
    if wanted:
        try:
            return convs.get(user.id, wanted).id
        except NotFound:
            pass
    newest = convs.list(user.id, limit=1)
    return newest[0].id if newest else None


current = _current_id()
if current is None:
    current = convs.create(user.id).id
if st.session_state.get("conversation_id") != current or st.query_params.get("chat") != current:
    _open(current)

# ------------------------------------------------------------------ conversation list (sidebar)
model_id = selected_model(runtime)
with st.sidebar:
    st.button("New chat", icon=":material/add:", on_click=_new_conversation, width="stretch", key="new_chat")
    query = st.text_input("Search chats", placeholder="Search titles and messages", key="chat_search",
                          label_visibility="collapsed", icon=":material/search:")
    found = convs.search(user.id, query, limit=100) if query.strip() else None
    listed = [m.conversation for m in found] if found is not None else convs.list(user.id, limit=100)
    snippets = {m.conversation.id: m.snippet for m in found or []}
    now = datetime.now(UTC)
    left_aligned_buttons("conversation_list")
    with st.container(key="conversation_list", gap=None):
        if found is not None and not listed:
            st.caption("No chat mentions that.")
        group = None
        for conv in listed:
            heading = recency_group(conv.updated_at, now=now)
            if heading != group and found is None:
                st.caption(heading)
                group = heading
            is_current = conv.id == current
            st.button(escape_markdown(conv.title), key=f"conv-{conv.id}", on_click=_open, args=(conv.id,), width="stretch",
                      type="primary" if is_current else "tertiary")
            if snippets.get(conv.id):
                st.caption(f"…{snippets[conv.id].strip('…')}…")

conversation = convs.get(user.id, current)

# ------------------------------------------------------------------ header: title and chat actions
head, actions = st.columns([5, 3], vertical_alignment="center")
head.subheader(conversation.title, anchor=False)
head.caption(f"Started {ago(conversation.created_at, now=now)} · active {ago(conversation.updated_at, now=now)}")
with actions.container(horizontal=True, horizontal_alignment="right", gap="small"):
    with st.popover("Rename", icon=":material/edit:", key=f"rename-{conversation.id}"):
        new_title = st.text_input("Title", conversation.title, max_chars=200, key=f"title-{conversation.id}")
        if st.button("Save title", icon=":material/check:", key=f"save-title-{conversation.id}"):
            try:
                convs.rename(user.id, conversation.id, new_title)
                st.toast("Renamed.", icon=":material/check:")
                st.rerun()
            except AppError as exc:
                st.error(exc.message)
    st.download_button("Export", lambda: convs.export_markdown(user.id, conversation.id).encode(),
                       file_name=f"{conversation.title[:60] or 'chat'}.md", mime="text/markdown",
                       icon=":material/download:", on_click="ignore", key=f"export-{conversation.id}",
                       help="Download this chat as a Markdown file", disabled=conversation.message_count == 0)
    with st.popover("Delete", icon=":material/delete:", key=f"delete-{conversation.id}"):
        st.write("Delete this chat and all its messages? Memories learned from it stay.")
        if st.button("Delete chat", type="primary", icon=":material/delete:", key=f"delete-go-{conversation.id}"):
            convs.delete(user.id, conversation.id)
            _open(None)
            st.toast("Chat deleted.", icon=":material/delete:")
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
    was, now = inline_text(event.previous_text), inline_text(event.text)
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
    details = message.details or TurnDetails()
    recalled = details.recalled
    changes = [("tool", i, e) for i, e in enumerate(details.tool_events)]
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
    if details.memory_private:
        label += " · kept from this model"
    with st.expander(label, icon=":material/neurology:", expanded=False, key=f"panel-{message.id}"):
        if details.memory_private:
            st.caption(":material/lock: You use your memories only with local models: this hosted model saw "
                       "none of them and could not change them. Learning from this exchange uses the local model.")
        elif recalled:
            st.markdown("**Recalled for this reply**")
            for r in recalled:
                st.markdown(f"- {inline_text(r.text)}")
        else:
            st.caption("Nothing was recalled for this reply.")
        if status in {"pending", "running"}:
            st.caption(":material/hourglass_top: Learning from this exchange…")
        elif status == "failed":
            st.caption(":material/error: Learning failed for now; it will be retried.")
        for origin, index, event in changes:
            cols = st.columns([3, 1], vertical_alignment="center")  # room for "Undone" in the reading column
            cols[0].markdown(_change_line(event))
            if event.reason:
                cols[0].caption(event.reason)
            cols[1].button("Undone" if event.undone else "Undo", key=f"undo-{message.id}-{origin}-{index}",
                           on_click=_undo, args=(message.id, origin, index), disabled=not event.undoable,
                           icon=":material/undo:")
        if learned is not None and not changes and status == "done":
            st.caption("Nothing new to remember from this exchange.")


def _reply_caption(message) -> str:
    details = message.details or TurnDetails()
    parts = [message.model or "model"]
    if message.input_tokens or message.output_tokens:
        parts.append(f"{message.input_tokens:,} in / {message.output_tokens or 0:,} out tokens")
    parts.append(cost_label(provider_of(message.model), details.cost_usd))
    if details.fell_back:
        parts.append("answered by the fallback model")
    if details.stopped:
        parts.append("stopped")
    return " · ".join(parts)


# ------------------------------------------------------------------ actions that answer again
def _start_editing(message_id: int) -> None:
    st.session_state.editing = message_id
    st.session_state.pop("edit_text", None)  # start from the message, not an earlier edit


def _ask(action: str, **args) -> None:
    st.session_state.chat_action = {"action": action, "conversation": conversation.id, **args}


pending_turn = None
action = st.session_state.pop("chat_action", None)
if action and action.get("conversation") == conversation.id:
    try:
        if action["action"] == "regenerate":
            pending_turn = chat.regenerate(user.id, conversation.id, model=model_id)
        elif action["action"] == "edit":
            pending_turn = chat.edit(user.id, action["message_id"], st.session_state.get("edit_text", ""),
                                     model=model_id)
            st.session_state.pop("editing", None)
        elif action["action"] == "retry":
            pending_turn = chat.retry(user.id, conversation.id, model=model_id)
    except AppError as exc:
        st.error(exc.message, icon=":material/error:")

# ------------------------------------------------------------------ history
# A click during a reply starts this run while the previous one is still being stopped; let it
# save what it had said first, so the stopped reply is shown rather than missing.
chat.wait_for_replies(conversation.id, timeout=5.0)
history = convs.messages(conversation.id, user_id=user.id)
if not history:
    st.caption("Say hello. Optimus remembers durable facts you share and uses them next time; "
               "you can see and edit everything it keeps on the Memories page.")
# The newest reply's panel refreshes itself while the pipeline is still learning from it.
live_panel = st.fragment(run_every=2)(_memory_panel)
last_reply = max((m.id for m in history if m.role == "assistant"), default=None)
editing = st.session_state.get("editing")
for index, message in enumerate(history):
    with st.chat_message(message.role):
        if message.role == "user" and message.id == editing and pending_turn is None:
            st.text_area("Edit your message", message.content, key="edit_text", height=120,
                         max_chars=None, label_visibility="collapsed")
            with st.container(horizontal=True, gap="small"):
                st.button("Send", type="primary", icon=":material/send:", key=f"edit-send-{message.id}",
                          on_click=_ask, args=("edit",), kwargs={"message_id": message.id})
                st.button("Cancel", key=f"edit-cancel-{message.id}", on_click=st.session_state.pop,
                          args=("editing", None))
            st.caption("Sending replaces this message and everything after it.")
            continue
        render_message_text(message.content)
        if message.role == "assistant":
            st.caption(_reply_caption(message))
        with st.container(horizontal=True, gap="small", key=f"actions-{message.id}"):
            copy_button(message.content)
            if message.role == "user":
                st.button("Edit", icon=":material/edit:", type="tertiary", key=f"edit-{message.id}",
                          on_click=_start_editing, args=(message.id,))
            elif message.id == last_reply and index == len(history) - 1:
                st.button("Regenerate", icon=":material/refresh:", type="tertiary", key=f"regen-{message.id}",
                          on_click=_ask, args=("regenerate",))
        if message.role == "assistant":
            pending = chat.turn_status(user.id, message.id) in {"pending", "running"}
            (live_panel if pending and index >= len(history) - 2 else _memory_panel)(message)

unanswered = bool(history) and history[-1].role == "user"


def _stream(turn) -> None:
    # Any click reruns the page, which stops the stream; the service keeps what was said so far and
    # the rerun shows it. (The chat box's own stop mode would end the run with nothing redrawn.)
    st.button("Stop", icon=":material/stop_circle:", key="stop_stream", help="Stop this reply")
    with st.chat_message("assistant"):
        try:
            st.write_stream(inert_stream(turn))
        except AppError as exc:
            st.error(exc.message, icon=":material/error:")
            st.button("Retry", icon=":material/refresh:", key="retry-after-error", on_click=_ask, args=("retry",))
            return
        finally:
            turn.close()  # stopped or done: the service keeps what was said
    st.rerun()


if pending_turn is not None:
    _stream(pending_turn)
elif unanswered:
    st.warning("The last message has no reply yet.", icon=":material/schedule:")
    st.button("Retry the reply", icon=":material/refresh:", on_click=_ask, args=("retry",))

# A message the app could not take goes back into the box, so nothing typed is lost.
if draft := st.session_state.pop("chat_draft", None):
    st.session_state[CHAT_BOX] = draft
if problem := st.session_state.pop("chat_problem", None):
    st.error(problem, icon=":material/error:")

prompt = st.chat_input("Message Optimus", key=CHAT_BOX, submit_mode="disable")
if model_id and provider_of(model_id) not in {"local", "ollama", "compatible"}:
    est = estimate_cost(model_id, "x" * 400, context_chars=sum(len(m.content) for m in history[-10:]))
    if est.cost_usd is not None:
        st.caption(f"≈ ${est.cost_usd:.4f} per message here (estimate: ~{est.input_tokens:,} tokens in, "
                   f"{est.output_tokens:,} out)")

if prompt is not None:
    try:
        turn = chat.send(user.id, conversation.id, prompt, model=model_id)
    except AppError as exc:
        st.session_state.chat_draft = prompt
        st.session_state.chat_problem = exc.message
        st.rerun()
    else:
        with st.chat_message("user"):
            render_message_text(prompt)
        _stream(turn)
