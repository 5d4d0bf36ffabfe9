from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from httpx import AsyncClient

from api.main import create_app
from routewatch.settings import Settings
from tests.api.conftest import Tokens

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_healthz_ok_with_real_services(client: AsyncClient) -> None:
    r = await client.get("/healthz")
    body = r.json()
    assert r.status_code == 200, body
    assert body["status"] == "ok" and body["database"]["ok"] and body["broker"]["ok"]


async def test_healthz_shows_the_engine_workers(settings: Settings, db: psycopg.Connection) -> None:
    from httpx import ASGITransport

    partitions = 4000 + datetime.now(UTC).microsecond % 1000  # a partitioning of its own
    app = create_app(settings.model_copy(update={"nats_partitions": partitions}))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://rw.test") as c,
    ):
        assert "workers" not in (await c.get("/healthz")).json()  # no worker ever ran
        for p, owner in enumerate(["w1", "w2", "w1"]):
            db.execute(
                "INSERT INTO partition_owners (partitions, partition, owner, epoch) "
                "VALUES (%s, %s, %s, 1)",
                (partitions, p, owner),
            )
        workers = (await c.get("/healthz")).json()["workers"]
    assert workers["partitions"] == 3 and workers["workers"] == 2 and workers["last_move"]


async def test_healthz_503_when_broker_unreachable(settings: Settings) -> None:
    from httpx import ASGITransport

    app = create_app(settings.model_copy(update={"mqtt_url": "mqtt://127.0.0.1:1"}))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://rw.test") as c,
    ):
        r = await c.get("/healthz")
    assert r.status_code == 503
    assert r.json()["broker"]["ok"] is False and r.json()["database"]["ok"] is True


async def test_healthz_503_when_database_unreachable(settings: Settings) -> None:
    from httpx import ASGITransport

    app = create_app(
        settings.model_copy(
            update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1"}
        )
    )
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://rw.test") as c,
    ):
        r = await c.get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is False and body["broker"]["ok"] is True


async def test_vehicles_live_state_and_track(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    t0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    db.execute("INSERT INTO vehicles (vehicle_id) VALUES ('V-idle')")
    db.execute(
        "INSERT INTO vehicle_state (vehicle_id, ts, lat, lon, speed_kmh, trip_id, route_m, "
        "on_route, status) VALUES ('V-1', %s, -6.2, 106.8, 31.5, 'T-1', 120.5, true, 'moving')",
        (t0,),
    )
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO pings (vehicle_id, ts, lat, lon, speed_kmh) VALUES ('V-1', %s, %s, %s, 30)",
            [(t0 + timedelta(seconds=10 * i), -6.2 + i * 1e-4, 106.8) for i in range(5)],
        )
    r = await client.get("/v1/vehicles", headers=tok.header("supervisor"))
    assert r.status_code == 200
    by_id = {v["vehicle_id"]: v for v in r.json()}
    assert set(by_id) == {"V-1", "V-idle"}
    assert by_id["V-1"]["route_m"] == 120.5 and by_id["V-1"]["on_route"] is True
    assert by_id["V-1"]["ts"] == "2026-11-22T01:00:00Z"
    assert by_id["V-idle"]["ts"] is None

    q = {
        "from": "2026-11-22T01:00:00Z",
        "to": str(int((t0 + timedelta(seconds=35)).timestamp() * 1000)),
    }
    r = await client.get("/v1/vehicles/V-1/track", params=q, headers=tok.header("supervisor"))
    assert r.status_code == 200, r.text
    feature = r.json()["features"][0]
    assert feature["geometry"]["type"] == "LineString"
    assert len(feature["geometry"]["coordinates"]) == 4  # to is exclusive: 0,10,20,30 s
    assert feature["geometry"]["coordinates"][1] == [106.8, pytest.approx(-6.1999)]
    assert feature["properties"]["ts"][0] == "2026-11-22T01:00:00Z"
    r = await client.get(
        "/v1/vehicles/V-1/track", params={**q, "limit": 2}, headers=tok.header("supervisor")
    )
    assert r.json()["properties"]["truncated"] is True
    r = await client.get(
        "/v1/vehicles/V-1/track", params={"from": "yesterday"}, headers=tok.header("supervisor")
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "from"]
    r = await client.get("/v1/vehicles/nope/track", headers=tok.header("supervisor"))
    assert r.status_code == 404
