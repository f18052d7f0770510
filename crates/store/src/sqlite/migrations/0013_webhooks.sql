-- Webhooks (O5): subscriptions that deliver outbox events over HTTP, their
-- signing secrets, and every delivery with its attempts. A delivery's body
-- is fixed when it is created, so each retry sends the same bytes.

CREATE TABLE webhooks (
    id                  BLOB PRIMARY KEY,
    namespace           TEXT NOT NULL,
    url                 TEXT NOT NULL,
    description         TEXT NOT NULL,
    -- JSON arrays: event type patterns, collection names (empty: all).
    types               TEXT NOT NULL,
    collections         TEXT NOT NULL,
    state               TEXT NOT NULL,
    disabled_reason     TEXT,
    -- Signing secrets: never in an audit record, event or listing.
    secret              TEXT NOT NULL,
    previous_secret     TEXT,
    previous_expires_at INTEGER,
    created_by          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    -- The start of the current streak of failed attempts.
    first_failure_at    INTEGER
) STRICT;
CREATE INDEX webhooks_listing ON webhooks (namespace, id);
CREATE INDEX webhooks_enabled ON webhooks (id) WHERE state = 'enabled';

-- One row per (webhook, event): a replayed event finds its delivery and
-- creates no second one. No reference to the webhook: a deleted webhook's
-- deliveries stay (cancelled) until retention removes them.
CREATE TABLE webhook_deliveries (
    id              BLOB PRIMARY KEY,
    webhook_id      BLOB NOT NULL,
    namespace       TEXT NOT NULL,
    event_seq       INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    body            BLOB NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    last_latency_ms INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    next_attempt_at INTEGER,
    UNIQUE (webhook_id, event_seq)
) STRICT;
-- Listing a webhook's deliveries, newest first.
CREATE INDEX webhook_deliveries_listing ON webhook_deliveries (webhook_id, id);
-- Retention: finished deliveries by age.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE state IN ('succeeded', 'dead', 'cancelled');

CREATE TABLE webhook_attempts (
    delivery_id BLOB NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status      INTEGER,
    latency_ms  INTEGER,
    error       TEXT,
    response    TEXT,
    PRIMARY KEY (delivery_id, attempt)
) STRICT, WITHOUT ROWID;
