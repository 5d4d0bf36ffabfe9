"""Customer tracking (CONTRACT §6): ``GET /v1/track/{tracking_number}`` and the page.

Public, so it shows only what the customer should see, answers unknown and malformed
numbers with the same 404, and is rate limited per client address. (Anything that is not
a tracking number — control characters, NUL included — is refused by ``normalize``
before any database lookup: the same 404.)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

from api.deps import ConnDep, SettingsDep
from api.main import STATIC_DIR
from api.ratelimit import TokenBuckets
from api.schemas import TrackPublic
from store import orders, pod
from store.tracking import normalize

router = APIRouter(tags=["tracking"])

NOT_FOUND = "no shipment with this tracking number"


def _limit(request: Request, settings: SettingsDep) -> None:
    buckets: TokenBuckets | None = getattr(request.app.state, "track_buckets", None)
    if buckets is None:
        buckets = TokenBuckets(settings.track_rate_per_s, settings.track_burst)
        request.app.state.track_buckets = buckets
    client = request.client.host if request.client else "unknown"
    wait_s = buckets.take(client)
    if wait_s > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many lookups; slow down",
            {"Retry-After": TokenBuckets.retry_after(wait_s)},
        )


async def _stops_before(conn: orders.Conn, order: dict[str, Any]) -> int | None:
    """Deliveries the vehicle still has to make before this one (None when not en route)."""
    if order["status"] not in ("out_for_delivery", "arriving") or order["seq"] is None:
        return None
    cur = await conn.execute(
        "SELECT count(*) AS n FROM stops WHERE trip_id = %s AND seq < %s AND status = 'pending'",
        (order["trip_id"], order["seq"]),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else None


@router.get(
    "/v1/track/{tracking_number}",
    response_model=TrackPublic,
    responses={
        404: {"description": "unknown or malformed number (same answer)"},
        429: {"description": "rate limited; see Retry-After"},
    },
    summary="Customer view of a shipment (public)",
)
async def track(
    request: Request, conn: ConnDep, settings: SettingsDep, tracking_number: str
) -> dict[str, Any]:
    _limit(request, settings)
    canonical = normalize(tracking_number)
    order = await orders.get_by_tracking_number(conn, canonical) if canonical else None
    if order is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    cur = await conn.execute("SELECT ts FROM vehicle_state WHERE trip_id = %s", (order["trip_id"],))
    position = await cur.fetchone()
    last_update = max(order["updated_at"], position["ts"]) if position else order["updated_at"]
    proof = await pod.get_pod(conn, order["order_id"], with_images=False)
    return {
        "tracking_number": order["tracking_number"],
        "status": order["status"],
        "eta": order["eta"] if order["status"] in orders.ACTIVE else None,
        "eta_window": {"start": order["eta_low"], "end": order["eta_high"]}
        if order["status"] in orders.ACTIVE
        else {},
        "planned_window": {"start": order["window_start"], "end": order["window_end"]},
        "stops_before": await _stops_before(conn, order),
        "last_update": last_update,
        "timeline": [
            {"status": h["status"], "ts": h["ts"]}
            for h in await orders.history(conn, order["order_id"])
        ],
        "pod": None
        if proof is None or order["status"] != "delivered"
        else {
            "delivered_at": proof["received_at"],
            "recipient_name": proof["recipient_name"],
            "condition": proof["condition"],
        },
    }


@router.get("/track", include_in_schema=False)
@router.get("/track/{tracking_number}", include_in_schema=False)
async def tracking_page() -> FileResponse:
    """The customer tracking page; its script reads the number from the path or ``?n=``."""
    return FileResponse(STATIC_DIR / "track" / "index.html", media_type="text/html")
