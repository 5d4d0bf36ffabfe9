"""Events, alerts, webhooks and the live vehicle view carry the trip's driver (issue #17):
taken from the trip row where they are stored, never from the compliance engine."""

from __future__ import annotations

import json
from dataclasses import astuple
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from compliance.replay import replay
from compliance.types import PingBatch
from store import alerts, orders, vehicles
from store.events import insert_events
from tests.compliance.builders import batch, drive, plan
from tests.control_room.factories import at, ev, insert_trip


async def _connect(database_url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    )


async def test_events_are_stored_and_returned_with_the_trips_driver(
    db: psycopg.Connection, database_url: str
) -> None:
    insert_trip(db, "TD", "VD", driver_id="D-1")
    insert_trip(db, "TN", "VN")  # no driver
    async with await _connect(database_url) as conn:
        new = await insert_events(
            conn,
            [ev("speeding", "TD", 10, vehicle_id="VD"), ev("speeding", "TN", 10, vehicle_id="VN")],
        )
        assert [(e.trip_id, e.driver_id) for e in new] == [("TD", "D-1"), ("TN", None)]
        assert new[0].to_dict()["driver_id"] == "D-1"
        assert "driver_id" not in new[1].to_dict()  # as before drivers existed
        # the same event again is not new (and keeps its id: the driver is not part of it)
        assert await insert_events(conn, [ev("speeding", "TD", 10, vehicle_id="VD")]) == []

        # Re-planned with another driver: later events are theirs, earlier ones stay.
        db.execute("INSERT INTO drivers (driver_id) VALUES ('D-2')")
        db.execute("UPDATE trips SET driver_id = 'D-2' WHERE trip_id = 'TD'")
        (later,) = await insert_events(conn, [ev("speeding_ended", "TD", 60, vehicle_id="VD")])
        assert later.driver_id == "D-2"
    stored = db.execute("SELECT type, driver_id FROM events WHERE trip_id = 'TD' ORDER BY ts")
    assert stored.fetchall() == [("speeding", "D-1"), ("speeding_ended", "D-2")]


async def test_alerts_carry_the_driver_whoever_opens_them(
    db: psycopg.Connection, database_url: str
) -> None:
    insert_trip(db, "TA", "VA", driver_id="D-a")
    insert_trip(db, "TB", "VB", driver_id="D-b")
    async with await _connect(database_url) as conn:
        async with conn.transaction():
            await alerts.apply_events(
                conn,
                [
                    ev("off_route", "TA", 10, vehicle_id="VA"),
                    ev("speeding", "TB", 10, vehicle_id="VB"),
                    ev("late", "T-unknown", 10, vehicle_id="VX"),
                ],
            )
        # the database's own alerts (migration 0022): a stop marked skipped
        db.execute(
            "INSERT INTO stops (trip_id, seq, stop_id, lon, lat, route_m, radius_m, service_s) "
            "VALUES ('TA', 0, 'S1', 106.8, -6.2, 0, 75, 0)"
        )
        db.execute("UPDATE stops SET status = 'skipped' WHERE trip_id = 'TA'")
        rows = await alerts.list_alerts(conn)
        mine = await alerts.list_alerts(conn, driver_id="D-a")
    drivers = {(r["type"], r["trip_id"]): r["driver_id"] for r in rows}
    assert drivers == {
        ("off_route", "TA"): "D-a",
        ("speeding", "TB"): "D-b",
        ("late", "T-unknown"): None,
        ("stop_skipped", "TA"): "D-a",
    }
    assert {r["type"] for r in mine} == {"off_route", "stop_skipped"}
    assert all(alerts.to_public(r)["driver_id"] == "D-a" for r in mine)


async def test_webhooks_name_the_driver_when_the_trip_has_one(
    db: psycopg.Connection, database_url: str
) -> None:
    for trip, vehicle, driver in (("TW", "VW", "D-w"), ("TX", "VX", None)):
        insert_trip(db, trip, vehicle, driver_id=driver)
        db.execute(
            "INSERT INTO stops (trip_id, seq, stop_id, order_id, lon, lat, route_m, radius_m, "
            "service_s) VALUES (%s, 0, 'S1', %s, 106.8, -6.2, 500, 75, 0)",
            (trip, f"O-{trip}"),
        )
        db.execute(
            "INSERT INTO orders (order_id, tracking_number, trip_id, stop_id) "
            "VALUES (%s, %s, %s, 'S1')",
            (f"O-{trip}", f"TN-{trip}", trip),
        )
    async with await _connect(database_url) as conn, conn.transaction():
        await orders.apply_events(
            conn,
            [
                ev("trip_started", "TW", 5, vehicle_id="VW"),
                ev("trip_started", "TX", 5, vehicle_id="VX"),
            ],
            [],
        )
    bodies = {
        r[0]: json.loads(r[1])
        for r in db.execute("SELECT order_id, body FROM webhook_outbox ORDER BY id")
    }
    assert bodies["O-TW"]["status"] == "out_for_delivery"
    assert bodies["O-TW"]["driver_id"] == "D-w"
    assert "driver_id" not in bodies["O-TX"]


async def test_live_vehicles_show_the_driver_of_their_trip(
    db: psycopg.Connection, database_url: str
) -> None:
    insert_trip(db, "TV", "VV", driver_id="D-v")
    db.execute("UPDATE drivers SET name = 'Vina' WHERE driver_id = 'D-v'")
    db.execute(
        "INSERT INTO vehicle_state (vehicle_id, ts, lat, lon, trip_id) "
        "VALUES ('VV', %s, -6.2, 106.8, 'TV'), ('VQ', %s, -6.2, 106.8, NULL)",
        (at(0), at(0)),
    )
    async with await _connect(database_url) as conn:
        rows = {r["vehicle_id"]: r for r in await vehicles.live_states(conn)}
    assert (rows["VV"]["driver_id"], rows["VV"]["driver_name"]) == ("D-v", "Vina")
    assert rows["VQ"]["driver_id"] is None


def test_replay_prints_the_plans_driver_with_each_event() -> None:
    """Offline replay gives the events the live pipeline would store, driver included."""
    route = [(0.0, 0.0), (2000.0, 0.0)]
    ts, x, y, _ = drive(route, [(100, 40)])
    one, two = batch("VR1", ts, x, y), batch("VR2", ts, x, y)
    both = PingBatch(
        one.vehicle_id + two.vehicle_id,
        *(np.concatenate([a, b]) for a, b in zip(astuple(one)[1:], astuple(two)[1:], strict=True)),
    )
    plans = [
        plan(route, trip_id="TR1", vehicle_id="VR1", driver_id="D-r"),
        plan(route, trip_id="TR2", vehicle_id="VR2"),
    ]
    events = list(replay(plans, both))
    assert {e["trip_id"] for e in events} == {"TR1", "TR2"}
    assert {e["trip_id"]: e.get("driver_id") for e in events} == {"TR1": "D-r", "TR2": None}
