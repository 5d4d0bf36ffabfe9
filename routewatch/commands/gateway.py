"""``routewatch gateway``: the trackers' MQTT pings into the partitioned NATS JetStream
stream the engine workers read (``ingest.gateway``). SIGINT/SIGTERM stop it; what it had
not forwarded stays un-acknowledged at the broker, which delivers it again."""

from __future__ import annotations

import argparse

from routewatch.commands.worker import metrics_option, run_until_signal
from routewatch.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gateway", help="forward trackers' MQTT pings into the partitioned NATS JetStream stream"
    )
    metrics_option(g)
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingest.gateway import run_gateway

    settings = get_settings()
    return run_until_signal(settings, args.metrics_port, lambda stop: run_gateway(settings, stop))
