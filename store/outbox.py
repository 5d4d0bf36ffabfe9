"""The durable webhook outbox: rows written in the same transaction as the change they
announce, delivered later by :mod:`routewatch.webhooks`.

A row is *claimed* by pushing its ``next_attempt_at`` forward by a lease (so no database
transaction is held open across an HTTP request); a dispatcher that dies mid-send just
lets the lease expire and the row is retried. Rows of one order are delivered in order:
a row is only due when no earlier row of the same order is still pending.
"""

from __future__ import annotations

from typing import Any

import orjson
from psycopg import AsyncConnection

Conn = AsyncConnection[dict[str, Any]]


async def enqueue(conn: Conn, order_id: str, kind: str, payload: dict[str, Any]) -> None:
    """Queue one webhook; ``payload`` is serialised once, and those exact bytes are sent."""
    await enqueue_many(conn, [(order_id, kind, payload)])


async def enqueue_many(conn: Conn, items: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Queue ``(order_id, kind, payload)`` webhooks in this order (pipelined)."""
    if not items:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO webhook_outbox (order_id, kind, body) VALUES (%s, %s, %s)",
            [(oid, kind, orjson.dumps(payload).decode()) for oid, kind, payload in items],
        )


async def claim_due(conn: Conn, limit: int, lease_s: float) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due rows for ``lease_s`` seconds; counts the attempt."""
    cur = await conn.execute(
        """UPDATE webhook_outbox w
              SET attempts = attempts + 1,
                  next_attempt_at = now() + make_interval(secs => %(lease)s)
            WHERE id IN (
                SELECT o.id FROM webhook_outbox o
                 WHERE o.state = 'pending' AND o.next_attempt_at <= now()
                   AND NOT EXISTS (SELECT 1 FROM webhook_outbox e
                                    WHERE e.order_id = o.order_id AND e.state = 'pending'
                                      AND e.id < o.id)
                 ORDER BY o.id
                 LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED)
        RETURNING id, idempotency_key, order_id, kind, body, attempts""",
        {"lease": lease_s, "limit": limit},
    )
    return sorted(await cur.fetchall(), key=lambda r: r["id"])


async def mark_delivered(conn: Conn, row_id: int) -> None:
    await conn.execute(
        "UPDATE webhook_outbox SET state = 'delivered', delivered_at = now(), last_error = NULL "
        "WHERE id = %s",
        (row_id,),
    )


async def mark_failed(conn: Conn, row_id: int, error: str, retry_in_s: float | None) -> None:
    """Record a failed attempt: retry after ``retry_in_s``, or give up (state ``dead``)
    when it is None. Dead rows stay in the table for inspection and manual requeue."""
    if retry_in_s is None:
        await conn.execute(
            "UPDATE webhook_outbox SET state = 'dead', last_error = %s WHERE id = %s",
            (error[:1000], row_id),
        )
    else:
        await conn.execute(
            "UPDATE webhook_outbox SET last_error = %s, "
            "next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
            (error[:1000], retry_in_s, row_id),
        )


async def requeue_dead(conn: Conn) -> int:
    """Put every dead row back in the queue (after fixing the receiver)."""
    cur = await conn.execute(
        "UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_attempt_at = now() "
        "WHERE state = 'dead'"
    )
    return cur.rowcount
