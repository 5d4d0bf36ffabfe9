"""``/v1/drivers``: the driver registry (create, list, read, rename, deactivate).

Dispatch names a trip's driver in the plan (``driver_id``, registered on first use); the
OMS and the control room manage the registry here. Deactivating is a soft delete: the
driver's trips and scorecards stay, new plans may not name them (409) and tokens bound
to them may not submit proofs of delivery (403).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from api.auth import require_role
from api.deps import ConnDep
from api.links import link
from api.schemas import Time
from compliance.text import Line
from store import drivers

router = APIRouter(
    prefix="/v1/drivers",
    tags=["drivers"],
    dependencies=[Depends(require_role("oms", "supervisor"))],
)

DRIVER_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
DRIVER = "$response.body#/driver_id"


class DriverCreate(BaseModel):
    driver_id: str = Field(
        pattern=DRIVER_ID_PATTERN, description="1-64 characters of [A-Za-z0-9._-]"
    )
    name: Line | None = Field(None, min_length=1, max_length=200, description="display name")


class DriverUpdate(BaseModel):
    name: Line | None = Field(None, min_length=1, max_length=200, description="null clears it")
    active: bool | None = Field(None, description="false deactivates, true reactivates")


class DriverPublic(BaseModel):
    driver_id: str
    name: str | None
    active: bool
    created_at: Time
    updated_at: Time


def _not_found(driver_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"unknown driver {driver_id!r}")


_LINKS = {
    "GetDriver": link("GET", "/v1/drivers/{driver_id}", "the driver", driver_id=DRIVER),
    "UpdateDriver": link("PATCH", "/v1/drivers/{driver_id}", "rename it", driver_id=DRIVER),
    "DeactivateDriver": link(
        "DELETE", "/v1/drivers/{driver_id}", "deactivate it", driver_id=DRIVER
    ),
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DriverPublic,
    summary="Register a driver",
    responses={201: {"links": _LINKS}, 409: {"description": "the driver_id is taken"}},
)
async def create_driver(conn: ConnDep, body: DriverCreate) -> dict[str, Any]:
    try:
        return await drivers.create_driver(conn, body.driver_id, body.name)
    except drivers.DriverConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get("", response_model=list[DriverPublic], summary="List drivers")
async def list_drivers(
    conn: ConnDep,
    active: Annotated[bool | None, Query(description="only active (true) or inactive")] = None,
) -> list[dict[str, Any]]:
    return await drivers.list_drivers(conn, active)


@router.get(
    "/{driver_id}",
    response_model=DriverPublic,
    summary="One driver",
    responses={200: {"links": _LINKS}},
)
async def get_driver(conn: ConnDep, driver_id: Line) -> dict[str, Any]:
    row = await drivers.get_driver(conn, driver_id)
    if row is None:
        raise _not_found(driver_id)
    return row


@router.patch(
    "/{driver_id}", response_model=DriverPublic, summary="Rename, deactivate or reactivate"
)
async def update_driver(conn: ConnDep, driver_id: Line, body: DriverUpdate) -> dict[str, Any]:
    """Only the fields present change; ``{"active": false}`` is the same as ``DELETE``."""
    changes = body.model_dump(include=body.model_fields_set)
    if changes.get("active", False) is None:
        raise HTTPException(
            422,
            [{"loc": ["body", "active"], "msg": "must be true or false", "type": "value_error"}],
        )
    row = await drivers.update_driver(conn, driver_id, changes)
    if row is None:
        raise _not_found(driver_id)
    return row


@router.delete("/{driver_id}", response_model=DriverPublic, summary="Deactivate a driver")
async def deactivate_driver(conn: ConnDep, driver_id: Line) -> dict[str, Any]:
    """Soft delete: the row, trips and scorecard stay; new plans naming the driver get
    409, and tokens bound to the driver may no longer submit proofs of delivery."""
    row = await drivers.update_driver(conn, driver_id, {"active": False})
    if row is None:
        raise _not_found(driver_id)
    return row
