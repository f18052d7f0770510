-- The hash-chained audit log and the transactional outbox.

CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    namespace      TEXT NOT NULL,
    actor          TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    run_id         BLOB,
    action         TEXT NOT NULL,
    target_kind    TEXT NOT NULL,
    target_id      TEXT NOT NULL,
    target_name    TEXT,
    revision       INTEGER,
    prev_digest    TEXT,
    digest         TEXT,
    outcome        TEXT NOT NULL,
    detail         TEXT,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
) STRICT;
CREATE INDEX audit_target ON audit_log (target_id, seq);
CREATE INDEX audit_actor ON audit_log (actor, seq);

-- AUTOINCREMENT: sequence numbers are never reused, even after pruning.
CREATE TABLE outbox (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    namespace      TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    audit_seq      INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    subject        TEXT NOT NULL,
    payload        TEXT NOT NULL
) STRICT;

-- Each consumer's cursor: the last outbox seq it has applied.
CREATE TABLE outbox_consumers (
    name       TEXT PRIMARY KEY,
    cursor     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
