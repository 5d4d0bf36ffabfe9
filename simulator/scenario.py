"""A whole simulated fleet: network, trips (CONTRACT §3 plans), motion, trackers, faults.

``build(config)`` makes a :class:`Simulation`; each :meth:`Simulation.tick` advances
one simulated second and returns the MQTT messages delivered in it. Offline output
(``simulator.offline``) and the live publisher (``simulator.publisher``) both drive this
same loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.drivers import Driver, per_vehicle, staff
from simulator.faults import CREEP_MS, FaultPlan, assign_faults, divert_route, place_fault
from simulator.gps import Devices, GpsConfig, Message
from simulator.motion import HALT_END, HALT_STOP, HALT_UNPLANNED, Fleet, PathPool
from simulator.network import RoadNetwork, build_network
from simulator.plans import make_plan, route_geometry, speed_limits_kmh
from simulator.routing import Route, route_through_stops

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEFAULT_START_MS = 1_795_309_200_000  # 2026-11-22T08:00:00+07:00
END_DWELL_S = 30.0  # the tracker keeps reporting this long after reaching the route end
MAX_SIM_S = 8 * 3600


@dataclass(slots=True)
class ScenarioConfig:
    vehicles: int = 50
    seed: int = 1
    #: the road network's seed (None = ``seed``): scenarios on one network with other
    #: seeds are other days of the same city (e.g. a history to learn speeds from)
    network_seed: int | None = None
    interval_s: int = 5  # seconds between fixes per vehicle (1-30)
    duration_s: float | None = None  # cap on simulated time; None = until every trip ends
    start_ms: int = DEFAULT_START_MS  # planned start of the first trip, epoch ms
    stagger_s: float = 600.0  # planned starts spread over this many seconds
    centre: tuple[float, float] = (-6.2, 106.85)  # lat, lon
    stops_per_trip: int = 6
    faults: dict[str, float] = field(default_factory=dict)
    gps: GpsConfig = field(default_factory=GpsConfig)
    route_pool: int | None = None  # distinct planned routes (None = one per vehicle)
    id_prefix: str = "SIM"
    #: who drives: None = one driver per vehicle (its pace, its behavioural fault as the
    #: habit); a pool (simulator.drivers.make_pool) = those drivers, habits and paces
    drivers: list[Driver] | None = None


@dataclass(slots=True)
class VehicleTruth:
    """What really happened to one vehicle (all positions on its driven path, metres)."""

    fault: str | None
    fault_plan: FaultPlan
    driven: Route
    stop_driven_m: list[float]  # per planned stop (nan when the driven path skips it)
    halts: list[tuple[int, float, float, int]]  # (kind, s_m, dwell_s, stop index or -1)


@dataclass(slots=True)
class Sideways:
    """Positions off the road (see the pull_off, standing_drift and multipath_flip
    patterns in :mod:`simulator.faults`): per vehicle, the unplanned halt at which it (or
    only its fixes) moves sideways, and the multipath burst."""

    halt: I64  # index of the vehicle's unplanned halt, -1 none
    side_m: F64  # signed: right of the direction of travel when positive
    ramp_s: F64
    true: npt.NDArray[np.bool_]  # the vehicle moves (pull_off), not only its fixes
    flip_m: F64  # multipath burst from here along the driven path (nan none)
    flip_left: I64  # burst fixes still to give
    rng: np.random.Generator

    @classmethod
    def build(cls, fleet: Fleet, plans: list[FaultPlan], seed: int) -> Sideways:
        n = len(plans)
        halt = np.full(n, -1, np.int64)
        for i in range(n):
            hit = np.flatnonzero(fleet.halt_kind[i] == HALT_UNPLANNED)
            if len(hit) and plans[i].side_m:
                halt[i] = int(hit[0])
        return cls(
            halt,
            np.array([fp.side_m for fp in plans]),
            np.array([max(fp.side_ramp_s, 1.0) for fp in plans]),
            np.array([fp.side_true for fp in plans]),
            np.array([fp.flip_m for fp in plans]),
            np.where(np.isnan([fp.flip_m for fp in plans]), 0, 4).astype(np.int64),
            np.random.default_rng([seed, 7_000_003]),
        )

    def apply(
        self, fleet: Fleet, t_s: float, idx: I64, x: F64, y: F64, hdg: F64, v: F64, fixes: bool
    ) -> tuple[F64, F64, F64]:
        """(x, y, speed m/s) of vehicles ``idx`` off the road: the true positions, or with
        ``fixes`` what their trackers see (drift and multipath too)."""
        h = self.halt[idx]
        has = h >= 0
        if not has.any() and not (fixes and (self.flip_left[idx] > 0).any()):
            return x, y, v
        x, y, v = x.copy(), y.copy(), v.copy()
        rows = np.flatnonzero(has)
        i = idx[rows]
        a = fleet.arrive_s[i, h[rows]]
        dwell = fleet.halt_dwell_s[i, h[rows]]
        tau = t_s - a
        on = np.isfinite(a) & (tau >= 0.0) & (tau <= dwell) & (self.true[i] | fixes)
        ramp = np.clip(np.minimum(tau, dwell - tau) / self.ramp_s[i], 0.0, 1.0)
        side = np.where(on, self.side_m[i] * ramp, 0.0)
        rad = np.radians(hdg[rows])
        x[rows] += side * np.cos(rad)  # the right of the heading
        y[rows] -= side * np.sin(rad)
        creeping = on & self.true[i] & (ramp < 1.0)
        v[rows] = np.where(creeping, CREEP_MS, v[rows])
        if fixes:
            s = fleet.s_m[idx]
            burst = np.flatnonzero((self.flip_left[idx] > 0) & (s >= self.flip_m[idx]))
            for r in burst.tolist():
                k = int(idx[r])
                sign = 1.0 if self.flip_left[k] % 2 else -1.0
                d = sign * float(self.rng.uniform(55.0, 90.0))
                x[r] += d * math.cos(math.radians(hdg[r]))
                y[r] -= d * math.sin(math.radians(hdg[r]))
                self.flip_left[k] -= 1
        return x, y, v


@dataclass(slots=True)
class Simulation:
    config: ScenarioConfig
    net: RoadNetwork
    plans: list[dict[str, Any]]
    planned_routes: list[Route]  # per vehicle
    truths: list[VehicleTruth]
    fleet: Fleet
    devices: Devices
    phase_s: I64
    t_s: int
    drivers: list[Driver]  # per vehicle, as its plan names them
    sideways: Sideways | None = None

    @property
    def vehicle_ids(self) -> list[str]:
        return [p["vehicle_id"] for p in self.plans]

    def done(self) -> bool:
        assert self.fleet.finish_s is not None
        return bool(np.all(self.t_s >= self.fleet.finish_s))

    def tick(self) -> list[Message]:
        """Messages delivered during second t_s, then advance every vehicle by one second."""
        f, t = self.fleet, self.t_s
        act = np.flatnonzero(f.active(t) & ((t - self.phase_s) % self.config.interval_s == 0))
        msgs: list[Message] = []
        if len(act):
            assert f.s_m is not None and f.v_ms is not None
            s = f.s_m[act]
            act = act[~self.devices.in_outage(t, act, s)]
            x, y, _lim, hdg = f.pool.locate(f.path[act], f.s_m[act])
            v = f.v_ms[act]
            if self.sideways is not None:
                x, y, v = self.sideways.apply(f, t, act, x, y, hdg, v, fixes=True)
            msgs = self.devices.observe(t, act, x, y, v, hdg)
        else:
            msgs = self.devices.delayed.pop(t, [])
        f.step(t, 1.0)
        self.t_s = t + 1
        return msgs


def _make_route(net: RoadNetwork, rng: np.random.Generator, k: int) -> Route:
    """A delivery run: loop, out-and-back, or two far clusters (highway legs)."""
    grid = net.grid_nodes
    gx, gy = net.x_m[grid], net.y_m[grid]
    eu, ev = net.edge_u, net.edge_v
    mid_x, mid_y = (net.x_m[eu] + net.x_m[ev]) / 2, (net.y_m[eu] + net.y_m[ev]) / 2
    seg = np.hypot(net.x_m[ev] - net.x_m[eu], net.y_m[ev] - net.y_m[eu])
    in_grid = np.isin(eu, grid) & np.isin(ev, grid)
    usable = np.flatnonzero(in_grid & (seg >= 170.0))
    pattern = rng.choice(["loop", "loop", "out_and_back", "highway"])
    depot = int(rng.choice(grid))
    span = float(gx.max() - gx.min())
    if pattern == "highway":
        # depot near one corner, stops around it and around the opposite corner
        sx, sy = rng.choice([-1.0, 1.0], 2)
        centres = [(sx * span * 0.35, sy * span * 0.35), (-sx * span * 0.35, -sy * span * 0.35)]
        depot = int(grid[np.argmin(np.hypot(gx - centres[0][0], gy - centres[0][1]))])
    else:
        c = int(rng.choice(grid))
        centres = [(float(net.x_m[c]), float(net.y_m[c]))]
    chosen: list[int] = []
    for ci, (cx, cy) in enumerate(centres):
        want = k // len(centres) + (1 if ci < k % len(centres) else 0)
        d = np.hypot(mid_x[usable] - cx, mid_y[usable] - cy)
        near = usable[d < 1600.0]
        for e in rng.permutation(near):
            if want == 0:
                break
            ex, ey = mid_x[e], mid_y[e]
            far_from_depot = math.hypot(ex - net.x_m[depot], ey - net.y_m[depot]) > 300.0
            spread = all(math.hypot(ex - mid_x[o], ey - mid_y[o]) > 300.0 for o in chosen)
            if far_from_depot and spread:
                chosen.append(int(e))
                want -= 1
    # visit nearest-first from the depot, as a dispatcher's simple tour would
    order: list[int] = []
    px, py = net.x_m[depot], net.y_m[depot]
    todo = list(chosen)
    while todo:
        nxt = min(todo, key=lambda e: math.hypot(mid_x[e] - px, mid_y[e] - py))
        todo.remove(nxt)
        order.append(nxt)
        px, py = mid_x[nxt], mid_y[nxt]
    return route_through_stops(net, depot, order, out_and_back=pattern == "out_and_back")


def _path_arrays(net: RoadNetwork, route: Route) -> tuple[F64, F64, F64]:
    x, y = route.xy_m(net)
    return x, y, speed_limits_kmh(net, route.nodes)


def _run_plan_timing(
    pool: PathPool,
    path: I64,
    start_s: F64,
    stop_m: list[F64],
    service_s: list[F64],
    utc_offset_h: float,
) -> list[F64]:
    """Planned arrival (epoch s) at each stop: a nominal driver, no faults, same traffic."""
    n = len(path)
    fleet = _fleet(
        pool,
        path,
        start_s,
        np.ones(n),
        [
            [
                (HALT_STOP, float(m), float(d), i)
                for i, (m, d) in enumerate(zip(ms, ds, strict=True))
            ]
            + [(HALT_END, float(pool.length_m[p]), 0.0, -1)]
            for ms, ds, p in zip(stop_m, service_s, path, strict=True)
        ],
        [FaultPlan() for _ in range(n)],
        utc_offset_h,
    )
    t = int(start_s.min())
    assert fleet.finish_s is not None
    while t < start_s.max() + MAX_SIM_S and not np.all(t >= fleet.finish_s):
        fleet.step(t, 1.0)
        t += 1
    assert fleet.arrive_s is not None
    return [fleet.arrive_s[i, : len(stop_m[i])] for i in range(n)]


def _fleet(
    pool: PathPool,
    path: I64,
    depart_s: F64,
    driver: F64,
    halts: list[list[tuple[int, float, float, int]]],
    faults: list[FaultPlan],
    utc_offset_h: float,
) -> Fleet:
    n, h = len(path), max(len(x) for x in halts)
    j = max(1, max(len(fp.jams) for fp in faults))
    jam_m = np.full((n, j, 2), np.nan)
    jam_ms = np.full((n, j), np.inf)
    for i, fp in enumerate(faults):
        for k, (lo, hi, ms) in enumerate(fp.jams):
            jam_m[i, k], jam_ms[i, k] = (lo, hi), ms
    halt_m = np.full((n, h), np.inf)
    dwell = np.zeros((n, h))
    kind = np.full((n, h), -1, np.int64)
    ref = np.full((n, h), -1, np.int64)
    for i, hs in enumerate(halts):
        for j, (k, m, d, r) in enumerate(sorted(hs, key=lambda q: q[1])):
            halt_m[i, j], dwell[i, j], kind[i, j], ref[i, j] = m, d, k, r
    return Fleet(
        pool=pool,
        path=path,
        depart_s=depart_s,
        driver=driver,
        halt_m=halt_m,
        halt_dwell_s=dwell,
        halt_kind=kind,
        halt_ref=ref,
        speeding_m=np.array([fp.speeding_m for fp in faults], np.float64).reshape(n, 2),
        speeding_extra_kmh=np.array([fp.speeding_extra_kmh for fp in faults]),
        jam_m=jam_m,
        jam_ms=jam_ms,
        utc_offset_h=utc_offset_h,
    )


def build(config: ScenarioConfig) -> Simulation:
    """Everything for one seeded scenario (deterministic for a given config)."""
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    net = build_network(cfg.seed if cfg.network_seed is None else cfg.network_seed, cfg.centre)
    utc_offset_h = round(cfg.centre[1] / 15.0)
    n = cfg.vehicles
    n_routes = min(n, cfg.route_pool or n)
    routes = [
        _make_route(net, np.random.default_rng([cfg.seed, p]), cfg.stops_per_trip)
        for p in range(n_routes)
    ]
    kinds = assign_faults(cfg.faults, n, rng)
    pooled = None
    if cfg.drivers is not None:  # the drivers' habits decide the behavioural faults
        pooled, kinds = staff(cfg.drivers, cfg.seed, kinds)
    paths = [_path_arrays(net, r) for r in routes]
    planned = [routes[i % n_routes] for i in range(n)]
    driven: list[Route] = []
    path_idx = np.zeros(n, np.int64)
    for i in range(n):
        kind = kinds[i]
        d = (
            divert_route(net, planned[i], kind, rng)
            if kind in ("detour", "detour_no_rejoin")
            else None
        )
        if kinds[i] in ("detour", "detour_no_rejoin") and d is None:
            kinds[i] = None
        if d is None:
            driven.append(planned[i])
            path_idx[i] = i % n_routes
        else:
            driven.append(d)
            path_idx[i] = len(paths)
            paths.append(_path_arrays(net, d))
    pool = PathPool.build(paths)

    start_s = cfg.start_ms // 1000 + np.floor(rng.uniform(0, cfg.stagger_s, n))
    route_stop_m = [r.stop_route_m(net) for r in routes]
    route_service = [np.floor(rng.uniform(180, 420, len(m))) for m in route_stop_m]
    service = [route_service[i % n_routes] for i in range(n)]
    # Planned timing per distinct route, from the first vehicle that drives it; the others
    # keep the same offsets from their own start (exact offline, where every vehicle has
    # its own route; live, starts are within minutes so the traffic factor barely moves).
    first = np.arange(n_routes)
    route_arr = _run_plan_timing(
        pool, first, start_s[first], route_stop_m, route_service, utc_offset_h
    )
    planned_arr = [route_arr[i % n_routes] - start_s[i % n_routes] + start_s[i] for i in range(n)]
    geoms = [route_geometry(net, r) for r in routes]
    plans = [
        make_plan(
            geoms[i % n_routes],
            f"{cfg.id_prefix}-{cfg.seed}-{i:05d}",
            int(start_s[i]),
            planned_arr[i],
            service[i],
        )
        for i in range(n)
    ]

    truths: list[VehicleTruth] = []
    halts_all: list[list[tuple[int, float, float, int]]] = []
    fplans: list[FaultPlan] = []
    for i in range(n):
        d = driven[i]
        d_stop = d.stop_route_m(net).tolist()
        n_planned = len(planned[i].stop_edges)
        stop_m = d_stop + [math.nan] * (n_planned - len(d_stop))
        fp = place_fault(kinds[i], d_stop, float(pool.length_m[path_idx[i]]), rng)
        halts = [
            (HALT_STOP, m, float(service[i][k]) * float(rng.uniform(0.8, 1.2)), k)
            for k, m in enumerate(d_stop)
            if k != fp.skip_stop
        ]
        if not math.isnan(fp.unplanned_m):
            halts.append((HALT_UNPLANNED, fp.unplanned_m, fp.unplanned_s, -1))
        halts.append((HALT_END, float(pool.length_m[path_idx[i]]), END_DWELL_S, -1))
        halts.sort(key=lambda q: q[1])
        halts_all.append(halts)
        fplans.append(fp)
        truths.append(VehicleTruth(kinds[i], fp, d, stop_m, halts))
    depart = start_s + np.floor(rng.uniform(0, 120, n))
    depart += np.array([fp.late_start_s for fp in fplans])
    pace = rng.uniform(0.9, 1.03, n)
    if pooled is None:
        drivers = per_vehicle(cfg.seed, cfg.id_prefix, kinds, pace)
    else:
        drivers = pooled
        pace = np.array([d.pace for d in drivers])
    plans = [_with_driver(p, d) for p, d in zip(plans, drivers, strict=True)]
    fleet = _fleet(pool, path_idx, depart, pace, halts_all, fplans, utc_offset_h)
    devices = Devices(
        cfg.gps,
        net.frame,
        np.random.default_rng([cfg.seed, 1_000_003]),
        n,
        outage_from_m=np.array([fp.outage_from_m for fp in fplans]),
        outage_s=np.array([fp.outage_s for fp in fplans]),
    )
    phase = rng.integers(0, cfg.interval_s, n)
    sideways = (
        Sideways.build(fleet, fplans, cfg.seed)
        if any(fp.side_m or not math.isnan(fp.flip_m) for fp in fplans)
        else None
    )
    return Simulation(
        cfg,
        net,
        plans,
        planned,
        truths,
        fleet,
        devices,
        phase,
        int(depart.min()),
        drivers,
        sideways,
    )


def _with_driver(plan: dict[str, Any], driver: Driver) -> dict[str, Any]:
    """The plan naming its driver (right after the vehicle, as a dispatcher writes it)."""
    out: dict[str, Any] = {}
    for key, value in plan.items():
        out[key] = value
        if key == "vehicle_id":
            out["driver_id"] = driver.driver_id
            out["driver_name"] = driver.name
    return out
