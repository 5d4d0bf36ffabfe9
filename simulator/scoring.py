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
) -> dict[str, TypeScore]:
    """Per event type scores (only types that appear in ``expected``)."""
    allowed = allowed or []
    types = {e["type"] for e in expected}
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


def eta_errors(
    snapshots: list[dict[str, Any]],
    truth: dict[str, Any],
    track: dict[str, tuple[np.ndarray, np.ndarray]],
) -> list[tuple[float, float]]:
    """(remaining driven distance m, ETA error s) for every pending stop in every snapshot.

    ``truth``: truth.json (true arrival per trip and stop); ``track``: per vehicle the true
    (ts_ms, driven_m) series from truth.csv. Error = predicted - actual arrival (positive =
    predicted too late). Stops never reached are left out.
    """
    out: list[tuple[float, float]] = []
    for snap in snapshots:
        trip = truth.get(snap["trip_id"])
        if trip is None or snap["vehicle_id"] not in track:
            continue
        t_ms = ts_s(snap["ts"]) * 1000.0
        tts, tdm = track[snap["vehicle_id"]]
        here_m = float(np.interp(t_ms, tts, tdm))
        for eta in snap.get("etas") or []:
            actual = trip["stops"].get(eta["stop_id"])
            if actual is None or eta.get("eta") is None or actual["arrived_ms"] <= t_ms:
                continue
            err = ts_s(eta["eta"]) - actual["arrived_ms"] / 1000.0
            out.append((actual["driven_m"] - here_m, err))
    return out


def eta_table(errors: list[tuple[float, float]]) -> list[tuple[str, int, float, float, float]]:
    """Per remaining-distance bucket: (label, n, MAE s, median |err| s, p90 |err| s)."""
    rows = []
    arr = np.array(errors, np.float64).reshape(-1, 2)
    for lo, hi in itertools.pairwise(REMAINING_BUCKETS_M):
        sel = np.abs(arr[(arr[:, 0] >= lo) & (arr[:, 0] < hi), 1])
        label = (
            f"{lo / 1000:.0f}-{hi / 1000:.0f} km" if math.isfinite(hi) else f">{lo / 1000:.0f} km"
        )
        if len(sel):
            rows.append(
                (
                    label,
                    len(sel),
                    float(sel.mean()),
                    float(np.median(sel)),
                    float(np.percentile(sel, 90)),
                )
            )
        else:
            rows.append((label, 0, math.nan, math.nan, math.nan))
    return rows
