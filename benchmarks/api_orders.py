"""Order bookkeeping and customer lookups against the real PostgreSQL.

1. ``store.orders.apply_events`` for one engine batch covering N active trips of S
   stops each (snapshots for every trip): the first batch (every order changes status,
   webhooks queued) and steady state (ETAs move, few status changes). Baseline in the
   same run: the same number of trips' orders merely read ``FOR UPDATE`` in one
   transaction — the floor any bookkeeping pays.
2. ``GET /v1/track/{n}`` through the real app (in-process ASGI, no network), requests/s
   and p50/p99 latency; baseline: ``GET /docs`` (a static page), the cheapest
   route of the same app stack.

    .venv/bin/python -m benchmarks.api_orders [--trips 200] [--stops 5] [--lookups 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import psycopg
from httpx import ASGITransport, AsyncClient
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from api.main import create_app
from compliance.types import StopSnapshot, TripSnapshot
from routewatch.settings import Settings
from store.migrate import migrate
from store.orders import apply_events, orders_of_trips
from store.trips import save_plan
from tests.api.factories import make_plan

T0_MS = 1_795_852_800_000


def _snapshots(trips: list[dict], stops: int, t_ms: int, shift_min: float) -> list[TripSnapshot]:
    return [
        TripSnapshot(
            t["trip_id"],
            t["vehicle_id"],
            t_ms,
            -6.2,
            106.81,
            30.0,
            100.0,
            2.0,
            True,
            5.0,
            0.0,
            "active",
            [
                StopSnapshot(
                    f"S{i + 1}",
                    None,
                    "pending",
                    T0_MS + int((10 * (i + 1) + shift_min) * 60_000),
                    T0_MS + int((10 * (i + 1) + shift_min - 3) * 60_000),
                    T0_MS + int((10 * (i + 1) + shift_min + 3) * 60_000),
                )
                for i in range(stops)
            ],
        )
        for t in trips
    ]


async def run(url: str, n_trips: int, stops: int, lookups: int) -> None:
    from compliance.plan import TripPlan
    from compliance.route import prepare

    settings = Settings(database_url=url, track_burst=10**9)
    async with await AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        trips = []
        for _ in range(n_trips):
            plan = TripPlan.model_validate(make_plan(stops))
            route = prepare(plan)
            trips.append(await save_plan(conn, plan, route.length_m, list(route.stop_route_m)))
        ids = [t["trip_id"] for t in trips]

        t = time.perf_counter()
        async with conn.transaction():
            await orders_of_trips(conn, ids)
        base_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        await apply_events(conn, [], _snapshots(trips, stops, T0_MS, 0), settings=settings)
        first_ms = (time.perf_counter() - t) * 1000
        steady = []
        for k in range(1, 6):
            t = time.perf_counter()
            await apply_events(
                conn, [], _snapshots(trips, stops, T0_MS + k * 1000, k * 0.5), settings=settings
            )
            steady.append((time.perf_counter() - t) * 1000)
    n_orders = n_trips * stops
    print(f"apply_events, {n_trips} trips x {stops} stops ({n_orders} orders) per batch:")
    print(f"  baseline (lock+read the orders only): {base_ms:8.1f} ms")
    print(f"  first batch (all statuses change):    {first_ms:8.1f} ms")
    print(f"  steady state (ETAs move), median:     {statistics.median(steady):8.1f} ms")

    numbers = [o["tracking_number"] for t in trips for o in t["orders"]]
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://bench") as client,
    ):
        for label, paths in (
            ("GET /docs (baseline)", ["/docs"] * lookups),
            (
                "GET /v1/track/{n}",
                [f"/v1/track/{numbers[i % len(numbers)]}" for i in range(lookups)],
            ),
        ):
            lat = []
            t0 = time.perf_counter()
            for p in paths:
                t = time.perf_counter()
                r = await client.get(p)
                lat.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
            total = time.perf_counter() - t0
            lat.sort()
            print(
                f"{label:22s} {lookups / total:7.0f} req/s  p50 {lat[len(lat) // 2]:5.2f} ms  "
                f"p99 {lat[int(len(lat) * 0.99)]:5.2f} ms"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trips", type=int, default=200)
    ap.add_argument("--stops", type=int, default=5)
    ap.add_argument("--lookups", type=int, default=500)
    args = ap.parse_args()
    server = os.environ.get("ROUTEWATCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"rw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server)
    params["dbname"] = name
    url = make_conninfo("", **params)
    try:
        migrate(url)
        asyncio.run(run(url, args.trips, args.stops, args.lookups))
    finally:
        with psycopg.connect(server, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
