"""Trip snapshots: the live view of a trip (position, progress, schedule, ETAs).

ETAs are epoch ms; ``schedule_delay_s`` is the predicted arrival at the next stop minus
its planned arrival (or, without one, its window end), seconds; positive = behind.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from compliance import kernels
from compliance.history import SpeedProfile
from compliance.layout import (
    P_LENGTH_M,
    S_AT_STOP,
    S_COMPLETED,
    S_LAST_LAT,
    S_LAST_LON,
    S_LAST_M,
    S_LAST_OFFSET,
    S_LAST_ONROUTE,
    S_LAST_TS,
    S_N,
    S_PROGRESS,
    S_SPEED_KMH,
    S_STARTED,
    STATUS_NAMES,
    STATUS_PENDING,
    T_M,
    T_PLANNED,
    T_SERVICE_S,
    T_WIN_END,
    U_ARRIVED_TS,
    U_DEPARTED_TS,
    U_ENTER_TS,
    U_STATUS,
)
from compliance.types import StopSnapshot, TripSnapshot

if TYPE_CHECKING:
    from compliance.trip import Trip


def _ms(v: float) -> int | None:
    return int(v) if math.isfinite(v) and v > 0 else None


def _f(v: float) -> float:
    return float(v) if math.isfinite(v) else float("nan")


def _history_etas(
    trip: Trip,
    st: npt.NDArray[np.float64],
    ustat: npt.NDArray[np.float64],
    now: float,
    history: tuple[SpeedProfile, npt.NDArray[np.int64]],
    etas: npt.NDArray[np.float64],
) -> None:
    """Replace the pending stops' ETAs by ones integrated over learned speeds (the
    window calibrated for them: :data:`compliance.kernels.ETA_WINDOW_LEARNED`); a stop
    a jump of the progress passed over keeps its straight-line ETA (it lies behind the
    progress, where no learned speed leads back)."""
    profile, cells = history
    pending = np.array(
        [
            k
            for k in np.flatnonzero(ustat[:, U_STATUS] == STATUS_PENDING).tolist()
            if not kernels.passed_over(st, trip.stops, k)
        ],
        np.intp,
    )
    if not len(pending):
        return
    pos = float(st[S_PROGRESS]) if math.isfinite(st[S_PROGRESS]) else 0.0
    start = now
    at = int(st[S_AT_STOP])
    if at >= 0:  # what is left of the current stop's service
        start += max(0.0, trip.stops[at, T_SERVICE_S] * 1000.0 - (now - ustat[at, U_ENTER_TS]))
    stop_m = np.maximum.accumulate(np.maximum(trip.stops[pending, T_M], pos))
    service_ms = trip.stops[pending, T_SERVICE_S] * 1000.0
    default = float(kernels.expected_mps(st, trip.par))
    eta = profile.etas(cells, pos, start, stop_m, service_ms, default, default)
    etas[pending, 0] = eta
    for r, k in enumerate(pending):
        etas[k, 1], etas[k, 2] = kernels.eta_window(
            eta[r], now, stop_m[r] - pos, kernels.ETA_WINDOW_LEARNED
        )


def snapshot_ts_ms(trip: Trip, st: npt.NDArray[np.float64]) -> float:
    """A snapshot's default time: the last ping's ts, or the planned start before one."""
    return float(st[S_LAST_TS]) if st[S_N] > 0 else float(trip.plan.planned_start)


def build_snapshot(
    trip: Trip,
    st: npt.NDArray[np.float64],
    ustat: npt.NDArray[np.float64],
    now_ms: int | None,
    history: tuple[SpeedProfile, npt.NDArray[np.int64]] | None = None,
) -> TripSnapshot:
    """Snapshot of ``trip`` from state (``st``, ``ustat``) as of ``now_ms`` (default: the
    last ping's ts). ``history``: a speed profile and the trip's route-bin cells in it
    (ETAs from historical speeds; see :mod:`compliance.history`)."""
    n = len(trip.plan.stops)
    now = float(now_ms) if now_ms is not None else snapshot_ts_ms(trip, st)
    etas = np.full((n, 3), np.nan)
    if n:
        kernels.stop_etas(st, trip.par, trip.stops, ustat, now, etas)
        if history is not None:
            _history_etas(trip, st, ustat, now, history, etas)
    stops: list[StopSnapshot] = []
    delay: float | None = None
    for k, s in enumerate(trip.plan.stops):
        status = int(ustat[k, U_STATUS])
        stops.append(
            StopSnapshot(
                stop_id=s.stop_id,
                order_id=s.order_id,
                status=STATUS_NAMES[status],
                eta_ms=_ms(etas[k, 0]),
                eta_low_ms=_ms(etas[k, 1]),
                eta_high_ms=_ms(etas[k, 2]),
                arrived_ms=_ms(ustat[k, U_ARRIVED_TS]),
                departed_ms=_ms(ustat[k, U_DEPARTED_TS]),
            )
        )
        if delay is None and status == STATUS_PENDING and math.isfinite(etas[k, 0]):
            ref = trip.stops[k, T_PLANNED]
            if not math.isfinite(ref):
                ref = trip.stops[k, T_WIN_END]
            if math.isfinite(ref):
                delay = round(float(etas[k, 0] - ref) / 1000.0, 1)
    if st[S_COMPLETED] > 0:
        status_s = "completed"
    elif st[S_STARTED] > 0:
        status_s = "active"
    else:
        status_s = "planned"
    length = trip.par[P_LENGTH_M]
    progress = st[S_PROGRESS] if math.isfinite(st[S_PROGRESS]) else 0.0
    return TripSnapshot(
        trip_id=trip.key,
        vehicle_id=trip.plan.vehicle_id,
        ts_ms=int(now),
        lat=_f(st[S_LAST_LAT]),
        lon=_f(st[S_LAST_LON]),
        speed_kmh=_f(st[S_SPEED_KMH]),
        route_m=_f(st[S_LAST_M]),
        offset_m=_f(st[S_LAST_OFFSET]),
        on_route=bool(st[S_LAST_ONROUTE] > 0),
        progress_pct=round(float(100.0 * progress / length), 2) if length > 0 else 0.0,
        schedule_delay_s=delay,
        status=status_s,
        stops=stops,
    )
