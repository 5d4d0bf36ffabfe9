"""``routewatch gateway``: trackers' MQTT pings into the partitioned JetStream stream.

    Mosquitto ``fleet/+/ping`` → gateway → ``<prefix>.pings.<partition>`` (JetStream)

Trackers keep publishing to Mosquitto, with the device accounts, ACLs and TLS that
``routewatch mqtt auth`` sets up. The gateway holds one persistent MQTT session
(``<mqtt_client_id>-gateway``), and for every socket read: groups the messages by their
vehicle's partition (``ingest.partitions``, NATS's own partition hash), packs each group
into one envelope (``ingest.jetstream``), publishes them all and waits for JetStream's
acknowledgements (stored, and replicated on a cluster), and only then sends the MQTT
PUBACKs. A gateway killed at any moment loses nothing: Mosquitto re-delivers what it
did not acknowledge, and a ping stored twice is stored once by the workers' idempotent
writes. The gateway holds no state; a supervisor restarts it in a second.

Why not NATS's own MQTT listener: it disconnects a client that publishes to a topic with
``.`` or a space (nats-server 2.9: "characters ' ' and '.' not supported for MQTT
topics"), and vehicle ids may contain both — such a tracker would be cut off. Why not a
Mosquitto bridge to that listener: the bridge's one connection would be cut for
everybody by the first such topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import nats.errors
import nats.js.errors

from ingest.jetstream import ENVELOPE_BYTES, Setup, connect, ensure_setup, pack_record
from ingest.mqtt_source import PING_TOPIC, connect_options
from ingest.partitions import partition_of
from ingest.pipeline import backoff_s, sleep_unless
from ingest.receiver import Inbound, MqttConnection, MqttError
from ingest.receiver import connect as mqtt_connect
from routewatch import metrics
from routewatch.settings import Settings

log = logging.getLogger(__name__)

#: seconds to wait for JetStream's acknowledgement of one envelope
PUBLISH_TIMEOUT_S = 10.0


def vehicle_of(topic: str) -> str:
    """``fleet/{vehicle_id}/ping`` -> vehicle_id; any other topic -> "" (its message goes
    to partition ``partition_of("")`` and is rejected, and recorded, by that worker)."""
    if topic.startswith("fleet/") and topic.endswith("/ping"):
        return topic[6:-5]
    return ""


def envelopes(
    messages: list[Inbound], partitions: int, max_bytes: int = ENVELOPE_BYTES
) -> list[tuple[int, bytes]]:
    """``(partition, envelope)`` for a socket read, in order within each partition (so
    each vehicle's pings stay in the order the broker delivered them)."""
    groups: dict[int, list[bytearray]] = defaultdict(lambda: [bytearray()])
    for topic, payload, _, _ in messages:
        chunks = groups[partition_of(vehicle_of(topic), partitions)]
        record = pack_record(topic, payload)
        if chunks[-1] and len(chunks[-1]) + len(record) > max_bytes:
            chunks.append(bytearray())
        chunks[-1] += record
    return [(p, bytes(chunk)) for p, chunks in groups.items() for chunk in chunks]


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._options = connect_options(settings, f"{settings.mqtt_client_id}-gateway")

    async def run(self, stop: asyncio.Event) -> None:
        nc = await connect(self.settings, f"routewatch-gateway {self._options.client_id}")
        try:
            setup = await ensure_setup(nc.jetstream(), self.settings)
            log.info(
                "gateway: %s -> %s, %d partitions",
                PING_TOPIC,
                setup.layout.stream,
                setup.partitions,
            )
            await self._mqtt_loop(nc.jetstream(), setup, stop)
        finally:
            await nc.drain()

    async def _mqtt_loop(
        self, js: nats.js.JetStreamContext, setup: Setup, stop: asyncio.Event
    ) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                async with mqtt_connect(self._options) as conn:
                    attempt = 0
                    await conn.subscribe(PING_TOPIC, qos=1)
                    log.info("subscribed to %s as %s", PING_TOPIC, self._options.client_id)
                    await self._forward(conn, js, setup, stop)
            except MqttError as exc:
                metrics.MQTT_RECONNECTS.inc()
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("MQTT connection lost (%s); reconnecting in %.1f s", exc, delay)
                await sleep_unless(stop, delay)

    async def _forward(
        self, conn: MqttConnection, js: nats.js.JetStreamContext, setup: Setup, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            receiving = asyncio.ensure_future(conn.receive(self._options.receive_maximum))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not receiving.done():
                receiving.cancel()
                return  # stopping: what was not forwarded stays un-acked at the broker
            messages = await self._linger(conn, receiving.result())
            if not await self._publish(js, setup, messages, stop):
                return
            conn.ack(mid for _, _, mid, qos in messages if qos)
            metrics.MQTT_MESSAGES.inc(len(messages))

    async def _linger(self, conn: MqttConnection, messages: list[Inbound]) -> list[Inbound]:
        """Gather what arrives within ``gateway_linger_ms`` of the first message (as a
        Kafka producer's linger): at a steady trickle a read holds a ping or two, and one
        envelope per ping would cost JetStream a stored message each."""
        cap = max(1, self._options.receive_maximum // 2)
        deadline = time.monotonic() + self.settings.gateway_linger_ms / 1000.0
        while len(messages) < cap and (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    messages += await conn.receive(cap - len(messages))
            except TimeoutError:
                break
        return messages

    async def _publish(
        self,
        js: nats.js.JetStreamContext,
        setup: Setup,
        messages: list[Inbound],
        stop: asyncio.Event,
    ) -> bool:
        """Store the messages in the stream; True once JetStream acknowledged them all,
        False if stopped before (they stay un-acked at the broker)."""
        batch = envelopes(messages, setup.partitions)
        attempt = 0
        while True:
            try:
                acks = [await js.publish_async(setup.layout.subject(p), data) for p, data in batch]
                async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                    await asyncio.gather(*acks)
                return True
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
                # NATS away or JetStream without a leader: hold the messages (the broker
                # window is the backpressure) and try again; a republished envelope is
                # at worst stored twice, which the workers' writes absorb.
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("JetStream publish failed (%s); retrying in %.1f s", exc, delay)
                await sleep_unless(stop, delay)
                if stop.is_set():
                    return False


async def run_gateway(settings: Settings, stop: asyncio.Event) -> None:
    await Gateway(settings).run(stop)
    log.info("gateway stopped")
