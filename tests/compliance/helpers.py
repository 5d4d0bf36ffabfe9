"""Run the engine over generated drives and summarise its events for assertions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from compliance.engine import Engine
from compliance.events import Event
from compliance.plan import TripPlan
from compliance.types import PingBatch
from tests.compliance.builders import T0_MS, batch


def run_batches(
    plans: Sequence[TripPlan], batches: Sequence[PingBatch], engine: Engine | None = None
) -> tuple[list[Event], Engine]:
    """Feed ``batches`` with watermark = the largest ts seen so far; flush and tick at the end."""
    eng = engine or Engine()
    if engine is None:
        for p in plans:
            eng.add_trip(p)
    events: list[Event] = []
    wm = -(2**62)
    for b in batches:
        if len(b):
            wm = max(wm, int(b.ts_ms.max()))
        events += eng.process(b, wm).events
    events += eng.flush()
    events += eng.tick(wm)
    return sorted(events, key=lambda e: e.ts_ms), eng


def run_drive(
    p: TripPlan,
    ts: npt.NDArray[np.int64],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    speed: npt.NDArray[np.float64] | None = None,
    accuracy_m: float = 5.0,
    heading_deg: npt.NDArray[np.float64] | None = None,
) -> list[Event]:
    b = batch(p.vehicle_id, ts, x, y, speed, accuracy_m, heading_deg=heading_deg)
    events, _ = run_batches([p], [b])
    return events


def kinds(events: Sequence[Event]) -> list[str]:
    return [str(e.type) for e in events]


def at_s(e: Event) -> float:
    """Event time in seconds after :data:`T0_MS`."""
    return (e.ts_ms - T0_MS) / 1000.0


def signature(events: Sequence[Event]) -> list[tuple[str, str, int]]:
    return [(e.event_id, str(e.type), e.ts_ms) for e in events]
