"""A 10,000-vehicle fleet end to end: ``routewatch serve`` + ``routewatch simulate``.

One live run, the way an operator would do it: a fresh database, an OMS token,
``routewatch serve`` (engine + API) as a child, then ``routewatch simulate`` as a child,
which dispatches every trip through ``POST /v1/trips`` and then publishes the fleet over
MQTT, paced at the target rate. ``mosquitto_sub`` (the C client) counts what the broker
delivered — the independent baseline for the publisher's own count — and ``/metrics``
plus the database say what the engine made of it: how soon it had every trip loaded,
how many messages it received, pings stored, trips turned active.

    .venv/bin/python -m routewatch.services -- \\
        .venv/bin/python -m benchmarks.fleet_10k --vehicles 10000 --rate 5000 --duration 600

``--duration`` is simulated seconds (with ``--rate`` the speedup follows from it: 10,000
vehicles at one fix per 5 s is 2,000 msg/s in real time). ``--private-mqtt`` uses a
mosquitto of its own instead of the configured broker (on a shared machine, a fleet this
size would otherwise land in every other engine subscribed to ``fleet/+/ping``).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import sql

from benchmarks.publisher_rate import SubCounter
from routewatch.commands.serve import stop_process
from routewatch.services import (
    PrivateMosquitto,
    die_with_parent,
    ensure_database,
    ensure_services,
    free_port,
    with_dbname,
)
from routewatch.settings import Settings
from store.migrate import migrate

_SAMPLE = re.compile(r"^(routewatch_[a-z_]+?)(?:\{[^}]*\})? ([0-9.e+-]+)$", re.M)


def metrics(base_url: str) -> dict[str, float]:
    """``/metrics`` as {name: value}: counters summed over labels and processes,
    ``routewatch_active_trips`` the largest of the processes' values."""
    out: dict[str, float] = {}
    text = httpx.get(f"{base_url}/metrics", timeout=5.0).text
    for name, value in _SAMPLE.findall(text):
        v = float(value)
        if name == "routewatch_active_trips":
            out[name] = max(out.get(name, 0.0), v)
        elif not name.endswith(("_created", "_bucket")):
            out[name] = out.get(name, 0.0) + v
    return out


#: the engine counts as stalled after this long without receiving a message
DRAIN_STALL_S = 20.0


@dataclass
class Sampler:
    """Polls ``/metrics`` once a second: when the engine first had ``trips`` loaded, and
    when it last received a message."""

    base_url: str
    trips: int
    loaded_at: float | None = None
    last: dict[str, float] = field(default_factory=dict)
    last_change: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                m = metrics(self.base_url)
            except httpx.HTTPError:
                continue
            now = time.monotonic()
            if self.loaded_at is None and m.get("routewatch_active_trips", 0) >= self.trips:
                self.loaded_at = now
            key = "routewatch_mqtt_messages_total"
            if m.get(key) != self.last.get(key):
                self.last_change = now
            self.last = m

    @contextlib.contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self.run, name="metrics-sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(5)


def _routewatch(args: list[str], env: dict[str, str], **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-m", "routewatch.cli", *args],
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,
        **kw,
    )


def _wait_for_api(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"routewatch serve exited ({proc.returncode})")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{base_url}/healthz", timeout=2.0)
            return
        time.sleep(0.5)
    raise SystemExit("the API did not come up")


def _summary(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


class StderrWatch:
    """Passes a child's stderr through and notes when its ``trips: ...`` line (the end
    of the dispatch) appeared."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.dispatched_at: float | None = None
        self._thread = threading.Thread(target=self._read, name="simulate-stderr", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if self.dispatched_at is None and line.lstrip(b"\r").startswith(b"trips: "):
                self.dispatched_at = time.monotonic()
            sys.stderr.buffer.write(line)
            sys.stderr.flush()

    def join(self) -> None:
        self._thread.join(5)


def _db_figures(database_url: str, prefix: str) -> dict[str, object]:
    like = f"{prefix}-%"
    with psycopg.connect(database_url) as conn:
        statuses: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM trips WHERE vehicle_id LIKE %s GROUP BY 1", (like,)
            ).fetchall()
        )
        orders = conn.execute(
            "SELECT count(*) FROM orders o JOIN trips t USING (trip_id) WHERE t.vehicle_id LIKE %s",
            (like,),
        ).fetchone()
        pings = conn.execute(
            "SELECT count(*), count(DISTINCT vehicle_id) FROM pings WHERE vehicle_id LIKE %s",
            (like,),
        ).fetchone()
        rejected = conn.execute("SELECT count(*) FROM rejected_pings").fetchone()
    assert orders is not None and pings is not None and rejected is not None
    return {
        "trip_status": statuses,
        "orders": orders[0],
        "pings": pings[0],
        "vehicles_with_pings": pings[1],
        "rejected": rejected[0],
    }


def run(args: argparse.Namespace, database_url: str, mqtt_url: str) -> None:
    settings = Settings()
    port = free_port(settings.api_host)
    base_url = f"http://{settings.api_host}:{port}"
    prefix = f"FLEET{uuid.uuid4().hex[:5].upper()}"
    env = {
        **os.environ,
        "ROUTEWATCH_DATABASE_URL": database_url,
        "ROUTEWATCH_MQTT_URL": mqtt_url,
        "ROUTEWATCH_API_PORT": str(port),
        # its own client id: two engines with one id on a shared broker take turns
        "ROUTEWATCH_MQTT_CLIENT_ID": f"routewatch-{prefix.lower()}",
        "ROUTEWATCH_LOG_LEVEL": "WARNING",
    }
    speedup = args.speedup
    if args.rate and speedup == 1.0:
        speedup = max(1.0, args.rate * args.interval_s / args.vehicles)
    if speedup > 1.0:
        env["ROUTEWATCH_WATERMARK"] = "event"  # as `routewatch demo --speedup` does
    token = subprocess.run(
        [sys.executable, "-m", "routewatch.cli", "token", "create", "--role=oms", "--name=fleet"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log_path = Path(tempfile.gettempdir()) / f"routewatch-{prefix.lower()}-serve.log"
    print(f"routewatch serve logs to {log_path}", file=sys.stderr)
    serve_log = log_path.open("wb")
    serve = _routewatch(["serve"], env, stdout=serve_log, stderr=subprocess.STDOUT)
    sim: subprocess.Popen[bytes] | None = None
    broker = urlsplit(mqtt_url)
    try:
        _wait_for_api(base_url, serve)
        counter = SubCounter(broker.hostname or "127.0.0.1", broker.port or 1883, prefix, 0)
        sim_args = ["simulate", "--vehicles", str(args.vehicles), "--seed", str(args.seed)]
        sim_args += ["--prefix", prefix, "--interval-s", str(args.interval_s)]
        sim_args += ["--duration", str(args.duration), "--speedup", str(args.speedup)]
        sim_args += ["--api-url", base_url, "--mqtt-url", mqtt_url, "--client", args.client]
        sim_args += [] if args.rate is None else ["--rate", str(args.rate)]
        sim_args += [] if args.progress else ["--no-progress"]
        sim_env = {**env, "ROUTEWATCH_SIMULATOR_TOKEN": token}
        with Sampler(base_url, args.vehicles).running() as sampler:
            t0 = time.monotonic()
            sim = _routewatch(sim_args, sim_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            watch = StderrWatch(sim)
            assert sim.stdout is not None
            out = sim.stdout.read()
            sim.wait()
            watch.join()
            sim_done = time.monotonic()
            if sim.returncode:
                raise SystemExit(f"routewatch simulate failed ({sim.returncode})")
            report = _summary(out.decode().strip().splitlines()[-1])
            # the engine drains what the broker still holds for it: all of it, unless it
            # stalls (a batch with a checkpoint takes seconds with 10,000 trips)
            published = int(report["messages"])
            while (
                sampler.last.get("routewatch_mqtt_messages_total", 0.0) < published
                and time.monotonic() - max(sampler.last_change, sim_done) < DRAIN_STALL_S
            ):
                time.sleep(0.5)
            drained = time.monotonic()
            engine = dict(sampler.last)
            times = Timeline(t0, watch.dispatched_at, sampler.loaded_at, sim_done, drained)
        counter.stop(settle_s=0.5)
    finally:
        if sim is not None and sim.poll() is None:
            stop_process(sim, "simulate", sig=signal.SIGINT)
        stop_process(serve, "serve")
        serve_log.close()
    db = _db_figures(database_url, prefix)
    _print(args, speedup, mqtt_url, report, engine, db, counter, times)


@dataclass(frozen=True)
class Timeline:
    """``time.monotonic()`` marks of one run."""

    started: float  # simulate started (it builds the scenario, then dispatches)
    dispatched: float | None  # simulate printed its trips summary
    loaded: float | None  # the engine first reported every trip loaded
    published: float  # simulate exited
    drained: float  # the engine stopped receiving


def _print(
    args: argparse.Namespace,
    speedup: float,
    mqtt_url: str,
    r: dict[str, str],
    engine: dict[str, float],
    db: dict[str, object],
    counter: SubCounter,
    times: Timeline,
) -> None:
    n = args.vehicles
    messages = int(r["messages"])
    span = (counter.last_s - counter.first_s) if counter.first_s is not None else 0.0
    trips_wall_s = float(r["trips_wall_s"])
    received = engine.get("routewatch_mqtt_messages_total", 0.0)
    target = args.rate or n / args.interval_s * speedup
    print(
        f"fleet: {n} vehicles, one fix per {args.interval_s} s, speedup {r['speedup']}, "
        f"target {target:,.0f} msg/s, {args.duration:g} simulated s, broker {mqtt_url}, "
        f"client {args.client} (2 shared cores, other work running: figures are noisy)"
    )
    print(
        f"dispatch (POST /v1/trips) : {r['trips_created']} created, {r['trips_replaced']} "
        f"replaced, {r['trips_conflicts']} conflicts, {r['trips_failed']} failed in "
        f"{trips_wall_s:.1f} s = {r['trips_per_s']} trips/s; DB: {db['orders']} orders"
    )
    if times.loaded is None:
        loaded = (
            f"engine never reported {n} loaded trips "
            f"(last seen {engine.get('routewatch_active_trips', 0):.0f})"
        )
    else:
        dispatched = times.dispatched or times.loaded
        loaded = (
            f"all {n} trips loaded {times.loaded - dispatched:+.1f} s after the last POST "
            f"answered (1 s sampling)"
        )
    print(f"engine picked up          : {loaded}; trips by status {db['trip_status']}")
    print(
        f"publisher                 : {messages:,} messages ({int(r['fixes']):,} fixes) in "
        f"{float(r['wall_s']):.1f} s = "
        f"{int(r['rate_msg_s']):,} msg/s; steady (>=95% of the peak vehicles on the road) "
        f"{int(r['steady_msg_s']):,} msg/s over {float(r['steady_wall_s']):.0f} s; "
        f"acked {int(r['acked']):,}"
        + (
            f"; {r['skipped_s']} simulated s run unpublished first (the dispatch outlasted "
            "the planned starts' lead)"
            if int(r.get("skipped_s", "0"))
            else ""
        )
    )
    print(
        f"broker -> mosquitto_sub   : {counter.count:,} received over {span:.1f} s = "
        f"{counter.count / span if span else 0:,.0f} msg/s "
        f"({counter.count / max(messages, 1):.2%} of published)"
    )
    print(
        f"engine                    : {received:,.0f} messages received "
        f"({received / max(messages, 1):.2%}), "
        f"{engine.get('routewatch_pings_stored_total', 0):,.0f} pings stored, "
        f"{engine.get('routewatch_pings_rejected_total', 0):,.0f} rejected, "
        f"{engine.get('routewatch_pings_late_total', 0):,.0f} late; DB: {db['pings']:,} pings "
        f"from {db['vehicles_with_pings']:,} vehicles, {db['rejected']:,} rejected; "
        f"drained {times.drained - times.published:.0f} s after the publisher stopped"
    )
    batches = engine.get("routewatch_batch_commit_seconds_count", 0.0)
    if batches:
        print(
            f"engine batches            : {batches:,.0f}, mean "
            f"{engine.get('routewatch_batch_size_pings_sum', 0) / batches:,.0f} pings and "
            f"{engine.get('routewatch_batch_commit_seconds_sum', 0) / batches * 1000:,.0f} ms each"
        )
    print(f"total wall time           : {times.drained - times.started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=300.0, help="simulated seconds")
    ap.add_argument("--speedup", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=None, help="target aggregate msg/s")
    ap.add_argument("--interval-s", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--client", choices=("wire", "paho"), default="wire")
    ap.add_argument("--private-mqtt", action="store_true", help="a mosquitto of our own")
    ap.add_argument("--keep-db", action="store_true", help="keep the scratch database")
    ap.add_argument("--progress", action="store_true", help="simulate's progress bars")
    args = ap.parse_args(argv)
    settings = Settings()
    with (
        tempfile.TemporaryDirectory(prefix="routewatch-fleet-") as tmp,
        ensure_services(settings) as svc,
        PrivateMosquitto(Path(tmp) / "mosquitto")
        if args.private_mqtt
        else contextlib.nullcontext() as private,
    ):
        mqtt_url = private.url if private is not None else svc.mqtt_url
        name = f"routewatch_fleet_{uuid.uuid4().hex[:8]}"
        database_url = ensure_database(svc.database_url, name)
        migrate(database_url)
        try:
            run(args, database_url, mqtt_url)
        finally:
            if not args.keep_db:
                with psycopg.connect(
                    with_dbname(svc.database_url, "postgres"), autocommit=True
                ) as conn:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
            else:
                print(f"database kept: {database_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
