-- Webhooks (O5): the SQLite migration 0013_webhooks.sql, in PostgreSQL's types.

CREATE TABLE webhooks (
    id                  UUID PRIMARY KEY,
    namespace           TEXT NOT NULL,
    url                 TEXT NOT NULL,
    description         TEXT NOT NULL,
    types               TEXT NOT NULL,
    collections         TEXT NOT NULL,
    state               TEXT NOT NULL,
    disabled_reason     TEXT,
    secret              TEXT NOT NULL,
    previous_secret     TEXT,
    previous_expires_at BIGINT,
    created_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    first_failure_at    BIGINT
);
CREATE INDEX webhooks_listing ON webhooks (namespace, id);
CREATE INDEX webhooks_enabled ON webhooks (id) WHERE state = 'enabled';

CREATE TABLE webhook_deliveries (
    id              UUID PRIMARY KEY,
    webhook_id      UUID NOT NULL,
    namespace       TEXT NOT NULL,
    event_seq       BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    body            BYTEA NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_status     BIGINT,
    last_error      TEXT,
    last_latency_ms BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    next_attempt_at BIGINT,
    UNIQUE (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_listing ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE state IN ('succeeded', 'dead', 'cancelled');

CREATE TABLE webhook_attempts (
    delivery_id UUID NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    status      BIGINT,
    latency_ms  BIGINT,
    error       TEXT,
    response    TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
