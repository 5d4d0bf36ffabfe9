"""PostgreSQL binary COPY payloads built from NumPy columns in one compiled pass.

psycopg's ``Copy.write_row`` formats each row in C, but the caller still builds a Python
object per value (a ``datetime`` per timestamp, ``None`` per NaN) and awaits once per row:
about 4 us per ping on the engine's hot path. Here the columns stay arrays: fixed-width
values travel as their bit patterns (``int64``), text as one UTF-8 blob with offsets, and
a Numba kernel writes the rows of the documented binary format
(https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format") into one buffer,
which ``Copy.write`` sends as is (block mode: the buffer carries signature and trailer).

A payload names no types: the server reads each field with the receive function of the
target column, so the widths here must match the columns' types (8: int8, float8,
timestamptz; 4: int4, float4; 2: int2; 1: bool).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numba import njit
from psycopg import AsyncConnection

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension
_TRAILER = b"\xff\xff"
#: microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC)
_PG_EPOCH_US = 946_684_800_000_000


@dataclass
class Columns:
    """The columns of one COPY, in COPY column order: fixed-width ones, then text ones."""

    n: int
    _bits: list[I64] = field(default_factory=list)
    _widths: list[int] = field(default_factory=list)
    _nulls: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    _texts: list[Sequence[str | None]] = field(default_factory=list)

    def _fixed(self, bits: I64, width: int, nulls: npt.NDArray[np.bool_] | None) -> None:
        if self._texts:
            raise ValueError("fixed-width columns come before the text columns")
        self._bits.append(bits)
        self._widths.append(width)
        self._nulls.append(np.zeros(self.n, np.bool_) if nulls is None else nulls)

    def float8(self, values: F64) -> Columns:
        """float8, NULL where NaN."""
        v = np.ascontiguousarray(values, np.float64)
        self._fixed(v.view(np.int64), 8, np.isnan(v))
        return self

    def float4(self, values: F64) -> Columns:
        """float4, NULL where NaN."""
        v = np.ascontiguousarray(values, np.float64)
        bits = v.astype(np.float32).view(np.uint32).astype(np.int64)
        self._fixed(bits, 4, np.isnan(v))
        return self

    def int8(self, values: I64, null_below: int | None = None) -> Columns:
        """int8, NULL where below ``null_below`` (when given)."""
        v = np.ascontiguousarray(values, np.int64)
        self._fixed(v, 8, None if null_below is None else v < null_below)
        return self

    def timestamptz_ms(self, epoch_ms: I64) -> Columns:
        """timestamptz from Unix epoch milliseconds."""
        us = np.asarray(epoch_ms, np.int64) * 1000 - _PG_EPOCH_US
        self._fixed(us, 8, None)
        return self

    def bool_flag(self, flags: npt.NDArray[np.int8]) -> Columns:
        """bool from 1 / 0, NULL where negative."""
        f = np.asarray(flags, np.int64)
        self._fixed((f > 0).astype(np.int64), 1, f < 0)
        return self

    def text(self, values: Sequence[str | None]) -> Columns:
        """text, NULL where None."""
        self._texts.append(values)
        return self

    def payload(self) -> bytearray:
        """The whole COPY payload: signature, rows, trailer."""
        n = self.n
        bits = np.empty((n, len(self._bits)), np.int64)
        nulls = np.empty((n, len(self._bits) + len(self._texts)), np.bool_)
        for j, (b, z) in enumerate(zip(self._bits, self._nulls, strict=True)):
            bits[:, j] = b
            nulls[:, j] = z
        blobs = []
        offsets = np.zeros((len(self._texts), n + 1), np.int64)
        base = 0
        for k, col in enumerate(self._texts):
            encoded = [b"" if s is None else s.encode() for s in col]
            nulls[:, len(self._bits) + k] = [s is None for s in col]
            lengths = np.fromiter(map(len, encoded), np.int64, n)
            offsets[k, 0] = base
            np.cumsum(lengths, out=offsets[k, 1:])
            offsets[k, 1:] += base
            base = int(offsets[k, n])
            blobs.append(b"".join(encoded))
        text = np.frombuffer(b"".join(blobs), np.uint8)
        widths = np.asarray(self._widths, np.int64)
        # per row a field count, per field a length word, then the non-NULL values (a
        # NULL text's empty string adds nothing to the blob)
        rows = n * (2 + 4 * nulls.shape[1]) + int(widths @ (~nulls[:, : len(widths)]).sum(axis=0))
        buf = bytearray(len(_SIGNATURE) + rows + len(text) + len(_TRAILER))
        out = np.frombuffer(buf, np.uint8)
        out[: len(_SIGNATURE)] = np.frombuffer(_SIGNATURE, np.uint8)
        end = _write_rows(bits, widths, nulls, text, offsets, out, len(_SIGNATURE))
        out[end:] = np.frombuffer(_TRAILER, np.uint8)
        return buf


@njit(cache=True)
def _put(out, pos, value, width):
    """``value``'s low ``width`` bytes at ``out[pos:]``, big-endian (network order)."""
    for b in range(width):
        out[pos + b] = (value >> (8 * (width - 1 - b))) & 0xFF
    return pos + width


@njit(cache=True)
def _write_rows(bits, widths, nulls, text, offsets, out, pos):
    """Write every row from ``out[pos]``; returns the position after the last one."""
    n, ncols = nulls.shape
    k = widths.shape[0]
    for i in range(n):
        pos = _put(out, pos, ncols, 2)
        for j in range(k):
            if nulls[i, j]:
                pos = _put(out, pos, -1, 4)
            else:
                pos = _put(out, pos, widths[j], 4)
                pos = _put(out, pos, bits[i, j], widths[j])
        for t in range(ncols - k):
            if nulls[i, k + t]:
                pos = _put(out, pos, -1, 4)
            else:
                a, b = offsets[t, i], offsets[t, i + 1]
                pos = _put(out, pos, b - a, 4)
                out[pos : pos + b - a] = text[a:b]
                pos += b - a
    return pos


def warm_up() -> None:
    """Compile (or load from Numba's cache) the kernels, so a live worker's first commit
    does not pay for it: a few seconds on a cold cache."""
    Columns(1).float8(np.zeros(1)).text(["warm-up"]).payload()


async def copy_payload(conn: AsyncConnection, copy_sql: str, payload: bytearray) -> None:
    """Send a whole binary COPY payload (``copy_sql`` must say ``FORMAT BINARY``)."""
    async with conn.cursor().copy(copy_sql) as copy:
        await copy.write(payload)
