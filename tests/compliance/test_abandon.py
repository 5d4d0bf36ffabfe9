"""Trips whose vehicle stops reporting end: ``trip_completed`` with ``ended_by``
"no_signal" ``trip_abandon_s`` after the later of the planned end and the last ping, the
remaining stops skipped, one end event per trip - the same whatever the batching, from
the tick or from a ping after the silence, across checkpoint/restore, and in replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compliance.config import Thresholds
from compliance.engine import Engine
from compliance.events import Event
from compliance.plan import TripPlan
from compliance.replay import load_pings_csv, load_plans, replay
from compliance.types import PingBatch
from tests.compliance.builders import T0_MS, batch, drive, plan
from tests.compliance.helpers import kinds, run_batches, signature

ROUTE = [(0.0, 0.0), (4000.0, 0.0)]
H = 3_600_000


def _dying_tracker(
    after: tuple[int, float] | None = None, seq: bool = False
) -> tuple[TripPlan, PingBatch]:
    """Stop S1 at 1000 m served, then the tracker dies at ~1600 m; S2 (3000 m) pending.
    Planned: S2 at 10 min + 60 s service + 1000 m at the planned speed. ``after``: one
    more fix (ms after the last, at x metres) when the tracker comes back; ``seq``: the
    tracker numbers its fixes (so each is committed as it arrives)."""
    stops = [
        {"stop_id": "S1", "order_id": "O1", "xy": (1000.0, 0.0), "service_s": 60},
        {
            "stop_id": "S2",
            "order_id": "O2",
            "xy": (3000.0, 0.0),
            "service_s": 60,
            "planned_arrival": T0_MS + 600_000,
        },
    ]
    p = plan(ROUTE, stops)
    ts, x, y, s = drive(ROUTE, [(100, 36), (60, 0), (60, 36)], dt_s=5.0)
    if after is not None:
        ts = np.append(ts, ts[-1] + after[0])
        x, y, s = np.append(x, after[1]), np.append(y, 0.0), np.append(s, 30.0)
    return p, batch("V1", ts, x, y, s, seq=np.arange(len(ts)) if seq else None)


def _planned_end_ms() -> float:
    mps = 3000.0 / (600.0 - 60.0)  # S2 at 3000 m planned 600 s after the start, S1's service
    return T0_MS + 600_000 + 1000.0 * (60.0 + 1000.0 / mps)


def test_a_trip_whose_tracker_dies_ends_after_the_abandon_time() -> None:
    p, b = _dying_tracker()
    last = int(b.ts_ms.max())
    events, eng = run_batches([p], [b])
    assert kinds(events)[-1] != "trip_completed"  # not yet: nothing has told it
    events += eng.tick(last + 10 * H)
    assert kinds(events) == [
        "trip_started",
        "stop_arrived",
        "stop_departed",
        "signal_lost",
        "trip_completed",
    ]
    end = events[-1]
    want = max(_planned_end_ms(), last) + Thresholds().trip_abandon_s * 1000.0
    assert abs(end.ts_ms - want) <= 1
    assert end.details["ended_by"] == "no_signal"
    assert end.details["skipped_stops"] == 1 and end.details["on_time_stops"] == 1
    assert "next_trip_id" not in end.details
    assert (end.lat, end.lon) == (float(b.lat[-1]), float(b.lon[-1]))
    assert 1500 <= end.route_m <= 1700
    snap = eng.snapshot(p.trip_id or "")
    assert snap is not None and snap.status == "completed"
    assert [s.status for s in snap.stops] == ["departed", "skipped"]
    # nothing more, however long the silence lasts
    assert eng.tick(last + 1000 * H) == []


def test_the_same_end_from_a_ping_after_the_silence_and_whatever_the_batching() -> None:
    p, b = _dying_tracker()
    last = int(b.ts_ms.max())
    ref, eng = run_batches([p], [b])
    ref += eng.tick(last + 10 * H)
    # the tracker comes back to life five hours later. Without seq its ping waits for the
    # reorder allowance, so the tick ends the trip first; with seq it is committed as it
    # arrives and the kernel finds the end in the silence before it
    for seq in (False, True):
        _, both = _dying_tracker(after=(5 * H, 1700.0), seq=seq)
        for size in (len(both), 7, 1):
            parts = [
                both.take(np.arange(a, min(a + size, len(both)))) for a in range(0, len(both), size)
            ]
            got, _ = run_batches([p], parts)
            assert signature(got) == signature(ref), (seq, size)
            assert "signal_restored" not in kinds(got)
    # and across checkpoint/restore, ending from the tick of a restored engine
    eng = Engine()
    eng.add_trip(p)
    restored = eng.process(b, last).events
    eng = Engine.restore(eng.checkpoint())
    restored += eng.flush() + eng.tick(last + 10 * H)
    assert signature(sorted(restored, key=lambda e: e.ts_ms)) == signature(ref)


def test_the_next_trip_gets_the_pings_after_the_end() -> None:
    p, b = _dying_tracker()
    last = int(b.ts_ms.max())
    later = plan(ROUTE, trip_id="B", planned_start=last + 3 * H)
    ts, x, y, s = drive(ROUTE, [(420, 36), (30, 0)], dt_s=5.0, t0_ms=last + 3 * H)
    events, _ = run_batches([p, later], [b, batch("V1", ts, x, y, s)])
    by_trip = [(e.trip_id, str(e.type)) for e in events]
    assert by_trip == [
        ("T1", "trip_started"),
        ("T1", "stop_arrived"),
        ("T1", "stop_departed"),
        ("T1", "signal_lost"),
        ("T1", "trip_completed"),
        ("B", "trip_started"),
        ("B", "trip_completed"),
    ]
    assert events[4].details["ended_by"] == "no_signal"


def test_the_abandon_time_is_a_threshold_a_plan_may_override() -> None:
    p, b = _dying_tracker()
    last = int(b.ts_ms.max())
    quick = p.model_copy(update={"thresholds": {"trip_abandon_s": 600}})
    events, eng = run_batches([quick], [b])
    events += eng.tick(last + H)
    assert kinds(events)[-1] == "trip_completed"
    assert abs(events[-1].ts_ms - (max(_planned_end_ms(), last) + 600_000)) <= 1
    eng = Engine(Thresholds(trip_abandon_s=7200))
    eng.add_trip(p)
    ev = eng.process(b, last).events + eng.tick(last + 3 * H)
    assert abs(ev[-1].ts_ms - (max(_planned_end_ms(), last) + 7_200_000)) <= 1


def test_an_old_checkpoint_without_the_threshold_restores_with_its_default() -> None:
    import pickle

    p, b = _dying_tracker()
    last = int(b.ts_ms.max())
    eng = Engine()
    eng.add_trip(p)
    eng.process(b, last)
    saved = pickle.loads(eng.checkpoint())
    del saved["thresholds"]["trip_abandon_s"]  # written before the threshold existed
    restored = Engine.restore(pickle.dumps(saved))
    assert restored.thresholds == Thresholds()
    assert kinds(restored.tick(last + 10 * H))[-1] == "trip_completed"


def test_replay_snapshots_stop_when_the_trip_ends(tmp_path: Path) -> None:
    """A recording spanning months: the dead tracker's trip gives snapshots until it is
    abandoned, not for the rest of the recording."""
    p, b = _dying_tracker()
    plan_path = tmp_path / "plans.json"
    plan_path.write_text(json.dumps([p.model_dump(mode="json")]))
    lines = ["vehicle_id,ts,lat,lon,speed"]
    lines += [
        f"V1,{t},{a:.7f},{o:.7f},{v:.1f}"
        for t, a, o, v in zip(b.ts_ms, b.lat, b.lon, b.speed_kmh, strict=True)
    ]
    # another vehicle (no trip) reports once a day for four months
    lines += [f"V9,{int(b.ts_ms[0]) + d * 24 * H},-6.2,106.8," for d in range(1, 120)]
    pings_path = tmp_path / "pings.csv"
    pings_path.write_text("\n".join(lines) + "\n")
    plans, pings = load_plans(plan_path), load_pings_csv(pings_path)
    out = list(replay(plans, pings, snapshot_s=60.0))
    # the months without a live trip are skipped, not run through: the same events
    assert [o for o in out if o["type"] != "snapshot"] == list(replay(plans, pings))
    snaps = [o for o in out if o["type"] == "snapshot"]
    ended = [o for o in out if o["type"] == "trip_completed"]
    assert len(ended) == 1 and ended[0]["details"]["ended_by"] == "no_signal"
    assert snaps and max(s["ts"] for s in snaps) < ended[0]["ts"]
    assert len(snaps) <= (_planned_end_ms() + 2 * H - T0_MS) / 60_000


def test_signal_lost_still_comes_first_when_the_trip_started_after_it_was_armed() -> None:
    """Batch by batch, the first commit comes before the trip has started (its next
    time-driven event is then its end, hours away); once started, its signal loss comes
    first and must still fire when the horizon passes it."""
    p, b = _dying_tracker()
    last = int(b.ts_ms.max())
    eng = Engine()
    eng.add_trip(p)
    events: list[Event] = []
    for a in range(0, len(b), 4):
        part = b.take(np.arange(a, min(a + 4, len(b))))
        events += eng.process(part, int(part.ts_ms.max())).events
    events += eng.tick(last + 200_000)  # past last + 120 s + the allowance, not the end
    assert kinds(events)[-1] == "signal_lost"
    assert events[-1].ts_ms == last + 120_000


def test_the_setting_sets_the_engines_abandon_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.pipeline import make_processor
    from routewatch.settings import Settings, engine_thresholds

    monkeypatch.setenv("ROUTEWATCH_TRIP_ABANDON_AFTER_S", "900")
    settings = Settings()
    assert engine_thresholds(settings) == Thresholds(trip_abandon_s=900.0)
    eng = make_processor(None, settings)
    assert isinstance(eng, Engine) and eng.thresholds.trip_abandon_s == 900.0
    # a restored engine takes the setting, not the saved value
    again = make_processor(Engine().checkpoint(), settings)
    assert isinstance(again, Engine) and again.thresholds.trip_abandon_s == 900.0
