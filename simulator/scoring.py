"""Match detected events against ground truth: precision, recall, detection delay, ETA error.

A detection matches an expected event of the same trip and type (and the same
``details.stop_id`` when the expected one names a stop) whose ``ts`` is within the
expected ``tolerance_s``; each side is used at most once, nearest in time first.
Unmatched expected events are misses; unmatched detections are false alarms unless they
match an *allowed* (borderline) event. Types never expected anywhere in the scenario
(e.g. ``back_on_schedule``) are not scored.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np


def ts_s(text: str | int | float) -> float:
    """RFC 3339 string or epoch ms -> epoch seconds."""
    if isinstance(text, int | float):
        return float(text) / 1000.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(slots=True)
class TypeScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    delays_s: list[float] = field(default_factory=list)  # detected - expected, for matches

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan


def _key(e: dict[str, Any], with_stop: bool) -> tuple[str, str, str | None]:
    stop = (e.get("details") or {}).get("stop_id") if with_stop else None
    return (e["trip_id"], e["type"], stop)


def _greedy(exp: list[dict[str, Any]], det: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(expected index, detected index) pairs: closest in time first, within tolerance."""
    cands = []
    for i, e in enumerate(exp):
        te, tol = ts_s(e["ts"]), float(e["tolerance_s"])
        for j, d in enumerate(det):
            dt = abs(ts_s(d["ts"]) - te)
            if dt <= tol:
                cands.append((dt, i, j))
    cands.sort()
    used_e: set[int] = set()
    used_d: set[int] = set()
    out = []
    for _dt, i, j in cands:
        if i not in used_e and j not in used_d:
            used_e.add(i)
            used_d.add(j)
            out.append((i, j))
    return out


def score(
    detected: list[dict[str, Any]],
    expected: list[dict[str, Any]],
    allowed: list[dict[str, Any]] | None = None,
    types: set[str] | None = None,
) -> dict[str, TypeScore]:
    """Per event type scores: of ``types``, by default those that appear in ``expected``
    (a type given but not expected still counts its false alarms)."""
    allowed = allowed or []
    types = {e["type"] for e in expected} if types is None else set(types)
    scores = {t: TypeScore() for t in sorted(types)}
    stop_typed = {e["type"] for e in expected + allowed if (e.get("details") or {}).get("stop_id")}

    def group(evs: list[dict[str, Any]]) -> dict[tuple[str, str, str | None], list[dict[str, Any]]]:
        g: dict[tuple[str, str, str | None], list[dict[str, Any]]] = defaultdict(list)
        for e in evs:
            if e["type"] in types:
                g[_key(e, e["type"] in stop_typed)].append(e)
        return g

    exp_g, det_g, allow_g = group(expected), group(detected), group(allowed)
    for key in set(exp_g) | set(det_g):
        exp, det = exp_g.get(key, []), det_g.get(key, [])
        s = scores[key[1]]
        pairs = _greedy(exp, det)
        s.tp += len(pairs)
        s.fn += len(exp) - len(pairs)
        s.delays_s.extend(ts_s(det[j]["ts"]) - ts_s(exp[i]["ts"]) for i, j in pairs)
        matched = {j for _i, j in pairs}
        rest = [d for j, d in enumerate(det) if j not in matched]
        excused = _greedy(allow_g.get(key, []), rest)
        s.fp += len(rest) - len(excused)
    return scores


REMAINING_BUCKETS_M: tuple[float, ...] = (0.0, 1000.0, 3000.0, 6000.0, 10000.0, math.inf)
#: the simple ETA baselines the engine is compared with (see :func:`eta_samples`)
BASELINES = ("plan", "trip_avg", "last_5min")
_RECENT_S = 300.0
_MIN_MPS = 1.0


@dataclass(frozen=True)
class TripRef:
    """What the ETA baselines need of a trip: its stops' route metres, service times and
    planned arrivals (epoch ms, NaN when not planned), and when and where it started."""

    stop_ids: list[str]
    stop_m: np.ndarray
    service_s: np.ndarray
    planned_ms: np.ndarray
    started_ms: float
    started_m: float

    @cached_property
    def stop_index(self) -> dict[str, int]:
        return {sid: k for k, sid in enumerate(self.stop_ids)}


def eta_samples(
    snapshots: list[dict[str, Any]],
    truth: dict[str, Any],
    track: dict[str, tuple[np.ndarray, np.ndarray]],
    trips: dict[str, TripRef],
) -> dict[str, np.ndarray]:
    """One row per (snapshot, pending stop the vehicle really reached later).

    Columns: ``remaining_m`` (true driven distance still to go), ``actual_ms``, ``now_ms``,
    ``eta``/``low``/``high`` (the snapshot's, epoch ms) and one predicted arrival per
    :data:`BASELINES`:

    - ``plan``: the stop's planned arrival;
    - ``trip_avg``: now + the route metres to the stop at the trip's average progress speed
      since it started (dwells included, so no service times are added);
    - ``last_5min``: now + the route metres to the stop at the progress speed of the last
      5 minutes (>= 1 m/s), + the service times of the pending stops before it.

    ``truth``: truth.json; ``track``: per vehicle the true (ts_ms, driven_m) series from
    truth.csv; ``trips``: per trip id, see :class:`TripRef`. Snapshots must be in time
    order per trip (as replay gives them).
    """
    cols: dict[str, list[float]] = defaultdict(list)
    seen: dict[str, list[tuple[float, float]]] = defaultdict(list)  # trip -> (ts, route_m)
    for snap in snapshots:
        trip = truth.get(snap["trip_id"])
        ref = trips.get(snap["trip_id"])
        if trip is None or ref is None or snap["vehicle_id"] not in track:
            continue
        t_ms = ts_s(snap["ts"]) * 1000.0
        here = snap.get("route_m")
        past = seen[snap["trip_id"]]
        if here is not None:
            past.append((t_ms, float(here)))
        if not past:
            continue
        now_m = past[-1][1]
        avg = (now_m - ref.started_m) / max(1.0, (t_ms - ref.started_ms) / 1000.0)
        back = next((p for p in past if p[0] >= t_ms - _RECENT_S * 1000.0), past[0])
        recent = (
            (now_m - back[1]) / max(1.0, (t_ms - back[0]) / 1000.0) if back != past[-1] else avg
        )
        tts, tdm = track[snap["vehicle_id"]]
        here_m = float(np.interp(t_ms, tts, tdm))
        service_before = 0.0
        for eta in snap.get("etas") or []:
            k = ref.stop_index.get(eta["stop_id"])
            actual = trip["stops"].get(eta["stop_id"])
            if k is None or eta.get("eta") is None:
                continue
            ahead = max(0.0, float(ref.stop_m[k]) - now_m)
            if actual is not None and actual["arrived_ms"] > t_ms:
                cols["remaining_m"].append(actual["driven_m"] - here_m)
                cols["actual_ms"].append(actual["arrived_ms"])
                for name in ("eta", "low", "high"):
                    key = "eta" if name == "eta" else f"eta_{name}"
                    cols[name].append(ts_s(eta[key]) * 1000.0)
                cols["plan"].append(float(ref.planned_ms[k]))
                cols["trip_avg"].append(t_ms + 1000.0 * ahead / max(_MIN_MPS, avg))
                cols["last_5min"].append(
                    t_ms + 1000.0 * (ahead / max(_MIN_MPS, recent) + service_before)
                )
            service_before += float(ref.service_s[k])
    return {k: np.array(v, np.float64) for k, v in cols.items()}


def band_label(lo: float, hi: float) -> str:
    return f"{lo / 1000:.0f}-{hi / 1000:.0f} km" if math.isfinite(hi) else f">{lo / 1000:.0f} km"


def bands(remaining_m: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, row mask) per :data:`REMAINING_BUCKETS_M` band, then ("all", every row)."""
    out = [
        (band_label(lo, hi), (remaining_m >= lo) & (remaining_m < hi))
        for lo, hi in itertools.pairwise(REMAINING_BUCKETS_M)
    ]
    return [*out, ("all", np.ones(len(remaining_m), bool))]


def window_coverage(s: dict[str, np.ndarray]) -> np.ndarray:
    """Per row: whether the real arrival fell inside [eta_low, eta_high]."""
    return (s["low"] <= s["actual_ms"]) & (s["actual_ms"] <= s["high"])
