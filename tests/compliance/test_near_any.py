"""compliance.kernels.near_any (the whole-route pre-check of an off-route fix) and
compliance.kernels.crosses_route (whether an off-route step crosses the route) answer as a
pass over every segment does, and compliance.route.chunk_boxes bounds every segment."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.kernels import crosses_route, near_any
from compliance.layout import CHUNK_SEGMENTS
from compliance.route import chunk_boxes
from tests import naive

_COORD = st.floats(-5_000, 5_000, allow_nan=False)


def nearest_m(x: np.ndarray, y: np.ndarray, px: float, py: float) -> float:
    """Distance from (px, py) to the polyline, every segment measured (the reference)."""
    ax, ay, dx, dy = x[:-1], y[:-1], np.diff(x), np.diff(y)
    len2 = dx * dx + dy * dy
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / np.where(len2 > 0, len2, 1.0), 0.0, 1.0)
    return float(np.hypot(ax + t * dx - px, ay + t * dy - py).min())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_COORD, _COORD), min_size=2, max_size=150),
    _COORD,
    _COORD,
    st.floats(0.0, 3_000.0),
)
def test_near_any_is_exact(
    points: list[tuple[float, float]], px: float, py: float, r: float
) -> None:
    xy = np.asarray(points)
    x, y = xy[:, 0].copy(), xy[:, 1].copy()
    boxes = chunk_boxes(x, y)
    nearest = nearest_m(x, y, px, py)
    if abs(nearest - r) > 1e-6:  # away from the rounding boundary
        assert near_any(x, y, boxes, CHUNK_SEGMENTS, px, py, r) == (nearest <= r)


@given(st.lists(st.tuples(_COORD, _COORD), min_size=2, max_size=200))
def test_every_segment_lies_in_its_box(points: list[tuple[float, float]]) -> None:
    xy = np.asarray(points)
    boxes = chunk_boxes(xy[:, 0].copy(), xy[:, 1].copy())
    assert len(boxes) == -(-(len(xy) - 1) // CHUNK_SEGMENTS)
    for i in range(len(xy) - 1):
        lo_x, lo_y, hi_x, hi_y = boxes[i // CHUNK_SEGMENTS]
        for px, py in (xy[i], xy[i + 1]):
            assert lo_x <= px <= hi_x and lo_y <= py <= hi_y


def test_far_off_a_long_route_measures_no_segment() -> None:
    """10 km of 50 m segments: a fix 300 m off is refused by the boxes alone, and one
    within the radius is found."""
    x = np.arange(0.0, 10_050.0, 50.0)
    y = np.zeros_like(x)
    boxes = chunk_boxes(x, y)
    assert not near_any(x, y, boxes, CHUNK_SEGMENTS, 5_000.0, 300.0, 30.0)
    assert near_any(x, y, boxes, CHUNK_SEGMENTS, 5_000.0, 29.0, 30.0)


_GRID = st.integers(-40, 40).map(float)  # (on a grid: touching and collinear cases occur)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_GRID, _GRID), min_size=2, max_size=150),
    st.tuples(_GRID, _GRID),
    st.tuples(_GRID, _GRID),
)
def test_crosses_route_is_exact(
    points: list[tuple[float, float]], a: tuple[float, float], b: tuple[float, float]
) -> None:
    xy = np.asarray(points)
    x, y = xy[:, 0].copy(), xy[:, 1].copy()
    got = crosses_route(x, y, chunk_boxes(x, y), CHUNK_SEGMENTS, a[0], a[1], b[0], b[1])
    assert got == naive.crosses_route(list(x), list(y), a, b)


def test_a_step_beside_a_winding_route_does_not_cross_it() -> None:
    """A zigzag route: a step across one of its legs crosses it, one beside it (however
    the legs around it face) does not, and one along a leg's own line touches it."""
    x = np.array([0.0, 100.0, 200.0, 300.0, 400.0])
    y = np.array([0.0, 100.0, 0.0, 100.0, 0.0])
    boxes = chunk_boxes(x, y)
    assert crosses_route(x, y, boxes, CHUNK_SEGMENTS, 40.0, 60.0, 60.0, 40.0)
    assert not crosses_route(x, y, boxes, CHUNK_SEGMENTS, 170.0, 60.0, 230.0, 60.0)
    assert not crosses_route(x, y, boxes, CHUNK_SEGMENTS, -50.0, 300.0, 450.0, 300.0)
    assert crosses_route(x, y, boxes, CHUNK_SEGMENTS, -50.0, -50.0, 10.0, 10.0)
