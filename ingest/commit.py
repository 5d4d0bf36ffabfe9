"""One database transaction per batch: everything a batch caused, or nothing.

Pings (with match columns), rejections, new events, live state, and — when those modules
exist — order lifecycle and alerts. Event inserts are idempotent, so a batch that is
re-delivered after a crash writes nothing twice, and only events that were really new
reach the order/alert hooks and the MQTT mirror.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from psycopg import AsyncConnection

from compliance.events import Event
from compliance.types import ProcessResult
from ingest.batch import PendingBatch
from ingest.seqgaps import SeqReport
from routewatch.settings import Settings
from store.events import insert_events
from store.live import (
    ENGINE_CHECKPOINT_KEY,
    save_checkpoint,
    update_trips_and_stops,
    upsert_vehicle_state,
)
from store.pings import insert_pings
from store.rejections import insert_rejections
from store.seqgaps import save_report

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    stored: int  # pings newly inserted
    new_events: list[Event]


def _optional_module(name: str) -> ModuleType | None:
    """store.orders / store.alerts are optional collaborators (imported lazily so the
    pipeline runs before they exist, and picks them up as soon as they do)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


async def commit_batch(
    conn: AsyncConnection,
    pending: PendingBatch,
    result: ProcessResult | None,
    tick_events: Sequence[Event],
    checkpoint: tuple[bytes, int] | None = None,
    *,
    essentials_only: bool = False,
    settings: Settings | None = None,
    seq: SeqReport | None = None,
    checkpoint_key: str = ENGINE_CHECKPOINT_KEY,
    guard: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> CommitOutcome:
    """Write one batch in a single transaction on ``conn`` (an autocommit connection).

    ``essentials_only`` writes just pings, rejections and events: the fallback when the
    derived writes (live state, order/alert hooks) fail on a bug or a constraint, so one
    poison batch cannot stall ingestion. ``settings`` carries the order rules (arriving
    horizon, ...) to ``store.orders``; without it the process-wide settings apply.
    ``seq``: the trackers' numbering after this batch and the gaps reported with it.
    ``checkpoint_key``: the ``engine_checkpoints`` row of the engine (one per partition
    on engine workers). ``guard`` runs first in the transaction and may refuse it by
    raising (a worker that no longer owns its partition must not write).
    """
    events = list(tick_events) + (result.events if result is not None else [])
    snapshots = result.snapshots if result is not None else []
    async with conn.transaction():
        if guard is not None:
            await guard(conn)
        stored = await insert_pings(conn, pending.pings, result)
        await insert_rejections(conn, pending.rejections)
        new_events = await insert_events(conn, events)
        if seq is not None:  # the numbering goes with the pings (the engine holds it)
            await save_report(conn, seq)
        if essentials_only:
            return CommitOutcome(stored, new_events)
        await upsert_vehicle_state(conn, pending.pings, result, tick_events)
        await update_trips_and_stops(conn, snapshots)
        orders = _optional_module("store.orders")
        if orders is not None and (new_events or snapshots):
            await orders.apply_events(conn, new_events, snapshots, settings=settings)
        alerts = _optional_module("store.alerts")
        if alerts is not None and new_events:
            await alerts.apply_events(conn, new_events)
        if checkpoint is not None:
            await save_checkpoint(conn, *checkpoint, checkpoint_key)
    return CommitOutcome(stored, new_events)
