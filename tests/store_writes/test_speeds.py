"""Learned speeds in the real database (store.speeds, migration 0042): what SQL learns from
stored pings equals compliance.history's own sums, runs add up, old samples fade, two
learners never count a ping twice, and the feed hands the profile to the pipelines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from compliance.history import SpeedProfile, aggregate
from ingest.speeds import SpeedFeed
from routewatch.settings import Settings
from store import speeds

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # a Monday
CENTRE = (-6.2088, 106.8456)
LONG = 1e9  # a half-life, days, under which nothing fades


def _pings(n: int, seed: int, start: datetime = T0) -> dict[str, np.ndarray]:
    """``n`` pings of 3 vehicles around CENTRE over 3 hours: some dwelling, some
    inaccurate, some without a trip."""
    rng = np.random.default_rng(seed)
    return {
        "vehicle": rng.choice(["V1", "V2", "V3"], n),
        "ts_ms": start.timestamp() * 1000 + np.sort(rng.choice(3 * 3_600_000, n, replace=False)),
        "lat": CENTRE[0] + rng.uniform(-0.006, 0.006, n),
        "lon": CENTRE[1] + rng.uniform(-0.006, 0.006, n),
        "speed_kmh": np.where(rng.random(n) < 0.2, 0.0, rng.uniform(5, 60, n)).astype(np.float32),
        "accuracy_m": np.where(rng.random(n) < 0.1, 90.0, rng.uniform(3, 20, n)),
        "trip": rng.random(n) < 0.9,
    }


def _store(db: psycopg.Connection, p: dict[str, np.ndarray]) -> None:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO pings (vehicle_id, ts, lat, lon, speed_kmh, accuracy_m, trip_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (
                    str(v),
                    datetime.fromtimestamp(t / 1000, UTC),
                    float(la),
                    float(lo),
                    float(s),
                    float(a),
                    f"T-{v}" if tr else None,
                )
                for v, t, la, lo, s, a, tr in zip(*p.values(), strict=True)
            ],
        )


def _in_memory(p: dict[str, np.ndarray]) -> SpeedProfile:
    """What compliance.history learns from the same pings (those of a trip)."""
    on = p["trip"]
    return SpeedProfile.from_cells(
        aggregate(
            p["lat"][on],
            p["lon"][on],
            p["ts_ms"][on],
            p["speed_kmh"][on].astype(np.float64) / 3.6,
            p["accuracy_m"][on],
        )
    )


async def _learn(url: str, until: datetime, half_life: float = LONG) -> speeds.Learned:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await speeds.learn(conn, until, half_life_days=half_life, first_days=30)


async def _load(url: str) -> SpeedProfile | None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await speeds.load(conn)


def _same(a: SpeedProfile | None, b: SpeedProfile) -> None:
    assert a is not None and a.cell_index.keys() == b.cell_index.keys()
    rows = [b.cell_index[k] for k in a.cell_index]
    np.testing.assert_allclose(a.mps, b.mps[rows], rtol=1e-5, equal_nan=True)


async def test_sql_learns_what_compliance_history_learns(
    db: psycopg.Connection, database_url: str
) -> None:
    p = _pings(3000, seed=1)
    _store(db, p)
    assert await _load(database_url) is None  # nothing learned yet
    done = await _learn(database_url, T0 + timedelta(hours=4))
    assert done.since == T0 + timedelta(hours=4) - timedelta(days=30) and done.cells > 0
    _same(await _load(database_url), _in_memory(p))
    # learned up to there: a second run adds nothing
    assert (await _learn(database_url, T0 + timedelta(hours=4))).since is None
    _same(await _load(database_url), _in_memory(p))


async def test_runs_add_up_and_two_learners_count_each_ping_once(
    db: psycopg.Connection, database_url: str
) -> None:
    p = _pings(3000, seed=2)
    _store(db, p)
    await _learn(database_url, T0 + timedelta(hours=1, minutes=30))
    # two processes due at once: one learns, the other finds it done
    runs = await asyncio.gather(*(_learn(database_url, T0 + timedelta(hours=4)) for _ in range(2)))
    assert sorted(r.since is None for r in runs) == [False, True]
    _same(await _load(database_url), _in_memory(p))


async def test_old_samples_fade_with_the_half_life(
    db: psycopg.Connection, database_url: str
) -> None:
    """A street driven at 10 m/s a week ago and 20 m/s today, half-life 7 days: the
    old samples count half, so the mean is (0.5 x 10 + 20) / 1.5."""
    n = 200
    lat, lon = np.full(n, CENTRE[0]), np.full(n, CENTRE[1])
    week_ago, today = T0 - timedelta(days=7), T0
    for when, kmh in ((week_ago, 36.0), (today, 72.0)):
        _store(
            db,
            {
                "vehicle": np.full(n, "V1"),
                "ts_ms": when.timestamp() * 1000 + np.arange(n) * 1000.0,
                "lat": lat,
                "lon": lon,
                "speed_kmh": np.full(n, kmh, np.float32),
                "accuracy_m": np.full(n, 5.0),
                "trip": np.ones(n, bool),
            },
        )
    await _learn(database_url, week_ago + timedelta(hours=1), half_life=7)
    until = today + timedelta(hours=1)
    assert (await _learn(database_url, until, half_life=7)).decayed
    prof = await _load(database_url)
    assert prof is not None
    # both sets fall in hour 6 of Monday (T0 and a week before are the same hour of week)
    got = float(prof.mps[0, 6])
    age_s = np.array([(until - today).total_seconds() - k for k in range(n)])
    w_new = (0.5 ** (age_s / (7 * 86400))).sum()
    w_old = (0.5 ** ((age_s + 7 * 86400) / (7 * 86400))).sum()
    assert got == pytest.approx((10.0 * w_old + 20.0 * w_new) / (w_old + w_new), rel=1e-5)
    assert 14.5 < got < 17.5


class _Pipeline:
    """What the feed needs of a pipeline: its ``use_speeds``."""

    def __init__(self) -> None:
        self.profile: SpeedProfile | None = None

    def use_speeds(self, profile: SpeedProfile | None) -> None:
        self.profile = profile


async def test_the_feed_learns_loads_and_hands_out(
    db: psycopg.Connection, database_url: str
) -> None:
    now = datetime.now(UTC)
    p = _pings(2000, seed=3, start=now - timedelta(hours=3, minutes=30))
    _store(db, p)
    pipes = [_Pipeline(), _Pipeline()]
    feed = SpeedFeed(
        Settings(database_url=database_url, speeds_learn_every_s=3600, speeds_half_life_days=LONG),
        lambda: pipes,  # type: ignore[arg-type, return-value]
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await feed.step(conn)
        first = feed.profile
        assert first is not None and all(pp.profile is first for pp in pipes)
        await feed.step(conn)  # not due again, nothing newer: the same profile stays
        assert feed.profile is first
    _same(first, _in_memory(p))
