"""geo: projection round trips, densification, cumulative distance, geodesy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.geodesy import destination, haversine_m, initial_bearing_deg
from geo.projection import LocalProjection, cumulative_m, densify, project_point_to_polyline


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


def test_fast_projection_matches_pyproj_within_a_centimetre() -> None:
    rng = np.random.default_rng(0)
    box = (106.6, -6.5, 107.1, -6.0)
    proj = LocalProjection.centred_on(106.85, -6.25, box)
    lon = rng.uniform(box[0] - 0.08, box[2] + 0.08, 20000)
    lat = rng.uniform(box[1] - 0.08, box[3] + 0.08, 20000)
    x, y = proj.to_xy(lon, lat)
    fx, fy = proj.fast_to_xy(lon, lat)
    assert np.max(np.hypot(fx - x, fy - y)) < 0.01
    far_x, _ = proj.fast_to_xy(np.array([110.0]), np.array([-6.2]))
    assert abs(far_x[0] - proj.to_xy(np.array([110.0]), np.array([-6.2]))[0][0]) < 1e-6
