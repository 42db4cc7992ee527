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
    """The app with scripted models and a first admin from the settings."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            root, OPTIMUS_SCRIPTED_MODELS="true", OPTIMUS_MEMORY_MODEL="test:memory",
            OPTIMUS_DEFAULT_MODEL="test:echo", OPTIMUS_ADMIN_USERNAME=ADMIN, OPTIMUS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        )

    def audited(self, event: str) -> int:
        """How many audit events of this kind the server recorded (read from its database)."""
        with closing(sqlite3.connect(f"file:{self.root / 'data' / 'optimus.db'}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM audit_events WHERE event = ?", (event,)).fetchone()[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("browser-server"))
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
    return page.get_by_test_id("stMain")


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
    expect(panel.get_by_text("Sister is called Rita")).to_be_visible()
    expect(panel.get_by_role("button", name="Undo")).to_be_visible()
    shot(page, "03-user-chat-memory-learned")

    open_page(page, "/memories")
    expect(title(page)).to_have_text("Memories")
    table = page.get_by_test_id("stDataFrame")
    expect(table).to_be_visible()
    memory_cell = table.get_by_test_id("glide-cell-1-0")  # the canvas's accessible twin: column 1, row 0
    expect(memory_cell).to_have_text("Sister is called Rita")
    shot(page, "04-user-memories")
    # Columns: Delete (small, 75 px), Memory (large); row 0 is the header, rows are 35 px high.
    table.dblclick(position={"x": 75 + 100, "y": 35 + 17})
    editor = page.get_by_test_id("portal").locator("textarea")
    expect(editor).to_be_visible()
    editor.fill("Sister is called Rita Moreno")
    editor.press("Enter")
    save = page.get_by_role("button", name="Save 1 change")
    expect(save).to_be_enabled()
    save.click()
    wait_idle(page)
    expect(memory_cell).to_have_text("Sister is called Rita Moreno")
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
    assert "Sister is called Rita Moreno" in json.dumps(exported)
    shot(page, "06-user-settings-your-data")

    fill(page, "Type your username to confirm", username)  # a rerun of the page: still one export
    assert server.audited("export") == 1
    erase = page.get_by_role("button", name="Delete my account forever")
    expect(erase).to_be_enabled()
    erase.click()
    # The page sends the browser through /api/session/end: signed out, cookie gone, login page.
    expect(page.get_by_role("tab", name="Create account")).to_be_visible(timeout=SLOW)
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
