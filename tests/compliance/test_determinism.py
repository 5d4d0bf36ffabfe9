"""Same pings, same events: re-batching, duplicates, bounded shuffling, checkpoint/restore."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compliance.engine import Engine
from compliance.events import Event
from compliance.plan import TripPlan
from compliance.types import PingBatch
from tests.compliance.builders import batch, drive, plan
from tests.compliance.helpers import kinds, run_batches, signature

ROUTE = [(0.0, 0.0), (3000.0, 0.0), (3000.0, 2000.0)]


def _scenario(seq: bool = False) -> tuple[TripPlan, PingBatch]:
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
    # a tracker numbering its fixes: one reboot (back to 0) and one fix lost on the way
    n = len(ts)
    numbers = np.concatenate([np.arange(1000, 1000 + n // 2), np.arange(n - n // 2)])
    numbers[n // 3 :] += 1
    return p, batch("V1", ts, x, y, s, seq=numbers if seq else None)


def _split(b: PingBatch, sizes: np.ndarray) -> list[PingBatch]:
    edges = np.concatenate([[0], np.cumsum(sizes)])
    edges = edges[edges < len(b)]
    edges = np.append(edges, len(b))
    return [b.take(np.arange(a, c)) for a, c in itertools.pairwise(edges) if c > a]


@pytest.mark.parametrize("seq", [False, True], ids=["no seq", "seq"])
def test_rebatching_duplicates_and_shuffling_give_identical_events(seq: bool) -> None:
    p, b = _scenario(seq)
    ref, _ = run_batches([p], [_scenario()[1]])  # without seq: every ping waits its allowance
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


@pytest.mark.parametrize("seq", [False, True], ids=["no seq", "seq"])
def test_checkpoint_restore_mid_trip_gives_the_same_events(seq: bool) -> None:
    p, b = _scenario(seq)
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


def _restored_midway(
    p: TripPlan, b: PingBatch, mangle: Callable[[dict[str, Any]], None]
) -> tuple[list[Event], Engine]:
    """The events of ``b`` when the engine is checkpointed after its first 301 pings, the
    checkpoint's data changed by ``mangle`` (into an older version's), and restored; and
    the restored engine."""
    eng = Engine()
    eng.add_trip(p)
    events = eng.process(b.take(np.arange(0, 301)), int(b.ts_ms[300])).events
    data = pickle.loads(eng.checkpoint())
    mangle(data)
    eng = Engine.restore(pickle.dumps(data))
    events += eng.process(b.take(np.arange(301, len(b))), int(b.ts_ms[-1])).events
    events += eng.flush() + eng.tick(int(b.ts_ms[-1]))
    return sorted(events, key=lambda e: e.ts_ms), eng


def test_a_version_1_checkpoint_restores() -> None:
    """Checkpoints written before pending pings kept their seq (plans as JSON dumps)."""

    def version_1(data: dict[str, Any]) -> None:
        data["version"] = 1
        for t in data["trips"]:
            t["plan"] = t["plan"].model_dump(mode="json")
            del t["pending"][7:9], t["last_seq"]  # the heading and seq columns

    p, b = _scenario(seq=True)
    ref, _ = run_batches([p], [_scenario()[1]])
    assert signature(_restored_midway(p, b, version_1)[0]) == signature(ref)


def test_a_version_2_checkpoint_restores_plans_pickled_without_drivers() -> None:
    """Plans pickled before TripPlan had driver_id/driver_name unpickle without them;
    restore validates them again, so the fields read None."""

    def version_2(data: dict[str, Any]) -> None:
        data["version"] = 2
        for t in data["trips"]:
            del t["plan"].__dict__["driver_id"], t["plan"].__dict__["driver_name"]
            assert not hasattr(t["plan"], "driver_id")  # what an old pickle gives

    p, b = _scenario()
    ref, _ = run_batches([p], [b])
    events, eng = _restored_midway(p, b, version_2)
    assert signature(events) == signature(ref)
    (key,) = eng.trips()
    restored = eng.plan(key)
    assert restored is not None and restored.driver_id is None and restored.driver_name is None


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


def test_snapshots_come_every_interval_and_with_every_change() -> None:
    p, b = _scenario()
    eng = Engine()
    eng.add_trip(p)
    snaps: list[tuple[int, bool, tuple[str, ...]]] = []  # (ts, with events, statuses)
    for k in range(len(b)):
        res = eng.process(b.take(np.array([k])), int(b.ts_ms[k]))
        assert len(res.snapshots) <= 1
        snaps += [
            (s.ts_ms, bool(res.events), (s.status, *(st.status for st in s.stops)))
            for s in res.snapshots
        ]
    snap_ts = np.array([t for t, _, _ in snaps])
    for (_, with_events, marks), (_, _, before), gap in zip(
        snaps[1:], snaps, np.diff(snap_ts), strict=False
    ):
        # not more often than the interval, unless something changed
        assert gap >= 15_000 or with_events or marks != before
    newest_before = snap_ts[np.searchsorted(snap_ts, b.ts_ms, side="right") - 1]
    assert np.all(b.ts_ms - newest_before < 15_000)  # nor less often, while fixes come
    assert len({m for _, _, m in snaps}) >= 4  # planned, active, arrived..., completed
    assert len(snaps) < len(b) / 5


def test_pings_in_sequence_give_their_events_at_once() -> None:
    """A tracker numbering its fixes: a fix that follows the last committed one without a
    gap is committed in the batch that brings it (its events too); after a gap the fixes
    wait until the missing one arrives, or for the allowance."""
    p, b = _scenario()
    b.seq[:] = np.arange(len(b))
    eng = Engine()
    eng.add_trip(p)
    first = eng.process(b.take(np.arange(0, 1)), int(b.ts_ms[0]))
    assert first.events == []  # the first fix: nothing known before it, so it waits
    eng.process(PingBatch.empty(), int(b.ts_ms[0]) + 30_000)  # its allowance has passed
    lag_s = {
        str(e.type): (int(b.ts_ms[k]) - e.ts_ms) / 1000
        for k in range(1, len(b))
        for e in eng.process(b.take(np.array([k])), int(b.ts_ms[k])).events
    }
    # every event comes with the fix that proves it; signal_lost is dated when the
    # signal was lost, 120 s after the last fix before the coverage gap
    assert lag_s.pop("signal_lost") > 0
    assert {"trip_started", "speeding", "stop_arrived", "trip_completed"} <= set(lag_s)
    assert set(lag_s.values()) == {0.0}, lag_s

    # the same stream with one fix held back: what follows it waits for it
    ref, _ = run_batches([p], [_scenario()[1]])
    eng = Engine()
    eng.add_trip(p)
    events = eng.process(b.take(np.arange(0, 1)), int(b.ts_ms[0]) + 30_000).events
    events += eng.process(b.take(np.arange(2, 120)), int(b.ts_ms[119])).events
    assert all(e.ts_ms <= int(b.ts_ms[119]) - 30_000 for e in events)  # the allowance's
    events += eng.process(b.take(np.array([1])), int(b.ts_ms[119])).events
    assert "trip_started" in kinds(events)
    events += eng.process(b.take(np.arange(120, len(b))), int(b.ts_ms[-1])).events
    events += eng.flush() + eng.tick(int(b.ts_ms[-1]))
    assert signature(sorted(events, key=lambda e: e.ts_ms)) == signature(ref)


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
