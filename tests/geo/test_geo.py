"""geo: projection round trips, densification, cumulative distance, geodesy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.geodesy import destination, haversine_m, initial_bearing_deg
from geo.projection import (
    LocalProjection,
    _aeqd_transformer,
    cumulative_m,
    densify,
    project_point_to_polyline,
)


def test_haversine_and_destination_agree() -> None:
    lat, lon = destination(-6.2, 106.8, 90.0, 1000.0)
    assert abs(haversine_m(-6.2, 106.8, lat, lon) - 1000.0) < 0.01
    assert abs(initial_bearing_deg(-6.2, 106.8, lat, lon) - 90.0) < 0.01


def test_projection_round_trip_and_scale() -> None:
    proj = LocalProjection.centred_on(106.8, -6.2)
    lat, lon = destination(-6.2, 106.8, 30.0, 5000.0)
    x, y = proj.to_xy(np.array([lon]), np.array([lat]))
    assert (
        abs(np.hypot(x[0], y[0]) - haversine_m(-6.2, 106.8, lat, lon)) < 0.005 * 5000.0
    )  # sphere vs ellipsoid
    lo, la = proj.to_lonlat(x, y)
    assert abs(lo[0] - lon) < 1e-9 and abs(la[0] - lat) < 1e-9


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5000, 5000), st.floats(-5000, 5000)), min_size=2, max_size=8),
    st.floats(5, 200),
)
def test_densify_keeps_shape_and_length(pts: list[tuple[float, float]], step: float) -> None:
    arr = np.asarray(pts)
    x, y = densify(arr[:, 0], arr[:, 1], step)
    seg = np.hypot(np.diff(x), np.diff(y))
    assert np.all(seg <= step + 1e-6)
    assert abs(cumulative_m(x, y)[-1] - cumulative_m(arr[:, 0], arr[:, 1])[-1]) < 1e-6


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5000, 5000), st.floats(-5000, 5000)), min_size=2, max_size=8),
    st.floats(0, 1),
)
def test_point_on_polyline_has_zero_offset(pts: list[tuple[float, float]], frac: float) -> None:
    arr = np.asarray(pts)
    x, y = arr[:, 0], arr[:, 1]
    cum = cumulative_m(x, y)
    d = frac * cum[-1]
    px, py = np.interp(d, cum, x), np.interp(d, cum, y)
    m, off = project_point_to_polyline(x, y, cum, float(px), float(py))
    assert off < 1e-6 * max(1.0, cum[-1])
    assert 0.0 <= m <= cum[-1] + 1e-9


@pytest.mark.parametrize("lat0", [-6.25, 0.0, -33.9, 45.0, 70.0, 89.0])
def test_projection_matches_pyproj_aeqd_within_two_millimetres(lat0: float) -> None:
    """The Numba projection against PROJ's ellipsoidal aeqd: near the centre (the closed
    form, up to LOCAL_M), far from it (Vincenty), and across the antimeridian."""
    rng = np.random.default_rng(int(lat0 * 10) % 1000)
    for lon0 in (106.85, 179.95):
        ref = _aeqd_transformer(lon0, lat0)
        proj = LocalProjection.centred_on(lon0, lat0)
        for spread in (0.01, 0.2, 0.44, 3.0, 40.0):
            lon = lon0 + rng.uniform(-spread, spread, 4000)
            lon = (lon + 180.0) % 360.0 - 180.0
            lat = np.clip(lat0 + rng.uniform(-spread, spread, 4000), -89.9, 89.9)
            x, y = proj.to_xy(lon, lat)
            gx, gy = ref.transform(lon, lat)
            assert np.max(np.hypot(x - gx, y - gy)) < 0.002, (lon0, spread)


def test_numba_densify_and_cumulative_equal_the_numpy_formulas() -> None:
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.uniform(-300, 300, 60))
    y = np.cumsum(rng.uniform(-300, 300, 60))
    x[7], y[7] = x[6], y[6]  # a repeated point: its zero-length segment is dropped
    dx, dy = np.diff(x), np.diff(y)
    seg = np.hypot(dx, dy)
    keep = np.flatnonzero(seg > 1e-9)
    n = np.maximum(1, np.ceil(seg[keep] / 50.0).astype(np.int64))
    s = np.repeat(keep, n)
    t = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + 1) / np.repeat(n, n)
    want_x = np.concatenate([x[:1], x[s] + dx[s] * t])
    want_y = np.concatenate([y[:1], y[s] + dy[s] * t])
    got_x, got_y = densify(x, y, 50.0)
    assert np.array_equal(got_x, want_x) and np.array_equal(got_y, want_y)
    cum = np.zeros(len(got_x))
    np.cumsum(np.hypot(np.diff(got_x), np.diff(got_y)), out=cum[1:])
    assert np.array_equal(cumulative_m(got_x, got_y), cum)
