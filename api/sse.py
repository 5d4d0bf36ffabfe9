"""Server-Sent Events plumbing shared by the live streams (alerts, vehicles).

Browsers' ``EventSource`` cannot send an ``Authorization`` header, so the stream
endpoints — and only they — also accept the token as ``?access_token=``. It is checked
exactly like a bearer token, roles included. (Tokens in URLs can end up in access logs;
that is why no other endpoint accepts them.)
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import orjson
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection

from api.auth import authorize
from api.deps import PoolDep
from store.tokens import ROLES, Principal, authenticate

HEARTBEAT_S = 15.0
"""Seconds between comment lines on an idle stream; proxies commonly cut at 30-60 s."""

RETRY_MS = 3000
"""Reconnect delay suggested to EventSource clients, milliseconds."""

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx would otherwise buffer the stream and deliver it in lumps.
    "X-Accel-Buffering": "no",
}

_bearer = HTTPBearer(auto_error=False)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def format_event(data: Any, *, event: str | None = None, event_id: int | None = None) -> bytes:
    """One SSE message; ``data`` is JSON-encoded (on one line, so no ``data:`` splitting)."""
    parts = []
    if event_id is not None:
        parts.append(f"id: {event_id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    parts.append("data: ")
    return "".join(parts).encode() + orjson.dumps(data) + b"\n\n"


def comment(text: str = "heartbeat") -> bytes:
    return f": {text}\n\n".encode()


def retry_hint() -> bytes:
    return f"retry: {RETRY_MS}\n\n".encode()


class StreamRoleChecker:
    """Like ``api.auth.require_role`` but also admits ``?access_token=`` (streams only)."""

    def __init__(self, *roles: str) -> None:
        if not roles or set(roles) - set(ROLES):
            raise ValueError(f"unknown roles {roles}")
        self.roles = frozenset(roles)

    async def __call__(
        self,
        request: Request,
        pool: PoolDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        access_token: Annotated[
            str | None,
            Query(description="the API token, for EventSource clients that cannot set headers"),
        ] = None,
    ) -> Principal:
        token = credentials.credentials if credentials is not None else access_token
        if not token:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing token", _CHALLENGE)
        async with pool.connection() as conn:
            principal = await authenticate(cast("AsyncConnection[dict[str, Any]]", conn), token)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "invalid or revoked token", _CHALLENGE
            )
        return authorize(request, principal, self.roles)


def parse_last_event_id(header: str | None, query: int | None) -> int | None:
    """The stream id to resume after: the ``Last-Event-ID`` header wins over the query."""
    if header:
        try:
            return max(0, int(header.strip()))
        except ValueError as exc:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "Last-Event-ID must be an integer"
            ) from exc
    return query
