"""Kill -9 under load: the real engine process (``routewatch serve --no-api``) is killed
twice while a simulated fleet publishes, and restarted each time. Afterwards every
published ping is stored exactly once and the stored events are exactly those of an
uninterrupted engine over the same pings (``watermark=event`` makes that deterministic):
un-acked messages come back from the broker's persistent session, and what was committed
after the last checkpoint comes back from the database (ingest/recovery.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ingest import recovery
from simulator.scenario import DEFAULT_START_MS
from tests.conftest import MakeDatabase, StartMosquitto
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
    _run_and_check(db, database_url, start_mosquitto(BROKER_CONFIG).url, [(0.3, 0.5), (0.5, 6.0)])


@pytest.mark.timescaledb
def test_kill_9_on_timescaledb_with_compressed_chunks(
    timescale_database: MakeDatabase, start_mosquitto: StartMosquitto
) -> None:
    """Four days of older pings sit in compressed chunks; the fleet's own chunks are
    compressed too just before the kill (its later pings go into compressed chunks). The
    restarted engine recovers the same events, and its commit_xid scan decompresses no
    batch of the old chunks: their minmax sparse index rules them out."""
    url = timescale_database()
    with psycopg.connect(url, autocommit=True) as db:
        fleet_day = datetime.fromtimestamp(DEFAULT_START_MS / 1000, UTC)
        db.execute(_HISTORY_SQL, (fleet_day - timedelta(days=5), fleet_day - timedelta(days=1)))
        old_chunks = [
            r[0]
            for r in db.execute(
                "SELECT compress_chunk(c)::text FROM show_chunks('pings', older_than => %s) c",
                (fleet_day - timedelta(hours=12),),
            ).fetchall()
        ]
        assert len(old_chunks) >= 4

        def compress_everything() -> None:
            db.execute("SELECT count(compress_chunk(c, true)) FROM show_chunks('pings') c")
            db.execute("SELECT count(compress_chunk(c, true)) FROM show_chunks('events') c")

        _run_and_check(
            db, url, start_mosquitto(BROKER_CONFIG).url, [(0.5, 2.0)], compress_everything
        )
        saved = db.execute("SELECT max(commit_xid) FROM engine_checkpoints").fetchone()
        assert saved is not None and saved[0] is not None
        plan = db.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + recovery._REPLAY_SQL, (saved[0],)
        ).fetchone()
        assert plan is not None
        scans = {
            node["Relation Name"]: child
            for node in _nodes(plan[0][0]["Plan"])
            if node.get("Custom Plan Provider") in ("ColumnarScan", "DecompressChunk")
            for child in node["Plans"]
        }
        old_names = {c.split(".")[-1] for c in old_chunks}
        assert old_names <= set(scans), "every old chunk is read compressed"
        for name in old_names:
            assert scans[name]["Actual Rows"] == 0, f"{name}: batches were decompressed"
            assert scans[name]["Rows Removed by Filter"] > 0  # ruled out by commit_xid range


# Twenty other vehicles, a fix every 30 s, over four earlier days: committed long before
# the engine's first checkpoint.
_HISTORY_SQL = """
INSERT INTO pings (vehicle_id, ts, lat, lon, speed_kmh)
SELECT 'H' || v, t, -6.2 + v * 0.001, 106.8, 30
  FROM generate_series(1, 20) v,
       generate_series(%s::timestamptz, %s::timestamptz, interval '30 seconds') t
"""


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _run_and_check(
    db: psycopg.Connection,
    database_url: str,
    mqtt_url: str,
    kills: list[tuple[float, float]],
    before_kill: Callable[[], None] | None = None,
) -> None:
    """Publish a fleet, kill -9 and restart the engine at each (share published, seconds
    down) of ``kills``; then every ping is stored once and the events are the reference."""
    fleet = make_fleet(vehicles=20, interval_s=2, duration_s=1800, seed=5)
    insert_trips(db, fleet.plans)
    vehicles = {str(p["vehicle_id"]) for p in fleet.plans}
    expected_pings = fleet.unique_pings()
    t0 = time.monotonic()

    def stored_count() -> int:
        row = db.execute(
            "SELECT count(*) FROM pings WHERE vehicle_id = ANY(%s)", (list(vehicles),)
        ).fetchone()
        return int(row[0]) if row else 0

    with engine_process(database_url, mqtt_url) as eng:
        eng.start()
        publisher = SteadyPublisher(mqtt_url, fleet.rows, RATE_PER_S)
        publisher.start()

        def kill_and_restart(share: float, down_s: float) -> None:
            """SIGKILL once ``share`` of the pings are published (not after a fixed time:
            the machine may be busy) and this engine has committed batches since it
            started: those are what recovery has to replay."""
            since_start = stored_count()
            wait_until(lambda: publisher.sent >= share * len(fleet.rows), 60, "publishing")
            wait_until(lambda: stored_count() >= since_start + 300, 60, "commits")
            if before_kill is not None:
                before_kill()
            eng.kill()
            time.sleep(down_s)  # the broker queues for the dead engine meanwhile
            eng.start()

        # The second kill (first test) is down long enough for a backlog bigger than the
        # receiver's buffer (several thousand messages), which the broker sends on
        # reconnect before anything else.
        for share, down_s in kills:
            kill_and_restart(share, down_s)
        assert publisher.finish() == len(fleet.rows)
        wait_until(lambda: stored_count() >= len(expected_pings), 60, "all pings stored")
        eng.stop()
    print(
        f"published {len(fleet.rows)} pings, {len(kills)} kills, done in {time.monotonic() - t0:.1f} s"
    )

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
