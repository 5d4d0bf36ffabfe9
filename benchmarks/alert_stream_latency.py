"""Alert SSE latency: commit of an alert in the ingest transaction → message read by an
HTTP client of ``GET /v1/alerts/stream`` (real uvicorn, real PostgreSQL).

Latency is measured from the moment the writer's COMMIT returned to the moment the
client parsed the message. Baseline in the same run: the same stream with LISTEN pointed at a channel nobody
notifies, i.e. the periodic re-read alone (every ``_POLL_S``) — what the stream would
cost without LISTEN/NOTIFY.

    .venv/bin/python benchmarks/alert_stream_latency.py --alerts 40

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import uvicorn
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from api.main import create_app
from api.routes import alerts as alerts_route
from compliance.events import Event, EventType
from routewatch.settings import Settings
from store import alerts
from store.migrate import migrate
from store.tokens import create_token


def scratch_database(server: str) -> tuple[str, str]:
    name = f"rw_bench_sse_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params: dict[str, Any] = {**conninfo_to_dict(server), "dbname": name}
    url = make_conninfo(**params)
    migrate(url)
    return name, url


async def _token(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        return (await create_token(conn, ["supervisor"], "bench"))[1]


async def _commit_alert(url: str, i: int) -> None:
    event = Event(
        EventType.SPEEDING,
        f"BENCH-{i}",
        "V-BENCH",
        int(time.time() * 1000) + i,
        0.0,
        0.0,
        0.0,
        {"limit_kmh": 40},
    )
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await alerts.apply_events(conn, [event])


def measure(base_url: str, db_url: str, token: str, n: int) -> list[float]:
    """Latency (ms) from each alert's commit to its message on the stream."""
    latencies: list[float] = []
    with (
        httpx.stream(
            "GET", f"{base_url}/v1/alerts/stream", params={"access_token": token}, timeout=30
        ) as resp,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        lines = resp.iter_lines()
        for line in lines:  # wait for the retry hint: the stream is listening
            if line.startswith("retry:"):
                break
        for i in range(n):
            pool.submit(asyncio.run, _commit_alert(db_url, i)).result()
            committed = time.perf_counter()
            for line in lines:
                if line.startswith("data:") and json.loads(line[5:])["trip_id"] == f"BENCH-{i}":
                    latencies.append((time.perf_counter() - committed) * 1000)
                    break
    return latencies


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p95 = values[max(0, round(0.95 * len(values)) - 1)]
    return (
        f"{name:<28} n={len(values):3d}  p50={statistics.median(values):8.1f} ms  "
        f"p95={p95:8.1f} ms  max={values[-1]:8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=40)
    args = parser.parse_args()
    server = os.environ.get("ROUTEWATCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name, db_url = scratch_database(server)
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server_obj = uvicorn.Server(
            uvicorn.Config(
                create_app(Settings(database_url=db_url)),
                host="127.0.0.1",
                port=port,
                log_level="warning",
            )
        )
        thread = threading.Thread(target=server_obj.run, daemon=True)
        thread.start()
        while not server_obj.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        token = asyncio.run(_token(db_url))
        notify = measure(base, db_url, token, args.alerts)
        alerts_route._listen_channel = "routewatch_bench_nobody"
        polling = measure(base, db_url, token, max(5, args.alerts // 4))
        server_obj.should_exit = True
        thread.join(timeout=10)
        print(summary("LISTEN/NOTIFY + catch-up", notify))
        print(summary(f"baseline: poll every {alerts_route._POLL_S:.0f} s", polling))
        print(f"speed-up (p50): {statistics.median(polling) / statistics.median(notify):.0f}x")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
