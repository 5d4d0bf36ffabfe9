"""The MQTT transport of the single-process engine: one session on the broker feeding
one :class:`~ingest.pipeline.Pipeline`.

MQTT client: ``ingest.receiver``, a small MQTT 5 connection made for this loop — it
parses every PUBLISH a socket read delivered straight out of the buffer and sends the
PUBACKs of a whole batch in one write. The general clients cost more per message than
decoding and storing it (aiomqtt, gmqtt, paho in a thread: ``benchmarks/mqtt_clients.py``).

With a persistent session (MQTT 5, ``clean_start=False``, fixed client id) a crash
re-delivers what was not acknowledged. The broker sends at most
``mqtt_receive_maximum`` un-acked messages (MQTT 5 Receive Maximum); beyond that window
it queues for us — Mosquitto only ``max_queued_messages`` (default 1000) and drops the
rest, so the configs routewatch writes (private brokers, ``mqtt auth``) raise that limit
to a million (``routewatch.broker.BROKER_QUEUE_CONFIG``); a broker of your own needs the
same line.

Each commit's new events are mirrored to ``fleet/{vehicle_id}/events`` by a short
``mirror`` task (the next batch does not wait for the broker's PUBACKs); the drain waits
for those too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import orjson

from compliance.events import Event
from ingest.batch import AckToken
from ingest.pipeline import Pipeline, backoff_s, sleep_unless
from ingest.receiver import ConnectOptions, Inbound, MqttConnection, MqttError, connect
from routewatch import metrics
from routewatch.mqtt_endpoint import MqttEndpoint
from routewatch.settings import Settings

log = logging.getLogger(__name__)

PING_TOPIC = "fleet/+/ping"


def connect_options(settings: Settings, client_id: str | None = None) -> ConnectOptions:
    broker = MqttEndpoint.from_settings(settings)
    return ConnectOptions(
        broker.host,
        broker.port,
        client_id or settings.mqtt_client_id,
        username=broker.username,
        password=broker.password,
        tls=broker.ssl_context(),
        session_expiry_s=settings.mqtt_session_expiry_s,
        receive_maximum=settings.mqtt_receive_maximum,
        # QoS 1 is bounded by Receive Maximum; this only caps a QoS 0 flood.
        max_buffered=4 * settings.mqtt_receive_maximum,
    )


class MqttSource:
    """Receives ``fleet/+/ping`` into the pipeline, acknowledges after commit, mirrors
    events; reconnects with jittered backoff until stopped."""

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        pipeline.transport = self
        self._options = connect_options(settings)
        self._client: MqttConnection | None = None
        self._generation = 0  # connection count: acks are only valid on their own
        self._mirrors: set[asyncio.Task[None]] = set()  # event mirror publishes in flight

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                async with connect(self._options) as conn:
                    attempt = 0
                    await self._session(conn, stop)
            except MqttError as exc:
                self._client = None
                metrics.MQTT_RECONNECTS.inc()
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("MQTT connection lost (%s); reconnecting in %.1f s", exc, delay)
                await sleep_unless(stop, delay)
            finally:
                self._client = None

    async def _receive(self, conn: MqttConnection, generation: int) -> None:
        backlog: list[Inbound] = []  # received, not yet taken: the batch filled up first
        while True:
            await self.pipeline.wait_room()
            if not backlog:
                backlog = await conn.receive(max(1, self.pipeline.flush_at_messages))
            taken = self.pipeline.take(backlog, generation)
            backlog = backlog[taken:]

    async def _session(self, conn: MqttConnection, stop: asyncio.Event) -> None:
        """Receive on one connection until ``stop`` (then drain) or the broker is lost."""
        self._generation += 1
        self._client = conn
        await conn.subscribe(PING_TOPIC, qos=1)
        log.info("subscribed to %s as %s", PING_TOPIC, self._options.client_id)
        receiver = asyncio.create_task(self._receive(conn, self._generation), name="receiver")
        stopper = asyncio.create_task(stop.wait(), name="stop-wait")
        try:
            await asyncio.wait({receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not receiver.done():
                receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
        if stop.is_set():
            await self.pipeline.flush()  # graceful drain while the connection can still ack
            await self._mirrors_done()

    # -- the pipeline's side ------------------------------------------------------------

    async def ack(self, acks: Sequence[AckToken]) -> None:
        conn = self._client
        if conn is None:
            return
        current = self._generation
        # An ack for a message of an earlier connection would name someone else's mid;
        # the broker re-delivers those instead and the database dedupes.
        with contextlib.suppress(MqttError):  # lost meanwhile: re-delivered, deduped
            conn.ack(mid for generation, mid, qos in acks if generation == current)

    def mirror(self, events: list[Event]) -> None:
        """Mirror in the background: the next batch must not wait for the broker's
        PUBACKs, which may sit behind a window's worth of pings in the socket (a flush
        that waited for them stalled the pipeline for the 5 s timeout)."""
        conn = self._client
        if not (self.settings.mqtt_mirror_events and events and conn is not None):
            return
        task = asyncio.create_task(self._mirror(conn, events), name="mirror")
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirrors_done(self) -> None:
        if self._mirrors:
            await asyncio.gather(*self._mirrors)

    async def _mirror(self, conn: MqttConnection, events: list[Event]) -> None:
        try:
            await asyncio.gather(
                *(
                    conn.publish(
                        f"fleet/{e.vehicle_id}/events",
                        orjson.dumps(e.to_dict()),
                        qos=1,
                        timeout_s=5.0,
                    )
                    for e in events
                )
            )
        except MqttError as exc:
            # The events are committed; the mirror is a convenience for integrators.
            log.warning("could not mirror %d events to MQTT: %s", len(events), exc)
