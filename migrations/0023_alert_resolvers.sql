-- Resolving events already applied to alerts (store/alerts.py). Resolution follows the
-- order the engine emitted events in — a partner's event time can precede its opener's
-- when pings arrive late — so idempotency cannot lean on timestamps: a resolver event is
-- applied at most once, recorded here in the same transaction.
CREATE TABLE alert_resolvers (
    event_id    uuid PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
