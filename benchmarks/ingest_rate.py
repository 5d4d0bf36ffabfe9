"""End-to-end ingest rate: MQTT publish → ``run_engine`` → rows in ``pings``.

Publishes N pings (most in JSON arrays, a share as single objects) to the local
Mosquitto while the engine runs against a scratch database, and prints stored pings/s
end to end. In the same run it times a plain binary COPY of the same rows into a scratch
table — the database's own ceiling for this machine — and prints the ratio.

    .venv/bin/python benchmarks/ingest_rate.py --pings 200000

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import numpy as np
import orjson
import psycopg
from prometheus_client import REGISTRY

from ingest.service import run_engine
from routewatch import metrics
from routewatch.services import PrivateMosquitto, with_dbname
from routewatch.settings import Settings
from store.migrate import migrate
from store.pings import copy_rows

PUBLISH_WINDOW = 500
#: messages the publisher may be ahead of the engine's receiver. Mosquitto queues at most
#: max_queued_messages (default 1000) beyond a client's in-flight window and drops the
#: rest; being at most 1000 ahead of what the engine has taken keeps the queue within it.
AHEAD = 1000
STALL_S = 15.0


def make_pings(n: int, vehicles: int, prefix: str) -> list[tuple[str, dict[str, object]]]:
    """``n`` pings spread over ``vehicles`` vehicles, 1 s apart, ending now."""
    now_ms = int(time.time() * 1000)
    rng = np.random.default_rng(7)
    per_vehicle = -(-n // vehicles)
    out: list[tuple[str, dict[str, object]]] = []
    for k in range(n):
        v, i = k % vehicles, k // vehicles
        out.append(
            (
                f"{prefix}{v:04d}",
                {
                    "ts": now_ms - (per_vehicle - i) * 1000,
                    "lat": -6.2 + float(rng.normal(0, 0.01)),
                    "lon": 106.8 + float(rng.normal(0, 0.01)),
                    "speed": 30.0,
                    "heading": 90.0,
                    "accuracy": 5.0,
                    "seq": i,
                },
            )
        )
    return out


def messages(
    pings: list[tuple[str, dict[str, object]]], array_size: int, single_share: float
) -> list[tuple[str, bytes]]:
    """Group per vehicle into arrays of ``array_size``; ``single_share`` go one by one."""
    n_single = int(len(pings) * single_share)
    msgs = [(f"fleet/{vid}/ping", orjson.dumps(p)) for vid, p in pings[:n_single]]
    by_vehicle: dict[str, list[dict[str, object]]] = {}
    for vid, p in pings[n_single:]:
        by_vehicle.setdefault(vid, []).append(p)
    for vid, items in by_vehicle.items():
        for i in range(0, len(items), array_size):
            msgs.append((f"fleet/{vid}/ping", orjson.dumps(items[i : i + array_size])))
    return msgs


def count_stored(url: str, prefix: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pings WHERE vehicle_id LIKE %s", (prefix + "%",)
        ).fetchone()
        return int(row[0]) if row else 0


def publisher_process(
    mqtt_url: str, msgs: list[tuple[str, bytes]], engine_received: Any, started: Any
) -> None:
    """Child process: publish ``msgs`` QoS 1, closed loop against the engine's receive
    count (see AHEAD); a separate process so it does not share the engine's core/loop."""

    async def run() -> None:
        url = urlsplit(mqtt_url)
        async with aiomqtt.Client(
            url.hostname or "127.0.0.1", url.port or 1883, max_inflight_messages=PUBLISH_WINDOW
        ) as pub:
            pub.pending_calls_threshold = PUBLISH_WINDOW + 1  # the window is deliberate
            window = asyncio.Semaphore(PUBLISH_WINDOW)

            async def one(topic: str, payload: bytes) -> None:
                async with window:
                    await pub.publish(topic, payload, qos=1)

            started.set()
            async with asyncio.TaskGroup() as tg:
                for sent, (topic, payload) in enumerate(msgs):
                    while sent - engine_received.value > AHEAD:  # noqa: ASYNC110
                        await asyncio.sleep(0.001)
                    tg.create_task(one(topic, payload))

    asyncio.run(run())


async def end_to_end(
    settings: Settings, msgs: list[tuple[str, bytes]], n: int, prefix: str
) -> tuple[float, float]:
    """(seconds until all n stored, seconds the publisher took)."""
    stop = asyncio.Event()
    engine = asyncio.create_task(run_engine(settings, stop), name="engine")
    await asyncio.sleep(1.0)  # let the engine subscribe
    ctx = mp.get_context("fork")
    engine_received, started = ctx.Value("d", 0.0, lock=False), ctx.Event()
    base = metrics.MQTT_MESSAGES._value.get()  # direct read: the registry walk is slow
    child = ctx.Process(
        target=publisher_process, args=(settings.mqtt_url, msgs, engine_received, started)
    )
    child.start()
    await asyncio.to_thread(started.wait)
    t0 = time.perf_counter()
    publish_s = 0.0
    last, last_change, next_count = -1, t0, t0
    while True:
        engine_received.value = metrics.MQTT_MESSAGES._value.get() - base
        now = time.perf_counter()
        if not publish_s and not child.is_alive():
            publish_s = now - t0
        if now >= next_count:  # counting rows is a query: a few times a second
            next_count = now + 0.2
            stored = await asyncio.to_thread(count_stored, settings.database_url, prefix)
            if stored >= n:
                break
            if engine.done():
                engine.result()
            if stored != last:
                last, last_change = stored, now
            elif now - last_change > STALL_S:
                child.kill()
                raise SystemExit(f"stalled at {stored} of {n} stored pings")
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - t0
    child.join()
    stop.set()
    await engine
    return elapsed, publish_s or elapsed


def copy_baseline(url: str, pings: list[tuple[str, dict[str, object]]]) -> float:
    """Seconds for one binary COPY of the same rows into a scratch table (sync)."""
    from store.pings import _STAGE_DDL, _STAGE_TYPES  # the writer's exact staging shape

    nan = float("nan")
    rows = [
        (
            vid,
            p["ts"],
            p["lat"],
            p["lon"],
            p["speed"],
            p["heading"],
            p["accuracy"],
            p["seq"],
            None,
            nan,
            nan,
            -1,
        )
        for vid, p in pings
    ]

    async def run() -> float:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute(_STAGE_DDL.replace("ON COMMIT DELETE ROWS", ""))
            t0 = time.perf_counter()
            await copy_rows(conn, "COPY pings_stage FROM STDIN (FORMAT BINARY)", _STAGE_TYPES, rows)
            await conn.commit()
            return time.perf_counter() - t0

    return asyncio.run(run())


def scratch_database(server: str) -> tuple[str, str]:
    name = f"rw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_dbname(server, name)
    migrate(url)
    return name, url


def run(args: argparse.Namespace, mqtt_url: str) -> tuple[float, float, float, int]:
    """(end-to-end s, publisher s, COPY baseline s, messages) on a scratch database."""
    name, url = scratch_database(args.database_url)
    try:
        prefix = f"bn{uuid.uuid4().hex[:5]}-"
        pings = make_pings(args.pings, args.vehicles, prefix)
        msgs = messages(pings, args.array_size, args.single_share)
        settings = Settings(
            database_url=url,
            mqtt_url=mqtt_url,
            mqtt_client_id=f"rw-bench-{uuid.uuid4().hex[:8]}",
            mqtt_session_expiry_s=60,
            mqtt_mirror_events=False,
        )
        e2e_s, publish_s = asyncio.run(end_to_end(settings, msgs, args.pings, prefix))
        copy_s = copy_baseline(url, pings)
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return e2e_s, publish_s, copy_s, len(msgs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pings", type=int, default=200_000)
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--array-size", type=int, default=100)
    ap.add_argument(
        "--single-share",
        type=float,
        default=0.1,
        help="fraction of pings sent as single-object messages",
    )
    ap.add_argument(
        "--database-url",
        default=os.environ.get(
            "ROUTEWATCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    ap.add_argument(
        "--mqtt-url",
        default="private",
        help="broker URL, or 'private' (default): a fresh mosquitto on a free port, so other "
        "clients' traffic on fleet/+/ping cannot skew the run",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with contextlib.ExitStack() as stack:
        mqtt_url = args.mqtt_url
        if mqtt_url == "private":
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rw-bench-")))
            mqtt_url = stack.enter_context(PrivateMosquitto(tmp)).url
        e2e_s, publish_s, copy_s, n_msgs = run(args, mqtt_url)

    e2e_rate, copy_rate = args.pings / e2e_s, args.pings / copy_s
    print(
        f"pings: {args.pings} in {n_msgs} MQTT messages "
        f"({args.single_share:.0%} single objects, arrays of {args.array_size})"
    )
    print(
        f"end to end (publish -> stored): {e2e_s:.2f} s = {e2e_rate:,.0f} pings/s "
        f"(publisher alone took {publish_s:.2f} s)"
    )
    print(f"baseline binary COPY of the same rows: {copy_s:.2f} s = {copy_rate:,.0f} rows/s")
    print(f"ratio end-to-end / COPY: {e2e_rate / copy_rate:.2f}")
    batches = REGISTRY.get_sample_value("routewatch_batches_total") or 0.0
    commit_s = REGISTRY.get_sample_value("routewatch_batch_commit_seconds_sum") or 0.0
    size = REGISTRY.get_sample_value("routewatch_batch_size_pings_sum") or 0.0
    if batches:
        print(
            f"engine: {batches:.0f} batches, mean {size / batches:.0f} pings, "
            f"mean process+commit {1000 * commit_s / batches:.1f} ms "
            f"(busy {commit_s:.2f} s of {e2e_s:.2f} s)"
        )


if __name__ == "__main__":
    main()
