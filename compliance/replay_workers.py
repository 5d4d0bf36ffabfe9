"""``routewatch replay`` on several processes: the vehicles split among forked workers.

Vehicles share no engine state, so each part of them replays alone. A worker is forked,
so it inherits the plan objects and the pings instead of receiving them; it validates
the plans of its vehicles, prepares their trips, runs its own engine over their pings
and sends back its output lines, sorted; the parent merges them in the one order
(:data:`compliance.replay.Item`), so the lines are the same, byte for byte, whatever
the count.

Where one process would answer differently, one process answers: an invalid plan raises
the error of the first invalid plan in plan order, before any line, as one process does;
a trip id planned for vehicles of two workers (in one engine the later plan replaces the
earlier) makes the replay run in one process. Plan geometry warnings are logged by the
parent, in plan order, once every plan is known to be valid.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing as mp
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compliance.config import Thresholds
from compliance.history import SpeedProfile
from compliance.plan import TripPlan
from compliance.replay import (
    Item,
    Rows,
    item_order,
    json_line,
    log,
    prepare_engine_quietly,
    snapshot_step_ms,
    stepped_items,
    vehicle_items,
    vehicle_rows,
)
from compliance.trip import trip_key
from compliance.types import PingBatch

__all__ = ["replay_lines", "split"]

Part = list[tuple[str, Rows]]


def replay_lines(
    plans: Sequence[TripPlan | Any],
    pings: PingBatch,
    workers: int,
    thresholds: Thresholds | None = None,
    speed_profile: SpeedProfile | None = None,
    snapshot_s: float | None = None,
) -> Iterable[bytes] | None:
    """The replay's lines (with a snapshot of each active trip every ``snapshot_s`` of
    event time, if given) from up to ``workers`` forked processes; None where one
    process must answer (no fork, fewer than two vehicles, a trip id planned for
    vehicles of two workers). Raises the first invalid plan's validation error."""
    step = snapshot_step_ms(snapshot_s) if snapshot_s is not None else None
    if "fork" not in mp.get_all_start_methods():
        return None
    parts = split(vehicle_rows(pings), workers)
    if len(parts) < 2:
        return None
    work = _Work(_shares(plans, parts), pings, parts, thresholds, speed_profile, step)
    results = work.run()
    invalid = [r.invalid for r in results if r.invalid is not None]
    if invalid:
        TripPlan.model_validate(plans[min(invalid)])  # raises that plan's error
    owner: dict[str, int] = {}
    for i, r in enumerate(results):
        for key in r.keys:
            if owner.setdefault(key, i) != i:
                log.info("trip %s is planned for vehicles of two workers: one process", key)
                return None
    # in plan order, a plan's own in the order found (a stable sort by plan index)
    problems = sorted((p for r in results for p in r.problems), key=lambda p: p[0])
    for _k, label, problem in problems:
        log.warning("plan %s: %s", label, problem)
    return (line for *_, line in heapq.merge(*(r.items for r in results), key=item_order))


def split(grouped: Part, workers: int) -> list[Part]:
    """``grouped`` in at most ``workers`` runs of vehicles with about as many pings each."""
    if workers <= 1 or len(grouped) < 2:
        return [grouped]
    sizes = np.cumsum([len(rows) for _, rows in grouped])
    cuts = np.searchsorted(sizes, sizes[-1] * np.arange(1, workers) / workers)
    edges = sorted({0, *(int(c) + 1 for c in cuts), len(grouped)})
    return [grouped[a:b] for a, b in itertools.pairwise(edges) if a < b]


def _shares(plans: Sequence[TripPlan | Any], parts: list[Part]) -> list[list[tuple[int, Any]]]:
    """(plan index, plan) of each part's vehicles, in plan order; the plans of vehicles
    without pings (prepared only for their geometry warnings) and those naming no
    vehicle (to be found invalid) spread over the parts."""
    part_of = {vehicle_id: i for i, part in enumerate(parts) for vehicle_id, _ in part}
    out: list[list[tuple[int, Any]]] = [[] for _ in parts]
    for k, plan in enumerate(plans):
        vehicle_id = (
            plan.vehicle_id
            if isinstance(plan, TripPlan)
            else plan.get("vehicle_id")
            if isinstance(plan, dict)
            else None
        )
        i = (
            part_of.get(vehicle_id, k % len(parts))
            if isinstance(vehicle_id, str)
            else k % len(parts)
        )
        out[i].append((k, plan))
    return out


@dataclass(slots=True)
class _PartResult:
    """What a worker sends back: the index of its first invalid plan (then nothing
    else), or its trips' keys, their geometry problems and its sorted lines."""

    invalid: int | None = None
    keys: list[str] = field(default_factory=list)
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)


@dataclass(slots=True)
class _Work:
    """The replay split by vehicles, for forked workers to run (:func:`_work`)."""

    shares: list[list[tuple[int, Any]]]
    pings: PingBatch
    parts: list[Part]
    thresholds: Thresholds | None
    speed_profile: SpeedProfile | None
    step_ms: int | None  # the snapshot interval, None: no snapshots

    def run(self) -> list[_PartResult]:
        global _WORK
        _WORK = self
        try:
            # (not multiprocessing.Pool: a worker killed, say by the OOM killer, would
            # leave its map waiting for ever; this executor raises BrokenProcessPool)
            n = len(self.parts)
            with ProcessPoolExecutor(n, mp_context=mp.get_context("fork")) as pool:
                return list(pool.map(_work, range(n)))
        finally:
            _WORK = None

    def part(self, i: int) -> _PartResult:
        index, plans = [], []
        for k, obj in self.shares[i]:
            try:
                plans.append(TripPlan.model_validate(obj))
            except ValueError:  # (pydantic's ValidationError): the parent raises it
                return _PartResult(invalid=k)
            index.append(k)
        engine, problems = prepare_engine_quietly(plans, self.thresholds, self.speed_profile)
        end_ms = int(self.pings.ts_ms.max())  # (the whole input's: the one watermark)
        if self.step_ms is None:
            items = vehicle_items(engine, self.pings, self.parts[i], end_ms)
        else:
            # this part's pings, in their order of arrival, on the one grid of edges
            rows = np.sort(np.concatenate([r for _, r in self.parts[i]]))
            items = stepped_items(engine, self.pings.take(rows), self.step_ms, end_ms)
        return _PartResult(
            keys=[trip_key(p) for p in plans],
            problems=[(index[k], label, text) for k, label, text in problems],
            items=[(ts, kind, trip, n, json_line(obj)) for ts, kind, trip, n, obj in items],
        )


#: the work the forked processes do, set just before they fork
_WORK: _Work | None = None


def _work(i: int) -> _PartResult:
    assert _WORK is not None
    return _WORK.part(i)
