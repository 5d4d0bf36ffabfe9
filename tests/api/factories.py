"""Small factories for API tests: a straight 2.2 km route along latitude -6.2 with stops
on it, and helpers to post plans."""

from __future__ import annotations

import uuid
from typing import Any

LAT = -6.2
LON0, LON1 = 106.80, 106.82  # ~2.2 km apart at this latitude


def make_plan(
    n_stops: int = 3,
    *,
    trip_id: str | None = None,
    vehicle_id: str | None = None,
    tag: str | None = None,
) -> dict[str, Any]:
    tag = tag or uuid.uuid4().hex[:6]
    stops = []
    for i in range(n_stops):
        lon = LON0 + (LON1 - LON0) * (i + 1) / (n_stops + 1)
        stops.append(
            {
                "stop_id": f"S{i + 1}",
                "order_id": f"ORD-{tag}-{i + 1}",
                "location": [lon, LAT + 0.0001],  # ~11 m off the road
                "radius_m": 75,
                "planned_arrival": f"2026-11-22T08:{10 + 10 * i:02d}:00Z",
                "window": {
                    "start": f"2026-11-22T08:{5 + 10 * i:02d}:00Z",
                    "end": f"2026-11-22T08:{15 + 10 * i:02d}:00Z",
                },
                "service_s": 120,
            }
        )
    plan: dict[str, Any] = {
        "vehicle_id": vehicle_id or f"V-{tag}",
        "planned_start": "2026-11-22T08:00:00Z",
        "route": {"type": "LineString", "coordinates": [[LON0, LAT], [LON1, LAT]]},
        "speed_limit_kmh": 50,
        "stops": stops,
    }
    if trip_id:
        plan["trip_id"] = trip_id
    return plan
