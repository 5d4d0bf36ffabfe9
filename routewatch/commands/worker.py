"""``routewatch worker``: an engine worker on NATS JetStream (``ingest.worker``;
docs/architecture.md, "Several engine workers"). It stops on SIGINT/SIGTERM after
draining: it commits, acknowledges and checkpoints each partition and releases its
leases, so the others take over at once. ``run_until_signal`` also runs the gateway."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from routewatch.logging import setup_logging
from routewatch.settings import Settings, get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser(
        "worker", help="run an engine worker: a share of the ping partitions from NATS JetStream"
    )
    w.add_argument("--id", help="this worker's name (default: ROUTEWATCH_WORKER_ID, else host-pid)")
    metrics_option(w)
    w.set_defaults(func=run)


def metrics_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus /metrics on this port (default: none)",
    )


def run(args: argparse.Namespace) -> int:
    from ingest.worker import run_worker

    settings = get_settings()
    return run_until_signal(
        settings, args.metrics_port, lambda stop: run_worker(settings, stop, args.id)
    )


def run_until_signal(
    settings: Settings, metrics_port: int, main: Callable[[asyncio.Event], Awaitable[None]]
) -> int:
    from ingest.jetstream import NatsSetupError

    setup_logging(settings.log_level, settings.log_json)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.api_host)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(serve())
    except NatsSetupError as exc:
        log.error("%s", exc)
        return 2
    return 0
