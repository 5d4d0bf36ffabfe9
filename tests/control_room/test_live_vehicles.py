"""The vehicle-state SSE stream and the dashboard's own endpoints, over real HTTP."""

from __future__ import annotations

import json

import httpx
import psycopg
import pytest

from api.routes import live
from tests.control_room.factories import insert_trip
from tests.control_room.test_alert_stream import SseReader


def upsert_state(db: psycopg.Connection, vehicle_id: str, lon: float, status: str) -> None:
    db.execute(
        """INSERT INTO vehicle_state (vehicle_id, ts, lat, lon, speed_kmh, trip_id, on_route,
                                      status, updated_at)
           VALUES (%s, now(), -6.2, %s, 30, 'TL', true, %s, clock_timestamp())
           ON CONFLICT (vehicle_id) DO UPDATE SET lon = excluded.lon, status = excluded.status,
                                                  updated_at = clock_timestamp()""",
        (vehicle_id, lon, status),
    )


def test_vehicle_stream_snapshot_then_updates(
    api_url: str, db: psycopg.Connection, supervisor_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "POLL_S", 0.1)
    upsert_state(db, "VS-1", 106.80, "moving")
    upsert_state(db, "VS-2", 106.90, "moving")
    params = {"access_token": supervisor_token}
    with httpx.stream("GET", f"{api_url}/v1/vehicles/stream", params=params, timeout=10) as resp:
        assert resp.status_code == 200
        reader = iter(SseReader(resp))
        msg = next(m for m in reader if "event" in m)
        assert msg["event"] == "snapshot"
        assert sorted(v["vehicle_id"] for v in json.loads(msg["data"])) == ["VS-1", "VS-2"]
        upsert_state(db, "VS-1", 106.81, "off_route")
        msg = next(m for m in reader if "event" in m)
        assert msg["event"] == "update"
        (moved,) = json.loads(msg["data"])  # only the vehicle that changed
        assert (moved["vehicle_id"], moved["lon"], moved["status"]) == ("VS-1", 106.81, "off_route")


def test_vehicle_stream_requires_supervisor(api_url: str, oms_token: str) -> None:
    url = f"{api_url}/v1/vehicles/stream"
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, params={"access_token": oms_token}, timeout=5).status_code == 403


def test_dashboard_page_config_and_trips(
    api_url: str, db: psycopg.Connection, supervisor_token: str
) -> None:
    page = httpx.get(f"{api_url}/dashboard", timeout=5)
    assert page.status_code == 200 and "/static/vendor/leaflet/leaflet.js" in page.text
    for asset in (
        "/static/vendor/leaflet/leaflet.js",
        "/static/dashboard/app.js",
        "/static/dashboard/app.css",
        "/static/dashboard/charts.js",
    ):
        assert httpx.get(f"{api_url}{asset}", timeout=5).status_code == 200, asset
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")  # no CDN
    config = httpx.get(f"{api_url}/dashboard/config", timeout=5).json()
    assert config["tile_url"] is None  # default: no tiles, plain background
    insert_trip(db, "TD-1", "VD")
    db.execute(
        "INSERT INTO stops (trip_id, seq, stop_id, order_id, lon, lat, route_m, radius_m,"
        " service_s) VALUES ('TD-1', 0, 'S1', 'O-D1', 106.805, -6.2, 550, 75, 300)"
    )
    headers = {"Authorization": f"Bearer {supervisor_token}"}
    trips = httpx.get(f"{api_url}/v1/dashboard/trips", headers=headers, timeout=5).json()
    (trip,) = [t for t in trips if t["trip_id"] == "TD-1"]
    assert trip["route"]["type"] == "LineString" and trip["stops"][0]["stop_id"] == "S1"
    assert httpx.get(f"{api_url}/v1/dashboard/trips", timeout=5).status_code == 401
