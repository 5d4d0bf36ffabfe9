"""``/v1/trips``: the OMS dispatches, replaces and cancels trip plans (CONTRACT §3)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, status
from pydantic import ValidationError

from api.auth import require_role
from api.deps import ConnDep
from api.schemas import TripCreated, TripPublic
from compliance.plan import TripPlan
from compliance.route import prepare, validate_geometry
from store import trips

router = APIRouter(prefix="/v1/trips", tags=["trips"])

OmsOnly = Depends(require_role("oms"))

EXAMPLE_PLAN = {
    "trip_id": "T-20261122-0007",
    "vehicle_id": "B-9123-XYZ",
    "planned_start": "2026-11-22T08:00:00+07:00",
    "route": {"type": "LineString", "coordinates": [[106.8456, -6.2088], [106.85, -6.21]]},
    "corridor_m": 50,
    "speed_limit_kmh": 60,
    "stops": [
        {
            "stop_id": "S1",
            "order_id": "ORD-55501",
            "location": [106.8479, -6.2095],
            "radius_m": 75,
            "planned_arrival": "2026-11-22T08:25:00+07:00",
            "window": {"start": "2026-11-22T08:15:00+07:00", "end": "2026-11-22T08:45:00+07:00"},
            "service_s": 300,
        },
    ],
}


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    """One entry per problem; the plan-wide checks arrive joined by '; ' in one error."""
    out = []
    for err in exc.errors():
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        for part in msg.split("; "):
            out.append({"loc": ["body", *err.get("loc", ())], "msg": part, "type": err["type"]})
    return out


def validate_plan(body: dict[str, Any]) -> tuple[TripPlan, float, list[float]]:
    """Parse and validate a whole plan; raise one 422 naming every problem found."""
    try:
        plan = TripPlan.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _problems(exc)) from exc
    try:
        route = prepare(plan)
    except ValueError as exc:  # e.g. a route the projection cannot handle
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", "route"], "msg": str(exc), "type": "geometry"}],
        ) from exc
    geometry = validate_geometry(plan, route)
    if geometry:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body"], "msg": p, "type": "geometry"} for p in geometry],
        )
    return plan, float(route.length_m), [float(m) for m in route.stop_route_m]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TripCreated,
    dependencies=[OmsOnly],
    summary="Create (or replace) a trip plan",
    responses={
        409: {"description": "trip ended, or an order is live on another trip"},
        422: {"description": "the plan's problems, every one of them"},
    },
)
async def create_trip(
    conn: ConnDep,
    body: Annotated[
        dict[str, Any],
        Body(
            openapi_examples={"plan": {"value": EXAMPLE_PLAN}},
            description="a CONTRACT §3 trip plan",
        ),
    ],
) -> dict[str, Any]:
    """Validates the whole plan, then stores trip, stops and one order per stop with an
    ``order_id`` (each with a new tracking number) in one transaction and tells the
    engine. An existing ``trip_id`` of a planned or active trip is *replaced in place*
    (see ``store.trips``); the answer's ``replaced`` says which happened."""
    plan, length_m, stop_route_m = validate_plan(body)
    try:
        return await trips.save_plan(conn, plan, length_m, stop_route_m)
    except trips.PlanConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.problems) from exc


@router.get(
    "/{trip_id}",
    response_model=TripPublic,
    dependencies=[Depends(require_role("oms", "supervisor"))],
    summary="Plan and live state of a trip",
)
async def get_trip(conn: ConnDep, trip_id: str) -> dict[str, Any]:
    trip = await trips.get_trip(conn, trip_id)
    if trip is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown trip {trip_id!r}")
    length_m = trip["route_length_m"]
    progress_m = trip["route_m"]
    return {
        **trip,
        "progress_m": progress_m,
        "progress_pct": None
        if progress_m is None or length_m <= 0
        else round(min(100.0, max(0.0, 100.0 * progress_m / length_m)), 1),
        "position": None if trip["lon"] is None else (trip["lon"], trip["lat"]),
        "stops": [
            {
                **s,
                "location": (s["lon"], s["lat"]),
                "window": {"start": s["window_start"], "end": s["window_end"]},
                "eta_window": {"start": s["eta_low"], "end": s["eta_high"]},
            }
            for s in trip["stops"]
        ],
    }


async def _cancel(conn: ConnDep, trip_id: str) -> dict[str, Any]:
    try:
        done = await trips.cancel_trip(conn, trip_id, "trip cancelled")
    except trips.PlanConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.problems) from exc
    if done is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown trip {trip_id!r}")
    return done


@router.post("/{trip_id}/cancel", dependencies=[OmsOnly], summary="Cancel a trip")
async def cancel_trip(conn: ConnDep, trip_id: str) -> dict[str, Any]:
    """Cancels the trip and every order on it that is not yet delivered or failed."""
    return await _cancel(conn, trip_id)


@router.delete("/{trip_id}", dependencies=[OmsOnly], summary="Cancel a trip (same as /cancel)")
async def delete_trip(conn: ConnDep, trip_id: str) -> dict[str, Any]:
    return await _cancel(conn, trip_id)
