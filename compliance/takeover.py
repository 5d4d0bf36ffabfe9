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

from compliance import kernels
from compliance.config import Thresholds
from compliance.events import Event, EventType
from compliance.layout import (
    E_PING,
    E_TYPE,
    EV_TRIP_ABANDONED,
    EV_TRIP_COMPLETED,
    EV_TRIP_ENDED_QUIET,
    EV_TRIP_STARTED,
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

#: a long batch is looked at first over this many times ``off_route_pings`` fixes (_watch)
_FIRST_LOOK = 4


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
    shadow: Shadow | None  # the shadow advanced over head
    # with k < 0, the current trip's run over all of head when the decision needed it:
    # the committed run would repeat it exactly (the kernels are deterministic)
    ran: CopyRun | None = None


def takeover_index(cur: Trip, nxt: Trip, shadow: Shadow | None, head: Pending) -> Verdict:
    """Where in ``head`` ``nxt`` takes over (:class:`Verdict`). ``cur``'s committed state
    is not changed.

    The kernels are causal (a fix's verdicts depend on the fixes up to it), so each run
    covers only the fixes the decision needs: a trip already overrun at ``k_time`` hands
    over there at the latest, and the shadow, dropped at the hand-over, stops there too
    (or does not run when too few fixes are left before it to take over first).
    """
    th = cur.th
    watch_from = nxt.plan.planned_start - th.next_trip_lead_s * 1000.0
    deadline = max(float(nxt.plan.planned_start), planned_end_ms(cur) + th.trip_overrun_s * 1000.0)
    late = np.flatnonzero(head.ts_ms >= deadline)
    k_time = int(late[0]) if len(late) else -1
    watched = np.flatnonzero(head.ts_ms >= watch_from)
    if not len(watched):
        return Verdict(-1, "", shadow)
    j0 = int(watched[0])
    sh = shadow if shadow is not None else Shadow.fresh(nxt)
    if k_time >= 0:
        # fixes j0..k_time could complete a run on the next trip's route before k_time
        space_fixes = k_time - j0 + 1
        could_space = space_fixes > 0 and sh.run_n + space_fixes >= th.off_route_pings
        cur_out = None
        if could_space or k_time > 0:
            # whether the current trip ends by itself before k_time shows by fix k_time
            cur_out = _run_copy(cur, head.select(slice(0, k_time + 1))).out
            overrun = k_time <= _last_index(cur_out, len(head))
        else:  # (fix 0: it hands over there unless it ended in the silence before)
            overrun = not kernels.abandoned_before(
                cur.committed, cur.th_arr, cur.par, float(head.ts_ms[0])
            )
        if overrun:
            # it hands over at k_time at the latest, and the shadow is dropped then
            if cur_out is not None and could_space:
                part = head.select(slice(j0, k_time + 1))
                nxt_on, started_at = _advance_shadow(sh, nxt, part)
                i_space = _space_index(sh, th, nxt_on, started_at, cur_out.on_route[j0:])
                if i_space >= 0:
                    return Verdict(j0 + i_space, ENDED_BY_NEXT_TRIP, sh)
            return Verdict(k_time, ENDED_BY_OVERRUN, sh)
    k_early, nxt_on, started_at = _watch(cur, nxt, sh, head, j0, first_look=k_time < 0)
    if k_early >= 0:
        return Verdict(k_early, ENDED_BY_NEXT_TRIP, sh)
    if k_time < 0 and (started_at < 0 or not (nxt_on[started_at:] == 1).any()):
        # the usual case, the vehicle not on the next trip yet: no fix starts a run, and
        # the current trip's own run over these pings is not needed
        if len(nxt_on):
            sh.run_n = 0
        return Verdict(-1, "", sh)
    ran = _run_copy(cur, head)
    last_k = _last_index(ran.out, len(head))
    i_space = _space_index(sh, th, nxt_on, started_at, ran.out.on_route[j0:])
    k_space = j0 + i_space if i_space >= 0 else -1
    picks = [
        (k, why)
        for k, why in ((k_space, ENDED_BY_NEXT_TRIP), (k_time, ENDED_BY_OVERRUN))
        if 0 <= k <= last_k
    ]
    if not picks:
        return Verdict(-1, "", sh, ran)
    k, why = min(picks)
    return Verdict(k, why, sh)


def _watch(
    cur: Trip, nxt: Trip, sh: Shadow, head: Pending, j0: int, first_look: bool
) -> tuple[int, npt.NDArray[np.int8], int]:
    """Advance the shadow over ``head[j0:]``: (the hand-over found by a first look, -1
    when there was none or it did not decide; the shadow's on-route verdicts and the
    fix it started at, as :func:`_advance_shadow` gives them for ``head[j0:]``).

    With ``first_look``, a long batch is looked at over its first fixes before the rest:
    a hand-over shows there as a rule (a trip's pings cut at the next one's planned start
    in replay), and the runs over the rest are then not needed. The kernels are causal,
    and a run continued over the rest is the run over all."""
    part = head if j0 == 0 else head.select(slice(j0, None))
    first = int(_FIRST_LOOK * cur.th.off_route_pings)
    if not first_look or len(part) <= 2 * first:
        return -1, *_advance_shadow(sh, nxt, part)
    nxt_on, started_at = _advance_shadow(sh, nxt, part.select(slice(0, first)))
    if started_at >= 0 and (nxt_on[started_at:] == 1).any():
        k = _early_space_index(cur, sh, head, j0, first, nxt_on, started_at)
        if k >= 0:
            return k, nxt_on, started_at
    rest_on, rest_started = _advance_shadow(sh, nxt, part.select(slice(first, None)))
    if started_at < 0 and rest_started >= 0:
        started_at = first + rest_started
    return -1, np.concatenate([nxt_on, rest_on]), started_at


def _early_space_index(
    cur: Trip,
    sh: Shadow,
    head: Pending,
    j0: int,
    first: int,
    nxt_on: npt.NDArray[np.int8],
    started_at: int,
) -> int:
    """The hand-over to the next trip within ``head``'s fixes j0..j0 + ``first`` (the
    shadow's verdicts ``nxt_on`` on them), -1 when they do not decide it: no run of the
    next trip's fixes completes there, or the current trip ends by itself there (the
    whole of ``head`` decides between the two). ``sh.run_n`` is counted on only when
    they decide (otherwise the count over the whole of ``head`` starts where it was)."""
    ran = _run_copy(cur, head.select(slice(0, j0 + first)))
    if _last_index(ran.out, len(head)) < len(head):
        return -1
    run_n = sh.run_n
    i = _space_index(sh, cur.th, nxt_on, started_at, ran.out.on_route[j0:])
    if i < 0:
        sh.run_n = run_n
        return -1
    return j0 + i


def _run_copy(cur: Trip, head: Pending) -> CopyRun:
    """The current trip's run over ``head`` on a copy of its committed state."""
    state, stops = cur.committed.copy(), cur.committed_stops.copy()
    return CopyRun(state, stops, cur.run(state, stops, head))


def _last_index(cur_out: RunOutput, n: int) -> int:
    """The last ping the current trip can hand over at: the one it completes at by
    itself, or the one before a silence it ended in (abandoned, or quiet at its end:
    it ended before that ping); ``n`` when neither is in ``cur_out``."""
    done_at = _event_ping(cur_out, EV_TRIP_COMPLETED)
    last_k = n if done_at < 0 else done_at
    for code in (EV_TRIP_ABANDONED, EV_TRIP_ENDED_QUIET):  # (ended in a silence)
        ended_at = _event_ping(cur_out, code)
        if ended_at >= 0:
            last_k = min(last_k, ended_at - 1)
    return last_k


def _advance_shadow(sh: Shadow, nxt: Trip, part: Pending) -> tuple[npt.NDArray[np.int8], int]:
    """Run the shadow over ``part``: (its on-route verdict per fix, the fix it started at,
    0 when it had started before, -1 when it has not)."""
    if not len(part):
        return np.empty(0, np.int8), 0 if sh.state[S_STARTED] > 0 else -1
    x, y = nxt.project(part.lat, part.lon)
    part = part.with_xy(x, y)
    was_started = sh.state[S_STARTED] > 0
    out = nxt.run(sh.state, sh.stops, part)
    return out.on_route, 0 if was_started else _event_ping(out, EV_TRIP_STARTED)


def _space_index(
    sh: Shadow,
    th: Thresholds,
    nxt_on: npt.NDArray[np.int8],
    started_at: int,
    cur_on: npt.NDArray[np.int8],
) -> int:
    """The first fix (index into ``nxt_on``) completing ``off_route_pings`` in a row on
    the started next trip's route and off the current one's, -1 if none; counts the run
    on in ``sh``."""
    for i in range(len(nxt_on)):
        both = started_at >= 0 and i >= started_at and nxt_on[i] == 1 and cur_on[i] == 0
        sh.run_n = sh.run_n + 1 if both else 0
        if sh.run_n >= th.off_route_pings:
            return i
    return -1


def _event_ping(out: RunOutput, code: int) -> int:
    """Ping index of the first event of kind ``code`` in a run's output, -1 if none."""
    for j in range(out.n_events):
        if int(out.ev_i[j, E_TYPE]) == code:
            return int(out.ev_i[j, E_PING])
    return -1


def end_superseded(cur: Trip, nxt: Trip, at: Pending, why: str) -> Event:
    """Mark ``cur`` completed at the first ping of ``at`` (pending stops skipped) and
    return its ``trip_completed`` event."""
    st, ustat = cur.committed, cur.committed_stops
    ts = int(at.ts_ms[0])
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
        lat=float(at.lat[0]),
        lon=float(at.lon[0]),
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
