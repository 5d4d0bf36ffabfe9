"""Offline replay: plans + recorded pings -> the §4 events (and §8 snapshots), in order.

No broker, no database: the same :class:`~compliance.engine.Engine` as live, fed in
event-time order (with snapshots), or its kernels and take-over watch run over each
vehicle's pings in one Numba call (without: :mod:`compliance.replay_vehicles`, the same
events). The watermark is the largest ping ts seen, so the events equal what the live
pipeline would have committed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from compliance import replay_vehicles
from compliance.config import Thresholds
from compliance.csvload import CodedPingBatch, load_pings_csv
from compliance.engine import Engine
from compliance.events import Event, ms_to_rfc3339
from compliance.grouping import groups_by_vehicle
from compliance.history import SpeedCells, SpeedProfile, aggregate
from compliance.plan import TripPlan
from compliance.route import validate_geometry
from compliance.types import PingBatch, TripSnapshot

__all__ = [
    "load_pings_csv",
    "load_plans",
    "prepare_engine",
    "read_plan_objects",
    "replay",
    "replay_engine",
    "replay_lines",
    "snapshot_dict",
]

log = logging.getLogger(__name__)

Rows = npt.NDArray[np.intp]


def read_plan_objects(path: str | Path) -> list[Any]:
    """The plan JSON objects of a file holding one §3 plan object or an array of them
    (not validated: :func:`load_plans`)."""
    raw = Path(path).read_bytes()
    try:
        obj = orjson.loads(raw)  # ~4x the stdlib's speed on a large plan file
    except orjson.JSONDecodeError:
        # what orjson refuses but the stdlib reads (NaN literals, ...) keeps its old
        # handling: the same value, or the stdlib's own error message
        obj = json.loads(raw.decode("utf-8"))
    return obj if isinstance(obj, list) else [obj]


def load_plans(path: str | Path) -> list[TripPlan]:
    """One §3 plan object, or a JSON array of them, validated."""
    return [TripPlan.model_validate(o) for o in read_plan_objects(path)]


def learn_speeds(paths: list[str | Path]) -> SpeedProfile:
    """Travel speeds learned from recorded pings (CSV files as ``--pings``, whose device
    speed is used): what the live engine learns from its stored pings (``store.speeds``)."""
    cells = []
    for path in paths:
        p = load_pings_csv(path)
        cells.append(
            aggregate(p.lat, p.lon, p.ts_ms.astype(np.float64), p.speed_kmh / 3.6, p.accuracy_m)
        )
    return SpeedProfile.from_cells(SpeedCells.concat(cells))


def snapshot_dict(snap: TripSnapshot, ts_ms: int) -> dict[str, Any]:
    """The CONTRACT §8 snapshot line for ``snap`` as of ``ts_ms``."""

    def f(v: float) -> float | None:
        return round(v, 1) if np.isfinite(v) else None

    def t(v: int | None) -> str | None:
        return ms_to_rfc3339(v) if v is not None else None

    return {
        "type": "snapshot",
        "trip_id": snap.trip_id,
        "vehicle_id": snap.vehicle_id,
        "ts": ms_to_rfc3339(ts_ms),
        "route_m": f(snap.route_m),
        "offset_m": f(snap.offset_m),
        "on_route": snap.on_route,
        "schedule_delay_s": snap.schedule_delay_s,
        "etas": [
            {
                "stop_id": s.stop_id,
                "eta": t(s.eta_ms),
                "eta_low": t(s.eta_low_ms),
                "eta_high": t(s.eta_high_ms),
            }
            for s in snap.stops
            if s.eta_ms is not None
        ],
    }


def prepare_engine(
    plans: list[TripPlan],
    thresholds: Thresholds | None = None,
    speed_profile: SpeedProfile | None = None,
) -> Engine:
    """An engine with every plan added; plan geometry problems are logged as warnings."""
    engine, problems = prepare_engine_quietly(plans, thresholds, speed_profile)
    for _k, label, problem in problems:
        log.warning("plan %s: %s", label, problem)
    return engine


def prepare_engine_quietly(
    plans: list[TripPlan],
    thresholds: Thresholds | None = None,
    speed_profile: SpeedProfile | None = None,
) -> tuple[Engine, list[tuple[int, str, str]]]:
    """:func:`prepare_engine`, its geometry problems returned (plan index, plan label,
    problem) instead of logged."""
    engine = Engine(thresholds, speed_profile)
    problems = []
    for k, p in enumerate(plans):
        engine.add_trip(p)
        route = engine.prepared_route(p)
        for problem in validate_geometry(p, route):
            problems.append((k, p.trip_id or p.vehicle_id, problem))
    return engine, problems


def replay(
    plans: list[TripPlan],
    pings: PingBatch,
    snapshot_s: float | None = None,
    thresholds: Thresholds | None = None,
    speed_profile: SpeedProfile | None = None,
) -> Iterator[dict[str, Any]]:
    """§4 event dicts (and, every ``snapshot_s`` of event time, §8 snapshot dicts), in
    event-time order (a snapshot follows the events of its instant).

    Input is complete, so every ping is committed and the final watermark is the last ts
    seen (a trip whose pings stop >= signal timeout before it gets ``signal_lost``)."""
    return replay_engine(prepare_engine(plans, thresholds, speed_profile), pings, snapshot_s)


def replay_engine(
    engine: Engine, pings: PingBatch, snapshot_s: float | None = None
) -> Iterator[dict[str, Any]]:
    """:func:`replay` on an engine already holding the plans (:func:`prepare_engine`)."""
    for *_, obj in _items(engine, pings, snapshot_s):
        yield obj


def replay_lines(
    plans: Sequence[TripPlan | Any],
    pings: PingBatch,
    snapshot_s: float | None = None,
    thresholds: Thresholds | None = None,
    speed_profile: SpeedProfile | None = None,
    workers: int = 1,
) -> Iterator[bytes]:
    """:func:`replay`'s objects as JSON lines (what ``routewatch replay`` prints).

    ``plans``: :class:`TripPlan` objects or plan JSON objects (:func:`read_plan_objects`),
    validated before any line is given (the first invalid one raises, as
    ``TripPlan.model_validate``). ``workers`` > 1: the vehicles are split among that
    many forked processes (:mod:`compliance.replay_workers`); the lines are the same
    whatever the count."""
    if workers > 1 and len(pings):
        from compliance import replay_workers  # (it builds on this module)

        split = replay_workers.replay_lines(
            plans, pings, workers, thresholds, speed_profile, snapshot_s
        )
        if split is not None:
            yield from split
            return
    validated = [TripPlan.model_validate(o) for o in plans]
    engine = prepare_engine(validated, thresholds, speed_profile)
    for *_, obj in _items(engine, pings, snapshot_s):
        yield json_line(obj)


def json_line(obj: dict[str, Any]) -> bytes:
    """One output line (CONTRACT §4 event or §8 snapshot), newline included.

    The newline is added by a copy, not by orjson (``OPT_APPEND_NEWLINE``): orjson writes
    into a buffer of a few kB that it then shrinks, so every line kept (a replay keeps
    them all to sort) left a page behind and the next one faulted in a fresh page - one
    page fault a line, 5x the time of the serialisation itself and more in forked
    workers. The copy is an exact-size object, and orjson's buffer is freed and reused."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def vehicle_rows(pings: PingBatch) -> list[tuple[str, Rows]]:
    """(vehicle, its rows in ts order) per vehicle."""
    if isinstance(pings, CodedPingBatch):
        return pings.groups()
    return groups_by_vehicle(pings.vehicle_id, pings.ts_ms)


def _items(engine: Engine, pings: PingBatch, snapshot_s: float | None) -> list[Item]:
    """Every output item, in order."""
    if not len(pings):
        return []
    end_ms = int(pings.ts_ms.max())
    if snapshot_s is None:
        return vehicle_items(engine, pings, vehicle_rows(pings), end_ms)
    return stepped_items(engine, pings, snapshot_step_ms(snapshot_s), end_ms)


def snapshot_step_ms(snapshot_s: float) -> int:
    """The snapshot interval in ms (``ValueError`` unless positive)."""
    step = int(snapshot_s * 1000)
    if step <= 0:
        raise ValueError("snapshot_s must be positive")
    return step


#: (ts, events before snapshots, trip, arrival seq, object): an order independent of the
#: input's row order that keeps each trip's own event order for equal ts
Item = tuple[int, int, str, int, Any]


def item_order(item: Item) -> tuple[int, int, str, int]:
    return item[:4]


class _Items:
    """The replay's output items as they come, sorted at the end (:data:`Item`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.items: list[Item] = []

    def events(self, evs: list[Event]) -> None:
        items = self.items
        items.extend(
            (e.ts_ms, 0, e.trip_id, len(items) + k, self._with_driver(e).to_dict())
            for k, e in enumerate(evs)
        )

    def snapshot(self, key: str, snap: TripSnapshot, ts_ms: int) -> None:
        self.items.append((ts_ms, 1, key, len(self.items), snapshot_dict(snap, ts_ms)))

    def _with_driver(self, e: Event) -> Event:
        """The event as the live pipeline stores it: with its trip's driver, if any."""
        plan = self.engine.plan(e.trip_id)
        return e if plan is None or plan.driver_id is None else replace(e, driver_id=plan.driver_id)

    def finish(self, end_ms: int) -> list[Item]:
        """End of input: every ping is final, the watermark is the last ts seen."""
        engine = self.engine
        self.events(engine.flush())
        self.events(engine.tick(end_ms + _allowance_ms(engine)))
        self.items.sort(key=item_order)
        return self.items


def _allowance_ms(engine: Engine) -> int:
    return int(engine.thresholds.reorder_allowance_s * 1000)


def vehicle_items(
    engine: Engine, pings: PingBatch, grouped: list[tuple[str, Rows]], end_ms: int
) -> list[Item]:
    """The sorted items of ``grouped``'s vehicles, their pings all at once: each
    vehicle's in one Numba call (:mod:`compliance.replay_vehicles`), its events those
    the engine gives fed the same pings in any batches."""
    out = _Items(engine)
    replay_vehicles.vehicle_items(engine.vehicle_trips, pings, grouped, end_ms, out.events)
    return out.finish(end_ms)


def stepped_items(engine: Engine, pings: PingBatch, step: int, end_ms: int) -> list[Item]:
    """The sorted items with a snapshot of every active trip each ``step`` ms of event
    time (edges on multiples of ``step``, up to the one past ``end_ms``, the input's
    last ts): the pings are fed in time order, one chunk per step."""
    out = _Items(engine)
    allowance = _allowance_ms(engine)
    start_ms = int(pings.ts_ms.min())
    t_order = np.argsort(pings.ts_ms, kind="stable")
    sorted_ts = pings.ts_ms[t_order]
    lo = 0
    edge = start_ms - start_ms % step + step
    while True:
        hi = int(np.searchsorted(sorted_ts, edge, side="left"))
        if hi == lo and lo < len(sorted_ts) and not engine.live_trips():
            # no ping before this edge and no trip to show: nothing happens until the
            # next ping but time-driven events, which a later watermark gives alike
            # (a recording may span months of trips that ended)
            nxt = int(sorted_ts[lo])
            edge = nxt - nxt % step + step
            continue
        chunk = pings.take(t_order[lo:hi])
        lo = hi
        # commit everything before the edge, never past the last ts seen, so both
        # modes give the same events
        res = engine.process(chunk, min(edge, end_ms) + allowance, snapshots=False, matches=False)
        out.events(res.events)
        snap_ts = edge - 1
        for key in engine.live_trips():
            snap = engine.snapshot(key, snap_ts)
            if snap is not None and snap.status == "active":
                out.snapshot(key, snap, snap_ts)
        if edge > end_ms:
            break
        edge += step
    return out.finish(end_ms)
