"""Dispatch a fleet's trip plans through ``POST /v1/trips`` (CONTRACT §5), like an OMS.

Thousands of plans go out over a bounded pool of keep-alive connections: ``concurrency``
workers each send one plan at a time, so the API sees at most that many requests at once.
Transport errors, 429 and 5xx answers are retried with exponential backoff and full
jitter (honouring ``Retry-After``); other answers are final.

Re-running is safe: the API replaces a planned or active trip with the same ``trip_id``
*in place* (same rows, orders keep their tracking numbers — ``replaced`` in the answer),
and answers 409 for a trip that already ended. Neither duplicates anything; both are
counted apart from new trips. A 401/403 stops the whole dispatch at once: a wrong token
would only be refused ten thousand times; so does an API that stays unreachable for
``concurrency`` plans in a row (each out of attempts), instead of retrying every plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PROBLEMS = 5  # refusals quoted in the report; the rest are only counted


@dataclass(slots=True)
class DispatchOptions:
    concurrency: int = 16  # requests in flight (= connections in the pool)
    max_attempts: int = 6  # per plan, the first one included
    backoff_s: float = 0.25  # first retry waits up to this long; doubles per attempt
    backoff_max_s: float = 8.0
    timeout_s: float = 30.0  # per request
    progress: bool = False  # a tqdm bar on stderr


@dataclass(slots=True)
class DispatchReport:
    plans: int = 0
    created: int = 0  # 201, a new trip
    replaced: int = 0  # 201, the trip existed (planned or active) and was re-planned in place
    conflicts: int = 0  # 409: the trip already ended, or an order is live on another trip
    failed: int = 0  # refused otherwise, out of attempts, or never sent after an auth error
    retries: int = 0
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.created + self.replaced

    @property
    def rate(self) -> float:
        """Plans answered per second (any outcome)."""
        done = self.accepted + self.conflicts + self.failed
        return done / self.wall_s if self.wall_s else 0.0

    def summary(self) -> str:
        return (
            f"trips: {self.created} created, {self.replaced} replaced, "
            f"{self.conflicts} conflicts, {self.failed} failed of {self.plans} "
            f"in {self.wall_s:.1f} s = {self.rate:.0f} trips/s ({self.retries} retries)"
        )

    def note(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


class _Abort(Exception):
    """Stop the whole dispatch: retrying the remaining plans cannot help."""


class _Streak:
    """Plans in a row that ran out of attempts (reset by any final answer)."""

    def __init__(self) -> None:
        self.n = 0


def _retry_delay_s(attempt: int, opts: DispatchOptions, response: httpx.Response | None) -> float:
    """Full-jitter exponential backoff; a numeric ``Retry-After`` wins when it is longer."""
    delay = random.uniform(0, min(opts.backoff_max_s, opts.backoff_s * 2**attempt))
    if response is not None:
        with contextlib.suppress(ValueError):
            delay = max(delay, float(response.headers.get("retry-after", "")))
    return delay


async def _post(
    client: httpx.AsyncClient,
    plan: dict[str, Any],
    opts: DispatchOptions,
    report: DispatchReport,
    given_up: _Streak,
) -> None:
    """Send one plan until it gets a final answer or runs out of attempts; count it."""
    body = orjson.dumps(plan)
    trip_id = plan.get("trip_id", "?")
    for attempt in range(opts.max_attempts):
        response: httpx.Response | None = None
        try:
            response = await client.post("/v1/trips", content=body)
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            code = response.status_code
            if code not in RETRY_STATUSES:
                given_up.n = 0
            if code == 201:
                if orjson.loads(response.content).get("replaced"):
                    report.replaced += 1
                else:
                    report.created += 1
                return
            if code in (401, 403):
                report.note(f"{trip_id}: {code} {response.text[:200]}")
                raise _Abort(f"the API refused the token: {code} {response.text[:200]}")
            if code not in RETRY_STATUSES:
                if code == 409:
                    report.conflicts += 1
                else:
                    report.failed += 1
                report.note(f"{trip_id}: {code} {response.text[:300]}")
                return
            reason = f"{code} {response.text[:200]}"
        if attempt + 1 < opts.max_attempts:
            report.retries += 1
            await asyncio.sleep(_retry_delay_s(attempt, opts, response))
    report.failed += 1
    report.note(f"{trip_id}: gave up after {opts.max_attempts} attempts ({reason})")
    given_up.n += 1
    if given_up.n >= opts.concurrency:
        raise _Abort(f"{given_up.n} plans in a row out of attempts, the last: {reason}")


async def dispatch_trips(
    plans: list[dict[str, Any]],
    api_url: str,
    token: str,
    opts: DispatchOptions | None = None,
) -> DispatchReport:
    """POST every plan to ``{api_url}/v1/trips``; returns what happened to them."""
    opts = opts or DispatchOptions()
    report = DispatchReport(plans=len(plans))
    pending: Iterator[dict[str, Any]] = iter(plans)
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plans), unit="trip", desc="trips", dynamic_ncols=True)
    limits = httpx.Limits(
        max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    t0 = time.monotonic()

    given_up = _Streak()

    async def worker(client: httpx.AsyncClient) -> None:
        for plan in pending:  # shared iterator: each plan goes to exactly one worker
            await _post(client, plan, opts, report, given_up)
            if bar is not None:
                bar.update(1)

    try:
        async with (
            httpx.AsyncClient(
                base_url=api_url,
                headers=headers,
                limits=limits,
                timeout=httpx.Timeout(opts.timeout_s, connect=min(opts.timeout_s, 10.0)),
            ) as client,
            asyncio.TaskGroup() as tg,
        ):
            for k in range(max(1, opts.concurrency)):
                tg.create_task(worker(client), name=f"dispatch-{k}")
    except* _Abort as group:
        log.error("trip dispatch stopped: %s", group.exceptions[0])
        report.problems.append(f"stopped: {group.exceptions[0]}")
    finally:
        report.wall_s = time.monotonic() - t0
        if bar is not None:
            bar.close()
    # everything not answered (after an abort) counts as failed
    report.failed = report.plans - report.accepted - report.conflicts
    return report
