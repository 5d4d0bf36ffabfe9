"""Order lifecycle (CONTRACT §5): statuses, ETAs, history and OMS webhooks.

``scheduled → out_for_delivery → arriving → delivered``, or ``→ failed`` / ``→ cancelled``.

- ``out_for_delivery`` when the trip starts (``trip_started``, or a snapshot of an active
  trip for orders that missed it);
- ``arriving`` when at most ``Settings.arriving_stops_before`` (default 1) pending stops
  come before the order's stop, or its ETA is within ``Settings.arriving_horizon_s``, or
  the vehicle has arrived there;
- ``delivered`` on proof of delivery (:mod:`store.pod`) — or on arrival + departure when
  ``Settings.deliver_on_departure`` is set;
- ``failed`` when the stop is departed without proof of delivery, skipped, or the trip
  completes without visiting it; a late proof of delivery still turns it ``delivered``
  (flagged for review);
- ``cancelled`` with the trip, or when a replacement plan drops the order.

Statuses only move forward; re-applying the same events changes nothing, so the ingest
pipeline's at-least-once batches are safe. Every change is written to
``order_status_history`` and queued in the webhook outbox in the caller's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from compliance.events import Event, EventType
from compliance.types import TripSnapshot
from routewatch.settings import Settings, get_settings
from store import outbox

log = logging.getLogger(__name__)

Conn = AsyncConnection[dict[str, Any]]

ACTIVE = ("scheduled", "out_for_delivery", "arriving")
TERMINAL = ("delivered", "failed", "cancelled")
_RANK = {"scheduled": 0, "out_for_delivery": 1, "arriving": 2}

ORDER_COLUMNS = """o.order_id, o.tracking_number, o.trip_id, o.stop_id, o.status, o.eta,
    o.eta_low, o.eta_high, o.notified_eta, o.created_at, o.updated_at,
    s.seq, s.status AS stop_status, s.window_start, s.window_end, s.planned_arrival,
    s.lon, s.lat, s.radius_m, s.arrived_at, s.departed_at, t.driver_id"""
_FROM = """FROM orders o LEFT JOIN stops s ON s.trip_id = o.trip_id AND s.stop_id = o.stop_id
    LEFT JOIN trips t ON t.trip_id = o.trip_id"""


def ms_dt(ts_ms: int | None) -> datetime | None:
    return None if ts_ms is None else datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def _rfc3339(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def webhook_payload(order: dict[str, Any], ts: datetime) -> dict[str, Any]:
    """CONTRACT §5 webhook body: ``{order_id, tracking_number, status, eta, window, ts}``,
    and ``driver_id`` when the order's trip has a driver."""
    driver = {"driver_id": order["driver_id"]} if order.get("driver_id") else {}
    return {
        "order_id": order["order_id"],
        "tracking_number": order["tracking_number"],
        "status": order["status"],
        "eta": _rfc3339(order["eta"]),
        "eta_window": {"start": _rfc3339(order["eta_low"]), "end": _rfc3339(order["eta_high"])},
        "window": {"start": _rfc3339(order["window_start"]), "end": _rfc3339(order["window_end"])},
        **driver,
        "ts": _rfc3339(ts),
    }


async def get_order(
    conn: Conn, order_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    lock = " FOR UPDATE OF o" if for_update else ""
    cur = await conn.execute(
        f"SELECT {ORDER_COLUMNS} {_FROM} WHERE o.order_id = %s{lock}", (order_id,)
    )
    return await cur.fetchone()


async def get_by_tracking_number(conn: Conn, tracking_number: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {ORDER_COLUMNS} {_FROM} WHERE o.tracking_number = %s", (tracking_number,)
    )
    return await cur.fetchone()


async def orders_of_trips(conn: Conn, trip_ids: list[str]) -> list[dict[str, Any]]:
    """Orders of these trips, locked for the caller's transaction, in stop order."""
    cur = await conn.execute(
        f"SELECT {ORDER_COLUMNS} {_FROM} WHERE o.trip_id = ANY(%s) "
        "ORDER BY o.trip_id, s.seq FOR UPDATE OF o",
        (trip_ids,),
    )
    return list(await cur.fetchall())


async def history(conn: Conn, order_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT status, ts, reason FROM order_status_history WHERE order_id = %s ORDER BY ts, id",
        (order_id,),
    )
    return list(await cur.fetchall())


async def record_history(
    conn: Conn,
    order_id: str,
    status: str,
    ts: datetime,
    reason: str | None,
    event_id: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO order_status_history (order_id, status, ts, reason, event_id) "
        "VALUES (%s, %s, %s, %s, %s)",
        (order_id, status, ts, reason, event_id),
    )


@dataclass
class Changes:
    """Status changes and ETA notices collected while a batch is applied, then written
    with a few pipelined statements (a batch can move a thousand orders at once)."""

    statuses: list[tuple[str, str]] = field(default_factory=list)  # (status, order_id)
    eta_notified: list[str] = field(default_factory=list)
    history: list[tuple[str, str, datetime, str, str | None]] = field(default_factory=list)
    webhooks: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def set_status(
        self,
        order: dict[str, Any],
        status: str,
        ts: datetime,
        reason: str,
        event_id: str | None = None,
    ) -> None:
        """Move ``order`` (a row dict, updated in place) to ``status``: history + webhook."""
        log.debug("order %s: %s -> %s (%s)", order["order_id"], order["status"], status, reason)
        order["status"] = status
        order["notified_eta"] = order["eta"]
        self.statuses.append((status, order["order_id"]))
        self.history.append((order["order_id"], status, ts, reason, event_id))
        self.webhooks.append((order["order_id"], "status", webhook_payload(order, ts)))

    def eta_notice(self, order: dict[str, Any], ts: datetime) -> None:
        order["notified_eta"] = order["eta"]
        self.eta_notified.append(order["order_id"])
        self.webhooks.append((order["order_id"], "eta", webhook_payload(order, ts)))

    async def flush(self, conn: Conn) -> None:
        async with conn.cursor() as cur:
            if self.statuses:
                await cur.executemany(
                    "UPDATE orders SET status = %s, notified_eta = eta, updated_at = now() "
                    "WHERE order_id = %s",
                    self.statuses,
                )
            if self.eta_notified:
                await cur.execute(
                    "UPDATE orders SET notified_eta = eta WHERE order_id = ANY(%s)",
                    (self.eta_notified,),
                )
            if self.history:
                await cur.executemany(
                    "INSERT INTO order_status_history (order_id, status, ts, reason, event_id) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    self.history,
                )
        await outbox.enqueue_many(conn, self.webhooks)


async def set_status(
    conn: Conn,
    order: dict[str, Any],
    status: str,
    ts: datetime,
    reason: str,
    event_id: str | None = None,
) -> None:
    """Move one order to ``status`` now (history + webhook); see :class:`Changes`."""
    changes = Changes()
    changes.set_status(order, status, ts, reason, event_id)
    await changes.flush(conn)


def _advance(
    changes: Changes,
    order: dict[str, Any] | None,
    status: str,
    ts: datetime,
    reason: str,
    event_id: str | None = None,
) -> None:
    """Forward-only move among the active statuses (no-op when already there or past)."""
    if order is None or order["status"] not in ACTIVE or _RANK[status] <= _RANK[order["status"]]:
        return
    changes.set_status(order, status, ts, reason, event_id)


def _close(
    changes: Changes,
    order: dict[str, Any] | None,
    status: str,
    ts: datetime,
    reason: str,
    event_id: str | None = None,
) -> None:
    """Move an active order to a terminal status (no-op for orders already closed)."""
    if order is None or order["status"] not in ACTIVE:
        return
    changes.set_status(order, status, ts, reason, event_id)


async def _apply_snapshots(
    conn: Conn, snaps: list[TripSnapshot], by_trip: dict[str, dict[str, dict[str, Any]]]
) -> None:
    """Keep order ETAs in step with the engine's view, in one statement for the batch.
    (``stops`` and ``trips.status`` are written by the ingest pipeline itself,
    ``store.live.update_trips_and_stops``, in the same transaction.)"""
    stops = [(x.trip_id, st) for x in snaps for st in x.stops]
    changed: list[dict[str, Any]] = []
    for trip_id, st in stops:
        order = by_trip[trip_id].get(st.stop_id)
        if order is None or order["status"] not in ACTIVE:
            continue
        order["stop_status"] = st.status
        eta = (ms_dt(st.eta_ms), ms_dt(st.eta_low_ms), ms_dt(st.eta_high_ms))
        if eta != (order["eta"], order["eta_low"], order["eta_high"]):
            order["eta"], order["eta_low"], order["eta_high"] = eta
            changed.append(order)
    if changed:
        await conn.execute(
            """UPDATE orders o SET eta = v.eta, eta_low = v.eta_low, eta_high = v.eta_high
                 FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[],
                             %s::timestamptz[]) AS v(order_id, eta, eta_low, eta_high)
                WHERE o.order_id = v.order_id""",
            (
                [o["order_id"] for o in changed],
                [o["eta"] for o in changed],
                [o["eta_low"] for o in changed],
                [o["eta_high"] for o in changed],
            ),
        )


def _apply_event(
    changes: Changes,
    e: Event,
    orders: list[dict[str, Any]],
    by_stop: dict[str, dict[str, Any]],
    rules: Settings,
) -> None:
    ts = ms_dt(e.ts_ms)
    assert ts is not None
    order = by_stop.get(str(e.details.get("stop_id", "")))
    if e.type == EventType.TRIP_STARTED:
        for o in orders:
            _advance(changes, o, "out_for_delivery", ts, "trip started", e.event_id)
    elif e.type == EventType.STOP_ARRIVED:
        _advance(changes, order, "out_for_delivery", ts, "trip started", e.event_id)
        _advance(changes, order, "arriving", ts, "vehicle arrived at the stop", e.event_id)
    elif e.type == EventType.STOP_DEPARTED and order is not None:
        if rules.deliver_on_departure:
            _close(changes, order, "delivered", ts, "arrival and departure recorded", e.event_id)
        else:
            _close(changes, order, "failed", ts, "departed without proof of delivery", e.event_id)
    elif e.type == EventType.TRIP_COMPLETED:
        for o in orders:
            _close(changes, o, "failed", ts, "trip completed without delivery", e.event_id)


def _apply_progress(
    changes: Changes, snap: TripSnapshot, by_stop: dict[str, dict[str, Any]], rules: Settings
) -> None:
    """Statuses implied by where the vehicle is: out for delivery, arriving, skipped."""
    ts = ms_dt(snap.ts_ms)
    assert ts is not None
    if snap.status != "active":
        return
    stops_before = 0  # pending stops the vehicle visits before this one
    for st in snap.stops:
        order = by_stop.get(st.stop_id)
        if st.status == "skipped":
            _close(changes, order, "failed", ts, "stop skipped")
            continue
        if st.status != "pending":
            continue
        _advance(changes, order, "out_for_delivery", ts, "trip started")
        near = st.eta_ms is not None and st.eta_ms - snap.ts_ms <= rules.arriving_horizon_s * 1000
        if stops_before <= rules.arriving_stops_before:
            _advance(changes, order, "arriving", ts, f"{stops_before} stops away")
        elif near:
            _advance(changes, order, "arriving", ts, f"ETA within {rules.arriving_horizon_s} s")
        stops_before += 1


def _notify_eta_moves(
    changes: Changes, orders: list[dict[str, Any]], ts: datetime, rules: Settings
) -> None:
    """ETA webhooks for open orders whose ETA moved beyond the threshold since the OMS
    was last told (or that never had one)."""
    for o in orders:
        if o["status"] not in ACTIVE or o["eta"] is None:
            continue
        last = o["notified_eta"]
        if last is None or abs((o["eta"] - last).total_seconds()) > rules.webhook_eta_threshold_s:
            changes.eta_notice(o, ts)


async def apply_events(
    conn: Conn,
    events: list[Event],
    snapshots: list[TripSnapshot],
    *,
    settings: Settings | None = None,
) -> None:
    """Apply one engine batch's events and snapshots to orders (inside the caller's
    transaction; opens one itself when the connection is in autocommit)."""
    trip_ids = sorted({e.trip_id for e in events} | {s.trip_id for s in snapshots})
    if not trip_ids:
        return
    rules = settings or get_settings()
    async with conn.transaction():
        rows = await orders_of_trips(conn, trip_ids)
        by_trip: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in trip_ids}
        for r in rows:
            by_trip[r["trip_id"]][r["stop_id"]] = r
        latest: dict[str, TripSnapshot] = {}
        for s in snapshots:
            if s.trip_id not in latest or s.ts_ms >= latest[s.trip_id].ts_ms:
                latest[s.trip_id] = s
        await _apply_snapshots(conn, list(latest.values()), by_trip)
        changes = Changes()
        for e in sorted(events, key=lambda ev: ev.ts_ms):
            stops = by_trip[e.trip_id]
            _apply_event(changes, e, list(stops.values()), stops, rules)
        for snap in latest.values():
            _apply_progress(changes, snap, by_trip[snap.trip_id], rules)
        now_ts = max([e.ts_ms for e in events] + [s.ts_ms for s in snapshots])
        _notify_eta_moves(changes, rows, ms_dt(now_ts) or datetime.now(UTC), rules)
        await changes.flush(conn)
