"""Start-up recovery cost: replaying the pings committed after the engine checkpoint.

A simulated fleet's pings are committed batch by batch through the live commit path
(engine + ``commit_batch``) into a scratch database, with the checkpoint saved in the
first batch; then ``ingest.recovery.recover`` brings a restored engine up to date and is
timed (pings replayed per second). The same run times the engine alone over the same
batches (no database) as the ceiling, and the write cost of the commit order itself:
binary COPY into a copy of ``pings`` with and without ``commit_xid`` (default
``txid_current()``) and its BRIN index.

    .venv/bin/python -m benchmarks.recovery_replay --vehicles 200 --duration 1800

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import psycopg
from psycopg import AsyncConnection

from compliance.engine import Engine
from compliance.plan import TripPlan
from ingest.batch import PendingBatch
from ingest.commit import commit_batch
from ingest.recovery import recover
from ingest.trips import load_live_trips
from routewatch.services import ensure_database, with_dbname
from routewatch.settings import Settings
from store.live import load_checkpoint
from store.migrate import migrate
from tests.ingest.fleet_run import Fleet, insert_trips, make_fleet, ping_batch

BATCH = 2000  # pings per committed batch, about what the live engine commits under load
COPY_ROUNDS = 5


def _batches(fleet: Fleet) -> list[list[tuple[str, int, float, float, float, float, float]]]:
    return [fleet.rows[i : i + BATCH] for i in range(0, len(fleet.rows), BATCH)]


async def commit_all(url: str, fleet: Fleet, settings: Settings) -> float:
    """Commit every batch as the live engine would; the checkpoint goes with the first."""
    engine = Engine()
    for plan in fleet.plans:
        engine.add_trip(TripPlan.model_validate(plan))
    newest_ms = 0
    t0 = time.perf_counter()
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        for k, rows in enumerate(_batches(fleet)):
            batch = ping_batch(rows)
            newest_ms = max(newest_ms, int(batch.ts_ms.max()))
            result = engine.process(batch, newest_ms)
            checkpoint = (engine.checkpoint(), newest_ms) if k == 0 else None
            pending = PendingBatch(batch, [], [], len(batch), 0, 0, 1)
            await commit_batch(conn, pending, result, [], checkpoint, settings=settings)
    return time.perf_counter() - t0


async def time_recovery(url: str, settings: Settings) -> tuple[int, float]:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        saved = await load_checkpoint(conn)
        assert saved is not None
        engine = Engine.restore(saved.state)
        trips = await load_live_trips(conn)
        t0 = time.perf_counter()
        report = await recover(conn, engine, saved, trips, settings)
        return report.pings, time.perf_counter() - t0


def time_engine_alone(fleet: Fleet) -> float:
    engine = Engine()
    for plan in fleet.plans:
        engine.add_trip(TripPlan.model_validate(plan))
    engine.process(ping_batch(fleet.rows[:1]), fleet.rows[0][1])  # warm up
    engine = Engine()
    for plan in fleet.plans:
        engine.add_trip(TripPlan.model_validate(plan))
    newest_ms = 0
    t0 = time.perf_counter()
    for rows in _batches(fleet):
        batch = ping_batch(rows)
        newest_ms = max(newest_ms, int(batch.ts_ms.max()))
        engine.process(batch, newest_ms)
    return time.perf_counter() - t0


def copy_cost(url: str, fleet: Fleet) -> tuple[float, float]:
    """Seconds to COPY the fleet's rows into a pings-shaped table without and with the
    commit order column and its index (the quickest of COPY_ROUNDS rounds each)."""
    rows = list({(r[0], r[1]): r for r in fleet.rows}.values())  # the primary key once
    cols = "vehicle_id, ts_ms, lat, lon, speed_kmh, heading_deg, accuracy_m"
    types = ["text", "int8", "float8", "float8", "float8", "float8", "float8"]
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        for extra in ("", ", commit_xid bigint NOT NULL DEFAULT txid_current()"):
            conn.execute("DROP TABLE IF EXISTS bench_pings")
            conn.execute(
                "CREATE TABLE bench_pings (vehicle_id text, ts_ms bigint, lat float8, "
                f"lon float8, speed_kmh float8, heading_deg float8, accuracy_m float8{extra}, "
                "PRIMARY KEY (vehicle_id, ts_ms))"
            )
            if extra:
                conn.execute("CREATE INDEX ON bench_pings USING brin (commit_xid)")
            elapsed = float("inf")
            for k in range(COPY_ROUNDS):
                shifted = [(v, ts + k * 10**9, *rest) for v, ts, *rest in rows]
                t0 = time.perf_counter()
                with (
                    conn.transaction(),
                    conn.cursor().copy(
                        f"COPY bench_pings ({cols}) FROM STDIN (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.set_types(types)
                    for row in shifted:
                        copy.write_row(row)
                elapsed = min(elapsed, time.perf_counter() - t0)  # least disturbed round
            out.append(elapsed)
        conn.execute("DROP TABLE bench_pings")
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--duration", type=float, default=1800.0, help="simulated seconds")
    parser.add_argument("--interval", type=int, default=2, help="seconds between fixes")
    args = parser.parse_args()
    server = Settings().database_url
    name = f"rw_bench_{uuid.uuid4().hex[:8]}"
    url = ensure_database(server, name)
    migrate(url)
    settings = Settings(database_url=url, watermark="event")
    try:
        fleet = make_fleet(args.vehicles, args.interval, args.duration, seed=1)
        with psycopg.connect(url, autocommit=True) as db:
            insert_trips(db, fleet.plans)
        n = len(fleet.rows)
        commit_s = asyncio.run(commit_all(url, fleet, settings))
        replayed, recover_s = asyncio.run(time_recovery(url, settings))
        engine_s = time_engine_alone(fleet)
        plain_s, ordered_s = copy_cost(url, fleet)
        print(f"fleet: {args.vehicles} vehicles, {n} pings in {-(-n // BATCH)} batches of {BATCH}")
        print(f"live commit path (engine + commit_batch): {n / commit_s:,.0f} pings/s")
        print(
            f"recovery: replayed {replayed} pings in {recover_s:.2f} s = "
            f"{replayed / recover_s:,.0f} pings/s; engine alone {n / engine_s:,.0f} pings/s "
            f"(recovery at {engine_s / recover_s:.0%} of it)"
        )
        print(
            f"COPY of the fleet's rows: without commit_xid {plain_s:.3f} s, with it + BRIN "
            f"{ordered_s:.3f} s ({ordered_s / plain_s - 1:+.1%}; best of {COPY_ROUNDS})"
        )
    finally:
        with psycopg.connect(with_dbname(server, "postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
