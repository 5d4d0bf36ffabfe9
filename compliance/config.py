"""Detector thresholds (DESIGN.md "Default thresholds"), one place for every tunable.

Units are in the field names. Per-fleet values come from constructing :class:`Thresholds`;
per-trip overrides come from ``TripPlan.thresholds`` (names of these fields).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Thresholds:
    #: corridor half-width = corridor_m + max(0, accuracy - corridor_accuracy_free_m)
    corridor_m: float = 50.0
    corridor_accuracy_free_m: float = 10.0
    #: off-route is confirmed after this many consecutive outside pings AND this long
    off_route_pings: float = 3
    off_route_s: float = 10.0
    #: back on route: within this fraction of the corridor for this many pings
    back_on_route_fraction: float = 0.6
    back_on_route_pings: float = 2
    #: a fix implying more than this speed from the last accepted fix is ignored
    wild_fix_kmh: float = 250.0
    #: fastest plausible progress along the route, bounds the matching window
    max_speed_kmh: float = 160.0
    #: GPS noise (1-sigma) assumed by the match score, metres
    gps_sigma_m: float = 8.0
    #: stationary: within this radius for at least this long
    stationary_radius_m: float = 30.0
    stationary_s: float = 120.0
    #: planned stop: default radius, arrival needs a dwell or a slow ping inside it
    stop_radius_m: float = 75.0
    stop_dwell_s: float = 30.0
    stop_slow_kmh: float = 5.0
    #: speeding: above limit + tolerance for at least this long
    speeding_tolerance_kmh: float = 5.0
    speeding_min_s: float = 15.0
    #: late: predicted arrival after window end by more than this
    late_s: float = 600.0
    #: back_on_schedule needs the prediction this far back under the late threshold
    late_hysteresis_s: float = 120.0
    #: signal lost: no ping for this long on an active trip
    signal_lost_s: float = 120.0
    #: out-of-order pings up to this old are put in order
    reorder_allowance_s: float = 30.0
    #: trip_started once this far along the route
    trip_start_m: float = 100.0
    #: planned speed when the plan gives no times, km/h
    default_speed_kmh: float = 30.0
    #: a trip that never completed yields to the vehicle's next trip once past the next
    #: trip's planned start and its own planned end + this (compliance.takeover)
    trip_overrun_s: float = 3600.0
    #: the next trip is watched for (driven while this trip is unfinished) from this long
    #: before its planned start
    next_trip_lead_s: float = 1800.0
    #: a trip's live view (progress, stop ETAs: what the API, order ETAs and webhooks
    #: show) is refreshed at most this often in event time, and whenever the trip or a
    #: stop changes status or the trip has an event; each refresh is a write per stop and
    #: order, the engine's largest cost with thousands of trips on the road
    snapshot_interval_s: float = 15.0
    #: a trip whose vehicle stopped reporting ends (trip_completed, ended_by no_signal)
    #: this long after the later of its planned end and its last ping: a tracker that
    #: died would otherwise keep the trip active for ever
    trip_abandon_s: float = 3600.0
    #: off_route also needs the vehicle to be driving away, on two outside fixes in a row:
    #: this far beyond the corridor (no standing vehicle's drift reaches it), m ...
    off_route_far_m: float = 50.0
    #: ... or a device speed of at least this, km/h (not standing or creeping beside
    #: the route) ...
    off_route_drive_kmh: float = 10.0
    #: ... or, not standing still, this far from the first outside fix, m
    off_route_move_m: float = 60.0

    def with_overrides(self, overrides: dict[str, Any]) -> Thresholds:
        """A copy with per-trip overrides applied; unknown names raise ``ValueError``."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown threshold(s): {', '.join(unknown)}")
        return replace(self, **{k: float(v) for k, v in overrides.items()})

    def as_array(self) -> npt.NDArray[np.float64]:
        """Values in field order, for the kernels (see :data:`TH_INDEX`)."""
        return np.array([float(v) for v in asdict(self).values()], dtype=np.float64)


#: field name -> index in :meth:`Thresholds.as_array`
TH_INDEX: dict[str, int] = {f.name: i for i, f in enumerate(fields(Thresholds))}
