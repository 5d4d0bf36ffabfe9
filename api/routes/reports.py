"""Reports: delivery performance (CONTRACT §7; definitions in ``store.reports``) and the
driver scorecard (definitions in ``store.scorecard``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.auth import require_role
from api.deps import ConnDep
from api.errors import unprocessable
from compliance.text import Line
from store import drivers, reports, scorecard

router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    dependencies=[Depends(require_role("supervisor", "oms"))],
)

_MAX_RANGE_DAYS = 366

From = Annotated[datetime, Query(alias="from", description="range start, RFC 3339")]
To = Annotated[datetime, Query(description="range end (exclusive), RFC 3339")]


def _check_range(from_: datetime, to: datetime) -> None:
    if from_.tzinfo is None or to.tzinfo is None:
        raise unprocessable(
            ["query", "from" if from_.tzinfo is None else "to"], "needs a UTC offset"
        )
    if to <= from_:
        raise unprocessable(["query", "to"], "to must be after from")
    if (to - from_).days > _MAX_RANGE_DAYS:
        raise unprocessable(["query", "to"], f"range is limited to {_MAX_RANGE_DAYS} days")


@router.get("/delivery-performance")
async def delivery_performance(
    conn: ConnDep, from_: From, to: To, vehicle_id: Line | None = None
) -> dict[str, Any]:
    """Orders delivered, on-time rate, average delay and lead time (s), route adherence,
    speeding per 100 km, unplanned-stop minutes, POD coverage and perfect-delivery rate
    over ``[from, to)``. Rates are percentages, null when there is nothing to divide by."""
    _check_range(from_, to)
    return await reports.delivery_performance(conn, from_, to, vehicle_id)


@router.get(
    "/driver-scorecard", responses={404: {"description": "driver_id names no registered driver"}}
)
async def driver_scorecard(
    conn: ConnDep,
    from_: From,
    to: To,
    driver_id: Annotated[Line | None, Query(description="only this driver (not ranked)")] = None,
) -> dict[str, Any]:
    """Per driver over ``[from, to)``: trips, stops served, orders delivered, on-time and
    perfect-delivery rates, driven km, speeding episodes and minutes (also per 100 km),
    off-route minutes, unplanned stops, a penalty per 100 km, a score and the rank (best
    first). Rates are percentages, null when there is nothing to divide by; drivers
    without driven distance have no penalty, score or rank."""
    _check_range(from_, to)
    if driver_id is not None and await drivers.get_driver(conn, driver_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown driver {driver_id!r}")
    return await scorecard.driver_scorecard(conn, from_, to, driver_id)
