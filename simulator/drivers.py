"""Simulated drivers: who drives each trip, and the habits that shape how.

A driver has a *pace* (the motion model's speed factor: 0.9 cautious, 1.03 brisk) and at
most one *habit*: one of the behavioural faults the simulator already models (speeding on
a stretch, a long unplanned stop, leaving the depot late, a detour, skipping a stop).
Device faults (``signal_loss``) belong to the tracker, not the driver.

Two ways to staff a scenario (``ScenarioConfig.drivers``):

* ``None`` (default): one driver per vehicle, made from what the scenario already drew
  for that vehicle — its pace, and its fault as the habit when the fault is behavioural.
  Every seeded scenario drives exactly as it did before drivers existed; its plans now
  name the driver (``driver_id``, ``driver_name``).
* a pool (:func:`make_pool`): drivers with their own habits, assigned to the vehicles
  (a seeded permutation); a driver with a habit shows it on every trip, whatever the
  vehicle, and drives at their own pace. The same pool over several seeds is the same
  people on different days: what the driver scorecard is meant to see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.faults import FAULT_KINDS, assign_faults

#: faults that are the driver's doing (the others are the tracker's, or the road's)
NOT_THE_DRIVER: tuple[str, ...] = (
    "signal_loss",
    "multipath_flip",
    "standing_drift",
    "tracker_dies",
    "traffic",
)
DRIVER_HABITS: tuple[str, ...] = tuple(k for k in FAULT_KINDS if k not in NOT_THE_DRIVER)

_FIRST = (
    "Budi", "Siti", "Agus", "Dewi", "Rudi", "Ayu", "Hendra", "Putri", "Joko", "Rina",
    "Andi", "Sri", "Bayu", "Wulan", "Eko", "Indah", "Fajar", "Maya", "Yusuf", "Lestari",
)  # fmt: skip
_LAST = (
    "Santoso", "Rahma", "Wijaya", "Saputra", "Hidayat", "Lestari", "Pratama", "Kusuma",
    "Nugroho", "Siregar", "Hasibuan", "Setiawan", "Gunawan", "Purnama", "Halim", "Sembiring",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Driver:
    driver_id: str
    name: str
    habit: str | None  # a DRIVER_HABITS fault shown on every trip, or None
    pace: float  # speed factor of the motion model


def _name(rng: np.random.Generator) -> str:
    return f"{_FIRST[int(rng.integers(len(_FIRST)))]} {_LAST[int(rng.integers(len(_LAST)))]}"


def make_pool(size: int, seed: int, habits: dict[str, float], prefix: str = "DRV") -> list[Driver]:
    """``size`` drivers (ids ``{prefix}-{seed}-{k:04d}``), each with at most one habit
    drawn by the given rates (``{"speeding": 0.3}``: about 30 % speed) and a pace."""
    unknown = sorted(set(habits) - set(DRIVER_HABITS))
    if unknown:
        raise ValueError(f"not a driver habit: {', '.join(unknown)}")
    rng = np.random.default_rng([seed, 4_000_037])
    kinds = assign_faults(habits, size, rng)
    pace = rng.uniform(0.9, 1.03, size)
    return [
        Driver(f"{prefix}-{seed}-{k:04d}", _name(rng), kinds[k], float(pace[k]))
        for k in range(size)
    ]


def per_vehicle(
    seed: int, id_prefix: str, faults: list[str | None], pace: np.ndarray
) -> list[Driver]:
    """The default staffing: vehicle i's driver has its pace and its behavioural fault."""
    rng = np.random.default_rng([seed, 4_000_039])
    return [
        Driver(
            f"{id_prefix}-{seed}-D{i:05d}",
            _name(rng),
            fault if fault in DRIVER_HABITS else None,
            float(pace[i]),
        )
        for i, fault in enumerate(faults)
    ]


def staff(
    pool: list[Driver], seed: int, faults: list[str | None]
) -> tuple[list[Driver], list[str | None]]:
    """Assign pool drivers to the vehicles (a seeded permutation: one trip each, as the
    trips run at the same time) and each vehicle's fault: its driver's habit, else a
    tracker fault it drew, else none."""
    n = len(faults)
    if len(pool) < n:
        raise ValueError(f"a pool of {len(pool)} drivers cannot staff {n} vehicles at once")
    order = np.random.default_rng([seed, 4_000_049]).permutation(len(pool))[:n]
    drivers = [pool[int(j)] for j in order]
    kinds = [
        d.habit if d.habit is not None else (f if f not in DRIVER_HABITS else None)
        for d, f in zip(drivers, faults, strict=True)
    ]
    return drivers, kinds
