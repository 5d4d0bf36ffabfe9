-- Which pings were committed after an engine checkpoint (ingest/recovery.py).
-- commit_xid is the 64-bit id of the transaction that stored the ping (txid_current(),
-- epoch-extended, so it never wraps); the checkpoint records the id of the transaction
-- it was saved in. The engine commits one batch per transaction, one after another, so
-- "commit_xid > the checkpoint's" is exactly "committed after the checkpoint", and equal
-- ids are one batch. A column default: the COPY path writes it without naming it.
-- Rows stored before this migration get 0: committed before any checkpoint. (The column
-- is added with that constant and the default set afterwards: TimescaleDB refuses a
-- non-constant default in ADD COLUMN on a hypertable with the columnstore enabled.)
ALTER TABLE pings ADD COLUMN commit_xid bigint NOT NULL DEFAULT 0;
ALTER TABLE pings ALTER COLUMN commit_xid SET DEFAULT txid_current();
ALTER TABLE engine_checkpoints ADD COLUMN commit_xid bigint;
-- Ids only grow along the table, so a BRIN index finds the recent commits for almost no
-- write cost (ranges not yet summarised are always scanned, and those are the recent ones).
CREATE INDEX pings_commit_xid_brin ON pings USING brin (commit_xid);
