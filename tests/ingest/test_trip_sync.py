"""Trip sync: after start-up, every LISTEN and every reconnect the engine is brought in
line with the live trips — new and changed plans added, finished ones dropped, running
trips with an unchanged plan left alone (re-adding would reset their progress)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from compliance.plan import TripPlan
from ingest.pipeline import Pipeline
from ingest.trips import TripRow
from routewatch.settings import Settings
from store.db import make_pool


class RecordingEngine:
    """Stands in for compliance.engine.Engine: records what trip sync asks of it."""

    def __init__(self) -> None:
        self.running: dict[str, TripPlan] = {}
        self.calls: list[tuple[str, str]] = []

    def add_trip(self, plan: TripPlan) -> None:
        assert plan.trip_id is not None
        self.running[plan.trip_id] = plan
        self.calls.append(("add", plan.trip_id))

    def cancel_trip(self, trip_id: str) -> None:
        self.running.pop(trip_id, None)
        self.calls.append(("cancel", trip_id))

    def trips(self) -> list[str]:
        return list(self.running)

    def __getattr__(self, name: str) -> Any:  # process/tick/checkpoint: not used here
        raise AttributeError(name)


def row(trip_id: str, corridor_m: float = 50.0, status: str = "active") -> TripRow:
    plan = TripPlan.model_validate(
        {
            "trip_id": trip_id,
            "vehicle_id": f"V-{trip_id}",
            "planned_start": "2026-11-22T08:00:00Z",
            "route": {"type": "LineString", "coordinates": [[106.84, -6.20], [106.85, -6.21]]},
            "corridor_m": corridor_m,
        }
    )
    return TripRow(trip_id, status, plan, datetime.now(UTC))


def test_sync_adds_new_and_changed_plans_drops_finished_and_keeps_running(
    database_url: str,
) -> None:
    engine = RecordingEngine()
    pool = make_pool(database_url)  # never opened: sync does no I/O
    pipeline = Pipeline(Settings(database_url=database_url), pool, engine, None, asyncio.Event())

    pipeline.sync_trips([row("A"), row("B")])
    assert engine.calls == [("add", "A"), ("add", "B")]

    engine.calls.clear()
    pipeline.sync_trips([row("A"), row("B")])  # e.g. the catch-up right after LISTEN
    assert engine.calls == [], "running trips with unchanged plans must keep their progress"

    engine.calls.clear()
    pipeline.sync_trips([row("A", corridor_m=80.0), row("C")])  # A replaced, B finished
    assert sorted(engine.calls) == [("add", "A"), ("add", "C"), ("cancel", "B")]
    assert engine.running["A"].corridor_m == 80.0
