"""Kill -9 under load: the real engine process (``routewatch serve --no-api``) is killed
twice while a simulated fleet publishes, and restarted each time. Afterwards every
published ping is stored exactly once and the stored events are exactly those of an
uninterrupted engine over the same pings (``watermark=event`` makes that deterministic):
un-acked messages come back from the broker's persistent session, and what was committed
after the last checkpoint comes back from the database (ingest/recovery.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress

import psycopg
import pytest

from tests.conftest import StartMosquitto
from tests.ingest.fleet_run import (
    SteadyPublisher,
    insert_trips,
    make_fleet,
    reference_events,
    stored_events,
    stored_pings,
)
from tests.processes import ProcessOutput, stop_politely

pytestmark = pytest.mark.slow

RATE_PER_S = 1500.0  # published pings per second (one per message)
#: the broker holds the engine's messages while it is dead (Mosquitto's default is 1000)
BROKER_CONFIG = "max_queued_messages 200000\n"
READY = r"subscribed to fleet/\+/ping"


class EngineProcess:
    """``routewatch serve --no-api`` against the test database and broker, restartable
    under one MQTT client id (so its persistent session survives a kill)."""

    def __init__(self, database_url: str, mqtt_url: str) -> None:
        self.env = {
            **os.environ,
            "ROUTEWATCH_DATABASE_URL": database_url,
            "ROUTEWATCH_MQTT_URL": mqtt_url,
            "ROUTEWATCH_MQTT_CLIENT_ID": f"rw-kill9-{uuid.uuid4().hex[:8]}",
            "ROUTEWATCH_WATERMARK": "event",
            "ROUTEWATCH_CHECKPOINT_INTERVAL_S": "2",
            "ROUTEWATCH_MQTT_MIRROR_EVENTS": "false",
            "ROUTEWATCH_LOG_JSON": "false",
        }
        self.proc: subprocess.Popen[str] | None = None
        self.out: ProcessOutput | None = None
        self.log: list[str] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "routewatch.cli", "serve", "--no-api"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.out = ProcessOutput(self.proc)
        self.out.wait_for(READY, timeout_s=60)

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "engine died on its own"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._keep_log()

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
def engine_process(database_url: str, mqtt_url: str) -> Iterator[EngineProcess]:
    eng = EngineProcess(database_url, mqtt_url)
    try:
        yield eng
    finally:
        eng.stop()


def _wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout_s} s"
        time.sleep(0.25)


def test_kill_9_under_load_loses_nothing_and_detects_the_same(
    db: psycopg.Connection, database_url: str, start_mosquitto: StartMosquitto
) -> None:
    fleet = make_fleet(vehicles=20, interval_s=2, duration_s=1800, seed=5)
    insert_trips(db, fleet.plans)
    vehicles = {str(p["vehicle_id"]) for p in fleet.plans}
    expected_pings = fleet.unique_pings()
    broker = start_mosquitto(BROKER_CONFIG)
    t0 = time.monotonic()
    with engine_process(database_url, broker.url) as eng:
        eng.start()
        publisher = SteadyPublisher(broker.url, fleet.rows, RATE_PER_S)
        publisher.start()
        for at_s in (3.0, 7.0):  # publishing takes about 10 s
            time.sleep(max(0.0, t0 + at_s - time.monotonic()))
            eng.kill()
            time.sleep(0.5)  # the broker queues for the dead engine meanwhile
            eng.start()
        assert publisher.finish() == len(fleet.rows)
        _wait_until(
            lambda: len(stored_pings(db, vehicles)) >= len(expected_pings), 60, "all pings stored"
        )
        eng.stop()
    print(f"published {len(fleet.rows)} pings, 2 kills, done in {time.monotonic() - t0:.1f} s")

    pings = stored_pings(db, vehicles)
    assert len(pings) == len(set(pings))  # nothing stored twice
    assert set(pings) == expected_pings  # nothing lost, nothing made up

    reference = reference_events(fleet)
    ids = stored_events(db, vehicles)
    assert len(ids) == len(set(ids))
    assert set(ids) == set(reference), _diff(set(ids), reference)
    assert len(reference) > 60

    # The kills landed between checkpoints: recovery had committed batches to replay.
    replayed = [
        int(m.group(1))
        for line in eng.log
        if (m := re.search(r"engine recovered: replayed (\d+) pings", line))
    ]
    assert replayed and max(replayed) > 0, "no restart replayed anything"


def _diff(stored: set[str], reference: Mapping[str, object]) -> str:
    missing = [reference[i] for i in set(reference) - stored]
    return f"missing {missing[:5]}; unexpected ids {sorted(stored - set(reference))[:5]}"
