-- Daily per-vehicle event KPIs as a TimescaleDB continuous aggregate (store/reports.py).
-- Only where the extension is installed (0002 creates it when available); plain
-- PostgreSQL computes the same sums from `events` at query time.
--
-- Why it can live in a DO block inside the migration transaction: only the WITH DATA
-- form refreshes at creation and so refuses transaction blocks and functions
-- ("CREATE MATERIALIZED VIEW ... WITH DATA cannot be executed from a function");
-- WITH NO DATA does not. The refresh policy fills it in the background, and
-- materialized_only = false (real-time aggregation) adds the not-yet-materialised tail
-- at query time, so reports match the raw path immediately.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE $sql$
            CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_daily_vehicle
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 day', ts) AS day,
                   vehicle_id,
                   count(*) FILTER (WHERE type = 'speeding') AS speeding_events,
                   coalesce(sum((details->>'duration_s')::float8)
                            FILTER (WHERE type = 'speeding_ended'), 0) AS speeding_s,
                   coalesce(sum((details->>'duration_s')::float8)
                            FILTER (WHERE type = 'unplanned_stop_ended'), 0) AS unplanned_stop_s
              FROM events
             GROUP BY 1, 2
            WITH NO DATA
        $sql$;
        PERFORM add_continuous_aggregate_policy('kpi_daily_vehicle',
            start_offset => INTERVAL '35 days',
            end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '30 minutes',
            if_not_exists => true);
    END IF;
END
$$;
