"""``/v1/orders``: order status for the OMS, proof of delivery from drivers."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status

from api.auth import require_role
from api.deps import ConnDep, SettingsDep
from api.links import link
from api.schemas import OrderPublic, PodCreate, PodImageIn, PodPublic, PodSummary
from compliance.plan import parse_time_ms
from compliance.text import Line
from store import orders, pod
from store.tokens import Principal

router = APIRouter(prefix="/v1/orders", tags=["orders"])

_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


def _not_found(order_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"unknown order {order_id!r}")


@router.get(
    "/{order_id}",
    response_model=OrderPublic,
    dependencies=[Depends(require_role("oms"))],
    summary="Status, ETA, window, history and proof of delivery of an order",
    responses={
        200: {
            "links": {
                "GetTrip": link(
                    "GET", "/v1/trips/{trip_id}", "its trip", trip_id="$response.body#/trip_id"
                ),
                "Track": link(
                    "GET",
                    "/v1/track/{tracking_number}",
                    "the customer's view of it",
                    tracking_number="$response.body#/tracking_number",
                ),
            }
        }
    },
)
async def get_order(conn: ConnDep, order_id: Line) -> dict[str, Any]:
    order = await orders.get_order(conn, order_id)
    if order is None:
        raise _not_found(order_id)
    return {
        **order,
        "eta_window": {"start": order["eta_low"], "end": order["eta_high"]},
        "window": {"start": order["window_start"], "end": order["window_end"]},
        "history": await orders.history(conn, order_id),
        "pod": await pod.get_pod(conn, order_id, with_images=False),
    }


def _decode_image(img: PodImageIn, kind: str, loc: list[Any], max_bytes: int) -> pod.Image:
    try:
        data = base64.b64decode(img.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(
            422, [{"loc": loc, "msg": "not valid base64", "type": "value_error"}]
        ) from exc
    if len(data) > max_bytes:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{kind} image is {len(data)} bytes; the limit is {max_bytes}",
        )
    if not data.startswith(_MAGIC[img.media_type]):
        raise HTTPException(
            422,
            [{"loc": loc, "type": "value_error", "msg": f"data is not a {img.media_type} image"}],
        )
    return pod.Image(kind, img.media_type, data)


@router.post(
    "/{order_id}/pod",
    status_code=status.HTTP_201_CREATED,
    response_model=PodSummary,
    summary="Submit electronic proof of delivery",
    responses={
        403: {
            "description": "the token lacks the driver role, or is bound to a driver who is "
            "deactivated or not the driver of the order's trip"
        },
        409: {"description": "order cancelled or already has a POD"},
        413: {"description": "an image or the request is too large"},
    },
)
async def submit_pod(
    conn: ConnDep,
    settings: SettingsDep,
    order_id: Line,
    body: PodCreate,
    driver: Annotated[Principal, Depends(require_role("driver"))],
) -> dict[str, Any]:
    """Recipient name, signature (base64 PNG/JPEG), up to ``pod_max_photos`` photos,
    notes, condition, device time and position. Verified against the stop: farther than
    its radius, or without a recorded arrival, the order is still delivered but flagged
    for review. A token bound to a driver (``routewatch token create --driver``) may
    deliver only orders on that driver's trips, and not once the driver is deactivated."""
    if driver.driver_id is not None and not driver.driver_active:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this token is bound to driver {driver.driver_id}, who is deactivated",
        )
    if len(body.photos) > settings.pod_max_photos:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"at most {settings.pod_max_photos} photos"
        )
    images = [
        _decode_image(
            body.signature, "signature", ["body", "signature"], settings.pod_max_image_bytes
        )
    ]
    images += [
        _decode_image(p, "photo", ["body", "photos", i], settings.pod_max_image_bytes)
        for i, p in enumerate(body.photos)
    ]
    device_ts = None
    if body.device_ts is not None:
        try:
            device_ts = datetime.fromtimestamp(parse_time_ms(body.device_ts) / 1000, tz=UTC)
        except ValueError as exc:
            raise HTTPException(
                422, [{"loc": ["body", "device_ts"], "msg": str(exc), "type": "value_error"}]
            ) from exc
    data = pod.PodIn(
        body.recipient_name, body.condition, body.notes, device_ts, body.lat, body.lon, images
    )
    try:
        stored = await pod.submit(conn, order_id, data, driver.token_id, driver.driver_id)
    except pod.PodRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except pod.PodForbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    if stored is None:
        raise _not_found(order_id)
    return stored


@router.get(
    "/{order_id}/pod",
    response_model=PodPublic,
    dependencies=[Depends(require_role("oms"))],
    summary="Proof of delivery with its images (base64) and checksums",
)
async def get_pod(conn: ConnDep, order_id: Line) -> dict[str, Any]:
    stored = await pod.get_pod(conn, order_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no proof of delivery for {order_id!r}")
    stored["images"] = [
        {**i, "data": base64.b64encode(i["data"]).decode()} for i in stored["images"]
    ]
    return stored
