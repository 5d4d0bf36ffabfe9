"""Is loss seen? The engine is killed (-9) a third of the way through a steady stream of
numbered single-ping QoS 1 messages and restarted a few seconds later, against a private
Mosquitto with a given ``max_queued_messages`` (1000 is Mosquitto's default, 1,000,000
routewatch's setting). Printed per broker setting: pings published (all acknowledged by
the broker), stored, reported missing by the engine (``ping_gaps``, from the trackers'
``seq``), and whether stored + reported equals published.

    .venv/bin/python -m benchmarks.loss_visibility --pings 60000 --vehicles 500 --rate 5000

Needs the configured PostgreSQL (a scratch database is created and dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

from routewatch import services
from routewatch.settings import get_settings
from simulator.mqttwire import WirePublisher
from store.migrate import migrate
from tests.ingest.engine_process import engine_process

T0_MS = int(time.time() * 1000) - 3_600_000


class Publisher(threading.Thread):
    """``pings`` numbered pings round-robin over ``vehicles`` at ``rate`` per second."""

    def __init__(self, port: int, prefix: str, vehicles: int, pings: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.wire = WirePublisher("127.0.0.1", port, f"loss-pub-{uuid.uuid4().hex[:6]}")
        self.prefix, self.vehicles, self.pings, self.rate = prefix, vehicles, pings, rate
        self.sent = 0

    def run(self) -> None:
        step = max(1, int(self.rate / 50))
        t0 = time.monotonic()
        for i in range(0, self.pings, step):
            time.sleep(max(0.0, t0 + i / self.rate - time.monotonic()))
            self.sent += self.wire.publish_many(
                (
                    f"fleet/{self.prefix}{k % self.vehicles}/ping",
                    f'{{"ts":{T0_MS + (k // self.vehicles) * 1000},"lat":-6.2,"lon":106.8,'
                    f'"seq":{k // self.vehicles}}}',
                )
                for k in range(i, min(i + step, self.pings))
            )
        self.wire.wait_acked(60)


def count(db: psycopg.Connection, sql: str, prefix: str) -> int:
    row = db.execute(sql, (prefix + "%",)).fetchone()
    return int(row[0] or 0) if row else 0


def settle(db: psycopg.Connection, prefix: str, quiet_s: float = 3.0) -> tuple[int, int]:
    """(stored, reported missing) once neither changed for ``quiet_s``."""
    last, since = (-1, -1), time.monotonic()
    while True:
        now = (
            count(db, "SELECT count(*) FROM pings WHERE vehicle_id LIKE %s", prefix),
            count(db, "SELECT sum(missing) FROM ping_gaps WHERE vehicle_id LIKE %s", prefix),
        )
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return now
        time.sleep(0.5)


def run(queue: int, args: argparse.Namespace, database_url: str) -> None:
    prefix = f"L{uuid.uuid4().hex[:4]}-"
    with (
        tempfile.TemporaryDirectory(prefix="rw-loss-") as tmp,
        services.PrivateMosquitto(
            Path(tmp), extra_config=f"max_queued_messages {queue}\n"
        ) as broker,
        engine_process(database_url, broker.url, reorder_allowance_s="5") as engine,
        psycopg.connect(database_url, autocommit=True) as db,
    ):
        engine.start()
        pub = Publisher(broker.port, prefix, args.vehicles, args.pings, args.rate)
        pub.start()
        while pub.sent < args.pings / 3:
            time.sleep(0.01)
        engine.kill()
        time.sleep(args.down_s)
        engine.start()
        pub.join()
        stored, missing = settle(db, prefix)
    published = pub.sent
    print(
        f"max_queued_messages {queue:>9,}: published {published:,}, stored {stored:,}, "
        f"lost {published - stored:,}, reported missing {missing:,}"
        f" -> {'all loss reported' if stored + missing == published else 'MISMATCH'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pings", type=int, default=60_000)
    ap.add_argument("--vehicles", type=int, default=500)
    ap.add_argument("--rate", type=float, default=5_000.0, help="pings per second")
    ap.add_argument("--down-s", type=float, default=3.0, help="engine down this long")
    ap.add_argument("--queue", type=int, action="append", help="max_queued_messages to try")
    args = ap.parse_args()
    server = services.with_dbname(get_settings().database_url, "postgres")
    name = f"rw_loss_{uuid.uuid4().hex[:8]}"
    database_url = services.ensure_database(services.with_dbname(server, name))
    try:
        migrate(database_url)
        for queue in args.queue or [1000, 1_000_000]:
            run(queue, args, database_url)
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
