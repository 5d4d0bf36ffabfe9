"""A small, good-looking control-room scene inserted straight into the database: three
trips on Jakarta streets with their drivers and stops, live vehicle states, stored pings,
and a week of delivered orders so the KPI charts have something to show."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

# Hand-drawn street-like routes, [lon, lat].
ROUTES: dict[str, list[list[float]]] = {
    "TRK-A": [
        [106.8200, -6.1750],
        [106.8235, -6.1762],
        [106.8270, -6.1790],
        [106.8282, -6.1835],
        [106.8310, -6.1868],
        [106.8355, -6.1880],
        [106.8398, -6.1902],
        [106.8420, -6.1945],
    ],
    "TRK-B": [
        [106.8150, -6.1950],
        [106.8188, -6.1932],
        [106.8215, -6.1960],
        [106.8248, -6.1991],
        [106.8261, -6.2035],
        [106.8300, -6.2061],
        [106.8338, -6.2049],
        [106.8372, -6.2080],
    ],
    "TRK-C": [
        [106.8430, -6.1790],
        [106.8402, -6.1820],
        [106.8398, -6.1860],
        [106.8450, -6.1890],
        [106.8490, -6.1922],
        [106.8478, -6.1970],
        [106.8512, -6.2005],
    ],
}
#: vehicle -> (trip, index of the route vertex it is near, status, on_route, delay_s)
VEHICLES = {
    "TRK-A": ("T-A", 3, "moving", True, 120.0),
    "TRK-B": ("T-B", 4, "off_route", False, 300.0),
    "TRK-C": ("T-C", 2, "moving", True, 1500.0),
}


#: vehicle -> (driver_id, name) of its live trip
DRIVERS = {
    "TRK-A": ("DRV-01", "Budi Santoso"),
    "TRK-B": ("DRV-02", "Siti Rahma"),
    "TRK-C": ("DRV-03", "Agus Wijaya"),
}


def _interp(coords: list[list[float]], idx: int, frac: float) -> tuple[float, float]:
    a, b = coords[idx], coords[min(idx + 1, len(coords) - 1)]
    return a[0] + (b[0] - a[0]) * frac, a[1] + (b[1] - a[1]) * frac


def vehicle_position(vehicle_id: str, frac: float = 0.3) -> tuple[float, float]:
    _, idx, status, _, _ = VEHICLES[vehicle_id]
    lon, lat = _interp(ROUTES[vehicle_id], idx, frac)
    if status == "off_route":
        lat -= 0.0018  # ~200 m beside the route
    return lon, lat


def set_vehicle(db: psycopg.Connection, vehicle_id: str, frac: float) -> tuple[float, float]:
    trip, _, status, on_route, delay_s = VEHICLES[vehicle_id]
    lon, lat = vehicle_position(vehicle_id, frac)
    db.execute(
        """INSERT INTO vehicle_state (vehicle_id, ts, lat, lon, speed_kmh, heading_deg, trip_id,
                                      route_m, offset_m, on_route, schedule_delay_s, status,
                                      updated_at)
           VALUES (%s, now(), %s, %s, 32, 120, %s, %s, %s, %s, %s, %s, clock_timestamp())
           ON CONFLICT (vehicle_id) DO UPDATE SET
               ts = excluded.ts, lat = excluded.lat, lon = excluded.lon,
               route_m = excluded.route_m, updated_at = clock_timestamp()""",
        (
            vehicle_id,
            lat,
            lon,
            trip,
            1800 + 400 * frac,
            200.0 if not on_route else 4.0,
            on_route,
            delay_s,
            status,
        ),
    )
    return lon, lat


def insert_scene(db: psycopg.Connection) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=40)
    for vehicle_id, coords in ROUTES.items():
        trip = VEHICLES[vehicle_id][0]
        driver_id, driver_name = DRIVERS[vehicle_id]
        db.execute(
            "INSERT INTO vehicles (vehicle_id) VALUES (%s) ON CONFLICT DO NOTHING", (vehicle_id,)
        )
        db.execute(
            "INSERT INTO drivers (driver_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (driver_id, driver_name),
        )
        plan = {
            "trip_id": trip,
            "vehicle_id": vehicle_id,
            "driver_id": driver_id,
            "planned_start": start.isoformat(),
            "route": {"type": "LineString", "coordinates": coords},
            "corridor_m": 50,
        }
        db.execute(
            "INSERT INTO trips (trip_id, vehicle_id, driver_id, planned_start, plan, "
            "route_length_m, status) VALUES (%s, %s, %s, %s, %s, 3200, 'active')",
            (trip, vehicle_id, driver_id, start, json.dumps(plan)),
        )
        for seq, vertex in enumerate((2, 5, len(coords) - 1)):
            lon, lat = coords[vertex]
            window_start = start + timedelta(minutes=20 + 25 * seq)
            done = seq == 0
            db.execute(
                "INSERT INTO stops (trip_id, seq, stop_id, order_id, lon, lat, route_m, "
                "radius_m, planned_arrival, window_start, window_end, service_s, status, "
                "arrived_at, departed_at, eta, eta_low, eta_high) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, 75, %s, %s, %s, 300, %s, %s, %s, %s, %s, %s)",
                (
                    trip,
                    seq,
                    f"S{seq + 1}",
                    f"ORD-{trip}-{seq + 1}",
                    lon,
                    lat,
                    450.0 * vertex,
                    window_start + timedelta(minutes=10),
                    window_start,
                    window_start + timedelta(minutes=30),
                    "departed" if done else "pending",
                    window_start + timedelta(minutes=8) if done else None,
                    window_start + timedelta(minutes=14) if done else None,
                    None if done else window_start + timedelta(minutes=18),
                    None if done else window_start + timedelta(minutes=12),
                    None if done else window_start + timedelta(minutes=26),
                ),
            )
        # The track driven so far: the route up to the vehicle, with a little GPS wobble.
        _, idx, _, _, _ = VEHICLES[vehicle_id]
        rows = []
        for i in range(idx * 4 + 2):
            lon, lat = _interp(coords, i // 4, (i % 4) / 4)
            wobble = 0.00006 * ((i * 7919) % 5 - 2)
            rows.append((vehicle_id, start + timedelta(seconds=30 * i), lat + wobble, lon, trip))
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO pings (vehicle_id, ts, lat, lon, trip_id, on_route) "
                "VALUES (%s, %s, %s, %s, %s, true)",
                rows,
            )
        set_vehicle(db, vehicle_id, 0.3)
    _insert_history(db, now)


#: the week's drivers: (driver_id, name, habit); the first three drive the live trips too
HISTORY_DRIVERS = [
    ("DRV-01", "Budi Santoso", None),
    ("DRV-02", "Siti Rahma", "stops"),
    ("DRV-03", "Agus Wijaya", "speeding"),
    ("DRV-04", "Rina Siregar", "detours"),
    ("DRV-05", "Joko Pratama", "speeding now and then"),
]


def _insert_history(db: psycopg.Connection, now: datetime) -> None:
    """A week of finished trips, one per driver and day: 6-12 deliveries a day (most on
    time, most with POD), each trip's fixes, and its events as the engine would have
    stored them with the driver — so the delivery KPIs and the driver scorecard have
    something to show."""
    today = now.replace(hour=0, minute=0, second=0)
    for k, (driver_id, name, _habit) in enumerate(HISTORY_DRIVERS):
        db.execute(
            "INSERT INTO drivers (driver_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (driver_id, name),
        )
        db.execute(
            "INSERT INTO vehicles (vehicle_id) VALUES (%s) ON CONFLICT DO NOTHING", (f"HIST-{k}",)
        )
    for day in range(7):
        d0 = today - timedelta(days=6 - day)
        trips = [f"H-{day}-{k}" for k in range(len(HISTORY_DRIVERS))]
        for k, (trip, (driver_id, _, habit)) in enumerate(zip(trips, HISTORY_DRIVERS, strict=True)):
            start = d0 + timedelta(hours=1, minutes=7 * k)
            db.execute(
                "INSERT INTO trips (trip_id, vehicle_id, driver_id, planned_start, plan, "
                "route_length_m, status) VALUES (%s, %s, %s, %s, '{}', 20000, 'completed')",
                (trip, f"HIST-{k}", driver_id, start),
            )
            _history_drive(db, trip, f"HIST-{k}", driver_id, habit, start, day)
        for n in range(6 + (day * 5) % 7):
            trip = trips[n % len(trips)]
            window = d0 + timedelta(hours=1, minutes=20 * n)
            late = (n + day) % 6 == 0
            arrived = window + timedelta(minutes=45 if late else 12)
            order = f"H-{day}-{n}"
            db.execute(
                "INSERT INTO stops (trip_id, seq, stop_id, order_id, lon, lat, route_m, "
                "radius_m, window_start, window_end, service_s, status, arrived_at) VALUES "
                "(%s, %s, %s, %s, 106.83, -6.19, 0, 75, %s, %s, 300, 'departed', %s)",
                (trip, n, f"S{n}", order, window, window + timedelta(minutes=30), arrived),
            )
            db.execute(
                "INSERT INTO orders (order_id, tracking_number, trip_id, stop_id, status, "
                "created_at) VALUES (%s, %s, %s, %s, 'delivered', %s)",
                (order, f"TN-{order}", trip, f"S{n}", d0),
            )
            db.execute(
                "INSERT INTO order_status_history (order_id, status, ts) "
                "VALUES (%s, 'delivered', %s)",
                (order, arrived + timedelta(minutes=4)),
            )
            if (n + 2 * day) % 9:
                db.execute(
                    "INSERT INTO pod (order_id, recipient_name, condition) "
                    "VALUES (%s, 'Recipient', 'ok')",
                    (order,),
                )


def _history_drive(
    db: psycopg.Connection,
    trip: str,
    vehicle: str,
    driver_id: str,
    habit: str | None,
    start: datetime,
    day: int,
) -> None:
    """24 fixes a minute apart (the distance integrates their speeds: about 20 km) and the
    events of one past trip: start, stops, and what the driver's habit brings."""
    speed = 50 + 2 * (sum(map(ord, trip)) % 5)
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO pings (vehicle_id, ts, lat, lon, speed_kmh, trip_id, on_route) "
            "VALUES (%s, %s, -6.19, %s, %s, %s, true)",
            [
                (vehicle, start + timedelta(minutes=i), 106.80 + 0.008 * i, speed, trip)
                for i in range(25)
            ],
        )
    events: list[tuple[int, str, dict[str, float]]] = [(0, "trip_started", {})]
    events += [(4 + 5 * n, "stop_arrived", {}) for n in range(3)]
    if habit == "speeding":
        events += [(6, "speeding", {}), (8, "speeding_ended", {"duration_s": 95.0 + 5 * day})]
        events += [(16, "speeding", {}), (17, "speeding_ended", {"duration_s": 70.0})]
    elif habit == "speeding now and then" and day % 2:
        events += [(12, "speeding", {}), (13, "speeding_ended", {"duration_s": 40.0})]
    elif habit == "stops" and day % 3 == 0:
        events += [(10, "unplanned_stop", {}), (14, "unplanned_stop_ended", {"duration_s": 240.0})]
    elif habit == "detours" and day % 2 == 0:
        events += [(18, "back_on_route", {"off_route_s": 260.0})]
    for minute, type_, details in events:
        db.execute(
            "INSERT INTO events (event_id, ts, type, trip_id, vehicle_id, severity, details, "
            "driver_id) VALUES (gen_random_uuid(), %s, %s, %s, %s, 'info', %s, %s)",
            (
                start + timedelta(minutes=minute),
                type_,
                trip,
                vehicle,
                json.dumps(details),
                driver_id,
            ),
        )
