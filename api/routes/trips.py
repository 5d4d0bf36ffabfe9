"""``/v1/trips``: the OMS dispatches, replaces and cancels trip plans (CONTRACT §3)."""

from __future__ import annotations

import copy
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, status
from psycopg.errors import UniqueViolation
from pydantic import ValidationError

from api.auth import require_role
from api.deps import ConnDep
from api.links import link
from api.schemas import TripCreated, TripPublic
from compliance.plan import TripPlan
from compliance.route import prepare, validate_geometry
from compliance.text import Line, json_problems, storable
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


TRIP = "$response.body#/trip_id"
ORDER = "$response.body#/orders/0/order_id"


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    """One entry per problem; the plan-wide checks arrive joined by '; ' in one error."""
    out = []
    for err in exc.errors():
        msg = storable(str(err.get("msg", ""))).removeprefix("Value error, ")
        loc = ["body", *(storable(p) if isinstance(p, str) else p for p in err.get("loc", ()))]
        for part in msg.split("; "):
            out.append({"loc": loc, "msg": part, "type": err["type"]})
    return out


def _without(body: Any, locs: list[tuple[Any, ...]]) -> Any:
    """A copy of ``body`` with the object keys at ``locs`` removed (their defaults then
    apply), so the checks that pydantic skipped after a field error can still run."""
    trimmed = copy.deepcopy(body)
    for loc in locs:
        parent = trimmed
        for part in loc[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if loc and isinstance(parent, dict) and isinstance(loc[-1], str):
            parent.pop(loc[-1], None)
    return trimmed


def _geometry(plan: TripPlan) -> tuple[Any, list[dict[str, Any]]]:
    try:
        route = prepare(plan)
    except ValueError as exc:  # e.g. a route the projection cannot handle
        return None, [{"loc": ["body", "route"], "msg": str(exc), "type": "geometry"}]
    problems = validate_geometry(plan, route)
    return route, [{"loc": ["body"], "msg": p, "type": "geometry"} for p in problems]


class _FieldsOnlyPlan(TripPlan):
    """The plan with field checks only (the plan-wide validator switched off), so the
    geometry can still be checked, and reported, when a plan-wide rule fails."""

    # The parent attribute is a pydantic decorator proxy, hence the ignore.
    def _whole_plan(self) -> TripPlan:  # type: ignore[override]
        return self


def validate_plan(body: dict[str, Any]) -> tuple[TripPlan, float, list[float]]:
    """Parse and validate a whole plan; raise one 422 naming every problem found.

    Field errors stop pydantic before the plan-wide checks, and those stop the geometry;
    so after a failure the plan is checked again without the offending fields, and with
    field checks only, and whatever *else* that finds is added to the same answer.

    The plan is stored as it came, so first of all everything in it must be storable
    (no NUL or unpaired surrogate in any string, no NaN, ...): those problems alone are
    answered when there are any."""
    if unstorable := json_problems(body, ("body",)):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": list(loc), "msg": msg, "type": "value_error"} for loc, msg in unstorable],
        )
    try:
        plan = TripPlan.model_validate(body)
    except ValidationError as exc:
        problems = _problems(exc)
        seen = {(tuple(p["loc"]), p["msg"]) for p in problems}
        trimmed = _without(body, [e["loc"] for e in exc.errors()])
        for model in (TripPlan, _FieldsOnlyPlan):
            try:
                partial = model.model_validate(trimmed)
            except ValidationError as again:
                problems += [
                    p
                    for p in _problems(again)
                    if p["type"] != "missing" and (tuple(p["loc"]), p["msg"]) not in seen
                ]
                seen |= {(tuple(p["loc"]), p["msg"]) for p in problems}
                continue
            try:
                usable = len(set(partial.coordinates)) >= 2
            except ValueError:  # a bad route: already among the problems
                usable = False
            if usable:
                problems += _geometry(partial)[1]
            break
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems) from exc
    route, problems = _geometry(plan)
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
    return plan, float(route.length_m), [float(m) for m in route.stop_route_m]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TripCreated,
    dependencies=[OmsOnly],
    summary="Create (or replace) a trip plan",
    responses={
        201: {
            "links": {
                "GetTrip": link("GET", "/v1/trips/{trip_id}", "the trip", trip_id=TRIP),
                "CancelTrip": link("POST", "/v1/trips/{trip_id}/cancel", "cancel it", trip_id=TRIP),
                "GetOrder": link("GET", "/v1/orders/{order_id}", "its first order", order_id=ORDER),
                "SubmitPod": link(
                    "POST", "/v1/orders/{order_id}/pod", "deliver it", order_id=ORDER
                ),
                "GetPod": link(
                    "GET", "/v1/orders/{order_id}/pod", "its proof of delivery", order_id=ORDER
                ),
                "Track": link(
                    "GET",
                    "/v1/track/{tracking_number}",
                    "the customer's view of it",
                    tracking_number="$response.body#/orders/0/tracking_number",
                ),
                "VehicleTrack": link(
                    "GET",
                    "/v1/vehicles/{vehicle_id}/track",
                    "the vehicle's track",
                    vehicle_id="$response.body#/vehicle_id",
                ),
            }
        },
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
        return await trips.save_plan(conn, plan, length_m, stop_route_m, body)
    except trips.PlanConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.problems) from exc
    except UniqueViolation as exc:
        # Two plans raced for the same new trip_id or order_id; the other one won.
        raise HTTPException(
            status.HTTP_409_CONFLICT, ["a concurrent request created the same trip or order"]
        ) from exc


@router.get(
    "/{trip_id}",
    response_model=TripPublic,
    dependencies=[Depends(require_role("oms", "supervisor"))],
    summary="Plan and live state of a trip",
)
async def get_trip(conn: ConnDep, trip_id: Line) -> dict[str, Any]:
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


async def _cancel(conn: ConnDep, trip_id: Line) -> dict[str, Any]:
    try:
        done = await trips.cancel_trip(conn, trip_id, "trip cancelled")
    except trips.PlanConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.problems) from exc
    if done is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown trip {trip_id!r}")
    return done


@router.post("/{trip_id}/cancel", dependencies=[OmsOnly], summary="Cancel a trip")
async def cancel_trip(conn: ConnDep, trip_id: Line) -> dict[str, Any]:
    """Cancels the trip and every order on it that is not yet delivered or failed."""
    return await _cancel(conn, trip_id)


@router.delete("/{trip_id}", dependencies=[OmsOnly], summary="Cancel a trip (same as /cancel)")
async def delete_trip(conn: ConnDep, trip_id: Line) -> dict[str, Any]:
    return await _cancel(conn, trip_id)
