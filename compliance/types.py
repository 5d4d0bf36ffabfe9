"""Values that cross the ingest → compliance boundary.

``compliance`` never imports ``ingest``; ingest builds a :class:`PingBatch` and hands it
to :meth:`compliance.engine.Engine.process`, which answers with a :class:`ProcessResult`.
Arrays are struct-of-arrays, one row per ping; a missing optional value is NaN (floats)
or -1 (``seq``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from compliance.events import Event

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]


@dataclass(slots=True)
class PingBatch:
    """Validated pings, in arrival order (not necessarily time order)."""

    vehicle_id: list[str]
    ts_ms: I64  # fix time, epoch milliseconds
    lat: F64  # degrees WGS84
    lon: F64  # degrees WGS84
    speed_kmh: F64  # device-reported, NaN when absent
    heading_deg: F64  # NaN when absent
    accuracy_m: F64  # 1-sigma horizontal, NaN when absent
    seq: I64  # device sequence number, -1 when absent

    def __len__(self) -> int:
        return len(self.vehicle_id)

    @classmethod
    def empty(cls) -> PingBatch:
        f = np.empty(0, np.float64)
        return cls(
            [],
            np.empty(0, np.int64),
            f,
            f.copy(),
            f.copy(),
            f.copy(),
            f.copy(),
            np.empty(0, np.int64),
        )

    def take(self, index: npt.NDArray[np.intp], vehicle_id: str | None = None) -> PingBatch:
        """The rows at ``index``, in that order. ``vehicle_id``: the caller knows every
        one of these rows is that vehicle's (rows grouped by vehicle), so the per-row
        ids need not be gathered."""
        if vehicle_id is not None:
            ids = [vehicle_id] * len(index)
        else:
            # tolist(): indexing a list with NumPy scalars is several times slower
            ids = [self.vehicle_id[i] for i in index.tolist()]
        return PingBatch(
            ids,
            self.ts_ms[index],
            self.lat[index],
            self.lon[index],
            self.speed_kmh[index],
            self.heading_deg[index],
            self.accuracy_m[index],
            self.seq[index],
        )


@dataclass(slots=True)
class StopSnapshot:
    stop_id: str
    order_id: str | None
    status: str  # pending / arrived / departed / skipped
    eta_ms: int | None  # predicted arrival, epoch ms (None once arrived)
    eta_low_ms: int | None
    eta_high_ms: int | None
    arrived_ms: int | None = None
    departed_ms: int | None = None


@dataclass(slots=True)
class TripSnapshot:
    """Live state of one trip as of event time ``ts_ms`` (what the API shows)."""

    trip_id: str
    vehicle_id: str
    ts_ms: int
    lat: float
    lon: float
    speed_kmh: float
    route_m: float
    offset_m: float
    on_route: bool
    progress_pct: float
    schedule_delay_s: float | None
    status: str  # planned / active / completed
    stops: list[StopSnapshot] = field(default_factory=list)


@dataclass(slots=True)
class ProcessResult:
    """Per-ping match results (aligned with the batch rows) plus what the batch caused."""

    trip_id: list[str | None]  # the trip the ping was matched against, if any
    route_m: F64  # distance along the planned route, NaN when not matched
    offset_m: F64  # cross-track distance, NaN when not matched
    on_route: I8  # 1 inside corridor, 0 outside, -1 not matched / not judged
    events: list[Event] = field(default_factory=list)
    snapshots: list[TripSnapshot] = field(default_factory=list)  # trips changed by the batch
