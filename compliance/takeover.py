"""When a vehicle's next trip takes over from a trip that never completed.

A vehicle's pings go to its earliest trip that has not completed. A trip that never
completes (the driver abandoned the route, the plan was wrong, the tracker missed the
end) would otherwise keep every later ping and block the vehicle's next trip. The next
trip takes over, at a ping, when either

- the vehicle is clearly driving it: a *shadow* of the next trip (its detectors run over
  the same pings, from ``next_trip_lead_s`` before its planned start, emitting nothing)
  has started, and ``off_route_pings`` fixes in a row are on the next trip's route but
  outside the current trip's corridor; or
- the current trip has overrun: the ping is past both the next trip's planned start and
  the current trip's planned end + ``trip_overrun_s``.

The current trip then ends with ``trip_completed`` (the only end CONTRACT §4 has) whose
details say why (``ended_by``) and name the next trip; its unresolved stops are skipped.
The next trip starts from a fresh state on the pings from that one on, as after a normal
completion. Everything is decided on committed pings in event-time order, so the same
pings give the same hand-over whatever the batching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from compliance import kernels
from compliance.events import Event, EventType
from compliance.layout import (
    E_PING,
    E_TYPE,
    EV_TRIP_ABANDONED,
    EV_TRIP_COMPLETED,
    EV_TRIP_ENDED_QUIET,
    EV_TRIP_STARTED,
    MAX_EVENTS_PER_PING,
    N_EVF,
    N_STOPS,
    P_PLANNED_END_MS,
    S_COMPLETED,
    S_COMPLETED_TS,
    S_LATE_STOPS,
    S_ON_TIME,
    S_PROGRESS,
    S_START_M,
    S_STARTED,
    STATUS_PENDING,
    STATUS_SKIPPED,
    U_STATUS,
)
from compliance.trip import Pending, RunOutput, Trip, new_state

F64 = npt.NDArray[np.float64]

ENDED_BY_NEXT_TRIP = "next_trip_started"
ENDED_BY_OVERRUN = "planned_end_overrun"


@dataclass(slots=True)
class Shadow:
    """The next trip's detector state run over the current trip's pings (never emits)."""

    state: F64
    stops: F64
    run_n: int = 0  # consecutive fixes on the next trip's route, off the current one's

    @classmethod
    def fresh(cls, nxt: Trip) -> Shadow:
        return cls(new_state(), np.zeros((len(nxt.plan.stops), N_STOPS)))


def planned_end_ms(trip: Trip) -> float:
    """When the plan expects the trip to end, epoch ms (:func:`compliance.trip.planned_end_ms`)."""
    return float(trip.par[P_PLANNED_END_MS])


@dataclass(slots=True)
class CopyRun:
    """The current trip's run over pings on a copy of its committed state."""

    state: F64
    stops: F64
    out: RunOutput


@dataclass(slots=True)
class Verdict:
    """What :func:`takeover_index` found."""

    k: int  # index in head of the ping at which the next trip takes over, -1: none
    why: str  # ENDED_BY_*, "" when k < 0
    shadow: Shadow | None  # the shadow advanced over head (None: no fix was watched)
    # the current trip's run over head[:k] (all of head when k < 0): its committed run
    ran: CopyRun


def takeover_index(cur: Trip, nxt: Trip, shadow: Shadow | None, head: Pending) -> Verdict:
    """Where in ``head`` ``nxt`` takes over (:class:`Verdict`), with the current trip's
    run up to there (over all of ``head`` when it does not); ``cur``'s committed state is
    not changed (its run is on a copy), the shadow is advanced.

    Decided in one Numba call (:func:`_watch_run`): the next trip takes over at the
    first fix that completes a run on its route off the current one's, or that is past
    the deadline - unless the current trip ended first (by itself, or in the silence
    before that fix)."""
    n = len(head)
    watch_from, deadline, in_row = watch_window(cur, nxt)
    ts = head.ts_ms
    j0 = int(np.searchsorted(ts, watch_from, side="left"))
    k_time = int(np.searchsorted(ts, deadline, side="left"))
    if j0 < n:
        sh = shadow if shadow is not None else Shadow.fresh(nxt)
        qx, qy = nxt.project(head.lat[j0:], head.lon[j0:])
    else:  # (no fix to watch: no shadow yet, and none made)
        sh = Shadow(_NO_STATE, _NO_STOPS)
        qx = qy = _NO_XY
    state, stops = cur.committed.copy(), cur.committed_stops.copy()
    out = cur.output(n)
    k, code, n_events, run_n = _watch_run(
        cur.kernel_trip,
        state,
        stops,
        nxt.kernel_trip,
        sh.state,
        sh.stops,
        (ts, head.x_m, head.y_m, qx, qy, head.lat, head.lon),
        (head.speed_kmh, head.accuracy_m, head.heading_deg),
        j0,
        k_time,
        sh.run_n,
        in_row,
        (out.route_m, out.offset_m, out.on_route, out.ev_i, out.ev_ts, out.ev_f),
    )
    out.n_events = int(n_events)
    if k >= 0:
        out.route_m, out.offset_m, out.on_route = (
            out.route_m[:k],
            out.offset_m[:k],
            out.on_route[:k],
        )
    if j0 < n:
        sh.run_n = int(run_n)
    why = (ENDED_BY_NEXT_TRIP, ENDED_BY_OVERRUN)[code] if k >= 0 else ""
    return Verdict(int(k), why, sh if j0 < n else shadow, CopyRun(state, stops, out))


def watch_window(cur: Trip, nxt: Trip) -> tuple[float, float, int]:
    """(when the watch for ``nxt`` begins, the overrun deadline, epoch ms; the fixes in
    a row on its route that hand over) while ``cur`` is its vehicle's current trip."""
    th = cur.th
    watch_from = nxt.plan.planned_start - th.next_trip_lead_s * 1000.0
    deadline = max(float(nxt.plan.planned_start), planned_end_ms(cur) + th.trip_overrun_s * 1000.0)
    return watch_from, deadline, int(th.off_route_pings)


_NO_STATE = np.zeros(0)
_NO_STOPS = np.zeros((0, N_STOPS))
_NO_XY = np.zeros(0)
#: _watch_run's codes for why the next trip takes over
_BY_NEXT_TRIP, _BY_OVERRUN = 0, 1


@njit(cache=True)
def _watch_run(
    cur, st, ustat, nxt, sh_st, sh_ustat, pings, device, j0, k_time, run_n, n_in_row, out
):
    """The current trip's run over ``pings``, watched for the next trip's take-over:
    (the fix it takes over at, -1 none; why, as _BY_*; the number of the current trip's
    events written to ``out``, up to that fix; the run of fixes on the next trip's route
    off the current one's).

    ``cur``/``nxt``: a trip's route and parameters as :func:`kernels.process_pings`
    takes them; ``st``/``ustat``: the current trip's state (advanced), ``sh_st``/
    ``sh_ustat`` the shadow's (advanced over the fixes from ``j0`` on); ``pings``: ts,
    the current trip's x, y, the next one's x, y (from ``j0`` on), lat, lon; ``device``:
    speed, accuracy, heading; ``k_time``: the first fix past the overrun deadline (len:
    none).

    The kernels are causal, so each runs once over the whole batch and the decision is
    read from their outputs: the current trip can hand over up to the fix it completes
    at, or the one before a silence it ended in; the shadow, which the current trip does
    not affect, gives its on-route verdicts. Taken over at k, the current trip's run is
    made again over the fixes before k, from the state it had."""
    x, y, cum, boxes, par, th, stops, lim_from, lim_to, lim_kmh = cur
    nx, ny, ncum, nboxes, npar, nth, nstops, nlim_from, nlim_to, nlim_kmh = nxt
    ts, px, py, qx, qy, lat, lon = pings
    spd, acc, hdg = device
    out_m, out_off, out_on, ev_i, ev_ts, ev_f = out
    n = ts.shape[0]
    back_st = st.copy()
    back_ustat = ustat.copy()
    ne = kernels.process_pings(
        x, y, cum, boxes, par, th, stops, ustat, lim_from, lim_to, lim_kmh, st,
        ts, px, py, lat, lon, spd, acc, hdg, out_m, out_off, out_on, ev_i, ev_ts, ev_f,
    )  # fmt: skip
    last_k = n  # the last fix the current trip can hand over at
    for r in range(ne):
        code = ev_i[r, E_TYPE]
        if code == EV_TRIP_COMPLETED:
            last_k = min(last_k, ev_i[r, E_PING])
        elif code in (EV_TRIP_ABANDONED, EV_TRIP_ENDED_QUIET):  # (before that fix)
            last_k = min(last_k, ev_i[r, E_PING] - 1)
    k_space = -1
    if j0 < n:
        m = n - j0
        sh_on = np.empty(m, np.int8)
        cap = MAX_EVENTS_PER_PING * m + 4
        sh_ev_i = np.empty((cap, 3), np.int64)
        started_at = 0 if sh_st[S_STARTED] > 0 else -1
        sh_ne = kernels.process_pings(
            nx, ny, ncum, nboxes, npar, nth, nstops, sh_ustat, nlim_from, nlim_to, nlim_kmh,
            sh_st, ts[j0:], qx, qy, lat[j0:], lon[j0:], spd[j0:], acc[j0:], hdg[j0:],
            np.empty(m), np.empty(m), sh_on, sh_ev_i, np.empty(cap, np.int64),
            np.empty((cap, N_EVF)),
        )  # fmt: skip
        if started_at < 0:
            for r in range(sh_ne):
                if sh_ev_i[r, E_TYPE] == EV_TRIP_STARTED:
                    started_at = sh_ev_i[r, E_PING]
                    break
        for i in range(m):
            both = 0 <= started_at <= i and sh_on[i] == 1 and out_on[j0 + i] == 0
            run_n = run_n + 1 if both else 0
            if run_n >= n_in_row:
                k_space = j0 + i
                break
    k, why = -1, _BY_NEXT_TRIP
    if 0 <= k_space <= last_k:
        k = k_space
    if k_time < n and k_time <= last_k and (k < 0 or k_time < k):
        k, why = k_time, _BY_OVERRUN
    if k >= 0:  # the current trip's run up to there
        st[:] = back_st
        ustat[:] = back_ustat
        ne = kernels.process_pings(
            x, y, cum, boxes, par, th, stops, ustat, lim_from, lim_to, lim_kmh, st,
            ts[:k], px[:k], py[:k], lat[:k], lon[:k], spd[:k], acc[:k], hdg[:k],
            out_m, out_off, out_on, ev_i, ev_ts, ev_f,
        )  # fmt: skip
    return k, why, ne, run_n


def end_superseded(cur: Trip, nxt: Trip, ts: int, lat: float, lon: float, why: str) -> Event:
    """Mark ``cur`` completed at the ping at ``ts`` (``lat``, ``lon``), the next trip's
    first, (pending stops skipped) and return its ``trip_completed`` event."""
    st, ustat = cur.committed, cur.committed_stops
    ustat[ustat[:, U_STATUS] == STATUS_PENDING, U_STATUS] = STATUS_SKIPPED
    st[S_COMPLETED] = 1.0
    st[S_COMPLETED_TS] = float(ts - 1)  # the ping at ts already belongs to the next trip
    progress = float(st[S_PROGRESS]) if np.isfinite(st[S_PROGRESS]) else 0.0
    start = float(st[S_START_M]) if np.isfinite(st[S_START_M]) else progress
    return Event(
        type=EventType.TRIP_COMPLETED,
        trip_id=cur.key,
        vehicle_id=cur.plan.vehicle_id,
        ts_ms=ts,
        lat=lat,
        lon=lon,
        route_m=progress,
        details={
            "on_time_stops": int(st[S_ON_TIME]),
            "late_stops": int(st[S_LATE_STOPS]),
            "distance_m": round(max(0.0, progress - start), 1),
            "skipped_stops": int((ustat[:, U_STATUS] == STATUS_SKIPPED).sum()),
            "ended_by": why,
            "next_trip_id": nxt.key,
        },
    )
