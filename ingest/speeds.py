"""Learned travel speeds, from the database to the engine's pipelines.

Every ``ROUTEWATCH_SPEEDS_LEARN_EVERY_S`` the feed adds the pings stored since the last
run to ``speed_cells`` (:func:`store.speeds.learn`; several engine processes share the
work, one run per interval between them) and, whenever the learned speeds moved on
(theirs or another process's run), loads them and hands them to every pipeline, whose
engine integrates its ETAs over them from then on (``compliance.history``). A pipeline
that starts later (a worker's new partition) gets them within :data:`CHECK_S`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime

import psycopg

from compliance.history import SpeedProfile
from ingest.pipeline import Pipeline, database_sessions, sleep_unless
from routewatch.settings import Settings
from store import speeds

log = logging.getLogger(__name__)

#: how often the feed looks for newer learned speeds (and pipelines without them), seconds
CHECK_S = 60.0


class SpeedFeed:
    def __init__(self, settings: Settings, pipelines: Callable[[], Iterable[Pipeline]]) -> None:
        self.settings = settings
        self.pipelines = pipelines
        self.profile: SpeedProfile | None = None
        self._loaded: datetime | None = None  # learned_until of ``profile``
        self._learned_at = -float("inf")  # monotonic time of this process's last run

    async def run(self, stop: asyncio.Event) -> None:
        if self.settings.speeds_learn_every_s <= 0:
            return

        async def session(conn: psycopg.AsyncConnection) -> None:
            while not stop.is_set():
                await self.step(conn)
                await sleep_unless(stop, CHECK_S)

        await database_sessions(self.settings, stop, "speed learning", session)

    async def step(self, conn: psycopg.AsyncConnection) -> None:
        """Learn if due, load if newer, hand out to pipelines that lack it."""
        if time.monotonic() - self._learned_at >= self.settings.speeds_learn_every_s:
            t0 = time.perf_counter()
            done = await speeds.learn(
                conn,
                speeds.default_until(),
                half_life_days=self.settings.speeds_half_life_days,
                first_days=self.settings.speeds_first_days,
            )
            self._learned_at = time.monotonic()
            if done.since is not None:
                log.info(
                    "learned speeds from the pings of %s .. %s: %d cell-hours in %.2f s%s",
                    done.since.isoformat(timespec="seconds"),
                    done.until.isoformat(timespec="seconds"),
                    done.cells,
                    time.perf_counter() - t0,
                    " (older samples decayed)" if done.decayed else "",
                )
        until = await speeds.learned_until(conn)
        if until is not None and until != self._loaded:
            t0 = time.perf_counter()
            self.profile = await speeds.load(conn)
            self._loaded = until
            if self.profile is not None:
                log.info(
                    "loaded learned speeds: %d cells, %d samples (%.2f s)",
                    len(self.profile.cell_index),
                    self.profile.samples,
                    time.perf_counter() - t0,
                )
        for pipeline in self.pipelines():
            pipeline.use_speeds(self.profile)
