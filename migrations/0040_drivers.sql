-- Drivers (issue #17, part 2): every trip may name the driver dispatch assigned to it, and
-- what the control room measures per driver (speeding, stops, lateness) is attributed to
-- that driver.
--
-- * drivers: the registry; deactivated drivers keep their rows (their trips, events and
--   scorecards stay readable) but new plans may not name them and their tokens may not
--   submit proofs of delivery (store/drivers.py, api/routes/drivers.py).
-- * trips.driver_id: the plan's driver (NULL: no driver named); replacing the plan may
--   change it.
-- * api_tokens.driver_id: a driver token bound to one driver may submit proofs of
--   delivery only for that driver's trips (api/routes/orders.py).
-- * events.driver_id / alerts.driver_id: the trip's driver when the event was stored or
--   the alert opened, copied from the trip row at that moment (store/events.py, the
--   trigger below), so re-planning a trip with another driver does not move what the
--   first driver already did. The compliance engine itself knows nothing of drivers.
CREATE TABLE drivers (
    driver_id   text PRIMARY KEY CHECK (driver_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name        text,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE trips ADD COLUMN driver_id text REFERENCES drivers (driver_id);
CREATE INDEX trips_driver ON trips (driver_id, planned_start) WHERE driver_id IS NOT NULL;

ALTER TABLE api_tokens ADD COLUMN driver_id text REFERENCES drivers (driver_id);
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_driver_role
    CHECK (driver_id IS NULL OR 'driver' = ANY (roles));

-- Nullable and without a default: allowed on a hypertable with compressed chunks.
ALTER TABLE events ADD COLUMN driver_id text;
CREATE INDEX events_driver ON events (driver_id, ts) WHERE driver_id IS NOT NULL;

ALTER TABLE alerts ADD COLUMN driver_id text;
CREATE INDEX alerts_driver_id ON alerts (driver_id, id) WHERE driver_id IS NOT NULL;

-- Every writer of alerts (store/alerts.py for engine events and raise_alert, and the
-- database's own pod_review / stop_skipped alerts of 0022) gets the trip's driver.
CREATE FUNCTION routewatch_alert_driver() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.driver_id IS NULL AND NEW.trip_id IS NOT NULL THEN
        SELECT driver_id INTO NEW.driver_id FROM trips WHERE trip_id = NEW.trip_id;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER alert_driver BEFORE INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION routewatch_alert_driver();
