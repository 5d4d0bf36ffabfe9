"""Plain-Python reference implementations of the compliance kernels.

Written for clarity, not speed: no NumPy tricks, no Numba. Property tests compare the
kernels against these on generated routes and ping streams. Units as in the kernels:
metres, epoch ms, seconds, km/h.

Sections follow the stages of ``compliance.kernels.process_pings`` (its ``STAGES``) in
pipeline order; each reference is checked against the stage alone
(tests/compliance/test_stages.py) and, where it applies, against the whole kernel
(tests/compliance/test_properties.py). Stages without a reference here (wild fix,
speed, trip start, stops, unplanned stop, completion) are covered by the scenario tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# ---- signal ----------------------------------------------------------------------------


def signal_events(
    ts_ms: Sequence[int],
    *,
    lost_s: float = 120.0,
    abandon_s: float = 3600.0,
    planned_end_ms: float = -math.inf,
    horizon_ms: float | None = None,
    active: bool = True,
) -> list[tuple[str, int]]:
    """``signal_lost`` (at the last ping + ``lost_s``) and ``signal_restored`` (at the
    next ping) for every gap longer than ``lost_s`` on an active trip; the trip's end
    (``trip_completed``) ``abandon_s`` after the later of ``planned_end_ms`` and the last
    ping before a silence that lasts that long (up to the next ping, or to
    ``horizon_ms`` after the last), after which nothing more: [(type, ts_ms)]."""
    out: list[tuple[str, int]] = []
    for k, prev in enumerate(ts_ms):
        lost = prev + lost_s * 1000
        end = max(planned_end_ms, prev) + abandon_s * 1000
        if k + 1 < len(ts_ms):  # a ping ends this silence
            nxt = ts_ms[k + 1]
            if nxt > end:  # ... after the trip ended in it
                if active and lost <= end:
                    out.append(("signal_lost", int(lost)))
                out.append(("trip_completed", int(end)))
                return out
            if active and nxt > lost:
                out += [("signal_lost", int(lost)), ("signal_restored", nxt)]
        elif horizon_ms is not None:  # the silence after the last ping, up to the horizon
            if active and lost <= min(end, horizon_ms):
                out.append(("signal_lost", int(lost)))
            if end <= horizon_ms:
                out.append(("trip_completed", int(end)))
    return out


# ---- matching --------------------------------------------------------------------------


def match_window(
    x: Sequence[float],
    y: Sequence[float],
    cum: Sequence[float],
    px: float,
    py: float,
    lo_m: float,
    hi_m: float,
    m_exp: float,
    sigma_d: float,
    sigma_p: float,
) -> tuple[float, float, float]:
    """Best (route_m, offset_m, cost) over segments overlapping [lo_m, hi_m] (see
    :func:`compliance.kernels.match_window`)."""
    best = (cum[0], math.inf, math.inf)
    n = len(x)
    # a segment that only touches the window at one end (cum[i + 1] == lo_m, cum[i] ==
    # hi_m) is not in it: its neighbour holds that point, with the line it lies on
    segs = [i for i in range(n - 1) if cum[i + 1] > lo_m and cum[i] < hi_m]
    if not segs:
        segs = [max(0, min(n - 2, next((i for i in range(n - 1) if cum[i] > lo_m), n - 1) - 1))]
    for i in segs:
        dx, dy = x[i + 1] - x[i], y[i + 1] - y[i]
        seg_len = cum[i + 1] - cum[i]
        len2 = dx * dx + dy * dy
        t_line = 0.0 if len2 == 0 else ((px - x[i]) * dx + (py - y[i]) * dy) / len2
        m_line = min(hi_m, max(lo_m, cum[i] + t_line * seg_len))
        t = min(1.0, max(0.0, t_line))
        m = cum[i] + t * seg_len
        if m < lo_m or m > hi_m:
            m = min(hi_m, max(lo_m, m))
            t = (m - cum[i]) / seg_len if seg_len > 0 else 0.0
        d = math.hypot(x[i] + t * dx - px, y[i] + t * dy - py)
        c = 0.5 * ((d / sigma_d) ** 2 + ((m_line - m_exp) / sigma_p) ** 2)
        if c < best[2]:
            best = (m, d, c)
    return best


def nearest(
    x: Sequence[float], y: Sequence[float], cum: Sequence[float], px: float, py: float
) -> tuple[float, float]:
    """Globally nearest point of the polyline: (route_m, offset_m)."""
    m, d, _ = match_window(x, y, cum, px, py, -math.inf, math.inf, 0.0, 1.0, math.inf)
    return m, d


# ---- off-route -------------------------------------------------------------------------


def _segment_at(cum: Sequence[float], m: float, n: int) -> int:
    """The segment that route position ``m`` lies on (the later one at a vertex)."""
    return max(0, min(n - 2, max(k for k in range(len(cum)) if cum[k] <= m or k == 0)))


def side_of(
    x: Sequence[float], y: Sequence[float], cum: Sequence[float], m: float, px: float, py: float
) -> float:
    """+1 when (px, py) lies left of the route's segment at ``m`` (direction of travel),
    -1 right, 0 on its line."""
    i = _segment_at(cum, m, len(x))
    cross = (x[i + 1] - x[i]) * (py - y[i]) - (y[i + 1] - y[i]) * (px - x[i])
    return 1.0 if cross > 0 else (-1.0 if cross < 0 else 0.0)


def abeam_of(
    x: Sequence[float], y: Sequence[float], cum: Sequence[float], m: float, px: float, py: float
) -> bool:
    """Whether (px, py) lies square to the route's segment at ``m``, within it, with ``m``
    within 1 m of its foot there."""
    i = _segment_at(cum, m, len(x))
    dx, dy = x[i + 1] - x[i], y[i + 1] - y[i]
    len2 = dx * dx + dy * dy
    t = ((px - x[i]) * dx + (py - y[i]) * dy) / len2 if len2 > 0 else 0.0
    return 0.0 <= t <= 1.0 and abs(cum[i] + t * (cum[i + 1] - cum[i]) - m) <= 1.0


def other_stretch(
    x: Sequence[float],
    y: Sequence[float],
    cum: Sequence[float],
    m0: float,
    m1: float,
    moved_m: float,
) -> bool:
    """Whether the match moved from ``m0`` to ``m1`` more than twice ``moved_m`` (what the
    fix moved, plus slack) onto a segment pointing more than 90 degrees away from the
    one at ``m0`` (False when ``m0`` is NaN)."""
    if math.isnan(m0) or abs(m1 - m0) <= 2.0 * moved_m:
        return False
    i, j = _segment_at(cum, m0, len(x)), _segment_at(cum, m1, len(x))
    return (x[i + 1] - x[i]) * (x[j + 1] - x[j]) + (y[i + 1] - y[i]) * (y[j + 1] - y[j]) < 0


def crosses_route(
    x: Sequence[float], y: Sequence[float], a: tuple[float, float], b: tuple[float, float]
) -> bool:
    """Whether the straight step from ``a`` to ``b`` meets some segment of the polyline
    (x, y): the segment's ends not both strictly on one side of the step's line, and the
    step's ends not both strictly on one side of the segment's (touching counts;
    collinear pieces must overlap)."""

    def orient(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    for i in range(len(x) - 1):
        c, d = (x[i], y[i]), (x[i + 1], y[i + 1])
        o1, o2 = orient(c, d, a), orient(c, d, b)
        o3, o4 = orient(a, b, c), orient(a, b, d)
        if o1 * o2 > 0 or o3 * o4 > 0:
            continue
        if o1 == 0 and o2 == 0:  # collinear: their boxes must overlap
            if max(c[0], d[0]) < min(a[0], b[0]) or min(c[0], d[0]) > max(a[0], b[0]):
                continue
            if max(c[1], d[1]) < min(a[1], b[1]) or min(c[1], d[1]) > max(a[1], b[1]):
                continue
        return True
    return False


def motion_explains(
    step_xy: tuple[float, float],
    dt_s: float,
    speeds_kmh: tuple[float, float],
    headings_deg: tuple[float, float],
    sigma_m: float,
) -> bool:
    """Whether a step of ``step_xy`` metres (east, north) in ``dt_s`` fits the device's
    speeds and headings at (the fix it starts from, the one it ends at): no longer than
    the faster speed drives plus 0.5 dt^2 (a 2 m/s^2 peak between) and both fixes' noise
    (2 sqrt 2 sigma); moving at 10 km/h or more at both, at most 15 s apart, the step at
    least twice that noise long, both headings known and turning by at most 120 degrees:
    its bearing within 30 degrees (plus atan(noise / step)) of the arc turned through.
    Unknown speeds explain anything."""
    v0, v1 = speeds_kmh
    if not (math.isfinite(v0) and math.isfinite(v1)) or dt_s <= 0:
        return True
    step = math.hypot(*step_xy)
    noise = 2 * math.sqrt(2) * sigma_m
    if step > max(v0, v1) / 3.6 * dt_s + dt_s**2 / 2 + noise:
        return False
    h0, h1 = headings_deg
    if not (math.isfinite(h0) and math.isfinite(h1)) or min(v0, v1) < 10 or dt_s > 15:
        return True
    if step < 2 * noise:
        return True
    turn = (h1 - h0 + 540) % 360 - 180  # (as the kernel rounds it: +180 gives -120.00..03)
    if abs(turn) > 120:
        return True
    bearing = math.degrees(math.atan2(step_xy[0], step_xy[1]))
    rel = (bearing - h0 + 540) % 360 - 180
    beyond = max(min(0.0, turn) - rel, rel - max(0.0, turn), 0.0)
    return beyond <= 30 + math.degrees(math.atan2(noise, step))


def off_route_events(
    ts_ms: Sequence[int],
    offset_m: Sequence[float],
    corridor_m: Sequence[float],
    judged: Sequence[bool],
    *,
    xy: Sequence[tuple[float, float]] | None = None,
    side: Sequence[float] | None = None,
    abeam: Sequence[bool] | None = None,
    speed_kmh: Sequence[float] | None = None,
    heading_deg: Sequence[float] | None = None,
    sigma_m: float = 8.0,
    route: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
    route_m: Sequence[float] | None = None,
    confirm_pings: int = 3,
    confirm_s: float = 10.0,
    back_fraction: float = 0.6,
    back_pings: int = 2,
    far_m: float = 50.0,
    drive_kmh: float = 10.0,
    move_m: float = 60.0,
) -> list[tuple[str, int]]:
    """Off-route hysteresis over per-ping offsets: [(type, ts_ms)]. Pings with
    ``judged`` False (rejected wild fixes) are skipped.

    Confirming also needs the last two outside fixes to show the vehicle driving away
    (``far_m`` beyond the corridor - unless standing still, under 2 km/h, at this fix and
    the last judged one: over 50 m from it an outlier, which restarts the count, within
    it neither -, a device speed of ``drive_kmh``, or - not standing still -
    ``move_m`` from the run's first fix at ``xy``; a fix whose step from the last judged
    fix not so rejected the device's speeds and ``heading_deg`` do not explain,
    :func:`motion_explains`, neither counts nor restarts the count), and a fix on the
    other ``side`` of the route than the run's first starts the run again (the side of a
    fix ``far_m`` beyond the corridor counts only when it lies ``abeam`` its match; a run
    begun without a side takes that of its first fix that has one; a fix matched, at
    ``route_m``, to another stretch of the ``route`` (x, y, cum) running the other way
    from the last judged fix's, :func:`other_stretch`, or - it and the last judged fix, an
    outside one, both ``far_m`` beyond the corridor - whose step from that fix does not
    meet the route, :func:`crosses_route`, gives the run its side instead). Without
    ``xy``/``side``/``speed_kmh`` every fix counts as driving away on one side."""
    n = len(ts_ms)
    xy = xy if xy is not None else [(0.0, 0.0)] * n
    side = side if side is not None else [0.0] * n
    abeam = abeam if abeam is not None else [False] * n
    speed_kmh = speed_kmh if speed_kmh is not None else [99.0] * n
    heading_deg = heading_deg if heading_deg is not None else [math.nan] * n
    out: list[tuple[str, int]] = []
    off = False
    n_out = 0
    since = 0
    n_in = 0
    first = (0.0, 0.0)
    run_side = 0.0
    moved_n = 0
    prev_m = math.nan
    prev_d = math.nan
    route_m = route_m if route_m is not None else [0.0] * n
    prev: tuple[float, float] | None = None  # the last judged fix, and its speed
    prev_v = math.nan
    # the motion check's reference: the last judged fix whose own step it did not reject
    Ref = tuple[int, float, float, float, float]  # (ts, x, y, speed, heading)
    ref: Ref | None = None
    cand: Ref | None = None  # this fix, unless the check rejects it
    for t, d, c, ok, p, sd, square, v, h, m in zip(
        *(ts_ms, offset_m, corridor_m, judged, xy, side, abeam, speed_kmh, heading_deg),
        route_m,
        strict=True,
    ):
        if not ok:
            continue
        last, prev = prev, p
        last_v, prev_v = prev_v, v
        ref = cand if cand is not None else ref
        cand = (t, p[0], p[1], v, h)
        last_m, prev_m = prev_m, m
        last_d, prev_d = prev_d, d
        if not off:
            if d <= c:
                if n_out:  # a run of outside fixes ends with back_pings inside ones
                    n_in += 1
                    if n_in >= back_pings:
                        n_out = n_in = 0
                continue
            after_out, n_in = n_in == 0, 0
            if d >= c + far_m and not square:
                sd = 0.0  # (matched at the window's end: its side means nothing)
            if n_out and sd * run_side < 0:
                moved = math.hypot(p[0] - last[0], p[1] - last[1]) + c if last else 0.0
                if (
                    route is not None
                    and last
                    and (
                        other_stretch(*route, last_m, m, moved)
                        or (
                            after_out
                            and min(d, last_d) >= c + far_m
                            and not crosses_route(route[0], route[1], last, p)
                        )
                    )
                ):
                    # (the route runs the other way here, or - both fixes far off - the
                    # step between them stays on one side of it: this side is the run's)
                    run_side = sd
                else:
                    n_out = 0  # across the road from the run's first fix: starts again
            elif n_out and run_side == 0:
                run_side = sd
            if n_out == 0:
                since, first, run_side, moved_n = t, p, sd, 0
            n_out += 1
            still = not math.isnan(v) and v < 2.0
            away: bool | None  # None: standing far off, where the last fix was
            if d >= c + far_m:
                # (a far fix while the device stood at it and the last: over 50 m from the
                # last an outlier, else a vehicle standing out there, which proves nothing)
                stood = not math.isnan(last_v) and last_v < 2.0
                jumped = last is not None and math.hypot(p[0] - last[0], p[1] - last[1]) > 50.0
                away = True if not (still and stood) else (False if jumped else None)
            elif not math.isnan(v) and v >= drive_kmh:
                away = True
            elif still:
                away = False
            else:
                away = math.hypot(p[0] - first[0], p[1] - first[1]) >= move_m
            if away and ref is not None:
                r_t, r_x, r_y, r_v, r_h = ref
                step = (p[0] - r_x, p[1] - r_y)
                if not motion_explains(step, (t - r_t) / 1000, (r_v, v), (r_h, h), sigma_m):
                    away = None  # (multipath thrown off a moving vehicle)
                    cand = None
            if away is not None:
                moved_n = moved_n + 1 if away else 0
            if (
                n_out >= confirm_pings
                and t - since >= confirm_s * 1000
                and moved_n >= min(2, confirm_pings)
            ):
                off = True
                n_in = 0
                out.append(("off_route", t))
        else:
            if d <= back_fraction * c:
                n_in += 1
                if n_in >= back_pings:
                    off = False
                    n_out = 0
                    out.append(("back_on_route", t))
            else:
                n_in = 0
    return out


# ---- speeding --------------------------------------------------------------------------


def limit_at(
    route_m: float, ranges: Sequence[tuple[float, float, float]], default_kmh: float
) -> float:
    """Limit in km/h at ``route_m``: the range containing it, else the default."""
    for lo, hi, kmh in ranges:
        if lo <= route_m < hi:
            return kmh
    return default_kmh


def speeding_events(
    ts_ms: Sequence[int],
    speed_kmh: Sequence[float],
    limit_kmh: Sequence[float],
    *,
    tolerance_kmh: float = 5.0,
    min_s: float = 15.0,
    hysteresis_kmh: float = 2.0,
) -> list[tuple[str, int]]:
    """Speeding runs: [(type, ts_ms)]; one slower sample inside a run is ignored, and a
    run only ends under limit + tolerance - hysteresis."""
    out: list[tuple[str, int]] = []
    since: int | None = None
    active = False
    under_n = 0
    under_ts = 0
    for t, v, lim in zip(ts_ms, speed_kmh, limit_kmh, strict=True):
        if math.isnan(v) or math.isnan(lim):
            continue
        if v > lim + tolerance_kmh:
            since = t if since is None else since
            under_n = 0
            if not active and t - since >= min_s * 1000:
                active = True
                out.append(("speeding", t))
        elif since is not None and v > lim + tolerance_kmh - hysteresis_kmh:
            under_n = 0
        elif since is not None:
            if under_n == 0:
                under_ts = t
            under_n += 1
            if under_n >= 2 or t - under_ts >= 5000:
                if active:
                    out.append(("speeding_ended", t))
                active = False
                since = None
                under_n = 0
    return out


# ---- schedule (and the ETA it predicts with) --------------------------------------------


def next_arrival_ms(
    ts_ms: float,
    stop_m: float,
    progress_m: float,
    speed_mps: float,
    service_left_ms: float = 0.0,
) -> float:
    """Predicted arrival at the next pending stop: now + remaining route distance at the
    expected speed + what is left of the service at the current stop."""
    return (
        ts_ms
        + max(0.0, stop_m - max(progress_m, 0.0)) / speed_mps * 1000.0
        + max(0.0, service_left_ms)
    )


def schedule_events(
    ts_ms: Sequence[int],
    eta_ms: Sequence[float],
    window_end_ms: float,
    *,
    late_s: float = 600.0,
    hysteresis_s: float = 120.0,
) -> list[tuple[str, int]]:
    """``late`` when the predicted arrival is more than ``late_s`` after the window's
    end, ``back_on_schedule`` once it is under ``late_s - hysteresis_s``: [(type, ts_ms)]."""
    out: list[tuple[str, int]] = []
    late = False
    for t, eta in zip(ts_ms, eta_ms, strict=True):
        delay_s = (eta - window_end_ms) / 1000.0
        if not late and delay_s > late_s:
            late = True
            out.append(("late", t))
        elif late and delay_s < late_s - hysteresis_s:
            late = False
            out.append(("back_on_schedule", t))
    return out
