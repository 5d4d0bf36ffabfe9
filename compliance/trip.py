"""One trip's arrays: prepared route, parameters, committed state and pending pings.

Timestamps are epoch ms; coordinates of pending pings are kept both in degrees (for event
positions) and in the trip's local metres (for the kernels).

What a tracked vehicle costs between batches (``state_memory`` prints the breakdown):
its committed detector state and stop statuses in one float64 block, its pending pings
packed in one ``bytes`` block (:mod:`compliance.pending`), and this object. The
speculative state (committed + pending) is not kept between batches: the engine derives
it again from the committed state when the next batch arrives — a kernel run over at
most the reorder allowance's pings — instead of holding a second copy of the state for
every vehicle all the time. The prepared plan (route, stops, limits, thresholds) is
per trip; thresholds without per-trip overrides are shared by all trips.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from compliance import kernels
from compliance.config import Thresholds
from compliance.layout import (
    MAX_EVENTS_PER_PING,
    N_EVF,
    N_PARAM,
    N_STATE,
    N_STATE_V2,
    N_STOPF,
    N_STOPS,
    NEW_STATE_TAIL,
    P_CORRIDOR_M,
    P_DEFAULT_LIMIT,
    P_END_X,
    P_END_Y,
    P_LENGTH_M,
    P_PLANNED_END_MS,
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
from compliance.pending import NO_PENDING, Pending, pack, unpack
from compliance.plan import TripPlan
from compliance.route import PreparedRoute, prepare

__all__ = ["NO_PENDING", "Pending", "RunOutput", "Trip", "new_state", "trip_key"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]


def trip_key(plan: TripPlan) -> str:
    """The plan's trip_id, or a stable one derived from vehicle and planned start."""
    return plan.trip_id or f"{plan.vehicle_id}@{plan.planned_start}"


def new_state() -> F64:
    """A fresh detector state vector (see :mod:`compliance.layout`)."""
    return _FRESH_STATE.copy()


def _fresh_state() -> F64:
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
    st[N_STATE_V2:] = NEW_STATE_TAIL
    st[S_AT_STOP] = -1.0
    st[S_CAND_STOP] = -1.0
    st.flags.writeable = False
    return st


_FRESH_STATE = _fresh_state()  # (copied: a slot at a time per trip was 3 us)


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


def planned_end_ms(plan: TripPlan, route: PreparedRoute, mps: float) -> float:
    """When the plan expects the trip to end, epoch ms: the last timed stop's planned
    arrival (or window end) + the service times from it on + the rest of the route at
    the planned speed ``mps``; without timed stops, planned start + route at that speed."""
    for k in range(len(plan.stops) - 1, -1, -1):
        s = plan.stops[k]
        ref = s.planned_arrival
        if ref is None and s.window is not None:
            ref = s.window.end
        if ref is None:
            continue
        rest_m = max(0.0, route.length_m - float(route.stop_route_m[k]))
        service_s = sum(p.service_s for p in plan.stops[k:])
        return float(ref) + 1000.0 * (service_s + rest_m / mps)
    return float(plan.planned_start) + 1000.0 * route.length_m / mps


@functools.lru_cache(maxsize=64)
def _shared_thresholds_array(th: Thresholds) -> F64:
    """One kernel array per distinct thresholds, shared by the trips using them (the
    kernels only read it)."""
    return th.as_array()


@dataclass(slots=True)
class RunOutput:
    route_m: F64
    offset_m: F64
    on_route: I8
    n_events: int
    ev_i: I64
    ev_ts: I64
    ev_f: F64


#: the trip block's last slots: bookkeeping of the engine, not detector state
_B_LAST_SEQ, _B_SNAPSHOT_TS, _B_SNAPSHOT_MARKS = -3, -2, -1
_N_BOOK = 3


class Trip:
    """A trip plan prepared for the kernels, with its committed and speculative state.

    ``committed`` / ``committed_stops`` are views of one block; ``pending`` is unpacked
    from its resting form on first use in a batch and packed again by :meth:`settle`;
    ``spec`` / ``spec_stops`` (the speculative state) live only within a batch."""

    __slots__ = (
        "_block",
        "_packed",
        "_pend",
        "cancelled",
        "key",
        "par",
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
        self.th = thresholds.with_overrides(plan.thresholds) if plan.thresholds else thresholds
        self.th_arr = _shared_thresholds_array(self.th)
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
        par[P_PLANNED_END_MS] = planned_end_ms(plan, route, float(par[P_PLANNED_MPS]))
        par[P_END_X] = route.x_m[-1]
        par[P_END_Y] = route.y_m[-1]
        self.par = par
        # committed detector state, per-stop status and the trip's bookkeeping (_B_*):
        # one allocation (Python ints would cost an object each)
        self._block = np.zeros(N_STATE + n * N_STOPS + _N_BOOK)
        self._block[:N_STATE] = new_state()
        self.last_seq = -1
        self._block[_B_SNAPSHOT_TS] = -math.inf
        self.spec: F64 | None = None
        self.spec_stops: F64 | None = None
        self._pend: Pending | None = None  # in use during a batch
        self._packed: bytes | None = None  # at rest between batches
        self.cancelled = False

    # ---- state ----
    @property
    def committed(self) -> F64:
        """Committed detector state (a view: the kernels update it in place)."""
        return self._block[:N_STATE]

    @committed.setter
    def committed(self, st: F64) -> None:
        self._block[:N_STATE] = st

    @property
    def committed_stops(self) -> F64:
        """Committed per-stop status, (stops, N_STOPS) (a view, updated in place)."""
        return self._block[N_STATE:-_N_BOOK].reshape(-1, N_STOPS)

    @committed_stops.setter
    def committed_stops(self, ustat: F64) -> None:
        self._block[N_STATE:-_N_BOOK] = np.asarray(ustat).ravel()

    @property
    def last_seq(self) -> int:
        """The device's seq of the newest committed ping (-1: unknown): a pending ping
        that follows it without a gap cannot be overtaken by a late one, so it is
        committed at once instead of after the reorder allowance."""
        return int(self._block[_B_LAST_SEQ])

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        # beyond 2**53 a float64 would round it: unknown, so the pings wait (safe)
        self._block[_B_LAST_SEQ] = seq if 0 <= seq < 2**53 else -1

    @property
    def snapshot_ts(self) -> float:
        """ts of the last snapshot given out (-inf: none yet)."""
        return float(self._block[_B_SNAPSHOT_TS])

    @property
    def snapshot_marks(self) -> float:
        """Digest of that snapshot's trip and stop statuses."""
        return float(self._block[_B_SNAPSHOT_MARKS])

    def snapshot_given(self, ts_ms: int, marks: float) -> None:
        self._block[_B_SNAPSHOT_TS] = ts_ms
        self._block[_B_SNAPSHOT_MARKS] = marks

    @property
    def pending(self) -> Pending:
        """Pings not yet committed (unpacked from the resting block on first use)."""
        if self._packed is not None:
            self._pend = unpack(self._packed, self.project)
            self._packed = None
        return self._pend if self._pend is not None else NO_PENDING

    @pending.setter
    def pending(self, p: Pending) -> None:
        self._packed = None
        self._pend = p if len(p) else None

    @property
    def has_pending(self) -> bool:
        """Whether pings wait to be committed (without unpacking them)."""
        return self._packed is not None or (self._pend is not None and len(self._pend) > 0)

    def settle(self) -> None:
        """End of a batch: pending pings back to their compact block, the speculative
        state dropped (derived again from the committed state when it is next needed)."""
        if self._pend is not None:
            self._packed = pack(self._pend)
            self._pend = None
        self.spec = None
        self.spec_stops = None

    @property
    def kernel_trip(self) -> tuple[F64, ...]:
        """The route and parameters as the take-over watch takes them (x, y, cum, segment
        boxes, par, thresholds, stops, then the speed-limit ranges)."""
        r = self.route
        return (r.x_m, r.y_m, r.cum_m, r.chunk_box_m, self.par, self.th_arr, self.stops, *self.lim)

    @property
    def lim(self) -> tuple[F64, F64, F64]:
        """Speed-limit ranges: (from m, to m, km/h)."""
        r = self.route
        return (r.limit_from_m, r.limit_to_m, r.limit_kmh)

    def project(self, lat: F64, lon: F64) -> tuple[F64, F64]:
        """Degrees -> this trip's local metres."""
        return self.route.projection.to_xy(lon, lat)

    @staticmethod
    def output(n: int) -> RunOutput:
        """Empty output buffers for a run over ``n`` pings."""
        cap = MAX_EVENTS_PER_PING * n + 4
        return RunOutput(
            np.empty(n),
            np.empty(n),
            np.empty(n, np.int8),
            0,
            np.empty((cap, 3), np.int64),
            np.empty(cap, np.int64),
            np.empty((cap, N_EVF)),
        )

    def run(self, st: F64, ustat: F64, p: Pending) -> RunOutput:
        """Run the kernel over ``p`` from (``st``, ``ustat``), updating them in place."""
        out = self.output(len(p))
        r = self.route
        lim_from, lim_to, lim_kmh = self.lim
        out.n_events = int(
            kernels.process_pings(
                r.x_m,
                r.y_m,
                r.cum_m,
                r.chunk_box_m,
                self.par,
                self.th_arr,
                self.stops,
                ustat,
                lim_from,
                lim_to,
                lim_kmh,
                st,
                p.ts_ms,
                p.x_m,
                p.y_m,
                p.lat,
                p.lon,
                p.speed_kmh,
                p.accuracy_m,
                p.heading_deg,
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
        """Bytes of detector state held for this trip now: committed block, pending pings
        (packed at rest, columns within a batch) and speculative state (within a batch).
        Data only; the arrays' and this object's Python headers are not counted."""
        total = self._block.nbytes
        if self._packed is not None:
            total += len(self._packed)
        if self._pend is not None:
            total += sum(c.nbytes for c in self._pend.columns())
        if self.spec is not None and self.spec_stops is not None:
            total += self.spec.nbytes + self.spec_stops.nbytes
        return total
