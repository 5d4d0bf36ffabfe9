"""TimescaleDB beside plain PostgreSQL, in one run, on the same synthetic month of fleet
data: binary COPY ingest rate into ``pings``, one vehicle's track over a day, a 30-day
delivery-performance report, a 30-day driver scorecard (whole, and its event sums alone:
from the continuous aggregate on TimescaleDB, from ``events`` on both), and bytes on disk
(TimescaleDB before and after its columnstore compresses what its policy would: chunks
older than 3 days).

Both databases live on one server, so only the storage differs: the configured one when
it preloads TimescaleDB, otherwise a private cluster that preloads it (when the machine
has the extension); the plain one is migrated with ``timescaledb=False``. Without
TimescaleDB only the plain figures are printed.

    .venv/bin/python -m benchmarks.timescaledb --vehicles 40 --days 30

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from tqdm import tqdm

from routewatch.services import ensure_database, ensure_timescaledb, with_dbname
from routewatch.settings import Settings
from store import reports, scorecard
from store.copy_binary import Columns
from store.migrate import migrate
from store.pings import COPY_DIRECT

#: a working day: 8 hours of driving from 07:00 UTC
DRIVE_S = 8 * 3600
START_H = 7


@dataclass(frozen=True)
class Shape:
    vehicles: int
    days: int
    interval_s: int

    @property
    def first_day(self) -> datetime:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=self.days)

    def vehicle_day(self, v: int, d: int, rng: np.random.Generator) -> bytearray:
        """One vehicle's day as a binary COPY payload of ``store.pings.COPY_DIRECT`` (the
        engine's own COPY): a noisy drive around 40 km/h."""
        n = DRIVE_S // self.interval_s
        t0_ms = int((self.first_day + timedelta(days=d, hours=START_H)).timestamp() * 1000)
        ts = t0_ms + np.arange(n, dtype=np.int64) * self.interval_s * 1000
        speed = np.clip(40 + np.cumsum(rng.normal(0, 2, n)), 0, 90)
        heading = np.mod(np.cumsum(rng.normal(0, 5, n)), 360)
        step_m = speed / 3.6 * self.interval_s
        north = np.cumsum(step_m * np.cos(np.radians(heading)))
        east = np.cumsum(step_m * np.sin(np.radians(heading)))
        lat = -6.2 + v * 0.01 + north / 111_320 + rng.normal(0, 4e-5, n)
        lon = 106.8 + east / 110_700 + rng.normal(0, 4e-5, n)
        offset = np.abs(rng.normal(0, 8, n))
        trip = f"BT-{v:03d}-{d:02d}"
        return (
            Columns(n)
            .timestamptz_ms(ts)
            .float8(lat)
            .float8(lon)
            .float4(speed)
            .float4(heading)
            .float4(np.full(n, 5.0))
            .int8(np.arange(n, dtype=np.int64))
            .float8(np.cumsum(step_m))
            .float8(offset)
            .bool_flag((offset < 50).astype(np.int8))
            .text([f"BV{v:03d}"] * n)
            .text([trip] * n)
            .payload()
        )


_TRIPS_SQL = """
INSERT INTO vehicles (vehicle_id)
SELECT 'BV' || lpad(v::text, 3, '0') FROM generate_series(0, %(v)s - 1) v;
INSERT INTO drivers (driver_id, name)
SELECT 'BD' || lpad(v::text, 3, '0'), 'Driver ' || v FROM generate_series(0, %(v)s - 1) v;
INSERT INTO trips (trip_id, vehicle_id, driver_id, planned_start, plan, route_length_m, status)
SELECT 'BT-' || lpad(v::text, 3, '0') || '-' || lpad(d::text, 2, '0'),
       'BV' || lpad(v::text, 3, '0'), 'BD' || lpad(((v + d) %% %(v)s)::text, 3, '0'),
       %(first)s::timestamptz + d * interval '1 day' + interval '7 hours', '{}', 100000,
       'completed'
  FROM generate_series(0, %(v)s - 1) v, generate_series(0, %(d)s - 1) d;
INSERT INTO stops (trip_id, seq, stop_id, order_id, lon, lat, route_m, radius_m,
                   window_start, window_end, service_s, status, arrived_at, departed_at)
SELECT t.trip_id, s, 'S' || s, t.trip_id || '-O' || s, 106.8, -6.2, s * 10000, 75,
       t.planned_start + s * interval '1 hour', t.planned_start + s * interval '1 hour'
       + interval '30 minutes', 300, 'departed',
       t.planned_start + s * interval '1 hour' + (s * 7 %% 45) * interval '1 minute',
       t.planned_start + s * interval '1 hour' + (s * 7 %% 45 + 5) * interval '1 minute'
  FROM trips t, generate_series(0, 5) s;
INSERT INTO orders (order_id, tracking_number, trip_id, stop_id, status, created_at)
SELECT order_id, md5(order_id), trip_id, stop_id, 'delivered', arrived_at - interval '1 day'
  FROM stops;
INSERT INTO order_status_history (order_id, status, ts)
SELECT o.order_id, 'delivered', s.departed_at FROM orders o
  JOIN stops s USING (trip_id, stop_id);
INSERT INTO events (event_id, ts, type, trip_id, vehicle_id, severity, details, driver_id)
SELECT gen_random_uuid(), t.planned_start + k * interval '50 minutes', e.type, t.trip_id,
       t.vehicle_id, 'warning', e.details::jsonb, t.driver_id
  FROM trips t, generate_series(1, 8) k,
       (VALUES ('speeding', '{}'), ('speeding_ended', '{"duration_s": 75}'),
               ('unplanned_stop_ended', '{"duration_s": 240}'),
               ('stop_arrived', '{}')) e(type, details);
INSERT INTO events (event_id, ts, type, trip_id, vehicle_id, severity, details, driver_id)
SELECT gen_random_uuid(), t.planned_start + e.after, e.type, t.trip_id, t.vehicle_id,
       'info', e.details::jsonb, t.driver_id
  FROM trips t,
       (VALUES ('trip_started', interval '1 minute', '{}'),
               ('back_on_route', interval '3 hours', '{"off_route_s": 95}'))
       e(type, after, details);
"""


def _median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _bytes(conn: psycopg.Connection, timescale: bool) -> int:
    if timescale:
        q = "SELECT hypertable_size('pings') + hypertable_size('events')"
    else:
        q = "SELECT pg_total_relation_size('pings') + pg_total_relation_size('events')"
    row = conn.execute(q).fetchone()
    return int(row[0]) if row else 0


def run_one(url: str, shape: Shape, timescale: bool) -> dict[str, Any]:
    label = "TimescaleDB" if timescale else "PostgreSQL"
    out: dict[str, Any] = {}
    rng = np.random.default_rng(11)
    with psycopg.connect(url, autocommit=True) as conn:
        params = {"v": shape.vehicles, "d": shape.days, "first": shape.first_day}
        for statement in filter(str.strip, _TRIPS_SQL.split(";\n")):
            conn.execute(statement, params)  # type: ignore[arg-type]
        payloads = [
            shape.vehicle_day(v, d, rng) for d in range(shape.days) for v in range(shape.vehicles)
        ]
        rows = shape.vehicles * shape.days * (DRIVE_S // shape.interval_s)
        copy_s = 0.0
        for payload in tqdm(payloads, desc=f"COPY into {label}", unit="vehicle-day", leave=False):
            t0 = time.perf_counter()
            with conn.transaction(), conn.cursor().copy(COPY_DIRECT) as copy:
                copy.write(payload)
            copy_s += time.perf_counter() - t0
        out["rows"] = rows
        out["copy_rows_s"] = rows / copy_s
        conn.execute("VACUUM ANALYZE")
        out["bytes"] = _bytes(conn, timescale)
        if timescale:
            t0 = time.perf_counter()
            for table in ("pings", "events"):
                conn.execute(
                    "SELECT count(compress_chunk(c, true)) FROM show_chunks(%s, older_than => "
                    "now() - interval '3 days') c",
                    (table,),
                )
            out["compress_s"] = time.perf_counter() - t0
            for cagg in ("kpi_daily_vehicle", "kpi_daily_driver"):
                conn.execute(f"CALL refresh_continuous_aggregate('{cagg}', NULL, NULL)")
            conn.execute("VACUUM ANALYZE")
            out["bytes_compressed"] = _bytes(conn, timescale)

        def track() -> None:
            v, d = int(rng.integers(shape.vehicles)), int(rng.integers(shape.days - 3))
            day = shape.first_day + timedelta(days=d)
            got = conn.execute(
                "SELECT ts, lat, lon, speed_kmh FROM pings WHERE vehicle_id = %s "
                "AND ts >= %s AND ts < %s ORDER BY ts",
                (f"BV{v:03d}", day, day + timedelta(days=1)),
            ).fetchall()
            assert len(got) == DRIVE_S // shape.interval_s

        track()  # warm
        out["track_ms"] = 1000 * _median_s(track, 30)

    async def report() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url) as c:
            return await reports.delivery_performance(
                c, shape.first_day, shape.first_day + timedelta(days=shape.days)
            )

    out["report"] = asyncio.run(report())
    out["report_s"] = _median_s(lambda: asyncio.run(report()), 3)
    start, end = shape.first_day, shape.first_day + timedelta(days=shape.days)

    async def card(use_aggregate: bool | None = None) -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url) as c:
            return await scorecard.driver_scorecard(c, start, end, use_aggregate=use_aggregate)

    out["scorecard"] = asyncio.run(card())
    out["scorecard_s"] = _median_s(lambda: asyncio.run(card()), 3)
    with psycopg.connect(url) as conn:
        params = {"from": start, "to": end, "key": None}

        def sums(sql: str) -> Callable[[], object]:
            return lambda: conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

        sums(scorecard.EVENTS_RAW_SQL)()  # warm
        out["sums_events_ms"] = 1000 * _median_s(sums(scorecard.EVENTS_RAW_SQL), 15)
        if timescale:
            sums(scorecard.EVENTS_CAGG_SQL)()
            out["sums_cagg_ms"] = 1000 * _median_s(sums(scorecard.EVENTS_CAGG_SQL), 15)
            out["scorecard_events"] = asyncio.run(card(use_aggregate=False))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=40)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval-s", type=int, default=10, help="seconds between fixes")
    args = parser.parse_args(argv)
    shape = Shape(args.vehicles, args.days, args.interval_s)
    settings = Settings()
    server = with_dbname(settings.database_url, "postgres")
    results: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="rw-bench-tsdb-") as tmp,
        ensure_timescaledb(server, Path(tmp) / "pg") as tsdb_server,
    ):
        if tsdb_server is None:
            print("TimescaleDB is not installed on this machine: plain PostgreSQL only")
            targets = [("PostgreSQL", server, False)]
        else:  # both on one server, so only the storage differs
            targets = [("PostgreSQL", tsdb_server, False), ("TimescaleDB", tsdb_server, True)]
        for label, base, timescale in targets:
            name = f"rw_bench_{uuid.uuid4().hex[:8]}"
            url = ensure_database(base, name)
            try:
                migrate(url, timescaledb=timescale)
                results[label] = run_one(url, shape, timescale)
            finally:
                with psycopg.connect(with_dbname(base, "postgres"), autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _print(shape, results)


def _print(shape: Shape, results: dict[str, dict[str, Any]]) -> None:
    rows = next(iter(results.values()))["rows"]
    print(
        f"{shape.vehicles} vehicles x {shape.days} days, a fix every {shape.interval_s} s "
        f"for 8 h a day: {rows:,} pings, {shape.vehicles * shape.days * 34:,} events"
    )
    print(f"{'':<28}" + "".join(f"{k:>16}" for k in results))

    def line(what: str, fmt: Callable[[dict[str, Any]], str]) -> None:
        print(f"{what:<28}" + "".join(f"{fmt(r):>16}" for r in results.values()))

    line("COPY ingest (pings/s)", lambda r: f"{r['copy_rows_s']:,.0f}")
    line("bytes on disk", lambda r: f"{r['bytes'] / 2**20:,.1f} MiB")
    line(
        "  after compression",
        lambda r: f"{r['bytes_compressed'] / 2**20:,.1f} MiB" if "bytes_compressed" in r else "-",
    )
    line("  compressing took", lambda r: f"{r['compress_s']:.1f} s" if "compress_s" in r else "-")
    line("one vehicle-day track", lambda r: f"{r['track_ms']:.2f} ms")
    line(f"{shape.days}-day delivery report", lambda r: f"{r['report_s'] * 1000:,.0f} ms")
    line(f"{shape.days}-day driver scorecard", lambda r: f"{r['scorecard_s'] * 1000:,.0f} ms")
    line("  its event sums, events", lambda r: f"{r['sums_events_ms']:,.1f} ms")
    line(
        "  its event sums, aggregate",
        lambda r: f"{r['sums_cagg_ms']:,.1f} ms" if "sums_cagg_ms" in r else "-",
    )
    if len(results) == 2:
        a, b = (r["bytes"] for r in results.values())
        c = results["TimescaleDB"]["bytes_compressed"]
        print(
            f"compression: {b / c:.1f}x of TimescaleDB's row store, {a / c:.1f}x of plain PostgreSQL"
        )
        ra, rb = (dict(r["report"]) for r in results.values())
        same = {k: v for k, v in ra.items() if k != "source"} == {
            k: v for k, v in rb.items() if k != "source"
        }
        print(f"reports equal: {same} (TimescaleDB from {rb['source']})")
        ca, cb = (r["scorecard"] for r in results.values())
        cc = results["TimescaleDB"]["scorecard_events"]
        print(
            f"scorecards equal: {ca['drivers'] == cb['drivers'] == cc['drivers']} "
            f"({len(cb['drivers'])} drivers; TimescaleDB from {cb['source']}, "
            f"and from {cc['source']})"
        )


if __name__ == "__main__":
    main()
