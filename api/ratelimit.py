"""Per-client token buckets for the public endpoints, kept in PostgreSQL (``rate_buckets``,
migrations/0035) so that every API process behind a load balancer enforces one limit.

``rate_per_s`` tokens refill per second up to ``burst``; one request costs one. The bucket
is read, refilled and spent in one statement (the upsert locks the client's row), so
concurrent requests through different processes cannot spend the same token. Rows whose
bucket would be full again are deleted every ``PRUNE_EVERY`` calls of a process, which
bounds the table by the clients of the last ``burst / rate_per_s`` seconds.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from psycopg import AsyncConnection

#: a process deletes refilled buckets once per this many lookups
PRUNE_EVERY = 1000

_TAKE = """
INSERT INTO rate_buckets AS b (client, tokens, at, allowed)
VALUES (%(client)s, %(burst)s - 1, clock_timestamp(), true)
ON CONFLICT (client) DO UPDATE SET
    tokens = CASE WHEN b.refilled >= 1 THEN b.refilled - 1 ELSE b.refilled END,
    allowed = b.refilled >= 1,
    at = clock_timestamp()
RETURNING allowed, tokens
"""
# b.refilled is not a column: spelled out once here and substituted below
_REFILLED = "least(%(burst)s, b.tokens + extract(epoch FROM clock_timestamp() - b.at) * %(rate)s)"
_TAKE = _TAKE.replace("b.refilled", f"({_REFILLED})")

_PRUNE = """
DELETE FROM rate_buckets
WHERE at < clock_timestamp() - make_interval(secs => %(burst)s / %(rate)s)
"""


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._calls = itertools.count(1)

    async def take(self, conn: AsyncConnection[dict[str, Any]], client: str) -> float:
        """Spend one token for ``client``: 0.0 when allowed, else seconds until allowed."""
        params = {"client": client, "burst": self.burst, "rate": self.rate_per_s}
        cur = await conn.execute(_TAKE, params)
        row = await cur.fetchone()
        assert row is not None
        allowed, tokens = row["allowed"], row["tokens"]
        if next(self._calls) % PRUNE_EVERY == 0:
            await conn.execute(_PRUNE, params)
        return 0.0 if allowed else (1.0 - float(tokens)) / self.rate_per_s

    @staticmethod
    def retry_after(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
