"""Trip changes from the database to the engine's pipelines.

The API inserts or changes a trip and runs ``NOTIFY routewatch_trips, '<trip_id>'`` in the
same transaction; this loop LISTENs and hands each changed trip to every pipeline, which
keeps it when its vehicle is in its scope (``Pipeline.apply_trip``). Right after every
LISTEN (the first one included) all live trips are reloaded: a trip created after a
pipeline's start-up but before the LISTEN, or while the connection was down, sent its
notification to nobody. The vehicle registry (when enforced) is re-read now and then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable

import psycopg

from ingest.pipeline import Pipeline, database_sessions
from ingest.trips import CHANNEL, load_known_vehicles, load_live_trips, load_trip
from routewatch.settings import Settings

#: how often an enforced vehicle registry is re-read, seconds
REGISTRY_REFRESH_S = 30.0


class TripFeed:
    def __init__(self, settings: Settings, pipelines: Callable[[], Iterable[Pipeline]]) -> None:
        """``pipelines``: the pipelines running now (a worker's change as partitions move)."""
        self.settings = settings
        self.pipelines = pipelines
        self._registry_loaded = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        async def session(conn: psycopg.AsyncConnection) -> None:
            await conn.execute(f"LISTEN {CHANNEL}")
            rows = await load_live_trips(conn)
            for pipeline in self.pipelines():
                pipeline.sync_trips(rows)
            while not stop.is_set():
                # The connection cannot run queries while notifies() iterates (it holds
                # the connection): collect ids, then load them.
                trip_ids = [note.payload async for note in conn.notifies(timeout=0.5, stop_after=1)]
                for trip_id in dict.fromkeys(trip_ids):
                    row = await load_trip(conn, trip_id)
                    for pipeline in self.pipelines():
                        pipeline.apply_trip(row, trip_id)
                await self._refresh_registry(conn)

        await database_sessions(self.settings, stop, "trip sync", session)

    async def _refresh_registry(self, conn: psycopg.AsyncConnection) -> None:
        """Re-read the vehicle registry now and then (when it is enforced)."""
        if not self.settings.require_known_vehicle:
            return
        if time.monotonic() - self._registry_loaded < REGISTRY_REFRESH_S:
            return
        self._registry_loaded = time.monotonic()
        known = await load_known_vehicles(conn)
        for pipeline in self.pipelines():
            limits = pipeline.batcher.limits
            pipeline.batcher.limits = dataclasses.replace(limits, known_vehicles=known)
