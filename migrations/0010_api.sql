-- API bearer tokens, proof of delivery, and the OMS webhook outbox.

-- Only a sha256 of each token is kept; the token itself is shown once at creation.
CREATE TABLE api_tokens (
    token_id     bigserial PRIMARY KEY,
    name         text,
    roles        text[] NOT NULL CHECK (roles <@ ARRAY['oms', 'supervisor', 'driver']
                                        AND cardinality(roles) > 0),
    token_hash   text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- The ETA the OMS was last told about, so only moves beyond the threshold notify again.
ALTER TABLE orders ADD COLUMN notified_eta timestamptz;

-- Electronic proof of delivery, one per order. Images are kept in the database (bytea)
-- so they share its backups and transactions; each carries its own sha256.
CREATE TABLE pod (
    order_id          text PRIMARY KEY REFERENCES orders (order_id) ON DELETE CASCADE,
    recipient_name    text NOT NULL,
    condition         text NOT NULL CHECK (condition IN ('ok', 'damaged')),
    notes             text,
    device_ts         timestamptz,
    lat               double precision,
    lon               double precision,
    distance_m        double precision,          -- from the planned stop location
    flagged           boolean NOT NULL DEFAULT false,
    flag_reasons      text[] NOT NULL DEFAULT '{}',
    received_at       timestamptz NOT NULL DEFAULT now(),
    submitted_by      bigint REFERENCES api_tokens (token_id)
);

CREATE TABLE pod_images (
    order_id    text NOT NULL REFERENCES pod (order_id) ON DELETE CASCADE,
    seq         integer NOT NULL,                 -- 0 = signature, 1.. = photos
    kind        text NOT NULL CHECK (kind IN ('signature', 'photo')),
    media_type  text NOT NULL CHECK (media_type IN ('image/png', 'image/jpeg')),
    data        bytea NOT NULL,
    sha256      text NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- Durable OMS webhooks. The body is stored as the exact bytes that are signed and sent,
-- so every retry is byte-identical and carries the same Idempotency-Key.
CREATE TABLE webhook_outbox (
    id               bigserial PRIMARY KEY,
    idempotency_key  uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    order_id         text NOT NULL,
    kind             text NOT NULL,               -- status / eta
    body             text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_order ON webhook_outbox (order_id, id) WHERE state = 'pending';
