"""Small factories for control-room tests: events, trips and orders inserted directly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg

from compliance.events import Event, EventType

T0_MS = 1_795_000_000_000  # 2026-11-18T...Z, a fixed event-time origin


def ev(type_: str, trip_id: str, ts_s: float, *, vehicle_id: str = "V-1", **details: Any) -> Event:
    """An event ``ts_s`` seconds after ``T0_MS``."""
    return Event(
        type=EventType(type_),
        trip_id=trip_id,
        vehicle_id=vehicle_id,
        ts_ms=T0_MS + int(ts_s * 1000),
        lat=-6.2,
        lon=106.8,
        route_m=100.0,
        details=dict(details),
    )


def at(ts_s: float) -> datetime:
    return datetime.fromtimestamp((T0_MS + ts_s * 1000) / 1000.0, tz=UTC)


def insert_trip(
    db: psycopg.Connection,
    trip_id: str,
    vehicle_id: str,
    *,
    status: str = "active",
    planned_start_s: float = 0.0,
    driver_id: str | None = None,
) -> None:
    db.execute(
        "INSERT INTO vehicles (vehicle_id) VALUES (%s) ON CONFLICT DO NOTHING", (vehicle_id,)
    )
    if driver_id is not None:
        db.execute(
            "INSERT INTO drivers (driver_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (driver_id, f"Driver {driver_id}"),
        )
    plan = {
        "trip_id": trip_id,
        "vehicle_id": vehicle_id,
        "route": {"type": "LineString", "coordinates": [[106.8, -6.2], [106.81, -6.2]]},
    }
    db.execute(
        "INSERT INTO trips (trip_id, vehicle_id, driver_id, planned_start, plan, route_length_m, "
        "status, created_at) VALUES (%s, %s, %s, %s, %s, 1100, %s, %s)",
        (
            trip_id,
            vehicle_id,
            driver_id,
            at(planned_start_s),
            json.dumps(plan),
            status,
            at(planned_start_s),
        ),
    )
