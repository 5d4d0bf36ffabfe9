"""The engine as a real child process (``routewatch serve --no-api``) for the fault
tests: started, killed with SIGKILL, restarted under the same MQTT client id (so its
persistent session survives), stopped politely; its log lines kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

from tests.processes import ProcessOutput, stop_politely

READY = r"subscribed to fleet/\+/ping"


class EngineProcess:
    """``routewatch serve --no-api`` against the test database and broker, restartable
    under one MQTT client id (so its persistent session survives a kill)."""

    def __init__(
        self,
        database_url: str,
        mqtt_url: str,
        command: Sequence[str] = ("serve", "--no-api"),
        ready: str = READY,
        **settings: str,
    ) -> None:
        self.command = list(command)
        self.ready = ready
        self.env = {
            **os.environ,
            "ROUTEWATCH_DATABASE_URL": database_url,
            "ROUTEWATCH_MQTT_URL": mqtt_url,
            "ROUTEWATCH_MQTT_CLIENT_ID": f"rw-engine-{uuid.uuid4().hex[:8]}",
            "ROUTEWATCH_WATERMARK": "event",
            "ROUTEWATCH_CHECKPOINT_INTERVAL_S": "2",
            "ROUTEWATCH_MQTT_MIRROR_EVENTS": "false",
            "ROUTEWATCH_LOG_JSON": "false",
            **{f"ROUTEWATCH_{k.upper()}": v for k, v in settings.items()},
        }
        self.proc: subprocess.Popen[str] | None = None
        self.out: ProcessOutput | None = None
        self.log: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "routewatch.cli", *self.command],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.out = ProcessOutput(self.proc)
        self.out.wait_for(self.ready, timeout_s=60)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "engine died on its own"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._keep_log()
        self.proc = None  # stop() has nothing left to do (or to log twice)

    def stop(self) -> None:
        if self.proc is not None:
            stop_politely(self.proc, timeout_s=30)
            self._keep_log()
            self.proc = None

    def _keep_log(self) -> None:
        assert self.out is not None
        with suppress(AssertionError):  # no line matches: this only drains the output
            self.out.wait_for(r"(?!)", timeout_s=0.5)
        self.log += self.out.seen


@contextmanager
def engine_process(database_url: str, mqtt_url: str, **settings: str) -> Iterator[EngineProcess]:
    """An :class:`EngineProcess` (not started yet) that is stopped when the block ends;
    ``settings`` become ``ROUTEWATCH_*`` variables (``checkpoint_interval_s="2"``)."""
    eng = EngineProcess(database_url, mqtt_url, **settings)
    try:
        yield eng
    finally:
        eng.stop()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout_s} s"
        time.sleep(0.25)
