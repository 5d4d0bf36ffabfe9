"""The driver scorecard against a hand-built day with known true values; the continuous
aggregate's answer equals plain SQL's on TimescaleDB."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from store import reports, scorecard
from tests.conftest import MakeDatabase, pause_timescaledb_jobs
from tests.control_room.factories import insert_trip
from tests.control_room.test_delivery_report import DAY, add_order, t

LEG_M = 1200.0  # 72 km/h for 60 s: each leg's speed-integrated distance


def add_event(db: psycopg.Connection, trip: str, type_: str, at: str, **details: Any) -> None:
    """An event stored with its trip's driver, as store.events does."""
    db.execute(
        "INSERT INTO events (event_id, ts, type, trip_id, vehicle_id, severity, details, "
        "driver_id) SELECT gen_random_uuid(), %s, %s, trip_id, vehicle_id, 'info', %s, "
        "driver_id FROM trips WHERE trip_id = %s",
        (t(at), type_, json.dumps(details), trip),
    )


def add_drive(db: psycopg.Connection, trip: str, vehicle: str, start: str, legs: int) -> None:
    """``legs`` + 1 fixes a minute apart at 72 km/h (the distance integrates speeds)."""
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO pings (vehicle_id, ts, lat, lon, speed_kmh, trip_id, on_route) "
            "VALUES (%s, %s, -6.2, %s, 72, %s, true)",
            [
                (vehicle, t(start) + timedelta(minutes=i), 106.8 + 0.01 * i, trip)
                for i in range(legs + 1)
            ],
        )


def build_scenario(db: psycopg.Connection) -> None:
    """D-fast speeds (60 km), D-calm stops and strays (48 km), D-late only delivers (no
    fixes), D-idle does nothing; trip TX has no driver."""
    insert_trip(db, "TF", "VF", driver_id="D-fast")
    insert_trip(db, "TC", "VC", driver_id="D-calm")
    insert_trip(db, "TL", "VL", driver_id="D-late")
    insert_trip(db, "TX", "VX")
    db.execute("INSERT INTO drivers (driver_id, name) VALUES ('D-idle', 'Idle')")
    db.execute("UPDATE drivers SET active = false WHERE driver_id = 'D-late'")
    add_drive(db, "TF", "VF", "07:00", 50)
    add_drive(db, "TC", "VC", "07:30", 40)
    add_drive(db, "TX", "VX", "07:00", 10)
    add_order(db, "TF", 0, "F1", ("08:00", "08:30"), "08:10", "08:15", "ok")  # perfect
    add_order(db, "TF", 1, "F2", ("09:00", "09:30"), "09:40", "09:45", "ok")  # late
    add_order(db, "TC", 0, "C1", ("08:00", "08:30"), "08:05", "08:06", "ok")
    add_order(db, "TC", 1, "C2", ("09:00", "09:30"), "09:05", "09:06", "ok")
    add_order(db, "TC", 2, "C3", ("10:00", "10:30"), "10:05", "10:06", "damaged")
    add_order(db, "TL", 0, "L1", ("08:00", "08:30"), "08:05", "08:06", "ok")
    add_order(db, "TX", 0, "X1", ("08:00", "08:30"), "08:05", "08:06", "ok")
    for trip in ("TF", "TC", "TX"):
        add_event(db, trip, "trip_started", "07:01")
    add_event(db, "TF", "stop_arrived", "08:10", stop_id="S0")
    add_event(db, "TF", "stop_arrived", "09:40", stop_id="S1")
    add_event(db, "TF", "speeding", "07:20", limit_kmh=50)
    add_event(db, "TF", "speeding_ended", "07:22", duration_s=120.0)
    add_event(db, "TF", "speeding", "07:40", limit_kmh=50)
    add_event(db, "TF", "speeding_ended", "07:41", duration_s=60.0)
    add_event(db, "TF", "back_on_route", "07:50", off_route_s=30.0)
    for i, at in enumerate(("08:05", "09:05", "10:05")):
        add_event(db, "TC", "stop_arrived", at, stop_id=f"S{i}")
    add_event(db, "TC", "unplanned_stop", "07:55")
    add_event(db, "TC", "unplanned_stop_ended", "08:00", duration_s=300.0)
    add_event(db, "TC", "back_on_route", "08:30", off_route_s=90.0)
    add_event(db, "TX", "speeding", "07:10")  # no driver: in no scorecard
    add_event(db, "TF", "speeding", "23:59")  # for the next-day ranges


def run(url: str, start: datetime, end: datetime, driver: str | None = None, **kw: Any) -> Any:
    async def go() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await scorecard.driver_scorecard(conn, start, end, driver, **kw)

    return asyncio.run(go())


def test_figures_and_ranking_match_the_hand_computed_truth(
    database_url: str, db: psycopg.Connection
) -> None:
    build_scenario(db)
    card = run(database_url, t("00:00"), t("23:00"))
    rows = {r["driver_id"]: r for r in card["drivers"]}
    assert [r["driver_id"] for r in card["drivers"]] == ["D-calm", "D-fast", "D-late"]
    fast, calm, late = rows["D-fast"], rows["D-calm"], rows["D-late"]

    assert (fast["trips"], fast["stops_served"], fast["orders_delivered"]) == (1, 2, 2)
    assert fast["on_time_rate_pct"] == 50.0 and fast["perfect_delivery_rate_pct"] == 50.0
    assert fast["driven_km"] == pytest.approx(50 * LEG_M / 1000)
    assert (fast["speeding_episodes"], fast["speeding_minutes"]) == (2, 3.0)
    assert fast["speeding_minutes_per_100km"] == pytest.approx(3.0 / 0.6, abs=1e-3)
    assert fast["speeding_episodes_per_100km"] == pytest.approx(2 / 0.6, abs=1e-3)
    assert (fast["off_route_minutes"], fast["unplanned_stops"]) == (0.5, 0)
    assert fast["penalty_per_100km"] == pytest.approx((10 * 3.0 + 2 * 0.5) / 0.6, abs=1e-3)
    assert fast["score"] == pytest.approx(100 - (10 * 3.0 + 2 * 0.5) / 0.6, abs=0.05)

    assert (calm["trips"], calm["stops_served"], calm["orders_delivered"]) == (1, 3, 3)
    assert calm["on_time_rate_pct"] == 100.0
    assert calm["perfect_delivery_rate_pct"] == pytest.approx(200 / 3, abs=0.01)  # C3 damaged
    assert calm["driven_km"] == pytest.approx(40 * LEG_M / 1000)
    assert (calm["speeding_episodes"], calm["speeding_minutes"]) == (0, 0.0)
    assert (calm["off_route_minutes"], calm["unplanned_stops"]) == (1.5, 1)
    assert calm["unplanned_stop_minutes"] == 5.0
    assert calm["penalty_per_100km"] == pytest.approx((2 * 1.5 + 5 * 1) / 0.48, abs=1e-3)

    assert (calm["rank"], fast["rank"]) == (1, 2)
    # D-late delivered but drove nothing we know of: listed, not ranked; still deactivated.
    assert late["orders_delivered"] == 1 and late["driven_km"] == 0.0
    assert late["rank"] is None and late["score"] is None and late["active"] is False
    assert "D-idle" not in rows

    # A driver's orders figures are the delivery report's on that driver's only vehicle.
    async def report() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            return await reports.delivery_performance(conn, t("00:00"), t("23:00"), "VF")

    vf = asyncio.run(report())
    assert (vf["orders_delivered"], vf["on_time_rate_pct"]) == (2, fast["on_time_rate_pct"])
    assert vf["driven_km"] == fast["driven_km"]
    assert vf["speeding_minutes_per_100km"] == fast["speeding_minutes_per_100km"]


def test_one_driver_and_ranges(database_url: str, db: psycopg.Connection) -> None:
    build_scenario(db)
    (idle,) = run(database_url, t("00:00"), t("23:00"), "D-idle")["drivers"]
    assert idle["trips"] == 0 and idle["rank"] is None and idle["name"] == "Idle"
    (fast,) = run(database_url, t("00:00"), t("23:00"), "D-fast")["drivers"]
    assert fast["speeding_episodes"] == 2 and fast["rank"] is None  # not ranked alone
    morning = {r["driver_id"]: r for r in run(database_url, t("07:00"), t("07:30"))["drivers"]}
    assert morning["D-fast"]["speeding_episodes"] == 1
    assert morning["D-calm"]["trips"] == 1 and morning["D-calm"]["driven_km"] == 0.0
    day = {r["driver_id"]: r for r in run(database_url, DAY, DAY + timedelta(days=1))["drivers"]}
    assert day["D-fast"]["speeding_episodes"] == 3  # with the 23:59 one
    assert run(database_url, t("00:00"), t("01:00"))["drivers"] == []


def test_http_endpoint_roles_validation_and_unknown_driver(
    api_url: str, db: psycopg.Connection, supervisor_token: str, oms_token: str
) -> None:
    build_scenario(db)
    url = f"{api_url}/v1/reports/driver-scorecard"
    params = {"from": t("00:00").isoformat(), "to": t("23:00").isoformat()}
    for token in (supervisor_token, oms_token):
        r = httpx.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert [d["driver_id"] for d in r.json()["drivers"]] == ["D-calm", "D-fast", "D-late"]
    assert httpx.get(url, params=params).status_code == 401
    auth = {"Authorization": f"Bearer {oms_token}"}
    r = httpx.get(url, params={**params, "driver_id": "D-nobody"}, headers=auth)
    assert r.status_code == 404 and "D-nobody" in r.json()["detail"]
    r = httpx.get(url, params={**params, "to": params["from"]}, headers=auth)
    assert r.status_code == 422


@pytest.mark.timescaledb
def test_continuous_aggregate_gives_the_same_scorecard(timescale_database: MakeDatabase) -> None:
    url = timescale_database()
    pause_timescaledb_jobs(url)  # real-time first, then materialised by hand
    with psycopg.connect(url, autocommit=True) as conn:
        build_scenario(conn)
        ranges = [
            (DAY, DAY + timedelta(days=1), None),
            (DAY, DAY + timedelta(days=1), "D-fast"),
            (DAY - timedelta(days=1), DAY + timedelta(days=2), None),
        ]
        for refreshed in (False, True):
            if refreshed:  # materialised now, not read from events at query time
                conn.execute("CALL refresh_continuous_aggregate('kpi_daily_driver', NULL, NULL)")
                assert conn.execute("SELECT count(*) FROM kpi_daily_driver").fetchone() == (2,)
            for start, end, driver in ranges:
                raw = run(url, start, end, driver, use_aggregate=False)
                chosen = run(url, start, end, driver)
                assert (raw["source"], chosen["source"]) == ("events", "continuous_aggregate")
                assert raw["drivers"] == chosen["drivers"], (refreshed, start, driver)
                assert any(d["speeding_episodes"] for d in raw["drivers"])
