"""Delivery-performance report (CONTRACT §7); definitions in ``store.reports``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.auth import require_role
from api.deps import ConnDep
from api.errors import unprocessable
from compliance.text import Line
from store import reports

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_MAX_RANGE_DAYS = 366


@router.get("/delivery-performance")
async def delivery_performance(
    conn: ConnDep,
    _: Annotated[Any, Depends(require_role("supervisor", "oms"))],
    from_: Annotated[datetime, Query(alias="from", description="range start, RFC 3339")],
    to: Annotated[datetime, Query(description="range end (exclusive), RFC 3339")],
    vehicle_id: Line | None = None,
) -> dict[str, Any]:
    """Orders delivered, on-time rate, average delay and lead time (s), route adherence,
    speeding per 100 km, unplanned-stop minutes, POD coverage and perfect-delivery rate
    over ``[from, to)``. Rates are percentages, null when there is nothing to divide by."""
    if from_.tzinfo is None or to.tzinfo is None:
        raise unprocessable(
            ["query", "from" if from_.tzinfo is None else "to"], "needs a UTC offset"
        )
    if to <= from_:
        raise unprocessable(["query", "to"], "to must be after from")
    if (to - from_).days > _MAX_RANGE_DAYS:
        raise unprocessable(["query", "to"], f"range is limited to {_MAX_RANGE_DAYS} days")
    return await reports.delivery_performance(conn, from_, to, vehicle_id)
