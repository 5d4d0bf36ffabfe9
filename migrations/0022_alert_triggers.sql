-- Alerts that no compliance event carries, raised by the database itself so that every
-- writer (POD endpoint, order lifecycle) gets them without having to remember:
--   pod_review   — a proof of delivery flagged for review, or reporting damaged goods;
--   stop_skipped — a planned stop marked skipped.
-- Same rules as store/alerts.py: one alert per cause (a deterministic event_id), the
-- stream-order advisory lock before drawing a stream id, NOTIFY on commit.

CREATE FUNCTION routewatch_open_alert(cause text, a_type text, a_trip text, a_ts timestamptz,
                                      a_lat double precision, a_lon double precision,
                                      a_details jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_vehicle text;
    v_stream bigint;
BEGIN
    SELECT vehicle_id INTO v_vehicle FROM trips WHERE trip_id = a_trip;
    IF v_vehicle IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1381450060);  -- store.alerts._STREAM_LOCK_KEY
    INSERT INTO alerts (event_id, type, severity, trip_id, vehicle_id, ts, lat, lon, details)
    VALUES (md5('routewatch-alert|' || cause)::uuid, a_type, 'warning', a_trip, v_vehicle,
            a_ts, a_lat, a_lon, a_details)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING stream_id INTO v_stream;
    IF v_stream IS NOT NULL THEN
        PERFORM pg_notify('routewatch_alerts', v_stream::text);
    END IF;
END
$$;

CREATE FUNCTION routewatch_pod_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o record;
BEGIN
    IF (NEW.flagged OR NEW.condition = 'damaged')
       AND (TG_OP = 'INSERT' OR NOT (OLD.flagged OR OLD.condition = 'damaged')) THEN
        SELECT trip_id, stop_id INTO o FROM orders WHERE order_id = NEW.order_id;
        PERFORM routewatch_open_alert(
            'pod_review|' || NEW.order_id, 'pod_review', o.trip_id,
            coalesce(NEW.device_ts, NEW.received_at), NEW.lat, NEW.lon,
            jsonb_build_object('order_id', NEW.order_id, 'stop_id', o.stop_id,
                               'condition', NEW.condition, 'reasons', to_jsonb(NEW.flag_reasons),
                               'distance_m', NEW.distance_m));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER pod_review_alert AFTER INSERT OR UPDATE OF flagged, condition ON pod
    FOR EACH ROW EXECUTE FUNCTION routewatch_pod_alert();

CREATE FUNCTION routewatch_skipped_stop_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM routewatch_open_alert(
        'stop_skipped|' || NEW.trip_id || '|' || NEW.stop_id, 'stop_skipped', NEW.trip_id,
        now(), NEW.lat, NEW.lon,
        jsonb_build_object('stop_id', NEW.stop_id, 'order_id', NEW.order_id,
                           'window_end', NEW.window_end));
    RETURN NEW;
END
$$;

CREATE TRIGGER stop_skipped_alert AFTER UPDATE OF status ON stops
    FOR EACH ROW WHEN (NEW.status = 'skipped' AND OLD.status IS DISTINCT FROM 'skipped')
    EXECUTE FUNCTION routewatch_skipped_stop_alert();
