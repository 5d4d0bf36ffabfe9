"""Drivers (issue #17): the registry API, trip plans naming a driver, and tokens bound to
a driver, which deliver only that driver's orders."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from httpx import AsyncClient
from psycopg import AsyncConnection

from store import tokens
from tests.api.conftest import Tokens
from tests.api.factories import make_plan
from tests.api.test_pod import _pod

aio = pytest.mark.asyncio(loop_scope="session")


@aio
async def test_driver_registry_create_list_get_update_deactivate(
    client: AsyncClient, tok: Tokens
) -> None:
    oms, sup = tok.header("oms"), tok.header("supervisor")
    r = await client.post("/v1/drivers", json={"driver_id": "D-ana", "name": "Ana"}, headers=oms)
    assert r.status_code == 201, r.text
    assert r.json()["active"] is True and r.json()["name"] == "Ana"
    r = await client.post("/v1/drivers", json={"driver_id": "D-ana"}, headers=sup)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    r = await client.post("/v1/drivers", json={"driver_id": "D-budi"}, headers=sup)
    assert r.status_code == 201 and r.json()["name"] is None
    for bad in ("", "has space", "x" * 65, "slash/id", "tab\tid"):
        r = await client.post("/v1/drivers", json={"driver_id": bad}, headers=oms)
        assert r.status_code == 422, bad
    r = await client.get("/v1/drivers", headers=sup)
    assert [d["driver_id"] for d in r.json()] == ["D-ana", "D-budi"]

    r = await client.patch("/v1/drivers/D-budi", json={"name": "Budi S."}, headers=oms)
    assert r.status_code == 200 and r.json()["name"] == "Budi S." and r.json()["active"]
    r = await client.patch("/v1/drivers/D-budi", json={"active": None}, headers=oms)
    assert r.status_code == 422
    r = await client.delete("/v1/drivers/D-budi", headers=sup)
    assert r.status_code == 200 and r.json()["active"] is False
    assert r.json()["name"] == "Budi S."  # a soft delete
    r = await client.get("/v1/drivers", params={"active": "true"}, headers=sup)
    assert [d["driver_id"] for d in r.json()] == ["D-ana"]
    r = await client.get("/v1/drivers", params={"active": "false"}, headers=sup)
    assert [d["driver_id"] for d in r.json()] == ["D-budi"]
    r = await client.patch("/v1/drivers/D-budi", json={"active": True}, headers=sup)
    assert r.json()["active"] is True
    r = await client.get("/v1/drivers/D-ana", headers=oms)
    assert r.status_code == 200 and r.json()["driver_id"] == "D-ana"
    for method in ("get", "patch", "delete"):
        kw: dict[str, Any] = {"json": {"name": "x"}} if method == "patch" else {}
        r = await client.request(method.upper(), "/v1/drivers/D-nobody", headers=oms, **kw)
        assert r.status_code == 404, method
    r = await client.get("/v1/drivers", headers=tok.header("driver"))
    assert r.status_code == 403


@aio
async def test_plans_name_a_driver_registered_on_first_use(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    oms = tok.header("oms")
    plan = make_plan(1, tag="drv1") | {"driver_id": "D-new", "driver_name": "Citra"}
    r = await client.post("/v1/trips", json=plan, headers=oms)
    assert r.status_code == 201, r.text
    trip = r.json()
    assert trip["driver_id"] == "D-new"
    r = await client.get("/v1/drivers/D-new", headers=oms)
    assert r.json()["name"] == "Citra" and r.json()["active"]
    r = await client.get(f"/v1/trips/{trip['trip_id']}", headers=oms)
    assert (r.json()["driver_id"], r.json()["driver_name"]) == ("D-new", "Citra")

    # A known driver keeps the name the registry has; the plan's name fills only a gap.
    other = make_plan(1, tag="drv2") | {"driver_id": "D-new", "driver_name": "Someone else"}
    assert (await client.post("/v1/trips", json=other, headers=oms)).status_code == 201
    assert (await client.get("/v1/drivers/D-new", headers=oms)).json()["name"] == "Citra"

    # Re-planning may change the driver, or take it away.
    plan["trip_id"] = trip["trip_id"]
    r = await client.post("/v1/trips", json=plan | {"driver_id": "D-swap"}, headers=oms)
    assert r.status_code == 201 and r.json()["replaced"] and r.json()["driver_id"] == "D-swap"
    bare = {k: v for k, v in plan.items() if k not in ("driver_id", "driver_name")}
    r = await client.post("/v1/trips", json=bare, headers=oms)
    assert r.status_code == 201 and r.json()["driver_id"] is None
    assert db.execute(
        "SELECT driver_id FROM trips WHERE trip_id = %s", (trip["trip_id"],)
    ).fetchone() == (None,)

    # A deactivated driver cannot be dispatched; the answer says why.
    await client.delete("/v1/drivers/D-new", headers=oms)
    r = await client.post(
        "/v1/trips", json=make_plan(1, tag="drv3") | {"driver_id": "D-new"}, headers=oms
    )
    assert r.status_code == 409 and r.json()["detail"] == ["driver D-new is deactivated"]

    # Bad driver fields are plan problems like any other (one 422 naming each).
    bad = make_plan(1, tag="drv4") | {"driver_id": "no spaces allowed", "driver_name": "\x07"}
    r = await client.post("/v1/trips", json=bad, headers=oms)
    assert r.status_code == 422
    assert {tuple(p["loc"]) for p in r.json()["detail"]} >= {("body", "driver_name")}
    assert any("driver_id must be" in p["msg"] for p in r.json()["detail"])
    r = await client.post(
        "/v1/trips", json=make_plan(1, tag="drv5") | {"driver_name": "Dewi"}, headers=oms
    )
    assert r.status_code == 422
    assert any("driver_name needs a driver_id" in p["msg"] for p in r.json()["detail"])


async def _bound_token(aconn: AsyncConnection[Any], driver_id: str) -> dict[str, str]:
    _, token = await tokens.create_token(aconn, ["driver"], f"app of {driver_id}", driver_id)
    return {"Authorization": f"Bearer {token}"}


@aio
async def test_a_bound_token_delivers_only_its_drivers_orders(
    client: AsyncClient, tok: Tokens, aconn: AsyncConnection[Any]
) -> None:
    oms = tok.header("oms")
    orders: dict[str, str] = {}
    trips: dict[str, str] = {}
    for tag, driver in (("bind-e", "D-eka"), ("bind-f", "D-fajar"), ("bind-none", None)):
        plan = make_plan(1, tag=tag)
        if driver:
            plan["driver_id"] = driver
        r = await client.post("/v1/trips", json=plan, headers=oms)
        assert r.status_code == 201, r.text
        orders[tag] = r.json()["orders"][0]["order_id"]
        trips[tag] = r.json()["trip_id"]
    loc = make_plan(1)["stops"][0]["location"]
    eka = await _bound_token(aconn, "D-eka")

    r = await client.post(f"/v1/orders/{orders['bind-f']}/pod", json=_pod(*loc), headers=eka)
    assert r.status_code == 403
    assert r.json()["detail"] == (
        f"this token is bound to driver D-eka; order {orders['bind-f']} is on trip "
        f"{trips['bind-f']} of driver D-fajar"
    )
    r = await client.post(f"/v1/orders/{orders['bind-none']}/pod", json=_pod(*loc), headers=eka)
    assert r.status_code == 403 and r.json()["detail"].endswith("of no driver")
    r = await client.post("/v1/orders/NOPE/pod", json=_pod(*loc), headers=eka)
    assert r.status_code == 404
    r = await client.post(f"/v1/orders/{orders['bind-e']}/pod", json=_pod(*loc), headers=eka)
    assert r.status_code == 201, r.text
    r = await client.get(f"/v1/orders/{orders['bind-e']}", headers=oms)
    assert r.json()["status"] == "delivered" and r.json()["driver_id"] == "D-eka"

    # An unbound driver token still delivers any order (as before drivers existed).
    r = await client.post(
        f"/v1/orders/{orders['bind-none']}/pod", json=_pod(*loc), headers=tok.header("driver")
    )
    assert r.status_code == 201

    # Once the driver is deactivated, their tokens deliver nothing.
    fajar = await _bound_token(aconn, "D-fajar")
    await client.delete("/v1/drivers/D-fajar", headers=oms)
    r = await client.post(f"/v1/orders/{orders['bind-f']}/pod", json=_pod(*loc), headers=fajar)
    assert r.status_code == 403 and "deactivated" in r.json()["detail"]


@aio
async def test_binding_needs_the_driver_role_and_an_active_registered_driver(
    aconn: AsyncConnection[Any], client: AsyncClient, tok: Tokens
) -> None:
    with pytest.raises(tokens.TokenRefused, match="register it first"):
        await tokens.create_token(aconn, ["driver"], "x", "D-ghost")
    await client.post("/v1/drivers", json={"driver_id": "D-gita"}, headers=tok.header("oms"))
    with pytest.raises(tokens.TokenRefused, match="only a token with the driver role"):
        await tokens.create_token(aconn, ["supervisor"], "x", "D-gita")
    await client.delete("/v1/drivers/D-gita", headers=tok.header("oms"))
    with pytest.raises(tokens.TokenRefused, match="deactivated"):
        await tokens.create_token(aconn, ["driver"], "x", "D-gita")
