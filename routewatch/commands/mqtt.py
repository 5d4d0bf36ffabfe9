"""``routewatch mqtt auth``: write the Mosquitto password file, ACL and config snippet for
per-device credentials (see ``routewatch.mqtt_auth``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from routewatch.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    parent = sub.add_parser("mqtt", help="MQTT broker set-up (credentials and ACLs)")
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "auth",
        help="generate Mosquitto credentials and ACLs: devices publish only their own pings",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the broker files")
    p.add_argument(
        "--vehicle",
        action="append",
        default=[],
        metavar="ID",
        help="a device to issue credentials for (may repeat); added to the registry's",
    )
    p.add_argument(
        "--no-registry",
        action="store_true",
        help="do not read the active vehicles from the database (only --vehicle)",
    )
    p.add_argument("--database-url", help="default: ROUTEWATCH_DATABASE_URL")
    p.add_argument(
        "--reader",
        action="append",
        default=[],
        metavar="USER",
        help="an integrator user that may only read fleet/+/events (may repeat; must not "
        "look like a vehicle id, e.g. 'oms~events')",
    )
    p.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="USER",
        help="a user that may publish any vehicle's pings: an edge gateway relaying many "
        "trackers, or `routewatch simulate` (may repeat; e.g. 'sim~fleet')",
    )
    p.add_argument(
        "--rotate",
        nargs="*",
        metavar="USER",
        help="issue new passwords: for the named users, or for everyone when none is named",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="remove devices that are neither active in the registry nor given with --vehicle "
        "(and service users not given with --reader / --gateway)",
    )
    p.add_argument(
        "--listener",
        default="1883",
        help="the snippet's listener line: PORT or 'PORT ADDRESS' (default 1883); "
        "'none' leaves listeners to your own config",
    )
    p.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="the broker's certificate (chain, PEM): the snippet adds a TLS listener with it",
    )
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="the broker certificate's key")
    p.add_argument(
        "--tls-listener",
        default="8883",
        help="the TLS listener line: PORT or 'PORT ADDRESS' (default 8883)",
    )
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="FILE",
        help="require client certificates signed by this CA on the TLS listener",
    )
    p.add_argument(
        "--print",
        dest="print_issued",
        action="store_true",
        help="also print the credentials issued by this run (CSV) on stdout",
    )
    p.set_defaults(func=run)


def _registry(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT vehicle_id FROM vehicles WHERE active").fetchall()
    return [r[0] for r in rows]


def run(args: argparse.Namespace) -> int:
    import psycopg

    from routewatch.mqtt_auth import (
        ENGINE_USER,
        TlsListener,
        credentials_csv,
        write_broker_auth,
    )

    vehicles = list(args.vehicle)
    if not args.no_registry:
        try:
            vehicles += _registry(args.database_url or get_settings().database_url)
        except psycopg.Error as exc:
            print(f"cannot read the vehicle registry ({exc}); use --no-registry", file=sys.stderr)
            return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("--tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    tls = None
    if args.tls_cert is not None:
        for path in (args.tls_cert, args.tls_key, args.tls_client_ca):
            if path is not None and not path.is_file():
                print(f"{path}: no such file", file=sys.stderr)
                return 2
        tls = TlsListener(args.tls_cert, args.tls_key, args.tls_listener, args.tls_client_ca)
    rotate: list[str] | bool = [] if args.rotate is None else (args.rotate if args.rotate else True)
    try:
        result = write_broker_auth(
            args.out,
            vehicles,
            readers=args.reader,
            gateways=args.gateway,
            rotate=rotate,
            prune=args.prune,
            listener=None if args.listener == "none" else args.listener,
            tls=tls,
        )
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.print_issued and result.issued:
        sys.stdout.write(credentials_csv(result.issued))
    print(
        f"{result.users} users ({len(result.issued)} new or rotated passwords"
        + (f", removed {', '.join(result.removed)}" if result.removed else "")
        + f") in {result.directory}; credentials for provisioning in "
        f"{result.credentials_path} (mode 0600).\n"
        f"Engine: ROUTEWATCH_MQTT_URL={'mqtts' if tls else 'mqtt'}://{ENGINE_USER}:"
        "<its password>@HOST:PORT. "
        "Broker: include the snippet and reload mosquitto (SIGHUP).",
        file=sys.stderr,
    )
    return 0
