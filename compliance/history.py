"""Historical speeds per place and hour of week, for ETAs (DESIGN.md "ETA").

Learned from stored matched pings (their positions, times and speeds), handed to the
engine as a plain value: compliance stays I/O-free, the caller (ingest, a nightly job)
queries the pings and calls :meth:`SpeedProfile.learn`.

The key is a geographic cell of ~:data:`CELL_DEG` (about 220 m) and the hour of week, so
every trip over the same streets shares what was learned, whatever its route's
``route_m``. Only moving samples count (a stop's service time is in the plan, not in the
travel speed). Each trip gets the cell of every :data:`BIN_M` bin of its route once
(:meth:`SpeedProfile.route_cells`); an ETA then integrates travel time bin by bin with the
speed of the hour it expects to be there, blended with the vehicle's recent speed near
the vehicle and with the planned speed where the history is thin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

HOURS_OF_WEEK = 168
#: cell size in degrees of latitude/longitude (~220 m at the equator)
CELL_DEG = 0.002
#: route bin length for ETA integration, metres
BIN_M = 200.0
#: samples slower than this are dwelling, not travelling, m/s
MOVING_MPS = 1.0
#: a (cell, hour) needs this many samples before it is trusted
MIN_SAMPLES = 5
#: the vehicle's recent speed dominates this close ahead of it, metres (e-folding)
RECENT_M = 1000.0
_EPOCH_MONDAY_MS = 4 * 86_400_000  # 1970-01-05 was a Monday


def hour_of_week(ts_ms: F64 | float, utc_offset_h: float) -> I64:
    """0 = Monday 00:00-01:00 local time ... 167 = Sunday 23:00."""
    local_h = (np.asarray(ts_ms, np.float64) - _EPOCH_MONDAY_MS) / 3_600_000.0 + utc_offset_h
    return np.floor(local_h).astype(np.int64) % HOURS_OF_WEEK


def _cell_keys(lat: F64, lon: F64) -> I64:
    i = np.floor(np.asarray(lat, np.float64) / CELL_DEG).astype(np.int64)
    j = np.floor(np.asarray(lon, np.float64) / CELL_DEG).astype(np.int64)
    return (i << 32) ^ (j & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class SpeedProfile:
    """Mean moving speed (m/s) per cell and hour of week; NaN where thin."""

    utc_offset_h: float
    cell_index: dict[int, int]  # cell key -> row of ``mps``
    mps: npt.NDArray[np.float32]  # (cells, 168)

    @classmethod
    def learn(
        cls,
        lat: F64,
        lon: F64,
        ts_ms: F64,
        speed_mps: F64,
        utc_offset_h: float = 0.0,
        min_samples: int = MIN_SAMPLES,
    ) -> SpeedProfile:
        """From matched pings (degrees, epoch ms, m/s); dwelling samples are left out."""
        speed = np.asarray(speed_mps, np.float64)
        moving = np.isfinite(speed) & (speed >= MOVING_MPS)
        keys = _cell_keys(np.asarray(lat)[moving], np.asarray(lon)[moving])
        how = hour_of_week(np.asarray(ts_ms, np.float64)[moving], utc_offset_h)
        uniq, rows = np.unique(keys, return_inverse=True)
        flat = rows * HOURS_OF_WEEK + how
        size = len(uniq) * HOURS_OF_WEEK
        total = np.bincount(flat, weights=speed[moving], minlength=size)
        count = np.bincount(flat, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count >= min_samples, total / np.maximum(count, 1), np.nan)
        return cls(
            utc_offset_h,
            {int(k): r for r, k in enumerate(uniq.tolist())},
            mean.reshape(len(uniq), HOURS_OF_WEEK).astype(np.float32),
        )

    def route_cells(self, lat: F64, lon: F64) -> I64:
        """Row of :attr:`mps` for each route bin midpoint (degrees), -1 where unknown."""
        keys = _cell_keys(lat, lon)
        return np.array([self.cell_index.get(int(k), -1) for k in keys.tolist()], np.int64)

    def etas(
        self,
        cells: I64,
        pos_m: float,
        now_ms: float,
        stop_m: F64,
        service_ms: F64,
        recent_mps: float,
        default_mps: float,
    ) -> F64:
        """Arrival time (epoch ms) at each of ``stop_m`` (ascending route metres, all
        ahead of ``pos_m``), with ``service_ms`` spent at each before driving on.

        Bin by bin: the historical speed of the bin at the hour the vehicle is expected
        there, blended towards the recent speed near the vehicle (weight
        exp(-distance ahead / RECENT_M)); where the history knows nothing,
        ``default_mps`` (the engine's planned/recent blend), so an empty profile gives
        the engine's ETAs unchanged."""
        out = np.full(len(stop_m), np.nan)
        t = float(now_ms)
        m = float(pos_m)
        for k, target in enumerate(np.asarray(stop_m, np.float64).tolist()):
            while m < target - 1e-9:
                b = int(m // BIN_M)
                step = min(target, (b + 1) * BIN_M) - m
                row = int(cells[b]) if 0 <= b < len(cells) else -1
                v = default_mps
                if row >= 0:
                    hist = float(self.mps[row, int(hour_of_week(t, self.utc_offset_h))])
                    if math.isfinite(hist):
                        v = hist
                        if math.isfinite(recent_mps):
                            w = math.exp(-(m - pos_m) / RECENT_M)
                            v = w * recent_mps + (1.0 - w) * hist
                t += 1000.0 * step / max(v, 0.5)
                m += step
            out[k] = t
            t += float(service_ms[k])
        return out


def bin_midpoints_m(length_m: float) -> F64:
    """Route metres of the midpoint of each :data:`BIN_M` bin of a route."""
    n = max(1, math.ceil(length_m / BIN_M))
    return np.minimum((np.arange(n) + 0.5) * BIN_M, length_m)
