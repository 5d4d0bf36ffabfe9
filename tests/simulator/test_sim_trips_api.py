"""Live mode creates its trips through the real API (uvicorn + PostgreSQL): every trip
once, with its stops and orders, retried through server errors, and a re-run of the same
fleet re-plans in place instead of duplicating."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import orjson
import psycopg
import pytest
import uvicorn

from api.main import create_app
from routewatch import cli
from routewatch.services import free_port
from routewatch.settings import Settings
from simulator.dispatch import DispatchOptions, dispatch_trips
from simulator.publisher import _align_to_wall_clock
from simulator.scenario import ScenarioConfig, build
from tests.control_room.conftest import api_url, make_token

__all__ = ["api_url"]  # the fixture, imported so pytest finds it here

VEHICLES = 200
STOPS = 3

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _fleet_rows(db: psycopg.Connection, prefix: str) -> dict[str, Any]:
    like = f"{prefix}-%"
    trips = db.execute(
        "SELECT trip_id, vehicle_id, status FROM trips WHERE vehicle_id LIKE %s", (like,)
    ).fetchall()
    stops = db.execute(
        "SELECT s.trip_id, s.stop_id, s.order_id FROM stops s JOIN trips t USING (trip_id) "
        "WHERE t.vehicle_id LIKE %s",
        (like,),
    ).fetchall()
    orders = db.execute(
        "SELECT o.order_id, o.trip_id, o.stop_id, o.tracking_number, o.status FROM orders o "
        "JOIN trips t USING (trip_id) WHERE t.vehicle_id LIKE %s",
        (like,),
    ).fetchall()
    history = db.execute(
        "SELECT count(*) FROM order_status_history h JOIN orders o USING (order_id) "
        "JOIN trips t USING (trip_id) WHERE t.vehicle_id LIKE %s",
        (like,),
    ).fetchone()
    return {"trips": trips, "stops": stops, "orders": orders, "history": history}


def _simulate(
    api_url: str, mqtt_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, str]:
    """``routewatch simulate`` for a few seconds of an accelerated fleet; its summary."""
    code = cli.main(
        [
            "simulate",
            f"--vehicles={VEHICLES}",
            f"--stops={STOPS}",
            "--seed=3",
            f"--prefix={prefix}",
            f"--api-url={api_url}",
            f"--mqtt-url={mqtt_url}",
            "--duration=60",
            "--speedup=30",
            "--no-progress",
        ]
    )
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    return dict(kv.split("=", 1) for kv in line.split())


def test_simulate_creates_every_trip_once_and_a_rerun_replans_in_place(
    db: psycopg.Connection,
    database_url: str,
    mqtt_url: str,
    api_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROUTEWATCH_SIMULATOR_TOKEN", make_token(database_url, "oms", "simulator"))
    prefix = f"SIMAPI{uuid.uuid4().hex[:6]}"
    first = _simulate(api_url, mqtt_url, prefix, capsys)
    assert (first["trips_created"], first["trips_replaced"], first["trips_failed"]) == (
        str(VEHICLES),
        "0",
        "0",
    )
    assert int(first["messages"]) > 0 and first["acked"] == first["messages"]

    rows = _fleet_rows(db, prefix)
    expected_trips = {f"T-{prefix}-3-{i:05d}" for i in range(VEHICLES)}
    assert {r[0] for r in rows["trips"]} == expected_trips
    assert all(r[0] == f"T-{r[1]}" and r[2] == "planned" for r in rows["trips"])
    assert len(rows["stops"]) == VEHICLES * STOPS
    # one order per stop, on that stop's trip, each with its own tracking number
    assert {(r[0], r[1], r[2]) for r in rows["stops"]} == {
        (r[1], r[2], r[0]) for r in rows["orders"]
    }
    assert len({r[3] for r in rows["orders"]}) == VEHICLES * STOPS
    assert {r[4] for r in rows["orders"]} == {"scheduled"}
    assert rows["history"] == (VEHICLES * STOPS,)
    # every trip names its driver, registered by the plan with the simulator's name for them
    drivers = db.execute(
        "SELECT t.driver_id, d.name FROM trips t JOIN drivers d USING (driver_id) "
        "WHERE t.vehicle_id LIKE %s",
        (f"{prefix}%",),
    ).fetchall()
    assert len(drivers) == VEHICLES and len({r[0] for r in drivers}) == VEHICLES
    assert all(r[0].startswith(f"{prefix}-3-D") and r[1] for r in drivers)

    again = _simulate(api_url, mqtt_url, prefix, capsys)
    assert (again["trips_created"], again["trips_replaced"], again["trips_failed"]) == (
        "0",
        str(VEHICLES),
        "0",
    )
    rerun = _fleet_rows(db, prefix)
    assert sorted(rerun["trips"]) == sorted(rows["trips"])
    assert sorted(rerun["stops"]) == sorted(rows["stops"])
    assert sorted(rerun["orders"]) == sorted(rows["orders"])  # same tracking numbers
    assert rerun["history"] == rows["history"]


class FailTwicePerTrip:
    """In front of the real app: each trip's first POST answers 503 and its second fails
    inside the app server (uvicorn answers 500); the third reaches the API. Keyed by the
    plan's trip_id, so the outcome does not depend on how concurrent posts interleave."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.posts = 0
        self.seen: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        self.posts += 1
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        trip_id = orjson.loads(body).get("trip_id", "?")
        self.seen[trip_id] = attempt = self.seen.get(trip_id, 0) + 1
        if attempt == 1:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"busy"})
            return
        if attempt == 2:
            raise RuntimeError("the app server failed this request")  # uvicorn: 500

        replayed = False

        async def replay() -> MutableMapping[str, Any]:  # the body once, then the client
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@pytest.fixture
def flaky_api(database_url: str) -> Iterator[tuple[str, FailTwicePerTrip]]:
    port = free_port()
    app = FailTwicePerTrip(create_app(Settings(database_url=database_url)))
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, name="uvicorn-flaky", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=10)


def test_dispatch_retries_server_errors_and_stops_when_retrying_cannot_help(
    db: psycopg.Connection, database_url: str, flaky_api: tuple[str, FailTwicePerTrip]
) -> None:
    flaky_api_url, app = flaky_api
    token = make_token(database_url, "oms", "simulator")
    prefix = f"SIMFLAKY{uuid.uuid4().hex[:6]}"
    sim = build(
        ScenarioConfig(
            vehicles=12,
            seed=11,
            id_prefix=prefix,
            start_ms=int(time.time() * 1000),
            stops_per_trip=2,
        )
    )
    opts = DispatchOptions(concurrency=3, backoff_s=0.01)
    report = asyncio.run(dispatch_trips(sim.plans, flaky_api_url, token, opts))
    # two of every trip's three posts failed; each failure was retried, and no trip was
    # lost or doubled
    assert (report.created, report.replaced, report.failed) == (12, 0, 0)
    assert report.retries == app.posts - 12 == 24
    assert _fleet_rows(db, prefix)["history"] == (12 * 2,)

    out = asyncio.run(dispatch_trips(sim.plans, flaky_api_url, "nope", opts))
    assert (out.accepted, out.failed) == (0, 12)
    assert "401" in out.problems[0] and "refused the token" in out.problems[-1]

    # nothing listens there: a few plans run out of attempts, then the dispatch stops
    closed = f"http://127.0.0.1:{free_port()}"
    opts = DispatchOptions(concurrency=2, max_attempts=2, backoff_s=0.01)
    out = asyncio.run(dispatch_trips(sim.plans, closed, token, opts))
    assert (out.accepted, out.failed) == (0, 12) and out.retries < 12
    assert "ConnectError" in out.problems[0] and out.problems[-1].startswith("stopped: 2 plans")


def test_real_time_clock_catches_up_after_a_slow_dispatch() -> None:
    """Fixes must not be stamped in the past because dispatching took longer than the
    planned starts' lead: the simulation runs forward unpublished to the wall clock."""
    start_ms = int(time.time() * 1000) - 300_000  # departures (<= 120 s after) all passed
    sim = build(ScenarioConfig(vehicles=5, seed=2, start_ms=start_ms, stagger_s=0.0))
    first = sim.t_s
    skipped = _align_to_wall_clock(sim, threading.Event())
    assert skipped == sim.t_s - first > 0
    assert abs(sim.t_s - time.time()) < 2.0
