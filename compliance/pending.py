"""Pending pings: the working columns, and the compact block they rest in between batches.

A 1 Hz vehicle holds ~30 pending pings (the 30 s reorder allowance). As float64/int64
columns (8 B a ping each, plus an array header each) they were the largest part of its
state. Between batches they rest in one ``bytes`` block instead, every column in
the narrowest type that gives back *exactly* the same values:

- ts: int32 ms offsets from the first ping (a 24-day span); int64 beyond;
- lat, lon: int32 in 1e-7 degrees when every value is k / 1e7 exactly — what a fix
  parsed from at most 7 decimals is (1 cm, more than trackers resolve); float64 otherwise;
- speed, accuracy, heading: int16 in tenths (km/h, m, degrees) when every value is
  k / 10 exactly (NaN, an absent value, as a sentinel); float64 otherwise;
- seq (the device's sequence number, -1 when absent): nothing when every ping lacks one,
  the first alone when they count up by one (the usual run), else an int64 base and
  int32 offsets from it; int64 beyond;
- x, y (the trip's local metres): not stored; recomputed from lat, lon by the trip's
  projection, a pure function, so the kernels see the values they saw before;
- batch row: not stored; it only means something during the batch that brought the ping.

"Exactly" is checked bit for bit, never assumed (float32 metres or degrees would be
close, but then results would depend on whether a ping rested before it was committed):
a column that does not round-trip stays float64. Typical data rests in 18 B a ping plus
24 B of header (8 more for a seq run) and the 33 B of the ``bytes`` object.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Pending:
    """Pings accepted but not yet committed, sorted by ts (strictly increasing)."""

    ts_ms: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    lat: F64 = field(default_factory=lambda: np.empty(0))
    lon: F64 = field(default_factory=lambda: np.empty(0))
    x_m: F64 = field(default_factory=lambda: np.empty(0))
    y_m: F64 = field(default_factory=lambda: np.empty(0))
    speed_kmh: F64 = field(default_factory=lambda: np.empty(0))
    accuracy_m: F64 = field(default_factory=lambda: np.empty(0))
    heading_deg: F64 = field(default_factory=lambda: np.empty(0))  # NaN when absent
    seq: I64 = field(default_factory=lambda: np.empty(0, np.int64))  # -1 when absent
    row: I64 = field(default_factory=lambda: np.empty(0, np.int64))  # batch row, -1 older

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def columns(self) -> tuple[I64, F64, F64, F64, F64, F64, F64, F64, I64, I64]:
        return (
            self.ts_ms,
            self.lat,
            self.lon,
            self.x_m,
            self.y_m,
            self.speed_kmh,
            self.accuracy_m,
            self.heading_deg,
            self.seq,
            self.row,
        )

    def with_xy(self, x_m: F64, y_m: F64) -> Pending:
        """The same pings in another frame (a third of ``dataclasses.replace``'s cost)."""
        c = self.columns()
        return Pending(c[0], c[1], c[2], x_m, y_m, *c[5:])

    def select(self, mask: npt.NDArray[np.bool_] | slice | npt.NDArray[np.intp]) -> Pending:
        return Pending(*(c[mask] for c in self.columns()))  # type: ignore[arg-type]

    @staticmethod
    def concat(parts: list[Pending]) -> Pending:
        """The pings of ``parts`` one after the other (the one non-empty part itself)."""
        parts = [p for p in parts if len(p)]
        if len(parts) <= 1:
            return parts[0] if parts else NO_PENDING
        return Pending(
            *(np.concatenate(cs) for cs in zip(*(p.columns() for p in parts), strict=True))
        )


#: the empty Pending, shared (its zero-length columns cannot be written to)
NO_PENDING = Pending()


# stored columns, in this order: ts offset, lat, lon, speed, accuracy, heading
_NAN_CODE = -(2**15)  # speed / accuracy / heading absent
_HEADER = struct.Struct("<qqq")  # n, flags (bit c: column c is narrow), base ts


_N_COLS = 6
_ALL_NARROW = 0b111111
_SEQ_ABSENT = 1 << 6  # every seq is -1: none stored
_SEQ_NARROW = 1 << 7  # seq as an int64 base and int32 offsets (else one int64 column)
_SEQ_RUN = 1 << 8  # seq counts up by one from an int64 base: the base alone


@njit(cache=True)
def _code(v, scale, limit):
    """``v`` as an integer k with k / scale == v bit for bit, or ``limit + 1`` when none."""
    if not math.isfinite(v) or abs(v * scale) > limit + 1:
        return limit + 1
    k = round(v * scale)  # ties to even, as np.rint
    if abs(k) > limit:
        return limit + 1
    back = k / scale
    # equal and the same sign of zero: the same bits (NaN was excluded above)
    if back != v or math.copysign(1.0, back) != math.copysign(1.0, v):
        return limit + 1
    return k


@njit(cache=True)
def _encode(ts, lat, lon, spd, acc, hdg, c32, c16):
    """Narrow codes of every column into ``c32`` (ts offset, lat, lon) and ``c16``
    (speed, accuracy, heading); returns the flags (bit c set: column c is narrow)."""
    flags = _ALL_NARROW
    lim32 = 2**31 - 1
    lim16 = 2**15 - 1
    for i in range(ts.shape[0]):
        dt = ts[i] - ts[0]
        if 0 <= dt <= lim32:
            c32[0, i] = dt
        else:
            flags &= ~1
        for c, v in ((1, lat[i]), (2, lon[i])):
            k = _code(v, 1e7, lim32)
            if k > lim32:
                flags &= ~(1 << c)
            else:
                c32[c, i] = k
        for c, v in ((3, spd[i]), (4, acc[i]), (5, hdg[i])):
            if math.isnan(v):
                c16[c - 3, i] = _NAN_CODE
                continue
            k = _code(v, 10.0, lim16)
            if k > lim16:
                flags &= ~(1 << c)
            else:
                c16[c - 3, i] = k
    return flags


@njit(cache=True)
def _decode(c32, c16, base, ts, lat, lon, spd, acc, hdg):
    """Inverse of :func:`_encode` for an all-narrow block."""
    for i in range(ts.shape[0]):
        ts[i] = base + np.int64(c32[0, i])  # int64 also as plain Python (NEP 50)
        lat[i] = c32[1, i] / 1e7
        lon[i] = c32[2, i] / 1e7
        spd[i] = np.nan if c16[0, i] == _NAN_CODE else c16[0, i] / 10.0
        acc[i] = np.nan if c16[1, i] == _NAN_CODE else c16[1, i] / 10.0
        hdg[i] = np.nan if c16[2, i] == _NAN_CODE else c16[2, i] / 10.0


def pack(p: Pending) -> bytes:
    """``p``'s pings as one block (see the module docstring); rows are not kept.

    Layout: header (n, flags, base ts), then the 64-bit columns, then the int32 codes of
    the narrow ones among ts/lat/lon, then the int16 codes of speed/accuracy/heading,
    then seq."""
    n = len(p)
    c32 = np.empty((3, n), np.int32)
    c16 = np.empty((3, n), np.int16)
    flags = _encode(p.ts_ms, p.lat, p.lon, p.speed_kmh, p.accuracy_m, p.heading_deg, c32, c16)
    seq_part, seq_flags = _pack_seq(p.seq)
    parts = [_HEADER.pack(n, flags | seq_flags, int(p.ts_ms[0]))]
    if flags != _ALL_NARROW:  # 8-byte items first: they stay 8-byte aligned
        cols = (p.ts_ms, p.lat, p.lon, p.speed_kmh, p.accuracy_m, p.heading_deg)
        parts += [cols[c].tobytes() for c in range(_N_COLS) if not flags >> c & 1]
        parts += [c32[c].tobytes() for c in range(3) if flags >> c & 1]
        parts += [c16[c - 3].tobytes() for c in range(3, _N_COLS) if flags >> c & 1]
    else:
        parts += [c32.tobytes(), c16.tobytes()]
    parts.append(seq_part)
    return b"".join(parts)


def _pack_seq(seq: I64) -> tuple[bytes, int]:
    if not len(seq) or bool((seq == -1).all()):
        return b"", _SEQ_ABSENT
    base = int(seq[0])
    if base >= 0 and base + len(seq) <= 2**63 and bool((np.diff(seq) == 1).all()):
        return struct.pack("<q", base), _SEQ_RUN
    lim = 2**31 - 1
    if int(seq.max()) - base <= lim and base - int(seq.min()) <= lim:  # (Python ints)
        off = (seq - base).astype(np.int32)
        return struct.pack("<q", base) + off.tobytes(), _SEQ_NARROW
    return seq.tobytes(), 0


def _unpack_seq(block: bytes, off: int, n: int, flags: int) -> I64:
    if flags & _SEQ_ABSENT:
        return np.full(n, -1, np.int64)
    if flags & _SEQ_RUN:
        (base,) = struct.unpack_from("<q", block, off)
        return np.arange(base, base + n, dtype=np.int64)
    if flags & _SEQ_NARROW:
        (base,) = struct.unpack_from("<q", block, off)
        return np.frombuffer(block, np.int32, n, off + 8).astype(np.int64) + base
    return np.frombuffer(block, np.int64, n, off).copy()


def unpack(block: bytes, project: Callable[[F64, F64], tuple[F64, F64]]) -> Pending:
    """The :class:`Pending` that :func:`pack` stored (rows -1); ``project`` maps
    (lat, lon) degrees to the trip's local metres."""
    n, all_flags, base = _HEADER.unpack_from(block)
    flags = all_flags & _ALL_NARROW
    off = _HEADER.size
    if flags == _ALL_NARROW:
        wide: list[int] = []
        w = np.empty((0, n))
        c32 = np.frombuffer(block, np.int32, 3 * n, off).reshape(3, n)
        c16 = np.frombuffer(block, np.int16, 3 * n, off + 12 * n).reshape(3, n)
        off += 18 * n
    else:
        wide = [c for c in range(_N_COLS) if not flags >> c & 1]
        w = np.frombuffer(block, np.float64, len(wide) * n, off).reshape(len(wide), n)
        off += w.nbytes
        c32, off = _narrow_codes(block, off, n, [c for c in range(3) if flags >> c & 1], np.int32)
        c16, off = _narrow_codes(
            block, off, n, [c - 3 for c in range(3, _N_COLS) if flags >> c & 1], np.int16
        )
    seq = _unpack_seq(block, off, n, all_flags)
    ints = np.empty((2, n), np.int64)
    ts, row = ints
    row.fill(-1)
    vals = np.empty((5, n))  # rows of one allocation: contiguous columns
    lat, lon, spd, acc, hdg = vals
    _decode(c32, c16, base, ts, lat, lon, spd, acc, hdg)
    for k, c in enumerate(wide):  # the 64-bit columns as stored, bit for bit
        if c == 0:
            ts[:] = w[k].view(np.int64)
        else:
            vals[c - 1] = w[k]
    x, y = project(lat, lon)
    return Pending(ts, lat, lon, x, y, spd, acc, hdg, seq, row)


def _narrow_codes(
    block: bytes, off: int, n: int, which: list[int], dtype: type[np.signedinteger]
) -> tuple[npt.NDArray[np.signedinteger], int]:
    """The int32 (ts, lat, lon) or int16 (speed, accuracy, heading) code rows ``which``
    stored at ``off``, in a (3, n) array with zeros for the 64-bit columns; and the
    offset after them."""
    codes = np.zeros((3, n), dtype)
    stored = np.frombuffer(block, dtype, len(which) * n, off).reshape(len(which), n)
    codes[np.array(which, np.intp)] = stored
    return codes, off + stored.nbytes
