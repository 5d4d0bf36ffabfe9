"""Headless Chromium against the real stack: the map shows moving vehicles, a new alert
appears without a reload (naming the trip's driver beside the vehicle), and acknowledging
it works; the driver scorecard ranks the week's drivers and filters the alerts to one.
Saves screenshots under ``test-artifacts/`` (or ``$ROUTEWATCH_SCREENSHOTS``).

Feeding: the scene (trips, vehicle states, pings, alerts) is written straight into the
database here — the same rows the engine writes — so the test does not depend on the
simulator's timing. It uses the system Chromium (``apt-get install chromium``); no
browser is downloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from compliance.events import Event, EventType
from store import alerts
from tests.control_room.fleet_scene import (
    HISTORY_DRIVERS,
    insert_scene,
    set_vehicle,
    vehicle_position,
)

CHROMIUM = Path(os.environ.get("ROUTEWATCH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(
    os.environ.get("ROUTEWATCH_SCREENSHOTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts"
)
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


@contextlib.contextmanager
def dashboard(url: str, token: str) -> Iterator[tuple[Any, list[str]]]:
    """Headless Chromium on the dashboard at ``url`` with ``token`` stored: (page, the
    page's uncaught errors)."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: print("console:", msg.type, msg.text))
            page.add_init_script(f"localStorage.setItem('routewatch.token', '{token}')")
            page.goto(url)
            yield page, errors
        finally:
            browser.close()


def scene_with_alerts(db: psycopg.Connection, database_url: str) -> None:
    """The fleet scene and two open alerts: TRK-C late, TRK-A speeding."""
    insert_scene(db)
    apply(
        database_url,
        [
            ev("late", "T-C", 600, vehicle_id="TRK-C", stop_id="S2", delay_s=1500),
            ev("speeding", "T-A", 300, vehicle_id="TRK-A", limit_kmh=40, speed_kmh=58),
        ],
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


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
    scene_with_alerts(db, database_url)
    with dashboard(f"{api_url}/dashboard", supervisor_token) as (page, errors):
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


def test_driver_scorecard_ranks_the_weeks_drivers_and_filters_their_alerts(
    api_url: str, database_url: str, db: psycopg.Connection, supervisor_token: str
) -> None:
    scene_with_alerts(db, database_url)
    names = {d: n for d, n, _ in HISTORY_DRIVERS}
    with dashboard(f"{api_url}/dashboard", supervisor_token) as (page, errors):
        rows = page.locator("#scorecard-rows tr")
        rows.nth(4).wait_for(timeout=15_000)
        page.wait_for_selector("#chart-rates rect", timeout=10_000)

        # 7 days: the habitual speeder last, the clean driver first; all five ranked.
        order = [rows.nth(i).get_attribute("data-driver") for i in range(rows.count())]
        assert order[0] == "DRV-01" and order[-1] == "DRV-03", order
        assert set(order) == set(names)
        worst = rows.nth(rows.count() - 1)
        assert names["DRV-03"] in worst.inner_text()
        assert worst.locator(".scorebar.poor").count() == 1
        assert worst.locator("td.hot").count() >= 1  # speeding figures marked
        card = page.locator("#drivers-card")
        page.screenshot(path=str(ARTIFACTS / "dashboard-with-scorecard.png"), full_page=True)
        card.screenshot(path=str(ARTIFACTS / "scorecard-7-days.png"))

        # Other periods: today only, and 30 days (the same week's trips).
        page.locator('#score-period button[data-days="1"]').click()
        page.wait_for_function(
            "document.getElementById('score-note').textContent.startsWith('today')"
        )
        card.screenshot(path=str(ARTIFACTS / "scorecard-today.png"))
        page.locator('#score-period button[data-days="30"]').click()
        page.wait_for_function(
            "document.getElementById('score-note').textContent.startsWith('last 30 days')"
        )
        assert rows.count() == len(names)
        card.screenshot(path=str(ARTIFACTS / "scorecard-30-days.png"))

        # A driver's row filters the alerts to theirs: DRV-03 drives TRK-C (late).
        page.locator('#scorecard-rows tr[data-driver="DRV-03"]').click()
        page.wait_for_selector("#alert-driver:not([hidden])", timeout=10_000)
        page.wait_for_function(
            "document.querySelectorAll('#alerts .alert').length === 1", timeout=10_000
        )
        only = page.locator("#alerts .alert")
        assert "TRK-C" in only.inner_text() and names["DRV-03"] in only.inner_text()
        page.evaluate("window.scrollTo(0, 0)")  # (the sticky top bar, drawn at the top)
        page.screenshot(path=str(ARTIFACTS / "scorecard-driver-alerts.png"), full_page=True)
        page.locator("#alert-driver-clear").click()
        page.wait_for_function(
            "document.querySelectorAll('#alerts .alert').length === 2", timeout=10_000
        )
        assert not errors, errors
