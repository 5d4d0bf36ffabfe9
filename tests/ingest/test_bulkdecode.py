"""ingest.bulkdecode: many messages decoded in one Numba pass make exactly the batch that
decoding them one by one (ingest.decode) makes — same rows bit for bit, same rejections,
same acks — and the plain tracker message really takes the bulk path."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import BULK_CHUNK, Batcher, PendingBatch
from ingest.bulkdecode import decode_bulk
from ingest.decode import DecodeLimits

NOW_MS = 1_763_798_400_000
LIMITS = DecodeLimits(max_payload_bytes=2_000, max_future_skew_ms=300_000)
Message = tuple[str, bytes, int, int]


def one_by_one(messages: list[Message], limits: DecodeLimits = LIMITS) -> PendingBatch:
    b = Batcher(limits, reorder_allowance_ms=30_000)
    for topic, payload, mid, qos in messages:
        b.add(topic, payload, NOW_MS, (7, mid, qos) if qos else None)
    return b.take()


def in_bulk(
    messages: list[Message], limits: DecodeLimits = LIMITS, max_pings: int = 10**9
) -> tuple[PendingBatch, int]:
    b = Batcher(limits, reorder_allowance_ms=30_000)
    taken = b.add_many(messages, NOW_MS, 7, max_pings)
    return b.take(), taken


def assert_same(a: PendingBatch, b: PendingBatch) -> None:
    assert a.pings.vehicle_id == b.pings.vehicle_id
    for name in ("ts_ms", "lat", "lon", "speed_kmh", "heading_deg", "accuracy_m", "seq"):
        x, y = getattr(a.pings, name), getattr(b.pings, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name  # bits: -0.0, NaN
    assert a.rejections == b.rejections
    assert (a.acks, a.received, a.duplicates, a.late, a.messages) == (
        b.acks,
        b.received,
        b.duplicates,
        b.late,
        b.messages,
    )


def test_plain_messages_take_the_bulk_path() -> None:
    payloads = [
        b'{"ts":%d,"lat":-6.2088,"lon":106.8456,"speed":42.5,"heading":181.0,'
        b'"accuracy":6.0,"seq":%d}' % (NOW_MS - 1000 + i, i)
        for i in range(50)
    ]
    payloads.append(
        b' [ {"lon": 2, "ts": %d, "lat": 1e1 }\n,{"ts":%d,"lat":0.5,"lon":-0}] '
        % (NOW_MS, NOW_MS + 1)
    )
    bulk = decode_bulk(["fleet/B-1/ping"] * len(payloads), payloads, NOW_MS, LIMITS)
    assert bulk.counts.tolist() == [1] * 50 + [2]
    assert bulk.ints[0, :3].tolist() == [NOW_MS - 1000, NOW_MS - 999, NOW_MS - 998]
    assert bulk.floats[:, 50].tolist()[:2] == [10.0, 2.0]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts":"2026-11-22T08:00:00Z","lat":1.0,"lon":2.0}',  # RFC 3339 ts
        b'{"ts":1763798399000.0,"lat":1.0,"lon":2.0}',  # ts not an integer
        b'{"ts":1763798399000,"lat":1.0,"lon":2.0,"hdop":1.1}',  # unknown key
        b'{"ts":1763798399000,"lat":1.0,"lat":3.0,"lon":2.0}',  # repeated key
        b'{"ts":1763798399000,"l\\u0061t":1.0,"lon":2.0}',  # escaped key
        b'{"ts":1763798399000,"lat":1.00000000000000001,"lon":2.0}',  # > 15 digits
        b'{"ts":1763798399000,"lat":1e-30,"lon":2.0}',  # power of ten beyond 22
        b'{"ts":1763798399000,"lat":01.5,"lon":2.0}',  # not JSON
        b'{"ts":1763798399000,"lat":91.0,"lon":2.0}',  # out of range
        b'{"ts":1763798399000,"lat":1.0,"lon":2.0,"seq":3.0}',  # seq not an integer
        b'{"ts":1763798399000,"lat":1.0,"lon":2.0}x',  # trailing garbage
        b"[]",
        b'\xef\xbb\xbf{"ts":1763798399000,"lat":1.0,"lon":2.0}',  # BOM
        b'[{"ts":1763798399000,"lat":1.0,"lon":2.0},{"ts":1}]',  # one bad element
    ],
)
def test_anything_else_is_left_to_the_full_checks(payload: bytes) -> None:
    assert decode_bulk(["fleet/B-1/ping"], [payload], NOW_MS, LIMITS).counts.tolist() == [-1]
    message = [("fleet/B-1/ping", payload, 1, 1)]
    assert_same(in_bulk(message)[0], one_by_one(message))


_MAX_TS = NOW_MS + LIMITS.max_future_skew_ms
_EDGES = [  # (field, value just inside, value just outside) of every bound
    ("ts", "946684800000", "946684799999"),
    ("ts", str(_MAX_TS), str(_MAX_TS + 1)),
    ("lat", "-90.0", "-90.0000001"),
    ("lat", "90", "90.0000001"),
    ("lon", "-180", "-180.0000001"),
    ("lon", "180.0", "180.0000001"),
    ("speed", "0.0", "-0.0000001"),
    ("speed", "1000.0", "1000.0000001"),
    ("heading", "360", "360.0000001"),
    ("accuracy", "100000.0", "100000.0000001"),
    ("seq", "0", "-1"),
    ("seq", "9" * 18, str(2**63)),  # 19 digits are left to the full checks
]


@pytest.mark.parametrize(("field", "inside", "outside"), _EDGES)
def test_every_bound_is_the_full_checks_bound(field: str, inside: str, outside: str) -> None:
    values = {"ts": str(NOW_MS), "lat": "1.5", "lon": "2.5"}
    payloads = []
    for value in (inside, outside):
        values[field] = value
        payloads.append(("{" + ",".join(f'"{k}":{v}' for k, v in values.items()) + "}").encode())
    assert decode_bulk(["fleet/A/ping"] * 2, payloads, NOW_MS, LIMITS).counts.tolist() == [1, -1]
    messages = [("fleet/A/ping", raw, k + 1, 1) for k, raw in enumerate(payloads)]
    assert_same(in_bulk(messages)[0], one_by_one(messages))


def test_topic_registry_and_size_refusals_go_the_slow_way() -> None:
    good = b'{"ts":1763798399000,"lat":1.0,"lon":2.0}'
    big = b"[" + b",".join([good] * 60) + b"]"  # > 2000 bytes
    messages = [
        ("fleet/OK/ping", good, 1, 1),
        ("fleet/bad vehicle/ping", good, 2, 1),
        ("fleet/NOPE/ping", good, 3, 1),
        ("fleet/OK/ping", big, 4, 1),
        ("fleet/OK/ping", good.replace(b"399000", b"399001"), 5, 0),
    ]
    limits = DecodeLimits(2_000, 300_000, frozenset({"OK"}))
    batch, taken = in_bulk(messages, limits)
    assert taken == 5 and len(batch.pings) == 2
    assert [r.reason for r in batch.rejections] == [
        "bad_topic",
        "unknown_vehicle",
        "payload_too_large",
    ]
    assert_same(batch, one_by_one(messages, limits))


def test_stops_where_the_batch_fills() -> None:
    one = b'{"ts":%d,"lat":1.0,"lon":2.0}'
    messages = [("fleet/A/ping", one % (NOW_MS - k), k + 1, 1) for k in range(3)] + [
        ("fleet/A/ping", b"[" + b",".join(one % (NOW_MS - 100 - j) for j in range(4)) + b"]", 9, 1)
    ]
    messages += [("fleet/A/ping", one % (NOW_MS - 200), 10, 1)]
    for max_pings, expect_taken in ((1, 1), (3, 3), (4, 4), (7, 4), (8, 5)):
        batch, taken = in_bulk(messages, max_pings=max_pings)
        assert taken == expect_taken, max_pings
        assert_same(batch, one_by_one(messages[:taken]))


def test_many_passes_and_a_cut_in_the_last() -> None:
    """More messages than one bulk pass takes, arrays among them (every 7th a valid pair,
    every 11th a pair with a bad fix, left to the full checks): the passes join up, and
    the batch closes at the message that fills it."""
    one = b'{"ts":%d,"lat":1.0,"lon":2.0}'
    messages = []
    for k in range(2 * BULK_CHUNK + 100):
        body = one % (NOW_MS - k)
        if k % 7 == 0:
            body = b"[" + body + b"," + one % (NOW_MS - 10**6 - k) + b"]"
        elif k % 11 == 0:
            body = b"[" + body + b"," + one % k + b"]"
        messages.append((f"fleet/V{k % 50}/ping", body, k % 65535 + 1, 1))
    everything, taken = in_bulk(messages)
    assert taken == len(messages)
    assert_same(everything, one_by_one(messages))
    max_pings = 2 * BULK_CHUNK + 10
    batch, taken = in_bulk(messages, max_pings=max_pings)
    assert_same(batch, one_by_one(messages[:taken]))
    assert len(batch.pings) >= max_pings > len(one_by_one(messages[: taken - 1]).pings)


# -- payloads near and across the edges of the bulk path ---------------------------------

_NUMBERS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-400, 400).map(lambda f: f"{f:.7f}"),
    st.floats(-400, 400).map(lambda f: f"{f:.3e}"),
    st.sampled_from(
        ["-0", "-0.0", "0.0", "0", "1e2", "1E-3", "1.5e+1", "01", "1.", ".5", "+1", "-", "1e",
         "null", "true", '"1.0"', '"nan"', "NaN", "1e400", "123456789012345678", "0.000001"]
    ),
)  # fmt: skip
_TS = st.one_of(
    st.integers(NOW_MS - 10**9, NOW_MS + 10**6).map(str),
    st.sampled_from(['"2026-11-22T08:00:00Z"', "946684800000", "946684799999", "null"]),
    _NUMBERS,
)
_WS = st.sampled_from(["", "", " ", "\n", "\t ", "\r\n"])
_KEYS = ["ts", "lat", "lon", "speed", "heading", "accuracy", "seq"]


def _number_text(low: float, high: float) -> st.SearchStrategy[str]:
    """A number within [low, high] written the ways trackers and JSON libraries write
    them (decimal places, repr, exponent, integer, negative zero)."""
    return st.one_of(
        st.floats(low, high).map(lambda f: f"{f:.7f}"),
        st.floats(low, high).map(repr),
        st.floats(low, high).map(lambda f: f"{f:.4e}"),
        st.integers(int(low), int(high)).map(str),
        st.sampled_from(["-0", "-0.0", "0.0", "1e1", "1E0", "0.5e-1"]),
    )


_VALID = {
    "ts": st.integers(946_684_800_000, NOW_MS + 300_000).map(str),
    "lat": _number_text(-90, 90),
    "lon": _number_text(-180, 180),
    "speed": st.one_of(_number_text(0, 1000), st.just("null")),
    "heading": st.one_of(_number_text(0, 360), st.just("null")),
    "accuracy": st.one_of(_number_text(0, 100_000), st.just("null")),
    "seq": st.one_of(st.integers(0, 2**63 - 1).map(str), st.just("null")),
}


@st.composite
def ping_object(draw: st.DrawFn) -> str:
    """Mostly a valid ping in any key order and spacing; sometimes one thing is off."""
    keys = ["ts", "lat", "lon", *draw(st.sets(st.sampled_from(_KEYS[3:])))]
    values = {key: draw(_VALID[key]) for key in keys}
    fault = draw(st.integers(0, 19))
    if fault == 1:  # a value of any sort, valid or not
        values[draw(st.sampled_from(keys))] = draw(_TS if keys[0] == "ts" else _NUMBERS)
    elif fault == 2:
        values[draw(st.sampled_from(keys))] = draw(_NUMBERS)
    elif fault == 3:  # an unknown, escaped or missing key
        values[draw(st.sampled_from(["hdop", "l\\u0061t"]))] = draw(_NUMBERS)
    elif fault == 4:
        del values[draw(st.sampled_from(keys[:3]))]
    order = draw(st.permutations(list(values)))
    parts = [f'{draw(_WS)}"{key}"{draw(_WS)}:{draw(_WS)}{values[key]}{draw(_WS)}' for key in order]
    if fault == 5 and parts:  # a repeated key
        parts.append(parts[0])
    return "{" + ",".join(parts) + "}"


@st.composite
def payload(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        text = draw(ping_object())
    else:
        items = draw(st.lists(ping_object(), max_size=4))
        text = "[" + f"{draw(_WS)},".join(items) + "]"
    raw = (draw(_WS) + text + draw(_WS)).encode()
    cut = draw(st.integers(0, 30))
    if cut == 1:  # a mutated byte
        k = draw(st.integers(0, max(0, len(raw) - 1)))
        raw = raw[:k] + bytes([draw(st.integers(0, 255))]) + raw[k + 1 :]
    elif cut == 2:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["fleet/A/ping", "fleet/B-2/ping", "x/A/ping"]), payload()),
        min_size=1,
        max_size=12,
    )
)
def test_bulk_equals_one_by_one(msgs: list[tuple[str, bytes]]) -> None:
    messages = [(topic, raw, k + 1, k % 2) for k, (topic, raw) in enumerate(msgs)]
    assert_same(in_bulk(messages)[0], one_by_one(messages))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-180, 180), min_size=1, max_size=20), st.integers(1, 15))
def test_decimal_numbers_are_read_as_orjson_reads_them(values: list[float], places: int) -> None:
    texts = [f"{v:.{places}f}" for v in values]
    payloads = [b'{"ts":%d,"lat":0.5,"lon":%s}' % (NOW_MS, t.encode()) for t in texts]
    bulk = decode_bulk(["fleet/A/ping"] * len(texts), payloads, NOW_MS, LIMITS)
    taken = bulk.counts == 1
    expect = np.array([orjson.loads(t) for t in texts])
    assert bulk.floats[1, : int(taken.sum())].tobytes() == expect[taken].tobytes()
    digits = [len(t.lstrip("-").replace(".", "").lstrip("0")) for t in texts]
    assert all(taken[k] for k, d in enumerate(digits) if d <= 15)
