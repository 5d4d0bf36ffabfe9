"""Helpers for driving the live engine against the real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import orjson
import psycopg
from prometheus_client import REGISTRY
from psycopg.types.json import Jsonb

from ingest.service import run_engine
from routewatch.mqtt_endpoint import MqttEndpoint
from routewatch.settings import Settings

NOW_MS = int(time.time() * 1000)


def messages_received() -> float:
    return REGISTRY.get_sample_value("routewatch_mqtt_messages_total") or 0.0


def make_settings(database_url: str, mqtt_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "database_url": database_url,
        "mqtt_url": mqtt_url,
        "mqtt_client_id": f"rw-test-{uuid.uuid4().hex[:12]}",
        "mqtt_session_expiry_s": 60,
        "mqtt_mirror_events": False,
        "batch_max_ms": 20,
        "max_payload_bytes": 4000,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@asynccontextmanager
async def publisher(mqtt_url: str, ca_file: Path | None = None) -> AsyncIterator[aiomqtt.Client]:
    """An aiomqtt client of ``mqtt_url`` (login and TLS as the URL says)."""
    broker = MqttEndpoint.parse(mqtt_url, ca_file=ca_file)
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        tls_context=broker.ssl_context(),
    ) as client:
        yield client


@asynccontextmanager
async def mirrored_events(sub: aiomqtt.Client, vid: str) -> AsyncIterator[list[dict[str, object]]]:
    """The events the engine mirrors to ``fleet/{vid}/events``, collected while the block
    runs (the list grows as they arrive)."""
    await sub.subscribe(f"fleet/{vid}/events", qos=1)
    mirrored: list[dict[str, object]] = []

    async def collect() -> None:
        async for msg in sub.messages:
            mirrored.append(orjson.loads(msg.payload))

    collector = asyncio.create_task(collect())
    try:
        yield mirrored
    finally:
        collector.cancel()


@asynccontextmanager
async def engine(settings: Settings, pub: aiomqtt.Client) -> AsyncIterator[asyncio.Event]:
    """Run the engine until the block ends; returns once it is subscribed."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(settings, stop), name="engine-under-test")
    probe = f"fleet/probe-{uuid.uuid4().hex[:8]}/ping"
    start = messages_received()
    async with asyncio.timeout(20):
        while messages_received() == start:
            assert not task.done(), task.exception()
            await pub.publish(probe, b"", qos=1)  # an empty payload: stored as rejected
            await asyncio.sleep(0.1)
    try:
        yield stop
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


async def wait_for(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def ping(ts: int, **extra: object) -> dict[str, object]:
    return {
        "ts": ts,
        "lat": -6.2088,
        "lon": 106.8456,
        "speed": 42.5,
        "heading": 181.0,
        "accuracy": 6.0,
        **extra,
    }


def stored(db: psycopg.Connection, prefix: str) -> list[tuple[str, int]]:
    rows = db.execute(
        "SELECT vehicle_id, (extract(epoch FROM ts) * 1000)::bigint FROM pings "
        "WHERE vehicle_id LIKE %s ORDER BY 1, 2",
        (prefix + "%",),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


LAT = -6.2
LON0 = 106.80
M_PER_DEG_LON = 110_669.0  # at 6.2° S


def lon_at(x_m: float) -> float:
    return LON0 + x_m / M_PER_DEG_LON


def drive(t0_ms: int) -> list[dict[str, object]]:
    """East along the route at 36 km/h, a 60 s dwell at 1100 m, then on to 2200 m."""
    pings: list[dict[str, object]] = []
    x, t = 0.0, t0_ms
    for phase_s, speed_mps in ((110, 10.0), (60, 0.0), (110, 10.0)):
        for _ in range(phase_s // 2):
            pings.append(
                {"ts": t, "lat": LAT, "lon": lon_at(x), "speed": speed_mps * 3.6, "accuracy": 5.0}
            )
            x += 2 * speed_mps
            t += 2000
    return pings


def announce_trip(
    db: psycopg.Connection, trip_id: str, vid: str, t0_ms: int, driver_id: str | None = None
) -> None:
    """A 2.2 km trip east with one stop at 1100 m (what :func:`drive` drives), inserted and
    announced to the engine as the API does (NOTIFY); ``driver_id`` names its driver."""
    plan = {
        "trip_id": trip_id,
        "vehicle_id": vid,
        "planned_start": t0_ms,
        "route": {"type": "LineString", "coordinates": [[LON0, LAT], [lon_at(2200), LAT]]},
        "stops": [{"stop_id": "S1", "location": [lon_at(1100), LAT], "radius_m": 75}],
    }
    with db.transaction():
        db.execute("INSERT INTO vehicles (vehicle_id) VALUES (%s) ON CONFLICT DO NOTHING", (vid,))
        if driver_id is not None:
            plan["driver_id"] = driver_id
            db.execute(
                "INSERT INTO drivers (driver_id) VALUES (%s) ON CONFLICT DO NOTHING", (driver_id,)
            )
        db.execute(
            "INSERT INTO trips (trip_id, vehicle_id, driver_id, planned_start, plan, "
            "route_length_m) VALUES (%s, %s, %s, to_timestamp(%s / 1000.0), %s, 2200)",
            (trip_id, vid, driver_id, t0_ms, Jsonb(plan)),
        )
        db.execute(
            "INSERT INTO stops (trip_id, seq, stop_id, lon, lat, route_m, "
            "radius_m, service_s) VALUES (%s, 0, 'S1', %s, %s, 1100, 75, 0)",
            (trip_id, lon_at(1100), LAT),
        )
        db.execute("SELECT pg_notify('routewatch_trips', %s)", (trip_id,))
