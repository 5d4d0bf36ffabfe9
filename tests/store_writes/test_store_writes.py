"""The batch writers against the real PostgreSQL: COPY + dedupe, rejections, idempotent
events, vehicle state / stops / checkpoint upserts."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import numpy as np
import psycopg
import pytest
from psycopg import AsyncConnection

from compliance.events import Event, EventType
from compliance.types import PingBatch, ProcessResult, StopSnapshot, TripSnapshot
from ingest.decode import Reason, Rejection
from store.events import insert_events
from store.live import (
    load_checkpoint,
    save_checkpoint,
    update_trips_and_stops,
    upsert_vehicle_state,
)
from store.pings import insert_pings
from store.rejections import insert_rejections

T0 = 1_763_798_400_000
NAN = math.nan


def make_batch(rows: list[tuple[str, int]], speed: float = 30.0) -> PingBatch:
    n = len(rows)
    return PingBatch(
        [r[0] for r in rows],
        np.array([r[1] for r in rows], np.int64),
        np.linspace(-6.2, -6.1, n),
        np.linspace(106.8, 106.9, n),
        np.full(n, speed),
        np.full(n, NAN),
        np.full(n, 5.0),
        np.arange(n, dtype=np.int64),
    )


@pytest.fixture
async def aconn(db: psycopg.Connection, database_url: str) -> AsyncIterator[AsyncConnection]:
    conn = await AsyncConnection.connect(database_url, autocommit=True)
    yield conn
    await conn.close()


async def test_pings_copy_dedupes_in_batch_and_against_stored(
    aconn: AsyncConnection, db: psycopg.Connection
) -> None:
    batch = make_batch([("V1", T0), ("V1", T0 + 1000), ("V1", T0), ("V2", T0)])
    async with aconn.transaction():
        assert await insert_pings(aconn, batch) == 3
    async with aconn.transaction():
        assert await insert_pings(aconn, make_batch([("V1", T0 + 1000), ("V1", T0 + 2000)])) == 1
    rows = db.execute(
        "SELECT vehicle_id, extract(epoch FROM ts)*1000, heading_deg, seq, on_route, route_m "
        "FROM pings ORDER BY 1, 2"
    ).fetchall()
    assert [(r[0], int(r[1])) for r in rows] == [
        ("V1", T0),
        ("V1", T0 + 1000),
        ("V1", T0 + 2000),
        ("V2", T0),
    ]
    assert all(r[2] is None and r[4] is None and r[5] is None for r in rows)  # NaN -> NULL
    assert rows[0][3] == 0


async def test_pings_with_match_columns(aconn: AsyncConnection, db: psycopg.Connection) -> None:
    batch = make_batch([("V3", T0), ("V3", T0 + 1)])
    result = ProcessResult(
        ["T1", None], np.array([12.5, NAN]), np.array([3.0, NAN]), np.array([1, -1], np.int8)
    )
    async with aconn.transaction():
        assert await insert_pings(aconn, batch, result) == 2
    rows = db.execute(
        "SELECT trip_id, route_m, offset_m, on_route FROM pings ORDER BY ts"
    ).fetchall()
    assert rows == [("T1", 12.5, 3.0, True), (None, None, None, None)]


async def test_rejections_copied(aconn: AsyncConnection, db: psycopg.Connection) -> None:
    rej = [
        Rejection("fleet/a b/ping", None, Reason.BAD_TOPIC, "bad id", b"{}"),
        Rejection("fleet/V/ping", "V", Reason.MALFORMED_JSON, "nul \x00 here", b"\x00\xff"),
    ]
    async with aconn.transaction():
        assert await insert_rejections(aconn, rej) == 2
    rows = db.execute(
        "SELECT topic, vehicle_id, reason, detail, payload FROM rejected_pings ORDER BY id"
    ).fetchall()
    assert rows[0][:3] == ("fleet/a b/ping", None, "bad_topic")
    assert rows[1][2] == "malformed_json" and "\\x00" in rows[1][3]
    assert bytes(rows[1][4]) == b"\x00\xff"


async def test_events_idempotent(aconn: AsyncConnection, db: psycopg.Connection) -> None:
    e1 = Event(EventType.OFF_ROUTE, "T1", "V1", T0, -6.2, 106.8, 100.0, {"offset_m": 131.0})
    e2 = Event(EventType.STOP_ARRIVED, "T1", "V1", T0 + 5, -6.2, 106.8, NAN, {"stop_id": "S1"})
    async with aconn.transaction():
        assert await insert_events(aconn, [e1, e1]) == [e1]
    async with aconn.transaction():
        assert await insert_events(aconn, [e1, e2]) == [e2]
    rows = db.execute(
        "SELECT event_id::text, type, route_m, details FROM events ORDER BY ts"
    ).fetchall()
    assert rows[0] == (e1.event_id, "off_route", 100.0, {"offset_m": 131.0})
    assert rows[1][2] is None


async def test_vehicle_state_newest_wins(aconn: AsyncConnection, db: psycopg.Connection) -> None:
    async with aconn.transaction():
        await upsert_vehicle_state(aconn, make_batch([("V1", T0 + 2000), ("V1", T0)]), None)
    async with aconn.transaction():  # an older ping must not move the vehicle back
        await upsert_vehicle_state(aconn, make_batch([("V1", T0 + 1000)], speed=0.0), None)
    row = db.execute("SELECT extract(epoch FROM ts)*1000, status FROM vehicle_state").fetchone()
    assert row is not None and (int(row[0]), row[1]) == (T0 + 2000, "moving")
    lost = Event(EventType.SIGNAL_LOST, "T1", "V1", T0 + 3000, 0, 0, 0, {})
    async with aconn.transaction():
        await upsert_vehicle_state(aconn, PingBatch.empty(), None, [lost])
    assert db.execute("SELECT status FROM vehicle_state").fetchone() == ("signal_lost",)


async def test_snapshots_update_stops_trip_and_state(
    aconn: AsyncConnection, db: psycopg.Connection
) -> None:
    db.execute("INSERT INTO vehicles (vehicle_id) VALUES ('V9')")
    db.execute(
        "INSERT INTO trips (trip_id, vehicle_id, planned_start, plan, route_length_m) "
        "VALUES ('T9', 'V9', now(), '{}', 1000)"
    )
    db.execute(
        "INSERT INTO stops (trip_id, seq, stop_id, lon, lat, route_m, radius_m, service_s)"
        " VALUES ('T9', 0, 'S1', 0, 0, 500, 50, 60), ('T9', 1, 'S2', 0, 0, 900, 50, 60)"
    )
    snap = TripSnapshot(
        "T9",
        "V9",
        T0,
        -6.2,
        106.8,
        20.0,
        510.0,
        4.0,
        True,
        60.0,
        51.0,
        "active",
        [
            StopSnapshot("S1", None, "arrived", None, None, None, T0),
            StopSnapshot("S2", None, "pending", T0 + 60_000, T0 + 30_000, T0 + 90_000),
        ],
    )
    result = ProcessResult([], np.empty(0), np.empty(0), np.empty(0, np.int8), [], [snap])
    async with aconn.transaction():
        await upsert_vehicle_state(aconn, PingBatch.empty(), result)
        await update_trips_and_stops(aconn, [snap])
    assert db.execute("SELECT status FROM trips").fetchone() == ("active",)
    stops = db.execute(
        "SELECT stop_id, status, arrived_at IS NOT NULL, "
        "extract(epoch FROM eta)*1000 FROM stops ORDER BY seq"
    ).fetchall()
    assert stops[0][:3] == ("S1", "arrived", True) and stops[0][3] is None
    assert stops[1][1] == "pending" and int(stops[1][3]) == T0 + 60_000
    state = db.execute("SELECT trip_id, route_m, schedule_delay_s, on_route FROM vehicle_state")
    assert state.fetchone() == ("T9", 510.0, 51.0, True)


async def test_checkpoint_roundtrip(aconn: AsyncConnection) -> None:
    assert await load_checkpoint(aconn) is None
    await save_checkpoint(aconn, b"state-1", T0)
    await save_checkpoint(aconn, b"state-2", T0 + 1)
    saved = await load_checkpoint(aconn)
    assert saved is not None and saved[0] == b"state-2"


async def test_commit_batch_essentials_when_derived_writes_fail(
    aconn: AsyncConnection, db: psycopg.Connection
) -> None:
    from ingest.batch import PendingBatch
    from ingest.commit import commit_batch

    db.execute("INSERT INTO vehicles (vehicle_id) VALUES ('V8')")
    db.execute(
        "INSERT INTO trips (trip_id, vehicle_id, planned_start, plan, route_length_m) "
        "VALUES ('T8', 'V8', now(), '{}', 1000)"
    )
    db.execute(
        "INSERT INTO stops (trip_id, seq, stop_id, lon, lat, route_m, radius_m, service_s)"
        " VALUES ('T8', 0, 'S1', 0, 0, 500, 50, 60)"
    )
    bad = TripSnapshot(
        "T8",
        "V8",
        T0,
        0,
        0,
        0,
        0,
        0,
        True,
        0,
        None,
        "active",
        [StopSnapshot("S1", None, "bogus-status", None, None, None)],
    )
    ev = Event(EventType.TRIP_STARTED, "T8", "V8", T0, 0, 0, 0, {})
    batch = make_batch([("V8", T0)])
    result = ProcessResult(
        ["T8"], np.array([1.0]), np.array([0.5]), np.array([1], np.int8), [ev], [bad]
    )
    pending = PendingBatch(batch, [], [], 1, 0, 0, 1)
    with pytest.raises(psycopg.errors.CheckViolation):
        await commit_batch(aconn, pending, result, [])
    assert db.execute("SELECT count(*) FROM pings").fetchone() == (0,)  # all or nothing
    outcome = await commit_batch(aconn, pending, result, [], essentials_only=True)
    assert outcome.stored == 1 and outcome.new_events == [ev]
    assert db.execute("SELECT trip_id FROM pings").fetchone() == ("T8",)
