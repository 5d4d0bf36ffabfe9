"""Tracker artifacts, payloads, scoring, and a small live publish against the real broker."""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import urlparse

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from simulator.gps import MALFORMED_SAMPLES, Devices, GpsConfig
from simulator.network import LocalFrame
from simulator.publisher import LiveOptions, payload, run_live
from simulator.scenario import ScenarioConfig
from simulator.scoring import score


def _devices(n: int, **kw: float) -> Devices:
    return Devices(
        GpsConfig(**kw),
        LocalFrame(-6.2, 106.85),
        np.random.default_rng(5),
        n,
        outage_from_m=np.full(n, np.nan),
        outage_s=np.zeros(n),
    )


def _drive(dev: Devices, n: int, seconds: int) -> list:  # type: ignore[type-arg]
    msgs = []
    idx = np.arange(n)
    for t in range(1000, 1000 + seconds):
        zeros = np.zeros(n)
        msgs += dev.observe(t, idx, zeros + t, zeros, zeros + 10.0, zeros + 90.0)
    return msgs + dev.flush()


def test_malformed_rate_is_honoured() -> None:
    n, seconds, rate = 50, 200, 0.05
    dev = _devices(n, malformed_rate=rate, gap_rate=0.0, duplicate_rate=0.0, reorder_rate=0.0)
    msgs = _drive(dev, n, seconds)
    bad = sum(m.malformed is not None for m in msgs)
    total = n * seconds
    # binomial: mean 500, sd ~ 21.8; 5 sd either side
    assert abs(bad - rate * total) < 5 * np.sqrt(total * rate * (1 - rate))
    for m in msgs:
        text = payload(m)
        if m.malformed is None:
            obj = json.loads(text)
            assert isinstance(obj, dict) and {"ts", "lat", "lon"} <= set(obj)


def test_gaps_flush_as_arrays_and_nothing_is_lost() -> None:
    n, seconds = 20, 300
    dev = _devices(n, gap_rate=0.02, gap_s=20.0, duplicate_rate=0.02, reorder_rate=0.02)
    msgs = _drive(dev, n, seconds)
    arrays = [m for m in msgs if m.as_array]
    assert arrays and all(isinstance(json.loads(payload(m)), list) for m in arrays)
    seen = {(m.vehicle, f[0]) for m in msgs for f in m.fixes}
    assert len(seen) == n * seconds  # every fix delivered at least once
    assert sum(len(m.fixes) for m in msgs) > n * seconds  # ... and some twice


def test_outliers_are_far_and_rare() -> None:
    n, seconds = 40, 100
    dev = _devices(
        n, sigma_m=5.0, outlier_rate=0.03, gap_rate=0.0, duplicate_rate=0.0, reorder_rate=0.0
    )
    msgs = _drive(dev, n, seconds)
    frame = LocalFrame(-6.2, 106.85)
    err = []
    for m in msgs:
        for ts, lat, lon, *_ in m.fixes:
            x, y = frame.to_xy(np.array([lon]), np.array([lat]))
            err.append(float(np.hypot(x[0] - ts // 1000 - (dev.skew_ms[m.vehicle] and 0), y[0])))
    e = np.array(err)
    far = (e > 40).mean()
    assert 0.015 < far < 0.05
    assert np.median(e) < 10.0


def _ev(kind: str, ts: str, tol: float = 10.0, **details: str) -> dict:  # type: ignore[type-arg]
    return {"type": kind, "trip_id": "T1", "ts": ts, "tolerance_s": tol, "details": details}


def test_scoring_matches_within_tolerance_per_type_and_stop() -> None:
    expected = [
        _ev("off_route", "2026-11-22T08:00:20Z"),
        _ev("stop_arrived", "2026-11-22T08:10:00Z", 30, stop_id="S1"),
        _ev("stop_arrived", "2026-11-22T08:20:00Z", 30, stop_id="S2"),
    ]
    allowed = [_ev("speeding", "2026-11-22T08:05:00Z")]
    detected = [
        _ev("off_route", "2026-11-22T08:00:25Z"),  # 5 s late: hit
        _ev("off_route", "2026-11-22T08:03:00Z"),  # no truth: false alarm
        _ev("stop_arrived", "2026-11-22T08:20:10Z", stop_id="S1"),  # wrong stop
        _ev("stop_arrived", "2026-11-22T08:20:05Z", stop_id="S2"),
        _ev("speeding", "2026-11-22T08:05:04Z"),
    ]  # allowed: not scored as FP
    s = score(detected, expected, allowed)
    assert (s["off_route"].tp, s["off_route"].fp, s["off_route"].fn) == (1, 1, 0)
    assert s["off_route"].delays_s == [5.0]
    assert (s["stop_arrived"].tp, s["stop_arrived"].fp, s["stop_arrived"].fn) == (1, 1, 1)
    assert "speeding" not in s
    assert score([], expected)["stop_arrived"].recall == 0.0


@pytest.mark.parametrize("client", ["wire", "paho"])
def test_live_publish_reaches_the_broker(mqtt_url: str, client: str) -> None:
    prefix = f"SIMT{uuid.uuid4().hex[:8]}"
    u = urlparse(mqtt_url)
    got: list[bytes] = []
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-sub")
    sub.on_connect = lambda c, *_: c.subscribe("fleet/+/ping", qos=1)
    sub.on_subscribe = lambda *_: ready.set()
    sub.on_message = lambda _c, _u, m: (
        got.append(m.payload) if m.topic.startswith(f"fleet/{prefix}") else None
    )
    sub.connect(u.hostname or "127.0.0.1", u.port or 1883)
    sub.loop_start()
    try:
        assert ready.wait(5)
        cfg = ScenarioConfig(
            vehicles=40,
            seed=3,
            interval_s=2,
            duration_s=40.0,
            faults={},
            start_ms=int(time.time() * 1000),
            stagger_s=0.0,
            id_prefix=prefix,
            route_pool=5,
            gps=GpsConfig(malformed_rate=0.05),
        )
        report = run_live(
            cfg,
            LiveOptions(
                mqtt_url=mqtt_url, speedup=20.0, progress=False, client=client, connections=2
            ),
        )
        deadline = time.monotonic() + 5
        while len(got) < report.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert report.messages > 100 and report.acked == report.messages
    assert len(got) == report.messages
    assert report.wall_s > 40.0 / 20.0 * 0.8  # paced, not as fast as possible
    bad = sum(1 for p in got if p.decode() in MALFORMED_SAMPLES)
    assert bad == report.extra["malformed"] > 0  # the malformed ones went out as such
