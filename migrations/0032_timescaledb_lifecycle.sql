-- TimescaleDB features beyond 0002, each for a reason; nothing here on plain PostgreSQL.
--
-- * Engine recovery reads "pings WHERE commit_xid > the checkpoint's" (ingest/recovery.py).
--   In compressed chunks the BRIN index on commit_xid is gone; a minmax sparse index keeps
--   each compressed batch's commit_xid range beside it, so the scan drops every batch
--   committed before the checkpoint without decompressing it. (Chunk skipping would leave
--   whole chunks out at planning time, but it is experimental, and with it on, chunks
--   created by a session that had it off are left out of results: pings would be missed.)
--   Likewise a bloom filter on events.event_id for the look-up of regenerated events.
--   The setting exists from TimescaleDB 2.22; before that, recovery decompresses to look.
-- * rejected_pings is an append-only time series that a broken or hostile tracker can
--   flood: a hypertable (its key must hold the time column) with 30 days of retention.
-- * events are kept 400 days (more than the 366 days a delivery report may span), and
--   the daily KPI aggregate (0021), which the reports read for whole days, 5 years: the
--   aggregate's refresh window (35 days) is far inside the events' retention, so dropping
--   old events never empties it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        IF (SELECT regexp_match(extversion, '^(\d+)\.(\d+)')::int[]
              FROM pg_extension WHERE extname = 'timescaledb') >= '{2,22}' THEN
            ALTER TABLE pings SET (timescaledb.compress_index = 'minmax("commit_xid")');
            -- recovery's look-up of regenerated event ids (a bloom filter per batch)
            ALTER TABLE events SET (timescaledb.compress_index = 'bloom("event_id")');
        ELSE
            RAISE NOTICE 'TimescaleDB before 2.22: engine recovery decompresses old chunks';
        END IF;

        ALTER TABLE rejected_pings DROP CONSTRAINT rejected_pings_pkey;
        ALTER TABLE rejected_pings ADD PRIMARY KEY (id, received_at);
        PERFORM create_hypertable('rejected_pings', by_range('received_at', interval '1 day'),
                                  migrate_data => true);
        PERFORM add_retention_policy('rejected_pings', interval '30 days');

        PERFORM add_retention_policy('events', interval '400 days', if_not_exists => true);
        PERFORM add_retention_policy('kpi_daily_vehicle', interval '5 years',
                                     if_not_exists => true);
    END IF;
END
$$;
