"""Fuzz the live pipeline through a real broker: 100,000 random and mutated messages
(``tests/ingest/fuzz_corpus.py``) published over a private Mosquitto into the running
engine. The pipeline must not crash and must account for every message: each valid ping
stored once, every rejected ping or payload recorded in ``rejected_pings`` with one of
``ingest.decode.Reason``'s values, and nothing left un-acknowledged at the broker.

What "valid" means is the decoder's business (tests/ingest/test_decode.py checks its
verdicts); here it is the oracle the pipeline's bookkeeping is held to.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

import aiomqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.decode import DecodeLimits, PingColumns, Reason, Rejection, decode_message
from routewatch.services import mqtt_address
from simulator.mqttwire import WirePublisher
from tests.conftest import StartMosquitto
from tests.ingest.fuzz_corpus import Message, corpus
from tests.ingest.live_helpers import engine, make_settings, messages_received, publisher

MESSAGES = 100_000
SEED = 20261122
MAX_PAYLOAD_BYTES = 4000
#: a fix rejected as "in the future" at generation could be accepted by the time the
#: engine receives it; such messages are left out (the test never takes this long)
TEST_SPAN_MS = 20 * 60 * 1000
#: the engine's session may queue the whole corpus while it catches up (Mosquitto's
#: default of 1,000 queued messages per client would drop the rest: not what is tested)
BROKER_CONFIG = "max_queued_messages 1000000\nmax_queued_bytes 0\n"


class Oracle:
    """The decoder's verdict on every message, computed before sending."""

    def __init__(self, messages: list[Message], now_ms: int, limits: DecodeLimits) -> None:
        self.messages: list[Message] = []
        self.pings: set[tuple[str, int]] = set()
        self.reasons: Counter[str] = Counter()
        self.left_out = 0
        for topic, payload in messages:
            cols, rejections = self._decode(topic, payload, now_ms, limits)
            if any(r.reason == Reason.FUTURE_TIMESTAMP for r in rejections):
                later = self._decode(topic, payload, now_ms + TEST_SPAN_MS, limits)[1]
                if [r.reason for r in later] != [r.reason for r in rejections]:
                    self.left_out += 1
                    continue
            self.messages.append((topic, payload))
            self.pings.update(zip(cols.vehicle_id, cols.ts_ms, strict=True))
            self.reasons.update(str(r.reason) for r in rejections)

    @staticmethod
    def _decode(
        topic: str, payload: bytes, now_ms: int, limits: DecodeLimits
    ) -> tuple[PingColumns, list[Rejection]]:
        cols, rejections = PingColumns(), []
        decode_message(topic, payload, now_ms, limits, cols, rejections)
        return cols, rejections


def publish_all(url: str, messages: list[Message], chunk: int = 500) -> None:
    """Publish at QoS 1 (batched writes, simulator.mqttwire); returns once every PUBACK
    is in. paho, one send per message, managed only ~2,000 messages/s here."""
    host, port = mqtt_address(url)
    wire = WirePublisher(host, port, f"fuzz-{uuid.uuid4().hex[:8]}", qos=1, inflight_max=5000)
    try:
        for start in range(0, len(messages), chunk):
            wire.publish_many(messages[start : start + chunk])
        assert wire.wait_acked(60) and wire.acked == len(messages), wire.error
    finally:
        wire.close()


def table_counts(db: psycopg.Connection) -> tuple[int, int]:
    pings = db.execute("SELECT count(*) FROM pings").fetchone()
    rejected = db.execute(
        "SELECT count(*) FROM rejected_pings WHERE topic NOT LIKE 'fleet/probe-%'"
    ).fetchone()
    assert pings is not None and rejected is not None
    return int(pings[0]), int(rejected[0])


async def assert_session_empty(url: str, client_id: str) -> None:
    """Rejoin the engine's persistent session: the broker re-sends anything un-acked
    (and anything still queued) before a message published after the rejoin."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    async with (
        aiomqtt.Client(
            host,
            port,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
        ) as session,
        aiomqtt.Client(host, port) as pub,
    ):
        await pub.publish("fleet/sentinel/ping", b"sentinel", qos=1)
        async with asyncio.timeout(15):
            async for msg in session.messages:
                assert msg.topic.value == "fleet/sentinel/ping", f"left un-acked: {msg.topic}"
                return


@pytest.mark.slow
async def test_fuzz_through_the_broker(
    db: psycopg.Connection, database_url: str, start_mosquitto: StartMosquitto
) -> None:
    t0 = time.perf_counter()
    now_ms = time.time_ns() // 1_000_000
    limits = DecodeLimits(MAX_PAYLOAD_BYTES, 300_000)
    oracle = Oracle(corpus(MESSAGES, SEED, now_ms), now_ms, limits)
    assert len(oracle.messages) >= MESSAGES * 0.99 and oracle.pings
    assert len(set(oracle.reasons)) >= 10  # every kind of rejection is exercised
    t_corpus = time.perf_counter() - t0

    broker = start_mosquitto(BROKER_CONFIG)
    settings = make_settings(database_url, broker.url, max_payload_bytes=MAX_PAYLOAD_BYTES)
    async with publisher(broker.url) as probe, engine(settings, probe):
        received_before = messages_received()
        t1 = time.perf_counter()
        await asyncio.to_thread(publish_all, broker.url, oracle.messages)
        t_publish = time.perf_counter() - t1
        expected = (len(oracle.pings), sum(oracle.reasons.values()))
        # live_helpers.engine names its task; a crash ends the wait at once (and the
        # block's exit re-raises it) instead of running into the deadline
        running = next(t for t in asyncio.all_tasks() if t.get_name() == "engine-under-test")
        deadline = time.monotonic() + 180
        while table_counts(db) != expected and not running.done():
            assert time.monotonic() < deadline, (table_counts(db), expected)
            await asyncio.sleep(0.25)
        t_ingest = time.perf_counter() - t1
    # The engine stopped cleanly (engine() re-raises a crash) and received each message once.
    assert messages_received() - received_before == len(oracle.messages)
    await assert_session_empty(broker.url, settings.mqtt_client_id)

    stored = {
        (vid, int(ts_ms))
        for vid, ts_ms in db.execute(
            "SELECT vehicle_id, (extract(epoch FROM ts) * 1000)::bigint FROM pings"
        ).fetchall()
    }
    assert stored == oracle.pings  # every valid ping, once (the key forbids twice)
    reasons = Counter(
        dict(
            db.execute(
                "SELECT reason, count(*) FROM rejected_pings "
                "WHERE topic NOT LIKE 'fleet/probe-%' GROUP BY reason"
            ).fetchall()
        )
    )
    assert reasons == oracle.reasons
    assert set(reasons) <= {str(r) for r in Reason}
    print(
        f"\nfuzz: {len(oracle.messages)} messages ({oracle.left_out} left out), "
        f"{len(oracle.pings)} pings stored, {sum(reasons.values())} rejections in "
        f"{len(reasons)} reasons; corpus+oracle {t_corpus:.1f} s, publish {t_publish:.1f} s, "
        f"all committed after {t_ingest:.1f} s "
        f"({len(oracle.messages) / t_ingest:,.0f} msg/s), total {time.perf_counter() - t0:.1f} s"
    )
