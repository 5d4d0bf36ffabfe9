"""Vehicle motion, advanced in bulk with NumPy (one row per vehicle, no per-vehicle objects).

Each vehicle drives one polyline of a :class:`PathPool` (its *driven* path, which equals
the planned route unless a detour was injected). All paths are laid end to end on one
global distance axis (``base + s``) so a single ``np.interp``/``searchsorted`` serves
every vehicle at once.

Speed model per tick: a static cap per path (speed limit, slowed for turns by the turn
angle, with a braking curve before each turn), scaled by the driver's factor and a
time-of-day traffic factor; episode overrides (speeding, jams); braking to the next
halt (planned stop, unplanned stop, route end); acceleration/deceleration limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

ACCEL_MS2 = 1.2
BRAKE_MS2 = 2.0
PROFILE_STEP_M = 10.0
MIN_TURN_SPEED_MS = 3.5
HALT_PLAN_FRACTION = 0.7
#: halt kinds
HALT_STOP, HALT_UNPLANNED, HALT_END = 0, 1, 2


def traffic_factor(epoch_s: F64 | float, utc_offset_h: float) -> F64:
    """Speed multiplier (0.65-1.0) for the local hour: morning and evening rush hours."""
    h = (np.asarray(epoch_s, np.float64) / 3600.0 + utc_offset_h) % 24.0
    return np.asarray(
        1.0 - 0.25 * np.exp(-(((h - 8.0) / 1.2) ** 2)) - 0.35 * np.exp(-(((h - 17.5) / 1.5) ** 2)),
        np.float64,
    )


def turn_speed_ms(x_m: F64, y_m: F64, limit_ms: F64) -> F64:
    """Cap at each vertex: limit * cos^2(turn/2), so 90° halves it and a U-turn crawls.

    ``limit_ms`` has one value per segment; the lower of the two adjacent limits applies.
    """
    cap = np.empty(len(x_m))
    cap[0] = limit_ms[0]
    cap[-1] = limit_ms[-1]
    if len(x_m) > 2:
        dx, dy = np.diff(x_m), np.diff(y_m)
        a = np.arctan2(dy, dx)
        turn = np.abs((np.diff(a) + np.pi) % (2 * np.pi) - np.pi)
        lim = np.minimum(limit_ms[:-1], limit_ms[1:])
        cap[1:-1] = np.maximum(MIN_TURN_SPEED_MS, lim * np.cos(turn / 2.0) ** 2)
    return cap


def speed_profile(x_m: F64, y_m: F64, limit_kmh: F64) -> tuple[F64, F64]:
    """(s_m, cap_ms) sampled every <= PROFILE_STEP_M along a path, with braking before turns.

    ``limit_kmh`` has one value per segment.
    """
    seg = np.hypot(np.diff(x_m), np.diff(y_m))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    lim_ms = limit_kmh / 3.6
    vertex_cap = turn_speed_ms(x_m, y_m, lim_ms)
    s_parts, v_parts = [], []
    for k in range(len(seg)):
        n = max(1, math.ceil(seg[k] / PROFILE_STEP_M))
        s_parts.append(cum[k] + np.arange(n) * (seg[k] / n))
        v = np.full(n, lim_ms[k])
        v[0] = min(vertex_cap[k], lim_ms[k])
        v_parts.append(v)
    s = np.concatenate([*s_parts, [cum[-1]]])
    v = np.concatenate([*v_parts, [vertex_cap[-1]]])
    # Backward pass: be able to brake down to every later cap (at the planning rate, so
    # the per-second steps following the curve never need more than BRAKE_MS2).
    ds = np.diff(s)
    plan_ms2 = HALT_PLAN_FRACTION * BRAKE_MS2
    for i in range(len(v) - 2, -1, -1):
        reach = math.sqrt(v[i + 1] ** 2 + 2.0 * plan_ms2 * ds[i])
        if reach < v[i]:
            v[i] = reach
    return s, v


@dataclass(slots=True)
class PathPool:
    """Driven paths laid end to end on one global distance axis."""

    base_m: F64  # per path: global coordinate of s = 0
    length_m: F64  # per path
    g_vertex_m: F64  # global coordinate of every vertex (all paths)
    x_m: F64
    y_m: F64
    seg_limit_kmh: F64  # per vertex: limit of the segment starting there
    seg_heading_deg: F64  # per vertex: heading of the segment starting there
    g_profile_m: F64
    profile_ms: F64

    @classmethod
    def build(cls, paths: list[tuple[F64, F64, F64]]) -> PathPool:
        """``paths``: (x_m, y_m, per-segment limit_kmh) for each path."""
        bases, lengths, gv, xs, ys, lims, hdgs, gp, vp = [], [], [], [], [], [], [], [], []
        offset = 0.0
        for x, y, lim in paths:
            cum = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
            s, v = speed_profile(x, y, lim)
            bases.append(offset)
            lengths.append(cum[-1])
            gv.append(offset + cum)
            xs.append(x)
            ys.append(y)
            lims.append(np.append(lim, lim[-1]))
            h = np.degrees(np.arctan2(np.diff(x), np.diff(y))) % 360.0
            hdgs.append(np.append(h, h[-1]))
            gp.append(offset + s)
            vp.append(v)
            offset += cum[-1] + 1000.0  # the gap keeps paths apart on the global axis
        cat = np.concatenate
        return cls(
            np.array(bases),
            np.array(lengths),
            cat(gv),
            cat(xs),
            cat(ys),
            cat(lims),
            cat(hdgs),
            cat(gp),
            cat(vp),
        )

    def locate(self, path: I64, s_m: F64) -> tuple[F64, F64, F64, F64]:
        """(x_m, y_m, segment limit km/h, heading deg) at distance s_m along each path."""
        g = self.base_m[path] + np.clip(s_m, 0.0, self.length_m[path])
        seg = np.clip(
            np.searchsorted(self.g_vertex_m, g, side="right") - 1, 0, len(self.g_vertex_m) - 2
        )
        # clamp onto the path's last segment at its end vertex
        x = np.interp(g, self.g_vertex_m, self.x_m)
        y = np.interp(g, self.g_vertex_m, self.y_m)
        return x, y, self.seg_limit_kmh[seg], self.seg_heading_deg[seg]

    def cap_ms(self, path: I64, s_m: F64) -> F64:
        return np.interp(self.base_m[path] + s_m, self.g_profile_m, self.profile_ms)


@dataclass(slots=True)
class Fleet:
    """State of every vehicle; :meth:`step` advances all of them by ``dt_s``."""

    pool: PathPool
    path: I64
    depart_s: F64  # epoch seconds the vehicle sets off
    driver: F64  # speed factor of the driver (0.9 = cautious, 1.03 = brisk)
    halt_m: F64  # (N, H) halts along the driven path, sorted, +inf padded
    halt_dwell_s: F64  # (N, H)
    halt_kind: I64  # (N, H) HALT_*; -1 padding
    halt_ref: I64  # (N, H) stop index for HALT_STOP, else -1
    speeding_m: F64  # (N, 2) [from, to) range driven over the limit; nan = none
    speeding_extra_kmh: F64  # (N,)
    jam_m: F64  # (N, J, 2) ranges driven at no more than jam_ms; nan = none
    jam_ms: F64  # (N, J)
    utc_offset_h: float = 7.0
    s_m: F64 = field(init=False)
    v_ms: F64 = field(init=False)
    next_halt: I64 = field(init=False)
    dwell_until_s: F64 = field(init=False)
    finish_s: F64 = field(init=False)
    arrive_s: F64 = field(init=False)  # (N, H) when each halt was reached, nan before

    def __post_init__(self) -> None:
        n, h = self.halt_m.shape
        self.s_m = np.zeros(n)
        self.v_ms = np.zeros(n)
        self.next_halt = np.zeros(n, np.int64)
        self.dwell_until_s = np.full(n, -np.inf)
        self.finish_s = np.full(n, np.inf)
        self.arrive_s = np.full((n, h), np.nan)

    def __len__(self) -> int:
        return len(self.path)

    def active(self, t_s: float) -> npt.NDArray[np.bool_]:
        """Vehicles on their trip at t_s (departed, not yet switched off at the end)."""
        return (t_s >= self.depart_s) & (t_s < self.finish_s)

    def step(self, t_s: float, dt_s: float) -> None:
        """Advance every vehicle from t_s to t_s + dt_s."""
        s, v, nh = self.s_m, self.v_ms, self.next_halt
        assert s is not None and v is not None and nh is not None
        assert self.dwell_until_s is not None and self.arrive_s is not None
        rows = np.arange(len(s))
        moving = self.active(t_s) & (t_s >= self.dwell_until_s) & (nh < self.halt_m.shape[1])
        # Look one step ahead: a cap applied only once reached would always brake late.
        ahead = s + v * dt_s
        cap = (
            self.pool.cap_ms(self.path, ahead)
            * self.driver
            * traffic_factor(t_s, self.utc_offset_h)
        )
        _, _, limit_kmh, _ = self.pool.locate(self.path, s)
        in_sp = (s >= self.speeding_m[:, 0]) & (s < self.speeding_m[:, 1])
        cap = np.where(in_sp, cap / self.driver * (1.0 + self.speeding_extra_kmh / limit_kmh), cap)
        in_jam = (s[:, None] >= self.jam_m[:, :, 0]) & (s[:, None] < self.jam_m[:, :, 1])
        cap = np.minimum(cap, np.where(in_jam, self.jam_ms, np.inf).min(axis=1))
        halt = self.halt_m[rows, np.minimum(nh, self.halt_m.shape[1] - 1)]
        # Plan the stop at HALT_PLAN_FRACTION of the braking limit, so the discrete
        # steps' lag is absorbed and the final snap onto the halt is from walking pace.
        to_halt = np.maximum(halt - ahead, 0.0)
        plan_ms2 = HALT_PLAN_FRACTION * BRAKE_MS2
        cap = np.minimum(cap, np.maximum(np.sqrt(2.0 * plan_ms2 * to_halt), 1.0))
        v_new = np.clip(cap, v - BRAKE_MS2 * dt_s, v + ACCEL_MS2 * dt_s)
        v_new = np.where(moving, np.maximum(v_new, 0.0), 0.0)
        s_new = np.where(moving, s + 0.5 * (v + v_new) * dt_s, s)
        arrived = moving & (s_new >= halt)
        if arrived.any():
            a = np.flatnonzero(arrived)
            k = nh[a]
            s_new[a] = halt[a]
            v_new[a] = 0.0
            t_arr = t_s + dt_s
            self.arrive_s[a, k] = t_arr
            self.dwell_until_s[a] = t_arr + self.halt_dwell_s[a, k]
            ends = a[self.halt_kind[a, k] == HALT_END]
            assert self.finish_s is not None
            self.finish_s[ends] = self.dwell_until_s[ends]
            nh[a] += 1
        self.s_m, self.v_ms = s_new, v_new
