"""A real ``streamlit run app.py`` on a free loopback port with its own data dir, for tests that
need the server itself (cookie routes, the browser)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import MODEL_CACHE, REPO
from tests.pgserver import free_port


class StreamlitServer:
    def __init__(self, root: Path, **settings: str) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data = root / "data"
        self.log = root / "server.log"
        self.settings = settings  # extra environment, e.g. OPTIMUS_* for this server only
        self.process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 90) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIMUS_")}
        env.update(OPTIMUS_DATA_DIR=str(self.data), OPTIMUS_MODEL_CACHE_DIR=str(MODEL_CACHE),
                   OPTIMUS_BCRYPT_ROUNDS="4", OPTIMUS_FALLBACK_MODEL="none", MEM0_TELEMETRY="False",
                   HF_HUB_OFFLINE="1", **self.settings)
        work = self.root / "work"
        work.mkdir(exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(self.port),
                 "--server.address", "127.0.0.1", "--server.headless", "true",
                 "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.base + "/_stcore/health", timeout=2).text == "ok":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"streamlit did not become healthy:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
