-- routewatch core schema. Plain PostgreSQL 15; TimescaleDB features are added by
-- 0002_timescaledb.sql only when the extension is available.
-- Conventions: times are timestamptz, distances metres, speeds km/h.

CREATE TABLE vehicles (
    vehicle_id   text PRIMARY KEY CHECK (vehicle_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    label        text,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE trips (
    trip_id        text PRIMARY KEY,
    vehicle_id     text NOT NULL REFERENCES vehicles (vehicle_id),
    planned_start  timestamptz NOT NULL,
    plan           jsonb NOT NULL,             -- the CONTRACT §3 plan as accepted
    route_length_m double precision NOT NULL,
    status         text NOT NULL DEFAULT 'planned'
                   CHECK (status IN ('planned', 'active', 'completed', 'cancelled', 'replaced')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trips_vehicle_status ON trips (vehicle_id, status);

CREATE TABLE stops (
    trip_id          text NOT NULL REFERENCES trips (trip_id) ON DELETE CASCADE,
    seq              integer NOT NULL,          -- 0-based order along the trip
    stop_id          text NOT NULL,
    order_id         text,
    lon              double precision NOT NULL,
    lat              double precision NOT NULL,
    route_m          double precision NOT NULL, -- where the stop projects onto the route
    radius_m         double precision NOT NULL,
    planned_arrival  timestamptz,
    window_start     timestamptz,
    window_end       timestamptz,
    service_s        double precision NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'arrived', 'departed', 'skipped')),
    arrived_at       timestamptz,
    departed_at      timestamptz,
    eta              timestamptz,
    eta_low          timestamptz,
    eta_high         timestamptz,
    PRIMARY KEY (trip_id, seq),
    UNIQUE (trip_id, stop_id)
);

CREATE TABLE orders (
    order_id         text PRIMARY KEY,
    tracking_number  text NOT NULL UNIQUE,
    trip_id          text NOT NULL REFERENCES trips (trip_id),
    stop_id          text NOT NULL,
    status           text NOT NULL DEFAULT 'scheduled'
                     CHECK (status IN ('scheduled', 'out_for_delivery', 'arriving',
                                       'delivered', 'failed', 'cancelled')),
    eta              timestamptz,
    eta_low          timestamptz,
    eta_high         timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_trip ON orders (trip_id);

CREATE TABLE order_status_history (
    id          bigserial PRIMARY KEY,
    order_id    text NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    status      text NOT NULL,
    ts          timestamptz NOT NULL,
    reason      text,
    event_id    uuid
);
CREATE INDEX order_status_history_order ON order_status_history (order_id, ts);

-- Every accepted ping, once per (vehicle_id, ts), with the match result when the
-- vehicle was on a trip.
CREATE TABLE pings (
    vehicle_id   text NOT NULL,
    ts           timestamptz NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    real,
    heading_deg  real,
    accuracy_m   real,
    seq          bigint,
    received_at  timestamptz NOT NULL DEFAULT now(),
    trip_id      text,
    route_m      double precision,
    offset_m     double precision,
    on_route     boolean,
    PRIMARY KEY (vehicle_id, ts)
);

-- Bad input is never dropped silently: each rejected ping or payload, with why.
CREATE TABLE rejected_pings (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    vehicle_id   text,
    reason       text NOT NULL,
    detail       text,
    payload      bytea                       -- the offending item, truncated to 4 KiB
);
CREATE INDEX rejected_pings_received ON rejected_pings (received_at);
CREATE INDEX rejected_pings_reason ON rejected_pings (reason, received_at);

-- CONTRACT §4 events. event_id is deterministic (see compliance/events.py), so a
-- re-delivered batch inserts nothing new.
CREATE TABLE events (
    event_id    uuid NOT NULL,
    ts          timestamptz NOT NULL,
    type        text NOT NULL,
    trip_id     text NOT NULL,
    vehicle_id  text NOT NULL,
    lat         double precision,
    lon         double precision,
    route_m     double precision,
    severity    text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, ts)
);
CREATE INDEX events_trip ON events (trip_id, ts);
CREATE INDEX events_vehicle ON events (vehicle_id, ts);
CREATE INDEX events_type ON events (type, ts);

-- Live state per vehicle, upserted by the engine after each batch (what /v1/vehicles shows).
CREATE TABLE vehicle_state (
    vehicle_id        text PRIMARY KEY,
    ts                timestamptz NOT NULL,
    lat               double precision NOT NULL,
    lon               double precision NOT NULL,
    speed_kmh         real,
    heading_deg       real,
    trip_id           text,
    route_m           double precision,
    offset_m          double precision,
    on_route          boolean,
    schedule_delay_s  double precision,
    status            text,                     -- moving / stopped / off_route / signal_lost ...
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Compliance engine checkpoints, so a restarted worker carries on mid-trip.
CREATE TABLE engine_checkpoints (
    vehicle_id   text PRIMARY KEY,
    trip_id      text,
    ts           timestamptz NOT NULL,          -- event time the state covers up to
    state        bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
