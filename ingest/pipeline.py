"""The pipeline: decode → batch → engine → one DB transaction → acknowledge → mirror.

One piece of code, fed by either transport: today's MQTT receiver (``ingest.mqtt_source``,
the single-process engine) or a JetStream partition consumer (``ingest.worker``, one
pipeline per partition a worker owns). A transport hands the pipeline what it received
with :meth:`Pipeline.take` and is told, through its :class:`Transport` side, which messages
to acknowledge once their batch is committed and which new events to mirror.

Delivery guarantee: messages are acknowledged only after the batch holding them is
committed (manual acks); the transport re-delivers what was not (a persistent MQTT
session, a JetStream consumer), and the writes are idempotent, so the effect is exactly
once.

Backpressure: :meth:`Pipeline.wait_room` blocks the transport while a full batch waits
for the database; memory is bounded by two batches plus the transport's un-acked window.

A pipeline owns a :class:`~ingest.partitions.Scope` of vehicles — every one, or one
partition — with its own engine, checkpoint row, trips and tracker numbering, so a
partition can move to another worker on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from compliance.engine import Engine
from compliance.events import Event
from compliance.history import SpeedProfile
from compliance.plan import TripPlan
from compliance.types import PingBatch, ProcessResult
from compliance.warmup import warm_up
from ingest import bulkdecode, seqgaps
from ingest.batch import AckToken, Batcher, PendingBatch
from ingest.commit import CommitOutcome, commit_batch
from ingest.decode import DecodeLimits
from ingest.partitions import WHOLE, Scope
from ingest.receiver import Inbound
from ingest.recovery import recover
from ingest.seqgaps import GapReporter, SeqReport, SeqTracker
from ingest.trips import LIVE_STATUSES, TripRow, load_known_vehicles, load_live_trips
from routewatch import metrics
from routewatch.settings import Settings, engine_thresholds
from store import copy_binary
from store.live import load_checkpoint, save_checkpoint
from store.seqgaps import load_tracker_states, save_report

log = logging.getLogger(__name__)

TICK_S = 1.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0

#: runs first inside each batch's transaction; raises to refuse the commit (a worker
#: checks there that it still owns its partition)
CommitGuard = Callable[[psycopg.AsyncConnection], Awaitable[None]]


class Processor(Protocol):
    """What the pipeline needs of ``compliance.engine.Engine``."""

    def add_trip(self, plan: TripPlan) -> None: ...
    def cancel_trip(self, trip_id: str) -> None: ...
    def process(self, batch: PingBatch, watermark_ms: int) -> ProcessResult: ...
    def tick(self, watermark_ms: int) -> list[Event]: ...
    def checkpoint(self) -> bytes: ...
    def trips(self) -> list[str]: ...
    def set_speed_profile(self, profile: SpeedProfile | None) -> None: ...


class Transport(Protocol):
    """What the pipeline asks of the transport that feeds it."""

    async def ack(self, acks: Sequence[AckToken]) -> None:
        """Acknowledge these messages: their batch is committed."""

    def mirror(self, events: list[Event]) -> None:
        """Pass newly committed events on to integrators (if the transport does that)."""


def make_processor(checkpoint: bytes | None, settings: Settings) -> Processor:
    """The compliance engine, restored from ``checkpoint`` when given, with the default
    thresholds but those the settings name (``trip_abandon_after_s``)."""
    th = engine_thresholds(settings)
    return Engine.restore(checkpoint, thresholds=th) if checkpoint is not None else Engine(th)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential backoff, seconds."""
    return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**attempt))


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def database_sessions(
    settings: Settings,
    stop: asyncio.Event,
    what: str,
    session: Callable[[psycopg.AsyncConnection], Awaitable[None]],
) -> None:
    """Run ``session`` on its own autocommit connection until ``stop``; when the
    database goes away, connect again after a jittered backoff and run it anew."""
    attempt = 0
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                settings.database_url, autocommit=True
            ) as conn:
                attempt = 0
                await session(conn)
        except psycopg.OperationalError as exc:
            delay = backoff_s(attempt)
            attempt += 1
            log.warning("%s lost the database (%s); retrying in %.1f s", what, exc, delay)
            await sleep_unless(stop, delay)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        processor: Processor | None,
        known_vehicles: frozenset[str] | None,
        stop: asyncio.Event,
        *,
        scope: Scope = WHOLE,
        kernels_ready: asyncio.Event | None = None,
        guard: CommitGuard | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.pool = pool
        self.processor = processor
        self._speeds: SpeedProfile | None = None  # what ``processor`` was given
        self.scope = scope
        self.transport: Transport | None = None
        self.guard = guard
        limits = DecodeLimits(
            settings.max_payload_bytes, settings.max_future_skew_s * 1000, known_vehicles
        )
        self.batcher = Batcher(limits, settings.reorder_allowance_s * 1000)
        self.seq = SeqTracker()  # each tracker's numbering: pings lost on the way
        self._gaps = GapReporter(settings.reorder_allowance_s)
        self._wake = asyncio.Event()  # a batch is full, tick events wait, or stopping
        self._room = asyncio.Event()  # the transport may add to the open batch
        self._room.set()
        self._flush_lock = asyncio.Lock()
        self._tick_events: list[Event] = []
        self._last_checkpoint = time.monotonic()
        if scope != WHOLE:  # a worker's partitions, all started at once, checkpoint apart
            self._last_checkpoint -= random.uniform(0, settings.checkpoint_interval_s)
        self._lost_commit = False
        self.flush_at_messages = max(1, settings.mqtt_receive_maximum // 2)
        # a worker's partition gets a share of the pings: it waits longer for a batch
        self.batch_max_ms = (
            settings.batch_max_ms if scope == WHOLE else settings.worker_batch_max_ms
        )
        self._newest_fix_ms = 0  # newest fix time seen, the clock in "event" watermark mode
        self._plans: dict[str, TripPlan] = {}  # the plan each running trip was added with
        # Set once the compliance kernels are compiled (see warm_up_kernels); one event
        # may be shared by every pipeline of a process. A pipeline without an engine has
        # nothing to wait for.
        self.kernels_ready = kernels_ready or asyncio.Event()
        if processor is None:
            self.kernels_ready.set()

    async def warm_up_kernels(self) -> None:
        """Compile (or load from cache) the payload decoder, the engine's kernels and the
        COPY encoder in a worker thread while the transport connects. Receiving waits for
        this, so the first messages wait at the broker, un-acknowledged and bounded by its
        window, instead of the event loop stalling for tens of seconds of JIT compilation
        on a cold cache."""
        await warm_up_kernels(self.kernels_ready)

    def watermark_ms(self) -> int:
        """The engine's notion of now: the wall clock live, or — with
        ``settings.watermark == "event"`` — the newest fix time seen so far (an accelerated
        simulated fleet, whose fix times are not wall-clock times). Decode already refuses
        fixes more than ``max_future_skew_s`` ahead, which bounds how far one skewed
        device can push the event clock."""
        if self.settings.watermark == "event":
            return self._newest_fix_ms or now_ms()
        return now_ms()

    def _checkpoint_watermark_ms(self) -> int:
        """The watermark saved with a checkpoint, where the next owner's clock resumes: in
        ``event`` mode the newest fix seen (0 before any), never the wall clock — an
        engine restored with a wall-clock event time would take every trip as silent."""
        return self._newest_fix_ms if self.settings.watermark == "event" else self.watermark_ms()

    # -- what a transport calls -----------------------------------------------------

    async def wait_room(self) -> None:
        """Until the open batch may take more (and the decoder is compiled)."""
        await self.kernels_ready.wait()
        await self._room.wait()

    def full(self) -> bool:
        b = self.batcher
        return b.pings >= self.settings.batch_max_pings or b.messages >= self.flush_at_messages

    def take(self, messages: Sequence[Inbound], generation: int, *, whole: bool = False) -> int:
        """Add ``messages`` to the open batch until it is full; returns how many it took.
        ``whole``: take them all even past the limits (their acks must not be split over
        two batches: a JetStream message carries many pings)."""
        if whole:
            room, max_pings = len(messages), 2**62
        else:
            room, max_pings = (
                self.flush_at_messages - self.batcher.messages,
                self.settings.batch_max_pings,
            )
        taken = self.batcher.add_many(
            messages[:room] if len(messages) > room else messages,
            now_ms(),  # one clock read per socket read: it only bounds future skew
            generation,
            max_pings,
        )
        metrics.MQTT_MESSAGES.inc(taken)
        metrics.INFLIGHT_MESSAGES.set(self.batcher.messages)
        if self.full():
            self._room.clear()
            self._wake.set()
        return taken

    # -- flushing ----------------------------------------------------------------------

    async def flush_loop(self, stop: asyncio.Event) -> None:
        max_wait_s = self.batch_max_ms / 1000.0
        while not stop.is_set():
            started = self.batcher.started_monotonic
            wait_s = max_wait_s if started is None else started + max_wait_s - time.monotonic()
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
            self._wake.clear()
            if stop.is_set():
                return  # the transport drains once its receiver has stopped
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
            await self.kernels_ready.wait()
            if self.processor is not None and len(pending.pings):
                result = self.processor.process(pending.pings, watermark_ms)
            seq = self._follow_numbers(pending)
            outcome = await self._commit(pending, result, tick_events, seq)
            if outcome is None:
                self._lost_commit = True  # the engine state is now ahead of the database
                return  # stopping with the database down: left un-acked, re-delivered
            if self.transport is not None:
                await self.transport.ack(pending.acks)
            metrics.INFLIGHT_MESSAGES.set(self.batcher.messages)
            self._record(pending, outcome, time.perf_counter() - t0)
            report_loss(seq)
            if self.transport is not None and outcome.new_events:
                self.transport.mirror(outcome.new_events)

    async def finish(self) -> None:
        """After the transport stopped: commit what was received, let the flusher see the
        stop, and save the final checkpoint."""
        await self.flush()
        self._wake.set()
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
                if self.guard is not None:
                    await self.guard(conn)
                if gaps.gaps:
                    await save_report(conn, gaps)
                if self.processor is not None:
                    await save_checkpoint(
                        conn,
                        self.processor.checkpoint(),
                        self._checkpoint_watermark_ms(),
                        self.scope.checkpoint_key,
                    )
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("could not save the final engine checkpoint: %s", exc)
            return
        report_loss(gaps)

    def _follow_numbers(self, pending: PendingBatch) -> SeqReport:
        """The batch's sequence numbers: new gaps wait for the reorder allowance; those
        due now are reported with what is still missing (``ingest.seqgaps``)."""
        seq = self.seq.observe(pending.pings) if len(pending.pings) else SeqReport()
        now_s = time.monotonic()
        self._gaps.add(seq.gaps, self.seq, now_s)
        seq.gaps = self._gaps.due(self.seq, now_s)
        return seq

    def _checkpoint_due(self) -> tuple[bytes, int] | None:
        if self.processor is None:
            return None
        if time.monotonic() - self._last_checkpoint < self.settings.checkpoint_interval_s:
            return None
        self._last_checkpoint = time.monotonic()
        return self.processor.checkpoint(), self._checkpoint_watermark_ms()

    async def _commit(
        self,
        pending: PendingBatch,
        result: ProcessResult | None,
        tick_events: list[Event],
        seq: SeqReport,
    ) -> CommitOutcome | None:
        checkpoint = self._checkpoint_due()
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
                        checkpoint_key=self.scope.checkpoint_key,
                        guard=self.guard,
                    )
            except (psycopg.OperationalError, PoolTimeout) as exc:
                # Transient: the transport is blocked meanwhile (backpressure) and nothing
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

    # -- time and trips ----------------------------------------------------------------

    async def tick_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await sleep_unless(stop, TICK_S)
            if self.processor is None or stop.is_set() or not self.kernels_ready.is_set():
                continue
            events = self.processor.tick(self.watermark_ms())
            if events:
                self._tick_events.extend(events)
                self._wake.set()

    def owns(self, row: TripRow) -> bool:
        return _in_scope(row, self.scope)

    def use_speeds(self, profile: SpeedProfile | None) -> None:
        """ETAs over these learned speeds from now (``ingest.speeds``), if not already."""
        if self.processor is not None and self._speeds is not profile:
            self.processor.set_speed_profile(profile)
            self._speeds = profile

    def apply_trip(self, row: TripRow | None, trip_id: str) -> None:
        """A trip changed in the database: follow, replace or drop it (a trip of another
        scope's vehicle is dropped if this pipeline ran it: its vehicle changed)."""
        if self.processor is None:
            return
        if row is None or row.status not in LIVE_STATUSES or not self.owns(row):
            self.processor.cancel_trip(trip_id)
            self._plans.pop(trip_id, None)
            why = "deleted" if row is None else row.status
            log.debug(
                "trip %s dropped (%s)", trip_id, why if row is None or self.owns(row) else "moved"
            )
        elif row.plan is not None:
            self.processor.add_trip(row.plan)
            self._plans[trip_id] = row.plan
            log.debug("trip %s loaded", trip_id)
        if self.scope == WHOLE:  # a worker sums its partitions' trips itself
            metrics.ACTIVE_TRIPS.set(len(self.processor.trips()))

    def sync_trips(self, rows: list[TripRow]) -> None:
        """Bring the engine in line with the database's live trips: drop trips no longer
        live, add new ones and ones whose plan changed. A running trip whose plan is
        unchanged is left alone — adding it again would reset its progress."""
        if self.processor is None:
            return
        live = {row.trip_id: row for row in rows if self.owns(row)}
        running = set(self.processor.trips())
        for trip_id in running - live.keys():
            self.apply_trip(None, trip_id)
        for trip_id, row in live.items():
            if trip_id not in running or self._plans.get(trip_id) != row.plan:
                self.apply_trip(row, trip_id)


def _in_scope(row: TripRow, scope: Scope) -> bool:
    """Whether the trip's vehicle is in ``scope`` (a plan that no longer validates stays
    where it ran)."""
    return row.plan is None or scope.owns(row.plan.vehicle_id)


#: gap lines logged per batch; the rest are summed up in one line
MAX_GAP_LINES = 10


def report_loss(seq: SeqReport) -> None:
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


async def start_pipeline(
    settings: Settings,
    pool: AsyncConnectionPool,
    stop: asyncio.Event,
    *,
    scope: Scope = WHOLE,
    kernels_ready: asyncio.Event | None = None,
    guard: CommitGuard | None = None,
) -> Pipeline:
    """A pipeline for ``scope`` with its engine restored (checkpoint + the scope's pings
    committed after it), its live trips and (if enforced) the vehicle registry."""
    async with pool.connection() as conn:
        saved = await load_checkpoint(conn, scope.checkpoint_key)
        # A partition's first owner, after a single-process engine ran: start from that
        # engine's state without its other vehicles' trips, rather than replaying every
        # ping ever stored.
        inherited = saved is None and scope != WHOLE
        if inherited:
            saved = await load_checkpoint(conn, WHOLE.checkpoint_key)
        processor = make_processor(saved.state if saved else None, settings)
        if inherited and saved is not None:
            for trip_id in await _trips_elsewhere(conn, processor.trips(), scope):
                processor.cancel_trip(trip_id)
        trips = await load_live_trips(conn, None if scope == WHOLE else scope.owns)
        known = (await load_known_vehicles(conn)) if settings.require_known_vehicle else None
        recovered = await recover(conn, processor, saved, trips, settings, scope=scope, guard=guard)
        numbering = [s for s in await load_tracker_states(conn) if scope.owns(s.vehicle_id)]
    pipeline = Pipeline(
        settings,
        pool,
        processor,
        known,
        stop,
        scope=scope,
        kernels_ready=kernels_ready,
        guard=guard,
    )
    pipeline.seq.load(numbering)
    pipeline._newest_fix_ms = recovered.newest_fix_ms  # the event-mode clock carries on
    running = set(processor.trips())
    for row in trips:
        # A running trip carries its progress: take the stored plan as the one it runs.
        if row.trip_id in running and row.plan is not None:
            pipeline._plans[row.trip_id] = row.plan
    pipeline.sync_trips(trips)  # drops trips cancelled or finished while we were away
    return pipeline


async def _trips_elsewhere(
    conn: psycopg.AsyncConnection, trip_ids: list[str], scope: Scope
) -> list[str]:
    """Of ``trip_ids``, those whose vehicle is outside ``scope``."""
    cur = await conn.execute(
        "SELECT trip_id, vehicle_id FROM trips WHERE trip_id = ANY(%s)", (trip_ids,)
    )
    return [trip_id for trip_id, vehicle_id in await cur.fetchall() if not scope.owns(vehicle_id)]


def _warm_up() -> float:
    """Compile the payload decoder, the compliance kernels and the pings COPY encoder;
    returns the seconds."""
    t0 = time.perf_counter()
    bulkdecode.warm_up()
    warm_up()
    seqgaps.warm_up()
    copy_binary.warm_up()
    return time.perf_counter() - t0


async def warm_up_kernels(ready: asyncio.Event) -> None:
    """Compile the kernels in a thread, then set ``ready``."""
    seconds = await asyncio.to_thread(_warm_up)
    log.info("compliance kernels ready", extra={"seconds": round(seconds, 2)})
    ready.set()
