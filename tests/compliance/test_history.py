"""Historical speeds per place and hour of week (compliance.history) and the ETAs they give."""

from __future__ import annotations

import numpy as np

from compliance import kernels
from compliance.engine import Engine
from compliance.history import HOURS_OF_WEEK, SpeedProfile, aggregate, hour_of_week
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
    # other hours: the cell's all-week mean (too few samples for an hour factor)
    np.testing.assert_allclose(prof.mps[:, 1:], np.repeat(prof.mps[:, :1], HOURS_OF_WEEK - 1, 1))
    thin = SpeedProfile.learn(lat[:3], lon[:3], ts[:3], spd[:3] + 5.0)
    assert np.all(np.isnan(thin.mps))  # fewer than MIN_SAMPLES per cell


def test_inaccurate_fixes_are_not_learned() -> None:
    lat, lon, ts, spd = _samples(6.0, MONDAY_MS)
    acc = np.full(len(spd), 80.0)  # worse than MAX_ACCURACY_M
    assert len(aggregate(lat, lon, ts, spd, acc)) == 0
    acc[:] = np.nan  # unknown accuracy is kept
    assert aggregate(lat, lon, ts, spd, acc).weight.sum() == len(spd)


def test_a_thin_hour_falls_back_to_the_cell_scaled_by_the_fleets_hour() -> None:
    """Rush hour is 30 % slower everywhere; one cell was only seen outside it: at rush
    hour it gets its own all-week mean x the fleet's rush-hour factor."""
    lat, lon, ts, spd = _samples(10.0, MONDAY_MS, n=2000)
    rush = MONDAY_MS + 8 * 3_600_000
    lat2, lon2, ts2, spd2 = _samples(7.0, rush, n=2000)
    lone_lat, lone_lon = np.full(20, 0.5), np.full(20, 100.5)  # far away, off hours only
    prof = SpeedProfile.learn(
        np.concatenate([lat, lat2, lone_lat]),
        np.concatenate([lon, lon2, lone_lon]),
        np.concatenate([ts, ts2, np.full(20, float(MONDAY_MS))]),
        np.concatenate([spd, spd2, np.full(20, 12.0)]),
    )
    row = int(prof.route_cells(lone_lat[:1], lone_lon[:1])[0])
    assert prof.mps[row, 0] == 12.0
    overall = (2000 * 10.0 + 2000 * 7.0 + 20 * 12.0) / 4020
    assert abs(prof.mps[row, 8] - 12.0 * 7.0 / overall) < 1e-3


def _snap(engine: Engine) -> tuple[float, float, float]:
    """(ETA, low, high) seconds from now at the end of a drive over a third of STRAIGHT."""
    p = plan(STRAIGHT, [{"stop_id": "S1", "xy": (4000.0, 0.0)}])
    engine.add_trip(p)
    ts, x, y, s = drive(STRAIGHT, [(30, 36)])
    engine.process(batch("V1", ts, x, y, s), int(ts[-1]))
    snap = engine.snapshot("T1", int(ts[-1]))
    assert snap is not None and snap.stops[0].eta_ms is not None
    stop = snap.stops[0]
    assert stop.eta_low_ms is not None and stop.eta_high_ms is not None
    assert int(ts[-1]) <= stop.eta_low_ms < stop.eta_ms < stop.eta_high_ms
    return tuple(
        (v - int(ts[-1])) / 1000.0 for v in (stop.eta_ms, stop.eta_low_ms, stop.eta_high_ms)
    )  # type: ignore[return-value]


def test_slow_history_delays_the_eta_and_another_place_changes_nothing() -> None:
    base = _snap(Engine())[0]
    slow = SpeedProfile.learn(*_samples(2.0, T0_MS))  # the street crawls at this hour
    lat, lon, ts, spd = _samples(2.0, T0_MS)
    elsewhere = SpeedProfile.learn(lat + 0.5, lon, ts, spd)
    assert _snap(Engine(speed_profile=elsewhere))[0] == base
    with_history = _snap(Engine(speed_profile=slow))[0]
    # 3700 m left: the first ~km blends towards the live speed, the rest at 2 m/s
    assert with_history > base + 600
    assert 3700 / 10.0 < with_history < 3700 / 2.0


def test_a_running_engine_takes_newly_learned_speeds() -> None:
    engine = Engine()
    base = _snap(engine)[0]
    engine.set_speed_profile(SpeedProfile.learn(*_samples(2.0, T0_MS)))
    ts = drive(STRAIGHT, [(30, 36)])[0]
    snap = engine.snapshot("T1", int(ts[-1]))
    assert snap is not None and snap.stops[0].eta_ms is not None
    assert (snap.stops[0].eta_ms - int(ts[-1])) / 1000.0 > base + 600
    engine.set_speed_profile(None)
    snap = engine.snapshot("T1", int(ts[-1]))
    assert snap is not None and (snap.stops[0].eta_ms or 0) - int(ts[-1]) == base * 1000.0


def test_the_window_widens_with_the_distance_to_go() -> None:
    now = 1_000_000.0
    for knots in (kernels.ETA_WINDOW_LIVE, kernels.ETA_WINDOW_LEARNED):
        widths = []
        for ahead_m in (0.0, 500.0, 3000.0, 9000.0, 20_000.0, 40_000.0):
            low, high = kernels.eta_window(now + 600_000.0, now, ahead_m, knots)
            assert now <= low <= now + 600_000.0 <= high
            widths.append(high - low)
        assert widths == sorted(widths)
        # beyond the last knot: in proportion to the distance
        last = knots[0, -1]
        lo1, hi1 = kernels.eta_window(now + 1e7, now, 2 * last, knots)
        lo2, hi2 = kernels.eta_window(now + 1e7, now, 4 * last, knots)
        assert abs((hi2 - lo2) - 2 * (hi1 - lo1)) < 1e-6
