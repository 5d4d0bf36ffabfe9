"""Live mode: create the trips through the API, then publish the fleet's pings over MQTT.

Trips go out first (``simulator.dispatch``: concurrent, retried, safe to re-run), so the
engine knows every vehicle's plan before its first ping.

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
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from routewatch.mqtt_endpoint import MqttEndpoint
from simulator.dispatch import DispatchOptions, DispatchReport, dispatch_trips
from simulator.gps import Message
from simulator.mqttwire import WirePublisher
from simulator.scenario import ScenarioConfig, Simulation, build

log = logging.getLogger(__name__)

DEFAULT_LIVE_DURATION_S = 2 * 3600.0
# Real time: planned starts are put this far ahead per trip to dispatch (the ~100
# trips/s measured on 2 busy cores), so vehicles set off after their plans exist; a slower
# dispatch is caught up by _align_to_wall_clock.
DISPATCH_LEAD_S_PER_TRIP = 1 / 100
RATE_HEADROOM = 1.25  # --rate: simulated clock speed over the nominal one (see run_live)
STEADY_SHARE = 0.95  # steady state: at least this share of the run's peak vehicles on the road


@dataclass(slots=True)
class LiveOptions:
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    # mqtts:// only: CA file (None: the system store), client certificate and key
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    qos: int = 1
    speedup: float = 1.0
    rate: float | None = None  # messages/s cap (and speedup target when speedup is 1)
    connections: int = 4
    api_url: str | None = None  # None: do not create trips
    token: str | None = None
    progress: bool = True
    trip_concurrency: int = 16
    client: str = "wire"  # "wire": batched writes (simulator.mqttwire); "paho": paho-mqtt
    # Real time only: fix times follow the wall clock (plans start now, plus a lead to
    # dispatch them); off for a --start given by the user.
    wall_clock: bool = False


@dataclass(slots=True)
class LiveReport:
    vehicles: int = 0
    trips: DispatchReport | None = None  # None: trips were not created (--no-trips)
    target_rate: float | None = None  # messages/s asked for (--rate), if any
    speedup: float = 1.0
    messages: int = 0
    fixes: int = 0
    acked: int = 0
    sim_seconds: int = 0
    wall_s: float = 0.0
    # steady state: the seconds with (nearly) the run's peak number of vehicles on the road,
    # i.e. without the ramp-up while the fleet departs (and the tail as trips end)
    steady_messages: int = 0
    steady_wall_s: float = 0.0
    skipped_s: int = 0  # real time: simulated seconds run unpublished to catch up the clock
    interrupted: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.wall_s if self.wall_s else 0.0

    @property
    def steady_rate(self) -> float:
        return self.steady_messages / self.steady_wall_s if self.steady_wall_s else 0.0

    def summary(self) -> str:
        """One ``key=value`` line (benchmarks parse it)."""
        t = self.trips
        trips = (
            ""
            if t is None
            else f"trips_created={t.created} trips_replaced={t.replaced} "
            f"trips_conflicts={t.conflicts} trips_failed={t.failed} "
            f"trips_wall_s={t.wall_s:.1f} trips_per_s={t.rate:.0f} "
        )
        return (
            f"vehicles={self.vehicles} {trips}messages={self.messages} fixes={self.fixes} "
            f"acked={self.acked} sim_s={self.sim_seconds} wall_s={self.wall_s:.1f} "
            f"speedup={self.speedup:g} target_msg_s={self.target_rate or 0:.0f} "
            f"rate_msg_s={self.rate:.0f} steady_msg_s={self.steady_rate:.0f} "
            f"steady_wall_s={self.steady_wall_s:.1f} skipped_s={self.skipped_s}"
            + ("" if not self.interrupted else " interrupted=1")
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

    def __init__(self, broker: MqttEndpoint, n: int, qos: int, client_prefix: str) -> None:
        self.qos = qos
        self.acked = 0
        self._lock = threading.Lock()
        self.clients: list[mqtt.Client] = []
        for k in range(max(1, n)):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_prefix}-{k}")
            c.max_inflight_messages_set(1000)
            c.max_queued_messages_set(0)
            c.on_publish = self._on_publish
            if broker.username is not None:  # mqtt://user:password@host (a gateway login)
                c.username_pw_set(broker.username, broker.password)
            if (context := broker.ssl_context()) is not None:
                c.tls_set_context(context)
            c.connect(broker.host, broker.port, keepalive=60)
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

    def __init__(self, broker: MqttEndpoint, n: int, qos: int, client_prefix: str) -> None:
        context = broker.ssl_context()
        self.clients = [
            WirePublisher(
                broker.host,
                broker.port,
                f"{client_prefix}-{k}",
                qos,
                username=broker.username,
                password=broker.password,
                tls=context,
            )
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


def run_live(
    cfg: ScenarioConfig, opts: LiveOptions, stop: threading.Event | None = None
) -> LiveReport:
    """Create trips (unless ``api_url`` is None), then publish until done, duration or ``stop``."""
    stop = stop or threading.Event()
    speedup = opts.speedup
    if opts.rate and speedup == 1.0:
        # The clock runs a little faster than the nominal rate (every vehicle, one message
        # per interval) asks for, and the token bucket paces to the rate: a real fleet sends
        # fewer messages than nominal (vehicles not yet departed, coverage gaps, fixes
        # buffered into arrays), so the nominal speedup alone fell ~10% short.
        speedup = max(1.0, RATE_HEADROOM * opts.rate * cfg.interval_s / cfg.vehicles)
    duration = cfg.duration_s or DEFAULT_LIVE_DURATION_S
    if speedup > 1.0:
        # Keep fix times at or behind the wall clock: ingest refuses fixes from the future.
        cfg.start_ms -= int(duration * (1.0 - 1.0 / speedup) * 1000)
    elif opts.wall_clock and opts.api_url:
        cfg.start_ms += int((2.0 + cfg.vehicles * DISPATCH_LEAD_S_PER_TRIP) * 1000)
    if opts.api_url and not opts.token:
        raise SystemExit(
            "creating trips needs --token or ROUTEWATCH_SIMULATOR_TOKEN (or --no-trips)"
        )
    sim = build(cfg)
    report = LiveReport(vehicles=len(sim.plans), target_rate=opts.rate, speedup=speedup)
    if opts.api_url:
        assert opts.token is not None
        report.trips = trips = asyncio.run(
            dispatch_trips(
                sim.plans,
                opts.api_url,
                opts.token,
                DispatchOptions(concurrency=opts.trip_concurrency, progress=opts.progress),
            )
        )
        print(trips.summary(), file=sys.stderr, flush=True)
        for problem in trips.problems:
            print(f"  refused: {problem}", file=sys.stderr, flush=True)
        if trips.plans and not (trips.accepted or trips.conflicts):
            raise SystemExit("no trip was accepted by the API; not publishing")
    broker = MqttEndpoint.parse(
        opts.mqtt_url,
        ca_file=opts.mqtt_ca_file,
        cert_file=opts.mqtt_cert_file,
        key_file=opts.mqtt_key_file,
    )
    kind = WirePublishers if opts.client == "wire" else Publishers
    try:
        pubs: Publishers | WirePublishers = kind(
            broker, opts.connections, opts.qos, f"{cfg.id_prefix}-pub"
        )
    except (OSError, ValueError) as exc:  # refused, unreachable, a certificate check failed
        raise SystemExit(f"cannot publish to {broker.address}: {exc}") from exc
    try:
        if opts.wall_clock and speedup == 1.0:
            report.skipped_s = _align_to_wall_clock(sim, stop)
        _publish_loop(sim, pubs, opts, speedup, duration, stop, report)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        pubs.close(report.messages if opts.qos else 0)
        report.acked = pubs.acked
        report.extra = dict(sim.devices.counts)
    return report


def _align_to_wall_clock(sim: Simulation, stop: threading.Event) -> int:
    """Real time: make the simulated clock equal the wall clock before publishing.

    Planned starts lie a little ahead so the trips can be dispatched first; wait for the
    first departure. If dispatching took longer, run the simulation forward without
    publishing (those trackers were off) so no fix is stamped in the past. Returns the
    simulated seconds skipped."""
    ahead_s = sim.t_s - time.time()
    if ahead_s > 0:
        stop.wait(ahead_s)
        return 0
    skipped = 0
    while sim.t_s < time.time() and not stop.is_set() and not sim.done():
        sim.tick()
        skipped += 1
    return skipped


class _RateWindow:
    """Messages per wall second over the last ``span_s`` (for the progress bar)."""

    def __init__(self, span_s: float = 5.0) -> None:
        self.span_s = span_s
        self.points: list[tuple[float, int]] = []

    def add(self, t: float, total: int) -> float:
        self.points.append((t, total))
        while len(self.points) > 2 and t - self.points[0][0] > self.span_s:
            self.points.pop(0)
        t0, n0 = self.points[0]
        return (total - n0) / (t - t0) if t > t0 else 0.0


def _publish_loop(
    sim: Simulation,
    pubs: Publishers | WirePublishers,
    opts: LiveOptions,
    speedup: float,
    duration: float,
    stop: threading.Event,
    report: LiveReport,
) -> None:
    """Tick, pace and publish; ``report`` is updated as it goes (and on interruption)."""
    topics = [f"fleet/{v}/ping" for v in sim.vehicle_ids]
    bucket = TokenBucket(opts.rate, max(opts.rate * 0.2, 1000.0)) if opts.rate else None
    total = int(duration)
    ticks: list[tuple[int, int, float]] = []  # (vehicles on the road, messages, wall s)
    window = _RateWindow()
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="sim-s", desc="publish", dynamic_ncols=True)
    wall0 = last = time.monotonic()
    try:
        for k in range(total):
            if stop.is_set() or sim.done():
                break
            due = wall0 + k / speedup
            delay = due - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            on_road = int(sim.fleet.active(sim.t_s).sum())
            msgs = sim.tick()
            if bucket is not None and msgs:
                bucket.take(len(msgs), stop)
            pubs.publish_tick(msgs, topics)
            now = time.monotonic()
            report.fixes += sum(len(m.fixes) for m in msgs)
            report.messages += len(msgs)
            report.sim_seconds = k + 1
            ticks.append((on_road, len(msgs), now - last))
            last = now
            recent = window.add(now, report.messages)
            if bar is not None:
                bar.update(1)
                if k % 10 == 0:
                    bar.set_postfix(
                        on_road=on_road, msg_s=f"{recent:.0f}", acked=pubs.acked, refresh=False
                    )
    finally:
        report.wall_s = time.monotonic() - wall0
        if bar is not None:
            bar.close()
        peak = max((t[0] for t in ticks), default=0)
        steady = [t for t in ticks if t[0] >= STEADY_SHARE * peak > 0]
        report.steady_messages = sum(t[1] for t in steady)
        report.steady_wall_s = sum(t[2] for t in steady)
