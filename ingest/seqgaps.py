"""Pings lost on the way, counted from each tracker's sequence numbers.

Trackers number their fixes (``seq``, optional in CONTRACT §1). A broker that drops
queued messages (Mosquitto's default ``max_queued_messages 1000`` while the engine is
away), a tracker that drops its own buffer, or a network that loses QoS 0 messages all
leave holes in that numbering, and nothing else would notice. :class:`SeqTracker`
follows every tracker's numbering across batches and restarts of the engine (its state
is committed with the pings, ``store.seqgaps``):

- a jump from ``last`` to ``s > last + 1`` is a gap of ``s - last - 1`` missing pings;
- a number below ``last`` that was not seen yet, within the 64 numbers below it, is a
  late ping arriving into an earlier gap: the gap shrinks (reordered delivery);
- a number seen before is a duplicate (re-delivery): nothing changes;
- a number below ``last`` with a *newer* fix time than ``last``'s is a tracker that
  started counting again (a reboot): a restart, not a gap; after a restart, numbers
  above ``last`` with *older* fix times are the old numbering's stragglers: ignored;
- a jump of more than ``MAX_JUMP`` numbers is a reset too, not a gap;
- pings without ``seq`` are not followed.

A gap is only *reported* (log line, metric, ``ping_gaps`` row: :class:`GapReporter`) once
the reorder allowance has passed, with the numbers that are still missing then, so a
ping merely delivered late is not announced as lost. The per-tracker count
(``tracker_seq.missing``) is net of late arrivals at every moment.

Within a batch each tracker's pings are taken in fix-time order, so reordering inside
one batch never shows as a gap. A late ping more than 64 numbers below the newest stays
counted as missing (a tracker that sends its newest fix first and back-fills a long
buffer afterwards would be over-counted). Rejected pings (bad coordinates, malformed
payloads) also count as missing here: they never reached the store, and
``rejected_pings`` says why.
"""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field

import numba as nb
import numpy as np
import numpy.typing as npt

from compliance.grouping import factorise
from compliance.types import PingBatch

WINDOW = 64  # numbers below the newest whose arrival is remembered (one bit each)
#: a jump further than this is not a gap but a tracker that was reset or sent nonsense:
#: its numbering is taken up from there (counted as a restart)
MAX_JUMP = 100_000


@dataclass(frozen=True, slots=True)
class Gap:
    vehicle_id: str
    after_seq: int  # the last number received before the jump
    next_seq: int  # the number that jumped
    missing: int  # numbers between them not received (at first next_seq - after_seq - 1)


@dataclass(frozen=True, slots=True)
class TrackerState:
    """One tracker's row of ``tracker_seq``."""

    vehicle_id: str
    last_seq: int
    last_ts_ms: int
    seen_mask: int  # as a signed 64-bit integer (PostgreSQL bigint)
    missing: int
    gaps: int
    restarts: int


@dataclass(slots=True)
class SeqReport:
    """What one batch showed: new gaps, late fills, restarts, and the trackers' new state."""

    gaps: list[Gap] = field(default_factory=list)  # jumps seen in this batch
    filled: int = 0  # late pings that arrived into earlier gaps
    restarts: list[str] = field(default_factory=list)
    states: list[TrackerState] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """Numbers skipped by this batch's jumps (before any late arrival)."""
        return sum(g.missing for g in self.gaps)


@nb.njit(cache=True, nogil=True)
def _advance(
    order: npt.NDArray[np.intp],
    slot: npt.NDArray[np.int64],
    seq: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    last_seq: npt.NDArray[np.int64],
    last_ts: npt.NDArray[np.int64],
    mask: npt.NDArray[np.uint64],
    missing: npt.NDArray[np.int64],
    gaps: npt.NDArray[np.int64],
    restarts: npt.NDArray[np.int64],
    filled: npt.NDArray[np.int64],
    restarted: npt.NDArray[np.bool_],
    touched: npt.NDArray[np.bool_],
    gap_slot: npt.NDArray[np.int64],
    gap_after: npt.NDArray[np.int64],
    gap_next: npt.NDArray[np.int64],
) -> int:
    """Walk the pings in ``order``, updating each slot's state; returns the gaps found
    (written to ``gap_*``)."""
    n_gaps = 0
    all_seen = np.uint64(0xFFFFFFFFFFFFFFFF)
    one = np.uint64(1)
    for j in range(order.size):
        i = order[j]
        s = seq[i]
        if s < 0:
            continue
        v = slot[i]
        touched[v] = True
        last = last_seq[v]
        if last < 0:  # the first number seen from this tracker
            last_seq[v], last_ts[v], mask[v] = s, ts[i], all_seen
            continue
        d = s - last
        if d > 0 and restarts[v] > 0 and ts[i] < last_ts[v]:
            continue  # a straggler of the numbering before the restart
        if d > MAX_JUMP:  # reset to a far number: take the numbering up from here
            restarts[v] += 1
            restarted[v] = True
            last_seq[v], last_ts[v], mask[v] = s, ts[i], all_seen
            continue
        if d > 0:
            if d > 1:
                missing[v] += d - 1
                gaps[v] += 1
                gap_slot[n_gaps], gap_after[n_gaps], gap_next[n_gaps] = v, last, s
                n_gaps += 1
            if d < WINDOW:
                mask[v] = (mask[v] << np.uint64(d)) | (one << np.uint64(d - 1))
            elif d == WINDOW:
                mask[v] = one << np.uint64(WINDOW - 1)
            else:
                mask[v] = np.uint64(0)
            last_seq[v], last_ts[v] = s, ts[i]
        elif d < 0:
            if ts[i] > last_ts[v]:  # counting again from a lower number with a newer fix
                restarts[v] += 1
                restarted[v] = True
                last_seq[v], last_ts[v], mask[v] = s, ts[i], all_seen
                continue
            k = -d - 1
            if k < WINDOW:
                bit = one << np.uint64(k)
                if not mask[v] & bit:
                    mask[v] |= bit
                    missing[v] -= 1
                    filled[v] += 1
    return n_gaps


class SeqTracker:
    """Every tracker's numbering, in arrays indexed by a slot per vehicle."""

    def __init__(self, capacity: int = 1024) -> None:
        self._slots: dict[str, int] = {}
        self._ids: list[str] = []
        self.last_seq = np.full(capacity, -1, np.int64)
        self.last_ts = np.zeros(capacity, np.int64)
        self.mask = np.zeros(capacity, np.uint64)
        self.missing = np.zeros(capacity, np.int64)
        self.gaps = np.zeros(capacity, np.int64)
        self.restarts = np.zeros(capacity, np.int64)
        self.filled_total = np.zeros(capacity, np.int64)  # late pings into gaps, this run

    def __len__(self) -> int:
        return len(self._ids)

    def _slot(self, vehicle_id: str) -> int:
        slot = self._slots.get(vehicle_id)
        if slot is None:
            slot = self._slots[vehicle_id] = len(self._ids)
            self._ids.append(vehicle_id)
            if slot >= len(self.last_seq):
                self._grow(2 * len(self.last_seq))
        return slot

    def _grow(self, capacity: int) -> None:
        for name, fill in (
            ("last_seq", -1),
            ("last_ts", 0),
            ("mask", 0),
            ("missing", 0),
            ("gaps", 0),
            ("restarts", 0),
            ("filled_total", 0),
        ):
            old = getattr(self, name)
            new = np.full(capacity, fill, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def load(self, states: list[TrackerState]) -> None:
        """Carry on from the committed state (``store.seqgaps.load_tracker_states``)."""
        for st in states:
            k = self._slot(st.vehicle_id)
            self.last_seq[k], self.last_ts[k] = st.last_seq, st.last_ts_ms
            self.mask[k] = np.int64(st.seen_mask).view(np.uint64)
            self.missing[k], self.gaps[k], self.restarts[k] = st.missing, st.gaps, st.restarts

    def state(self, vehicle_id: str) -> TrackerState | None:
        k = self._slots.get(vehicle_id)
        return None if k is None or self.last_seq[k] < 0 else self._state(k)

    def _state(self, k: int) -> TrackerState:
        return TrackerState(
            self._ids[k],
            int(self.last_seq[k]),
            int(self.last_ts[k]),
            int(self.mask[k : k + 1].view(np.int64)[0]),
            int(self.missing[k]),
            int(self.gaps[k]),
            int(self.restarts[k]),
        )

    def marks(self, vehicle_id: str) -> tuple[int, int]:
        """(restarts, late pings so far) of a tracker: what :meth:`still_missing` compares
        a gap against."""
        k = self._slots[vehicle_id]
        return int(self.restarts[k]), int(self.filled_total[k])

    def still_missing(self, gap: Gap, marks: tuple[int, int]) -> int:
        """How many numbers of ``gap`` have not arrived yet; ``marks`` are the tracker's
        :meth:`marks` when the gap was found. Numbers still in the window are looked up
        bit by bit; for those already below it, late pings since the gap was found are
        taken as theirs (exact with one open gap per tracker; with several, a late ping
        of another gap may be credited to this one: the count errs low, never high). A
        tracker that restarted since counts the gap as it was."""
        k = self._slots.get(gap.vehicle_id)
        if k is None:
            return 0
        restarts, filled = marks
        if int(self.restarts[k]) != restarts:
            return gap.missing
        last = int(self.last_seq[k])
        mask = int(self.mask[k])
        lo, hi = gap.after_seq + 1, gap.next_seq - 1  # the numbers of the gap
        window_low = last - WINDOW  # the lowest number the mask remembers
        beyond = max(0, min(hi, window_low - 1) - lo + 1)
        seen_inside = 0
        inside = 0
        for s in range(max(lo, window_low), hi + 1):
            if mask >> (last - 1 - s) & 1:
                seen_inside += 1
            else:
                inside += 1
        late_beyond = max(0, int(self.filled_total[k]) - filled - seen_inside)
        return max(0, beyond - late_beyond) + inside

    def observe(self, batch: PingBatch) -> SeqReport:
        """Follow the numbers of one batch of accepted pings (any order)."""
        report = SeqReport()
        has_seq = batch.seq >= 0
        if not has_seq.any():
            return report
        names, code = factorise(batch.vehicle_id)
        slot_of = np.fromiter((self._slot(v) for v in names), np.int64, len(names))
        slot = slot_of[code]
        # fix time, then number, per tracker (the number breaks ties between equal times)
        order = np.lexsort((batch.seq, batch.ts_ms, slot))
        order = order[has_seq[order]]
        size = len(self._ids)
        filled = np.zeros(size, np.int64)
        restarted = np.zeros(size, np.bool_)
        touched = np.zeros(size, np.bool_)
        n = len(order)
        gap_slot, gap_after, gap_next = (np.empty(n, np.int64) for _ in range(3))
        n_gaps = _advance(
            order,
            slot,
            batch.seq,
            batch.ts_ms,
            self.last_seq,
            self.last_ts,
            self.mask,
            self.missing,
            self.gaps,
            self.restarts,
            filled,
            restarted,
            touched,
            gap_slot,
            gap_after,
            gap_next,
        )
        ids = self._ids
        report.gaps = [
            Gap(ids[v], a, b, b - a - 1)
            for v, a, b in zip(
                gap_slot[:n_gaps].tolist(),
                gap_after[:n_gaps].tolist(),
                gap_next[:n_gaps].tolist(),
                strict=True,
            )
        ]
        report.filled = int(filled.sum())
        self.filled_total[:size] += filled
        report.restarts = [ids[k] for k in np.flatnonzero(restarted).tolist()]
        report.states = [self._state(k) for k in np.flatnonzero(touched).tolist()]
        return report


class GapReporter:
    """Holds each gap for the reorder allowance, then reports what is still missing."""

    def __init__(self, allowance_s: float) -> None:
        self.allowance_s = allowance_s
        self._waiting: collections.deque[tuple[float, Gap, tuple[int, int]]] = collections.deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def any_due(self, now_s: float) -> bool:
        return bool(self._waiting) and self._waiting[0][0] <= now_s

    def add(self, gaps: list[Gap], tracker: SeqTracker, now_s: float) -> None:
        self._waiting.extend(
            (now_s + self.allowance_s, g, tracker.marks(g.vehicle_id)) for g in gaps
        )

    def due(self, tracker: SeqTracker, now_s: float | None = None) -> list[Gap]:
        """The gaps whose allowance has passed (all of them when ``now_s`` is None), with
        the numbers still missing; gaps that late pings closed are dropped."""
        out: list[Gap] = []
        waiting = self._waiting
        while waiting and (now_s is None or waiting[0][0] <= now_s):
            _, gap, marks = waiting.popleft()
            if (missing := tracker.still_missing(gap, marks)) > 0:
                out.append(dataclasses.replace(gap, missing=missing))
        return out


def warm_up() -> None:
    """Compile the kernel (cached on disk by Numba)."""
    z = np.zeros(3)
    ts, seq = np.array([1, 2, 3], np.int64), np.array([1, 3, 2], np.int64)
    SeqTracker(4).observe(PingBatch(["w", "w", "w"], ts, z, z, z, z, z, seq))
