"""TimescaleDB earning its keep, against a real TimescaleDB (skipped where the machine
has none): hypertables with the columnstore segmented by vehicle and its policies; a
simulated day compressed, read back unchanged; retention that drops raw events while the
daily KPI aggregate keeps them, so the report still answers from it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from simulator.offline import run
from simulator.scenario import ScenarioConfig
from store import reports
from tests.conftest import MakeDatabase, pause_timescaledb_jobs

pytestmark = pytest.mark.timescaledb


def _one(conn: psycopg.Connection, query: str, *params: object) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def test_hypertables_columnstore_and_policies(timescale_database: MakeDatabase) -> None:
    with psycopg.connect(timescale_database()) as conn:
        hypertables = dict(
            conn.execute(
                "SELECT hypertable_name, compression_enabled "
                "FROM timescaledb_information.hypertables"
            ).fetchall()
        )
        assert hypertables == {
            "pings": True,
            "events": True,
            "rejected_pings": False,
            "ping_gaps": False,
        }
        settings = conn.execute(
            "SELECT hypertable::text, segmentby, orderby "
            "FROM timescaledb_information.hypertable_columnstore_settings "
            "WHERE hypertable::text IN ('pings', 'events') ORDER BY 1"
        ).fetchall()
        assert settings == [("events", "vehicle_id", "ts DESC"), ("pings", "vehicle_id", "ts DESC")]
        jobs = set(
            conn.execute(
                "SELECT proc_name, hypertable_name, coalesce(config->>'compress_after', "
                "config->>'drop_after', config->>'start_offset') "
                "FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
            ).fetchall()
        )
        assert jobs == {
            ("policy_compression", "pings", "3 days"),
            ("policy_compression", "events", "7 days"),
            ("policy_retention", "pings", "180 days"),
            ("policy_retention", "events", "400 days"),
            ("policy_retention", "rejected_pings", "30 days"),
            ("policy_retention", "ping_gaps", "30 days"),
            ("policy_retention", "kpi_daily_vehicle", "5 years"),
            ("policy_refresh_continuous_aggregate", "kpi_daily_vehicle", "35 days"),
            ("policy_retention", "kpi_daily_driver", "5 years"),
            ("policy_refresh_continuous_aggregate", "kpi_daily_driver", "35 days"),
        }


def simulated_day(vehicles: int = 12, interval_s: int = 5) -> list[tuple[object, ...]]:
    """A working day of a small simulated fleet: (vehicle_id, ts, lat, lon, speed_kmh,
    heading_deg, accuracy_m) rows."""
    cfg = ScenarioConfig(vehicles=vehicles, seed=3, interval_s=interval_s, duration_s=8 * 3600)
    _, _, lines = run(cfg)
    rows = []
    for line in lines:
        vid, ts, *nums = line.strip().split(",")
        when = datetime.fromtimestamp(int(ts) / 1000, UTC)
        rows.append((vid, when, *map(float, nums)))
    return rows


def test_a_simulated_day_compresses_and_reads_back_unchanged(
    timescale_database: MakeDatabase,
) -> None:
    rows = simulated_day()
    with psycopg.connect(timescale_database(), autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY pings (vehicle_id, ts, lat, lon, speed_kmh, heading_deg, accuracy_m) FROM STDIN"
        ) as copy:
            seen = set()
            for row in rows:  # the recording holds duplicates (re-sent fixes)
                if row[:2] not in seen:
                    seen.add(row[:2])
                    copy.write_row(row)
        track = "SELECT md5(string_agg(p::text, ',' ORDER BY vehicle_id, ts)) FROM pings p"
        before = _one(conn, track)
        chunks = _one(conn, "SELECT count(compress_chunk(c)) FROM show_chunks('pings') c")
        assert chunks >= 1
        stats = conn.execute(
            "SELECT number_compressed_chunks, before_compression_total_bytes, "
            "after_compression_total_bytes FROM hypertable_columnstore_stats('pings')"
        ).fetchone()
        assert stats is not None and stats[0] == chunks
        ratio = stats[1] / stats[2]
        print(f"{len(seen)} pings of a simulated day: {stats[1]} -> {stats[2]} bytes, {ratio:.1f}x")
        assert ratio > 3  # measured about 10x; row storage itself is the baseline
        assert _one(conn, track) == before  # the same rows, read from the columnstore


def test_retention_drops_raw_events_but_the_aggregate_keeps_them(
    timescale_database: MakeDatabase,
) -> None:
    url = timescale_database()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    old_day, recent_day = today - timedelta(days=500), today - timedelta(days=3)
    pause_timescaledb_jobs(url)  # it runs the retention job itself
    with psycopg.connect(url, autocommit=True) as conn:
        for day in (old_day, recent_day):
            for i, (kind, details) in enumerate(
                [
                    ("speeding", "{}"),
                    ("speeding_ended", '{"duration_s": 90}'),
                    ("unplanned_stop_ended", '{"duration_s": 300}'),
                ]
            ):
                conn.execute(
                    "INSERT INTO events (event_id, ts, type, trip_id, vehicle_id, severity, "
                    "details) VALUES (gen_random_uuid(), %s, %s, 'T1', 'V1', 'warning', %s)",
                    (day + timedelta(hours=9, minutes=i), kind, details),
                )
        conn.execute("CALL refresh_continuous_aggregate('kpi_daily_vehicle', NULL, NULL)")

        def report(day: datetime, use_aggregate: bool) -> dict[str, Any]:
            async def go() -> dict[str, Any]:
                async with await psycopg.AsyncConnection.connect(url) as c:
                    return await reports.delivery_performance(
                        c, day, day + timedelta(days=1), "V1", use_aggregate=use_aggregate
                    )

            return asyncio.run(go())

        before = {day: report(day, use_aggregate=False) for day in (old_day, recent_day)}
        job = _one(
            conn,
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention' AND hypertable_name = 'events'",
        )
        conn.execute("CALL run_job(%s)", (job,))
        assert (
            _one(conn, "SELECT count(*) FROM events WHERE ts < %s", old_day + timedelta(days=1))
            == 0
        )
        assert _one(conn, "SELECT count(*) FROM events") == 3  # the recent day's
        for day in (old_day, recent_day):
            from_aggregate = report(day, use_aggregate=True)
            assert from_aggregate["speeding_events"] == 1
            assert from_aggregate["speeding_minutes"] == 1.5
            assert from_aggregate["unplanned_stop_minutes"] == 5.0
            assert {k: v for k, v in from_aggregate.items() if k != "source"} == {
                k: v for k, v in before[day].items() if k != "source"
            }
        assert report(old_day, use_aggregate=False)["speeding_events"] == 0  # raw is gone
