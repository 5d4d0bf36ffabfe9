"""The vehicle's position on the customer's tracking lookup: every visibility rule.

The scene is a trip dispatched through the API whose route passes *through* each stop
(the stops are route vertices), so a path that ran past another customer's stop would
hold that stop's exact coordinates. Order, stop, trip and vehicle states are then set in
the database as the engine would leave them.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from httpx import ASGITransport, AsyncClient

from api.main import create_app
from geo.geodesy import haversine_m
from routewatch.settings import Settings
from store.tracking import new_tracking_number
from tests.api.conftest import Tokens
from tests.api.factories import LAT, LON0, LON1, make_plan

pytestmark = pytest.mark.asyncio(loop_scope="session")

N_STOPS = 3


def _plan(tag: str) -> dict[str, Any]:
    """make_plan's road, bent through each of its three stops (one vertex per stop)."""
    plan = make_plan(N_STOPS, tag=tag)
    stops = [s["location"] for s in plan["stops"]]
    plan["route"]["coordinates"] = [[LON0, LAT], *stops, [LON1, LAT]]
    return plan


async def _dispatch(client: AsyncClient, tok: Tokens, tag: str) -> tuple[dict[str, Any], ...]:
    plan = _plan(tag)
    r = await client.post("/v1/trips", json=plan, headers=tok.header("oms"))
    assert r.status_code == 201, r.text
    return plan, r.json()


def _route_m(db: psycopg.Connection, trip_id: str) -> dict[str, float]:
    rows = db.execute("SELECT stop_id, route_m FROM stops WHERE trip_id = %s", (trip_id,))
    return {r[0]: float(r[1]) for r in rows}


def _scene(
    db: psycopg.Connection,
    trip: dict[str, Any],
    *,
    order_status: str = "out_for_delivery",
    stop_status: dict[str, str] | None = None,
    vehicle_m: float | None = 900.0,
    trip_status: str = "active",
    vehicle_trip: str | None = None,
) -> tuple[float, float]:
    """Orders, stops, trip and the vehicle's live row as the engine would have them; the
    vehicle at ``vehicle_m`` along the route (on the straight road). Returns its lon, lat."""
    tid = trip["trip_id"]
    db.execute("UPDATE orders SET status = %s WHERE trip_id = %s", (order_status, tid))
    db.execute("UPDATE trips SET status = %s WHERE trip_id = %s", (trip_status, tid))
    for stop_id, st in (stop_status or {}).items():
        db.execute(
            "UPDATE stops SET status = %s WHERE trip_id = %s AND stop_id = %s", (st, tid, stop_id)
        )
    x = 0.0 if vehicle_m is None else vehicle_m
    lon = LON0 + (LON1 - LON0) * x / trip["route_length_m"]
    db.execute(
        "INSERT INTO vehicle_state (vehicle_id, ts, lat, lon, heading_deg, trip_id, route_m,"
        " on_route) VALUES (%s, now() - interval '4 seconds', %s, %s, 90, %s, %s, true)"
        " ON CONFLICT (vehicle_id) DO UPDATE SET ts = EXCLUDED.ts, lat = EXCLUDED.lat,"
        " lon = EXCLUDED.lon, trip_id = EXCLUDED.trip_id, route_m = EXCLUDED.route_m",
        (trip["vehicle_id"], LAT + 0.00002, lon, vehicle_trip or tid, vehicle_m),
    )
    return lon, LAT + 0.00002


async def _track(client: AsyncClient, order: dict[str, Any]) -> dict[str, Any]:
    r = await client.get(f"/v1/track/{order['tracking_number']}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@asynccontextmanager
async def _client_with(settings: Settings, **update: object) -> AsyncIterator[AsyncClient]:
    app = create_app(settings.model_copy(update=update))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with AsyncClient(transport=transport, base_url="http://rw.test") as c:
            yield c


async def test_next_stop_sees_the_vehicle_and_the_path_to_its_stop_only(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    plan, trip = await _dispatch(client, tok, "pos1")
    s1, s2, s3 = trip["orders"]
    lon, lat = _scene(db, trip, stop_status={"S1": "departed"}, vehicle_m=700.0)
    route_m = _route_m(db, trip["trip_id"])

    body = await _track(client, s2)  # the next stop: 1 stop away
    pos = body["position"]
    assert pos is not None
    assert (pos["lon"], pos["lat"]) == (round(lon, 6), round(lat, 6))
    assert 3.9 <= pos["age_s"] < 60 and pos["heading_deg"] == 90
    assert pos["ts"].endswith("Z")
    assert pos["destination"] == {"lon": plan["stops"][1]["location"][0], "lat": LAT + 0.0001}
    assert pos["remaining_m"] == pytest.approx(route_m["S2"] - 700.0, abs=0.1)
    coords = pos["path"]["coordinates"]
    assert pos["path"]["type"] == "LineString" and len(coords) >= 2
    # It starts where the vehicle is matched on the route and ends at this stop.
    assert haversine_m(coords[0][1], coords[0][0], LAT + 0.0001, lon) < 5  # S1 -> S2 leg
    end = plan["stops"][1]["location"]
    assert haversine_m(coords[-1][1], coords[-1][0], end[1], end[0]) < 1
    length = sum(haversine_m(a[1], a[0], b[1], b[0]) for a, b in itertools.pairwise(coords))
    assert length == pytest.approx(pos["remaining_m"], rel=0.01)
    # Nothing of the other stops, the other orders, the vehicle or the route beyond.
    text = (await client.get(f"/v1/track/{s2['tracking_number']}")).text
    for other in (plan["stops"][0], plan["stops"][2]):
        assert str(other["location"][0]) not in text
        for c in coords:
            assert haversine_m(c[1], c[0], other["location"][1], other["location"][0]) > 75
    for o in (s1, s3):
        assert o["order_id"] not in text and o["tracking_number"] not in text
    assert plan["vehicle_id"] not in text and trip["trip_id"] not in text
    assert max(c[0] for c in coords) <= end[0] + 1e-9  # not a metre past this stop

    # The stop after it is 2 stops away: status and ETA only.
    far = await _track(client, s3)
    assert far["position"] is None and far["status"] == "out_for_delivery"


async def test_a_vehicle_still_at_the_previous_stop_is_not_shown(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    _, trip = await _dispatch(client, tok, "pos2")
    s1, s2, _ = trip["orders"]
    _scene(db, trip, stop_status={"S1": "arrived"}, vehicle_m=550.0)
    assert (await _track(client, s2))["position"] is None  # at another customer's door
    assert (await _track(client, s1))["position"] is not None  # that customer sees it
    _scene(db, trip, stop_status={"S1": "departed"}, vehicle_m=650.0)
    assert (await _track(client, s2))["position"] is not None


async def test_not_yet_out_for_delivery_shows_no_position(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    _, trip = await _dispatch(client, tok, "pos3")
    s1 = trip["orders"][0]
    _scene(db, trip, order_status="scheduled", trip_status="planned", vehicle_m=10.0)
    body = await _track(client, s1)
    assert body["status"] == "scheduled" and body["position"] is None
    # Even with the trip active, a scheduled order shows none.
    _scene(db, trip, order_status="scheduled", vehicle_m=10.0)
    assert (await _track(client, s1))["position"] is None
    # The vehicle's live row belongs to another trip: none either.
    _scene(db, trip, vehicle_m=10.0, vehicle_trip="T-other")
    assert (await _track(client, s1))["position"] is None
    _scene(db, trip, vehicle_m=10.0)
    assert (await _track(client, s1))["position"] is not None


@pytest.mark.parametrize("final", ["delivered", "failed", "cancelled"])
async def test_after_delivery_there_is_no_position(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection, final: str
) -> None:
    _, trip = await _dispatch(client, tok, f"pos4{final[:3]}")
    s1 = trip["orders"][0]
    _scene(db, trip, vehicle_m=500.0)
    assert (await _track(client, s1))["position"] is not None
    _scene(db, trip, order_status=final, stop_status={"S1": "arrived"}, vehicle_m=550.0)
    body = await _track(client, s1)
    assert body["status"] == final and "position" in body and body["position"] is None


async def test_stops_away_setting(
    settings: Settings, client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    plan, trip = await _dispatch(client, tok, "pos5")
    s1, s2, s3 = trip["orders"]
    _scene(db, trip, vehicle_m=200.0)  # before S1: S1 1 away, S2 2, S3 3
    async with _client_with(settings, track_position_stops_away=2) as two:
        assert (await _track(two, s1))["position"] is not None
        pos = (await _track(two, s2))["position"]
        assert pos is not None  # N = 2: two stops away is shown
        assert (await _track(two, s3))["position"] is None  # N + 1
        # The path to S2 runs past S1, a vertex of the route: that vertex is left out.
        s1_lon, s1_lat = plan["stops"][0]["location"]
        for lon, lat in pos["path"]["coordinates"]:
            assert haversine_m(lat, lon, s1_lat, s1_lon) > 75
        assert [s1_lon, s1_lat] not in pos["path"]["coordinates"]
    async with _client_with(settings, track_position_stops_away=0) as never:
        assert (await _track(never, s1))["position"] is None
    assert (await _track(client, s2))["position"] is None  # default 1


async def test_vehicle_past_its_stop_on_the_route_has_no_path(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    _, trip = await _dispatch(client, tok, "pos6")
    s1 = trip["orders"][0]
    route_m = _route_m(db, trip["trip_id"])
    _scene(db, trip, order_status="arriving", vehicle_m=route_m["S1"] + 20)
    pos = (await _track(client, s1))["position"]
    assert pos is not None and pos["path"] is None and pos["remaining_m"] == 0
    _scene(db, trip, vehicle_m=None)  # not matched on the route (yet)
    pos = (await _track(client, s1))["position"]
    assert pos is not None and pos["path"] is None and pos["remaining_m"] is None


async def test_unknown_and_expired_numbers_get_the_same_404(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    _, trip = await _dispatch(client, tok, "pos7")
    s1, s2, _ = trip["orders"]
    db.execute(
        "UPDATE orders SET status = 'delivered', updated_at = now() - interval '29 days' "
        "WHERE order_id = %s",
        (s1["order_id"],),
    )
    assert (await client.get(f"/v1/track/{s1['tracking_number']}")).status_code == 200
    db.execute(
        "UPDATE orders SET updated_at = now() - interval '31 days' WHERE order_id = ANY(%s)",
        ([s1["order_id"], s2["order_id"]],),
    )
    expired = await client.get(f"/v1/track/{s1['tracking_number']}")
    unknown = await client.get(f"/v1/track/{new_tracking_number()}")
    assert expired.status_code == unknown.status_code == 404
    assert expired.content == unknown.content
    # An order still on its way never expires, however long it has waited.
    assert (await client.get(f"/v1/track/{s2['tracking_number']}")).status_code == 200


async def test_a_new_plan_gives_the_new_path(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    plan, trip = await _dispatch(client, tok, "pos8")
    s1 = trip["orders"][0]
    _scene(db, trip, vehicle_m=100.0)
    before = (await _track(client, s1))["position"]["path"]["coordinates"]
    assert max(lat for _, lat in before) < LAT + 0.0002
    # The OMS re-plans the trip in place: a detour ~200 m north on the way to S1.
    plan["trip_id"] = trip["trip_id"]
    bend = [(LON0 + plan["stops"][0]["location"][0]) / 2, LAT + 0.002]
    plan["route"]["coordinates"].insert(1, bend)
    r = await client.post("/v1/trips", json=plan, headers=tok.header("oms"))
    assert r.status_code == 201 and r.json()["replaced"], r.text
    after = (await _track(client, s1))["position"]["path"]["coordinates"]
    assert [round(c, 6) for c in bend] in after
