"""Engine workers on NATS JetStream, as operators run them: real Mosquitto, the real
``routewatch gateway`` and ``routewatch worker`` processes, real NATS and PostgreSQL.

Three workers share 32 partitions while 1,000 simulated vehicles publish; one worker is
killed with SIGKILL mid-run, then the gateway (and restarted), and a fourth worker joins
later. Afterwards every ping is stored
exactly once, the events are exactly those of one uninterrupted engine over the same
pings, the dead worker's partitions had new owners within the bound, and the late
worker took its share."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pytest

from ingest.partitions import partition_of
from ingest.worker import assignment, key_of
from tests.conftest import StartMosquitto
from tests.ingest.engine_process import EngineProcess, wait_until
from tests.ingest.fleet_run import (
    Fleet,
    SteadyPublisher,
    insert_trips,
    make_fleet,
    reference_events,
    stored_events,
    stored_pings,
)
from tests.ingest.test_crash_kill9 import BROKER_CONFIG, _diff

pytestmark = pytest.mark.slow

PARTITIONS = 32
RATE_PER_S = 2500.0
#: a dead worker's partitions must have new owners within this (the issue's bound)
FAILOVER_BOUND_S = 10.0


class Cluster:
    """The gateway and the workers of one test, with its own NATS prefix."""

    def __init__(self, database_url: str, mqtt_url: str, nats_url: str) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self.settings = {
            "nats_url": nats_url,
            "nats_prefix": self.prefix,
            "nats_partitions": str(PARTITIONS),
            "mqtt_client_id": f"rw-{self.prefix}",
        }
        self.database_url, self.mqtt_url = database_url, mqtt_url
        self.procs: dict[str, EngineProcess] = {}

    def start(self, name: str) -> EngineProcess:
        if name == "gateway":
            command, ready = ["gateway"], r"subscribed to fleet/\+/ping"
        else:
            command, ready = ["worker", "--id", name], r"compliance kernels ready"
        proc = EngineProcess(self.database_url, self.mqtt_url, command, ready, **self.settings)
        proc.start()
        self.procs[name] = proc
        return proc

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self) -> str:
        return "".join(f"{name}: {line}" for name, p in self.procs.items() for line in p.log)


def owners(db: psycopg.Connection) -> dict[int, str]:
    rows = db.execute(
        "SELECT partition, owner FROM partition_owners WHERE partitions = %s", (PARTITIONS,)
    ).fetchall()
    return {int(p): str(o) for p, o in rows}


def with_clock_pings(fleet: Fleet) -> Fleet:
    """The fleet plus one ping a minute after the last, in every partition, from a
    vehicle without a trip. With ``watermark=event`` each partition's clock is the newest
    fix it saw; these bring every partition's clock (and the reference's) past the end,
    as the wall clock does live, so the events that wait for the reorder allowance at
    the end are emitted in both."""
    end_ms = max(r[1] for r in fleet.rows) + 60_000
    clocks: dict[int, str] = {}
    n = 0
    while len(clocks) < PARTITIONS:
        vid = f"CLOCK-{fleet.rows[0][0]}-{n}"
        clocks.setdefault(partition_of(vid, PARTITIONS), vid)
        n += 1
    lat, lon = fleet.rows[0][2], fleet.rows[0][3]
    rows = [(vid, end_ms, lat, lon, 0.0, 0.0, 5.0) for vid in clocks.values()]
    return Fleet(fleet.plans, fleet.rows + rows)


@pytest.fixture
def cluster(database_url: str, nats_url: str, start_mosquitto: StartMosquitto) -> Iterator[Cluster]:
    c = Cluster(database_url, start_mosquitto(BROKER_CONFIG).url, nats_url)
    with ExitStack() as stack:
        stack.callback(lambda: print(c.logs()[-20000:]))
        stack.callback(c.stop)
        yield c


def test_three_workers_kill_9_and_a_late_joiner(db: psycopg.Connection, cluster: Cluster) -> None:
    fleet = with_clock_pings(make_fleet(vehicles=1000, interval_s=10, duration_s=900, seed=11))
    insert_trips(db, fleet.plans)
    vehicles = {row[0] for row in fleet.rows}
    expected_pings = fleet.unique_pings()

    def stored_count() -> int:
        row = db.execute(
            "SELECT count(*) FROM pings WHERE vehicle_id = ANY(%s)", (list(vehicles),)
        ).fetchone()
        return int(row[0]) if row else 0

    cluster.start("gateway")
    for name in ("w1", "w2", "w3"):
        cluster.start(name)
    wait_until(
        lambda: len(set(owners(db).values())) == 3 and len(owners(db)) == PARTITIONS,
        60,
        "three workers owning every partition",
    )
    publisher = SteadyPublisher(cluster.mqtt_url, fleet.rows, RATE_PER_S)
    publisher.start()

    # kill -9 one worker once a third is published and it has committed since
    wait_until(lambda: publisher.sent >= len(fleet.rows) / 3, 120, "publishing")
    victim = "w2"
    lost = {p for p, w in owners(db).items() if w == victim}
    killed_at, killed_clock = time.monotonic(), time.strftime("%H:%M:%S")
    cluster.procs[victim].kill()
    wait_until(
        lambda: all(owners(db)[p] != victim for p in lost), 30, "the dead worker's partitions moved"
    )
    failover_s = time.monotonic() - killed_at

    # the gateway dies too, mid-publish: Mosquitto keeps what it had not acknowledged
    cluster.procs["gateway"].kill()
    time.sleep(1.0)
    cluster.procs["gateway"].start()

    # a fourth worker joins and takes its share (rendezvous hashing over w1, w3, w4)
    wait_until(lambda: publisher.sent >= len(fleet.rows) * 0.6, 120, "publishing")
    cluster.start("w4")
    share = {
        p
        for p, w in assignment(PARTITIONS, [key_of(n) for n in ("w1", "w3", "w4")]).items()
        if w == "w4"
    }
    wait_until(lambda: {p for p, w in owners(db).items() if w == "w4"} == share, 30, "w4's share")

    assert publisher.finish() == len(fleet.rows)
    wait_until(lambda: stored_count() >= len(expected_pings), 120, "all pings stored")
    for name in ("w1", "w3", "w4", "gateway"):
        cluster.procs[name].stop()
    print(f"{len(fleet.rows)} pings; failover {failover_s:.1f} s; w4 took {len(share)} partitions")

    pings = stored_pings(db, vehicles)
    assert len(pings) == len(set(pings))  # nothing stored twice
    assert set(pings) == expected_pings  # nothing lost, nothing made up

    reference = reference_events(fleet)
    ids = stored_events(db, vehicles)
    assert len(ids) == len(set(ids))
    extra = db.execute(
        "SELECT type, count(*), min(details::text) FROM events WHERE event_id::text = ANY(%s) GROUP BY type",
        (sorted(set(ids) - set(reference)),),
    ).fetchall()
    assert set(ids) == set(reference), f"{_diff(set(ids), reference)}; unexpected by type {extra}"
    assert len(reference) > 100

    # The killed worker's partitions were recovered from their checkpoints and the pings
    # committed after them; the victim had vehicles in them.
    log = "".join(line for n in ("w1", "w3") for line in cluster.procs[n].log)
    assert any(partition_of(v, PARTITIONS) in lost for v in vehicles)
    assert "engine recovered: replayed" in log

    moves = [line for line in log.splitlines() if "workers:" in line or "claimed" in line]
    assert failover_s < FAILOVER_BOUND_S, (
        f"partitions moved after {failover_s:.1f} s (killed at {killed_clock}):\n"
        + "\n".join(moves)
    )
