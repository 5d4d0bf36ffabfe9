"""Hand-built drives with hand-computed expectations, one per event type and route shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from compliance.engine import Engine
from compliance.events import Event, ms_to_rfc3339
from compliance.plan import TripPlan
from compliance.route import prepare
from compliance.trip import trip_key
from compliance.types import PingBatch, TripSnapshot
from tests.compliance.builders import T0_MS, batch, drive, headings, plan, polyline_at
from tests.compliance.helpers import at_s, kinds, run_batches, run_drive, signature

STRAIGHT = [(0.0, 0.0), (4000.0, 0.0)]


def _stop(stop_id: str, xy: tuple[float, float], **kw: object) -> dict[str, object]:
    return {"stop_id": stop_id, "order_id": f"O-{stop_id}", "xy": xy, "service_s": 60, **kw}


def test_delivery_run_arrives_departs_and_completes() -> None:
    p = plan(STRAIGHT, [_stop("S1", (2000.0, 10.0)), _stop("S2", (4000.0, 0.0))])
    # 2000 m at 36 km/h (200 s), dwell 60 s, 2000 m more (200 s), dwell 60 s, leave
    ts, x, y, _s = drive(STRAIGHT, [(200, 36), (60, 0), (200, 36), (60, 0)])
    ts2 = ts[-1] + 1000 * np.arange(1, 31)
    x2 = np.full(30, 4000.0) + np.arange(1, 31) * 5.0
    ev = run_drive(
        p,
        np.concatenate([ts, ts2]),
        np.concatenate([x, x2]),
        np.concatenate([y, np.full(30, 40.0) + np.arange(30) * 5.0]),
    )
    assert kinds(ev) == [
        "trip_started",
        "stop_arrived",
        "stop_departed",
        "stop_arrived",
        "stop_departed",
        "trip_completed",
    ]
    arrived = ev[1]
    assert arrived.details["stop_id"] == "S1"
    # enters the 75 m radius at 1925 m = 192.5 s; the dwell rule needs 30 s inside
    assert 190 <= at_s(arrived) <= 230
    assert ev[2].details["dwell_s"] >= 60
    assert ev[-1].details["on_time_stops"] == 2
    assert ev[-1].details["late_stops"] == 0


def test_unplanned_stop_away_from_planned_stops() -> None:
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    ts, x, y, _ = drive(STRAIGHT, [(100, 36), (180, 0), (100, 36)])
    ev = run_drive(p, ts, x, y)
    k = kinds(ev)
    assert k.count("unplanned_stop") == 1
    assert k.count("unplanned_stop_ended") == 1
    start = ev[k.index("unplanned_stop")]
    # the last 30 m of the approach already count as stationary (30 m radius)
    assert 100 + 120 - 4 <= at_s(start) <= 100 + 125
    end = ev[k.index("unplanned_stop_ended")]
    assert 175 <= end.details["duration_s"] <= 190


@pytest.mark.parametrize("phase_s", [0, 10, 20, 30, 40, 50])
def test_a_sparse_trackers_halt_counts_from_its_first_fix_whatever_the_phase(
    phase_s: int,
) -> None:
    """Fixes every 30 s: the halt begins on the first or on the second of two fixes
    outside the last cluster, depending on the phase. Either way it counts from the first
    fix at the halt (it counted from the next one, 30 s late, on half the phases)."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    ts, x, y, _ = drive(STRAIGHT, [(165 + phase_s, 36), (240, 0), (120, 36)])
    every = (ts - T0_MS) % 30_000 == 0
    ev = run_drive(p, ts[every], x[every], y[every])
    k = kinds(ev)
    assert k.count("unplanned_stop") == 1
    first_still = int(ts[every][(ts[every] - T0_MS) // 1000 >= 165 + phase_s][0])
    since = ev[k.index("unplanned_stop")].details["since"]
    assert since == ms_to_rfc3339(first_still)


def test_a_sparse_trackers_fixes_drifting_while_it_stands_keep_the_halt_whole() -> None:
    """Fixes every 30 s drift 35-70 m to one side while the device reports 0 km/h: one
    unplanned stop from the halt's start (the second fix of the halt, already drifted,
    broke the young cluster and the halt counted from a later fix), and no off_route."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(120, 36), (300, 0), (150, 36)], dt_s=30.0)
    halt = (ts - T0_MS > 120_000) & (ts - T0_MS <= 420_000)
    y[halt] += [0.0, 35.0, 60.0, 70.0, 70.0, 70.0, 70.0, 60.0, 35.0, 0.0]
    ev = run_drive(p, ts, x, y, s)
    k = kinds(ev)
    assert k.count("unplanned_stop") == 1 and "off_route" not in k
    since = ev[k.index("unplanned_stop")].details["since"]
    assert since in (ms_to_rfc3339(T0_MS + 120_000), ms_to_rfc3339(T0_MS + 150_000))


def test_a_sparse_tracker_crawling_through_a_jam_is_no_unplanned_stop() -> None:
    """Fixes every 30 s while the vehicle crawls ~0.9 m/s through a jam (20-40 m a fix,
    the device's speed 0-7 km/h with noise, under 2 km/h on some fixes): a fix read as
    standing that lies beyond the cluster is an outlying fix (two in a row end the
    cluster) unless the fix before it stood still too; it was excused as a standing
    vehicle's drift and the crawl taken for a 2-minute halt (the simulator's seeds 5-8
    at 30 s)."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    steps = [300.0, 300.0, 300.0, 300.0, 30.0, 23.0, 32.0, 20.0, 23.0, 36.0, 28.0, 30.0]
    steps += [24.0, 40.0, 300.0, 300.0, 300.0]
    kmh = [36.0] * 4 + [3.9, 1.0, 0.0, 2.3, 1.4, 5.0, 6.9, 1.6, 2.9, 5.8] + [36.0] * 3
    d = np.cumsum(steps)
    x, y = polyline_at(STRAIGHT, d)
    ts = T0_MS + 30_000 * np.arange(1, len(d) + 1, dtype=np.int64)
    k = kinds(run_drive(p, ts, x, y, np.array(kmh)))
    assert "trip_started" in k and "unplanned_stop" not in k


def test_a_sparse_trackers_halt_founded_by_one_standing_fix_survives_its_drift() -> None:
    """Fixes every 30 s: the halt's first fix is the second of two outside the moving
    cluster and 50 m past the first, so it founds the new cluster alone; the next fixes
    drift 45-80 m while the device reports 0 km/h. That drift is noise beside a cluster
    whose fix stood still too (it broke the one-fix cluster, and the halt counted from
    its third fix, 60 s late)."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(125, 36), (300, 0), (60, 36)])
    every = (ts - T0_MS) % 30_000 == 0
    ts, x, y, s = ts[every], x[every], y[every], s[every]
    halt = np.flatnonzero(s == 0)
    y[halt] += [0.0, 45.0, 80.0, 75.0, 80.0, 75.0, 80.0, 75.0, 45.0, 0.0]
    ev = run_drive(p, ts, x, y, s)
    k = kinds(ev)
    assert k.count("unplanned_stop") == 1 and "off_route" not in k
    assert ev[k.index("unplanned_stop")].details["since"] == ms_to_rfc3339(int(ts[halt[0]]))


def test_a_halt_begun_on_the_first_of_two_outside_fixes_survives_its_drift() -> None:
    """Fixes every 30 s: the halt's first fix is the first of two outside the moving
    cluster, and the second, standing too, drifted 45 m from it. A standing vehicle's
    drift explains that: the new cluster begins at the first (it began at the second,
    and the halt counted 30 s late)."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(155, 36), (300, 0), (60, 36)])
    every = (ts - T0_MS) % 30_000 == 0
    ts, x, y, s = ts[every], x[every], y[every], s[every]
    halt = np.flatnonzero(s == 0)
    y[halt] += [0.0, 45.0, 80.0, 75.0, 80.0, 75.0, 80.0, 75.0, 45.0, 0.0]
    ev = run_drive(p, ts, x, y, s)
    k = kinds(ev)
    assert k.count("unplanned_stop") == 1 and "off_route" not in k
    assert ev[k.index("unplanned_stop")].details["since"] == ms_to_rfc3339(int(ts[halt[0]]))


def test_a_sparse_trackers_halt_survives_two_outliers_in_a_row() -> None:
    """Fixes every 30 s: the second and third fixes of a halt are multipath outliers,
    110 m to one side and 170 m to the other, 300 m apart, while the device reports 0
    km/h. Two outlying fixes in a row were taken for movement: the halt's cluster began
    again at the second outlier, then at the fix after it, and the unplanned stop counted
    90 s late (`--interval-s 30 --seed 9`). Far apart while the device stood still at
    both, they are scatter about the standing vehicle: the halt counts from its first
    fix. Two fixes in a row together at a new place are still movement (the crawl
    above, and a halt ended)."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(120, 36), (300, 0), (150, 36)], dt_s=30.0)
    halt = np.flatnonzero(s == 0)
    x, y = x.copy(), y.copy()
    x[halt[1:3]] += [100.0, -100.0]
    y[halt[1:3]] += [110.0, -170.0]
    ev = run_drive(p, ts, x, y, s)
    k = kinds(ev)
    assert k.count("unplanned_stop") == 1 and k.count("unplanned_stop_ended") == 1
    since = ev[k.index("unplanned_stop")].details["since"]  # (or the fix reaching it)
    assert since in (ms_to_rfc3339(int(ts[halt[0] - 1])), ms_to_rfc3339(int(ts[halt[0]])))


@pytest.mark.parametrize("n_moving", [4, 5])
def test_a_halt_counts_from_its_first_fix_whatever_fix_the_drive_there_left_off_at(
    n_moving: int,
) -> None:
    """Fixes every 30 s: the last one driving (36 km/h) 66 m before the halt, then the
    halt's first fix, two multipath outliers (105 and 169 m off, the device at 0 km/h)
    and the halt's fixes. The fixes of the drive begin a cluster and give it up by turns;
    when the last one driving had begun one, the halt's first fix was held as its one
    outlying fix, the outliers took its place as scatter, and the halt counted from its
    fourth fix, 90 s late (`--interval-s 30 --seed 9`, once departures came a fix
    earlier). A fix the device says was taken moving is no cluster: the next fix away
    begins one."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    x0 = 300.0 * (n_moving - 1) + 66.0
    hx = [x0, x0 + 40, x0 - 30] + [x0 + d for d in (3.0, -4.0, 5.0, -2.0, 1.0, 4.0, -3.0)]
    hy = [0.0, 105.0, -169.0, 2.0, -3.0, 1.0, 4.0, -2.0, 0.0, 3.0]
    x = np.array([300.0 * k for k in range(n_moving)] + hx)
    y = np.array([0.0] * n_moving + hy)
    s = np.array([36.0] * n_moving + [0.0] * len(hx))
    ts = T0_MS + 30_000 * np.arange(1, len(x) + 1, dtype=np.int64)
    ev = run_drive(p, ts, x, y, s)
    assert kinds(ev) == ["trip_started", "unplanned_stop"]
    assert ev[1].details["since"] == ms_to_rfc3339(int(ts[n_moving]))


def test_a_halt_ends_on_the_first_fix_driving_off() -> None:
    """Fixes every 10 s: a 4-minute halt away from any stop, then the first fix 60 m on
    with the device reading 36 km/h, then a multipath fix back inside the halt's cluster
    (still 36 km/h), then the drive. The halt ended only on two fixes outside in a row,
    and the fix back inside put that off: 30 s late (`--interval-s 10 --sigma-m 12
    --outlier-rate 0.05` seeds 4 and 9). One fix outside that the device says was taken
    moving ends it (multipath moves a fix, not the Doppler speed)."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    drive_x = [100.0 * k for k in range(16)]
    halt_x = [1500.0 + d for d in (3.0, -2.0, 4.0, -3.0, 1.0, 2.0, -4.0) * 3 + (0.0, 2.0, -1.0)]
    off_x = [1560.0, 1503.0] + [1660.0 + 100.0 * k for k in range(8)]
    x = np.array(drive_x + halt_x + off_x)
    y = np.zeros(len(x))
    y[len(drive_x) + len(halt_x) + 1] = 4.0
    s = np.array([36.0] * len(drive_x) + [0.0] * len(halt_x) + [36.0] * len(off_x))
    ts = T0_MS + 10_000 * np.arange(1, len(x) + 1, dtype=np.int64)
    ev = run_drive(p, ts, x, y, s)
    assert kinds(ev) == ["trip_started", "unplanned_stop", "unplanned_stop_ended"]
    assert ev[2].ts_ms == ts[len(drive_x) + len(halt_x)]


def test_a_sparse_tracker_standing_at_a_stop_just_before_a_u_turn_arrives_there() -> None:
    """Fixes every 30 s: the last moving fix 30 m before stop A, the next one standing at
    it - where the return pass of the U-turn 120 m beyond lies too. Halfway between the
    two speeds the vehicle was expected at the U-turn, both passes were as likely, and
    the return pass skipped stop A for good (an unplanned stop at it instead)."""
    oab = [(0.0, 0.0), (650.0, 0.0), (0.0, 0.0)]
    p = plan(oab, [_stop("A", (530.0, 0.0))])
    ts, x, y, s = drive(oab, [(53, 36), (240, 0), (80, 36)])
    every = (ts - T0_MS - 20_000) % 30_000 == 0
    ev = run_drive(p, ts[every], x[every], y[every], s[every])
    k = kinds(ev)
    assert "stop_arrived" in k and "unplanned_stop" not in k
    assert ev[k.index("stop_arrived")].details["stop_id"] == "A"


def test_a_first_fix_thrown_onto_a_later_pass_of_a_loop_does_not_skip_the_stops_before() -> None:
    """The trip's first fix is an outlier beside the loop's return pass (1,850 m along):
    the trip started there, stop A (900 m) counted as passed, and the vehicle standing
    at it made an unplanned stop. The fixes that follow all lie on the first pass: once
    matching re-anchors there, the trip starts again behind; and a stop is skipped only
    behind a progress that a second fix confirmed (a skipped stop fails its order)."""
    loop = [(0.0, 0.0), (1000.0, 0.0), (1000.0, 150.0), (0.0, 150.0), (0.0, 0.0)]
    _arrives_at_a_after_a_wrong_first_fix(loop, (900.0, 0.0), 90, 10.0, (150.0, 150.0))


def _arrives_at_a_after_a_wrong_first_fix(
    route: list[tuple[float, float]],
    stop_xy: tuple[float, float],
    drive_s: int,
    dt_s: float,
    first_xy: tuple[float, float],
) -> None:
    """Drive ``drive_s`` s at 36 km/h to stop A, stand 3 minutes, drive on; fixes every
    ``dt_s`` s, the first thrown to ``first_xy``: A is arrived at, no unplanned stop."""
    p = plan(route, [_stop("A", stop_xy)])
    ts, x, y, s = drive(route, [(drive_s, 36), (180, 0), (200, 36)])
    every = (ts - T0_MS) % int(dt_s * 1000) == 0
    ts, x, y, s = ts[every], x[every].copy(), y[every].copy(), s[every]
    x[0], y[0] = first_xy
    ev = run_drive(p, ts, x, y, s)
    assert "unplanned_stop" not in kinds(ev)
    assert [e.details["stop_id"] for e in ev if str(e.type) == "stop_arrived"] == ["A"]


@pytest.mark.parametrize("dt_s", [5.0, 10.0, 20.0])
def test_a_first_fix_thrown_beside_a_later_pass_of_a_divided_road_anchors_nothing(
    dt_s: float,
) -> None:
    """The route runs out along one carriageway of a road and back along the other, 20 m
    beside it; stop A lies 300 m out. The trip's first fix is an outlier 45 m beside the
    return carriageway (65 m off the outbound one): matched there, it anchored the trip
    670 m along, the fixes that followed on the outbound carriageway were matched to the
    return one inside its corridor, A was passed over and the vehicle standing at it made
    an unplanned stop (at 5 and 10 s; `--patterns` 5 s seed 2, `--interval-s 20` seed 1
    in the simulator). A first fix that far from the route anchors nothing."""
    road = [(0.0, 0.0), (400.0, 0.0), (400.0, 20.0), (0.0, 20.0)]
    _arrives_at_a_after_a_wrong_first_fix(road, (300.0, 0.0), 30, dt_s, (150.0, 65.0))


@pytest.mark.parametrize("dt_s", [1.0, 10.0])
def test_a_vehicle_starting_on_a_road_beside_the_route_is_matched_a_fix_later(
    dt_s: float,
) -> None:
    """The first 800 m are driven on a service road 30 m beside the route (inside its
    corridor, over three sigmas off it), with stop S1 on that road. The first fix anchors
    nothing (a first fix that far off may be an outlier beside a later pass); the next
    one does, wherever it lies: skipping every such fix left this trip unstarted for
    four minutes and S1 never arrived at."""
    route = [(0.0, 0.0), (3000.0, 0.0)]
    p = plan(route, [_stop("S1", (300.0, 30.0))])
    path = [(0.0, 30.0), (800.0, 30.0), (820.0, 0.0), (3000.0, 0.0)]
    ts, x, y, s = drive(path, [(30, 36), (180, 0), (200, 36)])
    every = (ts - T0_MS) % int(dt_s * 1000) == 0
    ev = run_drive(p, ts[every], x[every], y[every], s[every])
    assert [e.details["stop_id"] for e in ev if str(e.type) == "stop_arrived"] == ["S1"]
    (started,) = [e for e in ev if str(e.type) == "trip_started"]
    assert at_s(started) <= 30.0


@pytest.mark.parametrize("dt_s", [5.0, 10.0])
def test_a_detour_along_a_later_stretch_the_wrong_way_is_no_progress(dt_s: float) -> None:
    """A U-shaped route; the vehicle leaves it 500 m out, drives north onto the route's
    last stretch and 400 m along it the wrong way, comes back south onto the first
    stretch and drives on to stop A. Re-acquired on the last stretch, the progress
    jumped 3.3 km ahead and A was skipped as passed: the vehicle standing at it made an
    unplanned stop (`--patterns` seed 2 at 5 and 10 s: a detour along a stretch 4 km
    ahead, in reverse, cost three stops). A moving vehicle heading against the route
    where it is matched, over 1 km ahead of the anchor, is on the route but not
    progressing along it."""
    route = [(0.0, 0.0), (2000.0, 0.0), (2000.0, 400.0), (0.0, 400.0)]
    p = plan(route, [_stop("A", (1500.0, 0.0))])
    path = [(0.0, 0.0), (500.0, 0.0), (500.0, 400.0), (900.0, 400.0), (900.0, 0.0), *route[1:]]
    ts, x, y, s = drive(path, [(230, 36), (180, 0), (300, 36)])
    hdg = headings(x, y)
    every = (ts - T0_MS) % int(dt_s * 1000) == 0
    ev = run_drive(p, ts[every], x[every], y[every], s[every], heading_deg=hdg[every])
    k = kinds(ev)
    assert "off_route" in k and "unplanned_stop" not in k
    assert [e.details["stop_id"] for e in ev if str(e.type) == "stop_arrived"] == ["A"]


@pytest.mark.parametrize("dt_s", [10.0, 30.0])
def test_a_halt_ends_when_the_vehicle_drives_off_with_its_speed_stuck_at_zero(dt_s: float) -> None:
    """A 5-minute halt, then 4 km of driving along the route with the device's speed
    stuck at 0: the fixes driving off are no multipath scatter about the halt (they lie
    on the route, and soon beyond multipath's reach), so the unplanned stop ends."""
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    ts, x, y, _ = drive(STRAIGHT, [(60, 36), (300, 0), (300, 36)], dt_s=dt_s)
    k = kinds(run_drive(p, ts, x, y, np.zeros(len(ts))))
    assert k.count("unplanned_stop") == 1 and k.count("unplanned_stop_ended") == 1


@pytest.mark.parametrize("dt_s", [5.0, 30.0])
def test_stops_a_jump_of_the_progress_passed_over_wait_for_the_vehicle(dt_s: float) -> None:
    """The route runs east past stops A and B, loops back west 400 m north of them, east
    again 800 m north, and at last back west 20 m beside A and B. The vehicle leaves it
    500 m out, drives north onto the 800 m stretch and 500 m along it (the route's way),
    then back south and on to A and B, where it stands. Re-acquired on that stretch, the
    progress jumped 4.8 km: A and B were skipped as passed, and the vehicle standing at
    each made an unplanned stop (`--interval-s 30 --seed 12`: a detour along two other
    passes of a winding route cost two stops). The stops a jump passed over wait, and -
    at 30 s the vehicle standing at them is matched to the last pass - it arrives at
    each by the stop's own place: both arrivals, its halts there planned."""
    p, (ts, x, y, s) = _jump_over_stops()
    every = (ts - T0_MS) % int(dt_s * 1000) == 0
    ev = run_drive(p, ts[every], x[every], y[every], s[every], heading_deg=headings(x, y)[every])
    k = kinds(ev)
    assert "unplanned_stop" not in k
    assert [e.details["stop_id"] for e in ev if str(e.type) == "stop_arrived"] == ["A", "B"]


def _jump_over_stops() -> tuple[TripPlan, tuple[npt.NDArray[Any], ...]]:
    """The plan and drive (ts, x, y, speed at 1 Hz) of the jump tests."""
    route = [(0.0, 0.0), (2000.0, 0.0), (2000.0, 400.0), (0.0, 400.0), (0.0, 800.0)]
    route += [(3000.0, 800.0), (3000.0, -20.0), (0.0, -20.0)]  # and back, 20 m beside A, B
    p = plan(route, [_stop("A", (1200.0, 0.0)), _stop("B", (1600.0, 0.0))])
    path = [(0.0, 0.0), (500.0, 0.0), (500.0, 800.0), (1000.0, 800.0), (1000.0, 0.0)]
    path += route[1:6]
    return p, drive(path, [(280, 36), (150, 0), (40, 36), (150, 0), (60, 36)])


def test_a_stop_a_jump_passed_over_is_not_due_while_the_vehicle_is_away() -> None:
    """While A and B wait after the jump (the vehicle on the stretch 800 m north, then
    coming back), their ETAs are the way back to them, not "due now": A's within 45 s
    of when the vehicle arrives there (100 s early before), B's after A's."""
    p, (ts, x, y, s) = _jump_over_stops()
    b = batch(p.vehicle_id, ts, x, y, s)
    eng = Engine()
    eng.add_trip(p)
    length = prepare(p).length_m
    seen: list[TripSnapshot] = []
    events: list[Event] = []
    for t0 in range(0, 680, 10):
        part = b.take(
            np.flatnonzero((b.ts_ms >= T0_MS + t0 * 1000) & (b.ts_ms < T0_MS + (t0 + 10) * 1000))
        )
        events += eng.process(part, int(part.ts_ms.max()) + 30_000).events
        snap = eng.snapshot(trip_key(p))
        assert snap is not None
        if snap.progress_pct / 100.0 * length > 3000.0 or seen:  # from the jump on
            seen.append(snap)
    events += eng.flush()
    arrived = next(e.ts_ms for e in events if str(e.type) == "stop_arrived")
    assert len(seen) >= 8
    for snap in seen:
        a, b_ = snap.stops
        if a.status != "pending":
            break
        assert a.eta_ms is not None and b_.eta_ms is not None
        assert abs(a.eta_ms - arrived) <= 45_000, (snap.ts_ms - T0_MS, a.eta_ms - arrived)
        assert b_.eta_ms > a.eta_ms


@pytest.mark.parametrize(
    ("gap_s", "kmh", "device_speed"),
    [(115, 36.0, True), (400, 36.0, True), (200, 20.0, True), (60, 72.0, False)],
)
def test_a_stop_passed_in_a_coverage_gap_is_skipped_not_left_waiting(
    gap_s: int, kmh: float, device_speed: bool
) -> None:
    """Driving on steadily through a coverage gap past stop A (its window ending a
    minute after): the progress leaps over 1 km, but no further than the vehicle drove
    meanwhile - no jump. A is skipped as passed and no `late` comes for it. (Measured
    from the median anchor, which the first fix after a gap refreshes, the leap counted
    as a jump: A waited, due 'now', and went late.)"""
    route = [(0.0, 0.0), (30000.0, 0.0)]
    a_m = kmh / 3.6 * 300.0  # passed at t = 300 s, mid-gap
    window = {"start": T0_MS, "end": T0_MS + 360_000}
    far = {"start": T0_MS, "end": T0_MS + 3 * 3600_000}
    p = plan(route, [_stop("A", (a_m, 0.0), window=window), _stop("B", (29000.0, 0.0), window=far)])
    ts, x, y, s = drive(route, [(300 + gap_s // 2 + 400, kmh)], dt_s=5.0)
    t_s = (ts - T0_MS) / 1000.0
    keep = np.abs(t_s - 300.0) > gap_s / 2
    b = batch(p.vehicle_id, ts[keep], x[keep], y[keep], s[keep] if device_speed else None)
    # A is skipped within the first fixes after the gap, not left waiting for 2 km (the
    # median gives the first one a match from before the gap: timed from that fix, the
    # next step was a jump), nor due 'now' then
    soon = b.ts_ms <= T0_MS + (300 + gap_s // 2 + 20) * 1000
    ev, eng = run_batches([p], [b.take(np.flatnonzero(soon))])
    snap = eng.snapshot("T1")
    assert snap is not None and [st.status for st in snap.stops] == ["skipped", "pending"]
    ev += run_batches([p], [b.take(np.flatnonzero(~soon))], eng)[0]
    assert "late" not in kinds(ev) and "stop_arrived" not in kinds(ev)
    snap = eng.snapshot("T1")
    assert snap is not None and [st.status for st in snap.stops] == ["skipped", "pending"]


@pytest.mark.parametrize(
    ("limits", "path", "kmh"),
    [
        # 68 km/h on an 80 km/h road under a 50 km/h default: two lone fixes 70 m beside
        # it, 20 s apart, were judged against the default and made a speeding run
        ([{"from_m": 0, "to_m": 10000, "kmh": 80}], "noise", 68.0),
        # 40 km/h leaving a 30 km/h street on a detour: the default limit applies there
        # before the off-route is confirmed too
        ([{"from_m": 0, "to_m": 10000, "kmh": 30}], "detour", 40.0),
    ],
)
def test_a_fix_outside_the_corridor_is_judged_against_the_more_lenient_limit(
    limits: list[dict[str, float]], path: str, kmh: float
) -> None:
    p = plan(STRAIGHT, speed_limit_kmh=50, speed_limits=limits)
    if path == "noise":
        ts, x, y, s = drive(STRAIGHT, [(200, kmh)], dt_s=10.0)
        y = y.copy()
        y[[8, 10]] = 70.0
    else:
        route = [(0.0, 0.0), (2000.0, 0.0), (2000.0, 3000.0)]
        ts, x, y, s = drive(route, [(280, 25), (250, kmh)], dt_s=10.0)
        s = np.where(y > 0, s, np.minimum(s, 25.0))
    ev = run_drive(p, ts, x, y, s)
    assert "speeding" not in kinds(ev)
    if path == "detour":
        assert "off_route" in kinds(ev)


@pytest.mark.parametrize(
    "offsets",
    [
        # the run's first fix too far off to judge its side; the next two cross the road
        [106.0, -90.0, 78.0, -86.0],
        # thrown across, then twice beyond the corridor + off_route_far_m, still abeam
        [58.0, -68.0, 103.0, -102.0],
    ],
)
def test_a_sparse_trackers_multipath_thrown_to_both_sides_is_no_off_route(
    offsets: list[float],
) -> None:
    """Fixes every 10 s at 45 km/h, four in a row thrown 60-110 m to alternate sides of
    the road (sigma 12 m on top of 55-90 m of multipath): the side of a fix beyond the
    corridor + off_route_far_m was never judged, so alternate sides confirmed an
    off_route."""
    ts, x, y, s = drive(STRAIGHT, [(300, 45)], dt_s=10.0)
    y = y.copy()
    y[10:14] = offsets
    ev = run_drive(plan(STRAIGHT), ts, x, y, s)
    assert "off_route" not in kinds(ev)


@pytest.mark.parametrize("lateral_m", [120.0, 200.0])
def test_multipath_thrown_off_a_moving_vehicle_that_its_heading_and_speed_deny_is_no_off_route(
    lateral_m: float,
) -> None:
    """A fix every 10 s at 40 km/h (111 m a fix) heading east along the road; four
    fixes, each parted from the next by one good fix, thrown ``lateral_m`` to the left.
    Each beyond the corridor + off_route_far_m, of a moving vehicle, counted as driving
    away; one good fix between does not end the run, so the third confirmed an
    off_route (``--interval-s 10 --sigma-m 12 --outlier-rate 0.05 --seed 4``: two such
    false alarms). The device's Doppler speed and heading are not thrown with the
    position: 200 m off, the step to the fix is longer than 40 km/h drives in 10 s;
    120 m off it is not, but it runs 47 degrees off the heading. Neither counts now."""
    ts, x, y, s = drive(STRAIGHT, [(300, 40)], dt_s=10.0)
    hdg = headings(x, y)
    y = y.copy()
    y[10:17:2] = lateral_m
    ev = run_drive(plan(STRAIGHT), ts, x, y, s, heading_deg=hdg)
    assert "off_route" not in kinds(ev)


@pytest.mark.parametrize("dt_s", [1.0, 5.0, 10.0])
def test_a_detour_whose_heading_turns_with_it_is_off_route(dt_s: float) -> None:
    """A detour reported with the device's heading: 90 degrees off the road at 1,000 m,
    300 m north, 1,000 m east, back down - each step keeps to a bearing between the
    headings at its ends, so the motion check lets the fixes count as driving away."""
    path = [(0.0, 0.0), (1000.0, 0.0), (1000.0, 300.0), (2000.0, 300.0), (2000.0, 0.0)]
    path.append((4000.0, 0.0))
    ts, x, y, s = drive(path, [(460, 36)], dt_s=dt_s)
    rng = np.random.default_rng(3)
    hdg = (headings(x, y) + rng.normal(0.0, 4.0, len(x))) % 360.0
    xn = x + rng.normal(0.0, 8.0, len(x))
    yn = y + rng.normal(0.0, 8.0, len(y))
    k = kinds(run_drive(plan(STRAIGHT), ts, xn, yn, s, heading_deg=hdg))
    assert k.count("off_route") == 1 and k.count("back_on_route") == 1


def test_outliers_jumping_about_far_off_a_standing_vehicle_are_no_off_route() -> None:
    """Standing at 2,000 m (device speed 0, a fix every 10 s), three fixes in a row
    thrown 130-220 m to one side, each 90-100 m from the last: beyond the corridor by
    off_route_far_m each counted as driving away, and they confirmed an off_route."""
    ts, x, y, s = drive(STRAIGHT, [(200, 36), (300, 0), (200, 36)], dt_s=10.0)
    x, y = x.copy(), y.copy()
    x[25:28] += [-50.0, 50.0, -10.0]
    y[25:28] = [130.0, 140.0, 220.0]
    ev = run_drive(plan(STRAIGHT), ts, x, y, s)
    assert "off_route" not in kinds(ev)


def test_fixes_drifting_far_off_a_standing_vehicle_are_no_off_route() -> None:
    """Standing at 2,000 m (device speed 0, a fix every 10 s), the fixes drift smoothly
    to 130 m off the route and part of the way back, 2-20 m from fix to fix. Those 100 m
    and more off, beyond the corridor by off_route_far_m, each counted as driving away
    (none jumped like an outlier) and confirmed an off_route - the simulator's
    standing_drift pattern at 10 s, sigma 12 m, seed 2. Now a fix standing far off, where
    the last one was, counts neither way."""
    ts, x, y, s = drive(STRAIGHT, [(200, 36), (300, 0), (200, 36)], dt_s=10.0)
    y = y.copy()
    standing = np.flatnonzero(s == 0)
    drift = [0, 10, 25, 45, 60, 75, 90, 100, 115, 125, 130, 128, 120, 110, 95, 80, 60, 40]
    y[standing[: len(drift)]] += drift
    k = kinds(run_drive(plan(STRAIGHT), ts, x, y, s))
    assert "trip_started" in k and "off_route" not in k


def test_a_sparse_tracker_parked_far_off_the_route_is_off_route() -> None:
    """A fix every 30 s: the vehicle leaves the route at 1,000 m, drives 300 m away and
    parks there for five minutes. One fix caught it driving; the parked ones, far off
    and where the last one was, are a vehicle out there, not outliers."""
    path = [(0.0, 0.0), (1000.0, 0.0), (1000.0, 300.0)]
    ts, x, y, s = drive(path, [(100, 36), (30, 36), (300, 0)], dt_s=30.0)
    ev = run_drive(plan(STRAIGHT), ts, x, y, s)
    assert "off_route" in kinds(ev)


def test_a_stop_just_before_a_u_turn_after_a_fix_thrown_to_the_tip_is_arrived_at() -> None:
    """A fix every 10 s at 24 km/h: the last moving fix before stop B, 100 m before the
    tip of an out-and-back, is thrown onto the tip. The standing fixes were expected
    from that fix on, nearer the return pass than B: B was skipped, its dwell an
    unplanned stop. A standing fix is now expected from the median anchor."""
    oab = [(0.0, 0.0), (1000.0, 0.0), (0.0, 0.0)]
    p = plan(oab, [_stop("B", (900.0, 0.0))])
    ts, x, y, s = drive(oab, [(135, 24), (180, 0), (180, 24)], dt_s=2.5)
    every = (ts - T0_MS) % 10_000 == 0
    ts, x, y, s = ts[every], x[every].copy(), y[every], s[every]
    last_moving = int(np.flatnonzero(s == 0)[0]) - 1
    x[last_moving] = 1000.0
    ev = run_drive(p, ts, x, y, s)
    k = kinds(ev)
    assert "unplanned_stop" not in k
    assert [e.details["stop_id"] for e in ev if str(e.type) == "stop_arrived"] == ["B"]


def test_detour_that_rejoins_skips_the_stop_in_between() -> None:
    p = plan(STRAIGHT, [_stop("S1", (2000.0, 0.0)), _stop("S2", (3600.0, 0.0))])
    # on route to 1000 m, detour 300 m north for 2000 m, rejoin at 3000 m, dwell at S2
    path = [
        (0.0, 0.0),
        (1000.0, 0.0),
        (1000.0, 300.0),
        (3000.0, 300.0),
        (3000.0, 0.0),
        (4000.0, 0.0),
    ]
    ts, x, y, _ = drive(path, [(420, 36), (40, 0), (40, 36)])
    eng = Engine()
    eng.add_trip(p)
    ev, eng = run_batches([], [batch("V1", ts, x, y)], eng)
    k = kinds(ev)
    assert k.count("off_route") == 1 and k.count("back_on_route") == 1
    assert k.index("off_route") < k.index("back_on_route")
    off = ev[k.index("off_route")]
    assert off.details["offset_m"] > 50
    back = ev[k.index("back_on_route")]
    assert back.route_m > 2900  # rejoined further along
    arrived = [e.details["stop_id"] for e in ev if str(e.type) == "stop_arrived"]
    assert arrived == ["S2"]
    snap = eng.snapshot("T1")
    assert snap is not None
    assert [s.status for s in snap.stops] == ["skipped", "departed"]


def test_noisy_gps_with_outliers_raises_no_false_off_route() -> None:
    rng = np.random.default_rng(7)
    route = [(0.0, 0.0), (3000.0, 0.0), (3000.0, 3000.0), (6000.0, 3000.0)]
    p = plan(route)
    ts, x, y, s = drive(route, [(800, 40)])
    x = x + rng.normal(0, 8, len(x))
    y = y + rng.normal(0, 8, len(y))
    out = rng.random(len(x)) < 0.03
    ang = rng.uniform(0, 2 * np.pi, out.sum())
    dist = rng.uniform(50, 150, out.sum())
    x[out] += dist * np.cos(ang)
    y[out] += dist * np.sin(ang)
    ev = run_drive(p, ts, x, y, s)
    assert "off_route" not in kinds(ev)
    assert "unplanned_stop" not in kinds(ev)


def test_speeding_with_device_speed_and_derived_speed() -> None:
    route = [(0.0, 0.0), (10000.0, 0.0)]
    p = plan(route, speed_limit_kmh=50, speed_limits=[{"from_m": 3000, "to_m": 6000, "kmh": 80}])
    # 60 km/h: speeding in the 50 zones only; 10 s over is not enough
    ts, x, y, s = drive(route, [(120, 60), (10, 40), (10, 70), (60, 45), (300, 70)])
    for speed in (s, None):
        ev = run_drive(p, ts, x, y, speed)
        sp = [e for e in ev if str(e.type).startswith("speeding")]
        assert [str(e.type) for e in sp][:2] == ["speeding", "speeding_ended"]
        first = sp[0]
        assert first.details["limit_kmh"] == 50
        assert 14 <= at_s(first) <= 30
        assert sp[1].details["max_kmh"] >= 58
        # 70 km/h between 3000 and 6000 m is under the 80 km/h range limit
        for e in sp:
            if str(e.type) == "speeding":
                assert not (3000 <= e.route_m < 5900)


def test_signal_lost_and_restored_from_a_gap() -> None:
    p = plan(STRAIGHT)
    ts, x, y, _ = drive(STRAIGHT, [(300, 36)])
    keep = (ts - T0_MS < 100_000) | (ts - T0_MS > 400_000 - 100_000 + 100_000)
    keep = (ts - T0_MS <= 100_000) | (ts - T0_MS >= 250_000)
    ev = run_drive(p, ts[keep], x[keep], y[keep])
    k = kinds(ev)
    assert k.count("signal_lost") == 1 and k.count("signal_restored") == 1
    lost = ev[k.index("signal_lost")]
    assert at_s(lost) == 100 + 120
    assert ev[k.index("signal_restored")].details["gap_s"] == 150


def test_signal_lost_from_the_watermark_alone() -> None:
    p = plan(STRAIGHT)
    ts, x, y, _ = drive(STRAIGHT, [(60, 36)])
    eng = Engine()
    eng.add_trip(p)
    eng.process(batch("V1", ts, x, y), int(ts[-1]))
    assert "signal_lost" not in kinds(eng.tick(int(ts[-1]) + 100_000))
    lost = eng.tick(int(ts[-1]) + 160_000)
    assert kinds(lost) == ["signal_lost"]
    assert lost[0].ts_ms == int(ts[-1]) + 120_000
    # the same event again when the next ping reveals the gap instead
    ev2 = run_drive(p, np.append(ts, ts[-1] + 200_000), np.append(x, x[-1] + 10), np.append(y, 0.0))
    assert [e.event_id for e in ev2 if str(e.type) == "signal_lost"] == [lost[0].event_id]


def test_late_against_the_window() -> None:
    far = [(0.0, 0.0), (20000.0, 0.0)]
    window = {"start": T0_MS + 60_000, "end": T0_MS + 120_000}
    p = plan(far, [_stop("S1", (20000.0, 0.0), window=window)])
    ts, x, y, _ = drive(far, [(300, 40)])
    ev = run_drive(p, ts, x, y)
    late = [e for e in ev if str(e.type) == "late"]
    assert len(late) == 1
    assert late[0].details["stop_id"] == "S1"
    assert late[0].details["delay_s"] > 600
    ok = plan(
        far, [_stop("S1", (20000.0, 0.0), window={"start": T0_MS, "end": T0_MS + 3 * 3600_000})]
    )
    assert "late" not in kinds(run_drive(ok, ts, x, y))


def test_back_on_schedule_after_catching_up() -> None:
    far = [(0.0, 0.0), (30000.0, 0.0)]
    window = {"start": T0_MS, "end": T0_MS + 1500_000}  # 25 min
    p = plan(far, [_stop("S1", (30000.0, 0.0), window=window)])
    # crawl (prediction slips past end + 10 min), then drive fast
    ts, x, y, _ = drive(far, [(400, 10), (900, 110)])
    ev = run_drive(p, ts, x, y)
    k = kinds(ev)
    assert "late" in k and "back_on_schedule" in k
    assert k.index("late") < k.index("back_on_schedule")


def test_loop_route_matches_the_right_pass() -> None:
    loop = [(0.0, 0.0), (1000.0, 0.0), (1000.0, 1000.0), (0.0, 1000.0), (0.0, 0.0)]
    p = plan(loop, [_stop("S1", (1000.0, 500.0)), _stop("S2", (0.0, 30.0))])
    r = prepare(p)
    assert np.allclose(r.stop_route_m, [1500.0, 3970.0], atol=1.0)
    ts, x, y, _ = drive(loop, [(150, 36), (40, 0), (255, 36), (40, 0), (20, 36)])
    eng = Engine()
    eng.add_trip(p)
    res = eng.process(batch("V1", ts, x, y), int(ts[-1]) + 60_000)
    ev = sorted(res.events + eng.flush(), key=lambda e: e.ts_ms)
    arrived = [e.details["stop_id"] for e in ev if str(e.type) == "stop_arrived"]
    assert arrived == ["S1", "S2"]
    assert kinds(ev)[0] == "trip_started"
    assert "off_route" not in kinds(ev)
    assert np.all(np.diff(res.route_m) >= -1.0)  # never jumps back to the first pass
    assert res.route_m[-40] > 3800


def test_out_and_back_stop_on_the_return_leg() -> None:
    oab = [(0.0, 0.0), (2000.0, 0.0), (0.0, 0.0)]
    p = plan(oab, [_stop("A", (1500.0, 0.0)), _stop("B", (500.0, 0.0))])
    r = prepare(p)
    assert np.allclose(r.stop_route_m, [1500.0, 3500.0], atol=1.0)
    ts, x, y, _ = drive(oab, [(150, 36), (40, 0), (200, 36), (40, 0), (60, 36)])
    eng = Engine()
    eng.add_trip(p)
    res = eng.process(batch("V1", ts, x, y), int(ts[-1]) + 60_000)
    truth = np.minimum(np.cumsum(np.diff(np.concatenate([[0.0], x])) ** 2 * 0 + 1), 0)
    del truth
    ev = sorted(res.events + eng.flush(), key=lambda e: e.ts_ms)
    assert [e.details["stop_id"] for e in ev if str(e.type) == "stop_arrived"] == ["A", "B"]
    # the turnaround: after 2000 m the match continues on the way back
    assert res.route_m.max() > 3400
    assert np.all(np.diff(res.route_m) >= -1.0)


def test_polyline_helper_matches_route_geometry() -> None:
    x, y = polyline_at([(0, 0), (10, 0), (10, 10)], np.array([0.0, 5.0, 15.0]))
    assert list(x) == [0.0, 5.0, 10.0] and list(y) == [0.0, 0.0, 5.0]


def test_second_trip_of_the_same_vehicle_takes_over_after_completion() -> None:
    first = plan(STRAIGHT, trip_id="A")
    back = [(4000.0, 0.0), (0.0, 0.0)]
    second = plan(back, trip_id="B", planned_start=T0_MS + 600_000)
    ts1, x1, y1, _ = drive(STRAIGHT, [(420, 36)])
    ts2, x2, y2, _ = drive(back, [(420, 36)], t0_ms=int(ts1[-1]))
    ts = np.concatenate([ts1, ts2])
    x = np.concatenate([x1, x2])
    y = np.concatenate([y1, y2])
    events, _ = run_batches([first, second], [batch("V1", ts, x, y)])
    by_trip = [(e.trip_id, str(e.type)) for e in events]
    assert by_trip == [
        ("A", "trip_started"),
        ("A", "trip_completed"),
        ("B", "trip_started"),
        ("B", "trip_completed"),
    ]


def test_a_next_trip_on_the_same_road_watched_all_along_takes_over_only_at_the_end() -> None:
    # B runs along A's road from 200 m, planned in A's lead window: its shadow starts and
    # stays on its route while A is driven and served (the watch runs A over the fixes
    # too, and that run becomes A's committed one): A's stops and end are A's own
    stops = [_stop("S1", (1000.0, 0.0)), _stop("S2", (2500.0, 0.0))]
    first = plan(STRAIGHT, stops, trip_id="A")
    second = plan([(200.0, 0.0), (4000.0, 0.0)], trip_id="B", planned_start=T0_MS + 300_000)
    ts, x, y, _ = drive(STRAIGHT, [(100, 36), (90, 0), (150, 36), (90, 0), (160, 36)], dt_s=5.0)
    b = batch("V1", ts, x, y)
    whole, eng = run_batches([first, second], [b])
    assert [(e.trip_id, str(e.type)) for e in whole] == [
        ("A", "trip_started"),
        ("A", "stop_arrived"),
        ("A", "stop_departed"),
        ("A", "stop_arrived"),
        ("A", "stop_departed"),
        ("A", "trip_completed"),
    ]
    assert whole[-1].details["on_time_stops"] + whole[-1].details["late_stops"] == 2
    assert "ended_by" not in whole[-1].details
    for size in (0, 1, 4, 9):
        if size:
            parts = [b.take(np.arange(a, min(a + size, len(b)))) for a in range(0, len(b), size)]
            events, eng = run_batches([first, second], parts)
            assert signature(events) == signature(whole), size
        snap = eng.snapshot("A")
        assert snap is not None and snap.status == "completed"
        assert [s.status for s in snap.stops] == ["departed", "departed"], size


def test_derived_speed_is_robust_to_gps_noise() -> None:
    """No device speed, sigma 8 m at 1 Hz, driving at the limit: no false speeding; clearly
    over it: speeding."""
    rng = np.random.default_rng(5)
    route = [(0.0, 0.0), (20000.0, 0.0)]
    p = plan(route, speed_limit_kmh=50)
    ts, x, y, _ = drive(route, [(600, 50)])
    noisy_x = x + rng.normal(0, 8, len(x))
    noisy_y = y + rng.normal(0, 8, len(y))
    assert "speeding" not in kinds(run_drive(p, ts, noisy_x, noisy_y))
    ts, x, y, _ = drive(route, [(300, 50), (120, 75)])
    ev = run_drive(p, ts, x + rng.normal(0, 8, len(x)), y + rng.normal(0, 8, len(y)))
    sp = [e for e in ev if str(e.type) == "speeding"]
    assert len(sp) == 1 and 300 + 15 <= at_s(sp[0]) <= 300 + 45


def test_coverage_gap_while_driving_is_not_an_unplanned_stop() -> None:
    p = plan(STRAIGHT)
    ts, x, y, _ = drive(STRAIGHT, [(380, 10)])
    keep = (ts - T0_MS <= 100_000) | (ts - T0_MS >= 300_000)
    ev = run_drive(p, ts[keep], x[keep], y[keep])
    assert "unplanned_stop" not in kinds(ev)
    assert kinds(ev).count("signal_lost") == 1


def test_outage_at_a_stop_then_resuming_on_the_return_leg_completes() -> None:
    """Signal lost while dwelling at a stop; the vehicle reappears far along, on the way
    back over the same street. The first fixes after the gap are ambiguous between the
    two passes: the match must follow the elapsed time, not stay stuck on the pre-gap
    anchor (which walked it onto the outward pass and the trip never completed)."""
    oab = [(0.0, 0.0), (3000.0, 0.0), (0.0, 0.0)]
    p = plan(oab, [_stop("S1", (1000.0, 0.0))])
    # 1000 m at 36 km/h, dwell 60 s, then drive on to the end; silent 150 s .. 460 s
    ts, x, y, _ = drive(oab, [(100, 36), (60, 0), (520, 36), (30, 0)])
    keep = (ts - T0_MS <= 150_000) | (ts - T0_MS >= 460_000)
    ev = run_drive(p, ts[keep], x[keep], y[keep])
    assert kinds(ev) == [
        "trip_started",
        "stop_arrived",
        "signal_lost",
        "signal_restored",
        "stop_departed",
        "trip_completed",
    ]
    assert at_s(ev[-1]) <= 720


def test_stop_on_an_edge_driven_there_and_back_is_on_the_first_pass() -> None:
    """The route drives the stop's street to the next corner and comes back along it (a
    U-turn 100 m on): the stop is placed on, and arrived at on, the first pass; it was
    placed on the return pass (both passes were one candidate) and never arrived at."""
    # the way back is 2 m nearer the curb: the return pass is (slightly) the nearest
    route = [
        (0.0, 0.0),
        (1000.0, 0.0),
        (1200.0, 0.0),
        (1200.0, -2.0),
        (1000.0, -2.0),
        (1000.0, 1000.0),
    ]
    p = plan(route, [_stop("S1", (1100.0, -6.0))])
    assert np.allclose(prepare(p).stop_route_m, [1100.0], atol=1.0)
    ts, x, y, _ = drive(route, [(110, 36), (90, 0), (130, 36)])
    ev = run_drive(p, ts, x, y)
    assert kinds(ev)[:3] == ["trip_started", "stop_arrived", "stop_departed"]
    assert 110 <= at_s(ev[1]) <= 145


def _abandon_then_next_trip(dt_s: float = 1.0) -> tuple[list[TripPlan], PingBatch]:
    """Trip A east along y = 0 is abandoned at 1500 m; the vehicle turns north and drives
    trip B (planned 10 min later) from its start at (1500, 800) to its end."""
    first = plan(STRAIGHT, trip_id="A")
    north = [(1500.0, 800.0), (1500.0, 4000.0)]
    second = plan(north, trip_id="B", planned_start=T0_MS + 600_000)
    path = [(0.0, 0.0), (1500.0, 0.0), (1500.0, 4000.0)]
    ts, x, y, _ = drive(path, [(550, 36), (30, 0)], dt_s=dt_s)
    return [first, second], batch("V1", ts, x, y)


def test_next_trip_takes_over_when_driven_while_the_first_never_completes() -> None:
    plans, b = _abandon_then_next_trip()
    events, _ = run_batches(plans, [b])
    by_trip = [(e.trip_id, str(e.type)) for e in events]
    assert by_trip == [
        ("A", "trip_started"),
        ("A", "off_route"),
        ("A", "trip_completed"),
        ("B", "trip_started"),
        ("B", "trip_completed"),
    ]
    ended = events[2]
    assert ended.details["ended_by"] == "next_trip_started"
    assert ended.details["next_trip_id"] == "B"
    # the vehicle reaches B's start at 230 s; B is confirmed started 100 m on, then
    # three fixes on B's route and off A's prove the hand-over
    assert 235 <= at_s(ended) <= 260
    assert at_s(events[3]) <= at_s(ended) + 20
    # the same events whatever the batching
    rebatched, _ = run_batches(
        plans, [b.take(np.arange(a, min(a + 7, len(b)))) for a in range(0, len(b), 7)]
    )
    assert signature(rebatched) == signature(events)
    # and across checkpoint/restore while B is being watched for
    eng = Engine()
    for p in plans:
        eng.add_trip(p)
    restored = []
    for a in range(0, len(b), 9):
        part = b.take(np.arange(a, min(a + 9, len(b))))
        restored += eng.process(part, int(part.ts_ms.max())).events
        eng = Engine.restore(eng.checkpoint())
    restored += eng.flush() + eng.tick(int(b.ts_ms.max()))
    assert signature(sorted(restored, key=lambda e: e.ts_ms)) == signature(events)


@pytest.mark.parametrize("dt_s", [1.0, 5.0])
def test_a_hand_over_is_the_same_whatever_fix_a_batch_starts_at(dt_s: float) -> None:
    # a long batch is looked at over its first fixes before the rest (compliance.takeover):
    # a batch starting anywhere from before the turn onto B to after the hand-over (found
    # among its first fixes, after them, or already made) gives the events of one batch
    plans, b = _abandon_then_next_trip(dt_s)
    whole, _ = run_batches(plans, [b])
    at = next(e.ts_ms for e in whole if "ended_by" in e.details)
    turn = int(np.searchsorted(b.ts_ms, T0_MS + 150_000))
    hand = int(np.searchsorted(b.ts_ms, at))
    for cut in range(turn, hand + 3, max(1, (hand + 3 - turn) // 25)):
        rest = b.take(np.arange(cut, len(b)))
        events, _ = run_batches(plans, [b.take(np.arange(cut)), rest])
        assert signature(events) == signature(whole), cut


@pytest.mark.parametrize(
    ("b_start_s", "ended_by"),
    [
        (200, "planned_end_overrun"),
        (255, "planned_end_overrun"),
        (260, "next_trip_started"),  # the third fix on B is the overrun's: B's wins
        (600, "next_trip_started"),
    ],
)
def test_a_hand_over_near_the_overrun_is_the_same_whatever_the_batching(
    b_start_s: int, ended_by: str
) -> None:
    # A (planned an hour earlier, no allowance) overruns at B's planned start, around
    # when the vehicle turns onto B (confirmed there at 260 s): the hand-over is decided
    # on runs over only the fixes up to the overrun, whichever fix a batch starts at
    first = plan(
        STRAIGHT, trip_id="A", thresholds={"trip_overrun_s": 0}, planned_start=T0_MS - 3_600_000
    )
    second = plan(
        [(1500.0, 800.0), (1500.0, 4000.0)], trip_id="B", planned_start=T0_MS + b_start_s * 1000
    )
    path = [(0.0, 0.0), (1500.0, 0.0), (1500.0, 4000.0)]
    ts, x, y, _ = drive(path, [(550, 36), (30, 0)], dt_s=5.0)
    b = batch("V1", ts, x, y)
    whole, _ = run_batches([first, second], [b])
    done = [e for e in whole if str(e.type) == "trip_completed"]
    assert [(e.trip_id, e.details.get("ended_by")) for e in done] == [("A", ended_by), ("B", None)]
    assert at_s(done[0]) == min(b_start_s, 260)
    for size in (1, 2, 3, 7):
        parts = [b.take(np.arange(a, min(a + size, len(b)))) for a in range(0, len(b), size)]
        events, _ = run_batches([first, second], parts)
        assert signature(events) == signature(whole), size


def test_next_trip_takes_over_after_the_first_overruns_its_plan() -> None:
    # planned: S1 at 300 s (2000 m -> 6.7 m/s), 60 s service, 2000 m more: ends at 660 s;
    # + 600 s overrun allowance = 1260 s, after B's planned start (1200 s)
    stop = _stop("S1", (2000.0, 0.0), planned_arrival=T0_MS + 300_000)
    first = plan(STRAIGHT, [stop], trip_id="A", thresholds={"trip_overrun_s": 600})
    second = plan([(0.0, 500.0), (3000.0, 500.0)], trip_id="B", planned_start=T0_MS + 1_200_000)
    # drives 1000 m of A, then stands there (on A's route) for half an hour
    ts, x, y, _ = drive(STRAIGHT, [(100, 36), (1800, 0)], dt_s=10.0)
    events, eng = run_batches([first, second], [batch("V1", ts, x, y)])
    done = [e for e in events if str(e.type) == "trip_completed"]
    assert [(e.trip_id, e.details["ended_by"]) for e in done] == [("A", "planned_end_overrun")]
    assert at_s(done[0]) == 1260
    assert done[0].details["skipped_stops"] == 1
    # the pings from then on are B's (500 m from its route: off it, not started)
    assert [(e.trip_id, str(e.type)) for e in events if e.ts_ms > done[0].ts_ms] == [
        ("B", "off_route")
    ]
    snap = eng.snapshot("B")
    assert snap is not None and snap.status == "planned" and snap.offset_m > 400


def test_sparse_fixes_complete_on_one_fix_standing_at_the_route_end() -> None:
    """Fixes every 20 s; the one on arrival is a multipath fix 60 m off; the tracker
    reports once more, standing at the end, then goes quiet: the trip completes."""
    p = plan(STRAIGHT)
    ts, x, y, s = drive(STRAIGHT, [(400, 36), (20, 0)], dt_s=20.0)
    y[-2] += 60.0
    ev = run_drive(p, ts, x, y, s)
    assert kinds(ev) == ["trip_started", "trip_completed"]
    assert at_s(ev[-1]) == 420


def test_halt_at_a_served_stops_place_on_the_way_back_is_unplanned() -> None:
    """Out and back along one street: a 3-minute halt on the way back where stop A was
    served on the way out is an unplanned stop (it was taken for stop A's place)."""
    oab = [(0.0, 0.0), (2000.0, 0.0), (0.0, 0.0)]
    p = plan(oab, [_stop("A", (1000.0, 0.0))])
    ts, x, y, _ = drive(oab, [(100, 36), (60, 0), (200, 36), (180, 0), (100, 36)])
    ev = run_drive(p, ts, x, y)
    assert kinds(ev)[1:5] == [
        "stop_arrived",
        "stop_departed",
        "unplanned_stop",
        "unplanned_stop_ended",
    ]
    # the last 30 m of the approach (3 s) already count as stationary (30 m radius)
    assert 360 + 120 - 6 <= at_s(ev[3]) <= 360 + 125


def test_noisy_fixes_while_standing_at_a_stop_are_no_departure() -> None:
    """Two fixes in a row 50 m off while the device reports 0 km/h at a stop (sigma 15 m
    and multipath do that): no departure, and the planned dwell never turns into an
    unplanned stop."""
    p = plan(STRAIGHT, [_stop("S1", (2000.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(200, 36), (240, 0), (200, 36)], dt_s=5.0)
    k = int(np.searchsorted(ts, T0_MS + 300_000))
    y[k : k + 2] += 50.0
    ev = run_drive(p, ts, x, y, s)
    assert kinds(ev) == ["trip_started", "stop_arrived", "stop_departed"]
    assert at_s(ev[2]) >= 440


def test_a_sparse_trackers_departure_comes_on_the_first_fix_driving_off() -> None:
    """Fixes every 30 s: the first fix beyond the stop's radius with the device reading
    the vehicle's speed is the departure (multipath moves a fix, not the Doppler speed).
    Waiting for a second fix made it an interval late, past the truth's tolerance for
    one departure in sixteen at 30 s. Without device speed a second fix confirms it."""
    p = plan(STRAIGHT, [_stop("S1", (2100.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(200, 36), (240, 0), (200, 36)], dt_s=30.0)
    first_away = int(np.flatnonzero((ts > T0_MS + 440_000) & (np.abs(x - 2100.0) > 85.0))[0])
    for speed, at in ((s, first_away), (None, first_away + 1)):
        ev = run_drive(p, ts, x, y, speed)
        assert kinds(ev)[:3] == ["trip_started", "stop_arrived", "stop_departed"]
        assert ev[2].ts_ms == ts[at], speed is None


def test_a_departure_in_a_coverage_gap_shows_on_the_fix_after_it_far_off() -> None:
    """The vehicle served S1, drove on to the route end in a 5-minute coverage gap and
    stood there; one fix there, then its tracker went quiet. Standing at the fix (device
    0 km/h), it was taken for multipath and the vehicle was still at S1: no departure,
    no end, and a false signal_lost followed (`--interval-s 30`, a signal_loss fault).
    Beyond multipath's reach of the stop one fix is the departure, standing or not - and
    the trip completes at the route end on the same fix."""
    p = plan(STRAIGHT, [_stop("S1", (2100.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(200, 36), (240, 0), (200, 36), (200, 0)], dt_s=30.0)
    keep = (ts <= T0_MS + 420_000) | (ts == ts[-1])
    b = batch(p.vehicle_id, ts[keep], x[keep], y[keep], s[keep])
    ev, eng = run_batches([p], [b])
    ev += eng.tick(int(ts[-1]) + 600_000)
    assert kinds(ev)[-4:] == ["signal_lost", "signal_restored", "stop_departed", "trip_completed"]
    assert ev[-2].ts_ms == ev[-1].ts_ms == ts[-1]


def test_a_sparse_trackers_last_fix_at_the_route_end_may_be_an_outlier() -> None:
    """Fixes every 30 s: the last fix on the route lies 5 m before its end (driving 12
    km/h), the next - the vehicle standing there, its tracker then quiet - 260 m off
    (multipath). The median progress lagged the end by a fix, the standing fix was off
    the route: the trip lingered for trip_abandon_s behind a false signal_lost. A
    standing fix within multipath's reach of the end after the last match there ends
    it. (Standing 300 m before the end instead, at a light, does not.)"""
    p = plan(STRAIGHT)
    t = T0_MS + 30_000 * np.arange(6, dtype=np.int64)
    x = np.array([2500.0, 2800.0, 3100.0, 3600.0, 3995.0, 4000.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 3.0, 260.0])
    s = np.array([36.0, 36.0, 36.0, 54.0, 12.0, 0.0])
    ev, eng = run_batches([p], [batch(p.vehicle_id, t, x, y, s)])
    ev += eng.tick(int(t[-1]) + 600_000)
    assert kinds(ev) == ["trip_started", "off_route", "trip_completed"] or kinds(ev) == [
        "trip_started",
        "trip_completed",
    ]
    assert ev[-1].ts_ms == t[-1]
    x[-2:] = [3700.0, 3700.0]  # the last match 300 m before the end
    ev, eng = run_batches([p], [batch(p.vehicle_id, t, x, y, s)])
    assert "trip_completed" not in kinds(ev)


def _quiet_after(
    x: list[float], y: list[float], s: list[float], after_ms: int | None = None
) -> tuple[list[Event], npt.NDArray[np.int64]]:
    """Fixes every 30 s along STRAIGHT at ``x``, ``y`` (device speed ``s``), then silence:
    the events up to a tick 10 minutes on, or, with ``after_ms``, up to one more ping
    that long after the last (where the last one was)."""
    p = plan(STRAIGHT)
    t = T0_MS + 30_000 * np.arange(len(x), dtype=np.int64)
    xs, ys, ss = np.array(x), np.array(y), np.array(s)
    if after_ms is None:
        ev, eng = run_batches([p], [batch(p.vehicle_id, t, xs, ys, ss)])
        return ev + eng.tick(int(t[-1]) + 600_000), t
    t2 = np.append(t, t[-1] + after_ms)
    b = batch(p.vehicle_id, t2, np.append(xs, xs[-1]), np.append(ys, ys[-1]), np.append(ss, 0))
    ev, eng = run_batches([p], [b])
    return ev + eng.tick(int(t2[-1]) + 30_000), t


def test_a_tracker_quiet_after_its_last_fix_at_the_route_end_ends_the_trip_there() -> None:
    """Fixes every 30 s; the tracker goes quiet with the ignition, a fix or none after
    the vehicle reached the route end. Its last fix there, standing, was thrown 140 m off
    by multipath (the last match 100 m before the end), or it matched at the end while
    the vehicle still rolled in (the median progress needs a second fix there): neither
    completes the trip on the fix, and a false signal_lost followed, then the end an hour
    late (`--interval-s 30`: 22 in seeds 1-12). The silence after such a fix ends the
    trip at it - the same from the tick and from a ping after the silence."""
    drive_in = [2500.0, 2800.0, 3100.0, 3500.0, 3900.0]
    for x_end, y_end, kmh in ((3880.0, 140.0, 0.0), (3990.0, 3.0, 20.0)):
        x, y, s = [*drive_in, x_end], [0.0] * 5 + [y_end], [43.0] * 5 + [kmh]
        for after_ms in (None, 300_000):
            ev, t = _quiet_after(x, y, s, after_ms)
            assert kinds(ev) == ["trip_started", "trip_completed"], (x_end, after_ms)
            assert ev[-1].ts_ms == t[-1] and "ended_by" not in ev[-1].details
            assert ev[-1].details["distance_m"] >= 1000


def test_the_next_trip_gets_the_pings_after_a_quiet_end() -> None:
    """The tracker quiet after its last fix at A's end wakes up 10 minutes later on the
    vehicle's next trip B: A ended at that fix (not taken over by B), B has the pings,
    whether they come in one batch with A's or after the tick."""
    a = plan(STRAIGHT, trip_id="A")
    north = [(4000.0, 0.0), (4000.0, 3000.0)]
    t = T0_MS + 30_000 * np.arange(6, dtype=np.int64)
    b = plan(north, trip_id="B", planned_start=int(t[-1]) + 300_000)
    x = np.array([2500.0, 2800.0, 3100.0, 3500.0, 3900.0, 3880.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 140.0])
    s = np.array([43.0] * 5 + [0.0])
    t2 = t[-1] + 600_000 + 10_000 * np.arange(20, dtype=np.int64)
    y2 = 10.0 * np.arange(20) * 10.0
    x2 = np.full(20, 4000.0)
    for split in (False, True):
        first = batch("V1", t, x, y, s)
        later = batch("V1", t2, x2, y2, np.full(20, 36.0))
        if split:
            ev, eng = run_batches([a, b], [first])
            ev += eng.tick(int(t[-1]) + 400_000)
            ev2, _ = run_batches([], [later], eng)
            ev += ev2
        else:
            both = batch(
                "V1",
                np.append(t, t2),
                np.append(x, x2),
                np.append(y, y2),
                np.append(s, np.full(20, 36.0)),
            )
            ev, eng = run_batches([a, b], [both])
        assert [(e.trip_id, str(e.type)) for e in ev] == [
            ("A", "trip_started"),
            ("A", "trip_completed"),
            ("B", "trip_started"),
        ], split
        assert ev[1].ts_ms == t[-1] and "ended_by" not in ev[1].details


def test_a_tracker_quiet_away_from_the_route_end_is_lost() -> None:
    """The silence after a fix standing 1 km before the end, after a fix driving 200 m
    before it, or after one standing 700 m off the end is a lost signal (and the trip
    ends for want of signal an hour on); so is a silence while the vehicle dwells at a
    stop 100 m before the route end (the trip ends when it leaves)."""
    drive_in = [2500.0, 2800.0, 3100.0]
    for x_end, y_end, kmh in ((3000.0, 0.0, 0.0), (3800.0, 0.0, 40.0), (3700.0, 650.0, 0.0)):
        ev, t = _quiet_after([*drive_in, 3400.0, x_end], [0.0] * 4 + [y_end], [43.0] * 4 + [kmh])
        lost = [e for e in ev if str(e.type) == "signal_lost"]
        assert len(lost) == 1 and lost[0].ts_ms == t[-1] + 120_000, x_end
    p = plan(STRAIGHT, [_stop("S1", (3900.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(390, 36), (90, 0)], dt_s=30.0)
    ev, eng = run_batches([p], [batch(p.vehicle_id, ts, x, y, s)])
    ev += eng.tick(int(ts[-1]) + 600_000)
    assert kinds(ev) == ["trip_started", "stop_arrived", "signal_lost"]


def test_a_multipath_burst_far_off_while_standing_at_a_stop_is_no_departure() -> None:
    """Three fixes in a row 150-300 m off (beyond the stop's radius) while the device
    reports 0 km/h, as a multipath burst gives them: the vehicle still stands there, so
    no departure, no unplanned stop at the stop, and the real departure on time."""
    p = plan(STRAIGHT, [_stop("S1", (2000.0, 0.0))])
    ts, x, y, s = drive(STRAIGHT, [(200, 36), (240, 0), (200, 36)], dt_s=10.0)
    k = int(np.searchsorted(ts, T0_MS + 300_000))
    x[k : k + 3] += [180.0, 250.0, -60.0]
    y[k : k + 3] += [40.0, 120.0, 130.0]
    assert (s[k : k + 3] == 0).all()
    ev = run_drive(p, ts, x, y, s)
    assert kinds(ev) == ["trip_started", "stop_arrived", "stop_departed"]
    assert 440 <= at_s(ev[2]) <= 460
