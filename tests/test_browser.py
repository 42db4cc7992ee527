"""The flows a person clicks through, in a real headless Chromium against ``streamlit run app.py``.

One server (scripted models, its own data dir, an admin from ``OPTIMUS_ADMIN_*``) serves the whole
module; Playwright drives Debian's ``/usr/bin/chromium`` (``scripts/setup.sh --dev`` installs it;
no browser download). Each flow has its own browser context, i.e. its own cookie jar. A full-page
screenshot of every page visited is saved under ``test-artifacts/screenshots/``, named by step.
"""

from __future__ import annotations

import json
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

from tests.conftest import REPO
from tests.openai_stub import OpenAIStub
from tests.streamlit_server import StreamlitServer

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "screenshots"
PASSWORD = "violet otter carries 9 lanterns"
ADMIN, ADMIN_PASSWORD = "root-admin", "amber heron guards 7 bridges"
SLOW = 60_000  # ms: the first page opens the storage and loads the embedder

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: run scripts/setup.sh --dev"),
]


class Server(StreamlitServer):
    """The app with scripted models, a loopback OpenAI-compatible model (``compatible:stub``, see
    tests/openai_stub.py) and a first admin from the settings. It believes ``X-Forwarded-For``
    from loopback, as it would behind a reverse proxy on the same machine."""

    def __init__(self, root: Path, stub: OpenAIStub) -> None:
        super().__init__(
            root, OPTIMUS_SCRIPTED_MODELS="true", OPTIMUS_MEMORY_MODEL="test:memory",
            OPTIMUS_DEFAULT_MODEL="test:echo", OPTIMUS_ADMIN_USERNAME=ADMIN, OPTIMUS_ADMIN_PASSWORD=ADMIN_PASSWORD,
            OPTIMUS_OPENAI_COMPATIBLE_BASE_URL=stub.base_url, OPTIMUS_OPENAI_COMPATIBLE_MODELS="stub",
            OPTIMUS_TRUSTED_PROXIES="127.0.0.1",
        )

    def audited(self, event: str) -> int:
        """How many audit events of this kind the server recorded (read from its database)."""
        with closing(sqlite3.connect(f"file:{self.root / 'data' / 'optimus.db'}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM audit_events WHERE event = ?", (event,)).fetchone()[0]


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    model = OpenAIStub()
    model.start()
    try:
        yield model
    finally:
        model.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, stub: OpenAIStub) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("browser-server"), stub)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser(server) -> Iterator[Browser]:
    expect.set_options(timeout=20_000)  # 2 shared cores: a first reply or a rerun can take seconds
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):  # the artifacts show this run only
        old.unlink()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=server.base, viewport={"width": 1280, "height": 900}, accept_downloads=True)
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# --- helpers ---------------------------------------------------------------------------------------
def wait_idle(page: Page, timeout: float = 30_000) -> None:
    """Connected, no script running, no "Running…" widget: the page shows its final state."""
    page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]', timeout=timeout)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)


def open_page(page: Page, path: str = "/", *, timeout: float = SLOW) -> None:
    page.goto(path)
    wait_idle(page, timeout)


def shot(page: Page, name: str) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main container, not the document,
    so the viewport is stretched to the content's height for the picture."""
    wait_idle(page)
    viewport = page.viewport_size
    height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stMain"], [data-testid="stAppViewContainer"], [data-testid="stSidebarContent"]')]
        .map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": viewport["width"], "height": min(max(height, viewport["height"]), 6000)})
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(viewport)


def main(page: Page) -> Locator:
    # Its test id is stMain, or stAppScrollToBottomContainer on a page with a chat box.
    return page.locator("main")


def title(page: Page) -> Locator:
    return main(page).get_by_role("heading", level=1)


def sidebar_caption(page: Page) -> Locator:
    return page.get_by_test_id("stSidebar").get_by_text(re.compile(r"^Signed in as"))


def fill(page: Page, label: str, value: str) -> None:
    """Type into a text input and commit it (Streamlit reruns on Enter)."""
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(page)


def register(page: Page, username: str, password: str = PASSWORD) -> None:
    open_page(page, "/")
    page.get_by_role("tab", name="Create account").click()
    fill(page, "Choose a username", username)
    fill(page, "Choose a password", password)
    expect(page.get_by_text("Strong password")).to_be_visible()
    fill(page, "Repeat the password", password)
    page.get_by_role("button", name="Create account").click()
    # The page hands off to /api/session/start, which sets the cookie and redirects to /.
    expect(sidebar_caption(page)).to_contain_text(username, timeout=SLOW)
    wait_idle(page)


def sign_in(page: Page, username: str, password: str) -> None:
    open_page(page, "/")
    form = page.get_by_test_id("stForm")
    form.get_by_role("textbox", name="Username", exact=True).fill(username)
    form.get_by_role("textbox", name="Password", exact=True).fill(password)
    form.get_by_test_id("stFormSubmitButton").get_by_role("button").click()


def select_row(page: Page, row: int) -> None:
    """Tick a row of the memory table (its selection box is at the far left; rows are 35 px high)."""
    table = page.get_by_test_id("stDataFrame")
    table.click(position={"x": 18, "y": 35 + 17 + 35 * row})
    wait_idle(page)


def send_chat(page: Page, text: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    reply = page.get_by_test_id("stChatMessage").filter(has_text=f"You said: {text}")
    expect(reply.first).to_be_visible()
    wait_idle(page)
    expect(reply).to_have_count(1)  # the streamed copy is replaced by the stored reply, not doubled


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


# --- flows -----------------------------------------------------------------------------------------
def test_a_person_registers_chats_edits_a_memory_exports_and_leaves(page: Page, server: Server, tmp_path: Path):
    username = "rita-brother"
    register(page, username)
    cookie = next(c for c in page.context.cookies() if c["name"] == "optimus_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    expect(title(page)).to_have_count(0)  # Chat has a subheader, not a title
    shot(page, "01-user-chat-after-register")

    page.reload()
    wait_idle(page)
    expect(sidebar_caption(page)).to_contain_text(username)
    shot(page, "02-user-chat-after-reload")

    send_chat(page, "Remember that my sister is called Rita")
    # The server's background worker learns the fact; the newest reply's panel refreshes itself.
    panel = page.get_by_test_id("stExpander").filter(has_text=re.compile(r"Memory · .* 1 change"))
    expect(panel).to_be_visible(timeout=30_000)
    panel.get_by_text(re.compile(r"^Memory ·")).click()
    expect(panel.get_by_text(re.compile("sister is called Rita", re.I))).to_be_visible()
    expect(panel.get_by_role("button", name="Undo")).to_be_visible()
    shot(page, "03-user-chat-memory-learned")

    open_page(page, "/memories")
    expect(title(page)).to_have_text("Memories")
    table = page.get_by_test_id("stDataFrame")
    expect(table).to_be_visible()
    expect(table.get_by_test_id("glide-cell-1-0")).to_have_text(re.compile("sister is called Rita", re.I))
    shot(page, "04-user-memories")
    select_row(page, 0)
    selected = page.locator(".st-key-selected_memory")
    editor = selected.get_by_role("textbox", name="Memory")
    editor.fill("My sister is called Rita Moreno")
    selected.get_by_role("button", name="Save changes").click()
    wait_idle(page)
    expect(table.get_by_test_id("glide-cell-1-0")).to_have_text("My sister is called Rita Moreno")
    shot(page, "05-user-memories-edited")

    open_page(page, "/settings")
    expect(title(page)).to_have_text("Settings")
    open_tab(page, "Your data")
    download_button = page.get_by_test_id("stDownloadButton").get_by_role("button", name="Download ZIP")
    expect(download_button).to_be_visible()
    assert server.audited("export") == 0  # the ZIP is built when clicked, not when the page renders
    with page.expect_download() as pending:
        download_button.click()
    archive = tmp_path / "export.zip"
    pending.value.save_as(archive)
    with zipfile.ZipFile(archive) as z:
        exported = json.loads(z.read("memories.json"))
    assert "My sister is called Rita Moreno" in json.dumps(exported)
    shot(page, "06-user-settings-your-data")

    fill(page, "Type your username to confirm", username)  # a rerun of the page: still one export
    assert server.audited("export") == 1
    erase = page.get_by_role("button", name="Delete my account forever")
    expect(erase).to_be_enabled()
    erase.click()
    # The page sends the browser through /api/session/end: signed out, cookie gone, login page,
    # which confirms the deletion.
    expect(page.get_by_role("tab", name="Create account")).to_be_visible(timeout=SLOW)
    expect(page.get_by_text("Your account and everything Optimus kept about you have been deleted.")).to_be_visible()
    wait_idle(page)
    assert "optimus_session" not in {c["name"] for c in page.context.cookies()}
    shot(page, "07-user-signed-out-after-erase")

    sign_in(page, username, PASSWORD)
    expect(page.get_by_text("Wrong username or password.")).to_be_visible()
    shot(page, "08-user-sign-in-fails-after-erase")


def test_an_admin_sees_the_analytics_and_admin_tools(page: Page):
    sign_in(page, ADMIN, ADMIN_PASSWORD)
    expect(sidebar_caption(page)).to_contain_text(f"{ADMIN} · admin", timeout=SLOW)
    wait_idle(page)
    send_chat(page, "Hello from the admin")  # usage for the charts, whatever ran before
    shot(page, "11-admin-chat")

    open_page(page, "/admin_analytics")
    expect(title(page)).to_have_text("Analytics")
    expect(page.get_by_test_id("stMetric").first).to_be_visible()
    expect(page.get_by_test_id("stMetric").filter(has_text="Messages")).to_be_visible()
    charts = page.get_by_test_id("stVegaLiteChart")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 3
    shot(page, "12-admin-analytics")

    open_page(page, "/admin_tools")
    expect(title(page)).to_have_text("Admin tools")
    expect(main(page).get_by_text(ADMIN, exact=False).first).to_be_visible()
    shot(page, "13-admin-tools")

    open_page(page, "/home")
    expect(main(page).get_by_role("heading", name="System health")).to_be_visible()
    shot(page, "14-admin-status")


def test_a_member_cannot_open_admin_pages_by_url_and_signs_out(page: Page):
    register(page, "curious-member")
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav.get_by_role("link", name="Chat")).to_be_visible()
    expect(nav.get_by_role("link", name="Analytics")).to_have_count(0)
    for step, path in enumerate(("/admin_tools", "/admin_analytics", "/home"), start=1):
        open_page(page, path)
        # Pages the router never registered for this user: Streamlit says so and runs the Chat page.
        expect(page.get_by_role("dialog")).to_contain_text("Page not found")
        admin_heading = re.compile("Admin tools|Analytics|System health")
        expect(main(page).get_by_role("heading", name=admin_heading)).to_have_count(0)
        expect(page.get_by_test_id("stChatInput")).to_be_visible()
        expect(sidebar_caption(page)).to_contain_text("curious-member")
        shot(page, f"2{step}-member-opens-{path.strip('/')}")

    open_page(page, "/")
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("tab", name="Create account")).to_be_visible()
    assert "optimus_session" not in {c["name"] for c in page.context.cookies()}
    shot(page, "24-member-signed-out")


# --- issue 14: a chat and a memory dashboard people enjoy --------------------------------------------
def sidebar_chats(page: Page) -> Locator:
    return page.get_by_test_id("stSidebar").locator(".st-key-conversation_list")


def chat_entry(page: Page, title: str) -> Locator:
    return sidebar_chats(page).get_by_role("button", name=title, exact=True)


def current_chat_entry(page: Page) -> Locator:
    """The highlighted entry of the conversation list (the only primary button in it)."""
    return sidebar_chats(page).get_by_test_id("stBaseButton-primary")


def chat_title(page: Page) -> Locator:
    return main(page).get_by_role("heading", level=3).first


def messages(page: Page) -> Locator:
    return main(page).get_by_test_id("stChatMessage")


def pick_model(page: Page, label: str) -> None:
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(has_text="Model").click()
    page.get_by_role("option", name=label).click()
    wait_idle(page)


def test_three_conversations_titles_switching_and_message_actions(page: Page, context: BrowserContext,
                                                                  stub: OpenAIStub, tmp_path: Path):
    """Items 1-6 of issue 14: conversations by id, titles, copy/regenerate/edit/stop/export, typed text
    kept, the memory panel after Undo, and reading comfort."""
    open_page(page, "/")
    shot(page, "30-sign-in-card")
    register(page, "maya")
    # 1: the first chat; its title comes from the first message (the echo model's answer is no title)
    send_chat(page, "Remember that my sister is called Rita")
    expect(chat_title(page)).to_have_text("My sister is called Rita")
    expect(current_chat_entry(page)).to_have_text("My sister is called Rita")

    # "New chat" opens a new chat and keeps it: both messages go there, none to the first chat
    page.get_by_role("button", name="New chat").click()
    wait_idle(page)
    expect(chat_title(page)).to_have_text("New conversation")
    expect(messages(page)).to_have_count(0)
    send_chat(page, "I am planning a trip to Lisbon in May")
    expect(chat_title(page)).to_have_text("I am planning a trip to Lisbon in May")
    send_chat(page, "We like seafood")
    expect(messages(page)).to_have_count(4)
    expect(current_chat_entry(page)).to_have_text("I am planning a trip to Lisbon in May")

    # a third chat on a model over HTTP: its title is the model's own
    page.get_by_role("button", name="New chat").click()
    wait_idle(page)
    pick_model(page, "OpenAI-compatible · stub")
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("What is a good name for a grey cat?")
    box.press("Enter")
    expect(messages(page).filter(has_text="Answer #")).to_have_count(1)
    wait_idle(page)
    expect(chat_title(page)).to_have_text("Naming a cat")
    expect(sidebar_chats(page).get_by_role("button")).to_have_count(3)
    shot(page, "31-chat-three-conversations")

    # switching opens exactly the chat clicked, highlighted, with only its own messages; a reload keeps it
    chat_entry(page, "My sister is called Rita").click()
    wait_idle(page)
    expect(chat_title(page)).to_have_text("My sister is called Rita")
    expect(current_chat_entry(page)).to_have_text("My sister is called Rita")
    expect(messages(page)).to_have_count(2)
    expect(messages(page).first).to_contain_text("Remember that my sister is called Rita")
    page.reload()
    wait_idle(page)
    expect(chat_title(page)).to_have_text("My sister is called Rita")

    # 5: undo what was learned: the button says "Undone", is disabled, and the panel stays open
    panel = page.get_by_test_id("stExpander").filter(has_text=re.compile(r"Memory · .* 1 change"))
    expect(panel).to_be_visible(timeout=30_000)
    panel.get_by_text(re.compile(r"^Memory ·")).click()
    panel.get_by_role("button", name="Undo").click()
    wait_idle(page)
    undone = panel.get_by_role("button", name="Undone")
    expect(undone).to_be_disabled()
    expect(panel.get_by_text("undone", exact=True)).to_be_visible()
    expect(panel.get_by_text(re.compile("sister is called Rita", re.I))).to_be_visible()  # still expanded
    shot(page, "32-chat-memory-undone")

    # 2: the list searches message text too, with a snippet
    fill(page, "Search chats", "seafood")
    expect(sidebar_chats(page).get_by_role("button")).to_have_count(1)
    expect(sidebar_chats(page)).to_contain_text("We like seafood")
    shot(page, "33-chat-search-message-text")
    fill(page, "Search chats", "")
    expect(sidebar_chats(page).get_by_role("button")).to_have_count(3)

    # 2: rename
    page.get_by_role("button", name="Rename").click()
    title_box = page.get_by_role("textbox", name="Title")
    title_box.fill("Family")
    page.get_by_role("button", name="Save title").click()
    wait_idle(page)
    expect(chat_title(page)).to_have_text("Family")
    expect(current_chat_entry(page)).to_have_text("Family")

    # 3: copy a reply (the raw text lands on the clipboard)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    reply = messages(page).nth(1)
    reply.get_by_role("button", name="Copy message").click()
    expect(reply.get_by_text("Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "You said: Remember that my sister is called Rita"

    # 3: edit and resend a message in the Lisbon chat
    chat_entry(page, "I am planning a trip to Lisbon in May").click()
    wait_idle(page)
    messages(page).nth(2).get_by_role("button", name="Edit").click()
    wait_idle(page)
    editor = main(page).get_by_role("textbox", name="Edit your message")
    editor.fill("We like vegetarian food")
    shot(page, "34-chat-editing-a-message")
    main(page).get_by_role("button", name="Send", exact=True).click()
    expect(messages(page).filter(has_text="You said: We like vegetarian food")).to_have_count(1)
    wait_idle(page)
    expect(messages(page)).to_have_count(4)
    expect(messages(page).nth(2).locator("p").first).to_have_text("We like vegetarian food")
    expect(messages(page).nth(3).locator("p").first).to_have_text("You said: We like vegetarian food")

    # 3: export as Markdown
    wait_idle(page)
    export = main(page).get_by_test_id("stDownloadButton").get_by_role("button", name="Export")
    expect(export).to_be_enabled()
    with page.expect_download(timeout=60_000) as pending:
        export.click()
    exported = tmp_path / "chat.md"
    pending.value.save_as(exported)
    text = exported.read_text()
    assert text.startswith("# I am planning a trip to Lisbon in May")
    assert "We like vegetarian food" in text and "seafood" not in text

    # 3: stop a streaming reply; what was said is kept, marked stopped
    chat_entry(page, "Naming a cat").click()
    wait_idle(page)
    expect(messages(page).first).to_contain_text("grey cat")
    expect(messages(page).nth(1)).to_contain_text("compatible:stub · ")  # the self-hosted model, not "openai"
    pick_model(page, "OpenAI-compatible · stub")  # the choice lasts a browser session, and we reloaded
    box.fill("Tell me a long story")
    box.press("Enter")
    streaming = messages(page).filter(has_text="Once upon a time")
    expect(streaming).to_be_visible()
    page.locator(".st-key-stop_stream").get_by_role("button", name="Stop").click()
    wait_idle(page)
    stopped = messages(page).last
    expect(stopped).to_contain_text("Once upon a time")
    expect(stopped).not_to_contain_text("winter storm")
    expect(stopped.get_by_test_id("stCaptionContainer").first).to_contain_text("stopped")
    shot(page, "35-chat-reply-stopped")

    # 3: regenerate the last reply: a new answer replaces the stopped one
    pick_model(page, "OpenAI-compatible · stub")
    stopped.get_by_role("button", name="Regenerate").click()
    expect(messages(page).last).to_contain_text("Answer #")
    wait_idle(page)
    expect(messages(page)).to_have_count(4)
    expect(main(page).get_by_text("Once upon a time")).to_have_count(0)

    # 4: a message over the limit is refused with a clear error, and stays in the box to be shortened
    huge = "lorem ipsum " * 3334  # 40,008 characters
    box.fill(huge)
    box.press("Enter")
    expect(main(page).get_by_text(re.compile(r"The message is 40,008 characters long"))).to_be_visible()
    wait_idle(page)
    assert len(page.get_by_test_id("stChatInputTextArea").input_value()) == len(huge)
    expect(messages(page)).to_have_count(4)
    shot(page, "36-chat-too-long-kept")
    box.fill("")

    # 6: right-to-left text reads right to left, in a centred reading column
    send_chat_any(page, "مرحبا، كيف حالك اليوم؟")
    arabic = messages(page).filter(has_text="مرحبا").first.locator("p").first
    expect(arabic).to_have_attribute("dir", "auto")
    column = page.get_by_test_id("stMainBlockContainer").bounding_box()
    assert column["width"] <= 48 * 16 + 1 and column["x"] > 150  # centred, not 1,200 px lines
    shot(page, "37-chat-rtl-reading-column")


def send_chat_any(page: Page, text: str) -> None:
    """Send a message on whatever model is picked and wait for the page to settle."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    expect(messages(page).filter(has_text=text).first).to_be_visible()
    wait_idle(page)


def add_memory(page: Page, text: str, *, tags: str = "", people: str = "") -> None:
    form = page.get_by_test_id("stForm").filter(has=page.get_by_role("button", name="Add"))
    if not form.is_visible():
        page.get_by_text("Add a memory").click()
    form.get_by_role("textbox", name="Text").fill(text)
    form.get_by_role("textbox", name="Tags").fill(tags)
    form.get_by_role("textbox", name="People").fill(people)
    form.get_by_role("button", name="Add").click()
    wait_idle(page)


def test_memories_search_history_in_place_and_recently_deleted(page: Page, server: Server, tmp_path: Path):
    """Items 7-10 of issue 14."""
    register(page, "noor")
    open_page(page, "/memories")
    add_memory(page, "My sister is called Rita Moreno", tags="family", people="Rita")
    add_memory(page, "Likes green tea", tags="drinks")
    add_memory(page, "Plays the cello on Sundays", tags="music, weekend")
    table = page.get_by_test_id("stDataFrame")
    expect(table.get_by_test_id("glide-cell-1-2")).to_have_text("My sister is called Rita Moreno")

    # 7: nonsense finds nothing; a loose match is shown as weak, a clear one as good
    fill(page, "Search", "zzqx nothing")
    expect(main(page).get_by_text("Nothing matches “zzqx nothing”")).to_be_visible()
    expect(table).to_have_count(0)
    shot(page, "40-memories-nothing-matches")
    fill(page, "Search", "music")
    expect(main(page).get_by_text("0 good matches, 1 weak")).to_be_visible()
    expect(table.get_by_test_id("glide-cell-1-0")).to_have_text("weak")
    fill(page, "Search", "Rita")
    expect(main(page).get_by_text(re.compile(r"^1 good match ·"))).to_be_visible()
    shot(page, "41-memories-good-match")
    fill(page, "Search", "")

    # 10: filters offer only the values in use, with their counts
    page.get_by_text("Filters").click()
    assert option_texts(page, "Tags") == ["drinks (1)", "family (1)", "music (1)", "weekend (1)"]
    assert option_texts(page, "People") == ["Rita (1)"]
    shot(page, "42-memories-filters")

    # 8: selecting a row shows that memory, its history and Revert, right there; no jump after Revert
    select_row(page, 1)
    selected = page.locator(".st-key-selected_memory")
    editor = selected.get_by_role("textbox", name="Memory")
    expect(editor).to_have_value("Likes green tea")
    editor.fill("Likes oolong tea")
    selected.get_by_role("button", name="Save changes").click()
    wait_idle(page)
    expect(selected.get_by_text("“Likes green tea” → “Likes oolong tea”")).to_be_visible()
    selected.get_by_role("button", name="Revert").click()
    expect(page.get_by_test_id("stToast").filter(has_text="Reverted to “Likes green tea”")).to_be_visible()
    wait_idle(page)
    expect(editor).to_have_value("Likes green tea")  # the same memory stays selected
    expect(table.get_by_test_id("glide-cell-1-1")).to_have_text("Likes green tea")
    shot(page, "43-memories-history-reverted")

    # 9: delete it, find it under "Recently deleted", restore it
    selected.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    wait_idle(page)
    expect(table.get_by_text("Likes green tea")).to_have_count(0)
    page.get_by_text("Recently deleted (1)").click()
    gone = main(page).get_by_test_id("stExpander").filter(has_text="Recently deleted")
    expect(gone.get_by_role("button", name="Restore")).to_be_visible()
    page.wait_for_timeout(500)  # the expander's opening animation
    shot(page, "44-memories-recently-deleted")
    with zipfile.ZipFile(download_export(page, tmp_path)) as z:
        (deleted,) = json.loads(z.read("deleted_memories.json"))
    assert deleted["memory"] == "Likes green tea" and [h["event"] for h in deleted["history"]][-1] == "DELETE"
    open_page(page, "/memories")
    page.get_by_text("Recently deleted (1)").click()
    gone.get_by_role("button", name="Restore").click()
    wait_idle(page)
    expect(page.get_by_text("Recently deleted (0)")).to_be_visible()
    expect(table.get_by_test_id("glide-cell-1-1")).to_have_text("Likes green tea")  # back in its place
    shot(page, "45-memories-restored")


def option_texts(page: Page, label: str) -> list[str]:
    """The choices a multiselect offers, sorted (the dropdown is opened, read and closed)."""
    box = page.get_by_test_id("stMultiSelect").filter(has_text=label).get_by_role("combobox")
    expect(box).to_be_visible()
    for _ in range(3):
        box.click()
        try:
            expect(page.get_by_role("option").first).to_be_visible(timeout=3_000)
            break
        except AssertionError:
            continue
    texts = sorted(t for t in page.get_by_role("option").all_inner_texts() if t != "Select all")
    page.keyboard.press("Escape")
    return texts


def download_export(page: Page, tmp_path: Path) -> Path:
    open_page(page, "/settings")
    open_tab(page, "Your data")
    with page.expect_download() as pending:
        page.get_by_test_id("stDownloadButton").get_by_role("button", name="Download ZIP").click()
    archive = tmp_path / "export.zip"
    pending.value.save_as(archive)
    return archive


CHROME_142 = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/142.0.0.0 Safari/537.36")


def test_sessions_and_audit_rows_show_device_and_client_address(browser: Browser, server: Server, page: Page):
    """Items 11 and 13 of issue 14: a person behind the install's reverse proxy (it forwards for
    203.0.113.7) sees their session as a device and an address; the admin's audit log shows it too."""
    ctx = browser.new_context(base_url=server.base, viewport={"width": 1280, "height": 900}, user_agent=CHROME_142,
                              extra_http_headers={"X-Forwarded-For": "203.0.113.7"})
    try:
        person = ctx.new_page()
        register(person, "omar")
        open_page(person, "/settings")
        open_tab(person, "Password & sessions")
        expect(person.get_by_text("This browser · Chrome 142 on Linux · 203.0.113.7 · active just now")).to_be_visible()
        shot(person, "50-settings-sessions")
    finally:
        ctx.close()

    sign_in(page, ADMIN, ADMIN_PASSWORD)
    expect(sidebar_caption(page)).to_contain_text(ADMIN, timeout=SLOW)
    wait_idle(page)
    open_page(page, "/admin_tools")
    open_tab(page, "Sessions")
    page.get_by_test_id("stSelectbox").filter(has_text="Account").get_by_role("combobox").click()
    page.get_by_role("option", name="omar").click()
    wait_idle(page)
    expect(main(page).get_by_text(re.compile(r"^Chrome 142 on Linux · 203\.0\.113\.7 · active"))).to_be_visible()
    open_tab(page, "Audit log")
    audit = main(page).get_by_test_id("stDataFrame").last
    expect(audit.get_by_text("203.0.113.7").first).to_be_attached()  # omar's sign-up and sign-in
    expect(audit.get_by_text("127.0.0.1").first).to_be_attached()  # the admin, on this machine
    shot(page, "51-admin-audit-client-address")


def test_analytics_read_without_surprises(page: Page):
    """Item 12 of issue 14: theme colours, a one-day range as a slim bar, latency on a log scale,
    costs as known, free (local) or unknown — never a made-up $0."""
    sign_in(page, ADMIN, ADMIN_PASSWORD)
    expect(sidebar_caption(page)).to_contain_text(ADMIN, timeout=SLOW)
    wait_idle(page)
    send_chat(page, "Show me the numbers")  # usage for the charts, whatever ran before
    open_page(page, "/admin_analytics")
    cost = page.get_by_test_id("stMetric").filter(has_text="Cost")
    expect(cost).to_contain_text("unknown")  # only scripted and self-hosted models ran: no price known
    expect(main(page).get_by_text(re.compile(r"Not counted: .*\d+ of unknown price runs"))).to_be_visible()
    models = main(page).get_by_test_id("stDataFrame").first
    expect(models.get_by_text("cost unknown").first).to_be_attached()
    expect(models.get_by_text("$0")).to_have_count(0)
    expect(main(page).get_by_text("milliseconds (log scale)").first).to_be_attached()
    charts = page.get_by_test_id("stVegaLiteChart")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 4
    shot(page, "60-admin-analytics-30-days")

    end = page.get_by_test_id("stDateInput").get_by_role("group", name="Date range end date")
    today = [end.get_by_role("spinbutton").nth(i).inner_text() for i in range(3)]
    page.get_by_role("spinbutton", name="year, Date range start date").click()
    page.keyboard.type("".join(today))  # the start date becomes the end date: a one-day range
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    title(page).click()  # leave the field: the range is applied
    wait_idle(page)
    start = page.get_by_test_id("stDateInput").get_by_role("group", name="Date range start date")
    assert [start.get_by_role("spinbutton").nth(i).inner_text() for i in range(3)] == today
    expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible()
    shot(page, "61-admin-analytics-one-day")


def test_sign_in_is_a_narrow_card_that_warns_before_the_captcha_and_status_icons_render(page: Page):
    """Item 6 of issue 14 (the sign-in card, the warning before the CAPTCHA and the lock) and the
    status page's icons, which must not need an emoji font."""
    open_page(page, "/")
    expect(main(page).get_by_text("farewell")).to_have_count(0)  # nothing but the page itself
    narrow = """() => { const r = document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect();
                        return r.width <= 26 * 16 + 1 && Math.abs(r.x + r.width / 2 - 640) < 2; }"""
    page.wait_for_function(narrow, timeout=10_000)  # a narrow card in the middle of the page
    warnings = []
    for _ in range(2):
        sign_in(page, "typo-prone", "not the password")
        expect(page.get_by_text("Wrong username or password.")).to_be_visible()
        warnings.append(page.get_by_test_id("stAlertContentWarning").get_by_test_id("stMarkdownContainer").inner_text())
    assert warnings == ["2 attempts left before you are asked a security question.",
                        "1 attempt left before you are asked a security question."]
    shot(page, "38-sign-in-attempts-left")
    sign_in(page, "typo-prone", "not the password")
    expect(page.get_by_role("textbox", name=re.compile(r"^What is \d+ [+−] \d+\?$"))).to_be_visible()
    expect(page.get_by_text("2 attempts left before sign-in is locked for 15 minutes.")).to_be_visible()
    shot(page, "39-sign-in-captcha-with-warning")

    sign_in(page, ADMIN, ADMIN_PASSWORD)
    expect(sidebar_caption(page)).to_contain_text(ADMIN, timeout=SLOW)
    open_page(page, "/home")
    rows = page.locator(".st-key-health_components")
    icons = rows.get_by_role("img", name="check_circle icon")  # Material Symbols, a font Streamlit ships
    expect(icons.first).to_be_visible()
    assert icons.count() >= 3
    assert not re.search("[\u2705\u274c\U0001F300-\U0001FAFF]", main(page).inner_text())  # no emoji left
    shot(page, "14b-admin-status-icons")


def test_what_the_chat_learns_is_what_the_api_and_mcp_on_the_same_port_see(page: Page, server: Server):
    """One process, one port (issue 13): the chat's memories through mem0's MemoryClient at /api and
    the MCP SDK's client at /mcp, and what they add on the Memories page."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mem0 import MemoryClient

    from tests.test_mcp import connect, ok

    register(page, "oboe-sibling")
    send_chat(page, "Remember that my brother plays the oboe")
    panel = page.get_by_test_id("stExpander").filter(has_text=re.compile(r"Memory · .* 1 change"))
    expect(panel).to_be_visible(timeout=30_000)

    open_page(page, "/settings")
    open_tab(page, "API keys")
    page.get_by_role("textbox", name="Name", exact=True).fill("one port")
    page.get_by_role("button", name="Create key").click()
    wait_idle(page)
    key = page.get_by_test_id("stCode").filter(has_text="om_").inner_text().strip()
    shot(page, "40-user-settings-api-key")

    client = MemoryClient(api_key=key, host=f"{server.base}/api")
    try:
        learned = [m["memory"] for m in client.get_all(filters={"user_id": "*"})["results"]]
        assert any("brother plays the oboe" in m.lower() for m in learned), learned
        client.add([{"role": "user", "content": "Likes dried figs"}], infer=False)
    finally:
        client.client.close()

    async def search() -> dict:
        async with connect(f"{server.base}/mcp", key) as mcp:
            return await ok(mcp, "search_memories", {"query": "what instrument does my brother play?"})

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        found = pool.submit(asyncio.run, search()).result(timeout=120)
    assert "brother plays the oboe" in found["results"][0]["memory"].lower()

    open_page(page, "/memories")
    table = page.get_by_test_id("stDataFrame")
    expect(table.get_by_test_id(re.compile(r"glide-cell-1-[01]")).filter(has_text="Likes dried figs")).to_have_count(1)
    shot(page, "41-user-memories-added-over-the-api")
