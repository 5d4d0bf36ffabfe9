"""Bearer-token authentication and role checks.

``require_role("oms", "supervisor")`` is a dependency that admits a token carrying any
of those roles: 401 when the token is missing, unknown or revoked, 403 when it is valid
but lacks the role. The checker keeps its roles as an attribute so tests can walk the
app's routes and prove that every non-public endpoint is guarded.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import ConnDep
from store.tokens import ROLES, Principal, authenticate

_bearer = HTTPBearer(auto_error=False, description="routewatch API token")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def current_principal(
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token", _CHALLENGE)
    # ConnDep is cached per request, so the endpoint reuses this same connection.
    principal = await authenticate(conn, credentials.credentials)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked token", _CHALLENGE)
    return principal


class RoleChecker:
    """Dependency admitting principals that hold at least one of ``roles``."""

    def __init__(self, *roles: str) -> None:
        unknown = set(roles) - set(ROLES)
        if not roles or unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        self.roles = frozenset(roles)

    async def __call__(
        self, request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> Principal:
        return authorize(request, principal, self.roles)


def authorize(request: Request, principal: Principal, roles: frozenset[str]) -> Principal:
    """403 unless ``principal`` holds one of ``roles``; records who is calling."""
    if not principal.roles & roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this endpoint needs the role {' or '.join(sorted(roles))}",
        )
    request.state.principal = principal
    return principal


def require_role(*roles: str) -> RoleChecker:
    return RoleChecker(*roles)
