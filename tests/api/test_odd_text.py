"""Issue #14 "no 500 on odd text": every text the API accepts, fed odd strings.

Hypothesis generates strings with NUL, unpaired surrogates (sent as JSON ``\\ud800``
escapes in a raw body: they cannot be encoded as UTF-8), other control characters,
very long strings, right-to-left text and emoji, and puts them into one field of an
otherwise valid request at a time, sent with the role the endpoint needs. Whatever the
field: never a 5xx; NUL or an unpaired surrogate always 422; and free text that is
stored (ack notes, POD names and notes, plan ids and route properties) comes back
exactly as sent when it was accepted.

The app runs under uvicorn (``tests.api.live_server``: real HTTP, paths decoded as a
server decodes them) against the session's real database; a synchronous httpx client
lets hypothesis drive it directly. Examples per field are bounded
so the module takes a few tens of seconds.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.main import ROUTERS
from compliance.text import check_text
from store import tokens
from tests.api.factories import LAT, make_plan
from tests.api.live_server import Server

EXAMPLES = 50
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 4

#: characters that have broken (or could break) something somewhere
ODD = [
    "\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f", "\x85", "\x9f", "\t", "\n", "\r",
    "\ud800", "\udbff", "\udc00", "\udfff", "\u200f", "\u202e", "\u2028", "\ufeff",
    "\uffff", "\U0010ffff", "😀", "👩‍👩‍👧", "مرحبا", "שלום", "é", "e\u0301", "%", "%00",
    "/", "..", "\\", "'", '"', "?", "#", "&", "=", ",", " ", "",
]  # fmt: skip
odd_text = st.one_of(
    st.lists(st.one_of(st.sampled_from(ODD), st.text(max_size=4)), max_size=10).map("".join),
    st.text(max_size=30),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "😀", "\x00", "مر"]), st.integers(60, 5000)),
)  # fmt: skip


def as_sent(value: Any) -> Any:
    """``value`` as the server reads it from our JSON: a high surrogate followed by a low
    one travels as two ``\\u`` escapes and arrives as the one character they pair into."""
    return json.loads(raw_json(value))


def unstorable(value: str) -> bool:
    """NUL or an unpaired surrogate (as the server reads it): must always be refused."""
    text = as_sent(value)
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def raw_json(obj: Any) -> bytes:
    """JSON with every non-ASCII character escaped, so unpaired surrogates travel as
    ``\\ud800`` escapes (the only way JSON can carry them)."""
    return json.dumps(obj, ensure_ascii=True).encode()


def path_part(value: str) -> str:
    """A path segment or query value: the UTF-8 bytes percent-encoded (surrogates as the
    bytes a careless client would send; the server reads them as U+FFFD)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@dataclass
class Api:
    client: httpx.Client
    headers: dict[str, dict[str, str]]
    database_url: str

    def call(self, method: str, url: str, role: str | None, body: Any = None) -> Any:
        headers = dict(self.headers[role]) if role else {}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = raw_json(body)
        response = self.client.request(method, url, headers=headers, content=content)
        assert response.status_code < 500, (method, url, response.status_code, response.text)
        return response

    def trip(self, n_stops: int = 1) -> dict[str, Any]:
        plan = make_plan(n_stops, trip_id=f"T-odd-{uuid.uuid4().hex[:8]}")
        created = self.call("POST", "/v1/trips", "oms", plan)
        assert created.status_code == 201, created.text
        return dict(created.json())

    def alert(self) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO alerts (event_id, type, severity, vehicle_id, ts, details) "
                "VALUES (%s, 'speeding', 'warning', 'V-odd', now(), %s) RETURNING id",
                (uuid.uuid4(), Jsonb({})),
            ).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(scope="module")
def api(database_url: str) -> Iterator[Api]:
    async def make() -> dict[str, str]:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            return {
                role: (await tokens.create_token(conn, [role], f"odd text {role}"))[1]
                for role in ("oms", "supervisor", "driver")
            }

    made = asyncio.run(make())
    with Server(database_url) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield Api(
            client,
            {role: {"Authorization": f"Bearer {t}"} for role, t in made.items()},
            database_url,
        )


def odd_settings(n: int = EXAMPLES) -> Callable[[Any], Any]:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- the regression: schemathesis' 500 on an ack note holding NUL --------------------


def test_ack_note_with_nul_is_422_and_the_alert_is_untouched(api: Api) -> None:
    alert_id = api.alert()
    response = api.call("POST", f"/v1/alerts/{alert_id}/ack", "supervisor", {"note": "a\x00b"})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "note"]
    assert "NUL" in problem["msg"] and "remove it" in problem["msg"]
    ok = api.call("POST", f"/v1/alerts/{alert_id}/ack", "supervisor", {"note": "fixed\tit\n"})
    assert ok.status_code == 200 and ok.json()["ack_note"] == "fixed\tit\n"


def test_raw_nul_and_surrogate_escapes_in_a_body(api: Api) -> None:
    """The bytes as a client would send them, not built by a JSON encoder."""
    alert_id = api.alert()
    url = f"/v1/alerts/{alert_id}/ack"
    headers = {**api.headers["supervisor"], "Content-Type": "application/json"}
    for body in (b'{"note": "\\u0000"}', b'{"note": "\\ud800"}', b'{"note": "a\\udfffb"}'):
        response = api.client.post(url, headers=headers, content=body)
        assert response.status_code == 422, (body, response.text)
    response = api.client.post(url, headers=headers, content=b'{"note": "\\ud83d\\ude00"}')
    assert response.status_code == 200 and response.json()["ack_note"] == "😀"


# --- every text field -----------------------------------------------------------------


@given(note=odd_text)
@example(note="\x00").via("the schemathesis finding")
@example(note="\ud800\udc00").via("a surrogate pair: one character once decoded")
@odd_settings()
def test_ack_note(api: Api, note: str) -> None:
    alert_id = api.alert()
    response = api.call("POST", f"/v1/alerts/{alert_id}/ack", "supervisor", {"note": note})
    if unstorable(note):
        assert response.status_code == 422
    if response.status_code == 200:
        assert response.json()["ack_note"] == as_sent(note)
        listed = api.call("GET", "/v1/alerts?vehicle_id=V-odd&limit=1000", "supervisor")
        assert {a["id"]: a["ack_note"] for a in listed.json()["alerts"]}[alert_id] == as_sent(note)
    else:
        assert response.status_code == 422, response.text
        assert len(note) > 2000 or refuses(check_text, as_sent(note))


def refuses(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except ValueError:
        return True
    return False


PLAN_FIELDS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "trip_id": lambda p, v: p.__setitem__("trip_id", v),
    "vehicle_id": lambda p, v: p.__setitem__("vehicle_id", v),
    "stop_id": lambda p, v: p["stops"][0].__setitem__("stop_id", v),
    "order_id": lambda p, v: p["stops"][0].__setitem__("order_id", v),
    "planned_start": lambda p, v: p.__setitem__("planned_start", v),
    "window.start": lambda p, v: p["stops"][0]["window"].__setitem__("start", v),
    "threshold name": lambda p, v: p.__setitem__("thresholds", {v: 1.0}),
    "route.properties value": lambda p, v: p.__setitem__(
        "route", {"type": "Feature", "properties": {"address": v}, "geometry": p["route"]}
    ),
    "route.properties key": lambda p, v: p.__setitem__(
        "route", {"type": "Feature", "properties": {v: "x"}, "geometry": p["route"]}
    ),
    "route.type": lambda p, v: p["route"].__setitem__("type", v),
    "extra key": lambda p, v: p.__setitem__(v, 1),
}


@pytest.mark.parametrize("field", list(PLAN_FIELDS))
@given(value=odd_text)
@odd_settings()
def test_trip_plan_text(api: Api, field: str, value: str) -> None:
    plan = make_plan(1, trip_id=f"T-odd-{uuid.uuid4().hex[:8]}")
    PLAN_FIELDS[field](plan, value)
    response = api.call("POST", "/v1/trips", "oms", plan)
    if unstorable(value):
        assert response.status_code == 422, response.text
    if response.status_code == 422:
        for problem in response.json()["detail"]:
            assert problem["msg"], problem
    if response.status_code != 201:
        return
    # accepted: every id reads back exactly, and the plan is kept as sent (as the server
    # read it: a surrogate pair arrives as one character)
    plan = as_sent(plan)
    trip = response.json()
    if not reachable(trip["trip_id"]) or not reachable(plan["stops"][0]["order_id"]):
        return
    stored = api.call("GET", f"/v1/trips/{path_part(trip['trip_id'])}", "oms")
    assert stored.status_code == 200, stored.text
    got = stored.json()
    assert got["trip_id"] == plan["trip_id"] and got["vehicle_id"] == plan["vehicle_id"]
    assert got["stops"][0]["stop_id"] == plan["stops"][0]["stop_id"]
    assert got["stops"][0]["order_id"] == plan["stops"][0]["order_id"]
    assert got["plan"]["route"] == plan["route"]
    order = api.call("GET", f"/v1/orders/{path_part(plan['stops'][0]['order_id'])}", "oms")
    assert order.status_code == 200 and order.json()["order_id"] == plan["stops"][0]["order_id"]


def reachable(value: str) -> bool:
    """Can ``value`` be named in a URL path? ("/" splits the path however encoded, and
    clients resolve dot segments.)"""
    return "/" not in value and value not in (".", "..")


def _pod(**overrides: Any) -> dict[str, Any]:
    return {
        "recipient_name": "Siti Rahma",
        "signature": {"media_type": "image/png", "data": base64.b64encode(PNG).decode()},
        "condition": "ok",
        "notes": "left at door",
        "device_ts": "2026-11-22T08:12:00Z",
        "lon": 106.805,
        "lat": LAT,
        **overrides,
    }


POD_FIELDS: dict[str, Callable[[str], dict[str, Any]]] = {
    "recipient_name": lambda v: _pod(recipient_name=v),
    "notes": lambda v: _pod(notes=v),
    "condition": lambda v: _pod(condition=v),
    "device_ts": lambda v: _pod(device_ts=v),
    "signature.data": lambda v: _pod(signature={"media_type": "image/png", "data": v}),
    "signature.media_type": lambda v: _pod(signature={"media_type": v, "data": "iVBORw=="}),
}


@pytest.mark.parametrize("field", list(POD_FIELDS))
@given(value=odd_text)
@odd_settings(30)
def test_pod_text(api: Api, field: str, value: str) -> None:
    order_id = api.trip()["orders"][0]["order_id"]
    body = POD_FIELDS[field](value)
    response = api.call("POST", f"/v1/orders/{order_id}/pod", "driver", body)
    if unstorable(value):
        assert response.status_code == 422, response.text
    if response.status_code == 201:
        pod = api.call("GET", f"/v1/orders/{order_id}/pod", "oms").json()
        assert pod["recipient_name"] == as_sent(body["recipient_name"])
        assert pod["notes"] == as_sent(body["notes"])
    else:
        assert response.status_code in (413, 422), response.text


@dataclass(frozen=True)
class ParamTarget:
    method: str
    template: str  # "{v}" marks where the (percent-encoded) value goes
    role: str | None
    nul: int = 422  # the answer to a value holding NUL

    @property
    def in_path(self) -> bool:
        return "?" not in self.template


PARAMS = {
    "GET trip": ParamTarget("GET", "/v1/trips/{v}", "oms"),
    "cancel trip": ParamTarget("POST", "/v1/trips/{v}/cancel", "oms"),
    "DELETE trip": ParamTarget("DELETE", "/v1/trips/{v}", "oms"),
    "GET order": ParamTarget("GET", "/v1/orders/{v}", "oms"),
    "GET pod": ParamTarget("GET", "/v1/orders/{v}/pod", "oms"),
    # CONTRACT §6: unknown and malformed numbers, NUL included, get the same 404
    "track": ParamTarget("GET", "/v1/track/{v}", None, nul=404),
    "vehicle track": ParamTarget("GET", "/v1/vehicles/{v}/track", "supervisor"),
    "vehicle track from": ParamTarget("GET", "/v1/vehicles/V-1/track?from={v}", "supervisor"),
    "alerts vehicle_id": ParamTarget("GET", "/v1/alerts?vehicle_id={v}", "supervisor"),
    "alerts type": ParamTarget("GET", "/v1/alerts?type={v}&type=x", "supervisor"),
    "alerts status": ParamTarget("GET", "/v1/alerts?status={v}", "supervisor"),
    "alerts cursor": ParamTarget("GET", "/v1/alerts?cursor={v}", "supervisor", nul=400),
    "alerts since": ParamTarget("GET", "/v1/alerts?since={v}", "supervisor"),
    "report vehicle_id": ParamTarget(
        "GET",
        "/v1/reports/delivery-performance?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"
        "&vehicle_id={v}",
        "oms",
    ),
    "report from": ParamTarget(
        "GET", "/v1/reports/delivery-performance?to=2026-02-01T00:00:00Z&from={v}", "oms"
    ),
    # a token is a secret, not text to validate: anything but a live token is a 401
    "stream access_token": ParamTarget("GET", "/v1/alerts/stream?access_token={v}", None, nul=401),
}


@pytest.mark.parametrize("target", list(PARAMS))
@given(value=odd_text)
@example(value="\x00")
@example(value="²")  # str.isdigit() but not int()
@example(value="9" * 5000)
@example(value=str(10**20))
@odd_settings()
def test_path_and_query_text(api: Api, target: str, value: str) -> None:
    t = PARAMS[target]
    if target == "stream access_token" and not unstorable(value):
        value = "\x00" + value  # a valid token would open an endless stream
    response = api.call(t.method, t.template.format(v=path_part(value)), t.role)
    if "\x00" in value and (reachable(value) or not t.in_path):
        assert response.status_code == t.nul, response.text


def _params(dependant: Any) -> Iterator[Any]:
    """Path and query parameters of a route's dependant and all its sub-dependencies."""
    yield from dependant.path_params
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _params(sub)


def test_every_text_parameter_is_checked() -> None:
    """Design once: every str path/query parameter of every route carries the shared
    check (compliance.text.Line/Text), so a new endpoint cannot forget it."""
    routes = [
        route
        for name in ROUTERS
        for route in importlib.import_module(f"api.routes.{name}").router.routes
        if isinstance(route, APIRoute)
    ]
    assert len(routes) > 10
    unchecked, checked = set(), set()
    for route in routes:
        for param in _params(route.dependant):
            described = repr(param.field_info.annotation) + repr(param.field_info.metadata)
            if "str" not in described:
                continue
            name = f"{route.path} {param.alias}"
            (checked if "check_line" in described else unchecked).add(name)
    # parsed strictly by their endpoints instead: a stream token is a secret (anything but
    # a live token is a 401), the cursor must be digits (400), a tracking number must be
    # one (404, CONTRACT §6), times must parse (422)
    parsed = {
        "/v1/track/{tracking_number} tracking_number",
        "/v1/alerts/stream access_token",
        "/v1/vehicles/stream access_token",
        "/v1/alerts cursor",
        "/v1/vehicles/{vehicle_id}/track from",
        "/v1/vehicles/{vehicle_id}/track to",
    }
    assert unchecked == parsed, unchecked ^ parsed
    assert {"/v1/trips/{trip_id} trip_id", "/v1/vehicles/{vehicle_id}/track vehicle_id"} <= checked


def test_time_parameters_out_of_range(api: Api) -> None:
    """Epoch ms beyond the years 0001-9999 are refused, not a 500 from datetime."""
    for value in ("99999999999999999", "-99999999999999999", "0001-01-01T00:00:00+01:00"):
        response = api.call("GET", f"/v1/vehicles/V-1/track?from={path_part(value)}", "supervisor")
        assert response.status_code == 422, (value, response.text)
        plan = make_plan(1, trip_id=f"T-odd-{uuid.uuid4().hex[:8]}")
        plan["planned_start"] = int(value) if value.lstrip("-").isdigit() else value
        assert api.call("POST", "/v1/trips", "oms", plan).status_code == 422
    order_id = api.trip()["orders"][0]["order_id"]
    response = api.call("POST", f"/v1/orders/{order_id}/pod", "driver", _pod(device_ts=10**30))
    assert response.status_code == 422, response.text
    assert datetime.now(UTC).year < 9999
