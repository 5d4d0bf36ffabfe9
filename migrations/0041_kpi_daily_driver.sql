-- Daily per-driver event KPIs for the driver scorecard (store/scorecard.py), as a
-- TimescaleDB continuous aggregate; only where the extension is installed. Plain
-- PostgreSQL computes the same sums from `events` at query time (events_driver index of
-- 0040). Same form and reasons as kpi_daily_vehicle (0021): WITH NO DATA inside the
-- migration's transaction, real-time (materialized_only = false) so the tail not yet
-- materialised is read from `events`, a refresh policy over the last 35 days, and kept 5
-- years (0032's reasoning: the refresh window is far inside the events' 400 days).
--
-- events.driver_id is the trip's driver when the event was stored (0040) and never
-- changes afterwards, so what the aggregate has materialised stays true.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE $sql$
            CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_daily_driver
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 day', ts) AS day,
                   driver_id,
                   count(*) FILTER (WHERE type = 'trip_started') AS trips,
                   count(*) FILTER (WHERE type = 'stop_arrived') AS stops_served,
                   count(*) FILTER (WHERE type = 'speeding') AS speeding_events,
                   coalesce(sum((details->>'duration_s')::float8)
                            FILTER (WHERE type = 'speeding_ended'), 0) AS speeding_s,
                   coalesce(sum((details->>'off_route_s')::float8)
                            FILTER (WHERE type = 'back_on_route'), 0) AS off_route_s,
                   count(*) FILTER (WHERE type = 'unplanned_stop') AS unplanned_stops,
                   coalesce(sum((details->>'duration_s')::float8)
                            FILTER (WHERE type = 'unplanned_stop_ended'), 0) AS unplanned_stop_s
              FROM events
             WHERE driver_id IS NOT NULL
             GROUP BY 1, 2
            WITH NO DATA
        $sql$;
        PERFORM add_continuous_aggregate_policy('kpi_daily_driver',
            start_offset => INTERVAL '35 days',
            end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '30 minutes',
            if_not_exists => true);
        PERFORM add_retention_policy('kpi_daily_driver', INTERVAL '5 years',
                                     if_not_exists => true);
    END IF;
END
$$;
