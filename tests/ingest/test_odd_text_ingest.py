"""Issue #14 "no 500 on odd text", the MQTT side: topics and payloads holding NUL,
bytes that are not UTF-8, control characters or unpaired surrogates are recorded as
rejections — never a crash, a dropped connection or a failed batch.

Mosquitto itself refuses a topic with NUL, control characters or bad UTF-8 (it
disconnects the publisher), so on the real broker only the payloads get through; the
receiver and the rejection store are also tested with what a less careful broker would
deliver.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import AsyncConnection

from ingest import receiver
from ingest.bulkdecode import decode_bulk
from ingest.decode import (
    DecodeLimits,
    PingColumns,
    Reason,
    Rejection,
    decode_message,
    vehicle_id_from_topic,
)
from ingest.receiver import ConnectOptions, MqttConnection, MqttError
from routewatch.services import mqtt_address
from store.rejections import insert_rejections
from tests.ingest.live_helpers import (
    NOW_MS,
    engine,
    make_settings,
    ping,
    publisher,
    stored,
    wait_for,
)

LIMITS = DecodeLimits(max_payload_bytes=10_000, max_future_skew_ms=300_000)
ODD = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\t", "\n", "\udcff", "\udc80", "\ud800", "😀", "ش"]
odd_text = st.lists(st.one_of(st.sampled_from(ODD), st.text(max_size=4)), max_size=8).map("".join)


def _decode(topic: str, payload: bytes) -> tuple[PingColumns, list[Rejection]]:
    cols, out = PingColumns(), []
    decode_message(topic, payload, NOW_MS, LIMITS, cols, out)
    return cols, out


@settings(max_examples=300, deadline=None)
@given(
    vid=odd_text,
    payload=st.one_of(
        st.binary(max_size=80),
        odd_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
        # JSON escapes (\u0000, \ud800, ...) in a string field and in an extra one
        odd_text.map(lambda s: json.dumps({"ts": s, "lat": 1.0, "lon": 2.0, "x": s}).encode()),
    ),
)
def test_odd_topics_and_payloads_decode_to_rejections(vid: str, payload: bytes) -> None:
    """Neither decoder raises; a topic whose vehicle id is not an id is a bad_topic."""
    topic = f"fleet/{vid}/ping"
    cols, out = _decode(topic, payload)
    if vehicle_id_from_topic(topic) is None:
        assert [r.reason for r in out] == [Reason.BAD_TOPIC] and len(cols) == 0
        assert out[0].payload_excerpt == payload[:4096]
    bulk = decode_bulk([topic], [payload], NOW_MS, LIMITS)
    assert bulk.counts[0] == -1 or len(cols) == bulk.counts[0]


async def test_receiver_keeps_a_topic_that_is_not_utf8() -> None:
    """A broker that does not check topics may deliver bytes that are not UTF-8: the
    message is taken (and then rejected as bad_topic), the connection stays up."""
    topic = b"fleet/\xff\xfe\x00/ping"
    body = len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + b"\x00" + b"{}"
    conn = MqttConnection(ConnectOptions("127.0.0.1", 1, "parser"))
    proto = receiver._Protocol(conn)
    proto.data_received(receiver._packet(0x32, body))
    assert conn._error is None
    [(got, payload, mid, qos)] = list(conn._inbox)
    assert got.encode("utf-8", "surrogateescape") == topic and (payload, mid, qos) == (b"{}", 7, 1)
    _, out = _decode(got, payload)
    assert [r.reason for r in out] == [Reason.BAD_TOPIC]


async def test_rejections_with_nul_and_bad_utf8_are_stored(
    db: psycopg.Connection, database_url: str
) -> None:
    """Raw payloads are kept byte for byte (bytea); topics and details that text cannot
    hold are stored escaped."""
    cases = [
        ("fleet/a\x00b/ping", b'{"ts": 1}'),
        (b"fleet/\xff\xfe/ping".decode("utf-8", "surrogateescape"), b"\xff\x00\xfe"),
        ("fleet/V-1/ping", b'{"ts": "\x00", "lat": 1, "lon": 2}'),
        ("fleet/V-1/ping", b'{"ts": "2026-01-01\\u0000", "lat": 1, "lon": 2}'),
        ("fleet/V-1/ping", b'{"ts": "\\ud800", "lat": 1, "lon": 2}'),
        ("fleet/V-1/ping", b"\xff\xfe\x00 not json"),
        ("fleet/\ud800/ping", b""),
    ]
    rejections = [r for topic, payload in cases for r in _decode(topic, payload)[1]]
    assert len(rejections) == len(cases)
    async with await AsyncConnection.connect(database_url) as conn, conn.transaction():
        assert await insert_rejections(conn, rejections) == len(cases)
    rows = db.execute("SELECT topic, reason, detail, payload FROM rejected_pings ORDER BY id")
    got = rows.fetchall()
    assert [bytes(r[3]) for r in got] == [r.payload_excerpt for r in rejections]
    assert [r[1] for r in got] == [
        "bad_topic", "bad_topic", "malformed_json", "bad_timestamp", "bad_timestamp",
        "malformed_json", "bad_topic",
    ]  # fmt: skip
    assert got[0][0] == "fleet/a\\x00b/ping"
    assert got[1][0] == "fleet/\\udcff\\udcfe/ping"
    assert got[6][0] == "fleet/\\ud800/ping"
    assert all("\x00" not in r[2] for r in got)


async def test_live_nul_topic_refused_by_broker_nul_payloads_recorded(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    """The engine on the real broker: a publisher sending a topic with NUL is cut off by
    Mosquitto (nothing reaches the engine); payloads with NUL, bytes that are not UTF-8
    and surrogate escapes are recorded as rejections; the engine carries on."""
    p = f"odd{uuid.uuid4().hex[:6]}-"
    topic = f"fleet/{p}V1/ping"
    t0 = NOW_MS - 60_000
    bad_payloads = [
        b'{"ts": "\x00", "lat": 1, "lon": 2}',  # a raw NUL inside a string: not JSON
        b'{"ts": "2026-01-01T00:00:00\\u0000Z", "lat": 1, "lon": 2}',  # an escaped one
        b"\xff\xfe\x00\x00",  # not UTF-8
        b'{"ts": "\\udc00", "lat": 1, "lon": 2}',  # an unpaired surrogate
    ]
    settings_ = make_settings(database_url, mqtt_url)
    host, port = mqtt_address(mqtt_url)
    async with publisher(mqtt_url) as pub, engine(settings_, pub):
        device = ConnectOptions(host, port, f"{p}dev", clean_start=True, session_expiry_s=0)
        with pytest.raises(MqttError):  # Mosquitto disconnects: no PUBACK
            async with receiver.connect(device) as raw:
                await raw.publish(f"fleet/{p}a\x00b/ping", orjson.dumps(ping(t0)), timeout_s=5)
        for payload in bad_payloads:
            await pub.publish(topic, payload, qos=1)
        surrogate_note: dict[str, Any] = {**ping(t0 + 1000)}
        await pub.publish(
            topic,
            orjson.dumps(surrogate_note)[:-1] + b', "note": "\\ud800"}',  # extra field: ignored
            qos=1,
        )
        await pub.publish(topic, orjson.dumps(ping(t0)), qos=1)

        def recorded() -> list[tuple[str, str, bytes]]:
            rows = db.execute(
                "SELECT topic, reason, payload FROM rejected_pings WHERE topic LIKE %s ORDER BY id",
                (f"fleet/{p}%",),
            ).fetchall()
            return [(r[0], r[1], bytes(r[2])) for r in rows]

        await wait_for(lambda: len(stored(db, p)) == 2 and len(recorded()) == len(bad_payloads))
    assert stored(db, p) == [(f"{p}V1", t0), (f"{p}V1", t0 + 1000)]
    rows = recorded()
    assert {r[0] for r in rows} == {topic}  # nothing from the refused topic
    assert [r[1] for r in rows] == [
        "malformed_json", "bad_timestamp", "malformed_json", "bad_timestamp",
    ]  # fmt: skip
    # whole payloads are kept as they came; an item is kept as its excerpt
    assert [rows[0][2], rows[2][2]] == [bad_payloads[0], bad_payloads[2]]
    assert b"\\u0000" in rows[1][2] and b"\\udc00" in rows[3][2]
