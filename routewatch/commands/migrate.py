"""``routewatch migrate``: apply database migrations (creating the database if needed)."""

from __future__ import annotations

import argparse
import sys

from routewatch.logging import setup_logging
from routewatch.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="apply database migrations",
        description="Create the database if it does not exist, then apply the pending "
        "migrations. TimescaleDB is used when the database has it or the server preloads it.",
    )
    p.add_argument("--database-url", help="default: ROUTEWATCH_DATABASE_URL")
    p.add_argument(
        "--plain",
        action="store_true",
        help="keep a database not yet on TimescaleDB on plain PostgreSQL",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import psycopg

    from routewatch.services import ensure_database, redact
    from store.migrate import MigrationError, migrate

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    url = args.database_url or settings.database_url
    try:
        applied = migrate(ensure_database(url), timescaledb=not args.plain)
    except MigrationError as exc:
        print(f"routewatch migrate: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        print(
            f"routewatch migrate: cannot reach PostgreSQL at {redact(url)} ({reason}); "
            "start it, or set ROUTEWATCH_DATABASE_URL / --database-url to a server that runs",
            file=sys.stderr,
        )
        return 1
    except psycopg.Error as exc:  # e.g. no right to create the database
        print(f"routewatch migrate: {exc}".strip(), file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0
