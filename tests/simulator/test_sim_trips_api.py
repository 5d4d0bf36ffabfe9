"""Live mode creates its trips through the real API (uvicorn + PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg

from simulator.publisher import create_trips
from simulator.scenario import ScenarioConfig, build
from tests.control_room.conftest import api_url, make_token

__all__ = ["api_url"]  # the fixture, imported so pytest finds it here


def test_simulated_plans_are_accepted_by_the_api(
    db: psycopg.Connection, database_url: str, api_url: str
) -> None:
    token = make_token(database_url, "oms", "simulator")
    prefix = f"SIMAPI{uuid.uuid4().hex[:6]}"
    sim = build(
        ScenarioConfig(
            vehicles=4,
            seed=11,
            faults={},
            id_prefix=prefix,
            start_ms=int(time.time() * 1000),
            stops_per_trip=3,
        )
    )
    created, failed = asyncio.run(create_trips(sim.plans, api_url, token, concurrency=4))
    assert (created, failed) == (4, 0)
    rows = db.execute(
        "SELECT trip_id FROM trips WHERE vehicle_id LIKE %s", (f"{prefix}%",)
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(p["trip_id"] for p in sim.plans)
    # a wrong token creates nothing
    created, failed = asyncio.run(create_trips(sim.plans[:1], api_url, "nope", concurrency=1))
    assert (created, failed) == (0, 1)
