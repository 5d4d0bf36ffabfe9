"""Loss that someone sees: a broker at a small ``max_queued_messages`` drops the pings
queued for the engine while it is away (Mosquitto's default is 1000); the restarted
engine finds the holes in each tracker's ``seq`` and says so — metric, log line with the
vehicle and the size, ``ping_gaps`` rows, the vehicle API and ``/healthz`` — and the
count equals the pings published but never stored."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from api.main import create_app
from routewatch.mqtt_endpoint import MqttEndpoint
from simulator.publisher import WirePublishers
from store import tokens
from tests.conftest import StartMosquitto
from tests.ingest.live_helpers import NOW_MS, engine, make_settings, ping, publisher, wait_for

VEHICLES = 3
BEFORE, AWAY, AFTER = 20, 200, 10  # pings per vehicle: engine up, engine away, up again
QUEUE = 100  # the broker keeps this many messages for the absent engine, drops the rest


def missing_metric() -> float:
    return REGISTRY.get_sample_value("routewatch_pings_missing_total") or 0.0


def publish(url: str, prefix: str, seqs: range) -> None:
    """One ping per message for every vehicle, numbered ``seqs``, 1 s apart."""
    sim = WirePublishers(MqttEndpoint.parse(url), 1, 1, f"t-{uuid.uuid4().hex[:6]}")
    messages = [
        (f"fleet/{prefix}{v}/ping", orjson.dumps(ping(NOW_MS - 600_000 + s * 1000, seq=s)))
        for s in seqs
        for v in range(VEHICLES)
    ]
    sim.clients[0].publish_many(messages)
    sim.close(expected=len(messages))


async def test_pings_dropped_by_the_broker_are_counted(
    tmp_path: Path,
    start_mosquitto: StartMosquitto,
    db: psycopg.Connection,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = start_mosquitto(f"max_queued_messages {QUEUE}\n")
    prefix = f"loss{uuid.uuid4().hex[:5]}-"
    settings = make_settings(database_url, broker.url, reorder_allowance_s=1)
    before = missing_metric()

    def stored() -> int:
        row = db.execute(
            "SELECT count(*) FROM pings WHERE vehicle_id LIKE %s", (prefix + "%",)
        ).fetchone()
        return int(row[0]) if row else 0

    async with publisher(broker.url) as probe, engine(settings, probe):
        publish(broker.url, prefix, range(BEFORE))
        await wait_for(lambda: stored() == VEHICLES * BEFORE)
    # The engine is away (its session is kept): the broker queues QUEUE messages only.
    publish(broker.url, prefix, range(BEFORE, BEFORE + AWAY))
    caplog.set_level(logging.WARNING, logger="ingest.pipeline")
    async with publisher(broker.url) as probe, engine(settings, probe):
        publish(broker.url, prefix, range(BEFORE + AWAY, BEFORE + AWAY + AFTER))
        published = VEHICLES * (BEFORE + AWAY + AFTER)

        def reported() -> int:
            row = db.execute(
                "SELECT coalesce(sum(missing), 0) FROM ping_gaps WHERE vehicle_id LIKE %s",
                (prefix + "%",),
            ).fetchone()
            return int(row[0]) if row else 0

        await wait_for(lambda: stored() > VEHICLES * (BEFORE + AFTER) and reported() > 0)
        await wait_for(lambda: reported() == published - stored(), timeout_s=10)

    lost = published - stored()
    assert lost >= VEHICLES * AWAY - QUEUE - VEHICLES  # the broker really dropped them
    assert missing_metric() - before == lost
    lines = [r.getMessage() for r in caplog.records if "pings missing from" in r.getMessage()]
    assert {line.split(" from ")[1].split(" ")[0] for line in lines} == {
        f"{prefix}{v}" for v in range(VEHICLES)
    }
    assert sum(int(line.split(" ")[0]) for line in lines) == lost

    # The vehicle API and the health check show the same count.
    _, supervisor = await _token(database_url)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.get(
            "/v1/vehicles", headers={"Authorization": f"Bearer {supervisor}"}
        )
        mine = [v for v in response.json() if v["vehicle_id"].startswith(prefix)]
        assert sum(v["pings_missing"] for v in mine) == lost
        assert sum(v["pings_missing_recent"] for v in mine) == lost
        assert all(v["seq_gaps"] == 1 for v in mine)
        health = (await client.get("/healthz")).json()
        assert health["ingest"]["pings_missing"] >= lost  # other tests' gaps may add up
        assert health["ingest"]["window_minutes"] == 5


async def _token(database_url: str) -> tuple[int, str]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        return await tokens.create_token(conn, ["supervisor"], "loss test")
