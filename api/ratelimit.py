"""Per-client token buckets (in process memory) for public endpoints."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class TokenBuckets:
    """``rate_per_s`` tokens refill per second up to ``burst``; one request costs one.

    At most ``max_clients`` buckets are kept (least recently used dropped first), so a
    flood of distinct addresses cannot grow memory without bound.
    """

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now_s: float | None = None) -> float:
        """Spend one token for ``client``: 0.0 when allowed, else seconds until allowed."""
        now_s = time.monotonic() if now_s is None else now_s
        tokens, last_s = self._buckets.pop(client, (self.burst, now_s))
        tokens = min(self.burst, tokens + (now_s - last_s) * self.rate_per_s)
        wait_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait_s = (1.0 - tokens) / self.rate_per_s
        self._buckets[client] = (tokens, now_s)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait_s

    @staticmethod
    def retry_after(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
