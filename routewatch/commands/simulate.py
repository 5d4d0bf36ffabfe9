"""``routewatch simulate``: a simulated fleet, offline to files (``--out``) or live over MQTT."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from routewatch.mqtt_endpoint import MqttEndpoint
from routewatch.settings import get_settings

if TYPE_CHECKING:
    from simulator.scenario import ScenarioConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="drive a simulated fleet (MQTT, or files with --out)")
    p.add_argument(
        "--out", type=Path, help="write plans.json, pings.csv, expected.jsonl here; publish nothing"
    )
    p.add_argument("--vehicles", type=int, default=None, help="default 50 with --out, else 10000")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--interval-s", type=int, default=5, help="seconds between fixes per vehicle (1-30)"
    )
    p.add_argument("--rate", type=float, help="live: target aggregate publish rate, messages/s")
    p.add_argument(
        "--duration", type=float, help="simulated seconds (default: until every trip ends)"
    )
    p.add_argument("--sigma-m", type=float, default=8.0, help="GPS noise, metres (1-sigma)")
    p.add_argument("--outlier-rate", type=float, default=0.02, help="multipath outliers per fix")
    p.add_argument(
        "--gap-rate",
        type=float,
        default=0.002,
        help="coverage gaps started per fix (buffered, then sent as a JSON array)",
    )
    p.add_argument("--gap-s", type=float, default=20.0, help="longest coverage gap, seconds")
    p.add_argument("--duplicate-rate", type=float, default=0.01, help="fixes delivered twice")
    p.add_argument("--reorder-rate", type=float, default=0.01, help="fixes delivered late")
    p.add_argument(
        "--malformed-rate", type=float, default=0.0, help="live: malformed payloads per message"
    )
    p.add_argument(
        "--faults", help="e.g. 'speeding=0.2,detour,late' or 'none' (default: every kind at 0.1)"
    )
    p.add_argument(
        "--start",
        help="planned start of the first trip, RFC 3339 (default 2026-11-22T08:00:00+07:00 "
        "offline; live: now, plus time to dispatch the trips)",
    )
    p.add_argument("--stops", type=int, default=6, help="delivery stops per trip")
    p.add_argument(
        "--route-pool",
        type=int,
        help="distinct planned routes (default: one per vehicle offline, 200 live)",
    )
    p.add_argument(
        "--prefix",
        default=None,
        help="vehicle id prefix (default SIM offline, a run id live); the same prefix and "
        "seed again re-plan that fleet's trips in place instead of adding new ones",
    )
    # live only
    p.add_argument(
        "--speedup", type=float, default=1.0, help="live: simulated seconds per wall second"
    )
    p.add_argument(
        "--mqtt-url", help="mqtt://host:1883 or mqtts://host:8883; default: ROUTEWATCH_MQTT_URL"
    )
    p.add_argument(
        "--mqtt-ca-file",
        type=Path,
        help="mqtts: CA certificate(s) to check the broker with (default: "
        "ROUTEWATCH_MQTT_TLS_CA_FILE, else the system store)",
    )
    p.add_argument(
        "--mqtt-cert-file",
        type=Path,
        help="mqtts: client certificate (ROUTEWATCH_MQTT_TLS_CERT_FILE)",
    )
    p.add_argument(
        "--mqtt-key-file", type=Path, help="mqtts: client key (ROUTEWATCH_MQTT_TLS_KEY_FILE)"
    )
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument("--connections", type=int, default=4, help="live: MQTT client connections")
    p.add_argument(
        "--client",
        choices=("wire", "paho"),
        default="wire",
        help="live: batched MQTT writer (default) or paho-mqtt",
    )
    p.add_argument("--api-url", default=None, help="live: API base URL for POST /v1/trips")
    p.add_argument(
        "--token", default=None, help="live: bearer token (env ROUTEWATCH_SIMULATOR_TOKEN)"
    )
    p.add_argument(
        "--no-trips", action="store_true", help="live: do not create the trips through the API"
    )
    p.add_argument(
        "--trip-concurrency",
        type=int,
        default=16,
        help="live: POST /v1/trips requests in flight (connection pool size)",
    )
    p.add_argument("--no-progress", action="store_true", help="live: no progress bar")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace, live: bool) -> ScenarioConfig:
    from compliance.plan import parse_time_ms
    from simulator.faults import parse_faults
    from simulator.gps import GpsConfig
    from simulator.scenario import DEFAULT_START_MS, ScenarioConfig

    if not 1 <= args.interval_s <= 30:
        raise SystemExit("--interval-s must be between 1 and 30")
    vehicles = args.vehicles if args.vehicles is not None else (10_000 if live else 50)
    return ScenarioConfig(
        vehicles=vehicles,
        seed=args.seed,
        interval_s=args.interval_s,
        duration_s=args.duration,
        start_ms=parse_time_ms(args.start) if args.start else DEFAULT_START_MS,
        stops_per_trip=args.stops,
        faults=parse_faults(args.faults),
        gps=GpsConfig(
            sigma_m=args.sigma_m,
            outlier_rate=args.outlier_rate,
            gap_rate=args.gap_rate,
            gap_s=args.gap_s,
            duplicate_rate=args.duplicate_rate,
            reorder_rate=args.reorder_rate,
            malformed_rate=args.malformed_rate if live else 0.0,
        ),
        route_pool=args.route_pool if args.route_pool else (200 if live else None),
        id_prefix=args.prefix or "SIM",
    )


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        from simulator.offline import write

        counts = write(_config(args, live=False), args.out)
        print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) + f" -> {args.out}")
        return 0
    import time

    from simulator.publisher import LiveOptions, run_live

    settings = get_settings()
    cfg = _config(args, live=True)
    if args.prefix is None:
        cfg.id_prefix = f"SIM{int(time.time()) % 100000}"
    if not args.start:
        cfg.start_ms = int(time.time() * 1000)
    if args.trip_concurrency < 1:
        raise SystemExit("--trip-concurrency must be at least 1")
    cfg.stagger_s = 60.0  # a live fleet is on the road together, not trickling out
    opts = LiveOptions(
        mqtt_url=args.mqtt_url or settings.mqtt_url,
        mqtt_ca_file=args.mqtt_ca_file or settings.mqtt_tls_ca_file,
        mqtt_cert_file=args.mqtt_cert_file or settings.mqtt_tls_cert_file,
        mqtt_key_file=args.mqtt_key_file or settings.mqtt_tls_key_file,
        qos=args.qos,
        speedup=args.speedup,
        rate=args.rate,
        connections=args.connections,
        api_url=None
        if args.no_trips
        else (args.api_url or f"http://{settings.api_host}:{settings.api_port}"),
        token=args.token or os.environ.get("ROUTEWATCH_SIMULATOR_TOKEN"),
        progress=not args.no_progress,
        client=args.client,
        trip_concurrency=args.trip_concurrency,
        wall_clock=not args.start,
    )
    try:  # a bad URL or unreadable TLS files: before any trip is created
        MqttEndpoint.parse(
            opts.mqtt_url,
            ca_file=opts.mqtt_ca_file,
            cert_file=opts.mqtt_cert_file,
            key_file=opts.mqtt_key_file,
        ).ssl_context()
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    report = run_live(cfg, opts)
    print(report.summary())
    return 0
