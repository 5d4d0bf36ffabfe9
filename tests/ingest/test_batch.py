"""Batcher: de-duplication within a batch (first arrival wins), late counting, acks."""

from __future__ import annotations

import orjson

from ingest.batch import Batcher
from ingest.decode import DecodeLimits

T0 = 1_763_798_400_000
LIMITS = DecodeLimits(max_payload_bytes=100_000, max_future_skew_ms=300_000)


def msg(*ts: int, lat: float = 1.0) -> bytes:
    return orjson.dumps([{"ts": t, "lat": lat, "lon": 2.0} for t in ts])


def test_dedupe_first_arrival_wins_and_acks_kept() -> None:
    b = Batcher(LIMITS, reorder_allowance_ms=30_000)
    b.add("fleet/V1/ping", msg(T0, T0 + 1000, T0), T0 + 5000, (1, 10, 1))
    b.add("fleet/V1/ping", msg(T0 + 1000, lat=9.0), T0 + 5000, (1, 11, 1))
    b.add("fleet/V2/ping", msg(T0), T0 + 5000, None)
    b.add("fleet/V2/ping", b"{", T0 + 5000, (1, 12, 1))
    assert (b.pings, b.messages) == (5, 4)
    p = b.take()
    assert p.pings.vehicle_id == ["V1", "V1", "V2"]
    assert p.pings.ts_ms.tolist() == [T0, T0 + 1000, T0]
    assert p.pings.lat.tolist() == [1.0, 1.0, 1.0]  # the later duplicate (lat 9) is dropped
    assert (p.duplicates, p.received, p.messages) == (2, 6, 4)
    assert p.acks == [(1, 10, 1), (1, 11, 1), (1, 12, 1)]
    assert [r.reason for r in p.rejections] == ["malformed_json"]
    assert b.pings == b.messages == 0 and b.started_monotonic is None


def test_late_counted_against_newest_across_batches() -> None:
    b = Batcher(LIMITS, reorder_allowance_ms=30_000)
    b.add("fleet/V1/ping", msg(T0 + 100_000), T0 + 200_000, None)
    b.take()
    b.add("fleet/V1/ping", msg(T0 + 80_000, T0 + 50_000, T0 + 110_000), T0 + 200_000, None)
    p = b.take()
    assert p.late == 1  # only the ping 50 s behind; 20 s behind is within the allowance
    assert len(p.pings) == 3  # late pings are still passed on (and stored)
