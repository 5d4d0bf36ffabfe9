"""The live pipeline end to end against the real Mosquitto and PostgreSQL (the
"Foundation" acceptance test): valid pings stored exactly once, every bad one recorded
with its reason, graceful stop drains, restart does not duplicate."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import orjson
import psycopg
from prometheus_client import REGISTRY

from ingest.service import run_engine
from tests.ingest.live_helpers import (
    NOW_MS,
    engine,
    make_settings,
    messages_received,
    ping,
    publisher,
    stored,
    wait_for,
)


def rejected(db: psycopg.Connection, prefix: str) -> Counter[tuple[str, str]]:
    rows = db.execute(
        "SELECT topic, reason FROM rejected_pings WHERE topic LIKE %s", (f"fleet/{prefix}%",)
    ).fetchall()
    return Counter((r[0], r[1]) for r in rows)


async def test_acceptance_valid_stored_once_bad_recorded(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    p = f"acc{uuid.uuid4().hex[:6]}-"
    v1, v2 = f"fleet/{p}V1/ping", f"fleet/{p}V2/ping"
    t0 = NOW_MS - 60_000
    bad_topic = f"fleet/{p}bad id!/ping"
    long_topic = f"fleet/{p}{'x' * 64}/ping"
    sends: list[tuple[str, bytes]] = [
        (v1, orjson.dumps(ping(t0, seq=1))),
        # out of order, and a duplicate inside one message
        (v1, orjson.dumps([ping(t0 + 2000), ping(t0 + 1000), ping(t0 + 2000)])),
        (v1, orjson.dumps(ping(t0 + 1000))),  # duplicate across messages
        (v1, orjson.dumps(ping(t0 + 3000, ts_note="extra fields are ignored"))),
        (
            v2,
            orjson.dumps(
                [
                    ping(t0),
                    ping(t0 + 1, lat=91.0),  # out_of_range
                    {"ts": t0 + 2, "lat": -6.2},  # missing_field
                    ping(t0 + 3, lat="-6.2"),  # bad_type
                    ping(NOW_MS + 3_600_000),  # future_timestamp
                    {**ping(t0 + 4), "ts": "yesterday"},  # bad_timestamp
                    ping(t0 + 5, heading=400.0),  # out_of_range
                    7,  # not_an_object
                ]
            ),
        ),
        (
            v2,
            b'[{"ts": %d, "lat": 1e999, "lon": 1}, {"ts": %d, "lat": 1, "lon": NaN}]'
            % (t0 + 6, t0 + 7),
        ),  # non_finite x2
        (v2, b'{"ts": 1, "lat": '),  # malformed_json
        (v2, b""),  # empty_payload
        (v2, orjson.dumps([ping(t0 + 10 + i) for i in range(100)])),  # payload_too_large
        (bad_topic, orjson.dumps(ping(t0))),  # bad_topic
        (long_topic, orjson.dumps(ping(t0))),  # bad_topic (65 chars)
    ]
    settings = make_settings(database_url, mqtt_url)
    async with publisher(mqtt_url) as pub, engine(settings, pub):
        for topic, payload in sends:
            await pub.publish(topic, payload, qos=1)
        await wait_for(lambda: len(stored(db, p)) == 5 and sum(rejected(db, p).values()) == 14)
    assert stored(db, p) == [
        (f"{p}V1", t0),
        (f"{p}V1", t0 + 1000),
        (f"{p}V1", t0 + 2000),
        (f"{p}V1", t0 + 3000),
        (f"{p}V2", t0),
    ]
    assert rejected(db, p) == Counter(
        {
            (v2, "out_of_range"): 2,
            (v2, "missing_field"): 1,
            (v2, "bad_type"): 1,
            (v2, "future_timestamp"): 1,
            (v2, "bad_timestamp"): 1,
            (v2, "not_an_object"): 1,
            (v2, "non_finite"): 2,
            (v2, "malformed_json"): 1,
            (v2, "empty_payload"): 1,
            (v2, "payload_too_large"): 1,
            (bad_topic, "bad_topic"): 1,
            (long_topic, "bad_topic"): 1,
        }
    )
    row = db.execute(
        "SELECT seq, speed_kmh, trip_id FROM pings WHERE vehicle_id = %s "
        "AND ts = to_timestamp(%s / 1000.0)",
        (f"{p}V1", t0),
    ).fetchone()
    assert row == (1, 42.5, None)
    state = db.execute(
        "SELECT (extract(epoch FROM ts) * 1000)::bigint FROM vehicle_state WHERE vehicle_id = %s",
        (f"{p}V1",),
    ).fetchone()
    assert state == (t0 + 3000,)


async def test_graceful_stop_drains_open_batch(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    p = f"drn{uuid.uuid4().hex[:6]}-"
    # A batch that would never flush by itself: only the stop can commit it.
    settings = make_settings(
        database_url, mqtt_url, batch_max_ms=600_000, batch_max_pings=1_000_000
    )
    async with publisher(mqtt_url) as pub, engine(settings, pub):
        before = messages_received()
        for i in range(50):
            await pub.publish(f"fleet/{p}V/ping", orjson.dumps(ping(NOW_MS - 1000 * i)), qos=1)
        await wait_for(lambda: messages_received() >= before + 50)
        assert stored(db, p) == []
    assert len(stored(db, p)) == 50


async def test_restart_does_not_duplicate(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    p = f"rst{uuid.uuid4().hex[:6]}-"
    settings = make_settings(database_url, mqtt_url)
    batch = [ping(NOW_MS - 10_000 - 1000 * i) for i in range(20)]
    async with publisher(mqtt_url) as pub:
        async with engine(settings, pub):
            await pub.publish(f"fleet/{p}V/ping", orjson.dumps(batch), qos=1)
            await wait_for(lambda: len(stored(db, p)) == 20)
        # Published while the engine is down: the persistent session keeps it.
        await pub.publish(f"fleet/{p}V/ping", orjson.dumps([*batch, ping(NOW_MS)]), qos=1)
        async with engine(settings, pub):
            await wait_for(lambda: len(stored(db, p)) == 21)
            await pub.publish(f"fleet/{p}V/ping", orjson.dumps(batch), qos=1)
            await asyncio.sleep(0.3)
    assert len(stored(db, p)) == 21
    dupes = REGISTRY.get_sample_value("routewatch_pings_duplicate_total") or 0.0
    assert dupes >= 40


async def test_crash_before_commit_is_redelivered(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    """Messages are acked only after commit: a worker killed with an open batch loses
    nothing, the broker re-delivers to the next one with the same client id."""
    p = f"crh{uuid.uuid4().hex[:6]}-"
    settings = make_settings(
        database_url, mqtt_url, batch_max_ms=600_000, batch_max_pings=1_000_000
    )
    async with publisher(mqtt_url) as pub:
        stop = asyncio.Event()
        task = asyncio.create_task(run_engine(settings, stop))
        start = messages_received()
        async with asyncio.timeout(20):
            while messages_received() == start:
                await pub.publish(f"fleet/{p}probe/ping", b"", qos=1)
                await asyncio.sleep(0.1)
        before = messages_received()
        for i in range(30):
            await pub.publish(f"fleet/{p}V/ping", orjson.dumps(ping(NOW_MS - 1000 * i)), qos=1)
        await wait_for(lambda: messages_received() >= before + 30)
        task.cancel()  # a crash: no drain, no commit, no ack
        await asyncio.gather(task, return_exceptions=True)
        assert stored(db, p) == []
        async with engine(
            make_settings(database_url, mqtt_url, mqtt_client_id=settings.mqtt_client_id), pub
        ):
            await wait_for(lambda: len(stored(db, p)) == 30)


async def test_registry_enforced_rejects_unknown_vehicle(
    db: psycopg.Connection, database_url: str, mqtt_url: str
) -> None:
    p = f"reg{uuid.uuid4().hex[:6]}-"
    db.execute("INSERT INTO vehicles (vehicle_id) VALUES (%s)", (f"{p}known",))
    settings = make_settings(database_url, mqtt_url, require_known_vehicle=True)
    async with publisher(mqtt_url) as pub, engine(settings, pub):
        await pub.publish(f"fleet/{p}known/ping", orjson.dumps(ping(NOW_MS - 5000)), qos=1)
        await pub.publish(f"fleet/{p}stranger/ping", orjson.dumps(ping(NOW_MS - 5000)), qos=1)
        await wait_for(lambda: len(stored(db, p)) == 1 and sum(rejected(db, p).values()) == 1)
    assert stored(db, p) == [(f"{p}known", NOW_MS - 5000)]
    assert rejected(db, p) == Counter({(f"fleet/{p}stranger/ping", "unknown_vehicle"): 1})
