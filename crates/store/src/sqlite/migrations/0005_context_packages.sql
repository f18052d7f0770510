-- Context packages (K7): each build that changes the manifest is a new version.

CREATE TABLE context_packages (
    namespace      TEXT NOT NULL,
    name           TEXT NOT NULL,
    version        INTEGER NOT NULL,
    id             BLOB NOT NULL UNIQUE,
    digest         TEXT NOT NULL,
    manifest       TEXT NOT NULL,
    actor          TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version)
) STRICT, WITHOUT ROWID;
