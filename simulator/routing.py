"""Shortest paths on the road network and delivery routes through stops.

A route is a node sequence; a delivery stop sits at the middle of one of the route's
edges (curbside on a straight street), identified by the edge's position in the
sequence. Paths minimise free-flow travel time (length / speed limit), so long trips
naturally take the ring road.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from simulator.network import SPEED_LIMIT_KMH, RoadNetwork


def shortest_path(
    net: RoadNetwork, src: int, dst: int, banned: frozenset[int] = frozenset()
) -> list[int]:
    """Fastest node path src -> dst (Dijkstra on travel time), avoiding ``banned`` nodes.

    Raises ``ValueError`` when dst is unreachable.
    """
    if src == dst:
        return [src]
    best = {src: 0.0}
    prev: dict[int, int] = {}
    heap = [(0.0, src)]
    while heap:
        t_s, u = heapq.heappop(heap)
        if u == dst:
            break
        if t_s > best.get(u, math.inf):
            continue
        for v, e in net.adjacency[u]:
            if v in banned:
                continue
            cand = t_s + net.edge_length_m(e) / (SPEED_LIMIT_KMH[net.edge_class[e]] / 3.6)
            if cand < best.get(v, math.inf):
                best[v] = cand
                prev[v] = u
                heapq.heappush(heap, (cand, v))
    if dst not in prev:
        raise ValueError(f"node {dst} unreachable from {src}")
    path = [dst]
    while path[-1] != src:
        path.append(prev[path[-1]])
    return path[::-1]


@dataclass(slots=True)
class Route:
    """A node path plus the edge positions (index i = edge nodes[i] -> nodes[i+1]) of stops."""

    nodes: list[int]
    stop_edges: list[int] = field(default_factory=list)

    def xy_m(self, net: RoadNetwork) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(self.nodes, np.int64)
        return net.x_m[idx], net.y_m[idx]

    def cum_m(self, net: RoadNetwork) -> np.ndarray:
        x, y = self.xy_m(net)
        return np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])

    def stop_route_m(self, net: RoadNetwork) -> np.ndarray:
        cum = self.cum_m(net)
        e = np.asarray(self.stop_edges, np.int64)
        return (cum[e] + cum[e + 1]) / 2.0


def _append(nodes: list[int], path: list[int]) -> None:
    nodes.extend(path[1:] if nodes and path and nodes[-1] == path[0] else path)


def route_through_stops(
    net: RoadNetwork, depot: int, stop_edges: list[int], out_and_back: bool = False
) -> Route:
    """Depot -> each stop edge in order -> back to the depot.

    Each stop edge is driven in whichever direction is reached sooner. With
    ``out_and_back`` the return leg retraces the outbound path exactly (a dead-end style
    delivery run); otherwise the return is the fastest path (a loop).
    """
    nodes: list[int] = [depot]
    stops: list[int] = []
    for e in stop_edges:
        u, v = int(net.edge_u[e]), int(net.edge_v[e])
        here = nodes[-1]
        to_u = shortest_path(net, here, u)
        to_v = shortest_path(net, here, v)
        far, lead = (v, to_u) if _length(net, to_u) <= _length(net, to_v) else (u, to_v)
        _append(nodes, lead)
        stops.append(len(nodes) - 1)
        nodes.append(far)
    if out_and_back:
        nodes.extend(nodes[-2::-1])
    else:
        _append(nodes, shortest_path(net, nodes[-1], depot))
    return Route(nodes, stops)


def _length(net: RoadNetwork, path: list[int]) -> float:
    idx = np.asarray(path, np.int64)
    return float(np.hypot(np.diff(net.x_m[idx]), np.diff(net.y_m[idx])).sum())


def detour(net: RoadNetwork, route: Route, i: int, j: int) -> Route:
    """The route with nodes[i..j] replaced by a path that avoids the nodes in between.

    Stops on edges at or after position j keep their edge (indices shifted).
    """
    banned = frozenset(route.nodes[i + 1 : j]) - {route.nodes[i], route.nodes[j]}
    alt = shortest_path(net, route.nodes[i], route.nodes[j], banned)
    nodes = route.nodes[:i] + alt + route.nodes[j + 1 :]
    shift = len(alt) - (j - i + 1)
    stops = [p if p < i else p + shift for p in route.stop_edges]
    return Route(nodes, stops)


def divert(net: RoadNetwork, route: Route, i: int, dest: int) -> Route:
    """Leave the route at position i for ``dest`` and never come back (stops before i kept)."""
    banned = frozenset(route.nodes[i + 1 :]) - {dest, route.nodes[i]}
    alt = shortest_path(net, route.nodes[i], dest, banned)
    return Route(route.nodes[:i] + alt, [p for p in route.stop_edges if p < i])
