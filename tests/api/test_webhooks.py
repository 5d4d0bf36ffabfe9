"""Webhook delivery to a real local HTTP receiver, across an outage of the receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from routewatch.settings import Settings
from routewatch.webhooks import dispatch_once, retry_delay_s, run_dispatcher
from store import outbox
from store.db import make_pool

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Receiver:
    """A tiny OMS: records every request; can answer 500 to a key's first delivery
    (the request arrived but the answer is "lost") to exercise idempotency."""

    def __init__(self, port: int, secret: str, fail_first: bool = False) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers["Idempotency-Key"]
                expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                first = all(r["key"] != key for r in receiver.requests)
                receiver.requests.append(
                    {
                        "key": key,
                        "body": json.loads(body),
                        "signed": hmac.compare_digest(
                            self.headers["X-Routewatch-Signature"], expected
                        ),
                    }
                )
                self.send_response(500 if receiver.fail_first and first else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered_keys(self) -> set[str]:
        return {r["key"] for r in self.requests}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hook_settings(settings: Settings) -> Iterator[Settings]:
    yield settings.model_copy(
        update={
            "webhook_url": f"http://127.0.0.1:{_free_port()}/hooks/routewatch",
            "webhook_backoff_s": 0.05,
            "webhook_backoff_max_s": 0.2,
            "webhook_max_attempts": 50,
        }
    )


def _port(s: Settings) -> int:
    return int(str(s.webhook_url).split(":")[2].split("/")[0])


async def _enqueue(pool: AsyncConnectionPool, n: int, orders: int) -> None:
    async with pool.connection() as conn:
        for i in range(n):
            oid = f"ORD-{i % orders}"
            await outbox.enqueue(
                conn,  # type: ignore[arg-type]
                oid,
                "status",
                {
                    "order_id": oid,
                    "tracking_number": "X",
                    "status": f"s{i}",
                    "eta": None,
                    "window": {"start": None, "end": None},
                    "ts": f"2026-11-22T08:00:{i:02d}Z",
                },
            )


def _states(db: psycopg.Connection) -> dict[str, int]:
    return dict(db.execute("SELECT state, count(*) FROM webhook_outbox GROUP BY state").fetchall())


async def test_delivery_survives_an_outage_exactly_once_by_key(
    hook_settings: Settings, db: psycopg.Connection, database_url: str
) -> None:
    async with make_pool(database_url, max_size=3) as pool:
        await _enqueue(pool, 12, orders=3)
        stop = asyncio.Event()
        task = asyncio.create_task(run_dispatcher(hook_settings, stop, pool), name="webhooks")
        # Receiver down: every row fails and is rescheduled, nothing is lost.
        for _ in range(100):
            await asyncio.sleep(0.1)
            row = db.execute(
                "SELECT min(attempts) FROM webhook_outbox "
                "WHERE order_id IN ('ORD-0', 'ORD-1', 'ORD-2') AND id IN "
                "(SELECT min(id) FROM webhook_outbox GROUP BY order_id)"
            ).fetchone()
            if row and row[0] >= 2:
                break
        assert _states(db) == {"pending": 12}
        assert "Connect" in str(
            db.execute(
                "SELECT last_error FROM webhook_outbox WHERE attempts > 0 LIMIT 1"
            ).fetchone()
        )
        # Receiver up, answering 500 to each key's first request (answer "lost").
        receiver = Receiver(_port(hook_settings), hook_settings.webhook_secret, fail_first=True)
        try:
            for _ in range(150):
                if _states(db) == {"delivered": 12}:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await task
            receiver.stop()
    assert _states(db) == {"delivered": 12}
    keys = {str(k[0]) for k in db.execute("SELECT idempotency_key FROM webhook_outbox").fetchall()}
    assert receiver.delivered_keys() == keys  # each row reached the receiver...
    assert len(receiver.requests) == 24  # ...twice (first answer lost), same key both times
    assert all(r["signed"] for r in receiver.requests)
    # Per order, the receiver saw the notifications in the order they were queued.
    accepted = [
        r
        for i, r in enumerate(receiver.requests)
        if any(q["key"] == r["key"] for q in receiver.requests[:i])
    ]
    for oid in ("ORD-0", "ORD-1", "ORD-2"):
        seq = [int(r["body"]["status"][1:]) for r in accepted if r["body"]["order_id"] == oid]
        assert seq == sorted(seq) and len(seq) == 4
    assert set(accepted[0]["body"]) == {
        "order_id",
        "tracking_number",
        "status",
        "eta",
        "window",
        "ts",
    }


async def test_gives_up_into_dead_after_max_attempts(
    hook_settings: Settings, db: psycopg.Connection, database_url: str
) -> None:
    rules = hook_settings.model_copy(update={"webhook_max_attempts": 2, "webhook_backoff_s": 0.0})
    async with make_pool(database_url, max_size=2) as pool, httpx.AsyncClient(timeout=1) as client:
        await _enqueue(pool, 1, orders=1)
        assert await dispatch_once(pool, client, rules) == 1
        assert _states(db) == {"pending": 1}
        await asyncio.sleep(0.05)
        assert await dispatch_once(pool, client, rules) == 1
        assert _states(db) == {"dead": 1}
        assert await dispatch_once(pool, client, rules) == 0
        async with pool.connection() as conn:
            assert await outbox.requeue_dead(conn) == 1  # type: ignore[arg-type]
        assert _states(db) == {"pending": 1}


async def test_backoff_grows_and_is_capped(settings: Settings) -> None:
    rules = settings.model_copy(update={"webhook_backoff_s": 2.0, "webhook_backoff_max_s": 60.0})
    assert 1.0 <= retry_delay_s(1, rules) <= 2.0
    assert 8.0 <= retry_delay_s(4, rules) <= 16.0
    assert 30.0 <= retry_delay_s(20, rules) <= 60.0


async def test_app_runs_the_dispatcher_end_to_end(
    hook_settings: Settings, db: psycopg.Connection
) -> None:
    from httpx import ASGITransport, AsyncClient

    from api.main import create_app
    from store import tokens
    from tests.api.factories import make_plan

    receiver = Receiver(_port(hook_settings), hook_settings.webhook_secret)
    app = create_app(hook_settings)
    try:
        async with (
            app.router.lifespan_context(app),
            AsyncClient(transport=ASGITransport(app=app), base_url="http://rw.test") as client,
        ):
            async with app.state.pool.connection() as conn:
                _, token = await tokens.create_token(conn, ["oms"])
            auth = {"Authorization": f"Bearer {token}"}
            trip = (await client.post("/v1/trips", json=make_plan(2), headers=auth)).json()
            await client.post(f"/v1/trips/{trip['trip_id']}/cancel", headers=auth)
            for _ in range(50):
                if len(receiver.requests) >= 2:
                    break
                await asyncio.sleep(0.1)
    finally:
        receiver.stop()
    got = sorted((r["body"]["order_id"], r["body"]["status"]) for r in receiver.requests)
    assert got == sorted((o["order_id"], "cancelled") for o in trip["orders"])
    assert all(r["signed"] for r in receiver.requests)
    numbers = {o["tracking_number"] for o in trip["orders"]}
    assert {r["body"]["tracking_number"] for r in receiver.requests} == numbers
