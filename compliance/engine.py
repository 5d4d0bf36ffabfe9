"""The compliance engine: per-vehicle trips, event-time ordering, commits and snapshots.

Event time, not wall time
-------------------------
Every vehicle's pings are processed in ts order. A ping is *committed* — run through the
detectors whose events are final — once the watermark minus the reorder allowance
(``horizon``) has passed its ts. Until then it waits in the trip's pending buffer, where a
late ping within the allowance is simply sorted into place. Events come only from
committed runs, and a committed run always sees exactly the vehicle's pings up to the
horizon in ts order, so the same pings give the same events whatever the batch
boundaries, duplicates or arrival order (within the allowance). A ping older than the
last committed ts is late: it gets no match result and does not rewind state (logged).

Pings in sequence: a tracker that numbers its fixes (``seq``) says when nothing is
missing. A pending ping whose seq follows the last committed one without a gap (and the
run of pings after it that continue the count) is committed in the batch that brings it:
no ping still in flight can sort before it, so its events are the ones the allowance
would have given, without the wait. After a gap (a lost or delayed fix, a reboot that
restarts the count) the pings wait for the missing one or for the allowance, as pings
without seq always do.

Live latency: each new ping still gets its match result (route_m, offset_m, on_route)
immediately, from a *speculative* state = committed state run over all pending pings
(continued incrementally while pings arrive in order, re-run from the committed state
only when one lands out of order). Snapshots (what the API shows) use that speculative
state too. Only events wait for the allowance (30 s by default) when pings are not in
sequence: they are never provisional, so nothing ever has to be retracted.

Snapshots (a trip's progress and stop ETAs for the API, orders and webhooks) are given
with every event of the trip and every change of a trip or stop status, otherwise at
most every ``snapshot_interval_s`` of event time: each one costs a database write per
stop and order.

``signal_lost`` fires when the horizon passes last committed ping + timeout (event ts =
that instant); if the next ping arrives first, the committed run emits the same event
with the same ts. Either way the event is identical.
"""

from __future__ import annotations

import heapq
import logging
import math
import pickle
from dataclasses import asdict

import numpy as np
import numpy.typing as npt

from compliance import kernels, takeover
from compliance.config import Thresholds
from compliance.convert import to_events
from compliance.events import Event
from compliance.grouping import groups_by_vehicle
from compliance.history import SpeedProfile, bin_midpoints_m
from compliance.layout import (
    N_EVF,
    N_STATE,
    N_STATE_V2,
    N_STATE_V4,
    N_STATE_V5,
    N_STATE_V6,
    N_STOPS,
    NEW_STATE_TAIL,
    P_PLANNED_END_MS,
    S_COMPLETED,
    S_COMPLETED_TS,
    S_LAST_TS,
    S_LOST,
    S_N,
    S_STARTED,
    U_STATUS,
)
from compliance.plan import TripPlan
from compliance.route import PreparedRoute
from compliance.snapshot import build_snapshot, snapshot_ts_ms
from compliance.trip import NO_PENDING, Pending, Trip, trip_key
from compliance.types import PingBatch, ProcessResult, TripSnapshot

log = logging.getLogger(__name__)

#: 2: pending pings carry their seq, trips the seq of their newest committed ping, plans
#: are pickled TripPlan objects (version 1: their JSON dump); 3: plans have driver_id and
#: driver_name (a version-2 plan unpickles without them and is validated again); 4: the
#: detector state has the off-route run's start, side and movement (a state of
#: layout.N_STATE_V2 values, from an older version, is padded with their fresh values);
#: 5: the stationary cluster's pending outlying fix (a version 3-4 state is
#: layout.N_STATE_V4 long); 6: pending pings carry the device's heading, the state the
#: off-route motion check's reference fix (a version-5 state is layout.N_STATE_V5 long;
#: older pending pings get NaN headings, as from a tracker that sends none); 7: where the
#: progress landed on its latest jump and when it last advanced (a version-6 state is
#: layout.N_STATE_V6 long)
_CHECKPOINT_VERSION = 7
_READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7)
_FLUSH_MS = 2**62


class Engine:
    """Pure compliance engine: (state, batch, plans, watermark) -> (state, events)."""

    def __init__(
        self, thresholds: Thresholds | None = None, speed_profile: SpeedProfile | None = None
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        # learned speeds for ETAs (the caller loads them: store.speeds)
        self.speed_profile = speed_profile
        self._route_cells: dict[str, npt.NDArray[np.int64]] = {}
        self._trips: dict[str, Trip] = {}
        self._by_vehicle: dict[str, list[str]] = {}
        self._commit_heap: list[tuple[int, str]] = []  # (first pending ts, trip key)
        # (the trip's next time-driven event - signal_lost, or its end for want of signal
        # - as of when it was armed, trip): moved on when popped if pings were committed
        # since (not pushed again per commit); pushed again only when the instant comes
        # earlier (a trip that has started can now lose its signal before its end)
        self._signal_heap: list[tuple[int, str]] = []
        self._signal_armed: dict[str, int] = {}  # trip -> the instant of its live entry
        # next trip -> its shadow over the unfinished current trip's pings (takeover)
        self._shadows: dict[str, takeover.Shadow] = {}
        self.late_pings = 0

    # ---- trips ----
    def add_trip(self, plan: TripPlan) -> None:
        """Add a trip (replacing one with the same trip_id, whose state is discarded)."""
        key = trip_key(plan)
        if key in self._trips:
            self.cancel_trip(key)
        self._trips[key] = Trip(plan, self.thresholds)
        if self.speed_profile is not None:
            self._route_cells[key] = _route_cells(self.speed_profile, self._trips[key].route)
        keys = self._by_vehicle.setdefault(plan.vehicle_id, [])
        keys.append(key)
        keys.sort(key=lambda k: (self._trips[k].plan.planned_start, k))

    def set_speed_profile(self, profile: SpeedProfile | None) -> None:
        """Use ``profile`` (newly learned speeds, or None) for every trip's ETAs from now."""
        self.speed_profile = profile
        self._route_cells = (
            {k: _route_cells(profile, t.route) for k, t in self._trips.items()}
            if profile is not None
            else {}
        )

    def cancel_trip(self, trip_id: str) -> None:
        trip = self._trips.pop(trip_id, None)
        if trip is None:
            return
        trip.cancelled = True
        self._shadows.pop(trip_id, None)
        self._route_cells.pop(trip_id, None)
        keys = self._by_vehicle.get(trip.plan.vehicle_id, [])
        if trip_id in keys:
            keys.remove(trip_id)

    def prepared_route(self, plan: TripPlan) -> PreparedRoute:
        """The prepared route of an added trip (no second preparation)."""
        return self._trips[trip_key(plan)].route

    def trips(self) -> list[str]:
        return list(self._trips)

    def vehicle_trips(self, vehicle_id: str) -> list[Trip]:
        """The vehicle's trips, in the order it is to drive them."""
        return [self._trips[k] for k in self._by_vehicle.get(vehicle_id, ())]

    def live_trips(self) -> list[str]:
        """The trips whose snapshot may say "active": started and not completed, or with
        pings waiting that may start them. The others are planned or completed, and
        stay so until a ping comes."""
        return [
            k
            for k, t in self._trips.items()
            if t.has_pending or (t.committed[S_STARTED] > 0 and t.committed[S_COMPLETED] == 0)
        ]

    def plan(self, trip_id: str) -> TripPlan | None:
        """The plan of a trip the engine holds (None for one it does not)."""
        trip = self._trips.get(trip_id)
        return None if trip is None else trip.plan

    def _current(self, vehicle_id: str) -> Trip | None:
        for key in self._by_vehicle.get(vehicle_id, ()):
            trip = self._trips[key]
            if trip.committed[S_COMPLETED] == 0:
                return trip
        return None

    def _next_after(self, trip: Trip) -> Trip | None:
        keys = self._by_vehicle.get(trip.plan.vehicle_id, [])
        if trip.key not in keys:
            return None
        i = keys.index(trip.key)
        return self._trips[keys[i + 1]] if i + 1 < len(keys) else None

    # ---- processing ----
    def process(
        self, batch: PingBatch, watermark_ms: int, snapshots: bool = True, matches: bool = True
    ) -> ProcessResult:
        """Match ``batch`` and run the detectors up to ``watermark_ms`` - allowance; with
        ``snapshots`` False (a replay that asks for none) no snapshot is built, with
        ``matches`` False no per-ping result (its arrays are empty: a replay, which
        prints events only)."""
        n = len(batch)
        k = n if matches else 0
        res = ProcessResult(
            [None] * k, np.full(k, np.nan), np.full(k, np.nan), np.full(k, -1, np.int8)
        )
        per_ping = res if matches else None
        horizon = self._horizon(watermark_ms)
        touched: dict[str, Trip] = {}
        events: list[Event] = []
        if n:
            for vehicle_id, rows in groups_by_vehicle(batch.vehicle_id, batch.ts_ms):
                trip = self._current(vehicle_id)
                if trip is None:
                    continue
                events += self._ingest(trip, batch, rows, horizon, per_ping, touched)
        res.events = _ordered(events + self._advance(horizon, per_ping, touched))
        with_events = {e.trip_id for e in res.events} if snapshots else set()
        for trip in touched.values():
            if snapshots:
                st, ustat = self._live_state(trip)
                if _snapshot_due(trip, st, ustat, trip.key in with_events):
                    res.snapshots.append(self._build_snapshot(trip, st, ustat, None))
            trip.settle()  # pending pings back to their compact block (rows forgotten)
        return res

    def tick(self, watermark_ms: int) -> list[Event]:
        """Commit what the watermark allows and emit time-driven events (signal_lost)."""
        touched: dict[str, Trip] = {}
        events = self._advance(self._horizon(watermark_ms), None, touched)
        for trip in touched.values():
            trip.settle()
        return events

    def flush(self) -> list[Event]:
        """Commit every pending ping (end of input, e.g. replay); no signal_lost check."""
        events: list[Event] = []
        for trip in list(self._trips.values()):
            if len(trip.pending):
                events += self._commit(trip, _FLUSH_MS, None, {})
        return _ordered(events)

    def _horizon(self, watermark_ms: int) -> int:
        return int(watermark_ms) - int(self.thresholds.reorder_allowance_s * 1000)

    def _ingest(
        self,
        trip: Trip,
        batch: PingBatch,
        rows: npt.NDArray[np.intp],
        horizon: int,
        res: ProcessResult | None,
        touched: dict[str, Trip],
    ) -> list[Event]:
        """Add ``rows`` to ``trip``'s pending pings; commit those in sequence at once (their
        events), give the rest speculative match results (in ``res``, if given)."""
        ts = batch.ts_ms[rows]
        # duplicates inside the batch: keep the first arrival (rows are sorted by ts, then
        # by arrival)
        keep = np.ones(len(rows), bool)
        keep[1:] = ts[1:] != ts[:-1]
        if trip.committed[S_N] > 0:
            late = ts <= trip.committed[S_LAST_TS]
            if late.any():
                self.late_pings += int(late.sum())
                log.info(
                    "late pings not replayed", extra={"trip_id": trip.key, "count": int(late.sum())}
                )
            keep &= ~late
        p = trip.pending
        if len(p):
            keep &= ~np.isin(ts, p.ts_ms)
        rows = rows[keep]
        if res is not None:
            _label_rows(res.trip_id, rows, trip.key)
        touched[trip.key] = trip
        if not len(rows):
            return []
        lat = batch.lat[rows]
        lon = batch.lon[rows]
        x, y = trip.project(lat, lon)
        new = Pending(
            batch.ts_ms[rows].astype(np.int64),
            lat,
            lon,
            x,
            y,
            batch.speed_kmh[rows].astype(np.float64),
            batch.accuracy_m[rows].astype(np.float64),
            batch.heading_deg[rows].astype(np.float64),
            batch.seq[rows].astype(np.int64),
            rows.astype(np.int64),
        )
        in_order = not len(p) or new.ts_ms[0] > p.ts_ms[-1]
        first = int(new.ts_ms[0]) if not len(p) or new.ts_ms[0] < p.ts_ms[0] else None
        if in_order:
            trip.pending = Pending.concat([p, new]) if len(p) else new
        else:
            merged = Pending.concat([p, new])
            trip.pending = merged.select(np.argsort(merged.ts_ms, kind="stable"))
        events: list[Event] = []
        in_sequence = _in_sequence_until(trip.pending, trip.last_seq)
        if in_sequence > horizon:  # (what stays pending, _commit puts on the heap)
            events = self._commit(trip, in_sequence, res, touched)
            trip.spec = None  # the committed state now runs ahead of the speculative one
            if not len(trip.pending):
                return events
        else:
            if first is not None:  # the trip's earliest pending ping is new
                heapq.heappush(self._commit_heap, (first, trip.key))
            if int(new.ts_ms[-1]) <= horizon and int(trip.pending.ts_ms[-1]) <= horizon:
                return []  # everything will be committed now; the committed run gives results
        if in_order and trip.spec is not None and trip.spec_stops is not None:
            out = trip.run(trip.spec, trip.spec_stops, new)
            sel = new
        else:
            trip.spec = trip.committed.copy()
            trip.spec_stops = trip.committed_stops.copy()
            sel = trip.pending
            out = trip.run(trip.spec, trip.spec_stops, sel)
        if res is not None:
            _write_results(res, sel, out)
        return events

    def _advance(
        self, horizon: int, res: ProcessResult | None, touched: dict[str, Trip]
    ) -> list[Event]:
        events: list[Event] = []
        while self._commit_heap and self._commit_heap[0][0] <= horizon:
            _, key = heapq.heappop(self._commit_heap)
            trip = self._trips.get(key)
            if trip is None or not len(trip.pending) or trip.pending.ts_ms[0] > horizon:
                continue
            events += self._commit(trip, horizon, res, touched)
        ev_i = np.empty((2, 3), np.int64)
        ev_ts = np.empty(2, np.int64)
        ev_f = np.empty((2, N_EVF))
        while self._signal_heap and self._signal_heap[0][0] <= horizon:
            due, key = heapq.heappop(self._signal_heap)
            if self._signal_armed.get(key) != due:
                continue  # superseded by an earlier entry
            del self._signal_armed[key]  # the next commit arms it again
            trip = self._trips.get(key)
            expected = _next_deadline(trip) if trip is not None else None
            if trip is None or expected is None:
                continue
            if expected != due:  # pings were committed since it was armed
                self._signal_armed[key] = expected
                heapq.heappush(self._signal_heap, (expected, key))
                continue
            if len(trip.pending) and trip.pending.ts_ms[0] <= due:
                continue
            ne = kernels.time_check(
                trip.committed,
                trip.th_arr,
                trip.par,
                trip.committed_stops,
                float(horizon),
                ev_i,
                ev_ts,
                ev_f,
            )
            if ne:
                events += to_events(trip.plan, trip.key, ne, ev_i, ev_ts, ev_f)
                if trip.spec is not None:
                    trip.spec = None  # re-derived from the committed state on the next ping
                touched[trip.key] = trip
                if trip.committed[S_COMPLETED] > 0:  # ended for want of signal
                    events += self._hand_over(trip, NO_PENDING, horizon, res, touched)
                self._arm_signal(trip)  # its next one (the end, after a signal_lost)
        return _ordered(events)

    def _commit(
        self, trip: Trip, horizon: int, res: ProcessResult | None, touched: dict[str, Trip]
    ) -> list[Event]:
        p = trip.pending
        cut = int(np.searchsorted(p.ts_ms, horizon, side="right"))
        if cut == 0:
            return []
        if cut == len(p):
            head, rest = p, NO_PENDING
        else:
            head, rest = p.select(slice(0, cut)), p.select(slice(cut, None))
        was_done = trip.committed[S_COMPLETED] > 0
        k, why, ran, nxt = (-1, "", None, None) if was_done else self._watch_next(trip, head)
        if k >= 0:  # the next trip takes over at head[k]: the rest is no longer this trip's
            head, rest = (
                head.select(slice(0, k)),
                Pending.concat([head.select(slice(k, None)), rest]),
            )
        events: list[Event] = []
        if len(head):
            if ran is not None:  # the watch ran it over head: take that run
                trip.committed = ran.state
                trip.committed_stops = ran.stops
                out = ran.out
            else:
                out = trip.run(trip.committed, trip.committed_stops, head)
            trip.last_seq = int(head.seq[-1])
            events = to_events(trip.plan, trip.key, out.n_events, out.ev_i, out.ev_ts, out.ev_f)
            if res is not None:
                _write_results(res, head, out)
        touched[trip.key] = trip
        trip.pending = rest
        if nxt is not None and k >= 0:
            at = (int(rest.ts_ms[0]), float(rest.lat[0]), float(rest.lon[0]))
            events.append(takeover.end_superseded(trip, nxt, *at, why))
            return events + self._hand_over(trip, NO_PENDING, horizon, res, touched)
        if len(rest):
            heapq.heappush(self._commit_heap, (int(rest.ts_ms[0]), trip.key))
        else:
            trip.spec = None
            trip.spec_stops = None
        self._arm_signal(trip)
        if not was_done and trip.committed[S_COMPLETED] > 0:
            events += self._hand_over(trip, head, horizon, res, touched)
        return events

    def _arm_signal(self, trip: Trip) -> None:
        """Watch ``trip`` for its next time-driven event after its last committed ping."""
        due = _next_deadline(trip)
        if due is None:
            return
        armed = self._signal_armed.get(trip.key)
        if armed is None or due < armed:
            self._signal_armed[trip.key] = due
            heapq.heappush(self._signal_heap, (due, trip.key))

    def _hand_over(
        self,
        trip: Trip,
        head: Pending,
        horizon: int,
        res: ProcessResult | None,
        touched: dict[str, Trip],
    ) -> list[Event]:
        """Pings after a trip completed belong to the vehicle's next trip, if any."""
        nxt = self._next_after(trip)
        if nxt is not None:
            self._shadows.pop(nxt.key, None)
        after = head.ts_ms > trip.committed[S_COMPLETED_TS]
        later = Pending.concat([head if after.all() else head.select(after), trip.pending])
        if nxt is None or not len(later):
            return []
        trip.pending = NO_PENDING
        trip.spec = None
        if res is not None:
            _label_rows(res.trip_id, later.row[later.row >= 0], nxt.key)
        x, y = nxt.project(later.lat, later.lon)
        merged = Pending.concat([nxt.pending, later.with_xy(x, y)])
        if not bool((merged.ts_ms[1:] > merged.ts_ms[:-1]).all()):
            merged = merged.select(np.argsort(merged.ts_ms, kind="stable"))
            uniq = np.ones(len(merged), bool)
            uniq[1:] = merged.ts_ms[1:] != merged.ts_ms[:-1]
            merged = merged.select(uniq)
        nxt.pending = merged
        nxt.spec = None
        heapq.heappush(self._commit_heap, (int(nxt.pending.ts_ms[0]), nxt.key))
        return self._commit(nxt, horizon, res, touched)

    def _watch_next(
        self, trip: Trip, head: Pending
    ) -> tuple[int, str, takeover.CopyRun | None, Trip | None]:
        """Where in ``head`` the vehicle's next trip takes over (see compliance.takeover),
        why, and the trip's own run over ``head`` when the watch made it (no hand-over)."""
        nxt = self._next_after(trip)
        if nxt is None:
            return -1, "", None, None
        v = takeover.takeover_index(trip, nxt, self._shadows.get(nxt.key), head)
        if v.shadow is not None:
            self._shadows[nxt.key] = v.shadow
        return v.k, v.why, v.ran, nxt

    # ---- views ----
    def snapshot(self, trip_id: str, now_ms: int | None = None) -> TripSnapshot | None:
        """Live state of a trip (speculative: includes pending pings); ETAs as of
        ``now_ms`` (default: the last ping's ts)."""
        trip = self._trips.get(trip_id)
        if trip is None:
            return None
        return self._build_snapshot(trip, *self._live_state(trip), now_ms)

    def _live_state(self, trip: Trip) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(state, stop status) of ``trip`` including its pending pings: the speculative
        state (derived from the committed one when missing), else the committed one."""
        if not len(trip.pending):
            return trip.committed, trip.committed_stops
        if trip.spec is None or trip.spec_stops is None:
            trip.spec = trip.committed.copy()
            trip.spec_stops = trip.committed_stops.copy()
            trip.run(trip.spec, trip.spec_stops, trip.pending)
        return trip.spec, trip.spec_stops

    def _build_snapshot(
        self,
        trip: Trip,
        st: npt.NDArray[np.float64],
        ustat: npt.NDArray[np.float64],
        now_ms: int | None,
    ) -> TripSnapshot:
        cells = self._route_cells.get(trip.key)
        history = (self.speed_profile, cells) if self.speed_profile and cells is not None else None
        return build_snapshot(trip, st, ustat, now_ms, history)

    def state_nbytes(self) -> int:
        """Bytes of detector state over all trips (route geometry excluded)."""
        return sum(t.state_nbytes() for t in self._trips.values())

    # ---- persistence ----
    def checkpoint(self) -> bytes:
        """Serialise plans, committed state and pending pings."""
        trips = []
        for t in self._trips.values():
            trips.append(
                {
                    # the plan object itself: pickling it is ~20x cheaper than a JSON
                    # dump, which was most of a checkpoint with 10,000 trips (a change
                    # to TripPlan's fields bumps _CHECKPOINT_VERSION)
                    "plan": t.plan,
                    "committed": t.committed,
                    "committed_stops": t.committed_stops,
                    "pending": [c.copy() for c in t.pending.columns()],
                    "last_seq": t.last_seq,
                }
            )
        data = {
            "version": _CHECKPOINT_VERSION,
            "thresholds": asdict(self.thresholds),
            "trips": trips,
            "late_pings": self.late_pings,
            "shadows": {k: (sh.state, sh.stops, sh.run_n) for k, sh in self._shadows.items()},
        }
        return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(
        cls,
        data: bytes,
        speed_profile: SpeedProfile | None = None,
        thresholds: Thresholds | None = None,
    ) -> Engine:
        """An engine equal to the one that produced ``data`` with :meth:`checkpoint`
        (with ``thresholds`` instead of the saved ones when given: a configuration that
        changed meanwhile applies from the restored state on).

        Only load checkpoints this process (or its database) wrote: the format is pickle.
        A threshold the saved engine did not have yet takes its default.
        """
        obj = pickle.loads(data)
        if obj.get("version") not in _READABLE_VERSIONS:
            raise ValueError(f"unsupported checkpoint version {obj.get('version')!r}")
        eng = cls(thresholds or Thresholds(**obj["thresholds"]), speed_profile)
        eng.late_pings = int(obj["late_pings"])
        for t in obj["trips"]:
            plan = t["plan"]
            if obj["version"] == 2:  # a TripPlan pickled before its driver fields existed
                plan = plan.model_dump()
            plan = TripPlan.model_validate(plan)
            eng.add_trip(plan)
            trip = eng._trips[trip_key(plan)]
            trip.committed = _state_now(t["committed"])
            trip.committed_stops = (
                np.asarray(t["committed_stops"], np.float64).reshape(-1, N_STOPS).copy()
            )
            cols = list(t["pending"])
            if len(cols) == 8:  # version 1: no seq (unknown, so they wait as before)
                cols.insert(7, np.full(len(cols[0]), -1, np.int64))
            if len(cols) == 9:  # versions 1-5: no heading (as a tracker sending none)
                cols.insert(7, np.full(len(cols[0]), np.nan))
            trip.pending = Pending(*cols)
            trip.last_seq = int(t.get("last_seq", -1))
            trip.pending.row[:] = -1
            if len(trip.pending):
                heapq.heappush(eng._commit_heap, (int(trip.pending.ts_ms[0]), trip.key))
            if trip.committed[S_N] > 0:
                eng._arm_signal(trip)
        for key, (state, stops, run_n) in obj.get("shadows", {}).items():
            eng._shadows[key] = takeover.Shadow(
                _state_now(state),
                np.asarray(stops, np.float64).reshape(-1, N_STOPS).copy(),
                int(run_n),
            )
        return eng


def _state_now(saved: object) -> npt.NDArray[np.float64]:
    """A saved detector state in today's layout: one from an older checkpoint version
    (N_STATE_V2, N_STATE_V4, N_STATE_V5 or N_STATE_V6 long) gets the slots added since
    with their fresh values."""
    st = np.asarray(saved, np.float64)
    if len(st) in (N_STATE_V2, N_STATE_V4, N_STATE_V5, N_STATE_V6):
        st = np.concatenate([st, NEW_STATE_TAIL[len(st) - N_STATE_V2 :]])
    if len(st) != N_STATE:
        raise ValueError(f"checkpoint state of {len(st)} values, expected {N_STATE}")
    return st.copy()


def _next_deadline(trip: Trip) -> int | None:
    """The first instant (epoch ms, rounded up: the horizon is whole ms) at which
    :func:`compliance.kernels.time_check` has an event for ``trip`` if no ping comes:
    signal_lost, else the end for want of signal; None when the trip has none ahead."""
    st = trip.committed
    if st[S_N] == 0 or st[S_COMPLETED] > 0:
        return None
    end = max(float(trip.par[P_PLANNED_END_MS]), float(st[S_LAST_TS]))
    end += trip.th.trip_abandon_s * 1000.0
    lost = float(st[S_LAST_TS]) + trip.th.signal_lost_s * 1000.0
    if st[S_LOST] == 0 and st[S_STARTED] > 0 and lost <= end:
        return math.ceil(lost)
    return math.ceil(end)


def _route_cells(profile: SpeedProfile, route: PreparedRoute) -> npt.NDArray[np.int64]:
    """The profile's row for each BIN_M bin of ``route`` (-1 where it knows nothing)."""
    mid = bin_midpoints_m(route.length_m)
    x = np.interp(mid, route.cum_m, route.x_m)
    y = np.interp(mid, route.cum_m, route.y_m)
    lon, lat = route.projection.to_lonlat(x, y)
    return profile.route_cells(lat, lon)


def _write_results(res: ProcessResult, p: Pending, out: object) -> None:
    rows = p.row
    mask = rows >= 0
    if not mask.any():
        return
    r = rows[mask]
    res.route_m[r] = out.route_m[mask]  # type: ignore[attr-defined]
    res.offset_m[r] = out.offset_m[mask]  # type: ignore[attr-defined]
    res.on_route[r] = out.on_route[mask]  # type: ignore[attr-defined]


def _label_rows(labels: list[str | None], rows: npt.NDArray[np.intp], key: str) -> None:
    """``labels[r] = key`` for every r in ``rows`` (ascending when a run is contiguous).

    One slice assignment for the common contiguous run (a batch holding one vehicle's
    pings in ts order): a per-row Python loop over NumPy indices was the engine's
    largest pure-Python cost in replay."""
    n = len(rows)
    if not n:
        return
    first = int(rows[0])
    if int(rows[-1]) - first == n - 1 and (n == 1 or bool((np.diff(rows) == 1).all())):
        labels[first : first + n] = [key] * n
        return
    for r in rows.tolist():
        labels[r] = key


def _snapshot_due(
    trip: Trip, st: npt.NDArray[np.float64], ustat: npt.NDArray[np.float64], with_events: bool
) -> bool:
    """Whether a snapshot of (``st``, ``ustat``) is given out: with an event of the trip,
    when the trip's or a stop's status moved (an order's status follows them), else once
    per interval. Decided from the state arrays, so a snapshot is built only when due."""
    ts_ms = int(snapshot_ts_ms(trip, st))
    marks = float(
        hash((st[S_STARTED] > 0, st[S_COMPLETED] > 0, ustat[:, U_STATUS].tobytes())) % 2**52
    )
    due = (
        with_events
        or marks != trip.snapshot_marks
        or ts_ms - trip.snapshot_ts >= trip.th.snapshot_interval_s * 1000.0
    )
    if due:
        trip.snapshot_given(ts_ms, marks)
    return due


def _in_sequence_until(p: Pending, last_seq: int) -> int:
    """The ts up to which ``p``'s pings follow the committed ping's ``last_seq`` without a
    gap (seq last_seq + 1, + 2, ...), or -2**63 when the first one does not.

    Those pings are complete: with sequence numbers in time order, no ping still in flight
    can sort before them, so committing them now gives the events the reorder allowance
    would have given, without its delay. Without sequence numbers (-1) pings wait."""
    if last_seq < 0 or not len(p):
        return -(2**63)
    expected = np.arange(last_seq + 1, last_seq + 1 + len(p), dtype=np.int64)
    gap = np.flatnonzero(p.seq != expected)
    k = int(gap[0]) if len(gap) else len(p)
    return int(p.ts_ms[k - 1]) if k else -(2**63)


def _ordered(events: list[Event]) -> list[Event]:
    """Events in event-time order; per trip the kernel's order is kept for equal ts."""
    return sorted(events, key=lambda e: e.ts_ms)
