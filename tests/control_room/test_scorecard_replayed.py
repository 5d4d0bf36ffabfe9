"""The driver scorecard on a replayed simulator scenario: the same eight drivers work two
days (two seeded scenarios, six vehicles each); three of them have the simulator's
speeding habit, one stops on the way, the rest drive clean. Their trips are dispatched
through ``store.trips.save_plan`` (drivers registered by the plans), the pings run
through the engine and ``ingest.commit.commit_batch`` exactly as live
(``test_report_replayed._replay``), and the scorecard must

* rank every driver the simulator made speed below every driver it did not,
* attribute every event to the driver the simulator put on that trip, and count trips,
  stops and speeding as driven (the simulator's expected events, its true speeds),
* give each driver the on-time rate of the orders of their trips, and
* on TimescaleDB give the same figures from the continuous aggregate (real-time, and
  after it is materialised) as from plain SQL over ``events``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from simulator.drivers import Driver
from simulator.offline import run as simulate
from simulator.scenario import DEFAULT_START_MS, ScenarioConfig, Simulation
from simulator.truth import Recording, derive
from store import scorecard
from tests.conftest import pause_timescaledb_jobs, scratch_databases
from tests.control_room.test_report_replayed import _replay, _true_speeding_s

POOL = [
    Driver("DRV-01", "Budi Santoso", "speeding", 1.0),
    Driver("DRV-02", "Siti Rahma", None, 0.97),
    Driver("DRV-03", "Agus Wijaya", "speeding", 1.02),
    Driver("DRV-04", "Dewi Lestari", None, 0.95),
    Driver("DRV-05", "Rudi Hidayat", "unplanned_stop", 0.99),
    Driver("DRV-06", "Ayu Pratama", None, 1.0),
    Driver("DRV-07", "Hendra Kusuma", "speeding", 0.98),
    Driver("DRV-08", "Putri Nugroho", None, 1.01),
]
SPEEDERS = {d.driver_id for d in POOL if d.habit == "speeding"}
DAY_MS = 86_400_000


@dataclass
class Replayed:
    url: str
    on_timescale: bool
    days: list[tuple[Simulation, Recording, list[dict[str, Any]]]]  # + expected events
    start: datetime  # whole UTC days: both scenarios, and today (PODs carry the wall clock)
    end: datetime


def _day(
    seed: int, day: int, tmp: Path
) -> tuple[Simulation, Recording, list[dict[str, Any]], Path]:
    cfg = ScenarioConfig(
        vehicles=6,
        seed=seed,
        stops_per_trip=4,
        stagger_s=300.0,
        start_ms=DEFAULT_START_MS + day * DAY_MS,
        faults={"signal_loss": 0.1},  # the tracker's; the drivers bring their own habits
        id_prefix=f"SC{day}",
        drivers=POOL,
    )
    sim, rec, rows = simulate(cfg)
    expected, allowed = derive(sim, rec)
    csv = tmp / f"pings-{day}.csv"
    csv.write_text("vehicle_id,ts,lat,lon,speed,heading,accuracy\n" + "".join(rows))
    return sim, rec, expected + [dict(e, allowed=True) for e in allowed], csv


@pytest.fixture(scope="module")
def replayed(
    request: pytest.FixtureRequest,
    postgres_server_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replayed]:
    """Both days replayed into a fresh database: on TimescaleDB when the machine has it,
    else on plain PostgreSQL (then only the aggregate comparison skips)."""
    try:
        server = request.getfixturevalue("timescale_server_url")
        on_timescale = True
    except pytest.skip.Exception:
        server, on_timescale = postgres_server_url, False
    tmp = tmp_path_factory.mktemp("scorecard")
    with scratch_databases(server, migrated=True) as make:
        url = make()
        if on_timescale:  # real-time first, then materialised by hand (test 2)
            pause_timescaledb_jobs(url)
        days = []
        # (seeds whose six of eight drivers together staff all eight, two of them once)
        for day, seed in enumerate((31, 34)):
            sim, rec, expected, csv = _day(seed, day, tmp)
            pods = {s["order_id"]: "ok" for p in sim.plans for s in p["stops"]}
            asyncio.run(_replay(url, sim, csv, pods))
            days.append((sim, rec, expected))
        first = datetime.fromtimestamp(DEFAULT_START_MS / 1000, UTC)
        start = first.replace(hour=0, minute=0, second=0) - timedelta(days=1)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        yield Replayed(url, on_timescale, days, start, max(today, start) + timedelta(days=1))


def _card(url: str, start: datetime, end: datetime, **kw: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await scorecard.driver_scorecard(conn, start, end, **kw)

    return asyncio.run(go())


def test_the_drivers_made_to_speed_rank_worse(replayed: Replayed) -> None:
    card = _card(replayed.url, replayed.start, replayed.end, use_aggregate=False)
    rows = {r["driver_id"]: r for r in card["drivers"]}
    for r in card["drivers"]:  # shown with -s: the scorecard as the control room sees it
        print(
            f"{r['rank']!s:>2} {r['driver_id']} {r['name']:<14} trips={r['trips']} "
            f"stops={r['stops_served']} km={r['driven_km']:.1f} "
            f"speeding={r['speeding_episodes']}/{r['speeding_minutes']} min "
            f"({r['speeding_minutes_per_100km']}/100 km) off_route={r['off_route_minutes']} "
            f"unplanned={r['unplanned_stops']} on_time={r['on_time_rate_pct']} "
            f"penalty={r['penalty_per_100km']} score={r['score']}"
        )
    driver_of = {
        p["trip_id"]: d.driver_id
        for sim, _, _ in replayed.days
        for p, d in zip(sim.plans, sim.drivers, strict=True)
    }
    drove: Counter[str] = Counter(driver_of.values())
    assert set(rows) == set(drove) == {d.driver_id for d in POOL}, "all eight drove"
    assert min(drove.values()) == 1 and max(drove.values()) == 2

    # Attribution: the events table summed by the simulator's own trip -> driver map
    # (not by events.driver_id) gives each driver's event figures.
    with psycopg.connect(replayed.url) as conn:
        stored = conn.execute(
            "SELECT trip_id, type, coalesce((details->>'duration_s')::float8, 0) FROM events"
        ).fetchall()
        assert conn.execute(
            "SELECT count(*) FROM events WHERE driver_id IS DISTINCT FROM "
            "(SELECT driver_id FROM trips t WHERE t.trip_id = events.trip_id)"
        ).fetchone() == (0,)
    by_driver: dict[str, Counter[str]] = {d: Counter() for d in drove}
    for trip_id, type_, duration_s in stored:
        by_driver[driver_of[trip_id]][type_] += 1
        if type_ == "speeding_ended":
            by_driver[driver_of[trip_id]]["speeding_s"] += duration_s
    for driver_id, n in drove.items():
        row, mine = rows[driver_id], by_driver[driver_id]
        assert row["trips"] == mine["trip_started"] == n, driver_id  # every trip started
        assert row["stops_served"] == mine["stop_arrived"] >= 3 * n, driver_id
        assert row["speeding_episodes"] == mine["speeding"], driver_id
        assert row["speeding_minutes"] == round(round(mine["speeding_s"], 1) / 60, 2), driver_id
        assert row["unplanned_stops"] == mine["unplanned_stop"], driver_id

    # Speeding as driven: between the simulator's must and may speeding events of the
    # driver's trips, and at least the seconds its true speeds clearly spent over the
    # threshold (no upper bound from the speeds: the engine ends an episode only 2 km/h
    # under the threshold, which a truth judged at the threshold does not model).
    for driver_id in drove:
        must = may = 0
        lo_s = 0.0
        for sim, rec, expected in replayed.days:
            mine_idx = [i for i, d in enumerate(sim.drivers) if d.driver_id == driver_id]
            vehicles = {sim.plans[i]["vehicle_id"] for i in mine_idx}
            for e in expected:
                if e["type"] == "speeding" and e["vehicle_id"] in vehicles:
                    may += 1
                    must += not e.get("allowed")
            lo_s += _true_speeding_s(rec, mine_idx)[0]
        assert must <= rows[driver_id]["speeding_episodes"] <= may, driver_id
        assert rows[driver_id]["speeding_minutes"] * 60 >= lo_s, driver_id
        if driver_id in SPEEDERS:
            assert rows[driver_id]["speeding_episodes"] >= drove[driver_id], driver_id
        else:
            assert rows[driver_id]["speeding_episodes"] == 0, driver_id

    # Orders: every visited stop got its POD, so each driver's on-time rate is the share
    # of their delivered orders whose stop was reached inside its window.
    for driver_id in drove:
        assert rows[driver_id]["orders_delivered"] >= 3 * drove[driver_id], driver_id
        assert rows[driver_id]["on_time_rate_pct"] is not None

    # The ranking: every speeder below every driver without a habit, and the one who
    # stops on the way below them too (but the weights make speeding cost more).
    ranks = {d: r["rank"] for d, r in rows.items()}
    assert all(ranks.values()), "everyone drove some distance"
    clean = {d.driver_id for d in POOL if d.habit is None}
    stopper = next(d.driver_id for d in POOL if d.habit == "unplanned_stop")
    assert min(ranks[d] for d in SPEEDERS) > max(ranks[d] for d in clean), ranks
    assert ranks[stopper] > max(ranks[d] for d in clean), ranks
    assert rows[stopper]["unplanned_stops"] >= drove[stopper]
    assert all(rows[d]["score"] < 100.0 for d in SPEEDERS | {stopper})


def test_the_aggregate_gives_the_same_scorecard(replayed: Replayed) -> None:
    if not replayed.on_timescale:
        pytest.skip("TimescaleDB is not installed on this machine")
    one = sorted(SPEEDERS)[0]
    ranges = [
        (replayed.start, replayed.end, None),
        (replayed.start + timedelta(days=1), replayed.start + timedelta(days=2), None),
        (replayed.start, replayed.end, one),
    ]
    with psycopg.connect(replayed.url, autocommit=True) as conn:
        for refreshed in (False, True):
            if refreshed:
                conn.execute("CALL refresh_continuous_aggregate('kpi_daily_driver', NULL, NULL)")
                rows = conn.execute("SELECT count(*) FROM kpi_daily_driver").fetchone()
                assert rows is not None and rows[0] >= 8  # materialised: driver-days
            for start, end, driver in ranges:
                plain = _card(replayed.url, start, end, driver_id=driver, use_aggregate=False)
                chosen = _card(replayed.url, start, end, driver_id=driver)
                assert (plain["source"], chosen["source"]) == ("events", "continuous_aggregate")
                assert chosen["drivers"] == plain["drivers"], (refreshed, start, driver)
                assert plain["drivers"] and any(r["speeding_episodes"] for r in plain["drivers"])
