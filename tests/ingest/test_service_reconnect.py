"""Broker loss: the engine reconnects (jittered backoff), resumes its persistent session
and loses nothing. Uses a private Mosquitto so the shared one is never disturbed."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import psycopg
from prometheus_client import REGISTRY

from ingest.service import run_engine
from routewatch.services import PrivateMosquitto, free_port
from tests.ingest.live_helpers import (
    NOW_MS,
    make_settings,
    messages_received,
    ping,
    publisher,
    stored,
    wait_for,
)


def reconnects() -> float:
    return REGISTRY.get_sample_value("routewatch_mqtt_reconnects_total") or 0.0


async def test_reconnects_after_broker_restart(
    db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    p = f"rcn{uuid.uuid4().hex[:6]}-"
    directory, port = tmp_path / "mqtt", free_port()
    broker = PrivateMosquitto(directory, port=port).start()
    settings = make_settings(database_url, broker.url, mqtt_session_expiry_s=300)
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(settings, stop))
    try:
        start = messages_received()
        async with publisher(broker.url) as pub:
            while messages_received() == start:  # until the engine is subscribed
                assert not task.done()
                await pub.publish(f"fleet/{p}probe/ping", b"", qos=1)
                await asyncio.sleep(0.1)
            await pub.publish(f"fleet/{p}V/ping", orjson.dumps(ping(NOW_MS - 9000)), qos=1)
            await wait_for(lambda: len(stored(db, p)) == 1)
        lost_before = reconnects()
        broker.stop()
        await wait_for(lambda: reconnects() > lost_before)
        # Same port and persistence folder: the engine's session (subscription) survives.
        broker = PrivateMosquitto(directory, port=port).start()
        async with publisher(broker.url) as pub:
            await pub.publish(f"fleet/{p}V/ping", orjson.dumps(ping(NOW_MS - 8000)), qos=1)
            await wait_for(lambda: len(stored(db, p)) == 2, timeout_s=40)
        assert not task.done()
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task
        broker.stop()
    assert [ts for _, ts in stored(db, p)] == [NOW_MS - 9000, NOW_MS - 8000]
