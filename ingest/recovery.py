"""Exact engine recovery at start-up: the last checkpoint plus the pings committed after it.

The whole-engine checkpoint is saved inside a batch's transaction every
``checkpoint_interval_s``; batches committed (and acknowledged) after it are never
re-delivered, so restoring the checkpoint alone would forget them and detections would
diverge after a crash. Each stored ping carries the id of the transaction that committed
it (``pings.commit_xid``, migrations/0030_ping_commit_order.sql) and the checkpoint
carries its own, so "committed after the checkpoint" is ``commit_xid > checkpoint's``.

Those pings are fed to the restored engine as the live engine saw them: one batch per
committed transaction, in commit order, each sorted into event-time order per vehicle by
the engine, with the watermark that batch had — the newest fix so far in ``event`` mode
(exactly what the live pipeline used) or the transaction's start time in ``wall`` mode
(the live watermark was read a moment before it; only pings older than the reorder
allowance can tell the difference). Pings are not written again. The events this
regenerates have deterministic ids and are already stored; any that are not (none, when
the replay is exact) are committed together with a fresh checkpoint, so the next start
replays nothing that this one did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from compliance.events import Event
from compliance.plan import TripPlan
from compliance.types import PingBatch, ProcessResult
from ingest.batch import PendingBatch
from ingest.commit import commit_batch
from ingest.partitions import WHOLE, Scope
from ingest.trips import TripRow
from routewatch.settings import Settings
from store.live import SavedCheckpoint

log = logging.getLogger(__name__)

#: rows fetched per round trip while streaming the pings to replay
FETCH_ROWS = 10_000

# NaN / -1 for absent optional values, as the decoder produces them.
_REPLAY_SQL = """
SELECT commit_xid, (extract(epoch FROM received_at) * 1000)::bigint,
       vehicle_id, (extract(epoch FROM ts) * 1000)::bigint, lat, lon,
       coalesce(speed_kmh, 'NaN'), coalesce(heading_deg, 'NaN'),
       coalesce(accuracy_m, 'NaN'), coalesce(seq, -1)
FROM pings WHERE commit_xid > %s
ORDER BY commit_xid, vehicle_id, ts
"""


# A partition's pings: its vehicles among those committed after the checkpoint are found
# first (a scan that stays in the server), so only 1/P of the rows come over.
_REPLAY_SCOPED_SQL = _REPLAY_SQL.replace(
    "WHERE commit_xid > %s", "WHERE commit_xid > %s AND vehicle_id = ANY(%s)"
)
_VEHICLES_AFTER_SQL = "SELECT DISTINCT vehicle_id FROM pings WHERE commit_xid > %s"


class Replayable(Protocol):
    """What recovery needs of the compliance engine (ingest.pipeline.Processor has it)."""

    def add_trip(self, plan: TripPlan) -> None: ...
    def process(self, batch: PingBatch, watermark_ms: int) -> ProcessResult: ...
    def checkpoint(self) -> bytes: ...
    def trips(self) -> list[str]: ...


@dataclass(slots=True)
class CommittedBatch:
    """The pings one engine transaction stored, in (vehicle_id, ts) order."""

    commit_xid: int
    committed_ms: int  # the transaction's start time, epoch ms
    rows: list[tuple[object, ...]] = field(default_factory=list)

    def pings(self) -> PingBatch:
        cols = list(zip(*self.rows, strict=True))
        return PingBatch(
            list(cols[0]),
            np.asarray(cols[1], np.int64),
            np.asarray(cols[2], np.float64),
            np.asarray(cols[3], np.float64),
            np.asarray(cols[4], np.float64),
            np.asarray(cols[5], np.float64),
            np.asarray(cols[6], np.float64),
            np.asarray(cols[7], np.int64),
        )


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    batches: int  # committed transactions replayed
    pings: int
    events: int  # events the replay regenerated
    missing_events: int  # of those, ones the database did not hold (stored now)
    newest_fix_ms: int  # newest fix time seen: the event-mode watermark to carry on from
    seconds: float


async def committed_after(
    conn: AsyncConnection, commit_xid: int, scope: Scope = WHOLE
) -> AsyncIterator[CommittedBatch]:
    """The pings of ``scope``'s vehicles committed after transaction ``commit_xid``, one
    batch per transaction, in commit order; streamed through a server-side cursor
    (``conn`` must be idle).

    Transaction ids follow commit order only among one writer's transactions: that holds
    for a scope, whose pipeline commits one batch after the other and whose new owner
    starts writing only after the old one is fenced off (``ingest.worker``)."""
    async with conn.transaction():
        query: str = _REPLAY_SQL
        params: tuple[object, ...] = (commit_xid,)
        if scope != WHOLE:
            async with conn.cursor(row_factory=tuple_row) as found:
                await found.execute(_VEHICLES_AFTER_SQL, (commit_xid,))
                mine = [v for (v,) in await found.fetchall() if scope.owns(v)]
            if not mine:
                return
            query, params = _REPLAY_SCOPED_SQL, (commit_xid, mine)
        cur = conn.cursor("routewatch_recovery", row_factory=tuple_row)
        try:
            await cur.execute(query, params)
            batch: CommittedBatch | None = None
            while rows := await cur.fetchmany(FETCH_ROWS):
                for xid, committed_ms, *ping in rows:
                    if batch is None or xid != batch.commit_xid:
                        if batch is not None:
                            yield batch
                        batch = CommittedBatch(int(xid), int(committed_ms))
                    batch.rows.append(tuple(ping))
            if batch is not None:
                yield batch
        finally:
            await cur.close()


class Dispatches:
    """The live trips the checkpoint does not know (dispatched after it), each to be added
    to the engine where the live engine got it: before the first replayed batch committed
    after the trip was created (the live engine loads a trip on its NOTIFY, right after
    that commit). Pings the vehicle sent before then were not matched against it live and
    are not in the replay either. Trips the engine runs keep their state; trips that
    finished or were cancelled since stay until the caller syncs with the database, so
    the pings that belonged to them are replayed against them, as they were live."""

    def __init__(self, trips: Iterable[TripRow], running: Iterable[str]) -> None:
        known = set(running)
        self._rows = {r.trip_id: r for r in trips if r.trip_id not in known and r.plan}
        self._due: list[tuple[int, str]] = []

    async def load_times(self, conn: AsyncConnection) -> None:
        if not self._rows:
            return
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(
                "SELECT trip_id, (extract(epoch FROM created_at) * 1000)::bigint FROM trips "
                "WHERE trip_id = ANY(%s)",
                (list(self._rows),),
            )
            created: dict[str, int] = {r[0]: int(r[1]) for r in await cur.fetchall()}
        self._due = sorted((created.get(t, 0), t) for t in self._rows)

    def add_due(self, processor: Replayable, before_ms: int | None = None) -> None:
        """Add the trips created before ``before_ms`` (every remaining one when None)."""
        while self._due and (before_ms is None or self._due[0][0] < before_ms):
            plan = self._rows[self._due.pop(0)[1]].plan
            assert plan is not None
            processor.add_trip(plan)


async def _missing(conn: AsyncConnection, events: list[Event]) -> list[Event]:
    """The events whose ids the database does not hold."""
    ids = list({e.event_id for e in events})
    if not ids:
        return []
    # The time bounds let a hypertable look in the chunks of those days only.
    first_ms, last_ms = min(e.ts_ms for e in events), max(e.ts_ms for e in events)
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "SELECT event_id::text FROM events WHERE event_id = ANY(%s::uuid[]) "
            "AND ts BETWEEN timestamptz 'epoch' + %s * interval '1 millisecond' "
            "AND timestamptz 'epoch' + %s * interval '1 millisecond'",
            (ids, first_ms, last_ms),
        )
        stored = {row[0] for row in await cur.fetchall()}
    return [e for e in events if e.event_id not in stored]


def _empty_batch() -> PendingBatch:
    return PendingBatch(PingBatch.empty(), [], [], 0, 0, 0, 0)


async def recover(
    conn: AsyncConnection,
    processor: Replayable,
    saved: SavedCheckpoint | None,
    trips: Iterable[TripRow],
    settings: Settings,
    *,
    scope: Scope = WHOLE,
    guard: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> RecoveryReport:
    """Bring ``processor`` (restored from ``saved``, or new when there is none) up to the
    last committed batch; save a checkpoint of the result. Without a checkpoint every
    stored ping is replayed (a crash before the first one); a checkpoint saved before
    commit ids were recorded replays nothing (the old behaviour)."""
    t0 = time.perf_counter()
    dispatches = Dispatches(trips, processor.trips())
    await dispatches.load_times(conn)
    since_xid = 0 if saved is None else saved.commit_xid
    newest_ms = 0 if saved is None else saved.watermark_ms
    n_batches = n_pings = 0
    events: list[Event] = []
    if since_xid is not None:
        async for batch in committed_after(conn, since_xid, scope):
            dispatches.add_due(processor, batch.committed_ms)
            pings = batch.pings()
            newest_ms = max(newest_ms, int(pings.ts_ms.max()))
            watermark_ms = newest_ms if settings.watermark == "event" else batch.committed_ms
            events += processor.process(pings, watermark_ms).events
            n_batches += 1
            n_pings += len(pings)
    dispatches.add_due(processor)
    missing = await _missing(conn, events)
    # The regenerated events that are new (normally none) and a checkpoint of the
    # recovered state, in one transaction; the order/alert hooks see only the new ones.
    await commit_batch(
        conn,
        _empty_batch(),
        None,
        missing,
        (processor.checkpoint(), newest_ms),
        settings=settings,
        checkpoint_key=scope.checkpoint_key,
        guard=guard,
    )
    report = RecoveryReport(
        n_batches, n_pings, len(events), len(missing), newest_ms, time.perf_counter() - t0
    )
    if n_batches or missing:
        log.info(
            "engine recovered: replayed %d pings of %d commits after the checkpoint, "
            "%d events regenerated, %d of them new (%s)",
            n_pings,
            n_batches,
            len(events),
            len(missing),
            scope,
            extra={"seconds": round(report.seconds, 3)},
        )
    return report
