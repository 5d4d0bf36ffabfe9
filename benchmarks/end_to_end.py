"""End to end at fixed offered rates: publisher -> Mosquitto -> engine -> PostgreSQL.

For every offered rate (pings/s, one ping per MQTT message as trackers send them, or
``--array-share`` of the vehicles flushing buffered arrays of ``--array-size``) a fresh
scratch database gets the trips, a fresh ``routewatch serve --no-api`` (the real engine
process) starts, and a publisher process offers the rate for ``--seconds``. Printed per
rate:

- sustained stored throughput: pings stored / (publishing time + time until the last
  ping is stored), and the loss: published (acknowledged by the broker) minus stored;
- ping-to-event latency p50/p99: fault vehicles (speeding and off-route episodes, on
  trips) have the publish time of each ping recorded; every event arriving on the
  engine's ``fleet/{id}/events`` mirror is matched to the ping that proved it (same
  vehicle, ``ts``). The publisher numbers each vehicle's fixes (``seq``), so a fix that
  follows the last one without a gap is final at once (compliance/engine.py); after a
  gap, events wait for the reorder allowance (30 s by default) — the run waits that long
  after publishing so they are counted too;
- CPU seconds used by the engine, the broker, PostgreSQL and the publisher.

Baselines in the same run: the raw broker delivery rate (``mosquitto_sub -C N``, the C
client, draining N queued single-ping messages with nothing else running; our receiver
alone on the same queue too), the broker's pass-through (the unpaced publisher and
``mosquitto_sub`` at once: what MQTT alone carries end to end while sharing the cores,
as the engine's runs do), the raw binary COPY rate of pings into PostgreSQL, and the
publisher's own capacity (unpaced, no subscriber) — with the ratios. The CPU seconds of
the engine, the broker, PostgreSQL and the publisher show where the 2 cores went.

    .venv/bin/python -m benchmarks.end_to_end --rates 5000,20000,50000,80000

Figures are printed, never asserted; other work on the machine makes them noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from benchmarks.ingest_rate import count_stored, scratch_database
from benchmarks.mqtt_clients import (
    drain_c,
    drain_receiver,
    end_session,
    make_session,
    mosquitto_sub_command,
    preload,
)
from compliance.plan import TripPlan, parse_time_ms
from ingest.receiver import ConnectOptions, connect
from routewatch.mqtt_endpoint import varint
from routewatch.services import PrivateMosquitto
from simulator.mqttwire import WirePublisher
from store.pings import _STAGE_DDL, _STAGE_TYPES, copy_rows
from store.trips import save_plan

LAT0, LON0 = -6.2, 106.8
M_PER_DEG = 111_320.0
LANE_M = 60.0  # vehicles drive parallel east-west lanes this far apart
ROUTE_M = 100_000.0
STOP_M = 95_000.0
SPEED_MPS = 11.0
LIMIT_KMH = 60
CYCLE_S = 60.0  # fault episodes repeat with this period
#: Mosquitto queues this many messages for the engine beyond its in-flight window (the
#: default 1000 drops the rest: a deployment raises it; see ingest/mqtt_source.py)
BROKER_CONFIG = "max_queued_messages 5000000\n"
CHUNK_S = 0.005  # the publisher writes what is due every 5 ms


@dataclass(frozen=True, slots=True)
class Fleet:
    prefix: str
    vehicles: int
    trip_vehicles: int  # vehicles 0..trip_vehicles-1 drive a trip
    fault_vehicles: int  # the first of those have speeding / off-route episodes
    array_vehicles: int  # the last ones send buffered arrays
    array_size: int

    def vid(self, v: int) -> str:
        return f"{self.prefix}v{v:05d}"

    def lat(self, v: int, offset_m: float = 0.0) -> float:
        return LAT0 + (v * LANE_M + offset_m) / M_PER_DEG

    def lon(self, along_m: float) -> float:
        return LON0 + along_m / (M_PER_DEG * math.cos(math.radians(LAT0)))

    def plan(self, v: int, start_ms: int) -> dict[str, Any]:
        return {
            "trip_id": f"T-{self.vid(v)}",
            "vehicle_id": self.vid(v),
            "planned_start": start_ms,
            "route": {
                "type": "LineString",
                "coordinates": [[self.lon(0), self.lat(v)], [self.lon(ROUTE_M), self.lat(v)]],
            },
            "speed_limit_kmh": LIMIT_KMH,
            # one drop near the far end: far enough that no run reaches it
            "stops": [{"stop_id": "S1", "location": [self.lon(STOP_M), self.lat(v)]}],
        }


def fault_state(fleet: Fleet, v: int, t_s: float) -> tuple[float, float]:
    """(lateral offset m, reported speed km/h) of vehicle ``v`` at ``t_s`` into the run.
    Even fault vehicles speed (95 km/h for 30 s of each cycle); odd ones leave the route
    (ramping out to 300 m at 20 m/s — no jump a wild-fix filter would drop — and back).
    Phases are spread so the first episodes confirm early in the run."""
    if v >= fault_vehicles_of(fleet):
        return 0.0, SPEED_MPS * 3.6
    phase = (t_s + 10.0 - (v % 10)) % CYCLE_S
    if v % 2 == 0:
        return 0.0, 95.0 if 10.0 <= phase < 40.0 else SPEED_MPS * 3.6
    return max(0.0, min(300.0, 20.0 * (phase - 10.0), 20.0 * (50.0 - phase))), SPEED_MPS * 3.6


def fault_vehicles_of(fleet: Fleet) -> int:
    return min(fleet.fault_vehicles, fleet.trip_vehicles)


def ping_json(fleet: Fleet, v: int, ts_ms: int, t_s: float, seq: int) -> bytes:
    offset_m, speed = fault_state(fleet, v, t_s)
    return (
        b'{"ts":%d,"lat":%.7f,"lon":%.7f,"speed":%.1f,"heading":90.0,"accuracy":5.0,"seq":%d}'
        % (
            ts_ms,
            fleet.lat(v, offset_m),
            fleet.lon(SPEED_MPS * t_s),
            speed,
            seq,
        )
    )


@dataclass(slots=True)
class PublishReport:
    messages: int = 0
    pings: int = 0
    acked: int = 0
    wall_s: float = 0.0
    late_s: float = 0.0  # how far behind schedule the publisher fell at worst
    started_at: float = 0.0  # wall time of the first write
    error: str | None = None
    #: (vehicle index, ts ms) -> wall time of the write, for the fault vehicles
    sent_at: dict[tuple[int, int], float] = field(default_factory=dict)


class BulkPublisher:
    """MQTT 3.1.1 QoS 1 publishing of pre-encoded PUBLISH packets: the run itself is
    only ``sendall`` of byte ranges, and PUBACKs (4 bytes each, nothing else is asked
    of the broker: keepalive 0) are counted by bytes — so the load generator costs
    little of the 2 cores it shares with the broker, the engine and PostgreSQL."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id.encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack("!H", len(cid)) + cid
        self.sock.sendall(bytes([0x10, len(body)]) + body)
        if self.sock.recv(4) != b"\x20\x02\x00\x00":
            raise ConnectionError("CONNACK refused")
        self.sock.settimeout(None)
        self.acked_bytes = 0
        self._reader = threading.Thread(target=self._count_acks, daemon=True)
        self._reader.start()

    def _count_acks(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 16):
                self.acked_bytes += len(chunk)

    @property
    def acked(self) -> int:
        return self.acked_bytes // 4

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")
        self.sock.close()
        self._reader.join(2)


def encode_stream(
    fleet: Fleet, rate: float, seconds: float, base_ms: int
) -> tuple[bytearray, array, array, list[tuple[int, int, int]], int]:
    """The whole run as PUBLISH packets: (bytes, end offset per message, due ms per
    message, [(message index, vehicle, ts)] of the fault vehicles' pings, pings)."""
    stream = bytearray()
    ends, due = array("q"), array("q")
    faults = fault_vehicles_of(fleet)
    first_array = fleet.vehicles - fleet.array_vehicles
    buffered: dict[int, list[bytes]] = {}
    traced: list[tuple[int, int, int]] = []
    headers: dict[int, bytes] = {}
    pid = 0
    total = int(rate * seconds)
    for k in range(total):
        v = k % fleet.vehicles
        offset_s = k / rate
        ts_ms = base_ms + int(offset_s * 1000)  # real-time fixes: ts = when it is due
        body = ping_json(fleet, v, ts_ms, offset_s, k // fleet.vehicles)
        if v >= first_array:
            items = buffered.setdefault(v, [])
            items.append(body)
            if len(items) < fleet.array_size:
                continue
            body = b"[" + b",".join(items) + b"]"
            items.clear()
        elif v < faults:
            traced.append((len(ends), v, ts_ms))
        header = headers.get(v)
        if header is None:
            topic = f"fleet/{fleet.vid(v)}/ping".encode()
            header = headers[v] = struct.pack("!H", len(topic)) + topic
        pid = pid % 65535 + 1
        rest = len(header) + 2 + len(body)
        stream += b"\x32" + varint(rest) + header + pid.to_bytes(2, "big") + body
        ends.append(len(stream))
        due.append(ts_ms)
    unsent = sum(len(items) for items in buffered.values())
    return stream, ends, due, traced, total - unsent


def publish(port: int, fleet: Fleet, rate: float, seconds: float, out: Connection) -> None:
    """Child process: offer ``rate`` pings/s for ``seconds`` on one connection, QoS 1;
    report what the broker acknowledged. ``rate`` 0: send the stream of a 100k/s run as
    fast as possible (the publisher's capacity)."""
    report = PublishReport()
    unpaced = rate <= 0
    rate = rate or 100_000.0
    # Encoding takes ~5 us a ping: start the fixes' clock after it.
    base_ms = int(time.time() * 1000) + int(rate * seconds * 0.006) + 1000
    stream, ends, due, traced, report.pings = encode_stream(fleet, rate, seconds, base_ms)
    report.messages = len(ends)
    view = memoryview(stream)
    pub = BulkPublisher(port, f"{fleet.prefix}pub")
    sends: list[tuple[int, float]] = []  # (messages sent so far, wall time of that write)
    if not unpaced:
        time.sleep(max(0.0, base_ms / 1000 - time.time()))
    t0 = report.started_at = time.time()
    sent = 0
    try:
        while sent < len(ends):
            now = time.time()
            if unpaced:
                upto = min(len(ends), sent + 1000)
            else:
                upto = bisect.bisect_right(due, int(now * 1000), lo=sent)
                report.late_s = max(report.late_s, now - due[sent] / 1000 if upto > sent else 0)
            while sent - pub.acked > 60_000:  # packet ids must not wrap onto un-acked ones
                time.sleep(0.001)
            if upto > sent:
                pub.sock.sendall(view[ends[sent - 1] if sent else 0 : ends[upto - 1]])
                sent = upto
                sends.append((sent, now))
            if not unpaced:
                time.sleep(CHUNK_S)
        report.wall_s = time.time() - t0
        deadline = time.monotonic() + 60
        while pub.acked < sent and time.monotonic() < deadline:
            time.sleep(0.01)
    except OSError as exc:
        report.error = str(exc)
    finally:
        report.acked = pub.acked
        pub.close()
    if report.acked < report.messages:
        report.error = report.error or f"broker acknowledged {report.acked} of {report.messages}"
    marks = [n for n, _ in sends]
    for index, v, ts_ms in traced:
        at = bisect.bisect_right(marks, index)
        if at < len(sends):
            report.sent_at[(v, ts_ms)] = sends[at][1]
    out.send(report)


def start_publisher(
    port: int, fleet: Fleet, rate: float, seconds: float
) -> tuple[mp.process.BaseProcess, Connection]:
    ctx = mp.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=publish, args=(port, fleet, rate, seconds, sender), daemon=True)
    proc.start()
    return proc, receiver


def postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process on the machine (the server's share of the
    run: backends, WAL writer, checkpointer; ended backends via the postmaster). Another
    cluster or client busy on the machine meanwhile is counted too: run it alone."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "postgres":
                total += cpu_s(int(comm.parent.name))
    return total


class StoredCounter:
    """Counts stored pings on one connection without parallel workers, so that the server
    CPU the counting costs (a scan per count, twice a second while a backlog drains) can
    be taken out of PostgreSQL's share of the run."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET max_parallel_workers_per_gather = 0")
        row = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        self.pid = int(row[0]) if row else None

    def count(self, prefix: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM pings WHERE vehicle_id LIKE %s", (prefix + "%",)
        ).fetchone()
        return int(row[0]) if row else 0

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def close(self) -> None:
        self.conn.close()


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (and its waited-for children), from /proc."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def create_trips(url: str, fleet: Fleet, start_ms: int) -> None:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        for v in range(fleet.trip_vehicles):
            plan = TripPlan.model_validate(fleet.plan(v, start_ms))
            await save_plan(conn, plan, ROUTE_M, [STOP_M])


class Engine:
    """``routewatch serve --no-api`` against the scratch database and private broker."""

    def __init__(self, db_url: str, mqtt_url: str, prefix: str, log_path: Path) -> None:
        env = {
            **os.environ,
            "ROUTEWATCH_DATABASE_URL": db_url,
            "ROUTEWATCH_MQTT_URL": mqtt_url,
            "ROUTEWATCH_MQTT_CLIENT_ID": f"{prefix}engine",
            "ROUTEWATCH_MQTT_SESSION_EXPIRY_S": "60",
            "ROUTEWATCH_LOG_LEVEL": "WARNING",
        }
        exe = Path(sys.executable).with_name("routewatch")
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(exe), "serve", "--no-api"], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_subscribed(port: int, url: str, prefix: str, engine: Engine) -> None:
    """Publish a probe ping until one is stored: the engine is subscribed and warm."""
    pub = WirePublisher("127.0.0.1", port, f"{prefix}probe", qos=1)
    try:
        deadline = time.monotonic() + 120
        k = 0
        while count_stored(url, f"{prefix}probe") == 0:
            if engine.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"engine did not start (exit {engine.proc.poll()}); see its log")
            body = b'{"ts":%d,"lat":-6.3,"lon":106.7}' % (int(time.time() * 1000) - k)
            pub.publish_many([(f"fleet/{prefix}probe/ping", body.decode())])
            k += 1
            time.sleep(0.5)
    finally:
        pub.close()


@dataclass(slots=True)
class RateResult:
    offered: float
    published: int = 0
    messages: int = 0
    publish_s: float = 0.0
    drain_s: float = 0.0
    stored: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # steady state
    startup_ms: list[float] = field(default_factory=list)  # the first allowance
    events: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def sustained(self) -> float:
        return self.stored / (self.publish_s + self.drain_s) if self.publish_s else 0.0


async def listen_events(port: int, prefix: str, arrivals: list[tuple[str, int, float]]) -> None:
    opts = ConnectOptions(
        "127.0.0.1", port, f"{prefix}events", clean_start=True, session_expiry_s=0
    )
    async with connect(opts) as conn:
        await conn.subscribe("fleet/+/events", qos=1)
        while True:
            messages = await conn.receive(1000)
            now = time.time()
            for _topic, payload, _mid, _qos in messages:
                event = orjson.loads(payload)
                arrivals.append((event["vehicle_id"], parse_time_ms(event["ts"]), now))
            conn.ack(mid for _, _, mid, qos in messages if qos)


async def run_rate(
    args: argparse.Namespace, broker: PrivateMosquitto, rate: float, logs: Path
) -> RateResult:
    result = RateResult(rate)
    prefix = f"e{uuid.uuid4().hex[:5]}-"
    fleet = Fleet(
        prefix,
        args.vehicles,
        args.trip_vehicles,
        args.fault_vehicles,
        int(args.vehicles * args.array_share),
        args.array_size,
    )
    name, url = scratch_database(args.database_url)
    arrivals: list[tuple[str, int, float]] = []
    listener = asyncio.create_task(listen_events(broker.port, prefix, arrivals))
    engine = None
    publish_end = math.inf
    try:
        await create_trips(url, fleet, int(time.time() * 1000))
        engine = Engine(url, broker.url, prefix, logs / f"engine-{int(rate)}.log")
        await asyncio.to_thread(wait_subscribed, broker.port, url, prefix, engine)
        counter = StoredCounter(url)
        cpu0 = {
            "engine": cpu_s(engine.proc.pid),
            "broker": cpu_s(broker.pid),
            "postgres": postgres_cpu_s() - counter.cpu_s(),
        }
        proc, pipe = start_publisher(broker.port, fleet, rate, args.seconds)
        report: PublishReport = await asyncio.to_thread(pipe.recv)
        publish_end = time.time()
        result.cpu["publisher"] = cpu_s(proc.pid)
        proc.join()
        result.published, result.messages = report.pings, report.messages
        result.publish_s, result.error = report.wall_s, report.error
        # Counting is a full scan: only after publishing, twice a second, until complete
        # (or nothing more arrives for 15 s: the rest is lost).
        stall_at, last = time.monotonic(), -1
        while True:
            stored = await asyncio.to_thread(counter.count, prefix + "v")
            if stored >= report.pings:
                break
            if stored != last:
                stall_at, last = time.monotonic(), stored
            elif time.monotonic() - stall_at > 15:
                break
            await asyncio.sleep(0.5)
        result.drain_s = time.time() - publish_end
        result.cpu["engine"] = cpu_s(engine.proc.pid) - cpu0["engine"]
        result.cpu["broker"] = cpu_s(broker.pid) - cpu0["broker"]
        result.cpu["postgres"] = postgres_cpu_s() - counter.cpu_s() - cpu0["postgres"]
        counter.close()
        # events of the last episodes become final one reorder allowance after their ping
        await asyncio.sleep(max(0.0, publish_end + args.allowance_s + 3.0 - time.time()))
        result.stored = await asyncio.to_thread(count_stored, url, prefix + "v")
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
        if engine is not None:
            engine.stop()
            await end_session(broker.port, f"{prefix}engine")
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    vehicle_index = {fleet.vid(v): v for v in range(fault_vehicles_of(fleet))}
    for vid, ts_ms, arrived in arrivals:
        v = vehicle_index.get(vid)
        sent = report.sent_at.get((v, ts_ms)) if v is not None else None
        result.events += 1
        if sent is None:
            continue
        # a vehicle's first fix waits for the allowance (nothing is known before it), and
        # so does every later one until it is committed: the start-up is told apart
        started = sent < publish_end - result.publish_s + args.allowance_s + 5.0
        (result.startup_ms if started else result.latencies_ms).append((arrived - sent) * 1000)
    return result


def copy_rate(url: str, rows: int) -> float:
    """Rows/s of one binary COPY of ping rows into a scratch table (the writer's shape)."""
    tail = (None, float("nan"), float("nan"), -1)  # no trip, no match result
    data = [
        (f"V{i % 2000:05d}", 1_763_798_400_000 + i, -6.2, 106.8, 40.0, 90.0, 5.0, i, *tail)
        for i in range(rows)
    ]

    async def run() -> float:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute(_STAGE_DDL.replace("ON COMMIT DELETE ROWS", ""))
            t0 = time.perf_counter()
            await copy_rows(conn, "COPY pings_stage FROM STDIN (FORMAT BINARY)", _STAGE_TYPES, data)
            await conn.commit()
            return rows / (time.perf_counter() - t0)

    return asyncio.run(run())


def broker_rates(port: int, n: int) -> tuple[float, float]:
    """(mosquitto_sub, ingest.receiver) msg/s draining n queued single-ping messages."""
    fleet = Fleet("raw-", 2000, 0, 0, 0, 1)
    t_s = 0.0
    msgs = [
        (
            f"fleet/{fleet.vid(k % 2000)}/ping",
            ping_json(fleet, k % 2000, 1_763_798_400_000 + k, t_s, k).decode(),
        )
        for k in range(n)
    ]
    rates = []
    for drain in (drain_c, drain_receiver):
        cid = f"raw-{uuid.uuid4().hex[:6]}"
        asyncio.run(make_session(port, cid))
        preload(port, msgs)
        t0 = time.perf_counter()
        result = drain(port, cid, n, 1000, 2000)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
        rates.append(n / (time.perf_counter() - t0))
        asyncio.run(end_session(port, cid))
    return rates[0], rates[1]


def passthrough_rate(port: int, seconds: float) -> float:
    """msg/s from the unpaced publisher through the broker to ``mosquitto_sub``, both
    running at once (QoS 1 both ways): what MQTT alone carries end to end on this machine,
    under the same contention for the cores as the engine's runs."""
    fleet = Fleet(f"pt{uuid.uuid4().hex[:4]}-", 2000, 0, 0, 0, 1)
    cid = f"pt-{uuid.uuid4().hex[:6]}"
    asyncio.run(make_session(port, cid))
    n = int(100_000 * seconds)  # what the unpaced publisher sends
    sub = subprocess.Popen(mosquitto_sub_command(port, cid, n), stdout=subprocess.DEVNULL)
    try:
        proc, pipe = start_publisher(port, fleet, 0.0, seconds)
        report: PublishReport = pipe.recv()
        proc.join()
        if report.error:
            raise SystemExit(f"pass-through baseline: the publisher failed: {report.error}")
        try:
            sub.wait(120)  # it exits once it has received every message
        except subprocess.TimeoutExpired:
            raise SystemExit("pass-through baseline: mosquitto_sub missed messages") from None
        done = time.time()
    finally:
        if sub.poll() is None:
            sub.kill()
        asyncio.run(end_session(port, cid))
    return report.messages / (done - report.started_at)


def publisher_capacity(port: int, seconds: float) -> float:
    fleet = Fleet(f"cap{uuid.uuid4().hex[:4]}-", 2000, 0, 0, 0, 1)
    proc, pipe = start_publisher(port, fleet, 0.0, seconds)
    report: PublishReport = pipe.recv()
    proc.join()
    return report.acked / report.wall_s if report.wall_s else 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="5000,20000,50000,80000", help="offered pings/s")
    ap.add_argument("--seconds", type=float, default=60.0, help="publishing time per rate")
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--trip-vehicles", type=int, default=100, help="vehicles driving a trip")
    ap.add_argument("--fault-vehicles", type=int, default=40, help="trip vehicles with faults")
    ap.add_argument("--array-share", type=float, default=0.0, help="vehicles sending arrays")
    ap.add_argument("--array-size", type=int, default=10)
    ap.add_argument(
        "--allowance-s", type=float, default=30.0, help="the engine's reorder allowance"
    )
    ap.add_argument("--baseline-messages", type=int, default=100_000)
    ap.add_argument("--log-dir", help="keep the engine logs here (default: discarded)")
    ap.add_argument(
        "--database-url",
        default=os.environ.get(
            "ROUTEWATCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = ap.parse_args()
    if shutil.which("mosquitto_sub") is None:
        raise SystemExit("mosquitto_sub not found (apt-get install mosquitto-clients)")
    rates = [float(r) for r in args.rates.split(",")]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rw-e2e-")))
        broker = stack.enter_context(PrivateMosquitto(tmp / "mqtt", extra_config=BROKER_CONFIG))
        c_rate, rx_rate = broker_rates(broker.port, args.baseline_messages)
        pub_rate = publisher_capacity(broker.port, 5.0)
        through = passthrough_rate(broker.port, 5.0)
        name, url = scratch_database(args.database_url)
        try:
            copy = copy_rate(url, 500_000)
        finally:
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        logs = Path(args.log_dir) if args.log_dir else tmp
        logs.mkdir(parents=True, exist_ok=True)
        results = [asyncio.run(run_rate(args, broker, rate, logs)) for rate in rates]
    print(
        f"fleet: {args.vehicles} vehicles, {args.trip_vehicles} on trips, "
        f"{min(args.fault_vehicles, args.trip_vehicles)} with speeding/off-route episodes; "
        f"{args.array_share:.0%} send arrays of {args.array_size}, the rest one ping per message"
    )
    print(f"baseline raw broker delivery, mosquitto_sub -C N (C): {c_rate:>10,.0f} msg/s")
    print(f"baseline ingest.receiver alone on the same queue:     {rx_rate:>10,.0f} msg/s")
    print(f"baseline raw binary COPY of pings:                    {copy:>10,.0f} rows/s")
    print(f"publisher capacity (unpaced, 1 connection, QoS 1):    {pub_rate:>10,.0f} msg/s")
    print(f"publisher -> broker -> mosquitto_sub, both at once:   {through:>10,.0f} msg/s")
    for r in results:
        lost = r.published - r.stored
        print(
            f"\noffered {r.offered:,.0f} pings/s: published {r.published} pings in {r.messages} "
            f"messages over {r.publish_s:.1f} s ({r.published / max(r.publish_s, 1e-9):,.0f}/s)"
            + (f" [publisher: {r.error}]" if r.error else "")
        )
        print(
            f"  stored {r.stored} (loss {lost}), last stored {r.drain_s:.1f} s after publishing "
            f"ended: sustained {r.sustained:,.0f} pings/s = {r.sustained / c_rate:.0%} of "
            f"mosquitto_sub draining, {r.sustained / through:.0%} of the publisher -> "
            f"mosquitto_sub pass-through, {r.sustained / rx_rate:.0%} of the bare receiver, "
            f"{r.sustained / copy:.0%} of raw COPY"
        )
        if r.latencies_ms:
            print(
                f"  ping -> event on MQTT mirror: n={len(r.latencies_ms)} of {r.events} events "
                f"p50={statistics.median(r.latencies_ms):,.0f} ms "
                f"p99={pct(r.latencies_ms, 0.99):,.0f} ms max={max(r.latencies_ms):,.0f} ms "
                f"(after the first {args.allowance_s + 5:.0f} s; {len(r.startup_ms)} events "
                f"before, p50={statistics.median(r.startup_ms or [math.nan]):,.0f} ms)"
            )
        else:
            print(f"  no events matched ({r.events} arrived)")
        print("  CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r.cpu.items()))


if __name__ == "__main__":
    main()
