-- Legal holds (X2, K4): an artifact under hold cannot be deleted or purged.
-- Only active holds are rows; their history is in the audit chain.

CREATE TABLE holds (
    artifact_id BLOB PRIMARY KEY REFERENCES artifacts (id),
    namespace   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX holds_namespace ON holds (namespace);
