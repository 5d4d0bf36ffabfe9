"""Helpers for driving the live engine against the real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import aiomqtt
import psycopg
from prometheus_client import REGISTRY

from ingest.service import run_engine
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
async def publisher(mqtt_url: str) -> AsyncIterator[aiomqtt.Client]:
    url = urlsplit(mqtt_url)
    async with aiomqtt.Client(url.hostname or "127.0.0.1", url.port or 1883) as client:
        yield client


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
