"""A small simulated fleet for the fault tests: its plans in the database, its pings in
delivery order, published over MQTT at a steady rate, and the events an uninterrupted
engine derives from them (the reference a disturbed run must match)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from compliance.engine import Engine
from compliance.events import Event
from compliance.plan import TripPlan
from compliance.types import PingBatch
from simulator.faults import parse_faults
from simulator.mqttwire import WirePublisher
from simulator.offline import run
from simulator.scenario import ScenarioConfig

#: every kind of fault the simulator makes, on about two vehicles in three
FAULTS = "speeding=0.15,detour=0.15,unplanned_stop=0.15,late=0.1,signal_loss=0.1,skip_stop=0.1"

Row = tuple[str, int, float, float, float, float, float]  # vehicle_id, ts_ms, lat, lon, ...


@dataclass(frozen=True)
class Fleet:
    plans: list[dict[str, object]]
    rows: list[Row]  # in delivery order: duplicates, reorderings, buffered bursts included

    def unique_pings(self) -> set[tuple[str, int]]:
        return {(r[0], r[1]) for r in self.rows}


def make_fleet(vehicles: int, interval_s: int, duration_s: float, seed: int) -> Fleet:
    prefix = f"F{uuid.uuid4().hex[:5]}"
    cfg = ScenarioConfig(
        vehicles=vehicles,
        seed=seed,
        interval_s=interval_s,
        duration_s=duration_s,
        stagger_s=120,
        stops_per_trip=4,
        faults=parse_faults(FAULTS),
        id_prefix=prefix,
    )
    sim, _, lines = run(cfg)
    rows: list[Row] = []
    for line in lines:
        vid, ts, *nums = line.strip().split(",")
        lat, lon, speed, heading, accuracy = map(float, nums)
        rows.append((vid, int(ts), lat, lon, speed, heading, accuracy))
    return Fleet(sim.plans, rows)


def insert_trips(db: psycopg.Connection, plans: Sequence[dict[str, object]]) -> None:
    """The vehicles and trips (status planned) the engine loads at start-up."""
    with db.transaction():
        for plan in plans:
            db.execute(
                "INSERT INTO vehicles (vehicle_id) VALUES (%s) ON CONFLICT DO NOTHING",
                (plan["vehicle_id"],),
            )
            db.execute(
                "INSERT INTO trips (trip_id, vehicle_id, planned_start, plan, route_length_m)"
                " VALUES (%s, %s, %s::timestamptz, %s, 0)",
                (plan["trip_id"], plan["vehicle_id"], plan["planned_start"], Jsonb(plan)),
            )


def ping_batch(rows: Sequence[Row]) -> PingBatch:
    cols = list(zip(*rows, strict=True))
    lat, lon, speed, heading, accuracy = (np.asarray(c, np.float64) for c in cols[2:7])
    return PingBatch(
        [str(v) for v in cols[0]],
        np.asarray(cols[1], np.int64),
        lat,
        lon,
        speed,
        heading,
        accuracy,
        np.full(len(rows), -1, np.int64),
    )


def reference_events(fleet: Fleet, chunk: int = 100) -> dict[str, Event]:
    """Events of one uninterrupted engine over the pings in delivery order, in batches of
    ``chunk`` with the newest fix as watermark (what ``watermark=event`` does live)."""
    eng = Engine()
    for plan in fleet.plans:
        eng.add_trip(TripPlan.model_validate(plan))
    events: list[Event] = []
    newest_ms = 0
    for i in range(0, len(fleet.rows), chunk):
        batch = ping_batch(fleet.rows[i : i + chunk])
        newest_ms = max(newest_ms, int(batch.ts_ms.max()))
        events += eng.process(batch, newest_ms).events
        events += eng.tick(newest_ms)
    return {e.event_id: e for e in events}


def stored_events(db: psycopg.Connection, vehicle_ids: set[str]) -> list[str]:
    """Event ids in the database for these vehicles (a list: duplicates would show)."""
    rows = db.execute(
        "SELECT event_id::text FROM events WHERE vehicle_id = ANY(%s)", (list(vehicle_ids),)
    ).fetchall()
    return [r[0] for r in rows]


def stored_pings(db: psycopg.Connection, vehicle_ids: set[str]) -> list[tuple[str, int]]:
    rows = db.execute(
        "SELECT vehicle_id, (extract(epoch FROM ts) * 1000)::bigint FROM pings "
        "WHERE vehicle_id = ANY(%s)",
        (list(vehicle_ids),),
    ).fetchall()
    return [(r[0], int(r[1])) for r in rows]


class SteadyPublisher(threading.Thread):
    """Publishes the fleet's pings (one QoS 1 message each) at ``rate_per_s`` in a
    thread, so the test can kill and restart things meanwhile; ``sent`` counts them."""

    def __init__(self, mqtt_url: str, rows: Sequence[Row], rate_per_s: float) -> None:
        super().__init__(name="fleet-publisher", daemon=True)
        url = urlsplit(mqtt_url)
        self.wire = WirePublisher(
            url.hostname or "127.0.0.1", url.port or 1883, f"fleet-{uuid.uuid4().hex[:8]}"
        )
        self.rows = rows
        self.rate_per_s = rate_per_s
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        step = max(1, int(self.rate_per_s / 50))  # 50 writes a second
        t0 = time.monotonic()
        try:
            for i in range(0, len(self.rows), step):
                due = t0 + i / self.rate_per_s
                time.sleep(max(0.0, due - time.monotonic()))
                self.sent += self.wire.publish_many(
                    (f"fleet/{r[0]}/ping", _payload(r)) for r in self.rows[i : i + step]
                )
            if not self.wire.wait_acked(30):
                raise TimeoutError("the broker did not acknowledge every publish")
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout_s: float = 60.0) -> int:
        self.join(timeout_s)
        assert not self.is_alive(), "publisher still running"
        self.wire.close()
        if self.error is not None:
            raise self.error
        return self.sent


def _payload(r: Row) -> str:
    return (
        f'{{"ts":{r[1]},"lat":{r[2]},"lon":{r[3]},"speed":{r[4]},'
        f'"heading":{r[5]},"accuracy":{r[6]}}}'
    )
