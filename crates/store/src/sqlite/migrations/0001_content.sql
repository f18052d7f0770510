-- Collections, artifacts, revisions and content-addressed blobs.
-- Ids are UUIDv7 as 16-byte BLOBs; instants are INTEGER microseconds since
-- the Unix epoch (UTC); digests are 64-char lowercase hex SHA-256.

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE collections (
    id          BLOB PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    UNIQUE (namespace, name)
) STRICT;

-- Content of at most 1 MiB lives inline in `data` (chunks = 0); larger content
-- lives in `blob_chunks` (chunks = its number of chunks, data NULL).
CREATE TABLE blobs (
    digest     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    chunks     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    data       BLOB
) STRICT;

-- Large content in chunks of 1 MiB, so no value is ever read or written whole.
-- While a large blob streams in, its chunks carry a staging key instead of a digest.
CREATE TABLE blob_chunks (
    digest TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    data   BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX blob_chunks_key ON blob_chunks (digest, idx);

CREATE TABLE artifacts (
    id             BLOB PRIMARY KEY,
    namespace      TEXT NOT NULL,
    collection_id  BLOB NOT NULL REFERENCES collections (id),
    name           TEXT NOT NULL,
    artifact_type  TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    digest         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    metadata       TEXT NOT NULL,
    lifecycle      TEXT NOT NULL,
    classification TEXT NOT NULL,
    source_system  TEXT,
    provenance     TEXT NOT NULL,
    state          TEXT NOT NULL,
    revision       INTEGER NOT NULL,
    run_id         BLOB,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (namespace, collection_id, name)
) STRICT;
CREATE INDEX artifacts_digest ON artifacts (namespace, digest);
CREATE INDEX artifacts_collection_state ON artifacts (collection_id, state);

CREATE TABLE revisions (
    artifact_id       BLOB NOT NULL REFERENCES artifacts (id),
    revision          INTEGER NOT NULL,
    change            TEXT NOT NULL,
    prev_digest       TEXT,
    digest            TEXT NOT NULL,
    size              INTEGER NOT NULL,
    media_type        TEXT NOT NULL,
    metadata          TEXT NOT NULL,
    lifecycle         TEXT NOT NULL,
    classification    TEXT NOT NULL,
    provenance        TEXT NOT NULL,
    content_available INTEGER NOT NULL,
    actor             TEXT NOT NULL,
    correlation_id    TEXT NOT NULL,
    run_id            BLOB,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (artifact_id, revision)
) STRICT, WITHOUT ROWID;
CREATE INDEX revisions_digest ON revisions (digest) WHERE content_available = 1;
