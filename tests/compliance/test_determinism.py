"""Same pings, same events: re-batching, duplicates, bounded shuffling, checkpoint/restore."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from compliance.engine import Engine
from compliance.plan import TripPlan
from compliance.types import PingBatch
from tests.compliance.builders import batch, drive, plan
from tests.compliance.helpers import kinds, run_batches, signature

ROUTE = [(0.0, 0.0), (3000.0, 0.0), (3000.0, 2000.0)]


def _scenario() -> tuple[TripPlan, PingBatch]:
    p = plan(
        ROUTE,
        [
            {"stop_id": "S1", "xy": (3000.0, 1200.0), "order_id": "O1"},
            {"stop_id": "S2", "xy": (3000.0, 1700.0)},
        ],
        speed_limit_kmh=50,
    )
    rng = np.random.default_rng(3)
    ts, x, y, s = drive(
        ROUTE,
        [(100, 36), (150, 0), (60, 70), (180, 36), (24, 36), (60, 0), (49, 36), (60, 0), (40, 36)],
    )
    # a coverage gap of 200 s and GPS noise
    keep = (ts - ts[0] < 300_000) | (ts - ts[0] > 500_000)
    ts, x, y, s = ts[keep], x[keep], y[keep], s[keep]
    x = x + rng.normal(0, 5, len(x))
    y = y + rng.normal(0, 5, len(y))
    return p, batch("V1", ts, x, y, s)


def _split(b: PingBatch, sizes: np.ndarray) -> list[PingBatch]:
    edges = np.concatenate([[0], np.cumsum(sizes)])
    edges = edges[edges < len(b)]
    edges = np.append(edges, len(b))
    return [b.take(np.arange(a, c)) for a, c in itertools.pairwise(edges) if c > a]


def test_rebatching_duplicates_and_shuffling_give_identical_events() -> None:
    p, b = _scenario()
    ref, _ = run_batches([p], [b])
    assert {
        "trip_started",
        "speeding",
        "stop_arrived",
        "signal_lost",
        "signal_restored",
        "trip_completed",
    } <= set(kinds(ref))
    rng = np.random.default_rng(11)
    for trial in range(6):
        order = np.arange(len(b))
        # shuffle within windows of 20 pings (≤ 20 s at 1 Hz, inside the 30 s allowance)
        for a in range(0, len(order), 20):
            rng.shuffle(order[a : a + 20])
        dup = rng.choice(len(b), size=40, replace=False)
        order = np.concatenate([order, dup]) if trial % 2 else order
        shuffled = b.take(order)
        sizes = rng.integers(1, 60, size=len(order))
        got, _ = run_batches([p], _split(shuffled, sizes))
        assert signature(got) == signature(ref), f"trial {trial}"


def test_checkpoint_restore_mid_trip_gives_the_same_events() -> None:
    p, b = _scenario()
    ref, _ = run_batches([p], [b])
    parts = _split(b, np.full(len(b), 37))
    eng = Engine()
    eng.add_trip(p)
    events = []
    wm = 0
    for i, part in enumerate(parts):
        wm = max(wm, int(part.ts_ms.max()))
        events += eng.process(part, wm).events
        if i == len(parts) // 2:
            eng = Engine.restore(eng.checkpoint())
    events += eng.flush() + eng.tick(wm)
    assert signature(sorted(events, key=lambda e: e.ts_ms)) == signature(ref)


def test_late_ping_beyond_the_allowance_does_not_rewind_state() -> None:
    p, b = _scenario()
    eng = Engine()
    eng.add_trip(p)
    wm = int(b.ts_ms[200])
    eng.process(b.take(np.arange(0, 201)), wm)
    res = eng.process(b.take(np.array([10])), wm)  # 190 s old
    assert res.on_route[0] == -1
    assert eng.late_pings == 1


def test_match_results_come_immediately_events_after_the_allowance() -> None:
    p, b = _scenario()
    eng = Engine()
    eng.add_trip(p)
    res = eng.process(b.take(np.arange(0, 20)), int(b.ts_ms[19]))
    assert np.all(res.on_route == 1)
    assert np.all(np.isfinite(res.route_m))
    assert res.events == []  # trip_started waits for the reorder allowance
    assert res.snapshots and res.snapshots[0].route_m > 0


def test_kernels_run_as_plain_python(tmp_path: Path) -> None:
    """The same scenario with NUMBA_DISABLE_JIT=1 gives the same events (kernels as Python)."""
    p, b = _scenario()
    ref, _ = run_batches([p], [b])
    script = (
        "import json; from tests.compliance.test_determinism import _scenario;"
        "from tests.compliance.helpers import run_batches, signature;"
        "p, b = _scenario(); ev, _ = run_batches([p], [b]);"
        "print(json.dumps(signature(ev)))"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    got = [tuple(x) for x in json.loads(out.stdout)]
    assert got == [tuple(x) for x in signature(ref)]
