"""Electronic proof of delivery: verify against the stop, store durably, close the order.

A POD is *flagged for review* (still delivered) when it was taken farther from the stop
than its radius, when no arrival at the stop was recorded, or when it came after the
order had already failed (e.g. departed before the driver's app synced).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from store import orders as order_store

Conn = AsyncConnection[dict[str, Any]]

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Image:
    kind: str  # signature / photo
    media_type: str  # image/png / image/jpeg
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class PodIn:
    recipient_name: str
    condition: str
    notes: str | None
    device_ts: datetime | None
    lat: float | None
    lon: float | None
    images: list[Image]  # the signature first


class PodRefused(Exception):
    """The order cannot take a POD (cancelled, or it already has one): HTTP 409."""


class PodForbidden(Exception):
    """The token is bound to a driver and the order is not on that driver's trip: 403."""


def verify(order: dict[str, Any], pod: PodIn) -> tuple[float | None, list[str]]:
    """(distance from the stop in m, reasons to flag) for ``pod`` against ``order``'s stop."""
    reasons = []
    distance_m = None
    if pod.lat is None or pod.lon is None:
        reasons.append("no device position")
    elif order["lat"] is not None:
        distance_m = haversine_m(pod.lon, pod.lat, order["lon"], order["lat"])
        if distance_m > order["radius_m"]:
            reasons.append(
                f"taken {distance_m:.0f} m from the stop (radius {order['radius_m']:.0f} m)"
            )
    if order["arrived_at"] is None:
        reasons.append("no arrival at the stop was recorded")
    if order["status"] == "failed":
        reasons.append("submitted after the order had failed")
    return distance_m, reasons


async def submit(
    conn: Conn,
    order_id: str,
    pod: PodIn,
    token_id: int | None,
    driver_id: str | None = None,
) -> dict[str, Any] | None:
    """Store the POD and mark the order delivered; None when there is no such order.

    ``driver_id``: the driver the submitting token is bound to; the order's trip must be
    that driver's (:class:`PodForbidden` otherwise). None: any order (an unbound token)."""
    now = datetime.now(UTC)
    async with conn.transaction():
        order = await order_store.get_order(conn, order_id, for_update=True)
        if order is None:
            return None
        if driver_id is not None and order["driver_id"] != driver_id:
            whose = f"driver {order['driver_id']}" if order["driver_id"] else "no driver"
            raise PodForbidden(
                f"this token is bound to driver {driver_id}; order {order_id} is on trip "
                f"{order['trip_id']} of {whose}"
            )
        if order["status"] == "cancelled":
            raise PodRefused(f"order {order_id} is cancelled")
        cur = await conn.execute("SELECT 1 FROM pod WHERE order_id = %s", (order_id,))
        if await cur.fetchone() is not None:
            raise PodRefused(f"order {order_id} already has a proof of delivery")
        distance_m, reasons = verify(order, pod)
        await conn.execute(
            """INSERT INTO pod (order_id, recipient_name, condition, notes, device_ts, lat, lon,
                   distance_m, flagged, flag_reasons, submitted_by, received_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                order_id,
                pod.recipient_name,
                pod.condition,
                pod.notes,
                pod.device_ts,
                pod.lat,
                pod.lon,
                distance_m,
                bool(reasons),
                reasons,
                token_id,
                now,
            ),
        )
        for seq, img in enumerate(pod.images):
            await conn.execute(
                "INSERT INTO pod_images (order_id, seq, kind, media_type, data, sha256) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (order_id, seq, img.kind, img.media_type, img.data, img.sha256),
            )
        if order["status"] != "delivered":
            reason = "proof of delivery" + (" (flagged for review)" if reasons else "")
            if pod.condition == "damaged":
                reason += "; goods reported damaged"
            # A late POD on a failed order turns it delivered (flagged by verify()).
            await order_store.set_status(conn, order, "delivered", now, reason)
    return await get_pod(conn, order_id, with_images=False)


async def get_pod(conn: Conn, order_id: str, *, with_images: bool = True) -> dict[str, Any] | None:
    cur = await conn.execute("SELECT * FROM pod WHERE order_id = %s", (order_id,))
    pod = await cur.fetchone()
    if pod is None:
        return None
    data = ", data" if with_images else ""
    cur = await conn.execute(
        f"SELECT kind, media_type, sha256, octet_length(data) AS size_bytes{data} "
        "FROM pod_images WHERE order_id = %s ORDER BY seq",
        (order_id,),
    )
    pod["images"] = list(await cur.fetchall())
    pod["photos"] = sum(1 for i in pod["images"] if i["kind"] == "photo")
    return pod
