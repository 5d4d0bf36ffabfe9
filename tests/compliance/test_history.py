"""Historical speeds per place and hour of week (compliance.history) and the ETAs they give."""

from __future__ import annotations

import numpy as np

from compliance.engine import Engine
from compliance.history import HOURS_OF_WEEK, SpeedProfile, hour_of_week
from tests.compliance.builders import ORIGIN, T0_MS, batch, drive, plan, polyline_at

STRAIGHT = [(0.0, 0.0), (4000.0, 0.0)]
MONDAY_MS = 1_763_942_400_000  # 2025-11-24T00:00:00Z, a Monday


def test_hour_of_week_counts_from_monday_midnight_local_time() -> None:
    assert hour_of_week(MONDAY_MS + 30 * 60_000, 0.0) == 0
    assert hour_of_week(MONDAY_MS - 30 * 60_000, 0.0) == HOURS_OF_WEEK - 1  # Sunday 23:30
    assert hour_of_week(MONDAY_MS + 30 * 60_000, 7.0) == 7  # 07:30 in UTC+7


def _samples(speed_mps: float, ts_ms: int, n: int = 400) -> tuple[np.ndarray, ...]:
    """``n`` pings spread along STRAIGHT at one time, all at ``speed_mps``."""
    x, y = polyline_at(STRAIGHT, np.linspace(0.0, 4000.0, n))
    lon, lat = ORIGIN.to_lonlat(x, y)
    return lat, lon, np.full(n, float(ts_ms)), np.full(n, speed_mps)


def test_learn_averages_moving_samples_per_cell_and_hour() -> None:
    lat, lon, ts, spd = _samples(6.0, MONDAY_MS)
    spd[::2] = 10.0  # mean 8 m/s where both kinds fall
    spd[::5] = 0.0  # dwelling: left out
    prof = SpeedProfile.learn(lat, lon, ts, spd)
    known = prof.mps[:, 0][np.isfinite(prof.mps[:, 0])]
    assert len(known) and np.all((known >= 6.0) & (known <= 10.0))
    assert np.all(np.isnan(prof.mps[:, 1:]))  # other hours: nothing learned
    thin = SpeedProfile.learn(lat[:3], lon[:3], ts[:3], spd[:3] + 5.0)
    assert np.all(np.isnan(thin.mps))  # fewer than MIN_SAMPLES per cell


def _eta_s(engine: Engine) -> float:
    p = plan(STRAIGHT, [{"stop_id": "S1", "xy": (4000.0, 0.0)}])
    engine.add_trip(p)
    ts, x, y, s = drive(STRAIGHT, [(30, 36)])
    engine.process(batch("V1", ts, x, y, s), int(ts[-1]))
    snap = engine.snapshot("T1", int(ts[-1]))
    assert snap is not None and snap.stops[0].eta_ms is not None
    assert snap.stops[0].eta_low_ms < snap.stops[0].eta_ms < snap.stops[0].eta_high_ms
    return (snap.stops[0].eta_ms - int(ts[-1])) / 1000.0


def test_slow_history_delays_the_eta_and_an_unrelated_hour_changes_nothing() -> None:
    base = _eta_s(Engine())
    slow = SpeedProfile.learn(*_samples(2.0, T0_MS))  # the street crawls at this hour
    other = SpeedProfile.learn(*_samples(2.0, T0_MS + 5 * 3_600_000))
    assert _eta_s(Engine(speed_profile=other)) == base
    with_history = _eta_s(Engine(speed_profile=slow))
    # 3700 m left: the first ~km blends towards the recent 10 m/s, the rest at 2 m/s
    assert with_history > base + 600
    assert 3700 / 10.0 < with_history < 3700 / 2.0
