"""``routewatch demo``: the whole system on one machine.

Services (reused or private) → database + migrations → an OMS token for the simulator and
a supervisor token for people → ``routewatch serve`` (engine + API) and
``routewatch simulate`` as child processes → the URLs, once the API answers. Ctrl-C (or
SIGTERM, or ``--duration``) stops the simulator, then serve, then private services.

The console stays readable: the children's logs go to ``<state dir>/demo.log`` (its path
is printed with the URLs), and every ``SUMMARY_EVERY_S`` one line sums up the fleet.
A reused broker (one routewatch did not start) is probed for how many messages it keeps
for the engine while it is away, with a warning when that would lose pings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from routewatch.broker import BROKER_QUEUE_CONFIG
from routewatch.commands.serve import stop_process
from routewatch.fleetwatch import FleetWatch
from routewatch.logging import setup_logging
from routewatch.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_READY_TIMEOUT_S = 90.0
_POLL_S = 0.5
SUMMARY_EVERY_S = 10.0
LOG_NAME = "demo.log"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="database, broker, engine, API and a simulated fleet")
    p.add_argument("--vehicles", type=int, default=200, help="simulated vehicles (default 200)")
    p.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="simulated time runs this many times faster than real time",
    )
    p.add_argument("--seed", type=int, default=1, help="makes the simulated fleet reproducible")
    p.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)"
    )
    p.add_argument(
        "--faults",
        help="passed to `routewatch simulate --faults`, e.g. 'none' or 'speeding=0.2,detour' "
        "(default: the simulator's mix of every kind)",
    )
    p.add_argument(
        "--port", type=int, help="API port (default: ROUTEWATCH_API_PORT, or a free one if taken)"
    )
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Tokens:
    oms: str
    supervisor: str


def _create_tokens(database_url: str) -> Tokens:
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    from store import tokens

    async def create() -> Tokens:
        async with await AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            _, oms = await tokens.create_token(conn, ["oms"], "demo simulator")
            _, supervisor = await tokens.create_token(conn, ["supervisor"], "demo dashboard")
        return Tokens(oms, supervisor)

    return asyncio.run(create())


def _api_port(requested: int | None, configured: int, host: str) -> int:
    from routewatch.services import free_port, tcp_open

    if requested:
        return requested
    if not tcp_open(host, configured, 0.3):
        return configured
    port = free_port(host)
    log.warning("port %d is taken; the API will use %d", configured, port)
    return port


def _wait_for_api(base_url: str, serve: subprocess.Popen[bytes], stop: threading.Event) -> bool:
    """True once ``/healthz`` answers (any status: it reports dependencies, 503 included)."""
    deadline = time.monotonic() + API_READY_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        if serve.poll() is not None:
            return False
        try:
            httpx.get(f"{base_url}/healthz", timeout=2.0)
            return True
        except httpx.TransportError:
            stop.wait(_POLL_S)
    return False


def _dashboard_url(base_url: str) -> str:
    """Where the dashboard is served (the first of its known paths that answers 200)."""
    for path in ("/dashboard", "/", "/static/"):
        try:
            if httpx.get(base_url + path, timeout=2.0).status_code == 200:
                return base_url + path
        except httpx.TransportError:
            break
    return "(this build serves no dashboard page)"


def _example_tracking_number(database_url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT tracking_number FROM orders ORDER BY created_at LIMIT 1"
            ).fetchone()
    except psycopg.Error as exc:
        log.debug("no example tracking number yet: %s", exc)
        return None
    return str(row[0]) if row else None


def _spawn(args: list[str], env: dict[str, str], log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    """``routewatch ARGS`` as a child in its own process group (a terminal Ctrl-C reaches
    only us; we stop children in order) that also dies if we are killed; its output goes
    to ``log_file``."""
    from routewatch.services import die_with_parent

    return subprocess.Popen(
        [sys.executable, "-m", "routewatch.cli", *args],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def _check_reused_broker(settings: Settings, url: str) -> None:
    """Warn when a broker that routewatch did not configure drops what it queues for an
    absent engine (``routewatch.broker_probe``)."""
    from routewatch.broker_probe import probe_offline_queue
    from routewatch.mqtt_endpoint import MqttEndpoint
    from routewatch.services import redact

    try:
        probe = probe_offline_queue(MqttEndpoint.from_settings(settings, url))
    except (OSError, ValueError, RuntimeError) as exc:  # ConnectionError included
        log.warning(
            "reusing the MQTT broker at %s, which routewatch did not configure, and could not "
            "check how many messages it keeps for the engine (%s): make sure its "
            "configuration has `%s`, or pings are dropped while the engine is away",
            redact(url),
            exc,
            BROKER_QUEUE_CONFIG,
        )
        return
    if probe.drops:
        log.warning("%s", probe.advice(redact(url)))
    else:
        log.info(
            "the reused MQTT broker keeps what the engine misses",
            extra={"url": redact(url), "probe_messages": probe.sent},
        )


def run(args: argparse.Namespace) -> int:
    from routewatch.services import ServiceError, ensure_database, ensure_services
    from store.migrate import MigrationError, migrate

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        # Until the children start, Ctrl-C/SIGTERM just unwind (stopping private services).
        with ensure_services(settings) as svc:
            database_url = ensure_database(svc.database_url)
            applied = migrate(database_url)
            log.info("database ready", extra={"migrations_applied": len(applied)})
            tokens = _create_tokens(database_url)
            if "mosquitto" not in svc.started:
                _check_reused_broker(settings, svc.mqtt_url)
            port = _api_port(args.port, settings.api_port, settings.api_host)
            stop = threading.Event()
            previous = {
                sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                log_path = (settings.state_dir / LOG_NAME).resolve()
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("ab") as log_file:
                    children = Children(args, settings.api_host, port, log_file, log_path)
                    return children.run(database_url, svc.mqtt_url, tokens, stop)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    except (ServiceError, MigrationError) as exc:
        print(f"routewatch demo: {exc}", file=sys.stderr)
        return 1


@dataclass
class Children:
    """``serve`` and ``simulate``, writing to the demo's log file."""

    args: argparse.Namespace
    host: str
    port: int
    log_file: IO[bytes]
    log_path: Path

    def run(self, database_url: str, mqtt_url: str, tokens: Tokens, stop: threading.Event) -> int:
        args = self.args
        base_url = f"http://{self.host}:{self.port}"
        env = {
            **os.environ,
            "ROUTEWATCH_DATABASE_URL": database_url,
            "ROUTEWATCH_MQTT_URL": mqtt_url,
            "ROUTEWATCH_API_HOST": self.host,
            "ROUTEWATCH_API_PORT": str(self.port),
        }
        if args.speedup > 1:
            # An accelerated fleet's fix times are not wall-clock times (the simulator
            # keeps them behind the wall clock), so the engine must run on event time or
            # every vehicle would look silent to the signal-lost detector.
            env["ROUTEWATCH_WATERMARK"] = "event"
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            serve = _spawn(["serve"], env, self.log_file)
            children.append(("serve", serve))
            if not _wait_for_api(base_url, serve, stop):
                if stop.is_set():
                    return 130
                log.error("the API did not come up; see %s", self.log_path)
                return 1
            simulate_args = [
                "simulate",
                "--vehicles",
                str(args.vehicles),
                "--speedup",
                str(args.speedup),
                "--seed",
                str(args.seed),
                "--api-url",
                base_url,
                "--no-progress",
            ]
            if args.faults:
                simulate_args += ["--faults", args.faults]
            if args.duration:  # simulate counts simulated seconds
                simulate_args += ["--duration", str(args.duration * args.speedup)]
            # The token goes through the environment, not argv (visible to every `ps`).
            sim_env = {**env, "ROUTEWATCH_SIMULATOR_TOKEN": tokens.oms}
            children.append(("simulate", _spawn(simulate_args, sim_env, self.log_file)))
            _print_urls(base_url, tokens, database_url, mqtt_url, self.log_path)
            watch = FleetWatch(database_url, base_url)
            return _supervise(children, watch, args.duration, stop, self.log_path)
        finally:
            # Reverse order: the fleet stops publishing before the engine drains. The
            # simulator treats SIGINT (KeyboardInterrupt) as "finish up and report".
            for name, proc in reversed(children):
                sig = signal.SIGINT if name == "simulate" else signal.SIGTERM
                code = stop_process(proc, name, sig=sig)
                log.info("stopped %s", name, extra={"returncode": code})


def _print_urls(
    base_url: str, tokens: Tokens, database_url: str, mqtt_url: str, log_path: Path
) -> None:
    dashboard = _dashboard_url(base_url)
    print(
        "\nroutewatch demo is running (Ctrl-C stops everything)\n"
        f"  dashboard        {dashboard}\n"
        f"  API docs         {base_url}/docs\n"
        f"  health           {base_url}/healthz\n"
        f"  metrics          {base_url}/metrics\n"
        f"  vehicles (API)   curl -H 'Authorization: Bearer {tokens.supervisor}' "
        f"{base_url}/v1/vehicles\n"
        f"  supervisor token {tokens.supervisor}\n"
        f"  database         {database_url}\n"
        f"  MQTT broker      {mqtt_url}\n"
        f"  logs             {log_path} (engine, API, simulator)\n",
        flush=True,
    )


def _supervise(
    children: list[tuple[str, subprocess.Popen[bytes]]],
    watch: FleetWatch,
    duration_s: float | None,
    stop: threading.Event,
    log_path: Path,
) -> int:
    """Wait for Ctrl-C/SIGTERM, the duration, or a child's exit; print an example
    tracking URL once the simulator has created orders, and a fleet summary line every
    ``SUMMARY_EVERY_S``. The exit code says why we stopped."""
    deadline = time.monotonic() + duration_s if duration_s else None
    tracking_shown = False
    next_summary = time.monotonic() + SUMMARY_EVERY_S
    while not stop.wait(_POLL_S * 2):
        if deadline is not None and time.monotonic() >= deadline:
            log.info("demo duration elapsed")
            return 0
        for name, proc in children:
            if proc.poll() is not None:
                if name == "simulate" and proc.returncode == 0 and deadline is not None:
                    continue  # the fleet finished its --duration; keep serving until ours
                log.error("%s exited; its last lines are in %s", name, log_path,
                          extra={"returncode": proc.returncode})  # fmt: skip
                return 1
        if not tracking_shown:
            number = _example_tracking_number(watch.database_url)
            if number:
                print(
                    f"  tracking example {watch.base_url}/v1/track/{number}\n"
                    f"  its page         {watch.base_url}/track/{number}\n",
                    flush=True,
                )
                tracking_shown = True
        if time.monotonic() >= next_summary:
            next_summary += SUMMARY_EVERY_S
            print(watch.line(), flush=True)
    return 130
