"""Delivery-performance figures against a hand-built scenario with known true values."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from store import reports
from tests.conftest import MakeDatabase, pause_timescaledb_jobs
from tests.control_room.factories import insert_trip

DAY = datetime.fromisoformat("2026-11-20T00:00:00+00:00")


def t(hhmm: str) -> datetime:
    h, m = hhmm.split(":")
    return DAY + timedelta(hours=int(h), minutes=int(m))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * r * math.asin(math.sqrt(a))


def add_order(
    db: psycopg.Connection,
    trip: str,
    seq: int,
    order: str,
    window: tuple[str, str],
    arrived: str | None,
    delivered: str | None,
    pod: str | None,
) -> None:
    """One stop+order; ``pod`` is None, 'ok', 'damaged' or 'flagged'."""
    db.execute(
        "INSERT INTO stops (trip_id, seq, stop_id, order_id, lon, lat, route_m, radius_m, "
        "window_start, window_end, service_s, status, arrived_at) "
        "VALUES (%s, %s, %s, %s, 106.8, -6.2, 0, 75, %s, %s, 300, %s, %s)",
        (
            trip,
            seq,
            f"S{seq}",
            order,
            t(window[0]),
            t(window[1]),
            "arrived" if arrived else "pending",
            t(arrived) if arrived else None,
        ),
    )
    db.execute(
        "INSERT INTO orders (order_id, tracking_number, trip_id, stop_id, status, created_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (order, f"TN{order}", trip, f"S{seq}", "delivered" if delivered else "failed", t("07:00")),
    )
    if delivered:
        db.execute(
            "INSERT INTO order_status_history (order_id, status, ts) VALUES (%s, 'delivered', %s)",
            (order, t(delivered)),
        )
    if pod:
        db.execute(
            "INSERT INTO pod (order_id, recipient_name, condition, flagged) "
            "VALUES (%s, 'R', %s, %s)",
            (order, "damaged" if pod == "damaged" else "ok", pod == "flagged"),
        )


def add_event(
    db: psycopg.Connection, vehicle: str, trip: str, type_: str, at: str, **details: Any
) -> None:
    db.execute(
        "INSERT INTO events (event_id, ts, type, trip_id, vehicle_id, severity, details) "
        "VALUES (gen_random_uuid(), %s, %s, %s, %s, 'warning', %s)",
        (t(at), type_, trip, vehicle, json.dumps(details)),
    )


@pytest.fixture
def scenario(db: psycopg.Connection) -> dict[str, float]:
    return build_scenario(db)


def build_scenario(db: psycopg.Connection) -> dict[str, float]:
    """Vehicle VR: 5 orders; vehicle VO: 1 order (excluded by the vehicle filter)."""
    insert_trip(db, "TR", "VR")
    insert_trip(db, "TO", "VO")
    add_order(db, "TR", 0, "O1", ("08:00", "08:30"), "08:10", "08:15", "ok")  # perfect
    add_order(db, "TR", 1, "O2", ("09:00", "09:30"), "09:40", "09:45", "ok")  # 600 s late
    add_order(db, "TR", 2, "O3", ("10:00", "10:30"), "10:05", "10:10", None)  # no POD
    add_order(db, "TR", 3, "O4", ("11:00", "11:30"), "11:10", "11:20", "damaged")  # exception
    add_order(db, "TR", 4, "O5", ("12:00", "12:30"), None, None, None)  # failed
    add_order(db, "TO", 0, "O6", ("08:00", "08:30"), "08:05", "08:06", "ok")
    # Pings: 11 fixes 10 s apart heading east; fixes 5..7 outside the corridor.
    lons = [106.8 + 0.001 * i for i in range(11)]
    lats = [-6.2 + (0.0003 if 5 <= i <= 7 else 0.0) for i in range(11)]
    on_route = [not (5 <= i <= 7) for i in range(11)]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO pings (vehicle_id, ts, lat, lon, trip_id, on_route) "
            "VALUES ('VR', %s, %s, %s, 'TR', %s)",
            [
                (t("08:00") + timedelta(seconds=10 * i), lats[i], lons[i], on_route[i])
                for i in range(11)
            ],
        )
    legs = [haversine_m(lats[i - 1], lons[i - 1], lats[i], lons[i]) for i in range(1, 11)]
    inside = sum(d for i, d in enumerate(legs, start=1) if on_route[i] and on_route[i - 1])
    add_event(db, "VR", "TR", "speeding", "08:20", limit_kmh=40)
    add_event(db, "VR", "TR", "speeding_ended", "08:21", duration_s=60)
    add_event(db, "VR", "TR", "speeding", "09:00", limit_kmh=40)
    add_event(db, "VR", "TR", "speeding_ended", "09:02", duration_s=120)
    add_event(db, "VR", "TR", "unplanned_stop_ended", "09:10", duration_s=300)
    add_event(db, "VO", "TO", "speeding", "08:20")
    add_event(db, "VR", "TR", "speeding", "23:59")  # next-day check below
    return {"driven_m": sum(legs), "inside_m": inside}


def run(
    database_url: str, start: datetime, end: datetime, vehicle: str | None, **kw: Any
) -> dict[str, Any]:
    async def _go() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await reports.delivery_performance(conn, start, end, vehicle, **kw)

    return asyncio.run(_go())


def test_figures_match_hand_computed_truth(database_url: str, scenario: dict[str, float]) -> None:
    r = run(database_url, t("00:00"), t("23:00"), "VR")
    assert r["orders_delivered"] == 4
    assert r["on_time_rate_pct"] == 75.0  # O1, O3, O4 inside the window
    assert r["average_delay_s"] == 150.0  # (0 + 600 + 0 + 0) / 4
    # lead times from 07:00: 75, 165, 190, 260 minutes
    assert r["average_lead_time_s"] == pytest.approx((75 + 165 + 190 + 260) * 60 / 4)
    assert r["pod_coverage_pct"] == 75.0  # O1, O2, O4
    assert r["perfect_delivery_rate_pct"] == 25.0  # only O1
    driven_m = scenario["driven_m"]
    assert r["driven_km"] == pytest.approx(driven_m / 1000, abs=1e-3)
    assert r["route_adherence_pct"] == pytest.approx(
        100 * scenario["inside_m"] / driven_m, abs=0.01
    )
    assert 55 < r["route_adherence_pct"] < 65  # 6 of 10 legs, outside ones longer
    assert r["speeding_events"] == 2
    assert r["speeding_minutes"] == 3.0
    assert r["speeding_events_per_100km"] == pytest.approx(2 / (driven_m / 1e5), rel=1e-3)
    assert r["speeding_minutes_per_100km"] == pytest.approx(3 / (driven_m / 1e5), rel=1e-3)
    assert r["unplanned_stop_minutes"] == 5.0


def test_range_and_vehicle_filters(database_url: str, scenario: dict[str, float]) -> None:
    morning = run(database_url, t("08:00"), t("09:00"), "VR")
    assert morning["orders_delivered"] == 1 and morning["speeding_events"] == 1
    everyone = run(database_url, t("00:00"), t("23:00"), None)
    assert everyone["orders_delivered"] == 5 and everyone["speeding_events"] == 3
    empty = run(database_url, t("00:00"), t("01:00"), "VR")
    assert empty["orders_delivered"] == 0 and empty["on_time_rate_pct"] is None
    assert empty["route_adherence_pct"] is None


@pytest.mark.timescaledb
def test_continuous_aggregate_gives_the_same_answer(timescale_database: MakeDatabase) -> None:
    url = timescale_database()
    pause_timescaledb_jobs(url)  # no background refresh while the scenario is written
    with psycopg.connect(url, autocommit=True) as conn:
        build_scenario(conn)
    for start, end, vehicle in [
        (DAY, DAY + timedelta(days=1), "VR"),
        (DAY, DAY + timedelta(days=1), None),
        (DAY - timedelta(days=1), DAY + timedelta(days=2), "VR"),  # the 23:59 event too
    ]:
        raw = run(url, start, end, vehicle, use_aggregate=False)
        chosen = run(url, start, end, vehicle)
        assert chosen["source"] == "continuous_aggregate"
        assert {k: v for k, v in raw.items() if k != "source"} == {
            k: v for k, v in chosen.items() if k != "source"
        }
        assert raw["speeding_events"] > 0


def test_http_endpoint_roles_and_validation(
    api_url: str, scenario: dict[str, float], supervisor_token: str, oms_token: str
) -> None:
    params = {"from": t("00:00").isoformat(), "to": t("23:00").isoformat(), "vehicle_id": "VR"}
    url = f"{api_url}/v1/reports/delivery-performance"
    for token in (supervisor_token, oms_token):
        r = httpx.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["orders_delivered"] == 4
    assert httpx.get(url, params=params).status_code == 401
    bad = {**params, "to": params["from"]}
    r = httpx.get(url, params=bad, headers={"Authorization": f"Bearer {oms_token}"})
    assert r.status_code == 422
