-- Pings lost on the way made visible (issue: a broker's queue limit dropped a fifth of a
-- run, and nothing said so). Trackers number their fixes ("seq", CONTRACT §1); the engine
-- follows each tracker's numbers (ingest/seqgaps.py) and counts the ones never received.
--
-- tracker_seq: each tracker's position in its numbering, written in the same transaction
-- as the pings, so a restarted engine carries on where the committed pings end.
CREATE TABLE tracker_seq (
    vehicle_id  text PRIMARY KEY,
    last_seq    bigint NOT NULL,           -- highest seq received
    last_ts     timestamptz NOT NULL,      -- fix time of that ping (a restart has a newer one)
    seen_mask   bigint NOT NULL,           -- bit i set: seq last_seq-1-i received
    missing     bigint NOT NULL DEFAULT 0, -- numbers skipped and not (yet) received
    gaps        bigint NOT NULL DEFAULT 0, -- times the numbering jumped
    restarts    bigint NOT NULL DEFAULT 0, -- times it started over with a newer fix
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- ping_gaps: one row per jump in a tracker's numbering that is still (partly) open once
-- the reorder allowance has passed, with the numbers missing then; "missing in the last
-- minutes" is a sum over detected_at.
CREATE TABLE ping_gaps (
    id           bigserial NOT NULL,
    detected_at  timestamptz NOT NULL DEFAULT now(),
    vehicle_id   text NOT NULL,
    after_seq    bigint NOT NULL,
    next_seq     bigint NOT NULL,
    missing      bigint NOT NULL,
    PRIMARY KEY (id, detected_at)
);
CREATE INDEX ping_gaps_detected ON ping_gaps (detected_at);
CREATE INDEX ping_gaps_vehicle ON ping_gaps (vehicle_id, detected_at);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('ping_gaps', by_range('detected_at', interval '1 day'));
        PERFORM add_retention_policy('ping_gaps', interval '30 days');
    END IF;
END
$$;
