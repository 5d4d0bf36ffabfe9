"""``routewatch migrate``: apply database migrations."""

from __future__ import annotations

import argparse

from routewatch.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--database-url", help="default: ROUTEWATCH_DATABASE_URL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from store.migrate import migrate

    url = args.database_url or get_settings().database_url
    applied = migrate(url)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0
