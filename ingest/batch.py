"""Accumulate decoded messages into one batch: pings, rejections and the MQTT acks owed.

Pings are passed on in arrival order: the compliance engine sorts each batch per vehicle
and handles late pings itself (CONTRACT §4 determinism is its job). Here a batch is only
de-duplicated on (vehicle_id, ts) — first arrival wins — and pings older than the
reorder allowance behind their vehicle's newest are counted as late.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compliance.types import PingBatch
from ingest.bulkdecode import decode_bulk
from ingest.decode import DecodeLimits, PingColumns, Rejection, decode_message
from routewatch import metrics

AckToken = tuple[int, int, int]  # (connection generation, MQTT message id, qos)
#: messages decoded per bulk pass (a batch that fills part way leaves the rest of a pass
#: to be decoded again)
BULK_CHUNK = 1024


@dataclass(slots=True)
class PendingBatch:
    """What one flush commits: unique pings, rejections, and the acks owed afterwards."""

    pings: PingBatch
    rejections: list[Rejection]
    acks: list[AckToken]
    received: int  # ping items received (accepted + rejected)
    duplicates: int  # dropped within the batch as repeats of (vehicle_id, ts)
    late: int
    messages: int


class Batcher:
    """Not thread-safe; owned by one event loop."""

    def __init__(self, limits: DecodeLimits, reorder_allowance_ms: int) -> None:
        self.limits = limits
        self.reorder_allowance_ms = reorder_allowance_ms
        self._cols = PingColumns()
        self._rejections: list[Rejection] = []
        self._acks: list[AckToken] = []
        self._received = 0
        self._messages = 0
        self._newest_ts: dict[str, int] = {}  # per vehicle, across batches (for late count)
        self.started_monotonic: float | None = None  # when the open batch got its first item

    @property
    def pings(self) -> int:
        return len(self._cols)

    @property
    def messages(self) -> int:
        return self._messages

    def add(self, topic: str, payload: bytes, received_ms: int, ack: AckToken | None) -> None:
        """Decode one message into the open batch; ``ack`` is acknowledged after commit."""
        if self.started_monotonic is None:
            self.started_monotonic = time.monotonic()
        self._received += decode_message(
            topic, payload, received_ms, self.limits, self._cols, self._rejections
        )
        self._messages += 1
        if ack is not None:
            self._acks.append(ack)

    def add_many(
        self,
        messages: Sequence[tuple[str, bytes, int, int]],
        received_ms: int,
        generation: int,
        max_pings: int,
    ) -> int:
        """Decode ``(topic, payload, packet id, qos)`` messages into the open batch, in
        order, until it holds ``max_pings``; returns how many messages it took. The plain
        valid ones are decoded together (ingest.bulkdecode), the rest one by one — the
        batch is the same as :meth:`add` would make of them."""
        if messages and self.started_monotonic is None:
            self.started_monotonic = time.monotonic()
        taken = 0
        while taken < len(messages) and len(self._cols) < max_pings:
            # in passes: what a full batch leaves over is decoded again by the next call
            chunk = messages[taken : taken + BULK_CHUNK]
            n = self._decode_pass(chunk, received_ms, max_pings)
            self._acks.extend((generation, mid, qos) for _, _, mid, qos in chunk[:n] if qos)
            taken += n
        self._messages += taken
        return taken

    def _decode_pass(
        self, messages: Sequence[tuple[str, bytes, int, int]], received_ms: int, max_pings: int
    ) -> int:
        """One bulk pass of :meth:`add_many` (pings and rejections only); returns how
        many messages it took."""
        bulk = decode_bulk(
            [m[0] for m in messages], [m[1] for m in messages], received_ms, self.limits
        )
        counts, row_start, cols = bulk.counts, bulk.row_start, self._cols
        i, n = 0, len(messages)
        while i < n and len(cols) < max_pings:
            if counts[i] < 0:
                topic, payload, _, _ = messages[i]
                self._received += decode_message(
                    topic, payload, received_ms, self.limits, cols, self._rejections
                )
                i += 1
                continue
            # a run of bulk-decoded messages, cut where the batch fills
            j = i + 1
            while j < n and counts[j] >= 0:
                j += 1
            room = max_pings - len(cols)
            j = min(j, i + 1 + int(np.searchsorted(row_start[i + 1 : j + 1] - row_start[i], room)))
            a, b = row_start[i], row_start[j]
            vids = bulk.vehicle_id[i:j]
            if b - a != j - i:  # some messages were arrays: a vehicle id per row
                vids = [
                    v for v, c in zip(vids, counts[i:j].tolist(), strict=True) for _ in range(c)
                ]
            # (a message with an unusable topic is never bulk-decoded: no None here)
            cols.extend(vids, bulk.ints[:, a:b], bulk.floats[:, a:b])  # type: ignore[arg-type]
            self._received += int(b - a)
            i = j
        return i

    def take(self) -> PendingBatch:
        """Close the open batch and start a new one."""
        raw = self._cols.to_batch()
        keep, late = self._dedupe(raw)
        pings = raw if len(keep) == len(raw) else raw.take(np.asarray(keep, dtype=np.intp))
        pending = PendingBatch(
            pings,
            self._rejections,
            self._acks,
            self._received,
            len(raw) - len(keep),
            late,
            self._messages,
        )
        self._cols.clear()
        self._rejections, self._acks = [], []
        self._received = self._messages = 0
        self.started_monotonic = None
        if late:
            metrics.PINGS_LATE.inc(late)
        return pending

    def _dedupe(self, batch: PingBatch) -> tuple[list[int], int]:
        seen: set[tuple[str, int]] = set()
        keep: list[int] = []
        late = 0
        newest = self._newest_ts
        allowance = self.reorder_allowance_ms
        for i, (vid, ts) in enumerate(zip(batch.vehicle_id, batch.ts_ms.tolist(), strict=True)):
            key = (vid, ts)
            if key in seen:
                continue
            seen.add(key)
            keep.append(i)
            top = newest.get(vid)
            if top is None or ts > top:
                newest[vid] = ts
            elif ts < top - allowance:
                late += 1
        return keep, late
