-- The public tracking lookups' rate limit, shared by every API process (several behind a
-- load balancer would otherwise each grant a client the full rate). One token bucket per
-- client address; a row whose bucket has refilled is the same as no row, so old rows are
-- deleted now and then (api/ratelimit.py). UNLOGGED: after a crash every bucket starts
-- full, which is what a restart of an in-memory limiter did.
CREATE UNLOGGED TABLE rate_buckets (
    client   text PRIMARY KEY,
    tokens   double precision NOT NULL,
    at       timestamptz NOT NULL,
    allowed  boolean NOT NULL
);
