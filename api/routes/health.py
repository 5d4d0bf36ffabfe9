"""``GET /healthz`` (public): is the API up, and can it reach the database and broker?"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import PoolDep, SettingsDep

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


def _mqtt_connect_packet(client_id: str) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT (clean session, keepalive 10 s)."""
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"
    payload = len(cid).to_bytes(2, "big") + cid
    remaining = len(variable) + len(payload)  # < 128, so one length byte
    return bytes([0x10, remaining]) + variable + payload


async def check_broker(mqtt_url: str) -> dict[str, Any]:
    """Open a TCP connection, send CONNECT, expect a successful CONNACK, DISCONNECT."""
    parts = urlsplit(mqtt_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(_mqtt_connect_packet(f"rw-health-{id(reader):x}"[:23]))
                await writer.drain()
                connack = await reader.readexactly(4)
                writer.write(b"\xe0\x00")  # DISCONNECT
                await writer.drain()
            finally:
                writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    if connack[0] != 0x20 or connack[3] != 0:
        return {"ok": False, "error": f"broker refused CONNECT (return code {connack[3]})"}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


@router.get("/healthz", summary="Liveness and dependency reachability (public)")
async def healthz(pool: PoolDep, settings: SettingsDep) -> JSONResponse:
    database, broker = await asyncio.gather(check_database(pool), check_broker(settings.mqtt_url))
    ok = database["ok"] and broker["ok"]
    body = {"status": "ok" if ok else "degraded", "database": database, "broker": broker}
    return JSONResponse(body, status_code=200 if ok else 503)
