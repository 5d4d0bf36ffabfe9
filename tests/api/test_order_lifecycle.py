"""store.orders.apply_events driven by constructed engine events and snapshots."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from httpx import AsyncClient
from psycopg import AsyncConnection

from compliance.events import Event, EventType
from compliance.types import StopSnapshot, TripSnapshot
from routewatch.settings import Settings
from store.orders import apply_events
from tests.api.conftest import Tokens
from tests.api.factories import make_plan

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = 1_795_852_800_000  # 2026-11-22T08:00:00Z
MIN = 60_000


async def _trip(client: AsyncClient, tok: Tokens, tag: str) -> dict[str, Any]:
    r = await client.post("/v1/trips", json=make_plan(3, tag=tag), headers=tok.header("oms"))
    assert r.status_code == 201, r.text
    return r.json()


def _event(trip: dict[str, Any], kind: EventType, ts_ms: int, **details: Any) -> Event:
    return Event(kind, trip["trip_id"], trip["vehicle_id"], ts_ms, -6.2, 106.81, 0.0, details)


def _snap(
    trip: dict[str, Any],
    ts_ms: int,
    etas_min: list[float | None],
    statuses: list[str] | None = None,
    status: str = "active",
) -> TripSnapshot:
    statuses = statuses or ["pending"] * len(etas_min)
    stops = [
        StopSnapshot(
            f"S{i + 1}",
            f"{trip['orders'][i]['order_id']}",
            st,
            None if eta is None else T0 + int(eta * MIN),
            None if eta is None else T0 + int((eta - 3) * MIN),
            None if eta is None else T0 + int((eta + 3) * MIN),
        )
        for i, (eta, st) in enumerate(zip(etas_min, statuses, strict=True))
    ]
    return TripSnapshot(
        trip["trip_id"],
        trip["vehicle_id"],
        ts_ms,
        -6.2,
        106.81,
        30.0,
        100.0,
        3.0,
        True,
        5.0,
        0.0,
        status,
        stops,
    )


def _statuses(db: psycopg.Connection, trip_id: str) -> list[str]:
    rows = db.execute(
        "SELECT o.status FROM orders o JOIN stops s USING (trip_id, stop_id) "
        "WHERE o.trip_id = %s ORDER BY s.seq",
        (trip_id,),
    ).fetchall()
    return [r[0] for r in rows]


def _count(db: psycopg.Connection, sql: str, *args: Any) -> int:
    row = db.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


async def test_lifecycle_from_events_and_snapshots(
    client: AsyncClient,
    tok: Tokens,
    aconn: AsyncConnection[Any],
    db: psycopg.Connection,
    settings: Settings,
) -> None:
    trip = await _trip(client, tok, "life")
    tid = trip["trip_id"]
    started = _event(trip, EventType.TRIP_STARTED, T0)
    snap = _snap(trip, T0, [10, 20, 30])
    await apply_events(aconn, [started], [snap], settings=settings)
    # S1 is next and S2 one stop away; S3 (30 min) is two away, beyond the 15 min horizon.
    assert _statuses(db, tid) == ["arriving", "arriving", "out_for_delivery"]
    assert _count(db, "SELECT count(*) FROM webhook_outbox") == 5
    hist = db.execute(
        "SELECT status, event_id FROM order_status_history WHERE order_id = %s ORDER BY id",
        (trip["orders"][1]["order_id"],),
    ).fetchall()
    assert [h[0] for h in hist] == ["scheduled", "out_for_delivery", "arriving"]
    assert str(hist[1][1]) == started.event_id
    eta = db.execute(
        "SELECT eta FROM orders WHERE order_id = %s", (trip["orders"][2]["order_id"],)
    ).fetchone()
    assert eta is not None and eta[0].timestamp() * 1000 == T0 + 30 * MIN

    # The same batch again (at-least-once delivery) changes nothing.
    await apply_events(aconn, [started], [snap], settings=settings)
    assert _count(db, "SELECT count(*) FROM webhook_outbox") == 5
    assert _count(db, "SELECT count(*) FROM order_status_history") == 3 + 5

    # ETA moves: S2 by 10 min (> 300 s threshold) notifies; S3 by 2 min does not.
    await apply_events(aconn, [], [_snap(trip, T0 + MIN, [10, 30, 32])], settings=settings)
    kinds = db.execute("SELECT order_id, kind FROM webhook_outbox WHERE kind = 'eta'").fetchall()
    assert kinds == [(trip["orders"][1]["order_id"], "eta")]

    # Two stops away but due within the 15 min horizon: arriving too.
    await apply_events(aconn, [], [_snap(trip, T0 + 2 * MIN, [10, 11, 14])], settings=settings)
    assert _statuses(db, tid) == ["arriving", "arriving", "arriving"]
    reason = db.execute(
        "SELECT reason FROM order_status_history WHERE order_id = %s ORDER BY id DESC LIMIT 1",
        (trip["orders"][2]["order_id"],),
    ).fetchone()
    assert reason == ("ETA within 900 s",)

    # S1 arrived and departed with no POD -> failed; S2 skipped -> failed; S3 reached
    # the horizon -> arriving, then the trip completes without it -> failed.
    s1 = {"stop_id": "S1", "order_id": trip["orders"][0]["order_id"]}
    await apply_events(
        aconn,
        [
            _event(trip, EventType.STOP_ARRIVED, T0 + 9 * MIN, **s1),
            _event(trip, EventType.STOP_DEPARTED, T0 + 12 * MIN, **s1),
        ],
        [_snap(trip, T0 + 12 * MIN, [None, 30, 25], ["departed", "skipped", "pending"])],
        settings=settings,
    )
    assert _statuses(db, tid) == ["failed", "failed", "arriving"]
    await apply_events(
        aconn,
        [_event(trip, EventType.TRIP_COMPLETED, T0 + 40 * MIN)],
        [
            _snap(
                trip,
                T0 + 40 * MIN,
                [None, None, None],
                ["departed", "skipped", "skipped"],
                status="completed",
            )
        ],
        settings=settings,
    )
    assert _statuses(db, tid) == ["failed", "failed", "failed"]
    reasons = [
        r[0]
        for r in db.execute(
            "SELECT reason FROM order_status_history WHERE status = 'failed' ORDER BY id"
        ).fetchall()
    ]
    assert reasons == [
        "departed without proof of delivery",
        "stop skipped",
        "trip completed without delivery",
    ]


async def test_arrival_and_departure_can_count_as_delivered(
    client: AsyncClient,
    tok: Tokens,
    aconn: AsyncConnection[Any],
    db: psycopg.Connection,
    settings: Settings,
) -> None:
    trip = await _trip(client, tok, "dep")
    rules = settings.model_copy(update={"deliver_on_departure": True})
    s1 = {"stop_id": "S1", "order_id": trip["orders"][0]["order_id"]}
    await apply_events(
        aconn,
        [
            _event(trip, EventType.TRIP_STARTED, T0),
            _event(trip, EventType.STOP_ARRIVED, T0 + 9 * MIN, **s1),
            _event(trip, EventType.STOP_DEPARTED, T0 + 12 * MIN, **s1),
        ],
        [],
        settings=rules,
    )
    assert _statuses(db, trip["trip_id"]) == ["delivered", "out_for_delivery", "out_for_delivery"]
    # A cancelled trip cancels what is still open, and delivered stays delivered.
    r = await client.delete(f"/v1/trips/{trip['trip_id']}", headers=tok.header("oms"))
    assert r.status_code == 200
    assert _statuses(db, trip["trip_id"]) == ["delivered", "cancelled", "cancelled"]
