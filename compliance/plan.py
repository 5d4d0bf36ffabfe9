"""The trip plan the OMS dispatches (CONTRACT §3): parsing and whole-plan validation.

``TripPlan.model_validate(obj)`` accepts the JSON object; every problem in a bad plan is
reported at once (pydantic collects them), so the API can answer one 422 naming them all.
Geometric checks that need a metric projection (stops near the route, ranges within the
route length) live in :func:`compliance.route.validate_geometry`, which the API and
``replay`` run after this structural parse.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import fields
from datetime import UTC, datetime
from itertools import pairwise
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from compliance.config import Thresholds
from compliance.text import Line, json_problems

VEHICLE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: the epoch-ms range a timestamp may take: years 0001-9999, what ``datetime`` holds
MIN_TIME_MS = -62_135_596_800_000
MAX_TIME_MS = 253_402_300_799_999
_THRESHOLD_NAMES = frozenset(f.name for f in fields(Thresholds))


def _shown(value: str) -> str:
    """``value`` quoted for an error message (escaped, and cut when long)."""
    return repr(value) if len(value) <= 80 else repr(value[:80]) + "..."


def _in_range(ms: int) -> int:
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise ValueError("timestamp out of range (years 0001-9999)")
    return ms


def parse_time_ms(value: Any) -> int:
    """RFC 3339 string (offset required) or integer epoch milliseconds -> epoch ms.

    Raises ``ValueError`` (only) for anything else, including times outside the years
    0001-9999, so every result converts to a ``datetime`` and a ``timestamptz``."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be RFC 3339 or epoch milliseconds, not a boolean")
    if isinstance(value, int):
        return _in_range(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("timestamp is not a finite number")
        return _in_range(int(value))
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isprintable()):
            # (datetime.fromisoformat skips a stray character before the offset, NUL too)
            raise ValueError(f"not an RFC 3339 timestamp (control character): {_shown(value)}")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not an RFC 3339 timestamp: {_shown(value)}") from exc
        if dt.tzinfo is None:
            raise ValueError(
                f"timestamp needs a UTC offset (e.g. 'Z' or '+07:00'): {_shown(value)}"
            )
        try:
            return _in_range(round(dt.astimezone(UTC).timestamp() * 1000))
        except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise ValueError("timestamp out of range (years 0001-9999)") from exc
    raise ValueError("timestamp must be RFC 3339 or epoch milliseconds")


TimeMs = Annotated[int, BeforeValidator(parse_time_ms)]
Position = tuple[float, float]  # [lon, lat]


def _check_position(p: Position) -> Position:
    lon, lat = p
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValueError("coordinate is not finite")
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"coordinate out of range (expected [lon, lat]): {list(p)}")
    return p


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: TimeMs
    end: TimeMs

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end < self.start:
            raise ValueError("window end is before its start")
        return self


class Stop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stop_id: Line = Field(min_length=1, max_length=64)
    order_id: Line | None = Field(default=None, min_length=1, max_length=64)
    location: Position
    radius_m: float = Field(default=75.0, gt=0, le=5000)
    planned_arrival: TimeMs | None = None
    window: Window | None = None
    service_s: float = Field(default=300.0, ge=0, le=86400)

    @model_validator(mode="after")
    def _valid_location(self) -> Stop:
        _check_position(self.location)
        return self


class SpeedLimitRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_m: float = Field(ge=0)
    to_m: float = Field(gt=0)
    kmh: float = Field(gt=0, le=300)

    @model_validator(mode="after")
    def _ordered(self) -> SpeedLimitRange:
        if self.to_m <= self.from_m:
            raise ValueError("speed limit range has to_m <= from_m")
        return self


def _plain_line(part: list[Any]) -> list[Position] | None:
    """The common case quickly: every point a 2-item list of in-range, finite floats.

    Returns None for anything else (ints, altitude, bad values), which the general
    per-point path in :func:`_route_lines` then checks with its exact error messages.
    ``type(c) is float`` excludes bool and str exactly as the general path does.
    """
    line: list[Position] = []
    append = line.append
    for pt in part:
        if type(pt) is not list or len(pt) != 2:
            return None
        lon, lat = pt
        if type(lon) is not float or type(lat) is not float:
            return None
        # NaN fails both comparisons, +-inf fails the range: no separate isfinite needed.
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            return None
        append((lon, lat))
    return line


_LON_LAT_MAX = np.array([180.0, 90.0])


def route_array(route: Any, trusted: bool = False) -> npt.NDArray[np.float64]:
    """The route's points as an (n, 2) [lon, lat] array, parts joined in order (repeated
    points kept; extra coordinates such as altitude dropped). Raises ``ValueError`` as
    :func:`_route_lines` does for a bad route; ``trusted``: the route belongs to a
    validated plan (no check but its shape).

    A plain LineString - every point a [lon, lat] pair of floats in range - is checked
    with C-level passes and NumPy (a route of a thousand points costs tens of
    microseconds, not a Python loop over its points); anything else goes the exact way."""
    geom = (
        route.get("geometry")
        if isinstance(route, dict) and route.get("type") == "Feature"
        else route
    )
    if isinstance(geom, dict) and geom.get("type") == "LineString":
        part = geom.get("coordinates")
        if (
            type(part) is list
            and part
            and (
                trusted
                or (
                    set(map(type, part)) == {list}
                    and set(map(len, part)) == {2}
                    and set(map(type, itertools.chain.from_iterable(part))) == {float}
                )
            )
        ):
            try:
                flat = np.fromiter(itertools.chain.from_iterable(part), np.float64)
            except (TypeError, ValueError):
                flat = np.zeros(1)  # (not a pair each: the exact way below)
            # pairs only (a validated plan's points have two numbers at least)
            if flat.shape[0] == 2 * len(part):
                arr = flat.reshape(-1, 2)
                # NaN fails the comparison, +-inf the range
                if trusted or bool((np.abs(arr) <= _LON_LAT_MAX).all()):
                    return arr
    lines = _route_lines(route)
    return np.array([pt for line in lines for pt in line], np.float64).reshape(-1, 2)


def _route_lines(route: Any) -> list[list[Position]]:
    """Accept a LineString, MultiLineString, or a Feature holding either; return parts."""
    if not isinstance(route, dict):
        raise ValueError("route must be a GeoJSON LineString, MultiLineString or Feature")
    if route.get("type") == "Feature":
        geom = route.get("geometry")
        if not isinstance(geom, dict):
            raise ValueError("route Feature has no geometry")
        route = geom
    kind = route.get("type")
    coords = route.get("coordinates")
    if kind == "LineString":
        parts = [coords]
    elif kind == "MultiLineString":
        parts = coords
    else:
        raise ValueError(f"route geometry must be LineString or MultiLineString, got {kind!r}")
    if not isinstance(parts, list) or not parts:
        raise ValueError("route has no coordinates")
    out: list[list[Position]] = []
    for part in parts:
        if not isinstance(part, list):
            raise ValueError("route coordinates must be arrays of [lon, lat]")
        fast = _plain_line(part)
        if fast is not None:
            out.append(fast)
            continue
        line: list[Position] = []
        for pt in part:
            if (
                not isinstance(pt, list | tuple)
                or len(pt) < 2
                or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in pt[:2])
            ):
                raise ValueError(f"route coordinate is not [lon, lat]: {pt!r}")
            line.append(_check_position((float(pt[0]), float(pt[1]))))
        out.append(line)
    return out


#: ``TripPlan.model_validate(obj, context=STORED)``: ``obj`` is a plan this system
#: validated and stored (read back from the database): only its fields are parsed
#: again, not the whole-plan rules nor the storability of its route, which held then
STORED = {"stored": True}


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


class TripPlan(BaseModel):
    """A validated trip plan. ``coordinates`` is the route with parts joined in order."""

    model_config = ConfigDict(extra="forbid")

    trip_id: Line | None = Field(default=None, min_length=1, max_length=64)
    vehicle_id: str
    #: the driver dispatch assigned (same characters as a vehicle id); None: no driver
    driver_id: str | None = None
    #: display name for a driver the registry does not know yet (store.trips registers it)
    driver_name: Line | None = Field(default=None, min_length=1, max_length=200)
    planned_start: TimeMs
    route: dict[str, Any]
    corridor_m: float = Field(default=50.0, gt=0, le=5000)
    speed_limit_kmh: float | None = Field(default=None, gt=0, le=300)
    speed_limits: list[SpeedLimitRange] = Field(default_factory=list)
    stops: list[Stop] = Field(default_factory=list)
    #: per-trip threshold overrides (names of compliance.config.Thresholds fields)
    thresholds: dict[Line, float] = Field(default_factory=dict)

    @field_validator("route")
    @classmethod
    def _storable_route(cls, route: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """The route is kept as sent (with the plan): every string in it, properties
        included, must be storable."""
        if _stored(info):
            return route
        if problems := json_problems(route, ("route",)):
            raise ValueError(
                "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems)
            )
        return route

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, thresholds: dict[str, float]) -> dict[str, float]:
        if unknown := sorted(set(thresholds) - _THRESHOLD_NAMES):
            raise ValueError(
                f"unknown threshold(s) {', '.join(map(_shown, unknown))} "
                f"(known: {', '.join(sorted(_THRESHOLD_NAMES))})"
            )
        return thresholds

    @property
    def coordinates(self) -> list[Position]:
        joined: list[Position] = []
        for part in _route_lines(self.route):
            for pt in part:
                if not joined or joined[-1] != pt:
                    joined.append(pt)
        return joined

    @model_validator(mode="after")
    def _whole_plan(self, info: ValidationInfo) -> TripPlan:
        if _stored(info):
            return self
        problems: list[str] = []
        if not VEHICLE_ID_RE.fullmatch(self.vehicle_id):
            problems.append("vehicle_id must be 1-64 characters of [A-Za-z0-9._-]")
        if self.driver_id is not None and not VEHICLE_ID_RE.fullmatch(self.driver_id):
            problems.append("driver_id must be 1-64 characters of [A-Za-z0-9._-]")
        if self.driver_name is not None and self.driver_id is None:
            problems.append("driver_name needs a driver_id")
        try:
            pts = route_array(self.route)
            if not len(pts) or not bool((pts != pts[0]).any()):
                problems.append("route needs at least 2 distinct points")
        except ValueError as exc:
            problems.append(str(exc))
        seen: set[str] = set()
        for s in self.stops:
            if s.stop_id in seen:
                problems.append(f"stop_id {s.stop_id!r} is used twice")
            seen.add(s.stop_id)
        orders = [s.order_id for s in self.stops if s.order_id]
        if len(orders) != len(set(orders)):
            problems.append("an order_id appears on more than one stop")
        prev_end: int | None = None
        for s in self.stops:
            if s.window is not None:
                if prev_end is not None and s.window.start < prev_end - 86_400_000:
                    problems.append(
                        f"stop {s.stop_id!r}: window is out of order with earlier stops"
                    )
                prev_end = s.window.end
            if s.planned_arrival is not None and s.planned_arrival < self.planned_start:
                problems.append(f"stop {s.stop_id!r}: planned_arrival is before planned_start")
        arrivals = [s.planned_arrival for s in self.stops if s.planned_arrival is not None]
        if any(b < a for a, b in pairwise(arrivals)):
            problems.append("planned arrivals are not in stop order")
        ranges = sorted(self.speed_limits, key=lambda r: r.from_m)
        for a, b in pairwise(ranges):
            if b.from_m < a.to_m:
                problems.append(f"speed_limits ranges overlap at {b.from_m} m")
        if problems:
            raise ValueError("; ".join(problems))
        return self


Role = Literal["supervisor", "oms", "driver"]
