"""``routewatch worker``: an engine worker owning a share of the ping partitions.

Any number of workers, on any machines, share the P partitions of the JetStream ping
stream (``ingest.jetstream``). Each partition is owned by exactly one live worker, and
runs there as its own :class:`~ingest.pipeline.Pipeline` — the same batch → engine →
commit → acknowledge path as the single-process engine — fed by the partition's durable
pull consumer.

Ownership, with what NATS gives (no home-made consensus):

- **Membership**: each worker keeps a key in the ``<prefix>_workers`` bucket, renewed
  every ``nats_lease_s / 6``; the bucket's TTL removes a dead worker's key.
- **Assignment**: every worker computes the same assignment from the live members by
  rendezvous hashing (a partition goes to the member with the highest
  ``blake2b(member, partition)``), so a join or a leave moves only about 1/N of them.
- **Leases**: a worker owns a partition while it holds its key in ``<prefix>_leases``,
  taken with create (compare-and-set on "absent") and renewed with update (CAS on the
  revision it holds); the bucket TTL (``nats_lease_s``) frees the keys of a worker that
  died. A worker releases what the assignment gives to another — drains it (commit,
  acknowledge, final checkpoint), then deletes the key — and claims what it is given as
  soon as the key is free.
- **Fencing**: a lease can expire under a worker that is only paused. Claiming bumps the
  partition's epoch in ``partition_owners`` (migrations/0034) and each commit first
  checks it (FOR SHARE), so an old owner's late commit is refused (:class:`LeaseLost`) and
  the new owner's recovery sees every commit that was accepted.
- **Hand-over of messages**: the new owner deletes and re-creates the partition's
  consumer, so what the old owner took and did not acknowledge is delivered at once.
  Its engine state comes from the partition's checkpoint plus the pings committed after
  it (``ingest.recovery``); events have deterministic ids, so nothing is emitted twice.

After a kill -9 the partitions of the dead worker are claimed within ``nats_lease_s``
plus one renewal round, and its vehicles' pings are committed again about a second later
(``benchmarks/workers.py``: claims 4.8–5.2 s after the kill, first commits 5.4–6.4 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
import psycopg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from compliance.events import Event
from ingest.batch import AckToken
from ingest.jetstream import Setup, connect, consumer_config, ensure_setup, unpack
from ingest.partitions import Scope
from ingest.pipeline import Pipeline, sleep_unless, start_pipeline, warm_up_kernels
from ingest.receiver import Inbound
from ingest.speeds import SpeedFeed
from ingest.trips import load_live_trips
from ingest.tripsync import TripFeed
from routewatch import metrics
from routewatch.settings import Settings
from store.db import make_pool

log = logging.getLogger(__name__)

#: partitions a worker recovers at once, and its database connections besides them
RECOVERIES, COMMIT_CONNECTIONS = 2, 4
#: envelopes fetched per pull request
FETCH_BATCH = 64
#: seconds a pull request waits for messages
FETCH_WAIT_S = 1.0
_KEY_RE = re.compile(r"[^-_=A-Za-z0-9]")


class LeaseLost(Exception):
    """The partition has another owner now; this worker must not write for it."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def key_of(worker_id: str) -> str:
    """A worker id as a key-value key (letters, digits, - _ =)."""
    return _KEY_RE.sub("_", worker_id) or "worker"


def assignment(partitions: int, workers: Sequence[str]) -> dict[int, str]:
    """Partition -> worker, by rendezvous hashing over the live workers."""

    def weight(worker: str, partition: int) -> bytes:
        return hashlib.blake2b(f"{worker}/{partition}".encode(), digest_size=8).digest()

    if not workers:
        return {}
    return {p: max(workers, key=lambda w: weight(w, p)) for p in range(partitions)}


async def claim_epoch(conn: psycopg.AsyncConnection, scope: Scope, owner: str) -> int:
    """Take the next epoch of ``scope``'s partition for ``owner``; waits for a commit of
    the previous owner in flight (it holds the row FOR SHARE)."""
    async with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "INSERT INTO partition_owners AS o (partitions, partition, owner, epoch) "
            "VALUES (%s, %s, %s, 1) ON CONFLICT (partitions, partition) DO UPDATE "
            "SET owner = EXCLUDED.owner, epoch = o.epoch + 1, claimed_at = now() "
            "RETURNING epoch",
            (scope.partitions, scope.partition, owner),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@dataclass
class Fence:
    """The commit guard of one owned partition."""

    scope: Scope
    epoch: int

    async def __call__(self, conn: psycopg.AsyncConnection) -> None:
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(
                "SELECT epoch FROM partition_owners WHERE partitions = %s AND partition = %s "
                "FOR SHARE",
                (self.scope.partitions, self.scope.partition),
            )
            row = await cur.fetchone()
        if row is None or int(row[0]) != self.epoch:
            raise LeaseLost(f"{self.scope} was claimed by another worker")


@dataclass
class Lease:
    revision: int
    renewed: float = field(default_factory=time.monotonic)


class PartitionRunner:
    """One owned partition: its pipeline fed by the partition's consumer."""

    def __init__(self, worker: Worker, partition: int) -> None:
        self.worker = worker
        self.scope = Scope(partition, worker.setup.partitions)
        self.stop = asyncio.Event()  # drain and hand over
        self.pipeline: Pipeline | None = None
        self.started = asyncio.Event()  # the pipeline runs (recovery done)
        self._inflight: dict[int, Msg] = {}
        self._next_mid = 0
        self.task: asyncio.Task[None] | None = None  # run(), supervised by the worker

    # -- the pipeline's transport ------------------------------------------------------

    async def ack(self, acks: Sequence[AckToken]) -> None:
        for mid in dict.fromkeys(mid for _, mid, _ in acks):
            msg = self._inflight.pop(mid, None)
            if msg is not None:
                with contextlib.suppress(nats.errors.Error):  # re-delivered; deduped
                    await msg.ack()

    def mirror(self, events: list[Event]) -> None:
        """Workers do not mirror events to MQTT (see docs/architecture.md)."""

    # -- life --------------------------------------------------------------------------

    async def run(self) -> None:
        """Recover, consume until ``stop``, drain. Raises :class:`LeaseLost` when fenced."""
        w = self.worker
        async with w.pool.connection() as conn:
            fence = Fence(self.scope, await claim_epoch(conn, self.scope, w.id))
        t0 = time.perf_counter()
        async with w.recoveries:  # the other partitions' commits keep their connections
            self.pipeline = await start_pipeline(
                w.settings,
                w.pool,
                self.stop,
                scope=self.scope,
                kernels_ready=w.kernels_ready,
                guard=fence,
            )
        self.pipeline.transport = self
        self.pipeline.use_speeds(w.speeds.profile)
        async with w.pool.connection() as conn:  # trips changed during the recovery
            self.pipeline.sync_trips(await load_live_trips(conn, self.scope.owns))
        js, layout = w.js, w.setup.layout
        p = self.scope.partition
        assert p is not None
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(layout.stream, layout.durable(p))
        sub = await js.pull_subscribe(
            layout.subject(p),
            stream=layout.stream,
            durable=layout.durable(p),
            config=consumer_config(layout, p),
        )
        log.info(
            "%s claimed (epoch %d), recovered in %.2f s",
            self.scope,
            fence.epoch,
            time.perf_counter() - t0,
            extra={"partition": p},
        )
        self.started.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.pipeline.flush_loop(self.stop), name=f"flusher-{p}")
                tg.create_task(self.pipeline.tick_loop(self.stop), name=f"ticker-{p}")
                await self._consume(sub, js)
                await self.pipeline.finish()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _consume(self, sub: JetStreamContext.PullSubscription, js: JetStreamContext) -> None:
        assert self.pipeline is not None
        pipeline = self.pipeline
        while not self.stop.is_set():
            await pipeline.wait_room()
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("%s: fetch failed (%s)", self.scope, exc)
                await sleep_unless(self.stop, 0.5)
                continue
            for msg in msgs:
                self._next_mid += 1
                records = _records(msg, self._next_mid)
                if not records:  # nothing to commit: done with it
                    await msg.ack()
                    continue
                self._inflight[self._next_mid] = msg
                await pipeline.wait_room()
                pipeline.take(records, 0, whole=True)


def _records(msg: Msg, mid: int) -> list[Inbound]:
    out: list[Inbound] = []
    try:
        for topic, payload in unpack(msg.data):
            out.append((topic, payload, mid, 1))
    except ValueError as exc:
        # Not from a routewatch gateway: recorded as a rejection (bad topic), not dropped.
        log.error("malformed envelope in %s: %s", msg.subject, exc)
        out.append(("", msg.data, mid, 1))
    return out


class Worker:
    def __init__(self, settings: Settings, worker_id: str | None = None) -> None:
        self.settings = settings
        self.id = worker_id or settings.worker_id or default_worker_id()
        self.key = key_of(self.id)
        self.kernels_ready = asyncio.Event()
        #: partitions recovering at once (each holds a database connection meanwhile)
        self.recoveries = asyncio.Semaphore(RECOVERIES)
        self.runners: dict[int, PartitionRunner] = {}
        self.leases: dict[int, Lease] = {}
        self.speeds = SpeedFeed(settings, self.pipelines)
        self.setup: Setup
        self.nc: Client
        self.js: JetStreamContext
        self.pool: AsyncConnectionPool
        self._member_revision = 0
        self._members_seen: list[str] = []
        self._releasing: set[asyncio.Task[None]] = set()

    def pipelines(self) -> list[Pipeline]:
        return [
            r.pipeline
            for r in self.runners.values()
            if r.pipeline is not None and r.started.is_set()
        ]

    async def run(self, stop: asyncio.Event) -> None:
        self.nc = nc = await connect(self.settings, f"routewatch-worker {self.id}")
        try:
            self.js = nc.jetstream()
            self.setup = await ensure_setup(self.js, self.settings)
            async with make_pool(
                self.settings.database_url,
                min_size=1,
                max_size=RECOVERIES + COMMIT_CONNECTIONS,
                name=f"routewatch-worker-{self.key}",
            ) as pool:
                self.pool = pool
                log.info(
                    "worker %s joining: %d partitions in %s",
                    self.id,
                    self.setup.partitions,
                    self.setup.layout.stream,
                )
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(warm_up_kernels(self.kernels_ready), name="warm-up")
                    tg.create_task(
                        TripFeed(self.settings, self.pipelines).run(stop), name="trip-sync"
                    )
                    tg.create_task(self.speeds.run(stop), name="speeds")
                    await self._membership(stop)
                    await self._leave()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await nc.drain()
        log.info("worker %s stopped", self.id)

    # -- membership and leases ------------------------------------------------------------

    async def _membership(self, stop: asyncio.Event) -> None:
        interval = self.settings.nats_lease_s / 6
        await self.kernels_ready.wait()  # claim nothing we could not process yet
        while not stop.is_set():
            try:
                await self._round()
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                log.warning("worker %s: NATS round failed (%s)", self.id, exc)
            self._reap()
            await sleep_unless(stop, interval)

    async def _round(self) -> None:
        await self._heartbeat()
        members = await self._members()
        if members != self._members_seen:
            log.info("workers: %s", " ".join(members), extra={"workers": len(members)})
            self._members_seen = members
        mine = {p for p, w in assignment(self.setup.partitions, members).items() if w == self.key}
        await self._renew()
        for p in list(self.runners):
            if p not in mine and not self.runners[p].stop.is_set():
                log.info("partition %d goes to another worker: handing it over", p)
                self.runners[p].stop.set()
        for p in sorted(mine - self.runners.keys()):
            await self._claim(p)
        metrics.PARTITIONS_OWNED.set(len(self.runners))
        metrics.ACTIVE_TRIPS.set(
            sum(len(p.processor.trips()) for p in self.pipelines() if p.processor is not None)
        )

    async def _heartbeat(self) -> None:
        kv = self.setup.workers
        try:
            self._member_revision = await kv.update(
                self.key, self.id.encode(), last=self._member_revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:  # first round, or it expired
            self._member_revision = await kv.put(self.key, self.id.encode())

    async def _members(self) -> list[str]:
        try:
            return sorted(set(await self.setup.workers.keys()))
        except nats.js.errors.NoKeysError:
            return [self.key]

    async def _renew(self) -> None:
        await asyncio.gather(*(self._renew_one(p, lease) for p, lease in list(self.leases.items())))

    async def _renew_one(self, p: int, lease: Lease) -> None:
        kv, ttl, key = self.setup.leases, self.settings.nats_lease_s, f"p{p}"
        try:
            try:
                lease.revision = await kv.update(key, self.key.encode(), last=lease.revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                # An earlier renewal may have been stored without its answer reaching us:
                # the lease is still ours if the key still names us.
                entry = await kv.get(key)
                if entry.value != self.key.encode() or entry.revision is None:
                    raise
                lease.revision = await kv.update(key, self.key.encode(), last=entry.revision)
            lease.renewed = time.monotonic()
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
            self._lost(p, "its lease expired or was taken")
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            if time.monotonic() - lease.renewed > ttl:
                self._lost(p, f"its lease could not be renewed for {ttl:.0f} s ({exc})")

    async def _claim(self, p: int) -> None:
        try:
            revision = await self.setup.leases.create(f"p{p}", self.key.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return  # still held: its owner hands it over, or its lease runs out
        self.leases[p] = Lease(revision)
        runner = PartitionRunner(self, p)
        self.runners[p] = runner
        runner.task = asyncio.create_task(self._run_partition(runner), name=f"partition-{p}")

    async def _run_partition(self, runner: PartitionRunner) -> None:
        try:
            await runner.run()
        except* LeaseLost as group:
            log.warning("%s: %s; dropped without writing", runner.scope, group.exceptions[0])

    def _lost(self, p: int, why: str) -> None:
        log.warning("partition %d lost: %s", p, why)
        self.leases.pop(p, None)
        runner = self.runners.get(p)
        if runner is not None and runner.task is not None:
            runner.task.cancel()  # no drain: another worker owns it (its commits are fenced)

    def _reap(self) -> None:
        """Partitions whose runner ended: release their leases (handed over, or failed)."""
        for p, runner in list(self.runners.items()):
            task = runner.task
            if task is None or not task.done():
                continue
            del self.runners[p]
            if not task.cancelled() and task.exception() is not None:
                log.error("partition %d failed", p, exc_info=task.exception())
            lease = self.leases.pop(p, None)
            if lease is not None:
                self._release_soon(p, lease)

    def _release_soon(self, p: int, lease: Lease) -> None:
        async def release() -> None:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await self.nc.flush()  # the acks before the key: the next owner sees them
                await self.setup.leases.delete(f"p{p}", last=lease.revision)
                log.info("partition %d released", p)

        task = asyncio.create_task(release(), name=f"release-{p}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _leave(self) -> None:
        """Graceful stop: drain every partition, release the leases, leave the group."""
        for runner in self.runners.values():
            runner.stop.set()
        tasks = [r.task for r in self.runners.values() if r.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        self._reap()
        if self._releasing:
            await asyncio.wait(list(self._releasing))
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
            await self.setup.workers.delete(self.key)


async def run_worker(settings: Settings, stop: asyncio.Event, worker_id: str | None = None) -> None:
    await Worker(settings, worker_id).run(stop)
