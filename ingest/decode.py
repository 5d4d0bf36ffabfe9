"""Decode and validate CONTRACT §1 ping messages (the ingest hot path).

A message is an MQTT topic ``fleet/{vehicle_id}/ping`` plus a payload holding one JSON
object or a JSON array of them. :func:`decode_message` appends every valid ping to a
:class:`PingColumns` buffer (struct-of-arrays, no per-ping objects) and every invalid
item — or the whole payload, when it cannot be split into items — to a list of
:class:`Rejection` with a stable :class:`Reason`. One bad element of an array rejects
only that element. Nothing here raises on bad input.

Units: ``ts`` epoch milliseconds, ``lat``/``lon`` degrees WGS84, ``speed`` km/h,
``heading`` degrees clockwise from north, ``accuracy`` metres.
"""

from __future__ import annotations

import functools
import json
import math
import re
from array import array
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import orjson

from compliance.plan import parse_time_ms
from compliance.types import PingBatch

VEHICLE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: rejected payloads and items are kept up to this many bytes (rejected_pings.payload)
EXCERPT_BYTES = 4096
#: fixes before 2000-01-01 are device clock faults (or epoch *seconds* sent by mistake)
MIN_TS_MS = 946_684_800_000
#: no road vehicle reports more than this; larger values are garbage, not speeding
MAX_SPEED_KMH = 1000.0
#: a "fix" this vague (cell-tower fallbacks reach a few km) locates nothing on a route;
#: larger values are garbage — and would overflow the single-precision column
MAX_ACCURACY_M = 100_000.0
#: speed, heading and accuracy are stored as PostgreSQL ``real`` (float32), which refuses
#: (underflow error) a non-zero value that rounds to 0; magnitudes below this are 0 anyway
REAL_TINY = 1e-30
_TS_END = 2**62  # fix times at or beyond this many ms are refused
_SEQ_END = 2**63  # seq must fit a bigint
_NON_FINITE_WORDS = frozenset(
    {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
)


class Reason(StrEnum):
    """Why a ping or payload was rejected. The values are stored and used as metric
    labels: never rename one."""

    BAD_TOPIC = "bad_topic"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    EMPTY_PAYLOAD = "empty_payload"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_VEHICLE = "unknown_vehicle"


@dataclass(frozen=True, slots=True)
class Rejection:
    topic: str
    vehicle_id: str | None  # None when the topic itself is unusable
    reason: Reason
    detail: str
    payload_excerpt: bytes  # the offending item or payload, at most EXCERPT_BYTES


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_payload_bytes: int
    max_future_skew_ms: int
    known_vehicles: frozenset[str] | None = None  # None: any well-formed id is accepted


class PingColumns:
    """Growable struct-of-arrays buffer of accepted pings; :meth:`to_batch` hands the
    rows to the engine as a :class:`PingBatch` (missing optionals are NaN / -1)."""

    __slots__ = (
        "accuracy_m",
        "heading_deg",
        "lat",
        "lon",
        "seq",
        "speed_kmh",
        "ts_ms",
        "vehicle_id",
    )

    def __init__(self) -> None:
        self.vehicle_id: list[str] = []
        self.ts_ms = array("q")
        self.lat = array("d")
        self.lon = array("d")
        self.speed_kmh = array("d")
        self.heading_deg = array("d")
        self.accuracy_m = array("d")
        self.seq = array("q")

    def __len__(self) -> int:
        return len(self.vehicle_id)

    def to_batch(self) -> PingBatch:
        """The buffered rows as numpy arrays (copies: the buffer can be reused)."""
        return PingBatch(
            list(self.vehicle_id),
            np.array(self.ts_ms, dtype=np.int64),
            np.array(self.lat, dtype=np.float64),
            np.array(self.lon, dtype=np.float64),
            np.array(self.speed_kmh, dtype=np.float64),
            np.array(self.heading_deg, dtype=np.float64),
            np.array(self.accuracy_m, dtype=np.float64),
            np.array(self.seq, dtype=np.int64),
        )

    def extend(self, vehicle_id: list[str], ints: np.ndarray, floats: np.ndarray) -> None:
        """Append rows given as columns: ``ints`` rows ts_ms, seq; ``floats`` rows lat,
        lon, speed_kmh, heading_deg, accuracy_m (the layout of ingest.bulkdecode)."""
        self.vehicle_id.extend(vehicle_id)
        for col, values in (
            (self.ts_ms, ints[0]),
            (self.seq, ints[1]),
            (self.lat, floats[0]),
            (self.lon, floats[1]),
            (self.speed_kmh, floats[2]),
            (self.heading_deg, floats[3]),
            (self.accuracy_m, floats[4]),
        ):
            col.frombytes(np.ascontiguousarray(values).tobytes())

    def clear(self) -> None:
        for name in self.__slots__:
            col = getattr(self, name)
            del col[:]


class _Invalid(Exception):
    """One item failed validation (internal control flow, never escapes this module)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


@functools.lru_cache(maxsize=1 << 16)  # a fleet's topics repeat; bounded for the rest
def vehicle_id_from_topic(topic: str) -> str | None:
    """``fleet/{vehicle_id}/ping`` -> vehicle_id, or None when the topic does not fit."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "fleet" or parts[2] != "ping":
        return None
    vid = parts[1]
    return vid if VEHICLE_ID_RE.fullmatch(vid) else None


def _parse_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses NaN/Infinity literals and overflowing numbers (1e999). The stdlib
    # parser reads them as non-finite floats, so the item is rejected as ``non_finite``
    # (its real fault) and its valid siblings in an array are kept. Error path only.
    try:
        return json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _Invalid(Reason.MALFORMED_JSON, str(exc)[:200]) from None


def _number(item: dict[str, Any], key: str, required: bool) -> float:
    value = item.get(key)
    if value is None:
        if required:
            raise _Invalid(Reason.MISSING_FIELD, f"{key} is required")
        return math.nan
    if type(value) is float:
        f = value
    elif type(value) is int:
        try:
            f = float(value)
        except OverflowError:  # an integer literal beyond 1e308 (the lenient parser's)
            raise _Invalid(Reason.OUT_OF_RANGE, f"{key} is an integer too large") from None
    elif isinstance(value, str) and value.strip().lower() in _NON_FINITE_WORDS:
        raise _Invalid(Reason.NON_FINITE, f"{key} is {value!r}")
    else:
        raise _Invalid(Reason.BAD_TYPE, f"{key} must be a number, got {type(value).__name__}")
    if not math.isfinite(f):
        raise _Invalid(Reason.NON_FINITE, f"{key} is not finite")
    return f


_LEAP_SECOND_RE = re.compile(r"(.*T\d\d:\d\d:)60(\.\d+)?([Zz]|[+-]\d\d:\d\d)", re.IGNORECASE)


def _leap_second_ms(value: object) -> int | None:
    """RFC 3339 allows a leap second (``23:59:60Z``), which datetime cannot hold; it is
    taken as the minute's last millisecond (error path only)."""
    if not isinstance(value, str):
        return None
    m = _LEAP_SECOND_RE.fullmatch(value.strip())
    if m is None:
        return None
    try:
        return parse_time_ms(f"{m[1]}59.999{m[3]}")
    except (ValueError, OverflowError, OSError):
        return None


def _timestamp(item: dict[str, Any], received_ms: int, limits: DecodeLimits) -> int:
    value = item.get("ts")
    if value is None:
        raise _Invalid(Reason.MISSING_FIELD, "ts is required")
    if type(value) is float and not math.isfinite(value):
        raise _Invalid(Reason.NON_FINITE, "ts is not finite")
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise _Invalid(
            Reason.BAD_TYPE, f"ts must be epoch ms or RFC 3339, got {type(value).__name__}"
        )
    try:
        ts_ms = parse_time_ms(value)
    except (ValueError, OverflowError, OSError) as exc:
        leap_ms = _leap_second_ms(value)
        if leap_ms is None:
            raise _Invalid(Reason.BAD_TIMESTAMP, str(exc)[:200]) from None
        ts_ms = leap_ms
    if ts_ms < MIN_TS_MS or ts_ms >= _TS_END:
        raise _Invalid(Reason.BAD_TIMESTAMP, f"ts {ts_ms} ms is not a plausible fix time")
    if ts_ms > received_ms + limits.max_future_skew_ms:
        ahead_s = (ts_ms - received_ms) / 1000.0
        raise _Invalid(Reason.FUTURE_TIMESTAMP, f"ts is {ahead_s:.0f} s ahead of receive time")
    return ts_ms


def _optional_ok(value: object, high: float) -> bool:
    """Fast-path test of an optional number: absent, or a float within [0, high]."""
    return value is None or (type(value) is float and 0.0 <= value <= high)


def _stored_real(value: float | None) -> float:
    """An optional value as stored: NaN when absent, 0 for values float4 cannot hold."""
    if value is None:
        return math.nan
    return 0.0 if abs(value) < REAL_TINY else value


def _append_item(
    out: PingColumns, vid: str, item: Any, received_ms: int, limits: DecodeLimits
) -> None:
    """Validate one ping object and append it; raises _Invalid without touching ``out``.

    The common, valid ping (integer ts in range, float coordinates, optional floats in
    range, integer seq) is accepted by a few type and range tests; anything else goes
    through the full checks of :func:`_append_checked`, which name the reason. The fast
    path accepts only what those checks accept, storing the same values."""
    if type(item) is dict:
        ts, lat, lon = item.get("ts"), item.get("lat"), item.get("lon")
        speed, heading, accuracy = item.get("speed"), item.get("heading"), item.get("accuracy")
        seq = item.get("seq")
        if (
            type(ts) is int
            and MIN_TS_MS <= ts <= received_ms + limits.max_future_skew_ms
            and ts < _TS_END
            and type(lat) is float
            and -90.0 <= lat <= 90.0
            and type(lon) is float
            and -180.0 <= lon <= 180.0
            and _optional_ok(speed, MAX_SPEED_KMH)
            and _optional_ok(heading, 360.0)
            and _optional_ok(accuracy, MAX_ACCURACY_M)
            and (seq is None or (type(seq) is int and 0 <= seq < _SEQ_END))
        ):
            out.vehicle_id.append(vid)
            out.ts_ms.append(ts)
            out.lat.append(lat)
            out.lon.append(lon)
            out.speed_kmh.append(_stored_real(speed))
            out.heading_deg.append(_stored_real(heading))
            out.accuracy_m.append(_stored_real(accuracy))
            out.seq.append(-1 if seq is None else seq)
            return
    _append_checked(out, vid, item, received_ms, limits)


def _append_checked(
    out: PingColumns, vid: str, item: Any, received_ms: int, limits: DecodeLimits
) -> None:
    """:func:`_append_item` with every check spelled out, each failure with its reason."""
    if type(item) is not dict:
        raise _Invalid(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {type(item).__name__}")
    ts_ms = _timestamp(item, received_ms, limits)
    lat = _number(item, "lat", True)
    lon = _number(item, "lon", True)
    speed = _number(item, "speed", False)
    heading = _number(item, "heading", False)
    accuracy = _number(item, "accuracy", False)
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise _Invalid(Reason.OUT_OF_RANGE, f"coordinate out of range: lat={lat}, lon={lon}")
    if speed < 0.0 or speed > MAX_SPEED_KMH:  # NaN (absent) fails both comparisons
        raise _Invalid(Reason.OUT_OF_RANGE, f"speed {speed} km/h out of range")
    if heading < 0.0 or heading > 360.0:
        raise _Invalid(Reason.OUT_OF_RANGE, f"heading {heading} out of range 0-360")
    if accuracy < 0.0 or accuracy > MAX_ACCURACY_M:
        raise _Invalid(Reason.OUT_OF_RANGE, f"accuracy {accuracy} m out of range")
    seq = item.get("seq")
    if seq is None:
        seq = -1
    elif type(seq) is not int:
        raise _Invalid(Reason.BAD_TYPE, f"seq must be an integer, got {type(seq).__name__}")
    elif not 0 <= seq < _SEQ_END:
        raise _Invalid(Reason.OUT_OF_RANGE, f"seq {seq} out of range")
    out.vehicle_id.append(vid)
    out.ts_ms.append(ts_ms)
    out.lat.append(lat)
    out.lon.append(lon)
    out.speed_kmh.append(0.0 if abs(speed) < REAL_TINY else speed)
    out.heading_deg.append(0.0 if abs(heading) < REAL_TINY else heading)
    out.accuracy_m.append(0.0 if abs(accuracy) < REAL_TINY else accuracy)
    out.seq.append(seq)


def _excerpt(item: Any) -> bytes:
    try:
        return orjson.dumps(item)[:EXCERPT_BYTES]
    except (TypeError, orjson.JSONEncodeError):
        # non-finite floats from the stdlib fallback parser are not JSON; repr is honest
        return repr(item).encode("utf-8", "replace")[:EXCERPT_BYTES]


def decode_message(
    topic: str,
    payload: bytes,
    received_ms: int,
    limits: DecodeLimits,
    out: PingColumns,
    rejections: list[Rejection],
) -> int:
    """Decode one MQTT message; append valid pings to ``out`` and the rest to
    ``rejections``. Returns the number of items the message held (accepted + rejected;
    a payload rejected as a whole counts as one)."""
    vid = vehicle_id_from_topic(topic)

    def reject_payload(reason: Reason, detail: str) -> int:
        rejections.append(Rejection(topic, vid, reason, detail, payload[:EXCERPT_BYTES]))
        return 1

    if vid is None:
        return reject_payload(
            Reason.BAD_TOPIC,
            "topic must be fleet/{vehicle_id}/ping with vehicle_id 1-64 chars of [A-Za-z0-9._-]",
        )
    if limits.known_vehicles is not None and vid not in limits.known_vehicles:
        return reject_payload(Reason.UNKNOWN_VEHICLE, f"vehicle {vid!r} is not registered")
    if len(payload) > limits.max_payload_bytes:
        return reject_payload(
            Reason.PAYLOAD_TOO_LARGE, f"{len(payload)} bytes > {limits.max_payload_bytes}"
        )
    if not payload.strip():
        return reject_payload(Reason.EMPTY_PAYLOAD, "empty payload")
    try:
        doc = _parse_json(payload)
    except _Invalid as exc:
        return reject_payload(exc.reason, exc.detail)
    if type(doc) is list:
        if not doc:
            return reject_payload(Reason.EMPTY_PAYLOAD, "empty array")
        items: list[Any] = doc
    else:
        items = [doc]
    for item in items:
        try:
            _append_item(out, vid, item, received_ms, limits)
        except _Invalid as exc:
            rejections.append(Rejection(topic, vid, exc.reason, exc.detail, _excerpt(item)))
    return len(items)
