"""The live pipeline: MQTT → decode → batch → engine → one DB transaction → ack → mirror.

MQTT client: ``ingest.receiver``, a small MQTT 5 connection made for this loop — it
parses every PUBLISH a socket read delivered straight out of the buffer and sends the
PUBACKs of a whole batch in one write. The general clients cost more per message than
decoding and storing it (aiomqtt, gmqtt, paho in a thread: ``benchmarks/mqtt_clients.py``).
Decoding, likewise in bulk: ``ingest.bulkdecode`` parses the plainly valid messages of a
read in one Numba pass; the rest go through ``ingest.decode`` one by one.

Delivery guarantee: QoS 1 messages are acknowledged only after the batch holding them
is committed (manual acks). With a persistent session (MQTT 5, ``clean_start=False``,
fixed client id) a crash re-delivers what was not committed; the writes are idempotent,
so the effect is exactly once.

Backpressure: the broker sends at most ``mqtt_receive_maximum`` un-acked messages
(MQTT 5 Receive Maximum); the receiver stops taking messages while a full batch waits
for the database. Memory is bounded by two batches plus that window. Beyond the window
the broker queues for us — Mosquitto only ``max_queued_messages`` (default 1000) and
drops the rest, so the configs routewatch writes (private brokers, ``mqtt auth``) raise
that limit to a million (``routewatch.broker.BROKER_QUEUE_CONFIG``); a broker of your
own needs the same line.

Lifecycle (aiomqtt style): one TaskGroup with named tasks — ``warm-up`` (compiles the
payload decoder and the compliance kernels while MQTT connects; receiving waits for it),
``mqtt`` (connect, receive, reconnect with jittered backoff), ``flusher``, ``trip-sync``,
``ticker``. On ``stop`` the receiver stops, the open batch is flushed, committed and
acknowledged, then the client disconnects. Each commit's events are mirrored by a short
``mirror`` task (the next batch does not wait for the broker's PUBACKs); the drain waits
for those too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import Counter
from typing import Protocol

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from compliance.engine import Engine
from compliance.events import Event
from compliance.plan import TripPlan
from compliance.types import PingBatch, ProcessResult
from compliance.warmup import warm_up
from ingest import bulkdecode, seqgaps
from ingest.batch import Batcher, PendingBatch
from ingest.commit import CommitOutcome, commit_batch
from ingest.decode import DecodeLimits
from ingest.receiver import ConnectOptions, Inbound, MqttConnection, MqttError, connect
from ingest.recovery import recover
from ingest.seqgaps import GapReporter, SeqReport, SeqTracker
from ingest.trips import (
    CHANNEL,
    LIVE_STATUSES,
    TripRow,
    load_known_vehicles,
    load_live_trips,
    load_trip,
)
from routewatch import metrics
from routewatch.mqtt_endpoint import MqttEndpoint
from routewatch.settings import Settings, engine_thresholds
from store import copy_binary
from store.db import make_pool
from store.live import load_checkpoint, save_checkpoint
from store.seqgaps import load_tracker_states, save_report

log = logging.getLogger(__name__)

PING_TOPIC = "fleet/+/ping"
TICK_S = 1.0
#: how often an enforced vehicle registry is re-read, seconds
REGISTRY_REFRESH_S = 30.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0


class Processor(Protocol):
    """What the pipeline needs of ``compliance.engine.Engine``."""

    def add_trip(self, plan: TripPlan) -> None: ...
    def cancel_trip(self, trip_id: str) -> None: ...
    def process(self, batch: PingBatch, watermark_ms: int) -> ProcessResult: ...
    def tick(self, watermark_ms: int) -> list[Event]: ...
    def checkpoint(self) -> bytes: ...
    def trips(self) -> list[str]: ...


def make_processor(checkpoint: bytes | None, settings: Settings | None = None) -> Processor:
    """The compliance engine, restored from ``checkpoint`` when given, with the default
    thresholds but those the settings name (``trip_abandon_after_s``)."""
    th = engine_thresholds(settings or Settings())
    return Engine.restore(checkpoint, thresholds=th) if checkpoint is not None else Engine(th)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential backoff, seconds."""
    return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**attempt))


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


def connect_options(settings: Settings) -> ConnectOptions:
    broker = MqttEndpoint.from_settings(settings)
    return ConnectOptions(
        broker.host,
        broker.port,
        settings.mqtt_client_id,
        username=broker.username,
        password=broker.password,
        tls=broker.ssl_context(),
        session_expiry_s=settings.mqtt_session_expiry_s,
        receive_maximum=settings.mqtt_receive_maximum,
        # QoS 1 is bounded by Receive Maximum; this only caps a QoS 0 flood.
        max_buffered=4 * settings.mqtt_receive_maximum,
    )


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        processor: Processor | None,
        known_vehicles: frozenset[str] | None,
        stop: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.pool = pool
        self.processor = processor
        limits = DecodeLimits(
            settings.max_payload_bytes, settings.max_future_skew_s * 1000, known_vehicles
        )
        self.batcher = Batcher(limits, settings.reorder_allowance_s * 1000)
        self.seq = SeqTracker()  # each tracker's numbering: pings lost on the way
        self._gaps = GapReporter(settings.reorder_allowance_s)
        self._wake = asyncio.Event()  # a batch is full, tick events wait, or stopping
        self._room = asyncio.Event()  # the receiver may add to the open batch
        self._room.set()
        self._flush_lock = asyncio.Lock()
        self._tick_events: list[Event] = []
        self._mirrors: set[asyncio.Task[None]] = set()  # event mirror publishes in flight
        self._client: MqttConnection | None = None
        self._connect_options = connect_options(settings)
        self._generation = 0  # MQTT connection count: acks are only valid on their own
        self._last_checkpoint = time.monotonic()
        self._registry_loaded = time.monotonic()
        self._lost_commit = False
        self._flush_at_messages = max(1, settings.mqtt_receive_maximum // 2)
        self._newest_fix_ms = 0  # newest fix time seen, the clock in "event" watermark mode
        self._plans: dict[str, TripPlan] = {}  # the plan each running trip was added with
        # Set once the compliance kernels are compiled (see warm_up_kernels); a pipeline
        # without an engine has nothing to wait for.
        self._kernels_ready = asyncio.Event()
        if processor is None:
            self._kernels_ready.set()

    async def warm_up_kernels(self) -> None:
        """Compile (or load from cache) the payload decoder, the engine's kernels and the
        COPY encoder in a worker thread while MQTT connects. Receiving waits for this, so
        the first messages wait at the broker, un-acknowledged and bounded by Receive
        Maximum, instead of the event loop stalling for tens of seconds of JIT
        compilation on a cold cache."""
        seconds = await asyncio.to_thread(_warm_up)
        log.info("compliance kernels ready", extra={"seconds": round(seconds, 2)})
        self._kernels_ready.set()

    def watermark_ms(self) -> int:
        """The engine's notion of now: the wall clock live, or — with
        ``settings.watermark == "event"`` — the newest fix time seen so far (an accelerated
        simulated fleet, whose fix times are not wall-clock times). Decode already refuses
        fixes more than ``max_future_skew_s`` ahead, which bounds how far one skewed
        device can push the event clock."""
        if self.settings.watermark == "event":
            return self._newest_fix_ms or now_ms()
        return now_ms()

    # -- receiving ---------------------------------------------------------------------

    def _full(self) -> bool:
        b = self.batcher
        return b.pings >= self.settings.batch_max_pings or b.messages >= self._flush_at_messages

    def _take(self, messages: list[Inbound], generation: int) -> int:
        """Add ``messages`` to the open batch until it is full; returns how many it took."""
        room = self._flush_at_messages - self.batcher.messages
        taken = self.batcher.add_many(
            messages[:room] if len(messages) > room else messages,
            now_ms(),  # one clock read per socket read: it only bounds future skew
            generation,
            self.settings.batch_max_pings,
        )
        metrics.MQTT_MESSAGES.inc(taken)
        return taken

    async def _receive(self, conn: MqttConnection, generation: int) -> None:
        backlog: list[Inbound] = []  # received, not yet taken: the batch filled up first
        await self._kernels_ready.wait()  # the bulk decoder compiles in the warm-up too
        while True:
            await self._room.wait()
            if not backlog:
                backlog = await conn.receive(max(1, self._flush_at_messages))
            taken = self._take(backlog, generation)
            backlog = backlog[taken:]
            metrics.INFLIGHT_MESSAGES.set(self.batcher.messages)
            if self._full():
                self._room.clear()
                self._wake.set()

    async def _session(self, conn: MqttConnection, stop: asyncio.Event) -> None:
        """Receive on one connection until ``stop`` (then drain) or the broker is lost."""
        self._generation += 1
        self._client = conn
        await conn.subscribe(PING_TOPIC, qos=1)
        log.info("subscribed to %s as %s", PING_TOPIC, self.settings.mqtt_client_id)
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
            await self.flush()  # graceful drain while the connection can still ack
            await self._mirrors_done()

    async def mqtt_loop(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                async with connect(self._connect_options) as conn:
                    attempt = 0
                    await self._session(conn, stop)
            except MqttError as exc:
                self._client = None
                metrics.MQTT_RECONNECTS.inc()
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("MQTT connection lost (%s); reconnecting in %.1f s", exc, delay)
                await _sleep_unless(stop, delay)
            finally:
                self._client = None
        await self.flush()  # stopped while disconnected: commit what was received
        self._wake.set()  # let the flusher see the stop
        await self._final_checkpoint()

    async def _final_checkpoint(self) -> None:
        """After the drain every processed batch is committed, so the engine state is
        consistent with the database: save it for the next start, and report the gaps
        still waiting for their reorder allowance with what is missing now."""
        if self._lost_commit:
            return  # the drain could not commit
        gaps = SeqReport(gaps=self._gaps.due(self.seq))
        try:
            async with self.pool.connection() as conn, conn.transaction():
                if gaps.gaps:
                    await save_report(conn, gaps)
                if self.processor is not None:
                    await save_checkpoint(conn, self.processor.checkpoint(), self.watermark_ms())
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("could not save the final engine checkpoint: %s", exc)
            return
        _report_loss(gaps)

    # -- flushing ----------------------------------------------------------------------

    async def flush_loop(self, stop: asyncio.Event) -> None:
        max_wait_s = self.settings.batch_max_ms / 1000.0
        while not stop.is_set():
            started = self.batcher.started_monotonic
            wait_s = max_wait_s if started is None else started + max_wait_s - time.monotonic()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
            self._wake.clear()
            if stop.is_set():
                return  # the mqtt task drains once its receiver has stopped
            await self.flush()

    async def flush(self) -> None:
        """Close the open batch, process, commit, acknowledge, mirror."""
        async with self._flush_lock:
            if (
                self.batcher.messages == 0
                and not self._tick_events
                and not self._gaps.any_due(time.monotonic())
            ):
                return
            pending = self.batcher.take()
            self._room.set()
            tick_events, self._tick_events = self._tick_events, []
            t0 = time.perf_counter()
            if len(pending.pings):
                self._newest_fix_ms = max(self._newest_fix_ms, int(pending.pings.ts_ms.max()))
            watermark_ms = self.watermark_ms()
            result = None
            await self._kernels_ready.wait()
            if self.processor is not None and len(pending.pings):
                result = self.processor.process(pending.pings, watermark_ms)
            seq = self._follow_numbers(pending)
            outcome = await self._commit(pending, result, tick_events, watermark_ms, seq)
            if outcome is None:
                self._lost_commit = True  # the engine state is now ahead of the database
                return  # stopping with the database down: left un-acked, re-delivered
            self._ack(pending)
            self._record(pending, outcome, time.perf_counter() - t0)
            _report_loss(seq)
            self._mirror_soon(outcome.new_events)

    def _follow_numbers(self, pending: PendingBatch) -> SeqReport:
        """The batch's sequence numbers: new gaps wait for the reorder allowance; those
        due now are reported with what is still missing (``ingest.seqgaps``)."""
        seq = self.seq.observe(pending.pings) if len(pending.pings) else SeqReport()
        now_s = time.monotonic()
        self._gaps.add(seq.gaps, self.seq, now_s)
        seq.gaps = self._gaps.due(self.seq, now_s)
        return seq

    def _checkpoint_due(self, watermark_ms: int) -> tuple[bytes, int] | None:
        if self.processor is None:
            return None
        if time.monotonic() - self._last_checkpoint < self.settings.checkpoint_interval_s:
            return None
        self._last_checkpoint = time.monotonic()
        return self.processor.checkpoint(), watermark_ms

    async def _commit(
        self,
        pending: PendingBatch,
        result: ProcessResult | None,
        tick_events: list[Event],
        watermark_ms: int,
        seq: SeqReport,
    ) -> CommitOutcome | None:
        checkpoint = self._checkpoint_due(watermark_ms)
        attempt = 0
        essentials_only = False
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await commit_batch(
                        conn,
                        pending,
                        result,
                        tick_events,
                        checkpoint,
                        essentials_only=essentials_only,
                        settings=self.settings,
                        seq=seq,
                    )
            except (psycopg.OperationalError, PoolTimeout) as exc:
                # Transient: the receiver is blocked meanwhile (backpressure) and nothing
                # is acked, so nothing is lost.
                if self.stop.is_set() and attempt >= 3:
                    log.error(
                        "database unavailable while stopping; %d messages left "
                        "un-acked for re-delivery",
                        pending.messages,
                    )
                    return None
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("batch commit failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            except psycopg.Error:
                # Not transient: a bug or a constraint in the derived writes. Keep the
                # pings, rejections and events; a second failure is a real crash (the
                # batch stays un-acked and is re-delivered to the restarted worker).
                if essentials_only:
                    raise
                log.exception("batch commit failed; committing pings, rejections and events only")
                essentials_only = True

    def _ack(self, pending: PendingBatch) -> None:
        conn = self._client
        if conn is None:
            return
        current = self._generation
        # An ack for a message of an earlier connection would name someone else's mid;
        # the broker re-delivers those instead and the database dedupes.
        with contextlib.suppress(MqttError):  # lost meanwhile: re-delivered, deduped
            conn.ack(mid for generation, mid, qos in pending.acks if generation == current)
        metrics.INFLIGHT_MESSAGES.set(self.batcher.messages)

    def _record(self, pending: PendingBatch, outcome: CommitOutcome, elapsed_s: float) -> None:
        n = len(pending.pings)
        metrics.PINGS_RECEIVED.inc(pending.received)
        for reason, count in Counter(r.reason for r in pending.rejections).items():
            metrics.PINGS_REJECTED.labels(reason=str(reason)).inc(count)
        metrics.PINGS_STORED.inc(outcome.stored)
        metrics.PINGS_DUPLICATE.inc(pending.duplicates + n - outcome.stored)
        for etype, count in Counter(str(e.type) for e in outcome.new_events).items():
            metrics.EVENTS_EMITTED.labels(type=etype).inc(count)
        metrics.BATCHES.inc()
        metrics.BATCH_SIZE.observe(n)
        metrics.BATCH_COMMIT_SECONDS.observe(elapsed_s)
        if n:
            metrics.PROCESSING_LAG_SECONDS.observe(
                max(0.0, (now_ms() - int(pending.pings.ts_ms.max())) / 1000.0)
            )

    def _mirror_soon(self, events: list[Event]) -> None:
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

    # -- time and trips ----------------------------------------------------------------

    async def tick_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_unless(stop, TICK_S)
            if self.processor is None or stop.is_set() or not self._kernels_ready.is_set():
                continue
            events = self.processor.tick(self.watermark_ms())
            if events:
                self._tick_events.extend(events)
                self._wake.set()

    def apply_trip(self, row: TripRow | None, trip_id: str) -> None:
        if self.processor is None:
            return
        if row is None or row.status not in LIVE_STATUSES:
            self.processor.cancel_trip(trip_id)
            self._plans.pop(trip_id, None)
            log.debug("trip %s dropped (%s)", trip_id, "deleted" if row is None else row.status)
        elif row.plan is not None:
            self.processor.add_trip(row.plan)
            self._plans[trip_id] = row.plan
            log.debug("trip %s loaded", trip_id)
        metrics.ACTIVE_TRIPS.set(len(self.processor.trips()))

    def sync_trips(self, rows: list[TripRow]) -> None:
        """Bring the engine in line with the database's live trips: drop trips no longer
        live, add new ones and ones whose plan changed. A running trip whose plan is
        unchanged is left alone — adding it again would reset its progress."""
        if self.processor is None:
            return
        live = {row.trip_id: row for row in rows}
        running = set(self.processor.trips())
        for trip_id in running - live.keys():
            self.apply_trip(None, trip_id)
        for trip_id, row in live.items():
            if trip_id not in running or self._plans.get(trip_id) != row.plan:
                self.apply_trip(row, trip_id)

    async def _refresh_registry(self, conn: psycopg.AsyncConnection) -> None:
        """Re-read the vehicle registry now and then (when it is enforced)."""
        limits = self.batcher.limits
        if limits.known_vehicles is None:
            return
        if time.monotonic() - self._registry_loaded < REGISTRY_REFRESH_S:
            return
        self._registry_loaded = time.monotonic()
        known = await load_known_vehicles(conn)
        self.batcher.limits = dataclasses.replace(limits, known_vehicles=known)

    async def trip_sync_loop(self, stop: asyncio.Event) -> None:
        """LISTEN for trip changes. Right after every LISTEN (the first one included) the
        live trips are reloaded: a trip created after start-up's load but before the LISTEN,
        or while the connection was down, sent its notification to nobody."""
        attempt = 0
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.settings.database_url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.sync_trips(await load_live_trips(conn))
                    attempt = 0
                    while not stop.is_set():
                        # The connection cannot run queries while notifies() iterates
                        # (it holds the connection): collect ids, then load them.
                        trip_ids = [
                            note.payload async for note in conn.notifies(timeout=0.5, stop_after=1)
                        ]
                        for trip_id in dict.fromkeys(trip_ids):
                            self.apply_trip(await load_trip(conn, trip_id), trip_id)
                        await self._refresh_registry(conn)
            except psycopg.OperationalError as exc:
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("trip sync lost the database (%s); retrying in %.1f s", exc, delay)
                await _sleep_unless(stop, delay)


#: gap lines logged per batch; the rest are summed up in one line
MAX_GAP_LINES = 10


def _report_loss(seq: SeqReport) -> None:
    """Metrics and log lines for the pings a batch showed missing (after the reorder
    allowance) and for trackers that started counting again."""
    if seq.gaps:
        metrics.PINGS_MISSING.inc(seq.missing)
        largest_first = sorted(seq.gaps, key=lambda g: -g.missing)
        for gap in largest_first[:MAX_GAP_LINES]:
            log.warning(
                "%d pings missing from %s (seq %d -> %d)",
                gap.missing,
                gap.vehicle_id,
                gap.after_seq,
                gap.next_seq,
                extra={"vehicle_id": gap.vehicle_id, "missing": gap.missing},
            )
        if len(seq.gaps) > MAX_GAP_LINES:
            rest = largest_first[MAX_GAP_LINES:]
            log.warning(
                "and %d more gaps: %d pings missing from %d more trackers",
                len(rest),
                sum(g.missing for g in rest),
                len({g.vehicle_id for g in rest}),
            )
    if seq.filled:
        metrics.PINGS_GAP_FILLED.inc(seq.filled)
    if seq.restarts:
        metrics.TRACKER_RESTARTS.inc(len(seq.restarts))
        log.info("trackers restarted their numbering: %s", ", ".join(seq.restarts[:20]))


async def _start(settings: Settings, pool: AsyncConnectionPool, stop: asyncio.Event) -> Pipeline:
    """Restore the engine (checkpoint + the pings committed after it), load live trips
    and (if enforced) the vehicle registry."""
    async with pool.connection() as conn:
        saved = await load_checkpoint(conn)
        processor = make_processor(saved.state if saved else None, settings)
        trips = await load_live_trips(conn)
        known = (await load_known_vehicles(conn)) if settings.require_known_vehicle else None
        recovered = await recover(conn, processor, saved, trips, settings)
        numbering = await load_tracker_states(conn)
    pipeline = Pipeline(settings, pool, processor, known, stop)
    pipeline.seq.load(numbering)
    pipeline._newest_fix_ms = recovered.newest_fix_ms  # the event-mode clock carries on
    running = set(processor.trips())
    for row in trips:
        # A running trip carries its progress: take the stored plan as the one it runs.
        if row.trip_id in running and row.plan is not None:
            pipeline._plans[row.trip_id] = row.plan
    pipeline.sync_trips(trips)  # drops trips cancelled or finished while we were away
    return pipeline


def _warm_up() -> float:
    """Compile the payload decoder, the compliance kernels and the pings COPY encoder;
    returns the seconds."""
    t0 = time.perf_counter()
    bulkdecode.warm_up()
    warm_up()
    seqgaps.warm_up()
    copy_binary.warm_up()
    return time.perf_counter() - t0


async def run_engine(settings: Settings, stop: asyncio.Event) -> None:
    """Run the live pipeline until ``stop`` is set, then drain and return."""
    async with make_pool(
        settings.database_url, min_size=1, max_size=2, name="routewatch-engine"
    ) as pool:
        pipeline = await _start(settings, pool, stop)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pipeline.warm_up_kernels(), name="warm-up")
            tg.create_task(pipeline.mqtt_loop(stop), name="mqtt")
            tg.create_task(pipeline.flush_loop(stop), name="flusher")
            tg.create_task(pipeline.trip_sync_loop(stop), name="trip-sync")
            tg.create_task(pipeline.tick_loop(stop), name="ticker")
    log.info("engine stopped")
