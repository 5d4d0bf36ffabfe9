"""Fault injection: which vehicle misbehaves how, and where along its driven path.

Each vehicle gets at most one fault so the ground truth of each stays unambiguous. The
fault only shapes the motion or the tracker; the expected events are derived afterwards
from the true trajectory (``simulator.truth``), not from these parameters.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from simulator.network import RoadNetwork
from simulator.routing import Route, detour, divert

#: the default mix (``--faults`` not given): every one of these at DEFAULT_FAULT_RATE
DEFAULT_FAULT_KINDS: tuple[str, ...] = (
    "speeding",
    "detour",
    "detour_no_rejoin",
    "unplanned_stop",
    "late",
    "skip_stop",
    "signal_loss",
)
#: patterns of real traces that must raise no off_route (named in --faults only):
#: ``pull_off`` - at walking pace into a yard 50-80 m beside the route, standing there
#: 3-6 min, and back (an unplanned stop); ``standing_drift`` - standing on the road 4-8
#: min while the fixes drift 50-80 m to one side and back (an unplanned stop);
#: ``multipath_flip`` - four fixes in a row thrown 55-90 m to alternate sides of the road
#: (nothing); ``tracker_dies`` - the tracker goes silent mid-trip for good (signal_lost,
#: then the trip's end for want of signal); ``traffic`` - long trips through traffic: 2-4
#: stretches of 0.5-2 km on the vehicle's legs driven at 9-22 km/h (what the ETA must
#: ride out; late arrivals where it costs the schedule)
PATTERN_KINDS: tuple[str, ...] = (
    "pull_off",
    "standing_drift",
    "multipath_flip",
    "tracker_dies",
    "traffic",
)
FAULT_KINDS: tuple[str, ...] = DEFAULT_FAULT_KINDS + PATTERN_KINDS
DEFAULT_FAULT_RATE = 0.1  # per kind, fraction of vehicles
#: pull_off: walking pace into and out of the yard, m/s
CREEP_MS = 2.0
#: late: the jam on the way to a stop, crawled through at 4 km/h (130 m per 120 s, clearly
#: not 'stationary')
JAM_MS = 1.1
#: traffic: how many congested stretches, how long (m) and how fast (m/s: slow, never
#: 'stationary'), and how far clear of the halts they stay (m)
CONGESTION_N = (2, 4)
CONGESTION_M = (500.0, 2000.0)
CONGESTION_MS = (2.5, 6.0)
CONGESTION_CLEAR_M = 150.0


def parse_faults(text: str | None) -> dict[str, float]:
    """``"speeding=0.2,detour"`` -> {kind: rate}; None -> every kind at the default rate.

    ``"none"`` disables faults. A kind without ``=rate`` gets the default rate.
    """
    if text is None:
        return dict.fromkeys(DEFAULT_FAULT_KINDS, DEFAULT_FAULT_RATE)
    if text.strip().lower() in ("", "none"):
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, rate = part.strip().partition("=")
        if name not in FAULT_KINDS:
            raise ValueError(f"unknown fault {name!r}; choose from {', '.join(FAULT_KINDS)}")
        out[name] = float(rate) if rate else DEFAULT_FAULT_RATE
    if sum(out.values()) > 1.0:
        raise ValueError("fault rates add up to more than 1 (one fault per vehicle)")
    return out


def assign_faults(rates: dict[str, float], n: int, rng: np.random.Generator) -> list[str | None]:
    """One fault kind (or None) per vehicle, by the given rates."""
    kinds = list(rates)
    cum = np.cumsum([rates[k] for k in kinds])
    u = rng.random(n)
    out: list[str | None] = []
    for x in u:
        i = int(np.searchsorted(cum, x, side="right"))
        out.append(kinds[i] if i < len(kinds) else None)
    return out


@dataclass(slots=True)
class FaultPlan:
    """Where a fault applies on the driven path (metres) and how strongly."""

    speeding_m: tuple[float, float] = (np.nan, np.nan)
    speeding_extra_kmh: float = 0.0
    #: (from_m, to_m, speed_ms): stretches driven at no more than speed_ms
    jams: tuple[tuple[float, float, float], ...] = ()
    late_start_s: float = 0.0  # extra departure delay (the driver leaves the depot late)
    unplanned_m: float = np.nan
    unplanned_s: float = 0.0
    skip_stop: int = -1
    outage_from_m: float = np.nan
    outage_s: float = 0.0
    #: pull_off (the vehicle) / standing_drift (its fixes): sideways at the unplanned
    #: halt, this far (metres; the sign is the side), ramping over side_ramp_s
    side_m: float = 0.0
    side_ramp_s: float = 0.0
    side_true: bool = False  # the vehicle moves (pull_off), not only its fixes
    flip_m: float = np.nan  # multipath_flip: from here along the driven path


def legs(stop_m: list[float], length_m: float) -> list[tuple[float, float]]:
    """Driving legs between consecutive halts (start, stops..., end)."""
    marks = [0.0, *stop_m, length_m]
    return list(itertools.pairwise(marks))


def longest_leg(stop_m: list[float], length_m: float) -> tuple[float, float]:
    return max(legs(stop_m, length_m), key=lambda ab: ab[1] - ab[0])


def place_fault(
    kind: str | None, stop_m: list[float], length_m: float, rng: np.random.Generator
) -> FaultPlan:
    """Motion/tracker faults placed on the longest leg, clear of the stops."""
    plan = FaultPlan()
    a, b = longest_leg(stop_m, length_m)
    span = b - a
    if kind == "speeding":
        lo = a + 150.0
        plan.speeding_m = (lo, lo + min(1200.0, max(span - 300.0, 300.0)))
        plan.speeding_extra_kmh = float(rng.uniform(18.0, 30.0))
    elif kind == "late":
        # Running late: leaving the depot well after the planned start, then a jam on the
        # longest leg that ends at a stop (a jam needs a stop after it to delay anyone).
        plan.late_start_s = float(rng.uniform(35 * 60, 50 * 60))
        a, b = longest_leg(stop_m[:-1], stop_m[-1]) if stop_m else (a, b)
        plan.jams = ((a + 100.0, max(a + 200.0, min(a + 1600.0, b - 200.0)), JAM_MS),)
    elif kind == "unplanned_stop":
        plan.unplanned_m = a + span * float(rng.uniform(0.4, 0.6))
        plan.unplanned_s = float(rng.uniform(180.0, 360.0))
    elif kind == "skip_stop" and stop_m:
        plan.skip_stop = int(rng.integers(0, len(stop_m)))
    elif kind == "signal_loss":
        plan.outage_from_m = a + 100.0
        plan.outage_s = float(rng.uniform(180.0, 360.0))
    elif kind in ("pull_off", "standing_drift"):
        plan.unplanned_m = a + span * float(rng.uniform(0.4, 0.6))
        plan.side_m = float(rng.uniform(50.0, 80.0) * rng.choice([-1.0, 1.0]))
        if kind == "pull_off":
            plan.side_true = True
            plan.side_ramp_s = abs(plan.side_m) / CREEP_MS
            plan.unplanned_s = float(rng.uniform(180.0, 360.0)) + 2.0 * plan.side_ramp_s
        else:
            plan.side_ramp_s = float(rng.uniform(40.0, 90.0))
            plan.unplanned_s = float(rng.uniform(240.0, 480.0))
    elif kind == "multipath_flip":
        plan.flip_m = a + span * float(rng.uniform(0.3, 0.7))
    elif kind == "tracker_dies":
        plan.outage_from_m = a + span * float(rng.uniform(0.3, 0.7))
        plan.outage_s = 1e9
    elif kind == "traffic":
        plan.jams = congestion(stop_m, length_m, rng)
    return plan


def congestion(
    stop_m: list[float], length_m: float, rng: np.random.Generator
) -> tuple[tuple[float, float, float], ...]:
    """Stretches of slow traffic on the legs that can hold one, a longer leg more often."""
    room = 2 * CONGESTION_CLEAR_M + CONGESTION_M[0]
    spans = [
        (a + CONGESTION_CLEAR_M, b - CONGESTION_CLEAR_M)
        for a, b in legs(stop_m, length_m)
        if b - a >= room
    ]
    if not spans:
        return ()
    weight = np.array([b - a for a, b in spans])
    out = []
    for _ in range(int(rng.integers(CONGESTION_N[0], CONGESTION_N[1] + 1))):
        a, b = spans[int(rng.choice(len(spans), p=weight / weight.sum()))]
        size = min(float(rng.uniform(*CONGESTION_M)), b - a)
        lo = float(rng.uniform(a, b - size))
        out.append((lo, lo + size, float(rng.uniform(*CONGESTION_MS))))
    return tuple(out)


def divert_route(
    net: RoadNetwork, route: Route, kind: str, rng: np.random.Generator
) -> Route | None:
    """The driven route for a detour fault, or None when no usable one was found.

    ``detour``: leave the route mid-leg for a parallel street and rejoin a few blocks on.
    ``detour_no_rejoin``: after the last stop, head off somewhere else and end there.
    """
    stops = route.stop_edges
    if kind == "detour":
        bounds = [-1, *stops, len(route.nodes) - 1]
        gaps = [(p, q) for p, q in itertools.pairwise(bounds) if q - p >= 7]
        for idx in rng.permutation(len(gaps)):
            p, q = gaps[int(idx)]
            i = p + 2
            try:
                return detour(net, route, i, min(i + 3, q - 2))
            except ValueError:
                continue
        return None
    if kind == "detour_no_rejoin":
        i = (stops[-1] if stops else 0) + 3
        if i >= len(route.nodes) - 3:
            return None
        x, y = route.xy_m(net)
        g = net.grid_nodes
        gap_m = np.hypot(net.x_m[g][:, None] - x[None, :], net.y_m[g][:, None] - y[None, :])
        far = g[gap_m.min(axis=1) > 600.0]
        for dest in rng.permutation(far)[:5]:
            try:
                return divert(net, route, i, int(dest))
            except ValueError:
                continue
        return None
    return None
