"""Geodesy helpers on the WGS84 sphere approximation.

All angles are degrees, all distances metres. The spherical formulas err by < 0.5 %
against the ellipsoid, which is far below GPS noise; exact work uses :mod:`geo.projection`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: mean Earth radius, metres (IUGG)
EARTH_RADIUS_M = 6_371_008.8

F64 = npt.NDArray[np.float64]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two (lat, lon) points in degrees."""
    return float(
        haversine_m_array(np.array([lat1]), np.array([lon1]), np.array([lat2]), np.array([lon2]))[0]
    )


def haversine_m_array(lat1: F64, lon1: F64, lat2: F64, lon2: F64) -> F64:
    """Vectorised great-circle distance in metres (inputs in degrees, broadcastable)."""
    p1 = np.radians(lat1)
    p2 = np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dp / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def destination(
    lat: float, lon: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """Point reached from (lat, lon) after ``distance_m`` metres on ``bearing_deg`` (clockwise
    from north). Returns (lat, lon) in degrees."""
    d = distance_m / EARTH_RADIUS_M
    b = np.radians(bearing_deg)
    p1 = np.radians(lat)
    l1 = np.radians(lon)
    p2 = np.arcsin(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(b))
    l2 = l1 + np.arctan2(np.sin(b) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2))
    return float(np.degrees(p2)), float((np.degrees(l2) + 540.0) % 360.0 - 180.0)


def initial_bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing in degrees clockwise from north, in [0, 360)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return float((np.degrees(np.arctan2(y, x)) + 360.0) % 360.0)
