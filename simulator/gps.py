"""GPS trackers: what a device reports for a true position, and how it is delivered.

Per fix: Gaussian position noise (sigma in metres), rare multipath outliers (tens to
hundreds of metres), a reported 1-sigma accuracy, noisy device speed (km/h) and heading,
a small per-device clock skew. Delivery artifacts: coverage gaps whose fixes are
buffered and flushed as one JSON-array message, duplicates, out-of-order delivery and
malformed payloads. A *signal outage* (the signal_loss fault) is different from a
coverage gap: the device produces no fixes at all, so the engine must notice.

Everything is driven by one seeded ``numpy.random.Generator``; the same calls in the same
order give the same messages.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from simulator.network import LocalFrame

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: (ts_ms, lat, lon, speed_kmh, heading_deg, accuracy_m, seq)
Fix = tuple[int, float, float, float, float, float, int]

MALFORMED_SAMPLES: tuple[str, ...] = (
    '{"ts": 17637984',  # truncated JSON
    '{"lat": -6.2, "lon": 106.8}',  # missing ts
    '{"ts": 1763798400000, "lat": 123.0, "lon": 106.8}',  # latitude out of range
    '{"ts": 1763798400000, "lat": NaN, "lon": 106.8}',  # non-finite number
    "not json at all",
    '{"ts": "yesterday", "lat": -6.2, "lon": 106.8}',  # unparseable timestamp
)


@dataclass(slots=True)
class GpsConfig:
    sigma_m: float = 8.0
    outlier_rate: float = 0.02  # per fix
    outlier_min_m: float = 40.0
    outlier_max_m: float = 300.0
    speed_sigma_kmh: float = 1.5
    heading_sigma_deg: float = 4.0
    max_skew_ms: int = 1500
    gap_rate: float = 0.002  # per fix: a coverage gap starts
    gap_s: float = 20.0  # longest coverage gap (buffered, then flushed as an array)
    duplicate_rate: float = 0.01
    reorder_rate: float = 0.01
    malformed_rate: float = 0.0  # per message


@dataclass(slots=True)
class Message:
    """One MQTT payload: ``fixes`` (one object, or an array when ``as_array``) or garbage."""

    vehicle: int
    fixes: list[Fix]
    as_array: bool = False
    malformed: str | None = None


@dataclass(slots=True)
class Devices:
    """Tracker state for N vehicles."""

    config: GpsConfig
    frame: LocalFrame
    rng: np.random.Generator
    n: int
    outage_from_m: F64  # signal_loss fault: outage starts when s passes this (nan = none)
    outage_s: F64  # its duration
    skew_ms: I64 = field(init=False)
    seq: I64 = field(init=False)
    gap_until_s: F64 = field(init=False)
    outage_t0_s: F64 = field(init=False)
    buffers: dict[int, list[Fix]] = field(init=False)
    delayed: dict[int, list[Message]] = field(init=False)
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        m = self.config.max_skew_ms
        self.skew_ms = self.rng.integers(-m, m + 1, self.n) if m else np.zeros(self.n, np.int64)
        self.seq = np.zeros(self.n, np.int64)
        self.gap_until_s = np.full(self.n, -np.inf)
        self.outage_t0_s = np.full(self.n, np.nan)
        self.buffers = {}
        self.delayed = defaultdict(list)
        self.counts = defaultdict(int)

    def in_outage(self, t_s: float, idx: I64, s_m: F64) -> npt.NDArray[np.bool_]:
        """Start outages whose trigger distance was passed; True where one is running."""
        start = np.isnan(self.outage_t0_s[idx]) & (s_m >= self.outage_from_m[idx])
        self.outage_t0_s[idx[start]] = t_s
        t0 = self.outage_t0_s[idx]
        return (t_s >= t0) & (t_s < t0 + self.outage_s[idx])

    def observe(
        self, t_s: int, idx: I64, x_m: F64, y_m: F64, v_ms: F64, heading_deg: F64
    ) -> list[Message]:
        """Fixes for vehicles ``idx`` at true time t_s -> messages delivered at this tick."""
        cfg, rng, k = self.config, self.rng, len(idx)
        nx = rng.normal(0.0, cfg.sigma_m, k)
        ny = rng.normal(0.0, cfg.sigma_m, k)
        wild = rng.random(k) < cfg.outlier_rate
        r = rng.uniform(cfg.outlier_min_m, cfg.outlier_max_m, k)
        ang = rng.uniform(0.0, 2 * np.pi, k)
        nx = np.where(wild, r * np.cos(ang), nx)
        ny = np.where(wild, r * np.sin(ang), ny)
        lon, lat = self.frame.to_lonlat(x_m + nx, y_m + ny)
        speed = np.where(
            v_ms > 0, np.maximum(0.0, v_ms * 3.6 + rng.normal(0, cfg.speed_sigma_kmh, k)), 0.0
        )
        hdg_sigma = np.where(v_ms > 1.0, cfg.heading_sigma_deg, 25.0)
        heading = (heading_deg + rng.normal(0.0, 1.0, k) * hdg_sigma) % 360.0
        accuracy = cfg.sigma_m * rng.uniform(0.8, 1.25, k)
        ts_ms = t_s * 1000 + self.skew_ms[idx]
        self.seq[idx] += 1
        gap_start = rng.random(k) < cfg.gap_rate
        gap_len = rng.uniform(0.5, 1.0, k) * cfg.gap_s
        reorder = rng.random(k) < cfg.reorder_rate
        dup = rng.random(k) < cfg.duplicate_rate
        bad = rng.random(k) < cfg.malformed_rate
        bad_kind = rng.integers(0, len(MALFORMED_SAMPLES), k)
        flip = rng.random(k) < 0.5

        out = self.delayed.pop(t_s, [])
        rows = zip(
            idx.tolist(),
            ts_ms.tolist(),
            np.round(lat, 7).tolist(),
            np.round(lon, 7).tolist(),
            np.round(speed, 1).tolist(),
            np.round(heading, 1).tolist(),
            np.round(accuracy, 1).tolist(),
            self.seq[idx].tolist(),
            strict=True,
        )
        for j, (veh, ts, la, lo, sp, hd, ac, sq) in enumerate(rows):
            fix: Fix = (ts, la, lo, sp, hd, ac, sq)
            self.counts["fixes"] += 1
            if t_s < self.gap_until_s[veh]:
                self.buffers[veh].append(fix)
                continue
            if veh in self.buffers:
                burst = [*self.buffers.pop(veh), fix]
                if flip[j]:
                    burst.reverse()  # trackers do not promise order inside a flush
                out.append(Message(veh, burst, as_array=True))
                self.counts["bursts"] += 1
                continue
            if gap_start[j]:
                self.gap_until_s[veh] = t_s + gap_len[j]
                self.buffers[veh] = [fix]
                continue
            if bad[j]:
                out.append(Message(veh, [], malformed=MALFORMED_SAMPLES[bad_kind[j]]))
                self.counts["malformed"] += 1
                continue
            msg = Message(veh, [fix])
            if reorder[j]:
                # held back past the vehicle's next fix (at most a few seconds)
                self.delayed[t_s + 1 + int(gap_len[j] % 5) + 5].append(msg)
                self.counts["reordered"] += 1
            else:
                out.append(msg)
            if dup[j]:
                self.delayed[t_s + 1].append(Message(veh, [fix]))
                self.counts["duplicates"] += 1
        self.counts["messages"] += len(out)
        return out

    def flush(self) -> list[Message]:
        """Everything still held back (end of the run), in release order."""
        out = [m for t in sorted(self.delayed) for m in self.delayed[t]]
        self.delayed.clear()
        out += [Message(v, fixes, as_array=True) for v, fixes in sorted(self.buffers.items())]
        self.buffers.clear()
        return out
