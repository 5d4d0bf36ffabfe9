"""Customer tracking lookup: only their own shipment, same 404s, rate limited."""

from __future__ import annotations

import psycopg
import pytest
from httpx import ASGITransport, AsyncClient

from api.main import create_app
from routewatch.settings import Settings
from store.tracking import new_tracking_number
from tests.api.conftest import Tokens
from tests.api.factories import make_plan

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_lookup_shows_only_the_customers_shipment(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    plan = make_plan(3, tag="trk")
    trip = (await client.post("/v1/trips", json=plan, headers=tok.header("oms"))).json()
    mine = trip["orders"][2]
    db.execute(
        "UPDATE orders SET status = 'out_for_delivery', eta = '2026-11-22T08:31:00Z', "
        "eta_low = '2026-11-22T08:27:00Z', eta_high = '2026-11-22T08:36:00Z' "
        "WHERE trip_id = %s",
        (trip["trip_id"],),
    )
    db.execute(
        "UPDATE stops SET status = 'departed' WHERE trip_id = %s AND stop_id = 'S1'",
        (trip["trip_id"],),
    )
    r = await client.get(f"/v1/track/{mine['tracking_number'].lower().replace('-', '')}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "tracking_number",
        "status",
        "eta",
        "eta_window",
        "planned_window",
        "stops_before",
        "last_update",
        "timeline",
        "pod",
        "position",
    }
    assert body["status"] == "out_for_delivery" and body["stops_before"] == 1
    assert body["position"] is None  # no live vehicle on the trip
    assert body["eta"] == "2026-11-22T08:31:00Z"
    assert body["eta_window"] == {"start": "2026-11-22T08:27:00Z", "end": "2026-11-22T08:36:00Z"}
    assert body["planned_window"]["start"] == "2026-11-22T08:25:00Z"
    assert body["timeline"][0]["status"] == "scheduled" and "reason" not in body["timeline"][0]
    text = r.text
    for other in trip["orders"][:2]:
        assert other["order_id"] not in text and other["tracking_number"] not in text
    assert mine["order_id"] not in text and trip["trip_id"] not in text
    assert plan["vehicle_id"] not in text
    for stop in plan["stops"]:
        assert f"{stop['location'][0]}" not in text


async def test_unknown_and_malformed_numbers_get_the_same_404(client: AsyncClient) -> None:
    valid_unknown = new_tracking_number()
    bad_check = valid_unknown[:-1] + ("0" if valid_unknown[-1] != "0" else "1")
    answers = [
        await client.get(f"/v1/track/{n}")
        for n in (valid_unknown, bad_check, "garbage", "x" * 300, "%00';--")
    ]
    assert {a.status_code for a in answers} == {404}
    assert len({a.content for a in answers}) == 1


async def test_lookups_are_rate_limited_per_client(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"track_burst": 3, "track_rate_per_s": 0.5}))
    async with app.router.lifespan_context(app):
        transports = [
            ASGITransport(app=app, client=(ip, 1234)) for ip in ("198.51.100.1", "198.51.100.2")
        ]
        async with (
            AsyncClient(transport=transports[0], base_url="http://rw.test") as a,
            AsyncClient(transport=transports[1], base_url="http://rw.test") as b,
        ):
            codes = [(await a.get("/v1/track/whatever")).status_code for _ in range(4)]
            assert codes == [404, 404, 404, 429]
            limited = await a.get("/v1/track/whatever")
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert (await b.get("/v1/track/whatever")).status_code == 404  # other client


async def test_tracking_page_is_served(client: AsyncClient) -> None:
    for path in ("/track", "/track/ABCD-EFGH", "/track?n=ABCD"):
        r = await client.get(path)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "/static/track/track.js" in r.text
        # Nothing but routewatch: no third party learns who tracks what (the number is
        # in the path, so no Referer either).
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "img-src 'self' data:;" in csp
        assert "connect-src 'self'" in csp and "script-src 'self';" in csp
        assert r.headers["referrer-policy"] == "no-referrer"
    script = await client.get("/static/track/track.js")
    assert script.status_code == 200 and "/v1/track/" in script.text
    assert (await client.get("/track/config")).json() == {
        "tile_url": None,
        "tile_attribution": "© OpenStreetMap contributors",
    }


async def test_a_configured_tile_server_is_the_only_other_origin(settings: Settings) -> None:
    tiles = "https://{s}.tiles.example.net:8443/osm/{z}/{x}/{y}.png"
    app = create_app(settings.model_copy(update={"track_tile_url": tiles}))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://rw.test") as c,
    ):
        csp = (await c.get("/track/ABCD")).headers["content-security-policy"]
        assert "img-src 'self' data: https://*.tiles.example.net:8443;" in csp
        assert (await c.get("/track/config")).json()["tile_url"] == tiles
