"""The API under uvicorn in a child process, for tests that want real HTTP (schemathesis,
the odd-text property tests): the server gets its own core instead of sharing the test
process's GIL with data generation, and paths are parsed as a real server parses them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import uvicorn

from routewatch import services
from tests.processes import ProcessOutput, stop_politely


class Server:
    """The API under uvicorn in a child process: the server gets its own core instead of
    sharing this process's GIL with schemathesis' data generation."""

    def __init__(self, database_url: str, **settings: str) -> None:
        """``settings`` become ``ROUTEWATCH_*`` variables (``track_burst="4"``)."""
        self.port = services.free_port()
        env = {k: v for k, v in os.environ.items() if k != "ROUTEWATCH_WEBHOOK_URL"}
        env |= {
            "ROUTEWATCH_DATABASE_URL": database_url,
            "ROUTEWATCH_TRACK_BURST": "1000000",  # rate limiting is not under test here
            "ROUTEWATCH_LOG_LEVEL": "WARNING",
            **{f"ROUTEWATCH_{k.upper()}": v for k, v in settings.items()},
        }
        address = ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", *address],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ProcessOutput(self._proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 30
        while not services.tcp_open("127.0.0.1", self.port, 0.2):
            assert self._proc.poll() is None, "".join(self.output.seen)
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_politely(self._proc, timeout_s=15)


class ThreadServer:
    """An ASGI app under uvicorn in a thread of this process, on a free port (for a
    browser: the app shares this process's objects, e.g. settings made by the test)."""

    def __init__(self, app: Any, name: str = "uvicorn-test") -> None:
        self.port = services.free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
