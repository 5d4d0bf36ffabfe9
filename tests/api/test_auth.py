"""Every non-public endpoint refuses missing, invalid, revoked and wrong-role tokens.

The matrix is built from the app's own routes, so a new endpoint that forgets its role
check fails here without anyone adding a case.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.api.conftest import Tokens

pytestmark = pytest.mark.asyncio(loop_scope="session")

PUBLIC = re.compile(
    r"^(/healthz|/metrics|/v1/track/.*|/track(/.*)?|/docs.*|/openapi\.json|/redoc.*)$"
)

#: CONTRACT §5: who may call what. Endpoints not listed here are still checked for 401s
#: and for refusing at least one role.
EXPECTED_ROLES = {
    ("POST", "/v1/trips"): {"oms"},
    ("GET", "/v1/trips/{trip_id}"): {"oms", "supervisor"},
    ("GET", "/v1/vehicles"): {"supervisor"},
    ("GET", "/v1/vehicles/{vehicle_id}/track"): {"supervisor"},
    ("GET", "/v1/orders/{order_id}"): {"oms"},
    ("POST", "/v1/orders/{order_id}/pod"): {"driver"},
    ("GET", "/v1/orders/{order_id}/pod"): {"oms"},
    ("POST", "/v1/trips/{trip_id}/cancel"): {"oms"},
    ("DELETE", "/v1/trips/{trip_id}"): {"oms"},
    ("GET", "/v1/alerts"): {"supervisor"},
    ("POST", "/v1/alerts/{alert_id}/ack"): {"supervisor"},
    ("GET", "/v1/reports/delivery-performance"): {"supervisor", "oms"},
    ("GET", "/v1/reports/driver-scorecard"): {"supervisor", "oms"},
    ("POST", "/v1/drivers"): {"oms", "supervisor"},
    ("GET", "/v1/drivers"): {"oms", "supervisor"},
    ("GET", "/v1/drivers/{driver_id}"): {"oms", "supervisor"},
    ("PATCH", "/v1/drivers/{driver_id}"): {"oms", "supervisor"},
    ("DELETE", "/v1/drivers/{driver_id}"): {"oms", "supervisor"},
}


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) in the app's OpenAPI schema that is not public."""
    ops: list[tuple[str, str]] = []
    for path, item in app.openapi()["paths"].items():
        if PUBLIC.match(path):
            continue
        ops.extend(
            (m.upper(), path) for m in item if m in {"get", "post", "put", "patch", "delete"}
        )
    return ops


async def _status(client: AsyncClient, method: str, path: str, headers: dict[str, str]) -> int:
    """The response status; 200 for a request still streaming after 2 s (an SSE stream
    that got past auth — refusals answer at once)."""
    try:
        r = await asyncio.wait_for(client.request(method, path, headers=headers), 2.0)
    except TimeoutError:
        return 200
    return r.status_code


async def test_every_private_route_refuses_bad_tokens(
    app: FastAPI, client: AsyncClient, tok: Tokens
) -> None:
    ops = _operations(app)
    assert {
        ("GET", "/v1/vehicles"),
        ("POST", "/v1/trips"),
        ("GET", "/v1/orders/{order_id}"),
    } <= set(ops)
    checked = 0
    for method, template in ops:
        path = re.sub(r"\{[^}]+\}", "x", template)
        r = await client.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        for bad in ("rw_not-a-real-token", tok.revoked, "garbage"):
            r = await client.request(method, path, headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401, (method, path, bad, r.text)
        admitted = set()
        for role in ("oms", "supervisor", "driver"):
            code = await _status(client, method, path, tok.header(role))
            if code != 403:
                assert code != 401, (method, path, role)
                admitted.add(role)
        assert admitted != {"oms", "supervisor", "driver"}, f"{method} {template} admits every role"
        assert admitted, f"{method} {template} admits no role"
        if (method, template) in EXPECTED_ROLES:
            assert admitted == EXPECTED_ROLES[method, template], (method, template)
            checked += 1
        # A token holding several roles passes wherever one of them would.
        code = await _status(client, method, path, tok.header("all_roles"))
        assert code not in (401, 403), (method, path)
    assert checked >= 9  # this module's endpoints at least: the table still matches the app


async def test_public_routes_need_no_token(client: AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/healthz")).status_code == 200
