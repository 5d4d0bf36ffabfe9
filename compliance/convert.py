"""Kernel outputs -> :class:`~compliance.events.Event` values and snapshots.

The kernels write events as rows of numbers (:mod:`compliance.layout`); this module gives
them their CONTRACT §4 ``details``. Timestamps are epoch ms; durations seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from compliance.events import Event, EventType, ms_to_rfc3339
from compliance.layout import (
    E_STOP,
    E_TYPE,
    EV_TRIP_ABANDONED,
    EV_TRIP_ENDED_QUIET,
    EVENT_CODES,
    F_LAT,
    F_LON,
    F_M,
    F_V0,
    F_V1,
    F_V2,
)
from compliance.plan import TripPlan

#: ``trip_completed.details.ended_by`` of a trip whose vehicle stopped reporting
ENDED_BY_NO_SIGNAL = "no_signal"


def _r(v: float, nd: int = 1) -> float:
    return round(float(v), nd)


def _details(code: EventType, plan: TripPlan, stop: int, v: Sequence[float]) -> dict[str, Any]:
    s = plan.stops[stop] if stop >= 0 else None
    if code is EventType.STOP_ARRIVED and s is not None:
        entered = int(v[F_V0])
        ref = (
            s.planned_arrival
            if s.planned_arrival is not None
            else (s.window.end if s.window is not None else None)
        )
        on_time = s.window is None or entered <= s.window.end
        return {
            "stop_id": s.stop_id,
            "order_id": s.order_id,
            "planned_arrival": ms_to_rfc3339(s.planned_arrival) if s.planned_arrival else None,
            "delay_s": _r((entered - ref) / 1000.0) if ref is not None else None,
            "entered": ms_to_rfc3339(entered),
            "on_time": on_time,
        }
    if code is EventType.STOP_DEPARTED and s is not None:
        return {"stop_id": s.stop_id, "order_id": s.order_id, "dwell_s": _r(v[F_V0])}
    if code is EventType.OFF_ROUTE:
        return {"offset_m": _r(v[F_V0]), "since": ms_to_rfc3339(int(v[F_V1]))}
    if code is EventType.BACK_ON_ROUTE:
        return {"off_route_s": _r(v[F_V0]), "off_route_m": _r(v[F_V1]), "max_offset_m": _r(v[F_V2])}
    if code is EventType.UNPLANNED_STOP:
        return {"since": ms_to_rfc3339(int(v[F_V1])), "radius_m": _r(v[F_V0])}
    if code is EventType.UNPLANNED_STOP_ENDED:
        return {"duration_s": _r(v[F_V0]), "since": ms_to_rfc3339(int(v[F_V1]))}
    if code is EventType.SPEEDING:
        return {
            "limit_kmh": _r(v[F_V0]),
            "speed_kmh": _r(v[F_V1]),
            "since": ms_to_rfc3339(int(v[F_V2])),
        }
    if code is EventType.SPEEDING_ENDED:
        return {"max_kmh": _r(v[F_V0]), "duration_s": _r(v[F_V1]), "distance_m": _r(v[F_V2])}
    if code is EventType.LATE and s is not None:
        return {
            "stop_id": s.stop_id,
            "order_id": s.order_id,
            "predicted_arrival": ms_to_rfc3339(int(v[F_V0])),
            "delay_s": _r(v[F_V1]),
        }
    if code is EventType.BACK_ON_SCHEDULE and s is not None:
        return {"stop_id": s.stop_id, "order_id": s.order_id, "delay_s": _r(v[F_V0])}
    if code is EventType.SIGNAL_LOST:
        return {"last_ts": ms_to_rfc3339(int(v[F_V0]))}
    if code is EventType.SIGNAL_RESTORED:
        return {"gap_s": _r(v[F_V0])}
    if code is EventType.TRIP_COMPLETED:
        return {
            "on_time_stops": int(v[F_V0]),
            "late_stops": int(v[F_V1]),
            "distance_m": _r(v[F_V2]),
        }
    return {}


def to_events(
    plan: TripPlan,
    trip_id: str,
    n: int,
    ev_i: npt.NDArray[np.int64],
    ev_ts: npt.NDArray[np.int64],
    ev_f: npt.NDArray[np.float64],
) -> list[Event]:
    """The first ``n`` kernel event rows as :class:`Event` values."""
    out: list[Event] = []
    # as Python numbers at once: reading NumPy scalars one by one cost more than the rest
    for ints, ts, row in zip(ev_i[:n].tolist(), ev_ts[:n].tolist(), ev_f[:n].tolist(), strict=True):
        raw = ints[E_TYPE]
        if raw == EV_TRIP_ABANDONED:
            code = EventType.TRIP_COMPLETED
            details = _details(code, plan, -1, row)
            # every stop neither arrived at on time nor late was skipped
            details["skipped_stops"] = (
                len(plan.stops) - details["on_time_stops"] - details["late_stops"]
            )
            details["ended_by"] = ENDED_BY_NO_SIGNAL
        elif raw == EV_TRIP_ENDED_QUIET:
            code = EventType.TRIP_COMPLETED
            details = _details(code, plan, -1, row)
        else:
            code = EVENT_CODES[raw]
            details = _details(code, plan, ints[E_STOP], row)
        m = row[F_M]
        out.append(
            Event(
                type=code,
                trip_id=trip_id,
                vehicle_id=plan.vehicle_id,
                ts_ms=ts,
                lat=row[F_LAT],
                lon=row[F_LON],
                route_m=m if math.isfinite(m) else 0.0,
                details=details,
            )
        )
    return out
