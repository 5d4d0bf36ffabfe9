"""One trip's arrays: prepared route, parameters, committed state and pending pings.

Timestamps are epoch ms; coordinates of pending pings are kept both in degrees (for event
positions) and in the trip's local metres (for the kernels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from compliance import kernels
from compliance.config import Thresholds
from compliance.layout import (
    MAX_EVENTS_PER_PING,
    N_EVF,
    N_PARAM,
    N_STATE,
    N_STOPF,
    N_STOPS,
    P_CORRIDOR_M,
    P_DEFAULT_LIMIT,
    P_LENGTH_M,
    P_PLANNED_MPS,
    RING,
    S_ANCHOR_M,
    S_AT_STOP,
    S_CAND_STOP,
    S_LAST_LAT,
    S_LAST_LON,
    S_LAST_M,
    S_LAST_OFFSET,
    S_M1,
    S_M2,
    S_RING,
    S_SP_SINCE,
    S_SP_UNDER_TS,
    S_SPEED_KMH,
    S_START_M,
    S_V_MPS,
    T_M,
    T_OFFSET,
    T_PLANNED,
    T_RADIUS,
    T_SERVICE_S,
    T_WIN_END,
    T_WIN_START,
    T_X,
    T_Y,
)
from compliance.plan import TripPlan
from compliance.route import PreparedRoute, prepare

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]


def trip_key(plan: TripPlan) -> str:
    """The plan's trip_id, or a stable one derived from vehicle and planned start."""
    return plan.trip_id or f"{plan.vehicle_id}@{plan.planned_start}"


def new_state() -> F64:
    """A fresh detector state vector (see :mod:`compliance.layout`)."""
    st = np.zeros(N_STATE, np.float64)
    for k in (
        S_ANCHOR_M,
        S_START_M,
        S_V_MPS,
        S_SP_SINCE,
        S_SPEED_KMH,
        S_LAST_M,
        S_M1,
        S_M2,
        S_LAST_OFFSET,
        S_LAST_LAT,
        S_LAST_LON,
        S_SP_UNDER_TS,
    ):
        st[k] = np.nan
    st[S_RING : S_RING + 2 * RING] = np.nan
    st[S_AT_STOP] = -1.0
    st[S_CAND_STOP] = -1.0
    return st


def _planned_mps(plan: TripPlan, route: PreparedRoute, th: Thresholds) -> float:
    """Planned speed, m/s: route distance over planned time to the last timed stop."""
    for k in range(len(plan.stops) - 1, -1, -1):
        s = plan.stops[k]
        ref = (
            s.planned_arrival
            if s.planned_arrival is not None
            else (s.window.start if s.window is not None else None)
        )
        if ref is None:
            continue
        service_s = sum(p.service_s for p in plan.stops[:k])
        travel_s = (ref - plan.planned_start) / 1000.0 - service_s
        if travel_s > 60.0 and route.stop_route_m[k] > 100.0:
            return float(np.clip(route.stop_route_m[k] / travel_s, 2.0, 40.0))
    return th.default_speed_kmh / 3.6


@dataclass(slots=True)
class Pending:
    """Pings accepted but not yet committed, sorted by ts (strictly increasing)."""

    ts_ms: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    lat: F64 = field(default_factory=lambda: np.empty(0))
    lon: F64 = field(default_factory=lambda: np.empty(0))
    x_m: F64 = field(default_factory=lambda: np.empty(0))
    y_m: F64 = field(default_factory=lambda: np.empty(0))
    speed_kmh: F64 = field(default_factory=lambda: np.empty(0))
    accuracy_m: F64 = field(default_factory=lambda: np.empty(0))
    row: I64 = field(default_factory=lambda: np.empty(0, np.int64))  # batch row, -1 older

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def columns(self) -> tuple[I64, F64, F64, F64, F64, F64, F64, I64]:
        return (
            self.ts_ms,
            self.lat,
            self.lon,
            self.x_m,
            self.y_m,
            self.speed_kmh,
            self.accuracy_m,
            self.row,
        )

    def select(self, mask: npt.NDArray[np.bool_] | slice | npt.NDArray[np.intp]) -> Pending:
        return Pending(*(c[mask] for c in self.columns()))  # type: ignore[arg-type]

    @staticmethod
    def concat(parts: list[Pending]) -> Pending:
        return Pending(
            *(np.concatenate(cs) for cs in zip(*(p.columns() for p in parts), strict=True))
        )


@dataclass(slots=True)
class RunOutput:
    route_m: F64
    offset_m: F64
    on_route: I8
    n_events: int
    ev_i: I64
    ev_ts: I64
    ev_f: F64


class Trip:
    """A trip plan prepared for the kernels, with its committed and speculative state."""

    __slots__ = (
        "cancelled",
        "committed",
        "committed_stops",
        "key",
        "lim",
        "par",
        "pending",
        "plan",
        "route",
        "spec",
        "spec_stops",
        "stops",
        "th",
        "th_arr",
    )

    def __init__(self, plan: TripPlan, thresholds: Thresholds) -> None:
        self.plan = plan
        self.key = trip_key(plan)
        self.th = thresholds.with_overrides(plan.thresholds)
        self.th_arr = self.th.as_array()
        self.route = route = prepare(plan)
        n = len(plan.stops)
        stops = np.full((n, N_STOPF), np.nan)
        for k, s in enumerate(plan.stops):
            stops[k, T_X] = route.stop_x_m[k]
            stops[k, T_Y] = route.stop_y_m[k]
            stops[k, T_M] = route.stop_route_m[k]
            stops[k, T_OFFSET] = route.stop_offset_m[k]
            stops[k, T_RADIUS] = (
                s.radius_m if "radius_m" in s.model_fields_set else self.th.stop_radius_m
            )
            stops[k, T_SERVICE_S] = s.service_s
            if s.window is not None:
                stops[k, T_WIN_START] = s.window.start
                stops[k, T_WIN_END] = s.window.end
            if s.planned_arrival is not None:
                stops[k, T_PLANNED] = s.planned_arrival
        self.stops = stops
        par = np.zeros(N_PARAM)
        par[P_LENGTH_M] = route.length_m
        corridor = plan.corridor_m if "corridor_m" in plan.model_fields_set else self.th.corridor_m
        par[P_CORRIDOR_M] = corridor
        par[P_PLANNED_MPS] = _planned_mps(plan, route, self.th)
        par[P_DEFAULT_LIMIT] = route.default_limit_kmh
        self.par = par
        self.lim = (route.limit_from_m, route.limit_to_m, route.limit_kmh)
        self.committed = new_state()
        self.committed_stops = np.zeros((n, N_STOPS))
        self.spec: F64 | None = None
        self.spec_stops: F64 | None = None
        self.pending = Pending()
        self.cancelled = False

    def project(self, lat: F64, lon: F64) -> tuple[F64, F64]:
        """Degrees -> this trip's local metres."""
        return self.route.projection.fast_to_xy(lon, lat)

    def run(self, st: F64, ustat: F64, p: Pending) -> RunOutput:
        """Run the kernel over ``p`` from (``st``, ``ustat``), updating them in place."""
        n = len(p)
        cap = MAX_EVENTS_PER_PING * n + 4
        out = RunOutput(
            np.empty(n),
            np.empty(n),
            np.empty(n, np.int8),
            0,
            np.empty((cap, 3), np.int64),
            np.empty(cap, np.int64),
            np.empty((cap, N_EVF)),
        )
        r = self.route
        out.n_events = int(
            kernels.process_pings(
                r.x_m,
                r.y_m,
                r.cum_m,
                self.par,
                self.th_arr,
                self.stops,
                ustat,
                self.lim[0],
                self.lim[1],
                self.lim[2],
                st,
                p.ts_ms,
                p.x_m,
                p.y_m,
                p.lat,
                p.lon,
                p.speed_kmh,
                p.accuracy_m,
                out.route_m,
                out.offset_m,
                out.on_route,
                out.ev_i,
                out.ev_ts,
                out.ev_f,
            )
        )
        return out

    def state_nbytes(self) -> int:
        """Bytes of detector state held for this trip (committed + speculative + pending)."""
        total = self.committed.nbytes + self.committed_stops.nbytes
        if self.spec is not None and self.spec_stops is not None:
            total += self.spec.nbytes + self.spec_stops.nbytes
        return total + sum(c.nbytes for c in self.pending.columns())
