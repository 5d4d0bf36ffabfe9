-- Persisted alerts: events that need a human's attention (CONTRACT §5 /v1/alerts).
-- An alert is opened by one event (event_id UNIQUE makes a re-delivered batch harmless),
-- closed automatically by its partner event, or acknowledged by a supervisor.
-- stream_id is re-drawn from alerts_stream_seq on every change, so the SSE stream can
-- resume from "everything with stream_id > Last-Event-ID". Writers take a transaction
-- advisory lock before drawing it (store/alerts.py), so ids become visible in order.
CREATE SEQUENCE alerts_stream_seq;

CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    stream_id       bigint NOT NULL UNIQUE DEFAULT nextval('alerts_stream_seq'),
    event_id        uuid NOT NULL UNIQUE,        -- the event that opened it
    type            text NOT NULL,
    severity        text NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acked', 'resolved')),
    trip_id         text,
    vehicle_id      text NOT NULL,
    ts              timestamptz NOT NULL,        -- event time of the opening event
    lat             double precision,
    lon             double precision,
    route_m         double precision,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    acked_at        timestamptz,
    acked_by        text,
    ack_note        text,
    resolved_at     timestamptz,                 -- event time of the resolving event
    resolved_by     text,                        -- resolving event type, or 'supervisor'
    resolved_event_id uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_unresolved ON alerts (trip_id, type) WHERE status <> 'resolved';
CREATE INDEX alerts_status_id ON alerts (status, id);
CREATE INDEX alerts_vehicle_id ON alerts (vehicle_id, id);
CREATE INDEX alerts_ts ON alerts (ts);
