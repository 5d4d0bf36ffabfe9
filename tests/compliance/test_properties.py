"""Property tests: kernels vs the plain-Python reference (tests/naive.py) and invariants,
on generated routes (incl. out-and-back and loops) and ping streams."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from compliance import kernels
from compliance.config import TH_INDEX, Thresholds
from compliance.engine import Engine
from compliance.route import chunk_boxes, prepare
from tests import naive
from tests.compliance.builders import T0_MS, batch, plan, polyline_at

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def routes(draw: st.DrawFn) -> list[tuple[float, float]]:
    n = draw(st.integers(2, 7))
    pts = [(0.0, 0.0)]
    heading = draw(st.floats(0, 2 * math.pi))
    for _ in range(n - 1):
        heading += draw(st.floats(-1.6, 1.6))
        step = draw(st.floats(150, 1500))
        x, y = pts[-1]
        pts.append((x + step * math.cos(heading), y + step * math.sin(heading)))
    shape = draw(st.sampled_from(["open", "out_and_back", "loop"]))
    if shape == "out_and_back":
        pts = pts + pts[-2::-1]
    elif shape == "loop" and len(pts) >= 3:
        pts = [*pts, pts[0]]
    return pts


def outlier_run(out: np.ndarray, n: int = 3) -> bool:
    """Whether ``n`` outliers come without two good fixes in a row between them."""
    run = good = 0
    for is_out in out.tolist():
        run, good = (run + 1, 0) if is_out else (run, good + 1)
        if good >= 2:
            run = 0
        if run >= n:
            return True
    return False


def test_kernel_threshold_indices_match_config() -> None:
    names = {f.name for f in fields(Thresholds)}
    for const, name in [
        ("TH_OFF_PINGS", "off_route_pings"),
        ("TH_WILD_KMH", "wild_fix_kmh"),
        ("TH_SIGMA_M", "gps_sigma_m"),
        ("TH_ST_S", "stationary_s"),
        ("TH_LATE_S", "late_s"),
        ("TH_LOST_S", "signal_lost_s"),
        ("TH_START_M", "trip_start_m"),
        ("TH_SP_MIN_S", "speeding_min_s"),
        ("TH_STOP_DWELL_S", "stop_dwell_s"),
        ("TH_ST_RADIUS", "stationary_radius_m"),
        ("TH_ABANDON_S", "trip_abandon_s"),
        ("TH_OFF_FAR_M", "off_route_far_m"),
        ("TH_OFF_DRIVE_KMH", "off_route_drive_kmh"),
        ("TH_OFF_MOVE_M", "off_route_move_m"),
    ]:
        assert name in names
        assert getattr(kernels, const) == TH_INDEX[name], const


@SETTINGS
@given(
    routes(),
    st.lists(st.tuples(st.floats(-3000, 3000), st.floats(-3000, 3000)), min_size=1, max_size=10),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(1, 20),
    st.floats(5, 3000),
)
def test_match_window_equals_reference(route, points, a, b, sigma_d, sigma_p) -> None:
    r = prepare(plan(route))
    lo, hi = sorted((a * r.length_m, b * r.length_m))
    hi = max(hi, lo + 1.0)
    m_exp = (lo + hi) / 2
    for px, py in points:
        m, d, c = kernels.match_window(
            r.x_m, r.y_m, r.cum_m, px, py, lo, hi, m_exp, sigma_d, sigma_p
        )
        _rm, _rd, rc = naive.match_window(
            list(r.x_m), list(r.y_m), list(r.cum_m), px, py, lo, hi, m_exp, sigma_d, sigma_p
        )
        assert math.isclose(c, rc, rel_tol=1e-9, abs_tol=1e-9)
        assert 0.0 <= m <= r.length_m + 1e-6 and d >= 0.0
        # a point exactly on the route in the window has offset ~ 0
    on_m = (lo + hi) / 2
    ox, oy = polyline_at(list(zip(r.x_m, r.y_m, strict=True)), np.array([on_m]))
    _, d0, _ = kernels.match_window(
        r.x_m, r.y_m, r.cum_m, float(ox[0]), float(oy[0]), lo, hi, on_m, 8.0, 50.0
    )
    assert d0 < 1e-6


@st.composite
def long_routes(draw: st.DrawFn) -> np.ndarray:
    """Winding routes of 70-400 vertices 5-150 m apart (a few runs of CHUNK_SEGMENTS
    segments), some with repeated vertices and passes over the same street."""
    n = draw(st.integers(70, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    heading = np.cumsum(rng.uniform(-0.8, 0.8, n))
    step = rng.uniform(5.0, 150.0, n)
    step[rng.random(n) < 0.02] = 0.0  # repeated vertices
    xy = np.cumsum(np.stack([step * np.cos(heading), step * np.sin(heading)], 1), 0)
    if draw(st.booleans()):
        xy = np.concatenate([xy, xy[-2::-1]])  # out and back
    return xy


@SETTINGS
@given(
    long_routes(),
    st.lists(st.tuples(st.floats(-1.5, 1.5), st.floats(-1.5, 1.5)), min_size=1, max_size=12),
    st.floats(-0.1, 1.1),
    st.floats(-0.1, 1.1),
    st.sampled_from([1.0, 5.0, 12.0]),
    st.sampled_from([30.0, 300.0, 5000.0, 1e7]),
)
def test_match_route_gives_match_window_bit_for_bit(xy, points, a, b, sigma_d, sigma_p) -> None:
    """The box-pruned search returns exactly the full scan's (route_m, offset_m, cost),
    ties included (points on the route, on its vertices, on both passes of an
    out-and-back, far away), in windows narrow and wide."""
    x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    boxes = chunk_boxes(x, y)
    length = float(cum[-1])
    span = max(float(np.ptp(x)), float(np.ptp(y)), 1.0)
    lo, hi = a * length, b * length
    pts = [(float(x[0]) + u * span, float(y[0]) + v * span) for u, v in points]
    pts += [(float(x[k]), float(y[k])) for k in (1, len(x) // 2, len(x) - 1)]  # on vertices
    windows = [(lo, hi), (0.0, length), (min(lo, hi), max(lo, hi)), (lo, math.nan)]
    for px, py in pts:
        for w_lo, w_hi in windows:
            m_exp = 0.0 if not math.isfinite(w_hi) else (w_lo + w_hi) / 2
            args = (px, py, w_lo, w_hi, m_exp, sigma_d, sigma_p)
            want = kernels.match_window(x, y, cum, *args)
            got = kernels.match_route(x, y, cum, boxes, *args)
            assert np.array_equal(np.array(got), np.array(want), equal_nan=True), (args, got, want)


@SETTINGS
@given(
    st.lists(st.tuples(st.floats(0, 5000), st.floats(1, 3000), st.floats(10, 130)), max_size=5),
    st.floats(0, 9000),
    st.one_of(st.just(math.nan), st.floats(10, 130)),
)
def test_limit_at_equals_reference(raw, m, default) -> None:
    ranges = []
    pos = 0.0
    for start, length, kmh in raw:  # non-overlapping, sorted
        lo = pos + start
        ranges.append((lo, lo + length, kmh))
        pos = lo + length
    arr = np.array(ranges, float).reshape(-1, 3)
    got = kernels.limit_at(m, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), default)
    want = naive.limit_at(m, ranges, default)
    assert (math.isnan(got) and math.isnan(want)) or got == want


@SETTINGS
@given(
    routes(),
    st.integers(0, 2**31),
    st.floats(0, 12),
    st.floats(0.0, 0.05),
    st.sampled_from([1.0, 5.0, 10.0]),
    st.booleans(),
)
# clean drives where the next leg passes within centimetres: the fix 0.9 m before a sharp
# corner matches 2 m after it, 10 cm off; 1 m before an out-and-back's tip, 1 m after it
# four multipath fixes in eight (34, 36, 38, 41), a good one between each: an off-route
@example(
    [
        (0.0, 0.0),
        (150.0, 0.0),
        (300.0, 0.0),
        (624.1813835208839, 504.8825908847379),
        (1434.6348423230934, 1767.0890680965827),
        (624.1813835208839, 504.8825908847379),
        (300.0, 0.0),
        (150.0, 0.0),
        (0.0, 0.0),
    ],
    2560,
    1.0,
    0.046875,
    5.0,
    False,
)
@example(
    [(0.0, 0.0), (191.0, 0.0), (996.0504357435283, 1253.7917673637658), (0.0, 0.0)],
    0,
    0.0,
    0.0,
    1.0,
    False,
)
@example(
    [(0.0, 0.0), (150.0, 0.0), (300.0, 0.0), (997.0, 0.0), (300.0, 0.0), (150.0, 0.0), (0.0, 0.0)],
    0,
    0.0,
    0.0,
    1.0,
    False,
)
def test_drive_invariants_and_detectors_match_reference(
    route, seed, sigma, outlier_rate, dt_s, detour
) -> None:
    rng = np.random.default_rng(seed)
    p = plan(route, speed_limit_kmh=50)
    length = prepare(p).length_m
    speed_mps = 12.0
    t_s = np.arange(dt_s, length / speed_mps, dt_s)
    truth = t_s * speed_mps
    x, y = polyline_at(route, truth)
    x = x + rng.normal(0, sigma, len(x)) if sigma else x
    y = y + rng.normal(0, sigma, len(y)) if sigma else y
    if detour and len(x) > 40:
        k = len(x) // 3
        y[k : k + 20] += 400.0  # 20 fixes far off the route
    out = rng.random(len(x)) < outlier_rate
    x[out] += rng.choice([-1, 1], out.sum()) * rng.uniform(50, 150, out.sum())
    ts = T0_MS + (t_s * 1000).astype(np.int64)
    # 54 km/h is in the hysteresis band under the 55 km/h threshold
    spd = rng.choice([40.0, 54.0, 60.0], len(ts), p=[0.5, 0.2, 0.3])
    eng = Engine()
    eng.add_trip(p)
    res = eng.process(batch("V1", ts, x, y, spd, accuracy_m=5.0), int(ts[-1]) + 60_000)
    events = sorted(res.events + eng.flush(), key=lambda e: e.ts_ms)
    judged = res.on_route >= 0
    # invariants
    assert np.all(res.route_m[judged] >= -1e-6) and np.all(res.route_m[judged] <= length + 1e-6)
    assert np.all(res.offset_m[judged] >= 0)
    if sigma == 0 and outlier_rate == 0 and not detour:
        # every fix on the route, at its own distance along it - or, near a sharp
        # corner or the tip of an out-and-back, where the next leg passes within
        # centimetres, at about the same spot on that leg, within a fix or two of the
        # truth (a fix a few cm past the window's reach is matched at its edge, too)
        expected = np.minimum(truth, length)
        mx, my = polyline_at(route, res.route_m)
        same_spot = np.hypot(mx - x, my - y) < 0.5
        off_by = np.abs(res.route_m - expected)
        exact = (res.offset_m < 1e-3) & (off_by < 1.0)
        assert np.all(exact | (same_spot & (off_by <= 2 * speed_mps * dt_s)))
        assert np.count_nonzero(~exact) <= len(route)  # only about the corners
        assert np.all(np.diff(res.route_m) >= -1e-6)  # monotone on a clean drive
    # off-route detector vs reference on the kernel's own per-ping offsets
    kinds = [
        (str(e.type), e.ts_ms) for e in events if str(e.type) in ("off_route", "back_on_route")
    ]
    # (the pings in the trip's own frame, their side of the route at their match)
    b = batch("V1", ts, x, y, spd, accuracy_m=5.0)
    r = prepare(p)
    px, py = r.projection.to_xy(b.lon, b.lat)
    rx, ry, rc = list(r.x_m), list(r.y_m), list(r.cum_m)
    sides = [
        naive.side_of(rx, ry, rc, float(m), float(a), float(c)) if ok else 0.0
        for m, a, c, ok in zip(res.route_m, px, py, judged, strict=True)
    ]
    abeam = [
        ok and naive.abeam_of(rx, ry, rc, float(m), float(a), float(c))
        for m, a, c, ok in zip(res.route_m, px, py, judged, strict=True)
    ]
    want = naive.off_route_events(
        list(ts),
        list(res.offset_m),
        [50.0] * len(ts),
        list(judged),
        xy=list(zip(px.tolist(), py.tolist(), strict=True)),
        side=sides,
        abeam=abeam,
        speed_kmh=list(spd),
        sigma_m=max(Thresholds().gps_sigma_m, 5.0),  # the kernel's: accuracy 5 m
        route=(rx, ry, rc),
        route_m=[float(m) if ok else 0.0 for m, ok in zip(res.route_m, judged, strict=True)],
    )
    assert kinds == want
    if not detour:
        # three multipath fixes not parted by two good ones look like a detour (a known
        # limit of the off-route rule): allowed, not required
        assert all(k != "off_route" for k, _ in kinds) or sigma > 10 or outlier_run(out)
    # speeding vs reference (device speed; limit 50 everywhere)
    sp = [(str(e.type), e.ts_ms) for e in events if str(e.type).startswith("speeding")]
    done = [e.ts_ms for e in events if str(e.type) == "trip_completed"]
    keep = [i for i in range(len(ts)) if judged[i] and (not done or ts[i] <= done[0])]
    want_sp = naive.speeding_events(
        [int(ts[i]) for i in keep], [float(spd[i]) for i in keep], [50.0] * len(keep)
    )
    assert sp == want_sp
    # partners never interleave wrongly
    state: dict[str, bool] = {}
    for e in events:
        t = str(e.type)
        if t in ("off_route", "speeding", "unplanned_stop", "signal_lost", "late"):
            assert not state.get(t)
            state[t] = True
        partner = {
            "back_on_route": "off_route",
            "speeding_ended": "speeding",
            "unplanned_stop_ended": "unplanned_stop",
            "signal_restored": "signal_lost",
            "back_on_schedule": "late",
        }.get(t)
        if partner:
            assert state.get(partner), f"{t} without {partner}"
            state[partner] = False


def test_route_arrays_equal_the_plan_coordinates() -> None:
    from compliance.route import route_lonlat
    from tests.compliance.builders import lonlat

    a = lonlat([(0, 0), (100, 0), (100, 0), (100, 50)])
    b = lonlat([(100, 50), (300, 50)])
    p = plan([(0, 0), (1, 1)])
    multi = p.model_copy(
        update={
            "route": {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "MultiLineString", "coordinates": [a, b]},
            }
        }
    )
    assert np.array_equal(route_lonlat(multi.route), np.asarray(multi.coordinates))
