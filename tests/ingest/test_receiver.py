"""ingest.receiver against the real Mosquitto: manual acks decide what a persistent
session re-delivers, QoS 0 and 1 both arrive, publishes are acknowledged, and a refused
or lost connection surfaces as MqttError."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import receiver
from ingest.receiver import ConnectOptions, Inbound, MqttConnection, MqttError, connect
from routewatch.mqtt_endpoint import utf8
from routewatch.services import PrivateMosquitto, mqtt_address


async def collect(conn: MqttConnection, n: int) -> list[Inbound]:
    got: list[Inbound] = []
    async with asyncio.timeout(10):
        while len(got) < n:
            got += await conn.receive(n - len(got))
    return got


async def test_unacked_messages_are_redelivered_acked_ones_not(mqtt_url: str) -> None:
    host, port = mqtt_address(mqtt_url)
    prefix = f"rx{uuid.uuid4().hex[:6]}"
    opts = ConnectOptions(host, port, f"{prefix}-engine", session_expiry_s=60, receive_maximum=10)
    pub_opts = ConnectOptions(host, port, f"{prefix}-device", clean_start=True, session_expiry_s=0)
    async with connect(opts) as conn, connect(pub_opts) as pub:
        assert not conn.session_present
        await conn.subscribe(f"{prefix}/+/ping", qos=1)
        await pub.publish(f"{prefix}/q0/ping", b"qos0", qos=0)
        assert await collect(conn, 1) == [(f"{prefix}/q0/ping", b"qos0", 0, 0)]
        for i in range(25):  # more than Receive Maximum: the broker holds the rest back
            await pub.publish(f"{prefix}/v{i}/ping", b"%d" % i, qos=1)
        first = await collect(conn, 10)
        assert [m[1] for m in first] == [b"%d" % i for i in range(10)]
        assert all(qos == 1 and mid > 0 for _, _, mid, qos in first)
        conn.ack(mid for _, _, mid, _ in first[:6])  # 6..9 stay un-acknowledged
        rest = await collect(conn, 6)  # the window moved by exactly the 6 acks
        assert [m[1] for m in rest] == [b"%d" % i for i in range(10, 16)]
    async with connect(opts) as conn:
        assert conn.session_present
        again = await collect(conn, 19)
        # everything not acknowledged, in order, and nothing that was
        assert [m[1] for m in again] == [b"%d" % i for i in range(6, 25)]
        conn.ack(mid for _, _, mid, qos in again if qos)
    async with connect(ConnectOptions(host, port, opts.client_id, clean_start=True)) as conn:
        pass  # ends the session


async def test_refused_connection_raises(tmp_path: Path) -> None:
    with PrivateMosquitto(tmp_path, allow_anonymous=False) as broker:
        opts = ConnectOptions("127.0.0.1", broker.port, "anon", username="nobody", password="x")
        with pytest.raises(MqttError, match="refused"):
            async with connect(opts):
                pass
    with pytest.raises(MqttError, match="cannot connect"):
        async with connect(ConnectOptions("127.0.0.1", broker.port, "gone")):
            pass


def _publish(topic: str, payload: bytes, mid: int) -> bytes:
    """A QoS 1 MQTT 5 PUBLISH packet (no properties)."""
    body = utf8(topic) + mid.to_bytes(2, "big") + b"\x00" + payload
    return receiver._packet(0x32, body)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(
        st.sampled_from([0, 60, 100, 121, 122, 200, 16_300, 16_400, 70_000]), max_size=6
    ),
    cuts=st.lists(st.integers(1, 20_000), max_size=8),
)
async def test_stream_parsed_across_any_read_boundaries(sizes: list[int], cuts: list[int]) -> None:
    """Packets whose remaining length takes one, two or three bytes, split anywhere
    (inside the length bytes too) across reads, come out whole and in order."""
    sent = [(f"fleet/V{k}/ping", bytes([k % 251]) * n, k + 1) for k, n in enumerate(sizes)]
    stream = b"".join(_publish(t, p, mid) for t, p, mid in sent)
    conn = MqttConnection(ConnectOptions("127.0.0.1", 1, "parser"))
    proto = receiver._Protocol(conn)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for a, b in itertools.pairwise(bounds):
        proto.data_received(stream[a:b])
    assert list(conn._inbox) == [(t, p, mid, 1) for t, p, mid in sent]
    assert not proto.buf
