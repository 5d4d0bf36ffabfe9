"""Proof of delivery: near vs far, stored images and checksums, limits."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import psycopg
import pytest
from httpx import AsyncClient

from tests.api.conftest import Tokens
from tests.api.factories import LAT, make_plan

pytestmark = pytest.mark.asyncio(loop_scope="session")

PNG = b"\x89PNG\r\n\x1a\n" + b"signature-pixels" * 10
JPEG = b"\xff\xd8\xff\xe0" + b"photo-pixels" * 50


def _img(data: bytes, media_type: str = "image/png") -> dict[str, str]:
    return {"media_type": media_type, "data": base64.b64encode(data).decode()}


def _pod(lon: float, lat: float, **extra: Any) -> dict[str, Any]:
    return {
        "recipient_name": "Siti Rahma",
        "signature": _img(PNG),
        "photos": [_img(JPEG, "image/jpeg")],
        "condition": "ok",
        "notes": "left at door",
        "device_ts": "2026-11-22T08:12:00Z",
        "lon": lon,
        "lat": lat,
        **extra,
    }


async def test_pod_near_is_clean_far_is_flagged(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    r = await client.post("/v1/trips", json=make_plan(2, tag="pod"), headers=tok.header("oms"))
    trip = r.json()
    s1 = make_plan(2, tag="pod")["stops"][0]["location"]
    db.execute(
        "UPDATE stops SET status = 'arrived', arrived_at = now() "
        "WHERE trip_id = %s AND stop_id = 'S1'",
        (trip["trip_id"],),
    )
    o1, o2 = (o["order_id"] for o in trip["orders"])

    r = await client.post(
        f"/v1/orders/{o1}/pod", json=_pod(s1[0] + 0.0002, s1[1]), headers=tok.header("driver")
    )
    assert r.status_code == 201, r.text
    near = r.json()
    assert near["flagged"] is False and near["flag_reasons"] == []
    assert near["distance_m"] == pytest.approx(22, abs=3) and near["photos"] == 1

    # S2 has no recorded arrival, and the POD is taken ~1.1 km south of the stop.
    r = await client.post(
        f"/v1/orders/{o2}/pod", json=_pod(106.81, LAT - 0.01), headers=tok.header("driver")
    )
    assert r.status_code == 201, r.text
    far = r.json()
    assert far["flagged"] is True and far["distance_m"] > 1000
    assert any("from the stop" in x for x in far["flag_reasons"])
    assert any("no arrival" in x for x in far["flag_reasons"])

    r = await client.get(f"/v1/orders/{o2}", headers=tok.header("oms"))
    order = r.json()
    assert order["status"] == "delivered" and order["pod"]["flagged"] is True
    assert order["history"][-1]["reason"] == "proof of delivery (flagged for review)"
    assert order["window"]["end"] is not None

    r = await client.get(f"/v1/orders/{o1}/pod", headers=tok.header("oms"))
    assert r.status_code == 200
    images = r.json()["images"]
    assert [i["kind"] for i in images] == ["signature", "photo"]
    assert base64.b64decode(images[0]["data"]) == PNG
    assert images[1]["sha256"] == hashlib.sha256(JPEG).hexdigest()
    stored = db.execute(
        "SELECT sha256, data FROM pod_images WHERE order_id = %s AND seq = 0", (o1,)
    ).fetchone()
    assert stored is not None and hashlib.sha256(stored[1]).hexdigest() == stored[0]
    outbox = db.execute("SELECT body FROM webhook_outbox WHERE order_id = %s", (o1,)).fetchall()
    assert any('"status":"delivered"' in b[0] for b in outbox)

    # A second POD for the same order is refused.
    r = await client.post(f"/v1/orders/{o1}/pod", json=_pod(*s1), headers=tok.header("driver"))
    assert r.status_code == 409


async def test_pod_limits_and_validation(client: AsyncClient, tok: Tokens, settings: Any) -> None:
    r = await client.post("/v1/trips", json=make_plan(1, tag="podlim"), headers=tok.header("oms"))
    oid = r.json()["orders"][0]["order_id"]
    loc = make_plan(1)["stops"][0]["location"]
    big = _pod(*loc, signature=_img(b"\x89PNG\r\n\x1a\n" + b"x" * settings.pod_max_image_bytes))
    r = await client.post(f"/v1/orders/{oid}/pod", json=big, headers=tok.header("driver"))
    assert r.status_code == 413
    r = await client.post(
        f"/v1/orders/{oid}/pod",
        json=_pod(*loc, photos=[_img(JPEG, "image/jpeg")] * 6),
        headers=tok.header("driver"),
    )
    assert r.status_code == 413
    r = await client.post(
        f"/v1/orders/{oid}/pod",
        json=_pod(*loc, signature=_img(b"GIF89a...")),
        headers=tok.header("driver"),
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "signature"]
    r = await client.post(
        f"/v1/orders/{oid}/pod",
        json=_pod(*loc, condition="lost", recipient_name=""),
        headers=tok.header("driver"),
    )
    assert r.status_code == 422 and len(r.json()["detail"]) == 2
    assert "input" not in r.json()["detail"][0]  # no echo of the (possibly huge) body
    huge = b'{"recipient_name": "' + b"x" * (settings.api_max_body_bytes + 10) + b'"}'
    r = await client.post(
        f"/v1/orders/{oid}/pod",
        content=huge,
        headers={**tok.header("driver"), "content-type": "application/json"},
    )
    assert r.status_code == 413
    r = await client.post("/v1/orders/NOPE/pod", json=_pod(*loc), headers=tok.header("driver"))
    assert r.status_code == 404
    r = await client.get(f"/v1/orders/{oid}/pod", headers=tok.header("oms"))
    assert r.status_code == 404


async def test_late_pod_turns_a_failed_order_delivered_but_flagged(
    client: AsyncClient, tok: Tokens, db: psycopg.Connection
) -> None:
    r = await client.post("/v1/trips", json=make_plan(1, tag="late"), headers=tok.header("oms"))
    oid = r.json()["orders"][0]["order_id"]
    loc = make_plan(1)["stops"][0]["location"]
    db.execute("UPDATE stops SET arrived_at = now() WHERE order_id = %s", (oid,))
    db.execute("UPDATE orders SET status = 'failed' WHERE order_id = %s", (oid,))
    r = await client.post(f"/v1/orders/{oid}/pod", json=_pod(*loc), headers=tok.header("driver"))
    assert r.status_code == 201
    assert r.json()["flag_reasons"] == ["submitted after the order had failed"]
    assert db.execute("SELECT status FROM orders WHERE order_id = %s", (oid,)).fetchone() == (
        "delivered",
    )
