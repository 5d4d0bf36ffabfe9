"""Simulated drivers: every plan names one, a seeded scenario drives as before drivers
existed, and a pool's habits follow the driver from vehicle to vehicle."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.drivers import DRIVER_HABITS, Driver, make_pool
from simulator.scenario import ScenarioConfig, build

FAULTS = {"speeding": 0.3, "signal_loss": 0.2, "unplanned_stop": 0.2}


def test_each_plan_names_its_vehicles_driver_whose_habit_is_its_behavioural_fault() -> None:
    sim = build(ScenarioConfig(vehicles=12, seed=4, faults=FAULTS))
    assert len(sim.drivers) == 12 == len({d.driver_id for d in sim.drivers})
    for plan, driver, truth in zip(sim.plans, sim.drivers, sim.truths, strict=True):
        assert list(plan)[:4] == ["trip_id", "vehicle_id", "driver_id", "driver_name"]
        assert (plan["driver_id"], plan["driver_name"]) == (driver.driver_id, driver.name)
        assert driver.habit == (truth.fault if truth.fault in DRIVER_HABITS else None)
    assert {t.fault for t in sim.truths} >= {"speeding", "signal_loss"}
    # the same seed, the same people
    again = build(ScenarioConfig(vehicles=12, seed=4, faults=FAULTS))
    assert again.drivers == sim.drivers


def test_default_staffing_takes_each_vehicles_own_pace() -> None:
    """Drivers made per vehicle take the pace the scenario drew for it (the motion model
    is fed the same numbers as before drivers existed); a pool's paces replace them."""
    cfg = ScenarioConfig(vehicles=8, seed=9, faults=FAULTS)
    sim = build(cfg)
    np.testing.assert_array_equal(sim.fleet.driver, [d.pace for d in sim.drivers])
    assert all(0.9 <= d.pace <= 1.03 for d in sim.drivers)
    slow = [dataclasses.replace(d, driver_id=f"P{i}", pace=0.9) for i, d in enumerate(sim.drivers)]
    np.testing.assert_array_equal(build(dataclasses.replace(cfg, drivers=slow)).fleet.driver, 0.9)


def test_a_pools_habits_follow_the_driver_to_any_vehicle_and_day() -> None:
    pool = [
        Driver("D-lead", "Lead Foot", "speeding", 1.0),
        Driver("D-nap", "Napper", "unplanned_stop", 0.95),
        *(Driver(f"D-{k}", f"Clean {k}", None, 0.97) for k in range(4)),
    ]
    for seed in (1, 2, 3):  # three days, the vehicles staffed differently each time
        sim = build(ScenarioConfig(vehicles=5, seed=seed, faults=FAULTS, drivers=pool))
        for plan, driver, truth in zip(sim.plans, sim.drivers, sim.truths, strict=True):
            assert plan["driver_id"] == driver.driver_id
            if driver.habit is not None:
                assert truth.fault == driver.habit
            else:
                assert truth.fault in (None, "signal_loss")  # only the tracker's
        np.testing.assert_array_equal(sim.fleet.driver, [d.pace for d in sim.drivers])
    with pytest.raises(ValueError, match="cannot staff"):
        build(ScenarioConfig(vehicles=7, seed=1, drivers=pool))


def test_make_pool() -> None:
    pool = make_pool(200, seed=5, habits={"speeding": 0.25})
    assert len({d.driver_id for d in pool}) == 200 and pool[0].driver_id == "DRV-5-0000"
    speeders = sum(d.habit == "speeding" for d in pool)
    assert 30 < speeders < 70 and {d.habit for d in pool} == {"speeding", None}
    assert all(0.9 <= d.pace <= 1.03 and " " in d.name for d in pool)
    assert make_pool(200, seed=5, habits={"speeding": 0.25}) == pool
    with pytest.raises(ValueError, match="not a driver habit"):
        make_pool(3, seed=1, habits={"signal_loss": 0.5})
