-- TimescaleDB where it is installed; plain PostgreSQL indexes otherwise.
-- The btree (vehicle_id, ts) both paths need is the primary key of pings.
-- The guards (if_not_exists) also make a manual re-run harmless.
DO $$
DECLARE
    has_tsdb boolean := EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb');
BEGIN
    IF has_tsdb THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('pings', 'ts', chunk_time_interval => interval '1 day',
                                  if_not_exists => true, migrate_data => true);
        PERFORM create_hypertable('events', 'ts', chunk_time_interval => interval '1 day',
                                  if_not_exists => true, migrate_data => true);
        ALTER TABLE pings SET (timescaledb.compress,
                               timescaledb.compress_segmentby = 'vehicle_id',
                               timescaledb.compress_orderby = 'ts DESC');
        ALTER TABLE events SET (timescaledb.compress,
                                timescaledb.compress_segmentby = 'vehicle_id',
                                timescaledb.compress_orderby = 'ts DESC');
        PERFORM add_compression_policy('pings', interval '3 days', if_not_exists => true);
        PERFORM add_compression_policy('events', interval '7 days', if_not_exists => true);
        PERFORM add_retention_policy('pings', interval '180 days', if_not_exists => true);
    ELSE
        CREATE INDEX IF NOT EXISTS pings_ts_brin ON pings USING brin (ts);
        CREATE INDEX IF NOT EXISTS events_ts_brin ON events USING brin (ts);
    END IF;
END
$$;
