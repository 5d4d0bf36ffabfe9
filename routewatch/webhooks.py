"""OMS webhook dispatcher: drains the outbox (:mod:`store.outbox`) to ``webhook_url``.

Each row's stored body is POSTed as-is with ``X-Routewatch-Signature: sha256=<hex
HMAC-SHA256(body, webhook_secret)>`` and ``Idempotency-Key: <row uuid>``; the key is the
same on every retry, so a receiver that saw a request but whose answer was lost can
drop the repeat. Any 2xx marks the row delivered; anything else (connection refused,
timeout, non-2xx) retries with exponential backoff and full jitter, and after
``webhook_max_attempts`` the row is marked dead (kept, never deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from routewatch.settings import Settings
from store import outbox
from store.db import make_pool

log = logging.getLogger(__name__)

BATCH = 50
IDLE_POLL_S = 1.0


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay_s(attempts: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff after ``attempts`` failed tries (1-based), seconds."""
    cap_s = min(settings.webhook_backoff_max_s, settings.webhook_backoff_s * 2 ** (attempts - 1))
    return (rng or random).uniform(0.5 * cap_s, cap_s)


async def _send(
    client: httpx.AsyncClient, url: str, row: dict[str, Any], secret: str
) -> str | None:
    """POST one row; None on success, else why it failed."""
    body = row["body"].encode()
    headers = {
        "Content-Type": "application/json",
        "X-Routewatch-Signature": sign(body, secret),
        "Idempotency-Key": str(row["idempotency_key"]),
        "User-Agent": "routewatch-webhooks",
    }
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"


async def dispatch_once(
    pool: AsyncConnectionPool, client: httpx.AsyncClient, settings: Settings
) -> int:
    """Claim and send one batch of due rows; return how many were claimed."""
    url = settings.webhook_url
    if not url:
        return 0
    lease_s = settings.webhook_timeout_s * 2 + 5
    async with pool.connection() as conn:
        rows = await outbox.claim_due(conn, BATCH, lease_s)  # type: ignore[arg-type]
    failed_orders: set[str] = set()
    for row in rows:
        if row["order_id"] in failed_orders:
            # Keep one order's notifications in order: don't overtake a failed one.
            error: str | None = "an earlier notification of this order is pending"
        else:
            error = await _send(client, url, row, settings.webhook_secret)
        async with pool.connection() as conn:
            if error is None:
                await outbox.mark_delivered(conn, row["id"])  # type: ignore[arg-type]
                continue
            failed_orders.add(row["order_id"])
            give_up = row["attempts"] >= settings.webhook_max_attempts
            delay_s = None if give_up else retry_delay_s(row["attempts"], settings)
            await outbox.mark_failed(conn, row["id"], error, delay_s)  # type: ignore[arg-type]
        log.warning(
            "webhook %s for order %s failed (attempt %d%s): %s",
            row["id"],
            row["order_id"],
            row["attempts"],
            ", giving up" if give_up else "",
            error,
        )
    return len(rows)


async def run_dispatcher(
    settings: Settings, stop: asyncio.Event, pool: AsyncConnectionPool | None = None
) -> None:
    """Deliver outbox rows until ``stop`` is set (``routewatch serve`` runs this as a task).
    Uses ``pool`` if given, else opens a small one of its own."""
    own_pool = pool is None
    if pool is None:
        pool = make_pool(settings.database_url, max_size=2, name="routewatch-webhooks")
        await pool.open(wait=False)
    try:
        async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as client:
            while not stop.is_set():
                try:
                    claimed = await dispatch_once(pool, client, settings)
                except (psycopg.Error, OSError, TimeoutError) as exc:  # database unreachable
                    log.warning("webhook dispatcher: %s", exc)
                    claimed = 0
                if claimed == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), IDLE_POLL_S)
    finally:
        if own_pool:
            await pool.close()
