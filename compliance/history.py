"""Learned travel speeds per place and hour of week, for ETAs (DESIGN.md "ETA").

What the fleet actually drove, kept in the database (``speed_cells``, see
:mod:`store.speeds`) and handed to the engine as a plain value: compliance stays I/O-free.
The key is a geographic cell of ~:data:`CELL_DEG` (about 220 m) and the hour of week
(UTC), so every trip over the same streets shares what was learned, whatever its route.
Only moving samples count (a stop's service time is in the plan, not in the travel
speed).

The learned value is a weighted sum and weight of speeds per (cell, hour)
(:class:`SpeedCells`): the database adds each hour's new pings to it and decays the old
ones, :func:`aggregate` is the same sum over pings in memory (tests, offline benchmarks).
:meth:`SpeedProfile.from_cells` turns it into a table of mean speeds with two fallbacks
for a thin (cell, hour): the cell's all-week mean times the fleet's factor for that hour
(rush hours), else nothing (the engine's planned/recent blend).

Each trip gets the profile row of every :data:`BIN_M` bin of its route once
(:meth:`SpeedProfile.route_cells`); an ETA then integrates travel time bin by bin at the
speed of the hour it expects to be there (:func:`integrate_etas`), blended with the
engine's live speed near the vehicle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

HOURS_OF_WEEK = 168
#: cell size in degrees of latitude/longitude (~220 m at the equator)
CELL_DEG = 0.002
#: route bin length for ETA integration, metres
BIN_M = 200.0
#: samples slower than this are dwelling, not travelling, m/s (3.6 km/h)
MOVING_MPS = 1.0
#: fixes less accurate than this are not learned from, metres
MAX_ACCURACY_M = 50.0
#: a (cell, hour) needs this much (decayed) weight before it is trusted on its own
MIN_SAMPLES = 5.0
#: the engine's live speed (planned/recent blend) dominates this close ahead of the
#: vehicle, metres (e-folding); further on, the learned speeds do
NEAR_M = 1000.0
_EPOCH_MONDAY_MS = 4 * 86_400_000  # 1970-01-05 was a Monday


def hour_of_week(ts_ms: F64 | float, utc_offset_h: float = 0.0) -> I64:
    """0 = Monday 00:00-01:00 ... 167 = Sunday 23:00 (UTC + ``utc_offset_h``)."""
    local_h = (np.asarray(ts_ms, np.float64) - _EPOCH_MONDAY_MS) / 3_600_000.0 + utc_offset_h
    return np.floor(local_h).astype(np.int64) % HOURS_OF_WEEK


def cell_of(lat: F64, lon: F64) -> tuple[I64, I64]:
    """(row, column) of the ~220 m cell of each position (degrees)."""
    i = np.floor(np.asarray(lat, np.float64) / CELL_DEG).astype(np.int64)
    j = np.floor(np.asarray(lon, np.float64) / CELL_DEG).astype(np.int64)
    return i, j


def _keys(i: I64, j: I64) -> I64:
    return (np.asarray(i, np.int64) << 32) ^ (np.asarray(j, np.int64) & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class SpeedCells:
    """Learned sums, one row per (cell, hour of week): what ``speed_cells`` holds."""

    cell_i: I64
    cell_j: I64
    hour: I64
    weight: F64  # (decayed) number of moving samples
    sum_mps: F64  # (decayed) sum of their speeds

    def __len__(self) -> int:
        return len(self.hour)

    @classmethod
    def concat(cls, parts: list[SpeedCells]) -> SpeedCells:
        """The rows of all ``parts`` (a (cell, hour) in several adds up when profiled)."""
        return cls(
            *(np.concatenate([getattr(c, f) for c in parts]) for f in cls.__dataclass_fields__)
        )


def aggregate(
    lat: F64, lon: F64, ts_ms: F64, speed_mps: F64, accuracy_m: F64 | None = None
) -> SpeedCells:
    """The learned sums over pings in memory (degrees, epoch ms, m/s, metres), with the
    selection :func:`store.speeds.learn` makes in SQL: moving, accurate fixes."""
    speed = np.asarray(speed_mps, np.float64)
    keep = np.isfinite(speed) & (speed >= MOVING_MPS)
    if accuracy_m is not None:
        acc = np.asarray(accuracy_m, np.float64)
        keep &= ~(acc > MAX_ACCURACY_M)  # unknown accuracy (NaN) is kept
    i, j = cell_of(np.asarray(lat)[keep], np.asarray(lon)[keep])
    how = hour_of_week(np.asarray(ts_ms, np.float64)[keep])
    flat = _keys(i, j) * HOURS_OF_WEEK + how  # unique per (cell, hour)
    uniq, inv = np.unique(flat, return_inverse=True)
    first = np.zeros(len(uniq), np.int64)
    first[inv[::-1]] = np.arange(len(inv))[::-1]
    return SpeedCells(
        i[first],
        j[first],
        how[first],
        np.bincount(inv, minlength=len(uniq)).astype(np.float64),
        np.bincount(inv, weights=speed[keep], minlength=len(uniq)).astype(np.float64),
    )


@dataclass(frozen=True, slots=True)
class SpeedProfile:
    """Mean moving speed (m/s) per cell and hour of week, fallbacks filled in; NaN where
    nothing is known."""

    cell_index: dict[int, int]  # cell key -> row of ``mps``
    mps: F32  # (cells, 168)
    samples: int  # weight behind it, for logs and /healthz

    @classmethod
    def from_cells(cls, cells: SpeedCells, min_samples: float = MIN_SAMPLES) -> SpeedProfile:
        # decayed weights of fresh samples are a hair under 1 each: 5 fresh samples count 5
        min_samples *= 1.0 - 1e-6
        keys = _keys(cells.cell_i, cells.cell_j)
        uniq, rows = np.unique(keys, return_inverse=True)
        n = len(uniq)
        flat = rows * HOURS_OF_WEEK + cells.hour
        size = n * HOURS_OF_WEEK
        weight = np.bincount(flat, weights=cells.weight, minlength=size)
        total = np.bincount(flat, weights=cells.sum_mps, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(weight >= min_samples, total / weight, np.nan).reshape(n, -1)
            # fallback: the cell's all-week mean x the fleet's speed at that hour relative
            # to its all-week mean (rush hours slow every street about alike)
            cell_w = weight.reshape(n, -1).sum(axis=1)
            cell_mean = np.where(
                cell_w >= min_samples, total.reshape(n, -1).sum(axis=1) / cell_w, np.nan
            )
            hour_w = weight.reshape(n, -1).sum(axis=0)
            hour_mean = total.reshape(n, -1).sum(axis=0) / hour_w
            overall = total.sum() / weight.sum() if weight.sum() > 0 else np.nan
            factor = np.where(hour_w >= 50 * min_samples, hour_mean / overall, 1.0)
        fallback = cell_mean[:, None] * factor[None, :]
        mean = np.where(np.isfinite(mean), mean, fallback)
        return cls(
            {int(k): r for r, k in enumerate(uniq.tolist())},
            mean.astype(np.float32),
            round(float(cells.weight.sum())),
        )

    @classmethod
    def learn(
        cls, lat: F64, lon: F64, ts_ms: F64, speed_mps: F64, accuracy_m: F64 | None = None
    ) -> SpeedProfile:
        """From pings in memory (see :func:`aggregate`)."""
        return cls.from_cells(aggregate(lat, lon, ts_ms, speed_mps, accuracy_m))

    def route_cells(self, lat: F64, lon: F64) -> I64:
        """Row of :attr:`mps` for each route bin midpoint (degrees), -1 where unknown."""
        i, j = cell_of(lat, lon)
        return np.array([self.cell_index.get(int(k), -1) for k in _keys(i, j).tolist()], np.int64)

    def etas(
        self,
        cells: I64,
        pos_m: float,
        now_ms: float,
        stop_m: F64,
        service_ms: F64,
        near_mps: float,
        default_mps: float,
    ) -> F64:
        """Arrival time (epoch ms) at each of ``stop_m`` (ascending route metres, all
        ahead of ``pos_m``), with ``service_ms`` spent at each before driving on.

        Bin by bin: the learned speed of the bin at the hour the vehicle is expected
        there, blended towards ``near_mps`` near the vehicle (weight
        exp(-distance ahead / NEAR_M)); where the profile knows nothing,
        ``default_mps``. The engine passes its planned/recent blend as both, so an empty
        profile gives the engine's ETAs unchanged."""
        out = np.full(len(stop_m), np.nan)
        integrate_etas(
            self.mps,
            np.asarray(cells, np.int64),
            float(pos_m),
            float(now_ms),
            np.asarray(stop_m, np.float64),
            np.asarray(service_ms, np.float64),
            float(near_mps),
            float(default_mps),
            out,
        )
        return out


@njit(cache=True)
def integrate_etas(mps, cells, pos_m, now_ms, stop_m, service_ms, near_mps, default_mps, out):
    """:meth:`SpeedProfile.etas` into ``out`` (a Numba kernel: it runs per snapshot)."""
    t = now_ms
    m = pos_m
    nb = cells.shape[0]
    for k in range(stop_m.shape[0]):
        target = stop_m[k]
        while m < target - 1e-9:
            b = int(m // BIN_M)
            step = min(target, (b + 1) * BIN_M) - m
            v = default_mps
            row = cells[b] if 0 <= b < nb else -1
            if row >= 0:
                h = math.floor((t - _EPOCH_MONDAY_MS) / 3_600_000.0) % HOURS_OF_WEEK
                hist = float(mps[row, h])
                if math.isfinite(hist):
                    v = hist
                    if math.isfinite(near_mps):
                        w = math.exp(-(m - pos_m) / NEAR_M)
                        v = w * near_mps + (1.0 - w) * hist
            t += 1000.0 * step / max(v, 0.5)
            m += step
        out[k] = t
        t += service_ms[k]


def bin_midpoints_m(length_m: float) -> F64:
    """Route metres of the midpoint of each :data:`BIN_M` bin of a route."""
    n = max(1, math.ceil(length_m / BIN_M))
    return np.minimum((np.arange(n) + 0.5) * BIN_M, length_m)
