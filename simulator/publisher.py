"""Live mode: create the trips through the API, then publish the fleet's pings over MQTT.

One process drives the whole fleet: the simulation advances every vehicle in bulk once
per simulated second, and the loop is paced by scheduled ticks (simulated second k is due
at ``wall0 + k / speedup``) plus a token bucket that caps the aggregate message rate.
Publishing is spread over several paho-mqtt connections, each with its own threaded
network loop, because one connection's socket and QoS 1 acknowledgements become the
bottleneck well before the simulation does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import paho.mqtt.client as mqtt

from simulator.gps import Message
from simulator.mqttwire import WirePublisher
from simulator.scenario import ScenarioConfig, Simulation, build

log = logging.getLogger(__name__)

DEFAULT_LIVE_DURATION_S = 2 * 3600.0


@dataclass(slots=True)
class LiveOptions:
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    qos: int = 1
    speedup: float = 1.0
    rate: float | None = None  # messages/s cap (and speedup target when speedup is 1)
    connections: int = 4
    api_url: str | None = None  # None: do not create trips
    token: str | None = None
    progress: bool = True
    trip_concurrency: int = 32
    client: str = "wire"  # "wire": batched writes (simulator.mqttwire); "paho": paho-mqtt


@dataclass(slots=True)
class LiveReport:
    vehicles: int = 0
    trips_created: int = 0
    trips_failed: int = 0
    messages: int = 0
    fixes: int = 0
    acked: int = 0
    sim_seconds: int = 0
    wall_s: float = 0.0
    interrupted: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.wall_s if self.wall_s else 0.0

    def summary(self) -> str:
        return (
            f"vehicles={self.vehicles} trips_created={self.trips_created} "
            f"trips_failed={self.trips_failed} messages={self.messages} fixes={self.fixes} "
            f"acked={self.acked} sim_s={self.sim_seconds} wall_s={self.wall_s:.1f} "
            f"rate_msg_s={self.rate:.0f}" + ("" if not self.interrupted else " interrupted=1")
        )


def payload(msg: Message) -> str:
    """The CONTRACT §1 JSON text of a message (an object, an array, or the garbage)."""
    if msg.malformed is not None:
        return msg.malformed
    objs = [
        f'{{"ts":{ts},"lat":{lat:.7f},"lon":{lon:.7f},"speed":{sp:.1f},'
        f'"heading":{hd:.1f},"accuracy":{ac:.1f},"seq":{sq}}}'
        for ts, lat, lon, sp, hd, ac, sq in msg.fixes
    ]
    return "[" + ",".join(objs) + "]" if msg.as_array else objs[0]


class TokenBucket:
    """At most ``rate`` tokens per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.t = time.monotonic()

    def take(self, n: float, stop: threading.Event) -> None:
        """Block (sleeping, not spinning) until ``n`` tokens are available, then spend them."""
        while not stop.is_set():
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= min(n, self.burst):
                self.tokens -= n
                return
            stop.wait((min(n, self.burst) - self.tokens) / self.rate)


class Publishers:
    """``n`` MQTT connections, each on paho's threaded network loop; vehicle -> connection."""

    def __init__(self, url: str, n: int, qos: int, client_prefix: str) -> None:
        u = urlparse(url)
        self.qos = qos
        self.acked = 0
        self._lock = threading.Lock()
        self.clients: list[mqtt.Client] = []
        for k in range(max(1, n)):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_prefix}-{k}")
            c.max_inflight_messages_set(1000)
            c.max_queued_messages_set(0)
            c.on_publish = self._on_publish
            c.connect(u.hostname or "127.0.0.1", u.port or 1883, keepalive=60)
            c.loop_start()
            self.clients.append(c)

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            self.acked += 1

    def publish_tick(self, msgs: list[Message], topics: list[str]) -> None:
        n = len(self.clients)
        for m in msgs:
            self.clients[m.vehicle % n].publish(topics[m.vehicle], payload(m), qos=self.qos)

    def close(self, expected: int, timeout_s: float = 15.0) -> None:
        """Wait (bounded) for outstanding acknowledgements, then disconnect."""
        deadline = time.monotonic() + timeout_s
        while self.acked < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


class WirePublishers:
    """``n`` :class:`WirePublisher` connections; each tick is one write per connection."""

    def __init__(self, url: str, n: int, qos: int, client_prefix: str) -> None:
        u = urlparse(url)
        self.clients = [
            WirePublisher(u.hostname or "127.0.0.1", u.port or 1883, f"{client_prefix}-{k}", qos)
            for k in range(max(1, n))
        ]

    @property
    def acked(self) -> int:
        return sum(c.acked for c in self.clients)

    def publish_tick(self, msgs: list[Message], topics: list[str]) -> None:
        n = len(self.clients)
        for k, c in enumerate(self.clients):
            c.publish_many((topics[m.vehicle], payload(m)) for m in msgs if m.vehicle % n == k)

    def close(self, expected: int, timeout_s: float = 15.0) -> None:
        for c in self.clients:
            c.wait_acked(timeout_s)
            c.close()


async def create_trips(
    plans: list[dict[str, Any]], api_url: str, token: str, concurrency: int
) -> tuple[int, int]:
    """POST every plan to ``{api_url}/v1/trips``; returns (created, failed)."""
    sem = asyncio.Semaphore(concurrency)
    created = failed = 0
    async with httpx.AsyncClient(
        base_url=api_url, timeout=30.0, headers={"Authorization": f"Bearer {token}"}
    ) as client:

        async def one(plan: dict[str, Any]) -> None:
            nonlocal created, failed
            async with sem:
                try:
                    r = await client.post("/v1/trips", json=plan)
                except httpx.HTTPError as exc:
                    failed += 1
                    log.warning("trip %s not created: %s", plan["trip_id"], exc)
                    return
            if r.status_code in (200, 201):
                created += 1
            else:
                failed += 1
                log.warning("trip %s refused: %s %s", plan["trip_id"], r.status_code, r.text[:300])

        await asyncio.gather(*(one(p) for p in plans))
    return created, failed


def run_live(
    cfg: ScenarioConfig, opts: LiveOptions, stop: threading.Event | None = None
) -> LiveReport:
    """Create trips (unless ``api_url`` is None), then publish until done, duration or ``stop``."""
    stop = stop or threading.Event()
    speedup = opts.speedup
    if opts.rate and speedup == 1.0:
        speedup = max(1.0, opts.rate * cfg.interval_s / cfg.vehicles)
    duration = cfg.duration_s or DEFAULT_LIVE_DURATION_S
    if speedup > 1.0:
        # Keep fix times at or behind the wall clock: ingest refuses fixes from the future.
        cfg.start_ms -= int(duration * (1.0 - 1.0 / speedup) * 1000)
    sim = build(cfg)
    report = LiveReport(vehicles=len(sim.plans))
    if opts.api_url:
        if not opts.token:
            raise SystemExit(
                "creating trips needs --token or ROUTEWATCH_SIMULATOR_TOKEN (or --no-trips)"
            )
        report.trips_created, report.trips_failed = asyncio.run(
            create_trips(sim.plans, opts.api_url, opts.token, opts.trip_concurrency)
        )
    kind = WirePublishers if opts.client == "wire" else Publishers
    pubs: Publishers | WirePublishers = kind(
        opts.mqtt_url, opts.connections, opts.qos, f"{cfg.id_prefix}-pub"
    )
    try:
        _publish_loop(sim, pubs, opts, speedup, duration, stop, report)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        pubs.close(report.messages if opts.qos else 0)
        report.acked = pubs.acked
        report.extra = dict(sim.devices.counts)
    return report


def _publish_loop(
    sim: Simulation,
    pubs: Publishers | WirePublishers,
    opts: LiveOptions,
    speedup: float,
    duration: float,
    stop: threading.Event,
    report: LiveReport,
) -> None:
    topics = [f"fleet/{v}/ping" for v in sim.vehicle_ids]
    bucket = TokenBucket(opts.rate, max(opts.rate * 0.2, 1000.0)) if opts.rate else None
    total = int(duration)
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="sim-s", dynamic_ncols=True)
    wall0 = time.monotonic()
    try:
        for k in range(total):
            if stop.is_set() or sim.done():
                break
            due = wall0 + k / speedup
            delay = due - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            msgs = sim.tick()
            if bucket is not None and msgs:
                bucket.take(len(msgs), stop)
            pubs.publish_tick(msgs, topics)
            report.fixes += sum(len(m.fixes) for m in msgs)
            report.messages += len(msgs)
            report.sim_seconds = k + 1
            if bar is not None:
                bar.update(1)
                if k % 10 == 0:
                    el = time.monotonic() - wall0
                    bar.set_postfix(
                        msg_s=f"{report.messages / max(el, 1e-9):.0f}", acked=pubs.acked
                    )
    finally:
        report.wall_s = time.monotonic() - wall0
        if bar is not None:
            bar.close()
