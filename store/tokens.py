"""API bearer tokens: created once, stored only as sha256 hashes, revocable.

A token is 256 random bits (``rw_`` + URL-safe base64), so a plain sha256 is a safe
one-way hash — no salt or slow KDF is needed for secrets with that much entropy.

A token with the ``driver`` role may be *bound* to one driver (``driver_id``): it then
submits proofs of delivery only for that driver's trips (``api.routes.orders``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from compliance.text import check_line

# Every function here expects a connection with ``row_factory=dict_row`` (as the pool in
# ``store.db`` hands out).

ROLES = ("oms", "supervisor", "driver")
_PREFIX = "rw_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id, name and roles; for a token bound to a driver,
    that driver and whether the driver is still active."""

    token_id: int
    name: str | None
    roles: frozenset[str]
    driver_id: str | None = None
    driver_active: bool = True


class TokenRefused(ValueError):
    """The token cannot be created as asked (bad roles, name or driver binding)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    conn: AsyncConnection[dict[str, Any]],
    roles: list[str],
    name: str | None = None,
    driver_id: str | None = None,
) -> tuple[int, str]:
    """Store a new token's hash; return ``(token_id, token)``. The token is not kept.

    ``driver_id`` binds the token to that driver: it needs the ``driver`` role and a
    registered, active driver (:class:`TokenRefused` otherwise)."""
    bad = sorted(set(roles) - set(ROLES))
    if bad or not roles:
        raise TokenRefused(f"roles must be among {', '.join(ROLES)}; got {roles}")
    if name is not None:
        check_line(name)  # ValueError: NUL, control characters, unpaired surrogates
    if driver_id is not None:
        if "driver" not in roles:
            raise TokenRefused("only a token with the driver role can be bound to a driver")
        cur = await conn.execute("SELECT active FROM drivers WHERE driver_id = %s", (driver_id,))
        found = await cur.fetchone()
        if found is None:
            raise TokenRefused(
                f"no driver {driver_id!r}: register it first (POST /v1/drivers, or a trip "
                "plan naming it)"
            )
        if not found["active"]:
            raise TokenRefused(f"driver {driver_id!r} is deactivated")
    token = _PREFIX + secrets.token_urlsafe(32)
    cur = await conn.execute(
        "INSERT INTO api_tokens (name, roles, token_hash, driver_id) VALUES (%s, %s, %s, %s) "
        "RETURNING token_id",
        (name, sorted(set(roles)), hash_token(token), driver_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["token_id"]), token


async def authenticate(conn: AsyncConnection[dict[str, Any]], token: str) -> Principal | None:
    """The principal for a live token, or None for unknown/revoked ones."""
    if not token.startswith(_PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    cur = await conn.execute(
        "SELECT t.token_id, t.name, t.roles, t.token_hash, t.driver_id, "
        "coalesce(d.active, true) AS driver_active "
        "FROM api_tokens t LEFT JOIN drivers d ON d.driver_id = t.driver_id "
        "WHERE t.token_hash = %s AND t.revoked_at IS NULL",
        (digest,),
    )
    row = await cur.fetchone()
    # The index lookup already matched; the constant-time compare keeps the final
    # decision independent of where two hex strings first differ.
    if row is None or not hmac.compare_digest(str(row["token_hash"]), digest):
        return None
    return Principal(
        int(row["token_id"]),
        row["name"],
        frozenset(row["roles"]),
        row["driver_id"],
        bool(row["driver_active"]),
    )


async def list_tokens(conn: AsyncConnection[dict[str, Any]]) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT token_id, name, roles, driver_id, created_at, revoked_at FROM api_tokens "
        "ORDER BY token_id"
    )
    return list(await cur.fetchall())


async def revoke_token(conn: AsyncConnection[dict[str, Any]], token_id: int) -> datetime | None:
    """Revoke; return when it was revoked (now, or earlier), None if there is no such id."""
    cur = await conn.execute(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE token_id = %s "
        "RETURNING revoked_at",
        (token_id,),
    )
    row = await cur.fetchone()
    return None if row is None else row["revoked_at"]
