"""Fast CSV loading of recorded pings (CONTRACT §8 ``PINGS.csv``) into a PingBatch.

The file is read as bytes and split into fields by a Numba kernel; numbers and RFC 3339
timestamps are parsed in place, so a million rows load in well under a second. Quoted
fields are not part of the format (vehicle ids are ``[A-Za-z0-9._-]``); a file with
quotes falls back to the stdlib ``csv`` module.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from numba import njit

from compliance.plan import parse_time_ms
from compliance.types import PingBatch

U8 = npt.NDArray[np.uint8]
REQUIRED = ("vehicle_id", "ts", "lat", "lon")
OPTIONAL = ("speed", "heading", "accuracy", "seq")


@njit(cache=True)
def _split(buf, ncols, starts, ends):
    """Field boundaries of every non-empty line; returns the row count (-1 on a bad row)."""
    n = buf.shape[0]
    row = 0
    col = 0
    s = 0
    i = 0
    while i <= n:
        c = buf[i] if i < n else 10
        if c == 44 or c == 10:  # ',' or '\n'
            e = i
            if c == 10 and e > s and buf[e - 1] == 13:
                e -= 1
            if c == 10 and col == 0 and e == s:
                s = i + 1  # empty line
                i += 1
                continue
            if col >= ncols:
                return -1
            starts[row, col] = s
            ends[row, col] = e
            col += 1
            s = i + 1
            if c == 10:
                if col != ncols:
                    return -1
                row += 1
                col = 0
        i += 1
    return row


@njit(cache=True)
def _float(buf, s, e):
    if s >= e:
        return np.nan
    neg = False
    if buf[s] == 45 or buf[s] == 43:
        neg = buf[s] == 45
        s += 1
    mant = 0.0
    scale = 0
    seen_dot = False
    digits = 0
    while s < e:
        c = buf[s]
        if 48 <= c <= 57:
            mant = mant * 10.0 + (c - 48)
            digits += 1
            if seen_dot:
                scale -= 1
        elif c == 46 and not seen_dot:
            seen_dot = True
        elif c == 101 or c == 69:
            break
        else:
            return np.nan
        s += 1
    if digits == 0:
        return np.nan
    if s < e:  # exponent
        s += 1
        eneg = False
        if s < e and (buf[s] == 45 or buf[s] == 43):
            eneg = buf[s] == 45
            s += 1
        ex = 0
        while s < e:
            c = buf[s]
            if not (48 <= c <= 57):
                return np.nan
            ex = ex * 10 + (c - 48)
            s += 1
        scale += -ex if eneg else ex
    v = mant * 10.0**scale if scale >= 0 else mant / 10.0 ** (-scale)
    return -v if neg else v


@njit(cache=True)
def _digits(buf, s, n):
    v = 0
    for k in range(n):
        c = buf[s + k]
        if not (48 <= c <= 57):
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(cache=True)
def _days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def _ts_ms(buf, s, e):
    """Epoch ms from integer ms or RFC 3339 (offset required); -2**62 when invalid."""
    bad = -(2**62)
    if s >= e:
        return bad
    if e - s < 19 or buf[s + 4] != 45:  # no 'YYYY-': epoch milliseconds
        v = _float(buf, s, e)
        if not math.isfinite(v):
            return bad
        return np.int64(v)
    y = _digits(buf, s, 4)
    mo = _digits(buf, s + 5, 2)
    d = _digits(buf, s + 8, 2)
    hh = _digits(buf, s + 11, 2)
    mi = _digits(buf, s + 14, 2)
    ss = _digits(buf, s + 17, 2)
    if min(y, mo, d, hh, mi, ss) < 0 or not (1 <= mo <= 12 and 1 <= d <= 31):
        return bad
    p = s + 19
    frac_ms = 0.0
    if p < e and buf[p] == 46:
        p += 1
        scale = 100.0
        while p < e and 48 <= buf[p] <= 57:
            frac_ms += (buf[p] - 48) * scale
            scale /= 10.0
            p += 1
    if p >= e:
        return bad  # an offset is required
    off_min = 0
    c = buf[p]
    if c == 90 or c == 122:
        p += 1
    elif (c == 43 or c == 45) and p + 6 <= e and buf[p + 3] == 58:
        oh = _digits(buf, p + 1, 2)
        om = _digits(buf, p + 4, 2)
        if oh < 0 or om < 0:
            return bad
        off_min = (oh * 60 + om) * (1 if c == 43 else -1)
        p += 6
    else:
        return bad
    if p != e:
        return bad
    days = _days_from_civil(y, mo, d)
    secs = days * 86400 + hh * 3600 + mi * 60 + ss - off_min * 60
    return np.int64(secs) * 1000 + np.int64(round(frac_ms))


@njit(cache=True)
def _parse_cols(
    buf,
    starts,
    ends,
    nrows,
    c_ts,
    c_lat,
    c_lon,
    c_spd,
    c_hdg,
    c_acc,
    c_seq,
    ts,
    lat,
    lon,
    spd,
    hdg,
    acc,
    seq,
):
    bad = -1
    for r in range(nrows):
        ts[r] = _ts_ms(buf, starts[r, c_ts], ends[r, c_ts])
        lat[r] = _float(buf, starts[r, c_lat], ends[r, c_lat])
        lon[r] = _float(buf, starts[r, c_lon], ends[r, c_lon])
        spd[r] = _float(buf, starts[r, c_spd], ends[r, c_spd]) if c_spd >= 0 else np.nan
        hdg[r] = _float(buf, starts[r, c_hdg], ends[r, c_hdg]) if c_hdg >= 0 else np.nan
        acc[r] = _float(buf, starts[r, c_acc], ends[r, c_acc]) if c_acc >= 0 else np.nan
        if c_seq >= 0:
            v = _float(buf, starts[r, c_seq], ends[r, c_seq])
            seq[r] = np.int64(v) if math.isfinite(v) else -1
        else:
            seq[r] = -1
        if bad < 0 and (
            ts[r] == -(2**62) or not math.isfinite(lat[r]) or not math.isfinite(lon[r])
        ):
            bad = r
    return bad


@njit(cache=True)
def _fixed_width(buf, starts, ends, col, width, out):
    for r in range(out.shape[0]):
        s = starts[r, col]
        for k in range(min(width, ends[r, col] - s)):
            out[r, k] = buf[s + k]


@dataclass(slots=True)
class CodedPingBatch(PingBatch):
    """A :class:`PingBatch` that also carries each row's vehicle as an index into
    ``vehicle_names`` (the loader has it for free; grouping then needs no string work)."""

    vehicle_names: list[str] = field(default_factory=list)
    vehicle_code: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))


def load_pings_csv(path: str | Path) -> PingBatch:
    """Read ``PINGS.csv`` (columns vehicle_id,ts,lat,lon[,speed,heading,accuracy,seq])."""
    raw = Path(path).read_bytes()
    nl = raw.find(b"\n")
    header = (raw if nl < 0 else raw[:nl]).decode("utf-8-sig").strip().split(",")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    if b'"' in raw:
        return _load_with_csv(path)
    body = np.frombuffer(raw, dtype=np.uint8)[nl + 1 :] if nl >= 0 else np.empty(0, np.uint8)
    ncols = len(header)
    cap = int(np.count_nonzero(body == 10)) + 1
    starts = np.empty((cap, ncols), np.int64)
    ends = np.empty((cap, ncols), np.int64)
    nrows = int(_split(body, ncols, starts, ends))
    if nrows < 0:
        raise ValueError(f"{path}: a row does not have {ncols} fields")
    col = {h: i for i, h in enumerate(header)}
    ts = np.empty(nrows, np.int64)
    lat, lon, spd, hdg, acc = (np.empty(nrows) for _ in range(5))
    seq = np.empty(nrows, np.int64)
    bad = _parse_cols(
        body,
        starts,
        ends,
        nrows,
        col["ts"],
        col["lat"],
        col["lon"],
        col.get("speed", -1),
        col.get("heading", -1),
        col.get("accuracy", -1),
        col.get("seq", -1),
        ts,
        lat,
        lon,
        spd,
        hdg,
        acc,
        seq,
    )
    if bad >= 0:
        raise ValueError(f"{path}: bad ts/lat/lon on data row {bad + 1}")
    c_v = col["vehicle_id"]
    width = int((ends[:nrows, c_v] - starts[:nrows, c_v]).max()) if nrows else 1
    fixed = np.zeros((nrows, max(width, 1)), np.uint8)
    _fixed_width(body, starts, ends, c_v, max(width, 1), fixed)
    names, inv = np.unique(fixed.view(f"S{max(width, 1)}").ravel(), return_inverse=True)
    decoded = np.array([b.decode() for b in names], dtype=object)
    return CodedPingBatch(
        list(decoded[inv]),
        ts,
        lat,
        lon,
        spd,
        hdg,
        acc,
        seq,
        [str(v) for v in decoded],
        inv.astype(np.int64),
    )


def _load_with_csv(path: str | Path) -> PingBatch:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))

    def num(r: dict[str, str], k: str) -> float:
        v = (r.get(k) or "").strip()
        return float(v) if v else math.nan

    n = len(rows)
    return PingBatch(
        [r["vehicle_id"].strip() for r in rows],
        np.array(
            [
                parse_time_ms(int(r["ts"]) if r["ts"].strip().lstrip("-").isdigit() else r["ts"])
                for r in rows
            ],
            np.int64,
        ),
        np.array([num(r, "lat") for r in rows]),
        np.array([num(r, "lon") for r in rows]),
        np.array([num(r, "speed") for r in rows]),
        np.array([num(r, "heading") for r in rows]),
        np.array([num(r, "accuracy") for r in rows]),
        np.array(
            [int(num(r, "seq")) if math.isfinite(num(r, "seq")) else -1 for r in rows], np.int64
        )
        if n
        else np.empty(0, np.int64),
    )
