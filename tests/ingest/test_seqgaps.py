"""The sequence-number follower (ingest.seqgaps): gaps, late fills, duplicates, restarts,
and the state carried across batches and engine restarts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.types import PingBatch
from ingest.seqgaps import WINDOW, GapReporter, SeqTracker


def batch(rows: list[tuple[str, int, int]]) -> PingBatch:
    """(vehicle, seq, fix time ms) rows, in arrival order."""
    z = np.zeros(len(rows))
    return PingBatch(
        [r[0] for r in rows],
        np.array([r[2] for r in rows], np.int64),
        z,
        z,
        z,
        z,
        z,
        np.array([r[1] for r in rows], np.int64),
    )


def pings(vehicle: str, seqs: list[int], t0: int = 0) -> list[tuple[str, int, int]]:
    """Fix time follows the number (1 s apart), as a tracker's do."""
    return [(vehicle, s, t0 + 1000 * s) for s in seqs]


def test_a_jump_is_a_gap_and_late_pings_fill_it() -> None:
    tracker = SeqTracker()
    report = tracker.observe(batch(pings("A", [1, 2, 3, 7, 8])))
    assert [(g.vehicle_id, g.after_seq, g.next_seq, g.missing) for g in report.gaps] == [
        ("A", 3, 7, 3)
    ]
    assert report.missing == 3 and report.filled == 0
    reporter = GapReporter(allowance_s=30)
    reporter.add(report.gaps, tracker, now_s=100)
    assert reporter.due(tracker, now_s=129) == []  # still within the reorder allowance
    report = tracker.observe(batch(pings("A", [5, 9, 5, 2])))  # 5 late, 9 new, dups
    assert report.gaps == [] and report.filled == 1
    state = tracker.state("A")
    assert state is not None
    assert (state.last_seq, state.missing, state.gaps, state.restarts) == (9, 2, 1, 0)
    assert [g.missing for g in reporter.due(tracker, now_s=130)] == [2]  # 4 and 6


def test_a_gap_closed_by_late_pings_is_never_reported() -> None:
    tracker, reporter = SeqTracker(), GapReporter(allowance_s=30)
    reporter.add(tracker.observe(batch(pings("A", [1, 4]))).gaps, tracker, now_s=0)
    tracker.observe(batch(pings("A", [3, 2])))
    assert reporter.due(tracker, now_s=60) == [] and len(reporter) == 0


def test_reordering_inside_a_batch_is_no_gap() -> None:
    tracker = SeqTracker()
    report = tracker.observe(batch(pings("A", [4, 1, 3, 2, 2, 5])))
    assert report.gaps == [] and report.missing == 0


def test_pings_without_numbers_and_first_numbers_are_not_gaps() -> None:
    tracker = SeqTracker()
    report = tracker.observe(batch([("A", -1, 0), ("B", 500, 0), ("A", 10, 1)]))
    assert report.gaps == [] and {s.vehicle_id for s in report.states} == {"A", "B"}


def test_a_tracker_counting_again_is_a_restart() -> None:
    tracker = SeqTracker()
    tracker.observe(batch(pings("A", [100, 101, 102])))
    report = tracker.observe(batch(pings("A", [0, 1, 2], t0=200_000)))  # newer fixes
    assert report.restarts == ["A"] and report.gaps == []
    state = tracker.state("A")
    assert state is not None and (state.last_seq, state.restarts, state.missing) == (2, 1, 0)


def test_older_than_the_window_stays_missing() -> None:
    tracker = SeqTracker()
    tracker.observe(batch(pings("A", [0, 1, 3 + WINDOW + 5])))
    reporter = GapReporter(allowance_s=0)
    reporter.add(tracker.observe(batch(pings("A", [3 + 2 * WINDOW]))).gaps, tracker, now_s=0)
    report = tracker.observe(batch(pings("A", [2, 3 + WINDOW])))  # 2: too far below
    assert report.gaps == [] and report.filled == 1
    state = tracker.state("A")
    # gaps of WINDOW + 6 and WINDOW - 6, less the late 3 + WINDOW (in the first one)
    assert state is not None and state.missing == 2 * WINDOW - 1
    assert [g.missing for g in reporter.due(tracker)] == [WINDOW - 6]  # the second one


def test_state_survives_a_restart_of_the_engine() -> None:
    first = SeqTracker()
    first.observe(batch(pings("A", [1, 2, 5]) + pings("B", [7])))
    states = [s for v in ("A", "B") if (s := first.state(v)) is not None]
    second = SeqTracker(capacity=1)  # grows as trackers are loaded
    second.load(states)
    report = second.observe(batch(pings("A", [3, 5, 6]) + pings("B", [7, 9])))
    assert [(g.vehicle_id, g.missing) for g in report.gaps] == [("B", 1)]
    assert report.filled == 1  # A's 3 (4 stays missing; 5 was a duplicate)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 400),
    lost=st.sets(st.integers(0, 399)),
    dup=st.sets(st.integers(0, 399)),
    shuffle_seed=st.integers(0, 2**32 - 1),
    batch_size=st.integers(1, 50),
)
def test_missing_equals_what_was_lost(
    n: int, lost: set[int], dup: set[int], shuffle_seed: int, batch_size: int
) -> None:
    """Whatever the loss, duplication, batching and reordering (by fewer than WINDOW
    places), the count ends exactly at the numbers never delivered, less those before
    the first delivered one (nothing says they were sent)."""
    delivered = [s for s in range(n) if s not in lost] + [s for s in range(n) if s in dup]
    rng = np.random.default_rng(shuffle_seed)
    # arrival order: each ping displaced by less than WINDOW // 2 places
    keys = np.array([s if k < n else s + 1 for k, s in enumerate(delivered)], float)
    order = np.argsort(keys + rng.uniform(0, WINDOW // 2, len(keys)), kind="stable")
    arrival = [delivered[k] for k in order]
    tracker = SeqTracker(capacity=2)
    for i in range(0, len(arrival), batch_size):
        tracker.observe(batch(pings("V", arrival[i : i + batch_size])))
    received = set(delivered)
    state = tracker.state("V")
    if not received:
        assert state is None
        return
    assert state is not None
    first_arrived_batch = arrival[:batch_size]
    start = min(first_arrived_batch)
    expected = sum(1 for s in range(start, max(received) + 1) if s not in received)
    assert state.missing == expected


def test_late_pings_count_even_once_below_the_window() -> None:
    """A gap closed by late pings, then left behind by more than WINDOW numbers before
    the allowance ends, is not reported."""
    tracker, reporter = SeqTracker(), GapReporter(allowance_s=30)
    reporter.add(tracker.observe(batch(pings("A", [100, 105]))).gaps, tracker, now_s=0)
    tracker.observe(batch(pings("A", [101, 102, 103, 104])))
    tracker.observe(batch(pings("A", list(range(106, 300)))))
    assert reporter.due(tracker, now_s=30) == []
    state = tracker.state("A")
    assert state is not None and state.missing == 0


def test_stragglers_of_the_old_numbering_after_a_restart_are_ignored() -> None:
    tracker = SeqTracker()
    tracker.observe(batch([("A", 500, 1000)]))
    tracker.observe(batch([("A", 0, 2000), ("A", 1, 2001)]))  # rebooted
    report = tracker.observe(batch([("A", 498, 990), ("A", 499, 995), ("A", 2, 2002)]))
    assert report.gaps == [] and report.restarts == []
    state = tracker.state("A")
    assert state is not None and (state.last_seq, state.restarts, state.missing) == (2, 1, 0)


def test_a_wild_jump_is_a_reset_not_a_gap() -> None:
    tracker = SeqTracker()
    tracker.observe(batch(pings("A", [1, 2])))
    report = tracker.observe(batch([("A", 2**40, 3000), ("A", 2**40 + 1, 4000)]))
    assert report.gaps == [] and report.restarts == ["A"]
