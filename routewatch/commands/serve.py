"""``routewatch serve``: the engine and the API against the configured services.

Two processes: the engine (MQTT → compliance → database) runs here, the API runs in a
child process (``routewatch serve --no-engine``), so the engine's CPU-bound batches never
stall HTTP requests on a small machine. SIGINT/SIGTERM stop both: the engine drains its
current batch, the API child is asked to stop and waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from routewatch.logging import setup_logging
from routewatch.mqtt_endpoint import MqttEndpoint
from routewatch.settings import Settings, get_settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 20.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the engine and the API against configured services")
    p.add_argument("--host", help="API listen address (default: ROUTEWATCH_API_HOST)")
    p.add_argument("--port", type=int, help="API port (default: ROUTEWATCH_API_PORT)")
    p.add_argument("--no-api", action="store_true", help="run the engine only")
    p.add_argument("--no-engine", action="store_true", help="run the API only (in this process)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    overrides = {k: v for k, v in (("api_host", args.host), ("api_port", args.port)) if v}
    settings = settings.model_copy(update=overrides)
    setup_logging(settings.log_level, settings.log_json)
    if args.no_api and args.no_engine:
        log.error("--no-api and --no-engine together leave nothing to run")
        return 2
    if args.no_engine:
        return serve_api(settings)
    try:  # a bad broker URL or unreadable TLS files: say so now, not at every reconnect
        MqttEndpoint.from_settings(settings).ssl_context()
    except ValueError as exc:
        log.error("%s (check ROUTEWATCH_MQTT_URL and ROUTEWATCH_MQTT_TLS_*)", exc)
        return 2
    if args.no_api:
        return asyncio.run(_serve_engine(settings, with_api=False))
    with shared_metrics_dir():
        return asyncio.run(_serve_engine(settings, with_api=True))


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[None]:
    """Point prometheus_client's multiprocess mode at a fresh folder for this run (unless
    ``PROMETHEUS_MULTIPROC_DIR`` is already set), so the API child's ``/metrics`` also
    shows the engine's series. Must happen before prometheus_client is imported."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client already imported; /metrics will lack engine series")
    path = tempfile.mkdtemp(prefix="routewatch-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(path, ignore_errors=True)


def serve_api(settings: Settings) -> int:
    """Run the API under uvicorn in this process until SIGINT/SIGTERM."""
    import uvicorn

    from api.main import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # keep routewatch.logging's handlers
        workers=1,
    )
    log.info("API listening", extra={"url": f"http://{settings.api_host}:{settings.api_port}"})
    uvicorn.Server(config).run()
    return 0


def start_api_process(settings: Settings) -> subprocess.Popen[bytes]:
    """``routewatch serve --no-engine`` as a child that dies with us."""
    from routewatch.services import die_with_parent

    cmd = [
        sys.executable,
        "-m",
        "routewatch.cli",
        "serve",
        "--no-engine",
        "--host",
        settings.api_host,
        "--port",
        str(settings.api_port),
    ]
    # Own process group: a terminal Ctrl-C reaches only us, and we stop the child in order.
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent)


def stop_process(
    proc: subprocess.Popen[bytes],
    name: str,
    timeout_s: float = STOP_TIMEOUT_S,
    sig: signal.Signals = signal.SIGTERM,
) -> int:
    """Send ``sig`` to ``proc``, wait up to ``timeout_s``, then SIGKILL; return its exit
    code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", name, timeout_s)
            proc.kill()
            proc.wait()
    return int(proc.returncode)


async def _watch_child(proc: subprocess.Popen[bytes], stop: asyncio.Event) -> None:
    """Set ``stop`` if the API child exits on its own (a crash must not go unnoticed)."""
    exited = asyncio.ensure_future(asyncio.to_thread(proc.wait))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not stop.is_set():
        log.error("API process exited unexpectedly", extra={"returncode": proc.returncode})
        stop.set()


async def _serve_engine(settings: Settings, *, with_api: bool) -> int:
    from ingest.service import run_engine

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    api = start_api_process(settings) if with_api else None
    api_crashed = False
    try:
        async with asyncio.TaskGroup() as tg:
            if api is not None:
                tg.create_task(_watch_child(api, stop), name="watch-api")
            await run_engine(settings, stop)
            stop.set()  # the engine returned by itself: stop the watcher too
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)
        if api is not None:
            api_crashed = api.poll() is not None
            code = await asyncio.to_thread(stop_process, api, "API process")
            log.info("API process stopped", extra={"returncode": code})
    log.info("serve stopped")
    return 1 if api_crashed else 0
