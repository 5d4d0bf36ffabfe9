from __future__ import annotations

import psycopg
import pytest
from httpx import AsyncClient

from store.tracking import normalize
from tests.api.conftest import Tokens
from tests.api.factories import make_plan

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_create_trip_makes_orders_with_tracking_numbers_and_notifies(
    client: AsyncClient, tok: Tokens, database_url: str, db: psycopg.Connection
) -> None:
    listener = psycopg.connect(database_url, autocommit=True)
    listener.execute("LISTEN routewatch_trips")
    plan = make_plan(3)
    r = await client.post("/v1/trips", json=plan, headers=tok.header("oms"))
    assert r.status_code == 201, r.text
    body = r.json()
    trip_id = body["trip_id"]
    assert trip_id.startswith("T-20261122-") and body["replaced"] is False
    assert body["route_length_m"] == pytest.approx(2212, rel=0.01)
    numbers = [o["tracking_number"] for o in body["orders"]]
    assert len(numbers) == 3 and len(set(numbers)) == 3
    assert all(normalize(n) == n for n in numbers)
    assert [o["status"] for o in body["orders"]] == ["scheduled"] * 3
    notes = list(listener.notifies(timeout=2.0, stop_after=1))
    listener.close()
    assert [n.payload for n in notes] == [trip_id]
    stops = db.execute(
        "SELECT stop_id, route_m FROM stops WHERE trip_id = %s ORDER BY seq", (trip_id,)
    ).fetchall()
    assert [s[0] for s in stops] == ["S1", "S2", "S3"]
    assert stops[0][1] == pytest.approx(553, abs=15) and stops[2][1] == pytest.approx(1659, abs=15)

    db.execute(
        "INSERT INTO vehicle_state (vehicle_id, ts, lat, lon, trip_id, route_m, on_route, "
        "schedule_delay_s) VALUES (%s, '2026-11-22T08:12:00Z', -6.2, 106.81, %s, 1106, true, 90)",
        (plan["vehicle_id"], trip_id),
    )
    r = await client.get(f"/v1/trips/{trip_id}", headers=tok.header("supervisor"))
    assert r.status_code == 200, r.text
    live = r.json()
    assert live["progress_m"] == 1106 and live["progress_pct"] == pytest.approx(50.0, abs=0.5)
    assert live["on_route"] is True and live["schedule_delay_s"] == 90
    assert [s["order_status"] for s in live["stops"]] == ["scheduled"] * 3
    assert live["stops"][0]["window"]["start"] == "2026-11-22T08:05:00Z"
    assert live["plan"]["planned_start"] == plan["planned_start"]  # as the OMS sent it
    assert live["plan"]["trip_id"] == trip_id
    assert (await client.get("/v1/trips/nope", headers=tok.header("oms"))).status_code == 404


async def test_bad_plan_gets_one_422_naming_every_problem(client: AsyncClient, tok: Tokens) -> None:
    plan = make_plan(2)
    plan["vehicle_id"] = "bad id!"
    plan["stops"][1]["stop_id"] = "S1"
    plan["stops"][0]["planned_arrival"] = "2026-11-22T07:00:00Z"
    r = await client.post("/v1/trips", json=plan, headers=tok.header("oms"))
    assert r.status_code == 422
    msgs = [p["msg"] for p in r.json()["detail"]]
    assert any("vehicle_id" in m for m in msgs)
    assert any("used twice" in m for m in msgs)
    assert any("before planned_start" in m for m in msgs)
    assert len(msgs) >= 3

    far = make_plan(3)
    far["stops"][0]["location"] = [106.805, -6.21]  # ~1.1 km off the road
    far["stops"][2]["location"] = [106.815, -6.19]
    r = await client.post("/v1/trips", json=far, headers=tok.header("oms"))
    assert r.status_code == 422
    msgs = [p["msg"] for p in r.json()["detail"]]
    assert any("S1" in m and "from the route" in m for m in msgs)
    assert any("S3" in m and "from the route" in m for m in msgs)

    # Field errors and the plan-wide and geometric problems, all in one answer.
    mixed = make_plan(2)
    mixed["corridor_m"] = -5
    mixed["stops"][0]["radius_m"] = "wide"
    mixed["vehicle_id"] = "bad id!"
    mixed["stops"][1]["location"] = [106.815, -6.19]
    r = await client.post("/v1/trips", json=mixed, headers=tok.header("oms"))
    assert r.status_code == 422
    problems = r.json()["detail"]
    locs = [p["loc"] for p in problems]
    assert ["body", "corridor_m"] in locs and ["body", "stops", 0, "radius_m"] in locs
    assert sum("vehicle_id" in p["msg"] for p in problems) == 1
    assert any("S2" in p["msg"] and "from the route" in p["msg"] for p in problems)

    r = await client.post(
        "/v1/trips",
        content=b"{not json",
        headers={**tok.header("oms"), "content-type": "application/json"},
    )
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)


async def test_replace_and_cancel(client: AsyncClient, tok: Tokens, db: psycopg.Connection) -> None:
    plan = make_plan(3, trip_id="T-REPLACE-1", tag="rep")
    first = (await client.post("/v1/trips", json=plan, headers=tok.header("oms"))).json()
    kept = {o["order_id"]: o["tracking_number"] for o in first["orders"]}
    plan["stops"] = plan["stops"][:2]  # drop the third order
    r = await client.post("/v1/trips", json=plan, headers=tok.header("oms"))
    assert r.status_code == 201 and r.json()["replaced"] is True
    assert {o["order_id"]: o["tracking_number"] for o in r.json()["orders"]} == {
        k: v for k, v in kept.items() if not k.endswith("-3")
    }
    status: dict[str, str] = dict(db.execute("SELECT order_id, status FROM orders").fetchall())
    assert status == {"ORD-rep-1": "scheduled", "ORD-rep-2": "scheduled", "ORD-rep-3": "cancelled"}

    other = make_plan(1, tag="rep")  # ORD-rep-1 is live on T-REPLACE-1
    r = await client.post("/v1/trips", json=other, headers=tok.header("oms"))
    assert r.status_code == 409 and "ORD-rep-1" in r.text

    r = await client.post("/v1/trips/T-REPLACE-1/cancel", headers=tok.header("oms"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    status = dict(db.execute("SELECT order_id, status FROM orders").fetchall())
    assert set(status.values()) == {"cancelled"}
    hist = db.execute(
        "SELECT count(*) FROM order_status_history WHERE status = 'cancelled'"
    ).fetchone()
    assert hist == (3,)
    outbox = db.execute("SELECT count(*) FROM webhook_outbox").fetchone()
    assert outbox == (3,)  # one per cancellation
    r = await client.post("/v1/trips", json=plan, headers=tok.header("oms"))
    assert r.status_code == 409  # a cancelled trip cannot be re-planned
    # The cancelled orders can go out again on a new trip (second attempt).
    r = await client.post("/v1/trips", json=other, headers=tok.header("oms"))
    assert r.status_code == 201
    assert r.json()["orders"][0]["tracking_number"] == kept["ORD-rep-1"]
    r = await client.delete("/v1/trips/nope", headers=tok.header("oms"))
    assert r.status_code == 404


async def test_concurrent_creates_of_one_trip_give_one_201(
    client: AsyncClient, tok: Tokens
) -> None:
    import asyncio

    plan = make_plan(2, trip_id="T-RACE-1", tag="race")
    answers = await asyncio.gather(
        *(client.post("/v1/trips", json=plan, headers=tok.header("oms")) for _ in range(4))
    )
    codes = sorted(a.status_code for a in answers)
    # The first creates; the others either replace it in place (201) or lose the race
    # to the insert (409) — never a 500.
    assert codes[0] == 201 and set(codes) <= {201, 409}
    assert sum(not a.json().get("replaced", True) for a in answers) == 1
