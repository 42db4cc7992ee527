"""A tiny OpenAI-compatible chat server on loopback, for browser tests that need a real HTTP model:
one that streams slowly enough to be stopped, and answers title requests with a title.

``OPTIMUS_OPENAI_COMPATIBLE_BASE_URL`` points the app at it; its models are ``compatible:<name>``.
Replies: a message containing "long story" streams one word every ``slow_seconds`` the first time
it is asked (later times answer at once, so a regenerated reply differs); a title request (the
app's title prompt) gets ``title``; anything else gets "Answer #n to: <message>".
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.pgserver import free_port

STORY = ("Once upon a time a lighthouse keeper counted the ships that passed her rock every night, "
         "and wrote each name into a blue book that nobody else had ever read until the winter storm came")


class OpenAIStub:
    def __init__(self, *, title: str = "Naming a cat", slow_seconds: float = 0.4) -> None:
        self.title = title
        self.slow_seconds = slow_seconds
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.requests: list[dict] = []
        self._asked: dict[str, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _reply(self, body: dict) -> tuple[list[str], float]:
        last = next((m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), {})
        content = last.get("content")
        text = content if isinstance(content, str) else " ".join(
            p.get("text", "") for p in content or [] if isinstance(p, dict))
        if text.startswith("Write a title"):
            return [self.title], 0.0
        times = self._asked[text] = self._asked.get(text, 0) + 1
        if "long story" in text and times == 1:
            words = STORY.split(" ")
            return [w if i == 0 else " " + w for i, w in enumerate(words)], self.slow_seconds
        answer = f"Answer #{len(self.requests)} to: {text}"
        return [w if i == 0 else " " + w for i, w in enumerate(answer.split(" "))], 0.0

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                stub.requests.append(body)
                pieces, pause = stub._reply(body)
                model = body.get("model", "stub")
                if not body.get("stream"):
                    payload = {"id": "stub", "object": "chat.completion", "created": int(time.time()), "model": model,
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": "".join(pieces)}}],
                               "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}}
                    data = json.dumps(payload).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                try:
                    for piece in pieces:
                        chunk = {"id": "stub", "object": "chat.completion.chunk", "created": int(time.time()),
                                 "model": model, "choices": [{"index": 0, "delta": {"content": piece},
                                                              "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(pause)
                    end = {"id": "stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 30, "completion_tokens": len(pieces), "total_tokens": 30 + len(pieces)}}
                    self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the app stopped the stream

        return Handler
