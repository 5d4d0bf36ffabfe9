"""Bulk motion: limits, bends, acceleration, halts with dwell."""

from __future__ import annotations

import numpy as np

from simulator.faults import FaultPlan
from simulator.motion import ACCEL_MS2, BRAKE_MS2, HALT_END, HALT_STOP, PathPool, traffic_factor
from simulator.scenario import _fleet


def _l_path() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # 1 km east, then a right-angle turn and 1 km north, 50 km/h throughout
    return np.array([0.0, 1000.0, 1000.0]), np.array([0.0, 0.0, 1000.0]), np.array([50.0, 50.0])


def test_speed_respects_limit_bend_and_accel_and_halts_dwell() -> None:
    pool = PathPool.build([_l_path()])
    halts = [[(HALT_STOP, 500.0, 60.0, 0), (HALT_END, 2000.0, 10.0, -1)]]
    # 03:00 local: no rush hour, traffic factor ~1
    night_s = 1_795_300_000 - (1_795_300_000 % 86400) + 20 * 3600
    assert traffic_factor(night_s, 7.0) > 0.99
    f = _fleet(
        pool, np.array([0]), np.array([float(night_s)]), np.array([1.0]), halts, [FaultPlan()], 7.0
    )
    v, s = [], []
    t = night_s
    while t < night_s + 600 and t < f.finish_s[0]:
        f.step(t, 1.0)
        v.append(f.v_ms[0])
        s.append(f.s_m[0])
        t += 1
    v_a, s_a = np.array(v), np.array(s)
    assert v_a.max() <= 50 / 3.6 + 1e-9
    dv = np.diff(v_a)
    assert np.all(dv <= ACCEL_MS2 + 1e-9) and np.all(dv >= -BRAKE_MS2 - 1e-9)
    assert np.all(np.diff(s_a) >= 0)
    at_stop = np.flatnonzero(np.isclose(s_a, 500.0))
    assert 59 <= len(at_stop) <= 62  # halted for the 60 s dwell
    corner = np.argmin(np.abs(s_a - 1000.0))
    assert v_a[corner] < 0.6 * 50 / 3.6  # slowed for the right angle
    assert f.arrive_s[0, 1] > f.arrive_s[0, 0] + 60 and s_a[-1] == 2000.0


def test_rush_hour_slows_traffic() -> None:
    day0 = 1_795_300_000 - (1_795_300_000 % 86400)
    assert traffic_factor(day0 + (17.5 - 7) * 3600, 7.0) < 0.7  # 17:30 local
    assert traffic_factor(day0 + (8 - 7) * 3600, 7.0) < 0.8  # 08:00 local
