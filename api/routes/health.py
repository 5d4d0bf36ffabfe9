"""``GET /healthz`` (public): is the API up, and can it reach the database and broker?"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import PoolDep, SettingsDep
from routewatch.mqtt_endpoint import MqttEndpoint, connack_ok, connect_packet_v311
from routewatch.settings import Settings
from store.seqgaps import RECENT_MINUTES, recent_loss

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 2.0


async def check_database(pool: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            async with pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
    except (psycopg.Error, OSError, TimeoutError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


async def check_broker(settings: Settings) -> dict[str, Any]:
    """Open a connection (TLS for mqtts://), send CONNECT, expect a successful CONNACK,
    DISCONNECT."""
    started = time.perf_counter()
    try:
        broker = MqttEndpoint.from_settings(settings)
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(
                broker.host, broker.port, ssl=broker.ssl_context()
            )
            try:
                client_id = f"rw-health-{id(reader):x}"[:23]
                writer.write(connect_packet_v311(client_id, broker.username, broker.password))
                await writer.drain()
                connack = await reader.readexactly(4)
                writer.write(b"\xe0\x00")  # DISCONNECT
                await writer.drain()
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    if not connack_ok(connack):
        return {"ok": False, "error": f"broker refused CONNECT (return code {connack[3]})"}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


async def check_loss(pool: Any) -> dict[str, Any]:
    """Pings missing from the trackers' numbering in the last minutes (``store.seqgaps``):
    reported, not a reason to call the API unhealthy."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            async with pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
                loss = await recent_loss(conn)
    except (psycopg.Error, OSError, TimeoutError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"window_minutes": RECENT_MINUTES, **loss}


_WORKERS_SQL = """
SELECT count(*) AS partitions, count(DISTINCT owner) AS workers, max(claimed_at) AS last_move
FROM partition_owners WHERE partitions = %s
"""


async def check_workers(pool: Any, settings: Settings) -> dict[str, Any] | None:
    """Engine workers on NATS (``routewatch worker``): how many partitions have an owner,
    among how many workers, and when ownership last moved; None when no worker ever ran.
    (Whether an owner is alive is NATS's to say: its lease expires with it.)"""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            async with pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
                cur = await conn.execute(_WORKERS_SQL, (settings.nats_partitions,))
                row = await cur.fetchone()
    except (psycopg.Error, OSError, TimeoutError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
    if not row or not row["partitions"]:
        return None
    return {**row, "last_move": row["last_move"].isoformat()}


@router.get("/healthz", summary="Liveness and dependency reachability (public)")
async def healthz(pool: PoolDep, settings: SettingsDep) -> JSONResponse:
    """``status`` is ``degraded`` (503) when the database or the broker cannot be reached;
    ``ingest`` reports pings missing in the last minutes (lost before they reached us);
    ``workers``, once engine workers ran, the partitions with an owner."""
    database, broker, loss, workers = await asyncio.gather(
        check_database(pool),
        check_broker(settings),
        check_loss(pool),
        check_workers(pool, settings),
    )
    ok = database["ok"] and broker["ok"]
    body = {
        "status": "ok" if ok else "degraded",
        "database": database,
        "broker": broker,
        "ingest": loss,
    }
    if workers is not None:
        body["workers"] = workers
    return JSONResponse(body, status_code=200 if ok else 503)
