"""The dashboard on the whole running stack: ``routewatch demo`` (engine, API, simulated
fleet over a private mosquitto, a fresh database on the shared PostgreSQL) watched by
headless Chromium. The map must show the simulated vehicles moving; a new alert must
appear without a reload and be acknowledged.

Alerts come from the engine when the simulated trips produce one within
``ENGINE_ALERT_WAIT_S``. If none does (e.g. trips cannot be created yet, or the fleet is
simply well behaved for that long), the test inserts one through ``store.alerts`` into the
stack's database — still exercising NOTIFY → SSE → page on the live stack — and says so
in its output.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from compliance.events import Event, EventType
from routewatch import services
from store import alerts
from tests.control_room.test_dashboard_browser import ARTIFACTS, CHROMIUM, dashboard
from tests.processes import ProcessOutput, stop_politely

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]

ENGINE_ALERT_WAIT_S = 45.0


@pytest.fixture
def stack(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, str]]:
    # the server's maintenance database: the configured one need not exist yet
    server = services.with_dbname(postgres_server_url, "postgres")
    name = f"rw_cr_stack_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params: dict[str, Any] = {**conninfo_to_dict(server), "dbname": name}
    env = {
        **os.environ,
        "ROUTEWATCH_DATABASE_URL": make_conninfo(**params),
        # A closed port: the demo starts a private mosquitto, so the simulated fleet
        # never reaches other tests' subscriptions on the shared broker.
        "ROUTEWATCH_MQTT_URL": f"mqtt://127.0.0.1:{services.free_port()}",
        "ROUTEWATCH_STATE_DIR": str(tmp_path / "state"),
        "ROUTEWATCH_LOG_JSON": "true",
    }
    cmd = [
        sys.executable,
        "-m",
        "routewatch.cli",
        "demo",
        "--vehicles",
        "4",
        "--speedup",
        "5",
        "--seed",
        "7",
        "--port",
        str(services.free_port()),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        out = ProcessOutput(proc)
        info = {
            "dashboard": out.wait_for(r"^\s+dashboard\s+(http\S+)", 120).group(1),
            "token": out.wait_for(r"^\s+supervisor token\s+(rw_\S+)", 10).group(1),
            "database_url": out.wait_for(r"^\s+database\s+(.+?)\s*$", 10).group(1),
        }
        yield info
    finally:
        stop_politely(proc)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def insert_alert(database_url: str, vehicle_id: str) -> None:
    event = Event(
        type=EventType.OFF_ROUTE,
        trip_id=f"T-{vehicle_id}",
        vehicle_id=vehicle_id,
        ts_ms=int(time.time() * 1000),
        lat=0.0,
        lon=0.0,
        route_m=0.0,
        details={"offset_m": 180.0},
    )

    async def _go() -> None:
        async with (
            await psycopg.AsyncConnection.connect(database_url) as conn,
            conn.transaction(),
        ):
            await alerts.apply_events(conn, [event])

    with ThreadPoolExecutor(max_workers=1) as pool:  # Playwright owns this thread's loop
        pool.submit(asyncio.run, _go()).result()


def positions(page: Any) -> dict[str, tuple[float, float]]:
    out = {}
    for el in page.locator("path[data-vehicle]").all():
        box = el.bounding_box()
        if box:
            out[el.get_attribute("data-vehicle")] = (box["x"], box["y"])
    return out


def test_dashboard_on_the_running_stack(stack: dict[str, str]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    alert_id: str | None = None
    url = stack["dashboard"].replace("/static/", "/dashboard")
    with dashboard(url, stack["token"]) as (page, errors):
        page.wait_for_selector("path[data-vehicle]", timeout=60_000)
        first = positions(page)
        deadline = time.monotonic() + 60
        while not any(positions(page).get(v) not in (None, xy) for v, xy in first.items()):
            assert time.monotonic() < deadline, "no vehicle moved on the map in 60 s"
            page.wait_for_timeout(500)

        item = page.locator("#alerts li.alert").first
        try:
            item.wait_for(timeout=ENGINE_ALERT_WAIT_S * 1000)
            source = "engine"
        except sync_api.TimeoutError:
            source = "inserted"
            insert_alert(stack["database_url"], next(iter(first)))
            item.wait_for(timeout=10_000)
        alert_id = item.get_attribute("data-alert-id")
        print(f"\nalert source: {source}: {item.inner_text()!r}")
        page.screenshot(path=str(ARTIFACTS / "dashboard-stack-alert.png"), full_page=True)
        item = page.locator(f'.alert[data-alert-id="{alert_id}"]')  # survives re-renders
        item.locator("button.ack").click()
        item.locator("input[name=note]").fill("checked from the control room")
        item.locator("button.ack-confirm").click()
        page.wait_for_selector(f'.alert[data-alert-id="{alert_id}"] .badge.acked', timeout=10_000)
        # The trip view of a moving vehicle: planned route, driven track, stop timeline.
        # Dispatched on the marker itself: acknowledging may have re-fitted the map to
        # the alert's trip, so screen coordinates from before are no longer the marker's.
        page.locator("path[data-vehicle]").first.dispatch_event("click")
        page.wait_for_selector("#timeline li", timeout=10_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "dashboard-stack.png"), full_page=True)
        assert not errors, errors
    # Outside Playwright's event loop: the acknowledgement is in the stack's database.
    with psycopg.connect(stack["database_url"]) as conn:
        row = conn.execute(
            "SELECT status, acked_by FROM alerts WHERE id = %s", (int(alert_id or 0),)
        ).fetchone()
    assert row is not None and row[1] == "demo dashboard"
    assert row[0] in ("acked", "resolved")  # the engine may have resolved it meanwhile
