"""An embeddings server on loopback for tests: OpenAI's ``POST /v1/embeddings`` (and Azure OpenAI's
``/openai/deployments/<name>/embeddings``) and Ollama's ``GET /api/tags`` + ``POST /api/embed``,
answering deterministic vectors.

A text's vector is a hashed bag of its lowercase words (each word adds 1 to one of ``dims``
buckets), L2-normalised: texts sharing words are close, so search over it behaves like search
(a query word finds the memories that contain it). Every request is recorded (path, the
``Authorization`` header, model, number of inputs) so tests can check what reached the provider.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_WORD = re.compile(r"\w+", re.UNICODE)


def stub_vector(text: str, dims: int) -> list[float]:
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % dims
        vector[bucket] += 1.0
    vector[0] += 0.01  # no zero vector, even for a text without words
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


@dataclass
class Seen:
    path: str
    authorization: str | None
    model: str | None
    inputs: int


@dataclass
class EmbeddingStub:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is the OpenAI base URL (``.../v1``)."""

    dims: int = 64
    models: tuple[str, ...] = ("nomic-embed-text:latest",)  # what /api/tags says is pulled
    fail_after: int | None = None  # answer 500 after this many embedding requests
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def root(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def texts_embedded(self) -> int:
        return sum(s.inputs for s in self.seen)

    def start(self) -> EmbeddingStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/api/tags":
                    self._answer(200, {"models": [{"name": m, "model": m} for m in stub.models]})
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                raw = request.get("input")
                texts = [raw] if isinstance(raw, str) else list(raw or [])
                key = self.headers.get("Authorization") or self.headers.get("api-key")  # Azure sends api-key
                stub.seen.append(Seen(self.path, key, request.get("model"), len(texts)))
                if stub.fail_after is not None and len(stub.seen) > stub.fail_after:
                    self._answer(500, {"error": {"message": "stub told to fail"}})
                    return
                vectors = [stub_vector(t, stub.dims) for t in texts]
                if self.path == "/v1/embeddings" or self.path.startswith("/openai/deployments/"):
                    self._answer(200, {
                        "object": "list", "model": request.get("model"),
                        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                        "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}})
                elif self.path == "/api/embed":
                    self._answer(200, {"model": request.get("model"), "embeddings": vectors})
                else:
                    self._answer(404, {"error": "not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="embedding-stub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
