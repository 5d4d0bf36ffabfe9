-- TimescaleDB where this database can have it; plain PostgreSQL indexes otherwise.
-- The btree (vehicle_id, ts) both paths need is the primary key of pings.
--
-- TimescaleDB is used when the database already has the extension (a database on
-- TimescaleDB stays on it), or when the server preloads it (shared_preload_libraries):
-- CREATE EXTENSION on a server that does not preload it fails and closes the connection,
-- so an installed but not preloaded extension means plain PostgreSQL (store/migrate.py
-- logs how to enable it). `SET routewatch.timescaledb = off` before migrating keeps a
-- new database on plain PostgreSQL (the storage benchmark compares the two).
-- Needs the columnstore API (TimescaleDB 2.18+). Further features: 0032.
DO $$
DECLARE
    installed boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb');
    wanted boolean := coalesce(current_setting('routewatch.timescaledb', true), '') <> 'off';
    preloaded boolean := current_setting('shared_preload_libraries')
                         ~ '(^|[\s,/])timescaledb\s*(,|$)';
    available boolean := EXISTS (SELECT 1 FROM pg_available_extensions
                                  WHERE name = 'timescaledb');
BEGIN
    IF NOT installed AND wanted AND preloaded AND available THEN
        CREATE EXTENSION timescaledb;
        installed := true;
    END IF;
    IF installed THEN
        IF to_regproc('add_columnstore_policy') IS NULL THEN
            RAISE EXCEPTION 'routewatch needs TimescaleDB 2.18 or newer (the columnstore API); '
                            'this database has %',
                (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')
                USING HINT = 'ALTER EXTENSION timescaledb UPDATE after installing a newer one';
        END IF;
        PERFORM create_hypertable('pings', by_range('ts', interval '1 day'),
                                  if_not_exists => true, migrate_data => true);
        PERFORM create_hypertable('events', by_range('ts', interval '1 day'),
                                  if_not_exists => true, migrate_data => true);
        -- One compressed batch per vehicle and chunk, newest fix first: a vehicle's track
        -- is read from one segment, and the newest rows (what queries want) come first.
        ALTER TABLE pings SET (timescaledb.enable_columnstore,
                               timescaledb.segmentby = 'vehicle_id',
                               timescaledb.orderby = 'ts DESC');
        ALTER TABLE events SET (timescaledb.enable_columnstore,
                                timescaledb.segmentby = 'vehicle_id',
                                timescaledb.orderby = 'ts DESC');
        CALL add_columnstore_policy('pings', after => interval '3 days', if_not_exists => true);
        CALL add_columnstore_policy('events', after => interval '7 days', if_not_exists => true);
        PERFORM add_retention_policy('pings', interval '180 days', if_not_exists => true);
    ELSE
        CREATE INDEX IF NOT EXISTS pings_ts_brin ON pings USING brin (ts);
        CREATE INDEX IF NOT EXISTS events_ts_brin ON events USING brin (ts);
    END IF;
END
$$;
