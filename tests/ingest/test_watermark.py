"""The engine clock: wall time live, newest fix time for an accelerated simulated fleet."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import psycopg

from ingest.pipeline import Pipeline
from store.db import make_pool
from tests.ingest.live_helpers import make_settings

HOUR_MS = 3_600_000


async def _pipeline_after_one_fix(database_url: str, mqtt_url: str, mode: str, fix_ms: int) -> int:
    settings = make_settings(database_url, mqtt_url, watermark=mode)
    async with make_pool(database_url, max_size=2) as pool:
        pipeline = Pipeline(settings, pool, None, None, asyncio.Event())
        vehicle = f"wm{uuid.uuid4().hex[:6]}"
        raw = orjson.dumps({"ts": fix_ms, "lat": -6.2, "lon": 106.85})
        pipeline.batcher.add(f"fleet/{vehicle}/ping", raw, int(time.time() * 1000), None)
        await pipeline.flush()
        return pipeline.watermark_ms()


async def test_event_watermark_follows_the_newest_fix(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    fix_ms = int(time.time() * 1000) - 2 * HOUR_MS  # an accelerated fleet runs behind
    assert await _pipeline_after_one_fix(database_url, mqtt_url, "event", fix_ms) == fix_ms
    assert db.execute("SELECT count(*) FROM pings").fetchone() == (1,)


async def test_wall_watermark_ignores_fix_times(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    before_ms = int(time.time() * 1000)
    fix_ms = before_ms - 2 * HOUR_MS
    watermark = await _pipeline_after_one_fix(database_url, mqtt_url, "wall", fix_ms)
    assert watermark >= before_ms
