"""Replay without snapshots, one Numba call per vehicle (:func:`vehicle_items`).

What the engine does with a vehicle's pings batch by batch - they go to its earliest
trip that has not completed, the next trip takes over or gets the pings after the
current one's end, and at the end of input the trip then current gets its time-driven
events (``signal_lost``, its end for want of signal) - :func:`_run_vehicle` does over
all of a vehicle's pings in one call: a replay's pings are complete, so each is
committed in order, and the engine's events do not depend on where its batches are cut.
The rules are the engine's own: the kernels (:func:`compliance.kernels.process_pings`,
:func:`~compliance.kernels.time_check`) and the take-over watch
(:func:`compliance.takeover._watch_run`). Python makes a trip's event rows
:class:`~compliance.events.Event` values and ends the trips taken over
(:func:`compliance.takeover.end_superseded`).

Every trip's route, parameters and stops are laid end to end in flat arrays once
(:class:`_Fleet`); a vehicle's call takes its trips as indices into them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from compliance import kernels, takeover
from compliance.convert import to_events
from compliance.events import Event
from compliance.layout import (
    MAX_EVENTS_PER_PING,
    N_EVF,
    N_STOPF,
    N_STOPS,
    S_COMPLETED,
    S_COMPLETED_TS,
)
from compliance.trip import Trip, new_state
from compliance.types import PingBatch
from geo.projection import aeqd_xy

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class _Fleet:
    """Trips laid end to end: trip ``g``'s route vertices are rows ``route[g]`` to
    ``route[g + 1]`` of ``x``, ``y`` and ``cum``, its segment boxes rows ``box[g]`` on of
    ``boxes``, its stops rows ``stop[g]`` on of ``stops`` and ``ustat``, its speed limits
    ``lim[g]`` on; ``state[g]`` is its detector state."""

    x: F64
    y: F64
    cum: F64
    route: I64
    boxes: F64
    box: I64
    par: F64
    th: F64
    stops: F64
    ustat: F64
    stop: I64
    lim_from: F64
    lim_to: F64
    lim_kmh: F64
    lim: I64
    centre: F64  # (lon0, lat0) of each trip's local frame
    state: F64

    @classmethod
    def of(cls, trips: list[Trip]) -> _Fleet:
        """``trips`` laid end to end, each from a fresh state."""
        routes = [t.route for t in trips]
        n = len(trips)
        return cls(
            x=_flat([r.x_m for r in routes]),
            y=_flat([r.y_m for r in routes]),
            cum=_flat([r.cum_m for r in routes]),
            route=_offsets([len(r.x_m) for r in routes]),
            boxes=_flat([r.chunk_box_m for r in routes], 4),
            box=_offsets([len(r.chunk_box_m) for r in routes]),
            par=_rows([t.par for t in trips]),
            th=_rows([t.th_arr for t in trips]),
            stops=_flat([t.stops for t in trips], N_STOPF),
            ustat=np.zeros((sum(len(t.stops) for t in trips), N_STOPS)),
            stop=_offsets([len(t.stops) for t in trips]),
            lim_from=_flat([r.limit_from_m for r in routes]),
            lim_to=_flat([r.limit_to_m for r in routes]),
            lim_kmh=_flat([r.limit_kmh for r in routes]),
            lim=_offsets([len(r.limit_from_m) for r in routes]),
            centre=np.array([(r.projection.lon0, r.projection.lat0) for r in routes]).reshape(n, 2),
            state=np.tile(new_state(), (n, 1)),
        )

    def arrays(self) -> tuple[Any, ...]:
        """The fleet as :func:`_run_vehicle` takes it."""
        return (
            (self.x, self.y, self.cum, self.route, self.boxes, self.box),
            (self.par, self.th, self.stops, self.ustat, self.stop),
            (self.lim_from, self.lim_to, self.lim_kmh, self.lim),
            self.centre,
            self.state,
        )

    def stops_of(self, g: int) -> F64:
        return self.ustat[self.stop[g] : self.stop[g + 1]]


def _flat(parts: list[F64], width: int = 0) -> F64:
    if not parts:
        return np.empty((0, width)) if width else np.empty(0)
    return np.ascontiguousarray(np.concatenate(parts), np.float64)


def _offsets(sizes: list[int]) -> I64:
    out = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def _rows(rows: list[F64]) -> F64:
    return np.array(rows, np.float64).reshape(len(rows), -1)


def vehicle_items(
    trips_of: Callable[[str], list[Trip]],
    pings: PingBatch,
    grouped: list[tuple[str, npt.NDArray[np.intp]]],
    end_ms: int,
    emit: Callable[[list[Event]], None],
) -> None:
    """Replay ``grouped``'s vehicles (their rows of ``pings`` in ts order) through their
    trips (``trips_of``: a vehicle's trips in the order it is to drive them), the input
    ending at ``end_ms``; each trip's events go to ``emit`` in the order the engine gives
    them."""
    work = [(vid, rows, trips_of(vid)) for vid, rows in grouped]
    work = [(vid, rows, trips) for vid, rows, trips in work if trips]
    fleet_trips = [t for _vid, _rows, trips in work for t in trips]
    fleet = _Fleet.of(fleet_trips)
    arrays = fleet.arrays()
    # event rows: one buffer for every vehicle (a fresh one each cost a page-mapping
    # call and its page faults, the rows are read out before the next vehicle)
    cap = max((MAX_EVENTS_PER_PING * len(r) + 4 * len(t) + 4 for _v, r, t in work), default=0)
    ev_i = np.empty((cap, 3), np.int64)
    ev_ts = np.empty(cap, np.int64)
    ev_f = np.empty((cap, N_EVF))
    g0 = 0
    for _vid, rows, trips in work:
        n_trips = len(trips)
        tr = np.arange(g0, g0 + n_trips, dtype=np.int64)
        g0 += n_trips
        p = _unique_in_ts(pings, rows)
        rows_of = np.zeros((n_trips, 2), np.int64)
        taken = np.full((n_trips, 2), -1, np.int64)
        _run_vehicle(
            arrays, tr, p, _edges(p[0], trips), _watch_params(trips), float(end_ms),
            (ev_i, ev_ts, ev_f), rows_of, taken,
        )  # fmt: skip
        ts, lat, lon = p[0], p[1], p[2]
        for j, trip in enumerate(trips):
            g = int(tr[j])
            trip.committed = fleet.state[g]  # (the engine's trips end as the replay left them)
            trip.committed_stops = fleet.stops_of(g)
            a, b = rows_of[j]
            if b > a:
                emit(to_events(trip.plan, trip.key, int(b - a), ev_i[a:b], ev_ts[a:b], ev_f[a:b]))
            k, why = (int(v) for v in taken[j])
            if k >= 0:
                by = (takeover.ENDED_BY_NEXT_TRIP, takeover.ENDED_BY_OVERRUN)[why]
                at = (int(ts[k]), float(lat[k]), float(lon[k]))
                emit([takeover.end_superseded(trip, trips[j + 1], *at, by)])


def _unique_in_ts(pings: PingBatch, rows: npt.NDArray[np.intp]) -> tuple[Any, ...]:
    """The vehicle's pings at ``rows`` (in ts order), the first of each ts kept (as the
    engine keeps the first arrival): ts, lat, lon, speed, accuracy, heading."""
    ts = pings.ts_ms[rows]
    if len(ts) > 1:
        keep = np.ones(len(ts), bool)
        keep[1:] = ts[1:] != ts[:-1]
        if not keep.all():
            rows, ts = rows[keep], ts[keep]
    return (
        np.ascontiguousarray(ts, np.int64),
        np.ascontiguousarray(pings.lat[rows], np.float64),
        np.ascontiguousarray(pings.lon[rows], np.float64),
        np.ascontiguousarray(pings.speed_kmh[rows], np.float64),
        np.ascontiguousarray(pings.accuracy_m[rows], np.float64),
        np.ascontiguousarray(pings.heading_deg[rows], np.float64),
    )


def _edges(ts: I64, trips: list[Trip]) -> I64:
    """Where the engine's batches of these pings end (the replay gives it one batch
    from each trip's planned start on): the cut indices and the end."""
    starts = np.array([t.plan.planned_start for t in trips[1:]], np.int64)
    cuts = np.searchsorted(ts, starts)
    return np.unique(np.concatenate([cuts[(cuts > 0) & (cuts < len(ts))], [len(ts)]]))


def _watch_params(trips: list[Trip]) -> tuple[F64, F64, I64]:
    """Per trip, as the current one of its vehicle, what the watch for the next takes
    (:func:`compliance.takeover.watch_window`; the last trip's are not used)."""
    n = len(trips)
    watch_from = np.zeros(n)
    deadline = np.zeros(n)
    in_row = np.zeros(n, np.int64)
    for j in range(n - 1):
        watch_from[j], deadline[j], in_row[j] = takeover.watch_window(trips[j], trips[j + 1])
    return watch_from, deadline, in_row


@njit(cache=True, inline="always")
def _trip(route_parts, trip_parts, lims, g):
    """Trip ``g``'s route and parameters as the kernels take them."""
    x, y, cum, route, boxes, box = route_parts
    par, th, stops, _ustat, stop = trip_parts
    lim_from, lim_to, lim_kmh, lim = lims
    r0, r1, l0, l1 = route[g], route[g + 1], lim[g], lim[g + 1]
    return (
        x[r0:r1],
        y[r0:r1],
        cum[r0:r1],
        boxes[box[g] : box[g + 1]],
        par[g],
        th[g],
        stops[stop[g] : stop[g + 1]],
        lim_from[l0:l1],
        lim_to[l0:l1],
        lim_kmh[l0:l1],
    )


@njit(cache=True)
def _run_vehicle(fleet, tr, pings, edges, watch, end_ms, ev, rows_of, taken):
    """One vehicle's pings (``pings``: ts, lat, lon, speed, accuracy, heading; in ts
    order, no ts twice) through its trips ``tr`` (indices into ``fleet``, in the order it
    is to drive them), in the batches the engine would be given (``edges``: cut at the
    trips' planned starts; a trip's run over the fixes of a later trip, only for them to
    be handed over, made the work quadratic in the trips of a vehicle). ``watch``: per
    trip, what :func:`compliance.takeover.watch_window` gives for its next.

    Writes each trip's event rows to ``ev`` (rows ``rows_of[j]``: from, to) and, for a
    trip the next one took over, the ping it took over at and why (``taken[j]``: index,
    takeover._BY_*)."""
    route_parts, trip_parts, lims, centre, state = fleet
    par, th, _stops, ustat, stop = trip_parts
    watch_from, deadline, in_row = watch
    ts, lat, lon, spd, acc, hdg = pings
    ev_i, ev_ts, ev_f = ev
    n = ts.shape[0]
    n_trips = tr.shape[0]
    px = np.empty(n)
    py = np.empty(n)
    qx = np.empty(n)
    qy = np.empty(n)
    out_m = np.empty(n)
    out_off = np.empty(n)
    out_on = np.empty(n, np.int8)
    ne = 0
    j = 0
    p = 0  # the first ping not yet committed
    b = 0  # the batch's end: edges[b]
    sh_st = state[0].copy()
    sh_us = ustat[0:0].copy()
    run_n = 0
    shadow_of = -1  # the trip whose shadow sh_st is
    while j < n_trips and p < n:
        while edges[b] <= p:
            b += 1
        e = edges[b]
        m = e - p
        g = tr[j]
        aeqd_xy(lon[p:e], lat[p:e], centre[g, 0], centre[g, 1], px[:m], py[:m])
        cur = _trip(route_parts, trip_parts, lims, g)
        st = state[g]
        us = ustat[stop[g] : stop[g + 1]]
        out = (out_m[:m], out_off[:m], out_on[:m], ev_i[ne:], ev_ts[ne:], ev_f[ne:])
        k = -1
        if j + 1 < n_trips:
            h = tr[j + 1]
            if shadow_of != h:  # a fresh shadow: the next trip has had no ping
                sh_st = state[h].copy()
                sh_us = ustat[stop[h] : stop[h + 1]].copy()
                run_n = 0
                shadow_of = h
            j0 = np.searchsorted(ts[p:e], watch_from[j])
            k_time = np.searchsorted(ts[p:e], deadline[j])
            aeqd_xy(lon[p + j0 : e], lat[p + j0 : e], centre[h, 0], centre[h, 1], qx[: m - j0],
                    qy[: m - j0])  # fmt: skip
            k, why, got, run_n = takeover._watch_run(
                cur, st, us, _trip(route_parts, trip_parts, lims, h), sh_st, sh_us,
                (ts[p:e], px[:m], py[:m], qx[: m - j0], qy[: m - j0], lat[p:e], lon[p:e]),
                (spd[p:e], acc[p:e], hdg[p:e]), j0, k_time, run_n, in_row[j], out,
            )  # fmt: skip
            if k >= 0:
                taken[j, 0] = p + k
                taken[j, 1] = why
        else:
            got = kernels.process_pings(
                cur[0], cur[1], cur[2], cur[3], cur[4], cur[5], cur[6], us, cur[7], cur[8],
                cur[9], st, ts[p:e], px[:m], py[:m], lat[p:e], lon[p:e], spd[p:e], acc[p:e],
                hdg[p:e], out[0], out[1], out[2], out[3], out[4], out[5],
            )  # fmt: skip
        ne += got
        rows_of[j, 1] = ne
        if k >= 0:  # the next trip has the pings from there on
            p += k
        elif st[S_COMPLETED] > 0:  # ... or those after this one's end
            p += np.searchsorted(ts[p:e], st[S_COMPLETED_TS], side="right")
        else:
            p = e
            continue
        j += 1
        if j < n_trips:  # (its rows follow the previous trip's)
            rows_of[j, :] = ne
    if j < n_trips:  # the end of input: the trip then current, past its last ping
        g = tr[j]
        ne += kernels.time_check(
            state[g], th[g], par[g], ustat[stop[g] : stop[g + 1]], end_ms, ev_i[ne:], ev_ts[ne:],
            ev_f[ne:],
        )  # fmt: skip
        rows_of[j, 1] = ne
