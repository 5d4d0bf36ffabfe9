"""``routewatch token create|list|revoke``: manage API bearer tokens."""

from __future__ import annotations

import argparse
import asyncio
import sys

from compliance.text import check_line
from routewatch.settings import get_settings


def _token_name(value: str) -> str:
    """``--name``: one line of printable text (it is stored, and listed in columns).
    (argv cannot hold NUL; bytes that are not UTF-8 arrive as unpaired surrogates.)"""
    try:
        return check_line(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"token name {exc}") from None


def _driver_id(value: str) -> str:
    """``--driver``: a driver id as trip plans and the API spell them."""
    from compliance.plan import VEHICLE_ID_RE

    if not VEHICLE_ID_RE.fullmatch(value):
        raise argparse.ArgumentTypeError("a driver id is 1-64 characters of [A-Za-z0-9._-]")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="create, list or revoke API bearer tokens")
    p.add_argument("--database-url", help="default: ROUTEWATCH_DATABASE_URL")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = actions.add_parser("create", help="create a token and print it (shown only once)")
    c.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["oms", "supervisor", "driver"],
        help="may be given several times",
    )
    c.add_argument("--name", type=_token_name, help="who or what the token is for")
    c.add_argument(
        "--driver",
        metavar="DRIVER_ID",
        type=_driver_id,
        help="bind the token (role driver) to this registered driver: it may then submit "
        "proofs of delivery only for that driver's trips",
    )
    c.set_defaults(func=run)
    ls = actions.add_parser("list", help="list tokens (never the tokens themselves)")
    ls.set_defaults(func=run)
    r = actions.add_parser("revoke", help="revoke a token by id")
    r.add_argument("token_id", type=int)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from psycopg import OperationalError
    from psycopg.errors import UndefinedTable

    try:
        return asyncio.run(_run(args))
    except UndefinedTable:
        print(
            "the database has no api_tokens table yet: run `routewatch migrate` first",
            file=sys.stderr,
        )
        return 2
    except OperationalError as exc:
        print(f"cannot reach the database: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace) -> int:
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    from store import tokens

    url = args.database_url or get_settings().database_url
    async with await AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        if args.action == "create":
            try:
                token_id, token = await tokens.create_token(conn, args.role, args.name, args.driver)
            except tokens.TokenRefused as exc:
                print(f"routewatch token: {exc}", file=sys.stderr)
                return 2
            # The token alone on stdout, so `TOKEN=$(routewatch token create ...)` works.
            print(token)
            bound = f", bound to driver {args.driver}" if args.driver else ""
            print(
                f"token id {token_id}, roles {','.join(sorted(set(args.role)))}{bound}",
                file=sys.stderr,
            )
            return 0
        if args.action == "list":
            for row in await tokens.list_tokens(conn):
                state = (
                    f"revoked {row['revoked_at']:%Y-%m-%dT%H:%M:%SZ}"
                    if row["revoked_at"]
                    else "active"
                )
                driver = f"driver {row['driver_id']}" if row["driver_id"] else "-"
                print(
                    f"{row['token_id']}\t{','.join(row['roles'])}\t{row['name'] or '-'}\t"
                    f"{driver}\tcreated {row['created_at']:%Y-%m-%dT%H:%M:%SZ}\t{state}"
                )
            return 0
        revoked = await tokens.revoke_token(conn, args.token_id)
        if revoked is None:
            print(f"no token with id {args.token_id}")
            return 1
        print(f"token {args.token_id} revoked")
        return 0
