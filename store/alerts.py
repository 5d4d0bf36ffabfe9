"""Persisted alerts: open on an attention-worthy event, resolve on its partner.

Every alert carries its trip's driver (``driver_id``, filled from the trip row by the
database trigger of migration 0040, whoever inserts the alert).

``apply_events`` runs inside the ingest batch transaction and takes events in the order
the engine emitted them (CONTRACT §4: partners never interleave wrongly in that order —
their event times may, when pings arrive late). It is idempotent: an alert is keyed by
the event that opened it, and each resolving event is applied once (``alert_resolvers``),
so a re-delivered batch changes nothing. Every change draws a fresh ``stream_id`` and the
transaction sends ``NOTIFY routewatch_alerts`` — the SSE stream then reads "everything
after the last stream id it sent", which is also how a client resumes with
``Last-Event-ID``.

Ordering guarantee: a sequence value drawn by a transaction that commits *later* than a
higher value would let a reader skip it. Writers therefore take a transaction-scoped
advisory lock before drawing stream ids, so ids become visible in increasing order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "routewatch_alerts"
_STREAM_LOCK_KEY = 0x52_57_41_4C  # "RWAL": serialises stream-id drawing across writers

#: event type that opens an alert -> the event types that resolve it
ALERT_TYPES: dict[str, tuple[str, ...]] = {
    "off_route": ("back_on_route",),
    "unplanned_stop": ("unplanned_stop_ended",),
    "speeding": ("speeding_ended",),
    # Arriving at the stop ends a "predicted late arrival" for it (same stop_id only).
    "late": ("back_on_schedule", "stop_arrived"),
    "signal_lost": ("signal_restored",),
    # No automatic partner: these wait for a supervisor.
    "pod_review": (),
    "stop_skipped": (),
}
#: events that close every still-unresolved *condition* alert of their trip
TRIP_END_TYPES = ("trip_completed", "trip_cancelled")
_CONDITION_TYPES = tuple(t for t, partners in ALERT_TYPES.items() if partners)
_RESOLVES: dict[str, str] = {p: t for t, ps in ALERT_TYPES.items() for p in ps}
_PER_STOP_RESOLVERS = ("back_on_schedule", "stop_arrived")
_DEFAULT_SEVERITY = {"pod_review": "warning", "stop_skipped": "warning"}

ALERT_COLUMNS = (
    "id, stream_id, event_id, type, severity, status, trip_id, vehicle_id, driver_id, ts, lat, "
    "lon, route_m, details, acked_at, acked_by, ack_note, resolved_at, resolved_by, updated_at"
)


class EventLike(Protocol):
    """What ``apply_events`` needs of an event (``compliance.events.Event`` fits)."""

    @property
    def type(self) -> Any: ...
    @property
    def trip_id(self) -> str: ...
    @property
    def vehicle_id(self) -> str: ...
    @property
    def ts_ms(self) -> int: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def route_m(self) -> float: ...
    @property
    def details(self) -> dict[str, Any]: ...
    @property
    def event_id(self) -> str: ...


def _severity(event: EventLike) -> str:
    sev = getattr(event, "severity", None)
    return str(sev) if sev else _DEFAULT_SEVERITY.get(str(event.type), "warning")


def _ts(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC)


async def _lock_stream(conn: AsyncConnection[Any]) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_STREAM_LOCK_KEY,))


async def _notify(conn: AsyncConnection[Any], stream_id: int) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(stream_id)))


async def apply_events(conn: AsyncConnection[Any], events: Sequence[EventLike]) -> int:
    """Open/resolve alerts for ``events``, taken in the given (emission) order; return
    the number of alert rows changed.

    Must be called inside the caller's transaction; the NOTIFY is delivered on commit.
    """
    relevant = [
        e
        for e in events
        if str(e.type) in ALERT_TYPES or str(e.type) in _RESOLVES or str(e.type) in TRIP_END_TYPES
    ]
    if not relevant:
        return 0
    await _lock_stream(conn)
    changed = 0
    last_stream_id = 0
    async with conn.cursor(row_factory=dict_row) as cur:
        for ev in relevant:
            etype = str(ev.type)
            if etype in ALERT_TYPES:
                await cur.execute(
                    """INSERT INTO alerts (event_id, type, severity, trip_id, vehicle_id, ts,
                                           lat, lon, route_m, details)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (event_id) DO NOTHING
                       RETURNING stream_id""",
                    (
                        ev.event_id,
                        etype,
                        _severity(ev),
                        ev.trip_id,
                        ev.vehicle_id,
                        _ts(ev.ts_ms),
                        ev.lat,
                        ev.lon,
                        ev.route_m,
                        Jsonb(ev.details),
                    ),
                )
            else:
                await cur.execute(
                    "INSERT INTO alert_resolvers (event_id) VALUES (%s) "
                    "ON CONFLICT DO NOTHING RETURNING event_id",
                    (ev.event_id,),
                )
                if await cur.fetchone() is None:
                    continue  # applied before: a re-delivered batch
                await cur.execute(*_resolve_query(ev))
            rows = await cur.fetchall()
            changed += len(rows)
            if rows:
                last_stream_id = max(last_stream_id, *(r["stream_id"] for r in rows))
    if last_stream_id:
        await _notify(conn, last_stream_id)
    return changed


def _resolve_query(ev: EventLike) -> tuple[str, tuple[Any, ...]]:
    """UPDATE that resolves what ``ev`` ends: its trip's unresolved alerts of the types
    it closes (for per-stop resolvers, only that stop's)."""
    etype = str(ev.type)
    opened_types: tuple[str, ...] = (
        _CONDITION_TYPES if etype in TRIP_END_TYPES else (_RESOLVES[etype],)
    )
    extra = ""
    params: list[Any] = [_ts(ev.ts_ms), etype, ev.event_id, ev.trip_id, list(opened_types)]
    stop_id = ev.details.get("stop_id") if etype in _PER_STOP_RESOLVERS else None
    if etype == "stop_arrived":
        # Only that stop's late alert; an arrival without a stop id resolves nothing.
        extra = " AND details->>'stop_id' = %s"
        params.append("" if stop_id is None else str(stop_id))
    elif stop_id is not None:
        # A late alert is about one stop; back on schedule for that stop resolves it.
        extra = " AND (details->>'stop_id' IS NULL OR details->>'stop_id' = %s)"
        params.append(str(stop_id))
    sql = f"""UPDATE alerts
                 SET status = 'resolved', resolved_at = %s, resolved_by = %s,
                     resolved_event_id = %s, stream_id = nextval('alerts_stream_seq'),
                     updated_at = now()
               WHERE trip_id = %s AND status <> 'resolved' AND type = ANY(%s){extra}
           RETURNING stream_id"""
    return sql, tuple(params)


async def raise_alert(
    conn: AsyncConnection[Any],
    *,
    key: str,
    type: str,
    vehicle_id: str,
    trip_id: str | None,
    ts: datetime,
    details: dict[str, Any],
    severity: str = "warning",
) -> dict[str, Any] | None:
    """Open an alert that no compliance event carries (e.g. a POD flagged for review).

    ``key`` identifies the cause (e.g. ``pod_review|ORD-1``): raising it twice opens one
    alert. Returns the new alert, or ``None`` when it already existed.
    """
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"routewatch-alert|{key}")
    await _lock_stream(conn)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""INSERT INTO alerts (event_id, type, severity, trip_id, vehicle_id, ts, details)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (event_id) DO NOTHING
                RETURNING {ALERT_COLUMNS}""",
            (event_id, type, severity, trip_id, vehicle_id, ts, Jsonb(details)),
        )
        row = await cur.fetchone()
    if row:
        await _notify(conn, row["stream_id"])
    return row


async def acknowledge(
    conn: AsyncConnection[Any], alert_id: int, *, by: str, note: str | None
) -> dict[str, Any] | None:
    """Record who acknowledged an alert, when and why; ``None`` if there is no such alert.

    An open alert becomes ``acked``; a resolved one keeps its status but records the ack.
    Acknowledging twice keeps the first acknowledgement (idempotent for retried clicks).
    """
    async with conn.transaction():
        await _lock_stream(conn)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""UPDATE alerts
                       SET acked_at = now(), acked_by = %s, ack_note = %s,
                           status = CASE WHEN status = 'open' THEN 'acked' ELSE status END,
                           stream_id = nextval('alerts_stream_seq'), updated_at = now()
                     WHERE id = %s AND acked_at IS NULL
                 RETURNING {ALERT_COLUMNS}""",
                (by, note, alert_id),
            )
            row = await cur.fetchone()
            if row:
                await _notify(conn, row["stream_id"])
                return row
            await cur.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %s", (alert_id,))
            return await cur.fetchone()


async def list_alerts(
    conn: AsyncConnection[Any],
    *,
    status: Iterable[str] = (),
    types: Iterable[str] = (),
    since: datetime | None = None,
    vehicle_id: str | None = None,
    driver_id: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first; keyset paging with ``before_id`` (the last id of the previous page)."""
    where = ["TRUE"]
    params: list[Any] = []
    if statuses := list(status):
        where.append("status = ANY(%s)")
        params.append(statuses)
    if type_list := list(types):
        where.append("type = ANY(%s)")
        params.append(type_list)
    if since is not None:
        where.append("ts >= %s")
        params.append(since)
    if vehicle_id is not None:
        where.append("vehicle_id = %s")
        params.append(vehicle_id)
    if driver_id is not None:
        where.append("driver_id = %s")
        params.append(driver_id)
    if before_id is not None:
        where.append("id < %s")
        params.append(before_id)
    params.append(limit)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT %s",
            params,
        )
        return await cur.fetchall()


async def changes_after(
    conn: AsyncConnection[Any], stream_id: int, *, limit: int = 500
) -> list[dict[str, Any]]:
    """Alerts whose latest change has ``stream_id`` greater than the given one, in order."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE stream_id > %s ORDER BY stream_id LIMIT %s",
            (stream_id, limit),
        )
        return await cur.fetchall()


async def latest_stream_id(conn: AsyncConnection[Any]) -> int:
    async with conn.cursor() as cur:
        await cur.execute("SELECT coalesce(max(stream_id), 0) FROM alerts")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def to_public(row: dict[str, Any]) -> dict[str, Any]:
    """An alert row as the API shows it (RFC 3339 times, CONTRACT §4 event fields)."""

    def iso(value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    return {
        "id": row["id"],
        "stream_id": row["stream_id"],
        "event_id": str(row["event_id"]),
        "type": row["type"],
        "severity": row["severity"],
        "status": row["status"],
        "trip_id": row["trip_id"],
        "vehicle_id": row["vehicle_id"],
        "driver_id": row["driver_id"],
        "ts": iso(row["ts"]),
        "lat": row["lat"],
        "lon": row["lon"],
        "route_m": row["route_m"],
        "details": row["details"],
        "acked_at": iso(row["acked_at"]),
        "acked_by": row["acked_by"],
        "ack_note": row["ack_note"],
        "resolved_at": iso(row["resolved_at"]),
        "resolved_by": row["resolved_by"],
        "updated_at": iso(row["updated_at"]),
    }
