"""Payload decoding and validation (CONTRACT §1): every kind of bad input, and
property tests that decoding never raises and accounts for every item."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import decode as decode_module
from ingest.decode import DecodeLimits, PingColumns, Reason, Rejection, decode_message

NOW_MS = 1_763_798_400_000
LIMITS = DecodeLimits(max_payload_bytes=10_000, max_future_skew_ms=300_000)
GOOD = {
    "ts": NOW_MS - 1000,
    "lat": -6.2088,
    "lon": 106.8456,
    "speed": 42.5,
    "heading": 181.0,
    "accuracy": 6.0,
    "seq": 1017,
}


def decode(
    payload: bytes | object, topic: str = "fleet/B-1/ping", limits: DecodeLimits = LIMITS
) -> tuple[PingColumns, list[Rejection], int]:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    out: list[Rejection] = []
    cols = PingColumns()
    n = decode_message(topic, raw, NOW_MS, limits, cols, out)
    return cols, out, n


def test_single_object_all_fields() -> None:
    cols, rej, n = decode(GOOD)
    assert (n, rej, len(cols)) == (1, [], 1)
    batch = cols.to_batch()
    assert batch.vehicle_id == ["B-1"]
    assert batch.ts_ms[0] == NOW_MS - 1000
    assert (batch.lat[0], batch.lon[0]) == (-6.2088, 106.8456)
    assert (batch.speed_kmh[0], batch.heading_deg[0], batch.accuracy_m[0]) == (42.5, 181.0, 6.0)
    assert batch.seq[0] == 1017


def test_optionals_absent_are_nan_and_minus_one() -> None:
    cols, rej, _ = decode({"ts": "2025-11-22T08:00:00+07:00", "lat": 1, "lon": 2, "speed": None})
    assert rej == []
    b = cols.to_batch()
    assert b.ts_ms[0] == 1763773200000
    assert math.isnan(b.speed_kmh[0]) and math.isnan(b.heading_deg[0])
    assert math.isnan(b.accuracy_m[0]) and b.seq[0] == -1


def test_array_one_bad_element_rejects_only_it() -> None:
    items = [GOOD, {**GOOD, "lat": 91.0}, {**GOOD, "ts": NOW_MS - 2000}]
    cols, rej, n = decode(items)
    assert n == 3 and len(cols) == 2
    assert [r.reason for r in rej] == [Reason.OUT_OF_RANGE]
    assert orjson.loads(rej[0].payload_excerpt)["lat"] == 91.0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Reason.EMPTY_PAYLOAD),
        (b"  \n", Reason.EMPTY_PAYLOAD),
        (b"[]", Reason.EMPTY_PAYLOAD),
        (b'{"ts": 1, "lat":', Reason.MALFORMED_JSON),
        (b"\xff\xfe", Reason.MALFORMED_JSON),
        (b"42", Reason.NOT_AN_OBJECT),
        (b'["x"]', Reason.NOT_AN_OBJECT),
        ({"lat": 1.0, "lon": 2.0}, Reason.MISSING_FIELD),
        ({"ts": NOW_MS, "lon": 2.0}, Reason.MISSING_FIELD),
        ({**GOOD, "lat": "1.5"}, Reason.BAD_TYPE),
        ({**GOOD, "speed": True}, Reason.BAD_TYPE),
        ({**GOOD, "seq": 1.5}, Reason.BAD_TYPE),
        ({**GOOD, "ts": [1]}, Reason.BAD_TYPE),
        (b'{"ts": 1763798399000, "lat": 1e999, "lon": 2}', Reason.NON_FINITE),
        (b'{"ts": 1763798399000, "lat": NaN, "lon": 2}', Reason.NON_FINITE),
        ({**GOOD, "speed": "NaN"}, Reason.NON_FINITE),
        ({**GOOD, "lon": -180.5}, Reason.OUT_OF_RANGE),
        ({**GOOD, "speed": -1}, Reason.OUT_OF_RANGE),
        ({**GOOD, "speed": 5000}, Reason.OUT_OF_RANGE),
        ({**GOOD, "heading": 361}, Reason.OUT_OF_RANGE),
        ({**GOOD, "accuracy": -0.5}, Reason.OUT_OF_RANGE),
        ({**GOOD, "accuracy": 1e300}, Reason.OUT_OF_RANGE),  # overflowed the real column
        # integers beyond float range (orjson refuses them, the lenient parser reads them)
        (b'{"ts": 1763798399000, "lat": 1%s, "lon": 2}' % (b"0" * 400), Reason.OUT_OF_RANGE),
        (b'{"ts": 1763798399000, "lat": 1, "lon": -1%s}' % (b"0" * 400), Reason.OUT_OF_RANGE),
        (b'{"ts": 1%s, "lat": 1, "lon": 2}' % (b"0" * 400), Reason.BAD_TIMESTAMP),
        (  # orjson reads an integer beyond 64 bits as a float: not an integer any more
            b'{"ts": 1763798399000, "lat": 1, "lon": 2, "seq": 1%s}' % (b"0" * 40),
            Reason.BAD_TYPE,
        ),
        ({**GOOD, "ts": "yesterday"}, Reason.BAD_TIMESTAMP),
        ({**GOOD, "ts": "2026-11-22T08:00:00"}, Reason.BAD_TIMESTAMP),
        ({**GOOD, "ts": 1_763_798_400}, Reason.BAD_TIMESTAMP),  # epoch seconds
        ({**GOOD, "ts": NOW_MS + 301_000}, Reason.FUTURE_TIMESTAMP),
        ({**GOOD, "ts": "2025-02-30T00:00:00Z"}, Reason.BAD_TIMESTAMP),
        ({**GOOD, "ts": "2025-11-22T08:00:00+24:00"}, Reason.BAD_TIMESTAMP),
        ({**GOOD, "ts": "0001-01-01T00:00:00+01:00"}, Reason.BAD_TIMESTAMP),  # before year 1
        ({**GOOD, "ts": "9999-12-31T23:59:59-01:00"}, Reason.BAD_TIMESTAMP),  # after 9999
        ({**GOOD, "ts": "1999-12-31T23:59:59Z"}, Reason.BAD_TIMESTAMP),  # implausibly old
        ({**GOOD, "ts": "2025-11-22"}, Reason.BAD_TIMESTAMP),  # no time, no offset
        ({**GOOD, "ts": ""}, Reason.BAD_TIMESTAMP),
        ({**GOOD, "ts": "2016-12-31T23:59:61Z"}, Reason.BAD_TIMESTAMP),
        ({**GOOD, "ts": "2016-12-31T23:59:60"}, Reason.BAD_TIMESTAMP),  # still needs an offset
        ({**GOOD, "ts": True}, Reason.BAD_TYPE),
        (b"[" + b"0," * 6000 + b"0]", Reason.PAYLOAD_TOO_LARGE),
    ],
)
def test_each_reason(payload: bytes | object, reason: Reason) -> None:
    cols, rej, n = decode(payload)
    assert len(cols) == 0
    assert [r.reason for r in rej] == [reason], rej
    assert n == 1 and rej[0].detail


@pytest.mark.parametrize(
    ("ts", "ts_ms"),
    [
        ("2025-11-22T08:00:00Z", 1_763_798_400_000),
        ("2025-11-22t08:00:00z", 1_763_798_400_000),  # RFC 3339 allows lower case
        ("2025-11-22T15:00:00+07:00", 1_763_798_400_000),
        ("2025-11-22T08:00:00-00:00", 1_763_798_400_000),  # "offset unknown" is still UTC
        ("2025-11-22T08:00:00.123456789Z", 1_763_798_400_123),  # beyond microseconds
        ("2025-11-22T08:00:00.0005Z", 1_763_798_400_000),  # rounds to the millisecond
        ("2016-12-31T23:59:60Z", 1_483_228_799_999),  # a leap second: the minute's last ms
        ("2016-12-31t18:59:60.5-05:00", 1_483_228_799_999),
    ],
)
def test_rfc3339_forms(ts: str, ts_ms: int) -> None:
    cols, rej, _ = decode({**GOOD, "ts": ts})
    assert rej == [] and list(cols.to_batch().ts_ms) == [ts_ms]


def test_non_finite_element_keeps_its_valid_siblings() -> None:
    payload = b'[{"ts": 1763798399000, "lat": 1, "lon": 2}, {"ts": 1763798398000, "lat": Infinity, "lon": 2}]'
    cols, rej, _ = decode(payload)
    assert len(cols) == 1 and [r.reason for r in rej] == [Reason.NON_FINITE]


@pytest.mark.parametrize(
    "topic",
    [
        "fleet//ping",
        "fleet/a b/ping",
        "fleet/" + "x" * 65 + "/ping",
        "fleet/B-1/pong",
        "fleet/B-1/ping/extra",
        "other/B-1/ping",
    ],
)
def test_bad_topic(topic: str) -> None:
    cols, rej, _ = decode(GOOD, topic=topic)
    assert len(cols) == 0 and [r.reason for r in rej] == [Reason.BAD_TOPIC]
    assert rej[0].topic == topic


def test_unknown_vehicle_only_when_registry_enforced() -> None:
    strict = DecodeLimits(10_000, 300_000, known_vehicles=frozenset({"B-2"}))
    _, rej, _ = decode(GOOD, limits=strict)
    assert [r.reason for r in rej] == [Reason.UNKNOWN_VEHICLE]
    cols, rej, _ = decode(GOOD, topic="fleet/B-2/ping", limits=strict)
    assert rej == [] and len(cols) == 1


def test_clear_reuses_buffer() -> None:
    cols, _, _ = decode([GOOD, GOOD])
    cols.clear()
    assert len(cols) == 0 and len(cols.ts_ms) == 0 and len(cols.to_batch()) == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    cols, rej, n = decode(payload)
    assert len(cols) + len(rej) == n >= 1


json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
field_value = json_scalar | st.lists(json_scalar, max_size=2)
ping_like = st.fixed_dictionaries(
    {},
    optional={
        k: field_value | st.integers(NOW_MS - 10**9, NOW_MS + 10**9) | st.floats(-200, 200)
        for k in ("ts", "lat", "lon", "speed", "heading", "accuracy", "seq")
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ping_like | json_scalar, min_size=1, max_size=6))
def test_every_item_accepted_or_rejected(items: list[object]) -> None:
    payload = json_dumps_lenient(items)
    cols, rej, n = decode(payload)
    assert n == len(items)
    assert len(cols) + len(rej) == len(items)
    b = cols.to_batch()
    assert all(-90 <= v <= 90 for v in b.lat) and all(-180 <= v <= 180 for v in b.lon)
    assert all(NOW_MS - 10**9 <= t <= NOW_MS + 300_000 for t in b.ts_ms)


#: numbers at the edges of what JSON, float64 and the database's float32 columns hold
edge_number = st.sampled_from(
    [0, -0.0, 1e-320, -1e-300, 1e-46, 1e-40, 3.5e38, -3.5e38, 1e308, 2**63, -(2**63) - 1]
) | st.integers(-(10**400), 10**400)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"ts": st.just(NOW_MS - 1), "lat": st.just(1.0) | edge_number, "lon": edge_number},
        optional={k: edge_number for k in ("speed", "heading", "accuracy", "seq")},
    )
)
def test_edge_numbers_never_raise_and_fit_the_columns(item: dict[str, object]) -> None:
    cols, rej, n = decode(json_dumps_lenient(item))
    assert n == 1 and len(cols) + len(rej) == 1
    b = cols.to_batch()
    for column in (b.speed_kmh, b.heading_deg, b.accuracy_m):  # stored as real (float32)
        for v in column:
            assert math.isnan(v) or v == 0 or 1e-30 <= abs(v) <= 3.4e38, item


def json_dumps_lenient(obj: object) -> bytes:
    """JSON with NaN/Infinity literals allowed (what a broken tracker might send)."""
    return json.dumps(obj).encode()


def test_large_array() -> None:
    items = [{**GOOD, "ts": NOW_MS - i} for i in range(5000)]
    cols, rej, n = decode(orjson.dumps(items), limits=DecodeLimits(10**7, 300_000))
    assert rej == [] and len(cols) == n == 5000
    assert list(cols.to_batch().ts_ms[:3]) == [NOW_MS, NOW_MS - 1, NOW_MS - 2]


#: values around every boundary the fast path tests, of every JSON type
edges = st.sampled_from(
    [
        None,
        True,
        0,
        -0.0,
        0.0,
        1e-31,
        90.0,
        90.0000001,
        -180.0,
        360.0,
        360.5,
        1000.0,
        1000.01,
        100_000.0,
        100_000.5,
        -1.0,
        math.nan,
        math.inf,
        "1",
        2**63,
        2**63 - 1,
        NOW_MS + 300_000,
        NOW_MS + 300_001,
        946_684_800_000,
        946_684_799_999,
        2**62,
    ]
)
boundary = edges | st.floats() | st.integers()


_ABSENT = object()
_FIELDS = ("ts", "lat", "lon", "speed", "heading", "accuracy", "seq")


@st.composite
def near_good(draw: st.DrawFn) -> dict[str, object]:
    """A good ping with one or two fields replaced by a boundary value or removed."""
    item: dict[str, object] = dict(GOOD)
    for key in draw(st.lists(st.sampled_from(_FIELDS), min_size=1, max_size=2)):
        # mostly the listed boundary values: each is one step from a decision
        value = draw(st.one_of(edges, edges, edges, boundary, st.just(_ABSENT)))
        if value is _ABSENT:
            item.pop(key, None)
        else:
            item[key] = value
    return item


@settings(max_examples=500, deadline=None)
@given(near_good())
def test_fast_path_agrees_with_the_full_checks(item: dict[str, object]) -> None:
    fast, checked = PingColumns(), PingColumns()
    outcomes = []
    for cols, append in (
        (fast, decode_module._append_item),
        (checked, decode_module._append_checked),
    ):
        try:
            append(cols, "B-1", item, NOW_MS, LIMITS)
            outcomes.append(None)
        except decode_module._Invalid as exc:
            outcomes.append(exc.reason)
    assert outcomes[0] == outcomes[1]
    a, b = fast.to_batch(), checked.to_batch()
    assert a.vehicle_id == b.vehicle_id
    for column in ("ts_ms", "lat", "lon", "speed_kmh", "heading_deg", "accuracy_m", "seq"):
        x, y = getattr(a, column), getattr(b, column)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
