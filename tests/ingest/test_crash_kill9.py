"""Kill -9 under load: the real engine process (``routewatch serve --no-api``) is killed
twice while a simulated fleet publishes, and restarted each time. Afterwards every
published ping is stored exactly once and the stored events are exactly those of an
uninterrupted engine over the same pings (``watermark=event`` makes that deterministic):
un-acked messages come back from the broker's persistent session, and what was committed
after the last checkpoint comes back from the database (ingest/recovery.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

import psycopg
import pytest

from tests.conftest import StartMosquitto
from tests.ingest.engine_process import engine_process, wait_until
from tests.ingest.fleet_run import (
    SteadyPublisher,
    insert_trips,
    make_fleet,
    reference_events,
    stored_events,
    stored_pings,
)

pytestmark = pytest.mark.slow

RATE_PER_S = 1500.0  # published pings per second (one per message)
#: the broker holds the engine's messages while it is dead (Mosquitto's default is 1000)
BROKER_CONFIG = "max_queued_messages 200000\n"


def test_kill_9_under_load_loses_nothing_and_detects_the_same(
    db: psycopg.Connection, database_url: str, start_mosquitto: StartMosquitto
) -> None:
    fleet = make_fleet(vehicles=20, interval_s=2, duration_s=1800, seed=5)
    insert_trips(db, fleet.plans)
    vehicles = {str(p["vehicle_id"]) for p in fleet.plans}
    expected_pings = fleet.unique_pings()
    broker = start_mosquitto(BROKER_CONFIG)
    t0 = time.monotonic()

    def stored_count() -> int:
        row = db.execute(
            "SELECT count(*) FROM pings WHERE vehicle_id = ANY(%s)", (list(vehicles),)
        ).fetchone()
        return int(row[0]) if row else 0

    with engine_process(database_url, broker.url) as eng:
        eng.start()
        publisher = SteadyPublisher(broker.url, fleet.rows, RATE_PER_S)
        publisher.start()

        def kill_and_restart(share: float, down_s: float) -> None:
            """SIGKILL once ``share`` of the pings are published (not after a fixed time:
            the machine may be busy) and this engine has committed batches since it
            started: those are what recovery has to replay."""
            since_start = stored_count()
            wait_until(lambda: publisher.sent >= share * len(fleet.rows), 60, "publishing")
            wait_until(lambda: stored_count() >= since_start + 300, 60, "commits")
            eng.kill()
            time.sleep(down_s)  # the broker queues for the dead engine meanwhile
            eng.start()

        kill_and_restart(0.3, down_s=0.5)
        # Long enough for a backlog bigger than the receiver's buffer (several thousand
        # messages), which the broker sends on reconnect before anything else.
        kill_and_restart(0.5, down_s=6.0)
        assert publisher.finish() == len(fleet.rows)
        wait_until(lambda: stored_count() >= len(expected_pings), 60, "all pings stored")
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
