"""compliance.route.MeasuredRoute: a part of a plan's route cut where the engine measures."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.route import MeasuredRoute, prepare
from geo.geodesy import haversine_m_array
from tests.compliance.builders import plan

# An out-and-back with a dog-leg: 3.6 km, the same street twice.
ROUTE_XY = [(0.0, 0.0), (1200.0, 0.0), (1200.0, 600.0), (1200.0, 0.0), (0.0, 0.0)]
STOPS = [{"stop_id": f"S{i}", "xy": xy} for i, xy in enumerate([(300.0, 5.0), (200.0, -5.0)])]


def _length_m(lonlat: np.ndarray) -> float:
    a, b = lonlat[:-1], lonlat[1:]
    return float(haversine_m_array(a[:, 1], a[:, 0], b[:, 1], b[:, 0]).sum())


def test_cut_at_the_engines_stop_positions() -> None:
    p = plan(ROUTE_XY, STOPS)
    route = prepare(p)
    first, second = route.stop_route_m  # the second one on the way back
    assert first < 1000 < 2600 < second
    for stop_m, k in ((first, 0), (second, 1)):
        part = MeasuredRoute.of(p.route).stretch(0.0, float(stop_m))
        want_x = np.interp(stop_m, route.cum_m, route.x_m)
        want_y = np.interp(stop_m, route.cum_m, route.y_m)
        lon, lat = route.projection.to_lonlat(np.array([want_x]), np.array([want_y]))
        assert abs(part[-1, 0] - lon[0]) < 1e-9 and abs(part[-1, 1] - lat[0]) < 1e-9
        assert abs(_length_m(part) - stop_m) < 0.01 * stop_m
        assert k == 0 or len(part) == 5  # the start, the three corners and the stop
    # From the first pass to the second: the dog-leg only, out and back.
    leg = MeasuredRoute.of(p.route).stretch(float(first), float(second))
    assert abs(_length_m(leg) - (second - first)) < 0.01 * (second - first)
    assert MeasuredRoute.of(p.route).stretch(2000.0, 1000.0).shape == (0, 2)


@settings(max_examples=40, deadline=None)
@given(st.floats(-100, 3700), st.floats(-100, 3700))
def test_length_is_the_distance_between(a: float, b: float) -> None:
    p = plan(ROUTE_XY)
    part = MeasuredRoute.of(p.route).stretch(a, b)
    lo, hi = max(a, 0.0), min(b, prepare(p).length_m)
    if hi <= lo:
        assert len(part) == 0
    else:
        assert len(part) >= 2
        # haversine (a sphere) against the ellipsoid's metres: within 1 %
        assert abs(_length_m(part) - (hi - lo)) < 0.01 * (hi - lo) + 0.01
