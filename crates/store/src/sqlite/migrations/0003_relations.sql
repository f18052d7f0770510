-- Typed relationships between artifacts.

CREATE TABLE relations (
    id         BLOB PRIMARY KEY,
    namespace  TEXT NOT NULL,
    rel_type   TEXT NOT NULL,
    source_id  BLOB NOT NULL REFERENCES artifacts (id),
    target_id  BLOB NOT NULL REFERENCES artifacts (id),
    properties TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX relations_live_edge ON relations (namespace, source_id, rel_type, target_id)
    WHERE deleted = 0;
CREATE INDEX relations_source ON relations (source_id);
CREATE INDEX relations_target ON relations (target_id);
