"""compliance.kernels.near_any (the whole-route pre-check of an off-route fix) answers as
a pass over every segment does, and compliance.route.chunk_boxes bounds every segment."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.kernels import near_any
from compliance.layout import CHUNK_SEGMENTS
from compliance.route import chunk_boxes

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
