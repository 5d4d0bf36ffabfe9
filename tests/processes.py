"""Helpers for tests that run routewatch as a child process (the demo, the full stack)."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable


class ProcessOutput:
    """A child's stdout, line by line, searchable with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()

    def _pump(self, stream: Iterable[str]) -> None:
        for line in stream:
            self._q.put(line)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        """The first new line matching ``pattern`` within ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.seen[-40:])}")


def stop_politely(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    """SIGINT (so a demo stops its private services too), then SIGKILL after ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
