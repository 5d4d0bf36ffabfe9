"""A deterministic, city-like street network in real WGS84 coordinates.

The network is a jittered grid (residential streets every block, arterials every few
blocks, some residential links missing) inside a ring road, built in a local metric
frame (x east, y north, metres) around a configurable centre. Every edge is a straight
street with a road class and a speed limit in km/h.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: road class -> speed limit, km/h
SPEED_LIMIT_KMH: dict[str, float] = {"residential": 30.0, "arterial": 50.0, "highway": 80.0}

_WGS84_A_M = 6_378_137.0
_WGS84_E2 = 6.694379990141317e-3


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """Local tangent-plane projection around (lat0, lon0).

    Uses the WGS84 meridional and prime-vertical radii at the centre, so distances are
    correct to ~1e-5 relative over a city (a plain spherical Earth would be ~0.5% off
    north-south, enough to misplace speed-limit ranges by tens of metres).
    """

    lat0: float
    lon0: float

    @property
    def _radii_m(self) -> tuple[float, float]:
        s = math.sin(math.radians(self.lat0))
        w = 1.0 - _WGS84_E2 * s * s
        meridional = _WGS84_A_M * (1.0 - _WGS84_E2) / w**1.5
        prime_vertical = _WGS84_A_M / math.sqrt(w)
        return meridional, prime_vertical * math.cos(math.radians(self.lat0))

    def to_lonlat(self, x_m: F64, y_m: F64) -> tuple[F64, F64]:
        m, n = self._radii_m
        return self.lon0 + np.degrees(x_m / n), self.lat0 + np.degrees(y_m / m)

    def to_xy(self, lon: F64, lat: F64) -> tuple[F64, F64]:
        m, n = self._radii_m
        return np.radians(lon - self.lon0) * n, np.radians(lat - self.lat0) * m


@dataclass(slots=True)
class RoadNetwork:
    """Nodes in metres (local frame) and undirected straight edges with a class."""

    frame: LocalFrame
    x_m: F64
    y_m: F64
    edge_u: I64
    edge_v: I64
    edge_class: list[str]
    adjacency: list[list[tuple[int, int]]]  # node -> [(neighbour, edge index)]
    grid_nodes: I64  # nodes of the street grid (candidates for depots), not the ring

    def edge_length_m(self, e: int) -> float:
        u, v = int(self.edge_u[e]), int(self.edge_v[e])
        return math.hypot(self.x_m[v] - self.x_m[u], self.y_m[v] - self.y_m[u])

    def edge_limit_kmh(self, e: int) -> float:
        return SPEED_LIMIT_KMH[self.edge_class[e]]

    def edge_between(self, u: int, v: int) -> int:
        for w, e in self.adjacency[u]:
            if w == v:
                return e
        raise KeyError(f"no edge {u}-{v}")


def build_network(
    seed: int,
    centre: tuple[float, float] = (-6.2, 106.85),
    blocks: int = 24,
    block_m: float = 220.0,
    arterial_every: int = 4,
    missing_fraction: float = 0.08,
) -> RoadNetwork:
    """Build the network for ``seed`` around ``centre`` = (lat, lon).

    ``blocks`` x ``blocks`` grid cells of about ``block_m`` metres; node positions are
    jittered so streets are not perfectly straight lines across the city. A ring road
    (class highway) runs ``1.5 * block_m`` outside the grid and is joined to every
    arterial end by a ramp.
    """
    rng = np.random.default_rng(seed)
    n = blocks + 1
    half = blocks * block_m / 2.0
    gx, gy = np.meshgrid(np.arange(n) * block_m - half, np.arange(n) * block_m - half)
    jitter = block_m * 0.12
    xs = (gx + rng.uniform(-jitter, jitter, gx.shape)).ravel()
    ys = (gy + rng.uniform(-jitter, jitter, gy.shape)).ravel()

    edges: list[tuple[int, int, str]] = []

    def node(r: int, c: int) -> int:
        return r * n + c

    for r in range(n):
        for c in range(n):
            for dr, dc in ((0, 1), (1, 0)):
                r2, c2 = r + dr, c + dc
                if r2 >= n or c2 >= n:
                    continue
                # a horizontal link lies on row r, a vertical one on column c
                line = r if dr == 0 else c
                arterial = line % arterial_every == 0
                if not arterial and rng.random() < missing_fraction:
                    continue
                edges.append((node(r, c), node(r2, c2), "arterial" if arterial else "residential"))

    # Ring road: a square with chamfered corners, walked counter-clockwise, one ring
    # node per arterial end (joined to it by a ramp).
    ring_off = half + 1.5 * block_m
    ch = ring_off - block_m  # where a chamfer starts
    arts = [i for i in range(n) if i % arterial_every == 0]
    ring_pts: list[tuple[float, float, int | None]] = []
    ring_pts += [(i * block_m - half, -ring_off, node(0, i)) for i in arts]
    ring_pts += [(ch, -ring_off, None), (ring_off, -ch, None)]
    ring_pts += [(ring_off, i * block_m - half, node(i, n - 1)) for i in arts]
    ring_pts += [(ring_off, ch, None), (ch, ring_off, None)]
    ring_pts += [(i * block_m - half, ring_off, node(n - 1, i)) for i in reversed(arts)]
    ring_pts += [(-ch, ring_off, None), (-ring_off, ch, None)]
    ring_pts += [(-ring_off, i * block_m - half, node(i, 0)) for i in reversed(arts)]
    ring_pts += [(-ring_off, -ch, None), (-ch, -ring_off, None)]
    base = len(xs)
    rx = np.array([p[0] for p in ring_pts])
    ry = np.array([p[1] for p in ring_pts])
    xs = np.concatenate([xs, rx])
    ys = np.concatenate([ys, ry])
    for k, (_x, _y, g) in enumerate(ring_pts):
        edges.append((base + k, base + (k + 1) % len(ring_pts), "highway"))
        if g is not None:
            edges.append((g, base + k, "arterial"))

    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(len(xs))]
    for e, (u, v, _cls) in enumerate(edges):
        adjacency[u].append((v, e))
        adjacency[v].append((u, e))
    grid = _largest_component(adjacency, n * n)
    return RoadNetwork(
        frame=LocalFrame(centre[0], centre[1]),
        x_m=xs.astype(np.float64),
        y_m=ys.astype(np.float64),
        edge_u=np.array([e[0] for e in edges], np.int64),
        edge_v=np.array([e[1] for e in edges], np.int64),
        edge_class=[e[2] for e in edges],
        adjacency=adjacency,
        grid_nodes=grid,
    )


def _largest_component(adjacency: list[list[tuple[int, int]]], n_grid: int) -> I64:
    """Grid nodes (index < n_grid) reachable from the ring; missing links may strand some."""
    start = len(adjacency) - 1  # a ring node
    seen = {start}
    todo = [start]
    while todo:
        u = todo.pop()
        for v, _e in adjacency[u]:
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return np.array(sorted(i for i in seen if i < n_grid), np.int64)
