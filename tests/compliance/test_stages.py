"""The stages of ``compliance.kernels.process_pings``, each on its own.

- every stage writes only the detector state slots it owns (``kernels.STAGES``), and no
  two stages own the same slot: read from the code, so a rule moved into the wrong stage
  or a stage reaching into another's state fails here;
- a stage called alone (its Numba function, outside the pipeline) equals its
  plain-Python reference in ``tests/naive.py`` on generated inputs.
"""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from compliance import kernels, layout
from compliance.config import Thresholds
from compliance.layout import (
    EVENT_CODES,
    N_EVF,
    N_PARAM,
    N_STOPF,
    N_STOPS,
    P_DEFAULT_LIMIT,
    P_PLANNED_END_MS,
    P_PLANNED_MPS,
    S_COMPLETED,
    S_LAST_TS,
    S_N,
    S_PROGRESS,
    S_RING,
    S_STARTED,
    STATUS_SKIPPED,
    T_M,
    T_SERVICE_S,
    T_WIN_END,
    U_STATUS,
)
from compliance.route import chunk_boxes
from compliance.trip import new_state
from tests import naive
from tests.compliance.builders import T0_MS

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = float(T0_MS)
TH = Thresholds().as_array()
SIGMA_M = Thresholds().gps_sigma_m
EAST = 90.0  # heading, degrees


def _functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(inspect.getsource(kernels))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _slots_written(fn: ast.FunctionDef) -> set[int]:
    """The ``st[...]`` slots a function assigns (``=``, ``+=``); the ring's computed
    indices count as the whole ring."""
    out: set[int] = set()
    for node in ast.walk(fn):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign):
            targets = [node.target]
        for t in targets:
            if not (isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)):
                continue
            if t.value.id != "st":
                continue
            names = {n.id for n in ast.walk(t.slice) if isinstance(n, ast.Name)}
            if "S_RING" in names:
                out.update(range(S_RING, S_RING + 2 * layout.RING))
            else:
                assert isinstance(t.slice, ast.Name), ast.unparse(t)
                out.add(getattr(layout, t.slice.id))
    return out


def test_every_stage_writes_only_the_state_it_owns() -> None:
    fns = _functions()
    owner: dict[int, str] = {}
    staged: set[str] = set()
    for stage, names, owned in kernels.STAGES:
        for slot in owned:
            assert slot not in owner, f"slot {slot} owned by {owner[slot]} and {stage}"
            owner[slot] = stage
        for name in names:
            assert name in fns, f"{stage}: no function {name}"
            extra = _slots_written(fns[name]) - set(owned)
            assert not extra, f"{name} ({stage}) writes slots it does not own: {sorted(extra)}"
            staged.add(name)
    # nothing else writes detector state: the pipeline itself only calls the stages
    for name, fn in fns.items():
        if name not in staged:
            assert not _slots_written(fn), f"{name} writes detector state outside a stage"


# ---- running one stage alone -------------------------------------------------------------


def _buffers(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cap = 4 * n + 4
    return np.zeros((cap, 3), np.int64), np.zeros(cap, np.int64), np.zeros((cap, N_EVF))


def _kinds(ev_i: np.ndarray, ev_ts: np.ndarray, ne: int) -> list[tuple[str, int]]:
    names = [str(c) for c in EVENT_CODES] + ["trip_abandoned"]  # (EV_TRIP_ABANDONED)
    return [(names[int(ev_i[k, 0])], int(ev_ts[k])) for k in range(ne)]


def _times(gaps_s: list[float]) -> list[int]:
    return [int(T0 + 1000 * sum(gaps_s[: k + 1])) for k in range(len(gaps_s))]


@SETTINGS
@given(
    st.lists(
        st.sampled_from([1.0, 5.0, 30.0, 119.0, 121.0, 600.0, 3500.0, 3700.0, 9000.0]),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([-math.inf, 0.0, 3000.0, 20_000.0]),
    st.sampled_from([60.0, 3600.0]),
    st.floats(0.0, 10_000.0),
    st.booleans(),
)
def test_signal_stage_and_tick_equal_reference(
    gaps_s: list[float], planned_end_s: float, abandon_s: float, tail_s: float, started: bool
) -> None:
    """Signal lost and restored, and the end of a trip abandoned for want of signal, from
    the pings (the signal stage) and from the tick after the last one (time_check)."""
    ts = _times(gaps_s)
    th = Thresholds(trip_abandon_s=abandon_s).as_array()
    par = np.zeros(N_PARAM)
    par[P_PLANNED_END_MS] = T0 + planned_end_s * 1000.0
    s = new_state()
    s[S_STARTED] = float(started)
    ustat = np.zeros((2, N_STOPS))  # two pending stops
    ev_i, ev_ts, ev_f = _buffers(len(ts))
    ne = 0
    for i, t in enumerate(ts):
        ne = kernels._signal(s, th, par, ustat, i, float(t), -6.2, 106.8, ev_i, ev_ts, ev_f, ne)
        assert s[S_LAST_TS] == t and s[S_N] == i + 1
    horizon = ts[-1] + int(tail_s * 1000)
    tail_i, tail_ts, tail_f = _buffers(1)
    n_tail = kernels.time_check(s, th, par, ustat, float(horizon), tail_i, tail_ts, tail_f)
    got = _kinds(ev_i, ev_ts, ne) + _kinds(tail_i, tail_ts, n_tail)
    want = naive.signal_events(
        ts,
        lost_s=120.0,
        abandon_s=abandon_s,
        planned_end_ms=T0 + planned_end_s * 1000.0,
        horizon_ms=horizon,
        active=started,
    )
    assert [k.replace("trip_abandoned", "trip_completed") for k, _ in got] == [k for k, _ in want]
    assert [t for _, t in got] == [t for _, t in want]
    ended = bool(s[S_COMPLETED] > 0)
    assert ended == (bool(want) and want[-1][0] == "trip_completed")
    if ended:  # its stops skipped
        assert (ustat[:, U_STATUS] == STATUS_SKIPPED).all()


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1.0, 3.0, 5.0, 10.0, 30.0]),
            st.floats(0.0, 200.0),
            st.sampled_from([1.0, -1.0]),
            st.floats(-40.0, 120.0),
            st.sampled_from([math.nan, 0.0, 1.0, 5.0, 9.9, 10.0, 40.0]),
            st.sampled_from([0.0, 0.0, 30.0]),
        ),
        min_size=1,
        max_size=60,
    )
)
# a run begun too far off to judge its side (held behind), then multipath across the road
@example(
    [(10.0, 120.0, 1.0, 100.0, 40.0, 30.0)]
    + [(10.0, 70.0, sd, 100.0, 40.0, 0.0) for sd in (-1.0, 1.0, -1.0)]
)
# outliers far off a standing vehicle, jumping about
@example(
    [(10.0, 0.0, 1.0, 100.0, 0.0, 0.0)]
    + [(10.0, d, 1.0, a, 0.0, 0.0) for d, a in ((130.0, -50.0), (140.0, 100.0), (220.0, -60.0))]
)
# far off and driving, then standing 120 m on (at a red light on a detour): it drove there
@example(
    [(10.0, 0.0, 1.0, 100.0, 40.0, 0.0), (10.0, 120.0, 1.0, 100.0, 40.0, 0.0)]
    + [(10.0, 130.0, 1.0, a, 0.0, 0.0) for a in (120.0, 0.0, 0.0)]
)
def test_off_route_stage_equals_reference(
    steps: list[tuple[float, float, float, float, float, float]],
) -> None:
    """Straight route along x: each fix ``along`` metres on from the last, ``offset``
    metres to one ``side``, with a device speed (NaN: none) and heading east (along the
    route: a fix thrown sideways is a step the heading does not explain), matched abeam
    or ``held`` metres behind (at a window's end)."""
    gaps, offsets, side_of, along, speeds, held = (list(c) for c in zip(*steps, strict=True))
    ts = _times(gaps)
    rx = np.array([0.0, 1e6])
    ry = np.zeros(2)
    rc = np.array([0.0, 1e6])
    boxes = chunk_boxes(rx, ry)
    corridor = 50.0
    px = (np.cumsum(along) + 1000.0).tolist()
    py = [sd * d for sd, d in zip(side_of, offsets, strict=True)]
    ms = [a - h for a, h in zip(px, held, strict=True)]
    s = new_state()
    ev_i, ev_ts, ev_f = _buffers(len(ts))
    ne = 0
    for i, t in enumerate(ts):
        d = offsets[i]
        prev_m, prev_d = (ms[i - 1], offsets[i - 1]) if i > 0 else (math.nan, math.nan)
        ne, on_route = kernels._off_route(
            rx, ry, rc, boxes, s, TH, i, float(t), px[i], py[i], 0.0, 0.0, speeds[i], EAST,
            ms[i], prev_m, prev_d, d, d <= corridor, corridor, SIGMA_M, i > 0, px[i - 1],
            py[i - 1], ev_i, ev_ts, ev_f, ne,
        )  # fmt: skip
        s[layout.S_SPEED_KMH] = speeds[i]  # (the speed stage, which runs next)
        assert on_route == (d <= corridor and not _off(s))
    route = (list(rx), list(ry), list(rc))
    sides = [naive.side_of(*route, m, a, b) for m, a, b in zip(ms, px, py, strict=True)]
    want = naive.off_route_events(
        ts,
        offsets,
        [corridor] * len(ts),
        [True] * len(ts),
        xy=list(zip(px, py, strict=True)),
        side=sides,
        abeam=[naive.abeam_of(*route, m, a, b) for m, a, b in zip(ms, px, py, strict=True)],
        speed_kmh=speeds,
        heading_deg=[EAST] * len(ts),
        sigma_m=SIGMA_M,
        route=route,
        route_m=ms,
    )
    assert _kinds(ev_i, ev_ts, ne) == want


@SETTINGS
@given(
    st.floats(-400.0, 400.0),
    st.floats(-400.0, 400.0),
    st.sampled_from([1.0, 5.0, 10.0, 15.0, 20.0, 30.0]),
    st.one_of(st.just(math.nan), st.floats(0.0, 120.0)),
    st.one_of(st.just(math.nan), st.floats(0.0, 120.0)),
    st.one_of(st.just(math.nan), st.floats(0.0, 359.9)),
    st.one_of(st.just(math.nan), st.floats(0.0, 359.9)),
    st.sampled_from([5.0, 8.0, 12.0]),
)
# thrown 120 m to the left of a vehicle heading east at 40 km/h: short enough for the
# speed, 47 degrees off the heading
@example(111.0, 120.0, 10.0, 40.0, 40.0, 90.0, 90.0, 8.0)
# a 90-degree turn onto a side street between two fixes: the step lies between
@example(10.0, 90.0, 10.0, 36.0, 36.0, 90.0, 0.0, 8.0)
# a turn of exactly 120 degrees in decimal headings, which rounds either side of it
@example(280.53, 32.95, 15.0, 74.2, 22.6, 329.1, 209.1, 5.0)
def test_motion_check_equals_reference(dx, dy, dt_s, kmh0, kmh1, hdg0, hdg1, sigma) -> None:
    got = kernels._motion_explains(dx, dy, dt_s, kmh0, kmh1, hdg0, hdg1, sigma)
    assert got == naive.motion_explains((dx, dy), dt_s, (kmh0, kmh1), (hdg0, hdg1), sigma)


def _sparse_detour(
    route: tuple[list[float], list[float]], fixes: list[tuple[float, float, float, float]]
) -> list[tuple[str, int]]:
    """A sparse tracker (a fix every 30 s, 40 km/h, no heading) on ``route`` (x, y), its
    ``fixes`` (x, y, matched route m, offset m) all outside a 50 m corridor: the off-route
    stage's events, checked against the reference's."""
    rx, ry = np.array(route[0]), np.array(route[1])
    rc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(rx), np.diff(ry)))])
    boxes = chunk_boxes(rx, ry)
    ts = _times([30.0] * len(fixes))
    s = new_state()
    ev_i, ev_ts, ev_f = _buffers(len(fixes))
    ne = 0
    for i, (px, py, m, d) in enumerate(fixes):
        prev = fixes[i - 1] if i > 0 else (math.nan,) * 4
        ne, _ = kernels._off_route(
            rx, ry, rc, boxes, s, TH, i, float(ts[i]), px, py, 0.0, 0.0, 40.0, math.nan, m,
            prev[2], prev[3], d, False, 50.0, SIGMA_M, i > 0, prev[0], prev[1], ev_i, ev_ts,
            ev_f, ne,
        )  # fmt: skip
    got = _kinds(ev_i, ev_ts, ne)
    ref = (list(rx), list(ry), list(rc))
    want = naive.off_route_events(
        ts,
        [d for *_, d in fixes],
        [50.0] * len(fixes),
        [True] * len(fixes),
        xy=[(x, y) for x, y, *_ in fixes],
        side=[naive.side_of(*ref, m, x, y) for x, y, m, _ in fixes],
        abeam=[naive.abeam_of(*ref, m, x, y) for x, y, m, _ in fixes],
        speed_kmh=[40.0] * len(fixes),
        sigma_m=SIGMA_M,
        route=ref,
        route_m=[m for _, _, m, _ in fixes],
    )
    assert got == want
    return got


@pytest.mark.parametrize("far_leg", [True, False])
def test_a_detour_matched_to_another_stretch_of_the_route_keeps_its_side(far_leg: bool) -> None:
    """A U-shaped route: along y = 0 to x = 1000, up to y = 300, back along y = 300. A
    sparse tracker's detour 150 m below the first leg (right of it) whose third fix is
    matched to the last leg (``far_leg``), which runs the other way, lies *left* of it:
    the same side of the route there, so the run goes on and off_route is confirmed.
    Thrown across the first leg instead (multipath), the third fix starts the run
    again. The reference agrees in both."""
    route = ([0.0, 1000.0, 1000.0, 0.0], [0.0, 0.0, 300.0, 300.0])
    third = (500.0, -150.0, 1800.0, 450.0) if far_leg else (500.0, 150.0, 500.0, 150.0)
    fixes = [(300.0, -150.0, 300.0, 150.0), (400.0, -150.0, 400.0, 150.0), third]
    got = _sparse_detour(route, fixes)
    assert got == ([("off_route", _times([30.0] * 3)[2])] if far_leg else [])


@pytest.mark.parametrize("case", ["beside", "across", "near"])
def test_a_detour_beside_an_out_and_back_spur_keeps_its_side(case: str) -> None:
    """A route down a dead-end street and back: south along x = 1000 from y = 0 to
    -1000, then north on the same line. A sparse tracker's detour 250 m east of it,
    near the spur's end, is matched now to the way down (it lies left of it), now to the
    way back (right of it), the matches 250 m apart along the route: no other stretch
    by the fix's own step, but no step between the fixes crosses the route, so they are
    on one side of it and off_route is confirmed at the third (30 s interval: 30 s
    sparse trackers missed such detours). Thrown across the street instead, 250 m west
    (multipath), the second fix starts the run again; and so do fixes only 80 m east,
    short of the corridor + off_route_far_m (multipath thrown at a curving road can step
    round it). The reference agrees in all three."""
    route = ([0.0, 1000.0, 1000.0, 1000.0], [0.0, 0.0, -1000.0, 0.0])
    off = 80.0 if case == "near" else 250.0
    second = (
        (1000.0 - off, -950.0, 1950.0, off)
        if case == "across"
        else (1000.0 + off, -950.0, 2050.0, off)
    )
    fixes = [(1000.0 + off, -800.0, 1800.0, off), second, (1000.0 + off, -850.0, 1850.0, off)]
    got = _sparse_detour(route, fixes)
    assert got == ([("off_route", _times([30.0] * 3)[2])] if case == "beside" else [])


def _off(s: np.ndarray) -> bool:
    return bool(s[layout.S_OFF] > 0)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1.0, 2.0, 5.0, 7.0]),
            st.one_of(st.just(math.nan), st.sampled_from([40.0, 53.5, 54.0, 56.0, 70.0])),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([50.0, math.nan]),
)
def test_speeding_stage_equals_reference(steps: list[tuple[float, float]], limit: float) -> None:
    ts = _times([g for g, _ in steps])
    speeds = [v for _, v in steps]
    par = np.zeros(N_PARAM)
    par[P_DEFAULT_LIMIT] = limit
    empty = np.zeros(0)
    s = new_state()
    ev_i, ev_ts, ev_f = _buffers(len(ts))
    ne = 0
    for i, (t, v) in enumerate(zip(ts, speeds, strict=True)):
        ne = kernels._speeding(
            s, TH, par, empty, empty, empty, i, float(t), 0.0, 0.0, 0.0, v, True,
            ev_i, ev_ts, ev_f, ne,
        )  # fmt: skip
    want = naive.speeding_events(ts, speeds, [limit] * len(ts))
    assert _kinds(ev_i, ev_ts, ne) == want


@SETTINGS
@given(
    st.lists(st.floats(0.0, 2000.0), min_size=1, max_size=40),
    st.floats(5.0, 20.0),
    st.floats(-1200.0, 1200.0),
)
def test_schedule_stage_equals_reference(
    progress_m: list[float], planned_mps: float, slack_s: float
) -> None:
    ts = _times([10.0] * len(progress_m))
    stop_m = 5000.0
    par = np.zeros(N_PARAM)
    par[P_PLANNED_MPS] = planned_mps
    stops = np.full((1, N_STOPF), np.nan)
    stops[0, T_M] = stop_m
    stops[0, T_SERVICE_S] = 60.0
    # the window ends around the arrival at planned speed, give or take the slack
    win_end = T0 + (stop_m / planned_mps + slack_s) * 1000.0
    stops[0, T_WIN_END] = win_end
    ustat = np.zeros((1, N_STOPS))
    s = new_state()
    ev_i, ev_ts, ev_f = _buffers(len(ts))
    ne = 0
    etas = []
    for i, (t, p) in enumerate(zip(ts, progress_m, strict=True)):
        s[S_PROGRESS] = p  # no recent speed: the prediction uses the planned one
        ne = kernels._schedule(
            s, TH, par, stops, ustat, i, float(t), 0.0, 0.0, 0.0, ev_i, ev_ts, ev_f, ne
        )
        etas.append(naive.next_arrival_ms(float(t), stop_m, p, planned_mps))
    assert _kinds(ev_i, ev_ts, ne) == naive.schedule_events(ts, etas, win_end)
    assert s[S_COMPLETED] == 0  # a stage writes only its own state


def test_pipeline_compiled_without_reference_counting() -> None:
    # inlined stages would otherwise increment and decrement every array they take on
    # every ping (half the kernel's speed); allocating in a stage then fails to compile
    assert kernels.process_pings.targetoptions["_nrt"] is False


@pytest.mark.parametrize(("ahead_m", "jumped"), [(550.0, True), (200.0, False)])
def test_the_jump_check_measures_reach_from_the_latest_match(ahead_m: float, jumped: bool) -> None:
    """Two minutes at a halt (the median anchor's time is its last fix's), then a fix
    100 m on at 36 km/h and, 10 s later, one ``ahead_m`` beyond that: the vehicle can
    have got ~290 m in those 10 s, not the ~840 m of the 20 s since the anchor's time.
    (At 10 s, sigma 12 m, a fix thrown 250 m ahead as a vehicle drove off its halt was
    taken, and the fixes after it matched the return pass of an out-and-back.)"""
    s = new_state()
    s[layout.S_ANCHOR_M] = 300.0
    s[layout.S_ANCHOR_TS] = T0
    s[layout.S_M1] = 400.0
    s[layout.S_M2] = 300.0
    s[S_RING] = T0 + 10_000.0
    s[S_RING + 1] = 400.0
    s[layout.S_RING_POS] = 1.0
    s[layout.S_SPEED_KMH] = 36.0
    got = kernels._implausible_jump(s, T0 + 20_000.0, 400.0 + ahead_m, 10.0, 130 / 3.6, True)
    assert got == jumped
