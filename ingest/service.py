"""The single-process engine: every vehicle in one pipeline, fed by one MQTT session.

    MQTT ``fleet/+/ping`` → ``ingest.mqtt_source`` → ``ingest.pipeline`` (decode → batch →
    engine → one DB transaction → ack → mirror) → PostgreSQL

Lifecycle (aiomqtt style): one TaskGroup with named tasks — ``warm-up`` (compiles the
payload decoder and the compliance kernels while MQTT connects; receiving waits for it),
``mqtt`` (connect, receive, reconnect with jittered backoff), ``flusher``, ``trip-sync``,
``ticker``, ``speeds`` (learns the fleet's speeds for ETAs: ``ingest.speeds``). On ``stop`` the receiver stops, the open batch is flushed, committed and
acknowledged, then the client disconnects and the final checkpoint is saved.

Engine workers on NATS JetStream (``routewatch worker``) run the same pipeline, one per
partition they own: ``ingest.worker``.
"""

from __future__ import annotations

import asyncio
import logging

from ingest.mqtt_source import MqttSource
from ingest.pipeline import Pipeline, start_pipeline
from ingest.speeds import SpeedFeed
from ingest.tripsync import TripFeed
from routewatch.settings import Settings
from store.db import make_pool

log = logging.getLogger(__name__)


async def _receive_then_finish(source: MqttSource, pipeline: Pipeline, stop: asyncio.Event) -> None:
    await source.run(stop)
    await pipeline.finish()  # stopped while disconnected: commit what was received


async def run_engine(settings: Settings, stop: asyncio.Event) -> None:
    """Run the live pipeline until ``stop`` is set, then drain and return."""
    async with make_pool(
        settings.database_url, min_size=1, max_size=2, name="routewatch-engine"
    ) as pool:
        pipeline = await start_pipeline(settings, pool, stop)
        source = MqttSource(settings, pipeline)
        trips = TripFeed(settings, lambda: (pipeline,))
        speeds = SpeedFeed(settings, lambda: (pipeline,))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pipeline.warm_up_kernels(), name="warm-up")
            tg.create_task(_receive_then_finish(source, pipeline, stop), name="mqtt")
            tg.create_task(pipeline.flush_loop(stop), name="flusher")
            tg.create_task(trips.run(stop), name="trip-sync")
            tg.create_task(pipeline.tick_loop(stop), name="ticker")
            tg.create_task(speeds.run(stop), name="speeds")
    log.info("engine stopped")
