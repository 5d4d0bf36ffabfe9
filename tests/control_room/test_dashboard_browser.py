"""Headless Chromium against the real stack: the map shows moving vehicles, a new alert
appears without a reload (naming the trip's driver beside the vehicle), and acknowledging
it works. Saves a screenshot under
``test-artifacts/``.

Feeding: the scene (trips, vehicle states, pings, alerts) is written straight into the
database here — the same rows the engine writes — so the test does not depend on the
simulator's timing. It uses the system Chromium (``apt-get install chromium``); no
browser is downloaded.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from compliance.events import Event, EventType
from store import alerts
from tests.control_room.fleet_scene import insert_scene, set_vehicle, vehicle_position

CHROMIUM = Path(os.environ.get("ROUTEWATCH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")


def apply(database_url: str, events: list) -> None:
    async def _go() -> None:
        async with (
            await psycopg.AsyncConnection.connect(database_url) as conn,
            conn.transaction(),
        ):
            await alerts.apply_events(conn, events)

    # Playwright's sync API keeps an event loop in this thread: run ours in another.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _go()).result()


def ev(type_: str, trip_id: str, ago_s: float, *, vehicle_id: str, **details: object) -> Event:
    """An event ``ago_s`` seconds before now (the page shows relative times)."""
    lon, lat = vehicle_position(vehicle_id)
    return Event(
        type=EventType(type_),
        trip_id=trip_id,
        vehicle_id=vehicle_id,
        ts_ms=int((time.time() - ago_s) * 1000),
        lat=lat,
        lon=lon,
        route_m=0.0,
        details=dict(details),
    )


def marker_box(page: Any, vehicle_id: str) -> dict[str, float]:
    box = page.locator(f'path[data-vehicle="{vehicle_id}"]').bounding_box()
    assert box is not None
    return box


def test_dashboard_live_map_alerts_and_ack(
    api_url: str, database_url: str, db: psycopg.Connection, supervisor_token: str
) -> None:
    insert_scene(db)
    apply(
        database_url,
        [
            ev("late", "T-C", 600, vehicle_id="TRK-C", stop_id="S2", delay_s=1500),
            ev("speeding", "T-A", 300, vehicle_id="TRK-A", limit_kmh=40, speed_kmh=58),
        ],
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: print("console:", msg.type, msg.text))
            page.add_init_script(f"localStorage.setItem('routewatch.token', '{supervisor_token}')")
            page.goto(f"{api_url}/dashboard")

            # Vehicles on the map, live.
            try:
                page.wait_for_selector('path[data-vehicle="TRK-A"]', timeout=15_000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "dashboard-failure.png"), full_page=True)
                print("page errors:", errors)
                raise
            assert page.locator("path[data-vehicle]").count() == 3
            before = marker_box(page, "TRK-A")
            set_vehicle(db, "TRK-A", 0.9)
            deadline = time.monotonic() + 10
            while marker_box(page, "TRK-A") == before:
                assert time.monotonic() < deadline, "vehicle marker did not move"
                page.wait_for_timeout(200)

            # A new alert arrives over SSE, without a reload.
            page.wait_for_selector(".alert.type-speeding", timeout=10_000)
            apply(database_url, [ev("off_route", "T-B", 0, vehicle_id="TRK-B", offset_m=212.0)])
            new = page.locator(".alert.type-off_route")
            new.wait_for(timeout=10_000)
            assert "TRK-B" in new.inner_text() and "Siti Rahma" in new.inner_text()

            # Acknowledge it.
            new.locator("button.ack").click()
            new.locator("input[name=note]").fill("Roadworks detour, driver called")
            new.locator("button.ack-confirm").click()
            page.wait_for_selector(".alert.type-off_route .badge.acked", timeout=10_000)
            row = db.execute(
                "SELECT status, acked_by, ack_note FROM alerts WHERE type = 'off_route'"
            ).fetchone()
            assert row == ("acked", "alice", "Roadworks detour, driver called")

            # Trip view for the screenshot; KPI charts must have drawn bars.
            page.locator('path[data-vehicle="TRK-A"]').click(force=True)
            page.wait_for_selector(".timeline li", timeout=10_000)
            assert "Budi Santoso" in page.locator("#trip-sub").inner_text()
            page.wait_for_selector("#chart-rates rect", timeout=10_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
