"""Engine workers on NATS JetStream against the single-node engine, at one offered rate.

One run, one simulated fleet and one offered rate for every configuration, each on a
fresh scratch database, a fresh private Mosquitto and a fresh NATS prefix
(``ROUTEWATCH_NATS_PREFIX``) on one nats-server with JetStream (a private one unless
``--nats-url``, so that its CPU is this run's alone):

1. ``routewatch serve --no-api``: the single-node engine, the baseline;
2. ``routewatch gateway`` with 1, 2 and 3 ``routewatch worker`` processes sharing
   ``--partitions`` partitions (32); in the last one a worker is killed with SIGKILL
   ``--kill-at`` of the way through publishing.

Every process is the real one, started as the fault tests start it
(``tests.ingest.engine_process``), with the shipped settings but the live clock
(``watermark=wall``: the fleet's fixes carry the wall-clock time) and no event mirror
to MQTT (workers have none). The publisher is ``benchmarks.end_to_end``'s: one MQTT
connection, QoS 1, one ping per message, each vehicle numbering its fixes (``seq``),
each fix stamped with the wall-clock time it is due (``ts``) and written within 5 ms of
it; some trip vehicles drive speeding and off-route episodes. Before publishing, a probe
ping per partition is stored, so every pipeline is up and warm. Printed per
configuration:

- offered pings/s (what the publisher wrote; the broker acknowledged it all unless
  said) and end-to-end stored pings/s: stored / (publishing time + time from the end of
  publishing until the last ping is stored); loss = acknowledged by the broker minus
  stored, with the (vehicle, seq) not stored, if any; for the workers, the JetStream
  messages (envelopes) the gateway made and the messages left in the stream at the end;
- ping -> commit, ``pings.received_at - pings.ts``, over every ping, and ping -> event,
  ``events.inserted_at - events.ts``, over the ping-driven events (all but
  ``signal_lost``, whose ts is an instant the engine's clock passed, not a fix). Both
  columns are ``DEFAULT now()``: the start of the transaction that committed the batch
  (not when a worker took the message). A batch is processed before that transaction
  begins, so the figure covers broker, gateway, JetStream, batching and the engine, and
  leaves out the write itself (its rows are visible at the commit, one transaction
  later). One clock: fixes, wall time and PostgreSQL's ``now()`` are this machine's.
  Events are counted from fixes 5 s past the engine's reorder allowance (the threshold
  ``reorder_allowance_s``, 30 s) after the first fix: a vehicle's first fix waits for the
  allowance (nothing is known before it), and so do its next ones until it is committed;
  after publishing, the run waits one allowance more, for events that a gap held back.
  The single-node engine flushes a batch every ``batch_max_ms`` (50 ms), each worker
  partition every ``worker_batch_max_ms`` (500 ms), as shipped;
- CPU seconds (/proc) of each process from the start of publishing until the last ping
  is stored: the engine, or the gateway and each worker; Mosquitto, nats-server,
  PostgreSQL and the publisher. PostgreSQL is the backends connected to the scratch
  database (the engines' connections, autovacuum; sampled every 0.5 s, so one that came
  and went between two samples is missed); in brackets the server's background
  processes (WAL writer, checkpointer, ...), which work for every database on the server,
  other users' too. CPU per stored ping per worker
  (µs/ping) is what more machines carry: a worker's CPU over the pings it committed,
  each stored ping being the worker's that owned its partition when the ping was
  committed (``partition_owners`` claims, sampled every 0.5 s, against
  ``received_at``). The processes share 2 cores here, so the stored rate cannot grow with
  workers on this machine: the per-ping costs say what each more machine would add.

Failover (the last configuration): the killed worker's partitions are those
``partition_owners`` gives it at the kill. Printed: (a) from the kill to the new owners'
claims (``partition_owners.claimed_at`` of each partition's first claim after it); (b)
how long the killed worker's vehicles went unmatched: per partition, from the kill (and
from the claim) to the first commit of its pings after the kill — ``pings.received_at``
of the first transaction that stored one of them: only the new owner may commit them,
with their match results, so before it no fix of those vehicles was matched
(``vehicle_state.updated_at`` keeps only the latest batch, and the events are too sparse
for this) — and the oldest fix that waited (the largest ``received_at - ts``); ping ->
commit of fixes due in the 20 s after the kill, of those vehicles and of every other
(the new owners' own partitions; and theirs due in the 10 s before the kill); (c)
pings due at or after the kill: published, stored, lost. The machine is shared:
the load average is printed before and after each configuration.

    .venv/bin/python -m benchmarks.workers --rate 1500 --seconds 45

Figures are printed, never asserted; other work on the machine makes them noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nats
import psycopg

from benchmarks.end_to_end import (
    BROKER_CONFIG,
    Fleet,
    PublishReport,
    StoredCounter,
    cpu_s,
    create_trips,
    pct,
    start_publisher,
)
from benchmarks.ingest_rate import scratch_database
from compliance.config import Thresholds
from ingest.jetstream import Layout
from ingest.partitions import partition_of
from ingest.worker import assignment, key_of
from routewatch.services import PrivateMosquitto, PrivateNats
from routewatch.settings import get_settings
from simulator.mqttwire import WirePublisher
from tests.ingest.engine_process import READY, EngineProcess, wait_until

VICTIM = "w2"
WORKER_READY = r"compliance kernels ready"
SAMPLE_S = 0.5
#: the engine's reorder allowance: a threshold, not a setting (docs/interfaces.md)
ALLOWANCE_S = Thresholds().reorder_allowance_s
STEADY_AFTER_S = ALLOWANCE_S + 5.0
#: ping -> commit after the kill is compared over fixes due this long after it
AFTER_KILL_S = 20.0
#: ping -> commit p99 is also printed per this many seconds of fix time
TIMELINE_S = 5.0
#: CPU that is not the ingest path's: the load generator, and the PostgreSQL server's
#: background processes (shared with every other database on the server)
NOT_PATH = ("publisher", "postgres background")


@dataclass(frozen=True, slots=True)
class Setup:
    """What every configuration shares."""

    args: argparse.Namespace
    nats_url: str
    nats_pid: int | None
    logs: Path | None
    tmp: Path


class Sampler(threading.Thread):
    """Every ``SAMPLE_S``: the CPU seconds of the named processes, of the scratch
    database's backends and of the server's background processes (the highest seen: a
    process killed meanwhile keeps its last sample), and the claims in
    ``partition_owners``."""

    def __init__(self, url: str, pids: dict[str, int | None], partitions: int) -> None:
        super().__init__(name="sampler", daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.pids = pids
        self.partitions = partitions
        self.cpu: dict[str, float] = {}
        self.backends: dict[int, float] = {}
        self.background: set[int] = set()  # of those, the server's own (no database)
        #: (partition, epoch) -> (owner, claimed_at in epoch seconds)
        self.claims: dict[tuple[int, int], tuple[str, float]] = {}
        self._base: dict[str, float] = {}
        self._base_backends: dict[int, float] = {}
        self._exclude: set[int] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()

    def sample(self) -> None:
        with self._lock:
            for name, pid in self.pids.items():
                self.cpu[name] = max(self.cpu.get(name, 0.0), cpu_s(pid))
            for pid, background in self.conn.execute(
                "SELECT pid, datname IS NULL FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND (datname = current_database() OR datname IS NULL)"
            ).fetchall():
                self.backends[pid] = max(self.backends.get(pid, 0.0), cpu_s(pid))
                if background:
                    self.background.add(pid)
            for p, epoch, owner, claimed in self.conn.execute(
                "SELECT partition, epoch, owner, extract(epoch FROM claimed_at)::float8 "
                "FROM partition_owners WHERE partitions = %s",
                (self.partitions,),
            ).fetchall():
                self.claims[(int(p), int(epoch))] = (str(owner), float(claimed))

    def begin(self, exclude: set[int]) -> None:
        """Open the window; ``exclude``: our own connections' backends."""
        self._exclude = exclude
        self.sample()
        self._base = dict(self.cpu)
        self._base_backends = dict(self.backends)
        self.start()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_S):
            with contextlib.suppress(psycopg.Error):
                self.sample()

    def end(self) -> dict[str, float]:
        """Close the window: CPU seconds in it per process, ``postgres`` (the database's
        backends) and ``postgres background``."""
        self._done.set()
        self.join()
        self.sample()
        self.conn.close()
        out = {name: self.cpu[name] - self._base.get(name, 0.0) for name in self.pids}
        used = {
            pid: cpu - self._base_backends.get(pid, 0.0)
            for pid, cpu in self.backends.items()
            if pid not in self._exclude
        }
        out["postgres"] = sum(v for pid, v in used.items() if pid not in self.background)
        out["postgres background"] = sum(v for pid, v in used.items() if pid in self.background)
        return out

    def claims_of(self, partition: int) -> list[tuple[float, str]]:
        """(claimed_at, owner) of every claim of ``partition`` seen, in order."""
        return sorted((at, who) for (p, _), (who, at) in self.claims.items() if p == partition)


@dataclass(slots=True)
class Failover:
    kill_s: float  # wall time of the kill
    into_s: float  # ... after the first fix was due
    partitions: list[int]
    vehicles: int = 0
    claim_s: list[float] = field(default_factory=list)  # kill -> claim, per partition
    new_owners: set[str] = field(default_factory=set)
    unclaimed: int = 0
    first_commit_s: list[float] = field(default_factory=list)  # kill -> first commit
    claim_to_commit_s: list[float] = field(default_factory=list)
    oldest_wait_s: float = 0.0
    commit_before_ms: list[float] = field(default_factory=list)  # others, before the kill
    commit_victims_ms: list[float] = field(default_factory=list)  # fixes due after the kill
    commit_others_ms: list[float] = field(default_factory=list)
    published_after: int = 0
    stored_after: int = 0


@dataclass(slots=True)
class Result:
    name: str
    workers: int
    report: PublishReport
    load: tuple[float, float]
    took_s: float = 0.0
    drain_s: float = 0.0
    stored: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)  # (vehicle, seq)
    unexpected: int = 0
    commit_ms: list[float] = field(default_factory=list)  # received_at - ts
    commit_p99_by_s: list[float] = field(default_factory=list)  # per TIMELINE_S of fixes
    events_ms: list[float] = field(default_factory=list)  # steady state
    events_total: int = 0
    events_victims_ms: list[float] = field(default_factory=list)  # fixes after the kill
    events_others_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    pings_by: dict[str, int] = field(default_factory=dict)
    envelopes: int | None = None
    stream_left: int | None = None
    log_lines: dict[str, tuple[int, int]] = field(default_factory=dict)  # warnings, errors
    first_errors: list[str] = field(default_factory=list)
    failover: Failover | None = None

    @property
    def sustained(self) -> float:
        span = self.report.wall_s + self.drain_s
        return self.stored / span if span > 0 else 0.0

    @property
    def engines(self) -> list[str]:
        return ["engine"] if self.workers == 0 else [f"w{i}" for i in range(1, self.workers + 1)]

    def per_ping_us(self, names: list[str]) -> float:
        """CPU µs of ``names`` per stored ping (each engine's: per ping it committed)."""
        cpu = sum(self.cpu.get(n, 0.0) for n in names)
        pings = sum(self.pings_by.get(n, 0) for n in names) if names == self.engines else 0
        return cpu * 1e6 / max(pings or self.stored, 1)

    @property
    def path_cpu_s(self) -> float:
        return sum(v for k, v in self.cpu.items() if k not in NOT_PATH)


def probe_vehicles(prefix: str, partitions: int) -> list[str]:
    """One vehicle per partition (the single-node engine gets the same ones)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        found.setdefault(partition_of(f"{prefix}probe{n}", partitions), f"{prefix}probe{n}")
        n += 1
    return sorted(found.values())


def warm_up(
    port: int, db: psycopg.Connection, vehicles: list[str], procs: list[EngineProcess]
) -> None:
    """A probe ping per vehicle every 0.5 s until each has one stored: every pipeline
    is subscribed, owns its partition and has committed."""
    pub = WirePublisher("127.0.0.1", port, f"probe-{uuid.uuid4().hex[:6]}", qos=1)
    try:
        deadline = time.monotonic() + 120
        while True:
            row = db.execute(
                "SELECT count(DISTINCT vehicle_id) FROM pings WHERE vehicle_id = ANY(%s)",
                (vehicles,),
            ).fetchone()
            if row and row[0] == len(vehicles):
                return
            if time.monotonic() > deadline or not all(p.alive for p in procs):
                raise SystemExit("the probe pings were not stored; see the processes' logs")
            body = f'{{"ts":{int(time.time() * 1000)},"lat":-6.3,"lon":106.7}}'
            pub.publish_many((f"fleet/{v}/ping", body) for v in vehicles)
            time.sleep(0.5)
    finally:
        pub.close()


def owners(db: psycopg.Connection, partitions: int) -> dict[int, str]:
    rows = db.execute(
        "SELECT partition, owner FROM partition_owners WHERE partitions = %s", (partitions,)
    ).fetchall()
    return {int(p): str(o) for p, o in rows}


def first_fix_ms(db: psycopg.Connection, vehicle_id: str) -> int | None:
    row = db.execute(
        "SELECT (extract(epoch FROM min(ts)) * 1000)::bigint FROM pings WHERE vehicle_id = %s",
        (vehicle_id,),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def each(action: Callable[[EngineProcess], None], procs: list[EngineProcess]) -> None:
    """``EngineProcess.start`` or ``.stop`` on every process at once (the workers
    compile their kernels together, and each stop waits for a drain)."""
    with ThreadPoolExecutor(len(procs)) as pool:
        list(pool.map(action, procs))


async def stream_state(nats_url: str, prefix: str) -> tuple[int, int]:
    """(messages ever stored, messages left) of the prefix's ping stream."""
    nc = await nats.connect(nats_url)
    try:
        state = (await nc.jetstream().stream_info(Layout(prefix).stream)).state
        return int(state.last_seq), int(state.messages)
    finally:
        await nc.close()


def run_config(setup: Setup, workers: int, kill: bool) -> Result:
    """One configuration: ``workers`` 0 is the single-node engine."""
    args = setup.args
    started = time.monotonic()
    prefix = f"b{uuid.uuid4().hex[:5]}-"
    nats_prefix = f"bw{uuid.uuid4().hex[:8]}"
    fleet = Fleet(prefix, args.vehicles, args.trip_vehicles, args.fault_vehicles, 0, 1)
    load0 = os.getloadavg()[0]
    name, url = scratch_database(args.database_url)
    with contextlib.ExitStack() as stack:
        stack.callback(drop_database, args.database_url, name)
        broker = stack.enter_context(
            PrivateMosquitto(setup.tmp / f"mqtt-{nats_prefix}", extra_config=BROKER_CONFIG)
        )
        db = stack.enter_context(psycopg.connect(url, autocommit=True))
        asyncio.run(create_trips(url, fleet, int(time.time() * 1000)))
        settings = {
            "watermark": "wall",
            "checkpoint_interval_s": str(args.checkpoint_interval_s),
            "nats_url": setup.nats_url,
            "nats_prefix": nats_prefix,
            "nats_partitions": str(args.partitions),
            "mqtt_client_id": f"rw-{nats_prefix}",
        }
        procs: dict[str, EngineProcess] = {}
        if workers == 0:
            command: tuple[str, ...] = ("serve", "--no-api")
            procs["engine"] = EngineProcess(url, broker.url, command, READY, **settings)
        else:
            procs["gateway"] = EngineProcess(url, broker.url, ("gateway",), READY, **settings)
            for i in range(1, workers + 1):
                command = ("worker", "--id", f"w{i}")
                procs[f"w{i}"] = EngineProcess(url, broker.url, command, WORKER_READY, **settings)
        stack.callback(stop_all, procs, setup.logs, nats_prefix)
        each(EngineProcess.start, list(procs.values()))
        if workers:
            want = assignment(args.partitions, [key_of(f"w{i}") for i in range(1, workers + 1)])
            wait_until(lambda: owners(db, args.partitions) == want, 90, "the workers' shares")
        warm_up(broker.port, db, probe_vehicles(prefix, args.partitions), list(procs.values()))

        pids = {n: p.proc.pid if p.proc else None for n, p in procs.items()}
        pids["broker"] = broker.pid
        if workers:
            pids["nats-server"] = setup.nats_pid
        sampler = Sampler(url, pids, args.partitions)
        counter = StoredCounter(url)
        sampler.begin({counter.pid or 0, db.info.backend_pid})
        proc, pipe = start_publisher(broker.port, fleet, args.rate, args.seconds)
        failover = kill_mid_run(args, db, fleet, procs, sampler) if kill else None
        report: PublishReport = pipe.recv()
        publish_end = time.time()
        publisher_cpu = cpu_s(proc.pid)  # before it is reaped
        proc.join()
        result = Result(procs_name(workers), workers, report, (load0, 0.0), failover=failover)
        # Counting is a full scan: only after publishing, twice a second, until complete
        # (or nothing more arrives for 15 s: the rest is lost).
        stall_at, last = time.monotonic(), -1
        while (stored := counter.count(prefix + "v")) < report.pings:
            if stored != last:
                stall_at, last = time.monotonic(), stored
            elif time.monotonic() - stall_at > 15:
                break
            time.sleep(0.5)
        result.drain_s = time.time() - publish_end
        result.cpu = sampler.end()
        result.cpu["publisher"] = publisher_cpu
        counter.close()
        # events that a gap held back come one allowance after their fix
        time.sleep(max(0.0, publish_end + ALLOWANCE_S + 3.0 - time.time()))
        if workers:
            state = asyncio.run(stream_state(setup.nats_url, nats_prefix))
            result.envelopes, result.stream_left = state
        analyse(db, fleet, args, sampler, result)
        result.load = (load0, os.getloadavg()[0])
        stack.close()  # stops the processes (keeping their logs), drops the database
    result.log_lines, result.first_errors = log_issues(procs)
    result.took_s = time.monotonic() - started
    return result


def procs_name(workers: int) -> str:
    if workers == 0:
        return "single node (routewatch serve --no-api)"
    return f"gateway + {workers} worker{'s' if workers > 1 else ''}"


def kill_mid_run(
    args: argparse.Namespace,
    db: psycopg.Connection,
    fleet: Fleet,
    procs: dict[str, EngineProcess],
    sampler: Sampler,
) -> Failover:
    """SIGKILL ``VICTIM`` ``--kill-at`` of the way through publishing, timed from the
    first fix (read back from the database)."""
    wait_until(lambda: first_fix_ms(db, fleet.vid(0)) is not None, 60, "publishing")
    first_s = (first_fix_ms(db, fleet.vid(0)) or 0) / 1000
    time.sleep(max(0.0, first_s + args.kill_at * args.seconds - time.time()))
    lost = sorted(p for p, w in owners(db, args.partitions).items() if w == VICTIM)
    sampler.sample()  # its CPU until now
    kill_s = time.time()
    procs[VICTIM].kill()
    return Failover(kill_s, kill_s - first_s, lost)


def analyse(
    db: psycopg.Connection,
    fleet: Fleet,
    args: argparse.Namespace,
    sampler: Sampler,
    result: Result,
) -> None:
    """Loss, latencies, pings per engine and the failover figures, from the database."""
    rows = [
        (str(vid), int(seq), int(ts), float(received))
        for vid, seq, ts, received in db.execute(
            "SELECT vehicle_id, seq, (extract(epoch FROM ts) * 1000)::bigint, "
            "extract(epoch FROM received_at)::float8 FROM pings WHERE vehicle_id LIKE %s",
            (fleet.prefix + "v%",),
        ).fetchall()
    ]
    index = {fleet.vid(v): v for v in range(fleet.vehicles)}
    stored = {(index[vid], seq) for vid, seq, _, _ in rows}
    expected = {(k % fleet.vehicles, k // fleet.vehicles) for k in range(result.report.pings)}
    result.stored = len(stored & expected)
    result.unexpected = len(stored - expected)
    result.missing = sorted(expected - stored)
    result.commit_ms = [(received - ts / 1000) * 1000 for _, _, ts, received in rows]
    # fix k of the run is due at base + int(k / rate * 1000) ms (benchmarks.end_to_end)
    base_ms = min(
        ts - int((seq * fleet.vehicles + index[vid]) / args.rate * 1000) for vid, seq, ts, _ in rows
    )
    slices: dict[int, list[float]] = {}
    for (_, _, ts, _), ms in zip(rows, result.commit_ms, strict=True):
        slices.setdefault(int((ts - base_ms) / 1000 / TIMELINE_S), []).append(ms)
    result.commit_p99_by_s = [pct(slices[k], 0.99) for k in sorted(slices)]
    part = {vid: partition_of(vid, args.partitions) for vid in index}
    claims = {p: sampler.claims_of(p) for p in range(args.partitions)}
    for vid, _, _, received in rows:
        if result.workers == 0:
            owner: str | None = "engine"
        else:  # the last claim of the partition before the commit
            owner = next((w for at, w in reversed(claims[part[vid]]) if at <= received), None)
        if owner is not None:
            result.pings_by[owner] = result.pings_by.get(owner, 0) + 1
    fo = result.failover
    victims: set[str] = set()
    if fo is not None:
        victims = {vid for vid, p in part.items() if p in fo.partitions}
        failover_figures(fo, rows, victims, part, claims, result, fleet, args, base_ms)
    events = db.execute(
        "SELECT vehicle_id, extract(epoch FROM ts)::float8, "
        "extract(epoch FROM inserted_at)::float8 "
        "FROM events WHERE vehicle_id LIKE %s AND type <> 'signal_lost'",
        (fleet.prefix + "v%",),
    ).fetchall()
    result.events_total = len(events)
    for vid, ts, inserted in events:
        if ts < base_ms / 1000 + STEADY_AFTER_S:
            continue
        ms = (inserted - ts) * 1000
        result.events_ms.append(ms)
        if fo is not None and vid not in victims:
            result.events_others_ms.append(ms)
        elif fo is not None and ts >= fo.kill_s:
            result.events_victims_ms.append(ms)


def failover_figures(
    fo: Failover,
    rows: list[tuple[str, int, int, float]],
    victims: set[str],
    part: dict[str, int],
    claims: dict[int, list[tuple[float, str]]],
    result: Result,
    fleet: Fleet,
    args: argparse.Namespace,
    base_ms: int,
) -> None:
    fo.vehicles = len(victims)
    first_after: dict[int, float] = {}
    for vid, _, ts, received in rows:
        p = part[vid]
        if received > fo.kill_s and p in fo.partitions:
            first_after[p] = min(first_after.get(p, received), received)
        wait_ms = (received - ts / 1000) * 1000
        if fo.kill_s <= ts / 1000 < fo.kill_s + AFTER_KILL_S:
            (fo.commit_victims_ms if vid in victims else fo.commit_others_ms).append(wait_ms)
        elif fo.kill_s - AFTER_KILL_S / 2 <= ts / 1000 < fo.kill_s and vid not in victims:
            fo.commit_before_ms.append(wait_ms)
    for p in fo.partitions:
        claim = next(((at, w) for at, w in claims[p] if at > fo.kill_s), None)
        if claim is None:
            fo.unclaimed += 1
            continue
        fo.claim_s.append(claim[0] - fo.kill_s)
        fo.new_owners.add(claim[1])
        if p in first_after:
            fo.first_commit_s.append(first_after[p] - fo.kill_s)
            fo.claim_to_commit_s.append(first_after[p] - claim[0])
    fo.oldest_wait_s = max(
        (r - ts / 1000 for vid, _, ts, r in rows if vid in victims and ts / 1000 >= fo.kill_s - 2),
        default=0.0,
    )
    after = {
        (k % fleet.vehicles, k // fleet.vehicles)
        for k in range(result.report.pings)
        if base_ms + int(k / args.rate * 1000) >= fo.kill_s * 1000
    }
    fo.published_after = len(after)
    fo.stored_after = len(after - set(result.missing))


def stop_all(procs: dict[str, EngineProcess], logs: Path | None, tag: str) -> None:
    # not the killed one: EngineProcess.kill kept its log, and stop() would add it again
    each(EngineProcess.stop, [p for p in procs.values() if p.alive])
    if logs is not None:
        for name, proc in procs.items():
            (logs / f"{tag}-{name}.log").write_text("".join(proc.log))


def log_issues(procs: dict[str, EngineProcess]) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """(warnings, errors) per process, and the first errors' lines."""
    counts: dict[str, tuple[int, int]] = {}
    errors: list[str] = []
    for name, proc in procs.items():
        levels = [line[13:20] for line in proc.log]  # "HH:MM:SS.mmm LEVEL   logger: ..."
        counts[name] = (levels.count("WARNING"), levels.count("ERROR  "))
        bad = [line for line in proc.log if line[13:20] == "ERROR  "]
        errors += [f"{name}: {line.strip()[:240]}" for line in bad[:2]]
    return counts, errors


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def spread(values: list[float], unit: str = "ms") -> str:
    """n, p50, p99 and max of milliseconds; min, median and max of seconds."""
    if not values:
        return "n=0"
    if unit == "s":
        return " ".join(
            f"{k} {v:.1f} s"
            for k, v in (
                ("min", min(values)),
                ("median", statistics.median(values)),
                ("max", max(values)),
            )
        )
    return (
        f"n={len(values)} p50={statistics.median(values):,.0f} ms "
        f"p99={pct(values, 0.99):,.0f} ms max={max(values):,.0f} ms"
    )


def print_result(r: Result, args: argparse.Namespace) -> None:
    rep = r.report
    print(f"\n== {r.name} (took {r.took_s:.0f} s)")
    print(f"  load average (1 min) before {r.load[0]:.2f}, after {r.load[1]:.2f}")
    print(
        f"  offered {args.rate:,.0f} pings/s: published {rep.pings:,} pings over "
        f"{rep.wall_s:.1f} s ({rep.pings / max(rep.wall_s, 1e-9):,.0f}/s, at worst "
        f"{rep.late_s:.2f} s behind schedule)"
        + (f"; broker acknowledged {rep.acked:,} [{rep.error}]" if rep.error else "")
    )
    missing = ", ".join(f"{v}/{s}" for v, s in r.missing[:8])
    print(
        f"  stored {r.stored:,} (loss {rep.acked - r.stored:,}"
        + (f"; not stored (vehicle/seq): {missing}" if r.missing else "")
        + (f"; {r.unexpected} unexpected" if r.unexpected else "")
        + f"), last stored {r.drain_s:.1f} s after publishing ended: end to end "
        f"{r.sustained:,.0f} pings/s"
    )
    if r.envelopes is not None:
        print(
            f"  JetStream: {r.envelopes:,} envelopes ({r.stored / max(r.envelopes, 1):.1f} "
            f"pings each), {r.stream_left} left in the stream"
        )
    print(f"  ping -> commit (pings.received_at - ts): {spread(r.commit_ms)}")
    print(
        f"    p99 per {TIMELINE_S:.0f} s of fixes, s: "
        + " ".join(f"{ms / 1000:.1f}" for ms in r.commit_p99_by_s)
    )
    print(
        f"  ping -> event (events.inserted_at - ts, ping-driven, fixes {STEADY_AFTER_S:.0f} s "
        f"after the first or later): {spread(r.events_ms)}; {r.events_total} events in all"
    )
    if r.failover is not None:
        print(
            f"    the killed worker's vehicles, fixes after the kill: {spread(r.events_victims_ms)}"
        )
        print(f"    every other vehicle:                              {spread(r.events_others_ms)}")
    background, publisher = r.cpu["postgres background"], r.cpu["publisher"]
    print(
        "  CPU seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in r.cpu.items() if k not in NOT_PATH)
        + f" (background {background:.1f}), publisher {publisher:.1f}"
    )
    per = [
        f"{w} {r.per_ping_us([w]):,.0f} µs ({r.pings_by.get(w, 0):,} pings, "
        f"{r.cpu.get(w, 0.0):.1f} s)"
        for w in r.engines
    ]
    print("  CPU per stored ping: " + "; ".join(per))
    others = [k for k in r.cpu if k not in r.engines and k not in NOT_PATH]
    print(
        "    "
        + ", ".join(f"{k} {r.per_ping_us([k]):,.0f} µs" for k in others)
        + f"; whole path {r.path_cpu_s * 1e6 / max(r.stored, 1):,.0f} µs"
    )
    if r.failover is not None:
        print_failover(r.failover)
    issues = {k: v for k, v in r.log_lines.items() if v != (0, 0)}
    if issues:
        print(
            "  log lines (warnings/errors): "
            + ", ".join(f"{k} {w}/{e}" for k, (w, e) in issues.items())
        )
        for line in r.first_errors:
            print(f"    {line}")


def print_failover(fo: Failover) -> None:
    print(
        f"  failover: kill -9 {VICTIM} {fo.into_s:.1f} s into publishing; it owned "
        f"{len(fo.partitions)} partitions ({fo.vehicles} vehicles)"
    )
    taken = ", ".join(sorted(fo.new_owners)) or "nobody"
    print(
        f"    (a) kill -> new owner's claim (partition_owners.claimed_at), per partition: "
        f"{spread(fo.claim_s, 's')}; taken by {taken}"
        + (f"; {fo.unclaimed} partitions not claimed again" if fo.unclaimed else "")
    )
    print(
        "    (b) kill -> first commit of its vehicles' pings (pings.received_at), per "
        f"partition: {spread(fo.first_commit_s, 's')}"
    )
    print(f"        claim -> that first commit: {spread(fo.claim_to_commit_s, 's')}")
    print(f"        the oldest of its vehicles' fixes waited {fo.oldest_wait_s:.1f} s")
    print(f"        ping -> commit, fixes due in the {AFTER_KILL_S:.0f} s after the kill:")
    print(f"          its vehicles        {spread(fo.commit_victims_ms)}")
    print(f"          every other vehicle {spread(fo.commit_others_ms)}")
    print(
        f"          every other vehicle, fixes due in the {AFTER_KILL_S / 2:.0f} s before the "
        f"kill: {spread(fo.commit_before_ms)}"
    )
    print(
        f"    (c) pings due at or after the kill: published {fo.published_after:,}, stored "
        f"{fo.stored_after:,}, lost {fo.published_after - fo.stored_after:,}"
    )


def print_summary(results: list[Result]) -> None:
    print("\nsummary (one fleet, one offered rate; µs per stored ping):")
    print(
        f"  {'configuration':<40} {'stored/s':>9} {'loss':>5} {'commit p50':>11} "
        f"{'event p50':>10} {'event p99':>10} {'per engine':>11} {'whole path':>11}"
    )
    for r in results:
        p50 = statistics.median(r.events_ms) if r.events_ms else float("nan")
        p99 = pct(r.events_ms, 0.99) if r.events_ms else float("nan")
        commit = statistics.median(r.commit_ms) if r.commit_ms else float("nan")
        path = r.path_cpu_s * 1e6 / max(r.stored, 1)
        print(
            f"  {r.name:<40} {r.sustained:>9,.0f} {r.report.acked - r.stored:>5} "
            f"{commit:>8,.0f} ms {p50:>7,.0f} ms {p99:>7,.0f} ms "
            f"{r.per_ping_us(r.engines):>8,.0f} µs {path:>8,.0f} µs"
        )
    print(
        "  (per engine: the engine's CPU, or the workers' together, over the pings they "
        "committed; whole path: every process but the publisher and PostgreSQL's background)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=1500.0, help="offered pings/s")
    ap.add_argument("--seconds", type=float, default=45.0, help="publishing per configuration")
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--trip-vehicles", type=int, default=200, help="vehicles driving a trip")
    ap.add_argument("--fault-vehicles", type=int, default=200, help="trip vehicles with faults")
    ap.add_argument("--partitions", type=int, default=32, help="ROUTEWATCH_NATS_PARTITIONS")
    ap.add_argument("--workers", default="1,2,3", help="worker counts after the baseline")
    ap.add_argument(
        "--kill-at", type=float, default=0.4, help="kill -9 a worker this far into publishing"
    )
    ap.add_argument("--checkpoint-interval-s", type=int, default=30, help="as shipped: 30")
    ap.add_argument("--nats-url", help="a NATS with JetStream to use (default: a private one)")
    ap.add_argument("--log-dir", help="keep the processes' logs here (default: discarded)")
    ap.add_argument("--database-url", default=get_settings().database_url, help="the server")
    args = ap.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    started = time.monotonic()
    print(
        f"{os.cpu_count()} cores; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
        " (1, 5, 15 min) at the start"
    )
    print(
        f"fleet: {args.vehicles} vehicles, {args.trip_vehicles} on trips, "
        f"{min(args.fault_vehicles, args.trip_vehicles)} of them with speeding/off-route "
        f"episodes; offered {args.rate:,.0f} pings/s for {args.seconds:.0f} s per "
        f"configuration; {args.partitions} partitions"
    )
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rw-workers-")))
        if args.nats_url:
            nats_url, nats_pid = args.nats_url, None
        else:
            server = stack.enter_context(PrivateNats(tmp / "nats"))
            nats_url, nats_pid = server.url, server.pid
        logs = Path(args.log_dir) if args.log_dir else None
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
        setup = Setup(args, nats_url, nats_pid, logs, tmp)
        for workers in [0, *counts]:
            kill = workers >= 2 and workers == max(counts)
            result = run_config(setup, workers, kill)
            print_result(result, args)
            results.append(result)
    print_summary(results)
    print(
        f"\nrun took {time.monotonic() - started:.0f} s; load average at the end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
