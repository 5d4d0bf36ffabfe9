"""Decode many ping messages in one Numba pass (the live path's common case).

Trackers send the same small JSON object thousands of times a second; checking each one
with orjson and Python type tests costs more than matching and storing it. Here the
payloads of a whole socket read are joined into one buffer and one kernel parses every
message that is plainly valid: a JSON object (or an array of them) holding only the
CONTRACT §1 fields, each once, as JSON numbers (``null`` for an optional one), within
range. Its result for those messages is exactly what :func:`ingest.decode.decode_message`
stores for them. Everything else — a string timestamp, an unknown key, an escape, a
number whose decimal value would need more than one rounding, anything out of range or
malformed — is marked for that function, which accepts or rejects it with its reason.

Numbers: an integer form of up to 18 digits is exact in int64; a decimal form is taken
only when its significant digits fit 15 (exact in float64) and its power of ten is within
±22 (exact too), so one multiplication or division gives the correctly rounded value
that orjson gives (Clinger's fast path). Units as in :mod:`ingest.decode`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from ingest.decode import (
    _TS_END,
    MAX_ACCURACY_M,
    MAX_SPEED_KMH,
    MIN_TS_MS,
    REAL_TINY,
    DecodeLimits,
    vehicle_id_from_topic,
)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: the fields, in this order of codes; a row's columns are filled from them
_FIELDS = ("ts", "lat", "lon", "speed", "heading", "accuracy", "seq")
_NFIELDS = len(_FIELDS)
_TS, _LAT, _LON, _SPEED, _HEADING, _ACCURACY, _SEQ = range(_NFIELDS)
_NAMES = np.zeros((_NFIELDS, 8), np.uint8)
_NAME_LEN = np.array([len(f) for f in _FIELDS], np.int64)
for _k, _f in enumerate(_FIELDS):
    _NAMES[_k, : len(_f)] = np.frombuffer(_f.encode(), np.uint8)
#: 10**k for k = 0..22, each exact in float64
_POW10 = np.array([10.0**k for k in range(23)])
#: the smallest valid ping object (``{"ts":N,"lat":N,"lon":N}`` with a plausible ts)
_MIN_OBJECT_BYTES = 35
#: value kinds a number parse returns
_BAD, _INT, _FLOAT, _NULL = 0, 1, 2, 3


@njit(cache=True, nogil=True, inline="always")
def _skip_ws(buf, p, e):
    while p < e and (buf[p] == 32 or buf[p] == 10 or buf[p] == 13 or buf[p] == 9):
        p += 1
    return p


@njit(cache=True, nogil=True, inline="always")
def _digit_at(buf, p, e):
    return p < e and 48 <= buf[p] <= 57


@njit(cache=True, nogil=True)
def _key(buf, p, e):
    """(field code or -1, position after the closing quote); ``p`` is after the opening
    quote. Escapes and unknown names give -1: the slow path decides."""
    q = p
    while q < e and buf[q] != 34:
        if buf[q] == 92:
            return -1, q
        q += 1
    if q >= e:
        return -1, q
    n = q - p
    for k in range(_NAMES.shape[0]):
        if _NAME_LEN[k] == n:
            same = True
            for j in range(n):
                if buf[p + j] != _NAMES[k, j]:
                    same = False
                    break
            if same:
                return k, q + 1
    return -1, q + 1


@njit(cache=True, nogil=True)
def _value(buf, p, e):
    """A JSON number or ``null`` at ``p``: (kind, integer value, float value, position
    after it). Kind _BAD also for valid JSON that is not taken exactly here."""
    if p + 4 <= e and buf[p] == 110:
        if buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
            return _NULL, 0, np.nan, p + 4
        return _BAD, 0, np.nan, p
    neg = False
    if p < e and buf[p] == 45:
        neg = True
        p += 1
    if not _digit_at(buf, p, e):
        return _BAD, 0, np.nan, p
    mant = 0
    digits = 0  # significant digits in mant (leading zeros do not count)
    if buf[p] == 48:
        p += 1
        if _digit_at(buf, p, e):
            return _BAD, 0, np.nan, p  # leading zero: not JSON
    else:
        while _digit_at(buf, p, e):
            if digits == 18:
                return _BAD, 0, np.nan, p
            mant = mant * 10 + (int(buf[p]) - 48)  # int(): uint8 arithmetic wraps
            digits += 1
            p += 1
    scale = 0
    is_int = True
    if p < e and buf[p] == 46:
        is_int = False
        p += 1
        if not _digit_at(buf, p, e):
            return _BAD, 0, np.nan, p
        while _digit_at(buf, p, e):
            d = int(buf[p]) - 48
            if mant != 0 or d != 0:
                if digits == 18:
                    return _BAD, 0, np.nan, p
                digits += 1
            mant = mant * 10 + d
            scale -= 1
            p += 1
    if p < e and (buf[p] == 101 or buf[p] == 69):
        is_int = False
        p += 1
        eneg = False
        if p < e and (buf[p] == 45 or buf[p] == 43):
            eneg = buf[p] == 45
            p += 1
        if not _digit_at(buf, p, e):
            return _BAD, 0, np.nan, p
        ex = 0
        while _digit_at(buf, p, e):
            if ex > 1000:
                return _BAD, 0, np.nan, p
            ex = ex * 10 + (int(buf[p]) - 48)
            p += 1
        scale += -ex if eneg else ex
    if is_int:
        ival = -mant if neg else mant
        return _INT, ival, float(ival), p  # "-0" is the integer 0, as orjson reads it
    if mant == 0:
        return _FLOAT, 0, -0.0 if neg else 0.0, p
    if digits > 15 or scale < -22 or scale > 22:
        return _BAD, 0, np.nan, p
    v = mant * _POW10[scale] if scale >= 0 else mant / _POW10[-scale]
    return _FLOAT, 0, -v if neg else v, p


@njit(cache=True, nogil=True, inline="always")
def _optional(kind, v, high):
    """An optional number as stored (NaN when absent or null), or -1.0 when refused."""
    if kind in (_NULL, _BAD):  # _BAD in ``kinds``: the key was absent
        return np.nan
    if not (0.0 <= v <= high):
        return -1.0
    return 0.0 if abs(v) < REAL_TINY else v


@njit(cache=True, nogil=True)
def _object(buf, p, e, max_ts_ms, kinds, ivals, fvals, row, icol, fcol):
    """Parse and check one ping object at ``p`` into ``row``; the position after it, or
    -1 when it is not plainly valid. ``kinds``, ``ivals``, ``fvals``: scratch, a slot per
    field; ``icol`` rows ts, seq and ``fcol`` rows lat, lon, speed, heading, accuracy."""
    if p >= e or buf[p] != 123:
        return -1
    kinds[:] = _BAD  # _BAD: absent
    p = _skip_ws(buf, p + 1, e)
    while True:
        if p >= e or buf[p] != 34:
            return -1
        k, p = _key(buf, p + 1, e)
        if k < 0 or kinds[k] != _BAD:
            return -1  # unknown, escaped or repeated (orjson keeps the last): slow path
        p = _skip_ws(buf, p, e)
        if p >= e or buf[p] != 58:
            return -1
        p = _skip_ws(buf, p + 1, e)
        kind, iv, fv, p = _value(buf, p, e)
        if kind == _BAD:
            return -1
        kinds[k] = kind
        ivals[k] = iv
        fvals[k] = fv
        p = _skip_ws(buf, p, e)
        if p >= e:
            return -1
        if buf[p] == 44:
            p = _skip_ws(buf, p + 1, e)
        elif buf[p] == 125:
            p += 1
            break
        else:
            return -1
    # the checks of ingest.decode for a valid ping, nothing looser
    if kinds[_TS] != _INT:
        return -1
    if kinds[_LAT] == _BAD or kinds[_LAT] == _NULL or kinds[_LON] == _BAD or kinds[_LON] == _NULL:
        return -1
    t = ivals[_TS]
    if t < MIN_TS_MS or t > max_ts_ms or t >= _TS_END:
        return -1
    y, x = fvals[_LAT], fvals[_LON]
    if not (-90.0 <= y <= 90.0 and -180.0 <= x <= 180.0):
        return -1
    s = _optional(kinds[_SPEED], fvals[_SPEED], MAX_SPEED_KMH)
    h = _optional(kinds[_HEADING], fvals[_HEADING], 360.0)
    a = _optional(kinds[_ACCURACY], fvals[_ACCURACY], MAX_ACCURACY_M)
    if s == -1.0 or h == -1.0 or a == -1.0:
        return -1
    q = -1
    if kinds[_SEQ] == _INT:
        q = ivals[_SEQ]  # at most 18 digits: below the bigint limit
        if q < 0:
            return -1
    elif kinds[_SEQ] == _FLOAT:
        return -1
    icol[0, row] = t
    icol[1, row] = q
    fcol[0, row] = y
    fcol[1, row] = x
    fcol[2, row] = s
    fcol[3, row] = h
    fcol[4, row] = a
    return p


@njit(cache=True, nogil=True)
def _decode(buf, starts, ends, skip, max_ts_ms, icol, fcol, counts):
    """Rows of every plainly valid message, back to back; ``counts[i]``: message i's
    rows, or -1 when the slow path must decide it (always for those ``skip`` marks).
    Returns the rows written."""
    row = 0
    cap = icol.shape[1]
    kinds = np.zeros(_NFIELDS, np.int64)
    ivals = np.zeros(_NFIELDS, np.int64)
    fvals = np.zeros(_NFIELDS, np.float64)
    for i in range(len(starts)):
        counts[i] = -1
        if skip[i]:
            continue
        e = ends[i]
        p = _skip_ws(buf, starts[i], e)
        first = row
        if p < e and buf[p] == 91:  # an array of objects
            p = _skip_ws(buf, p + 1, e)
            while p >= 0:
                if row >= cap:
                    p = -1
                    break
                p = _object(buf, p, e, max_ts_ms, kinds, ivals, fvals, row, icol, fcol)
                if p < 0:
                    break
                row += 1
                p = _skip_ws(buf, p, e)
                if p < e and buf[p] == 44:
                    p = _skip_ws(buf, p + 1, e)
                elif p < e and buf[p] == 93:
                    p += 1
                    break
                else:
                    p = -1
        elif row < cap:
            p = _object(buf, p, e, max_ts_ms, kinds, ivals, fvals, row, icol, fcol)
            if p >= 0:
                row += 1
        else:
            p = -1
        if p >= 0 and _skip_ws(buf, p, e) == e:
            counts[i] = row - first
        else:
            row = first  # not taken: the slow path decides the whole message
    return row


@dataclass(slots=True)
class BulkDecoded:
    """Rows of the messages taken here, back to back in message order."""

    vehicle_id: list[str | None]  # per message (None: the topic is unusable)
    counts: I64  # rows per message; -1: decode it with ingest.decode.decode_message
    row_start: I64  # first row of each message (len(messages) + 1 entries)
    ints: I64  # rows ts_ms, seq
    floats: F64  # rows lat, lon, speed_kmh, heading_deg, accuracy_m


def decode_bulk(
    topics: Sequence[str], payloads: Sequence[bytes], received_ms: int, limits: DecodeLimits
) -> BulkDecoded:
    """Decode the messages ``(topics[i], payloads[i])`` that are plainly valid pings; the
    rest are marked (count -1) for :func:`ingest.decode.decode_message`, including every
    message the topic, registry or size checks refuse."""
    n = len(payloads)
    lengths = np.fromiter(map(len, payloads), np.int64, n)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    buf = np.frombuffer(b"".join(payloads), np.uint8)
    cap = len(buf) // _MIN_OBJECT_BYTES + 1
    icol = np.empty((2, cap), np.int64)
    fcol = np.empty((5, cap), np.float64)
    counts = np.empty(n, np.int64)
    # what the topic, registry and size checks refuse is left to the slow path unparsed
    vids = list(map(vehicle_id_from_topic, topics))
    known = limits.known_vehicles
    skip = lengths > limits.max_payload_bytes
    if known is not None or None in vids:
        skip |= np.fromiter(
            (vid is None or (known is not None and vid not in known) for vid in vids), bool, n
        )
    # (capped: fixes at or beyond _TS_END are refused anyway, and the kernel takes int64)
    max_ts_ms = min(received_ms + limits.max_future_skew_ms, _TS_END)
    _decode(buf, starts, ends, skip, max_ts_ms, icol, fcol, counts)
    row_start = np.zeros(n + 1, np.int64)
    np.cumsum(np.maximum(counts, 0), out=row_start[1:])
    return BulkDecoded(vids, counts, row_start, icol, fcol)


def warm_up() -> None:
    """Compile (or load from Numba's cache) the kernel: a plain message and an array."""
    ping = b'{"ts":%d,"lat":-6.2,"lon":106.8,"speed":null,"seq":1}' % MIN_TS_MS
    decode_bulk(["fleet/warm-up/ping"] * 2, [ping, b"[" + ping + b"]"], MIN_TS_MS, _WARM_UP_LIMITS)


_WARM_UP_LIMITS = DecodeLimits(max_payload_bytes=1 << 10, max_future_skew_ms=0)
