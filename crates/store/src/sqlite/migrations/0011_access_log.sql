-- The read access log (X2): who read what, batched; not part of the audit
-- chain. Governance reports on access anomalies read it.

CREATE TABLE access_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    namespace      TEXT NOT NULL,
    actor          TEXT NOT NULL,
    key_id         TEXT,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    correlation_id TEXT NOT NULL
) STRICT;
CREATE INDEX access_log_namespace_at ON access_log (namespace, at);
