"""The customer's live map in a real browser on a phone, fed through the real pipeline.

A tracker publishes fixes over the real broker to the live engine, which matches them,
writes PostgreSQL, moves stops and orders; the API runs under uvicorn and headless
Chromium (phone viewport, touch) shows ``/track/{number}`` for the *second* stop's
order. The test checks what the customer sees: status and ETA only while the vehicle
has another delivery to make first; the map once that stop is left, the vehicle marker
moving along as the fixes come in; no map any more once delivered. It also checks that
the page fetched nothing from anywhere but routewatch. Screenshots go to
``test-artifacts/track-*.png``.

Fixes carry ``seq`` (events need not wait for the reorder allowance) and the plan asks
for a trip snapshot every 2 s, so the order and stop states follow within seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from httpx import AsyncClient
from psycopg.rows import dict_row

from api.main import create_app
from store import tokens
from tests.api.factories import LAT, LON0, LON1, make_plan
from tests.api.live_server import ThreadServer
from tests.api.test_pod import _pod
from tests.ingest.live_helpers import engine, make_settings, publisher

CHROMIUM = Path(os.environ.get("ROUTEWATCH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PHONE = {"width": 390, "height": 844}

async_api = pytest.importorskip("playwright.async_api")
pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.slow,  # ~1.5 min of real-time driving
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]

ROAD_M = 2213.0  # LON0 -> LON1 at 6.2° S
STOPS_M = (300.0, 1900.0)
DWELL_FIXES = 40  # 20 s at stop 1: the page, polling every 15 s, sees the wait
STEP_M, STEP_S = 15.0, 0.5  # 108 km/h, two fixes a second


def _lon(x_m: float) -> float:
    return LON0 + (LON1 - LON0) * x_m / ROAD_M


def _iso(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, tz=UTC).isoformat().replace("+00:00", "Z")


def _plan(vid: str) -> dict[str, Any]:
    now = time.time()
    plan = make_plan(2, vehicle_id=vid, trip_id=f"T-{vid}", tag=vid)
    plan["planned_start"] = _iso(now)
    plan["thresholds"] = {"snapshot_interval_s": 2}
    for k, (stop, x_m) in enumerate(zip(plan["stops"], STOPS_M, strict=True)):
        stop["location"] = [_lon(x_m), LAT + 0.0001]
        stop["planned_arrival"] = _iso(now + 30 + 40 * k)
        stop["window"] = {"start": _iso(now), "end": _iso(now + 1800)}
    return plan


def _script() -> list[tuple[float, float]]:
    """(x_m, speed_kmh) per fix: to stop 1, 20 s there, on to stop 2 (then stay)."""
    fixes: list[tuple[float, float]] = []
    x_m = 0.0
    for stop_m in STOPS_M:
        while x_m < stop_m - STEP_M:
            fixes.append((x_m, STEP_M / STEP_S * 3.6))
            x_m += STEP_M
        fixes += [(stop_m, 0.0)] * DWELL_FIXES
        x_m = stop_m + STEP_M
    return fixes


async def test_the_customer_watches_the_vehicle_come_and_the_map_go(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    vid = f"trk{uuid.uuid4().hex[:6]}"
    settings = make_settings(database_url, mqtt_url, track_burst=1000)
    app = create_app(settings)
    plan = _plan(vid)
    seq = iter(range(1, 1_000_000))
    ARTIFACTS.mkdir(exist_ok=True)

    async with publisher(mqtt_url) as pub, engine(settings, pub):

        async def send(x_m: float, speed_kmh: float, north: float = 0.0) -> None:
            fix = {
                "ts": int(time.time() * 1000),
                "lon": _lon(x_m),
                "lat": LAT + north,
                "speed": speed_kmh,
                "heading": 90.0,
                "accuracy": 5.0,
                "seq": next(seq),
            }
            await pub.publish(f"fleet/{vid}/ping", orjson.dumps(fix), qos=1)

        async def drive() -> None:
            for x_m, kmh in _script():
                await send(x_m, kmh, 0.0001 if kmh == 0 else 0.0)
                await asyncio.sleep(STEP_S)
            while True:  # stay at stop 2
                await send(STOPS_M[1], 0.0, 0.0001)
                await asyncio.sleep(STEP_S)

        with ThreadServer(app, "uvicorn-track") as server:
            async with AsyncClient(base_url=server.url) as api:
                async with await psycopg.AsyncConnection.connect(
                    database_url, autocommit=True, row_factory=dict_row
                ) as conn:
                    _, oms_token = await tokens.create_token(conn, ["oms"], "track oms")
                    _, driver_token = await tokens.create_token(conn, ["driver"], "track driver")
                r = await api.post(
                    "/v1/trips", json=plan, headers={"Authorization": f"Bearer {oms_token}"}
                )
                assert r.status_code == 201, r.text
                mine = r.json()["orders"][1]

                async with async_api.async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path=str(CHROMIUM), args=BROWSER_ARGS
                    )
                    try:
                        context = await browser.new_context(
                            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
                        )
                        page = await context.new_page()
                        errors: list[str] = []
                        asked: list[str] = []
                        page.on("pageerror", lambda exc: errors.append(str(exc)))
                        page.on("request", lambda req: asked.append(req.url))
                        await page.goto(f"{server.url}/track/{mine['tracking_number']}")
                        await page.wait_for_selector(".status", timeout=10_000)
                        assert await page.locator(".status").inner_text() == "Scheduled"
                        assert await page.locator("#map").count() == 0

                        # The engine learns the trip by NOTIFY: park until a fix is matched.
                        deadline = time.monotonic() + 15
                        while not db.execute(
                            "SELECT 1 FROM pings WHERE vehicle_id = %s AND trip_id IS NOT NULL",
                            (vid,),
                        ).fetchone():
                            assert time.monotonic() < deadline, "the engine never took the trip"
                            await send(0.0, 0.0)
                            await asyncio.sleep(0.3)
                        feeder = asyncio.create_task(drive(), name="track-drive")
                        try:
                            await _watch(page, api, driver_token, mine, plan)
                        finally:
                            feeder.cancel()
                        assert not errors, errors
                        foreign = [u for u in asked if not u.startswith(server.url)]
                        assert not foreign, foreign  # no tiles, fonts or scripts from elsewhere
                    finally:
                        await browser.close()


async def _watch(
    page: Any, api: AsyncClient, driver_token: str, mine: dict[str, Any], plan: dict[str, Any]
) -> None:
    # On its way, but stop 1 comes first: status and ETA, no map.
    await page.wait_for_selector("[data-testid=map-hint]", timeout=30_000)
    assert await page.locator("#map").count() == 0
    await page.screenshot(path=str(ARTIFACTS / "track-1-out-for-delivery.png"), full_page=True)

    # Stop 1 left: the map, with the vehicle, its path and this address.
    vehicle = page.locator("#map [data-testid=vehicle]")
    await vehicle.wait_for(timeout=45_000)
    assert await page.locator("#map [data-testid=destination]").count() == 1
    assert await page.locator("#map [data-testid=path]").get_attribute("d")
    assert "away" in await page.locator("#map .chip").inner_text()
    first_lon = float(await vehicle.get_attribute("data-lon"))
    first_box = await vehicle.bounding_box()
    assert first_lon > _lon(STOPS_M[0])
    await page.screenshot(path=str(ARTIFACTS / "track-2-map.png"), full_page=True)

    # It moves as the fixes come in, without a reload.
    seen = [first_lon]
    deadline = time.monotonic() + 40
    while len(seen) < 3:
        assert time.monotonic() < deadline, f"the vehicle marker did not move: {seen}"
        await page.wait_for_timeout(500)
        lon = float(await vehicle.get_attribute("data-lon"))
        if lon != seen[-1]:
            seen.append(lon)
    assert seen == sorted(seen)  # east, towards this stop
    await page.wait_for_timeout(1200)  # the glide
    assert await vehicle.bounding_box() != first_box
    await page.screenshot(path=str(ARTIFACTS / "track-3-map-moved.png"), full_page=True)

    # At this stop: delivered with proof of delivery, and the map is gone.
    # (Locators, not wait_for_function: the page's CSP allows no eval, the test's neither.)
    await page.locator("#map .chip", has_text="At your address").wait_for(timeout=45_000)
    await page.screenshot(path=str(ARTIFACTS / "track-4-at-the-door.png"), full_page=True)
    r = await api.post(
        f"/v1/orders/{mine['order_id']}/pod",
        json=_pod(*plan["stops"][1]["location"]),
        headers={"Authorization": f"Bearer {driver_token}"},
    )
    assert r.status_code == 201, r.text
    await page.locator(".status", has_text="Delivered").wait_for(timeout=15_000)
    assert await page.locator("#map").count() == 0
    assert "Received by Siti Rahma" in await page.locator("main").inner_text()
    await page.screenshot(path=str(ARTIFACTS / "track-5-delivered.png"), full_page=True)
