-- The Kontextual schema for PostgreSQL: the same tables and rules as the
-- SQLite store (ids uuid, instants bigint microseconds since the epoch,
-- digests 64-char lowercase hex, metadata text kept byte for byte). Names
-- that listings order by use the "C" collation: byte order, as in SQLite.

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE collections (
    id          UUID PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    UNIQUE (namespace, name)
);

-- Content of at most 1 MiB lives inline in `data` (chunks = 0); larger
-- content in `blob_chunks`, so no value is read or written whole.
CREATE TABLE blobs (
    digest     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    chunks     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    data       BYTEA
);

CREATE TABLE blob_chunks (
    digest TEXT NOT NULL,
    idx    BIGINT NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (digest, idx)
);

CREATE TABLE artifacts (
    id             UUID PRIMARY KEY,
    namespace      TEXT NOT NULL,
    collection_id  UUID NOT NULL REFERENCES collections (id),
    name           TEXT COLLATE "C" NOT NULL,
    artifact_type  TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    digest         TEXT NOT NULL,
    size           BIGINT NOT NULL,
    metadata       TEXT NOT NULL,
    lifecycle      TEXT NOT NULL,
    classification TEXT NOT NULL,
    source_system  TEXT,
    provenance     TEXT NOT NULL,
    state          TEXT NOT NULL,
    revision       BIGINT NOT NULL,
    run_id         UUID,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    title          TEXT,
    UNIQUE (namespace, collection_id, name)
);
CREATE INDEX artifacts_digest ON artifacts (namespace, digest);
CREATE INDEX artifacts_collection_state ON artifacts (collection_id, state);

CREATE TABLE revisions (
    artifact_id       UUID NOT NULL REFERENCES artifacts (id),
    revision          BIGINT NOT NULL,
    change            TEXT NOT NULL,
    prev_digest       TEXT,
    digest            TEXT NOT NULL,
    size              BIGINT NOT NULL,
    media_type        TEXT NOT NULL,
    metadata          TEXT NOT NULL,
    lifecycle         TEXT NOT NULL,
    classification    TEXT NOT NULL,
    provenance        TEXT NOT NULL,
    content_available BOOLEAN NOT NULL,
    actor             TEXT NOT NULL,
    correlation_id    TEXT NOT NULL,
    run_id            UUID,
    created_at        BIGINT NOT NULL,
    title             TEXT,
    PRIMARY KEY (artifact_id, revision)
);
CREATE INDEX revisions_digest ON revisions (digest) WHERE content_available;
CREATE INDEX revisions_run ON revisions (run_id) WHERE run_id IS NOT NULL;

-- One chain for the whole store; seq and hash assigned under the writer lock.
CREATE TABLE audit_log (
    seq            BIGINT PRIMARY KEY,
    at             BIGINT NOT NULL,
    namespace      TEXT NOT NULL,
    actor          TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    run_id         UUID,
    action         TEXT NOT NULL,
    target_kind    TEXT NOT NULL,
    target_id      TEXT NOT NULL,
    target_name    TEXT,
    revision       BIGINT,
    prev_digest    TEXT,
    digest         TEXT,
    outcome        TEXT NOT NULL,
    detail         TEXT,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX audit_target ON audit_log (target_id, seq);
CREATE INDEX audit_actor ON audit_log (actor, seq);

-- Drawn under the writer lock, so sequence order is commit order; never reused.
CREATE SEQUENCE outbox_seq;
CREATE TABLE outbox (
    seq            BIGINT PRIMARY KEY DEFAULT nextval('outbox_seq'),
    at             BIGINT NOT NULL,
    namespace      TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    audit_seq      BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    subject        TEXT NOT NULL,
    payload        TEXT NOT NULL
);

CREATE TABLE outbox_consumers (
    name       TEXT PRIMARY KEY,
    cursor     BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE relations (
    id         UUID PRIMARY KEY,
    namespace  TEXT NOT NULL,
    rel_type   TEXT NOT NULL,
    source_id  UUID NOT NULL REFERENCES artifacts (id),
    target_id  UUID NOT NULL REFERENCES artifacts (id),
    properties TEXT NOT NULL,
    revision   BIGINT NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX relations_live_edge ON relations (namespace, source_id, rel_type, target_id)
    WHERE NOT deleted;
CREATE INDEX relations_source ON relations (source_id);
CREATE INDEX relations_target ON relations (target_id);

CREATE TABLE runs (
    id          UUID PRIMARY KEY,
    namespace   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    input       TEXT NOT NULL,
    manifest    TEXT,
    owner       TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    job_id      UUID
);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_namespace ON runs (namespace, id);
CREATE INDEX runs_job ON runs (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE run_steps (
    run_id UUID NOT NULL REFERENCES runs (id),
    seq    BIGINT NOT NULL,
    name   TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at     BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE context_packages (
    namespace      TEXT NOT NULL,
    name           TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    id             UUID NOT NULL UNIQUE,
    digest         TEXT NOT NULL,
    manifest       TEXT NOT NULL,
    actor          TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (namespace, name, version)
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    namespace    TEXT NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    actor        TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_namespace ON api_keys (namespace, name, id);

CREATE TABLE idempotency (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       BIGINT,
    content_type TEXT,
    body         BYTEA,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);

CREATE TABLE grants (
    id          UUID PRIMARY KEY,
    namespace   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    permission  TEXT NOT NULL,
    scope_kind  TEXT NOT NULL,
    scope_name  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (namespace, actor, permission, scope_kind, scope_name)
);

CREATE TABLE holds (
    artifact_id UUID PRIMARY KEY REFERENCES artifacts (id),
    namespace   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX holds_namespace ON holds (namespace);

CREATE TABLE clearances (
    namespace TEXT NOT NULL,
    actor     TEXT NOT NULL,
    level     TEXT NOT NULL,
    set_at    BIGINT NOT NULL,
    PRIMARY KEY (namespace, actor)
);

CREATE TABLE access_log (
    seq            BIGSERIAL PRIMARY KEY,
    at             BIGINT NOT NULL,
    namespace      TEXT NOT NULL,
    actor          TEXT NOT NULL,
    key_id         TEXT,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    correlation_id TEXT NOT NULL
);
CREATE INDEX access_log_namespace_at ON access_log (namespace, at);

CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    namespace        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempt          BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    run_at           BIGINT NOT NULL,
    unique_key       TEXT,
    worker           TEXT,
    lease_expires_at BIGINT,
    started_at       BIGINT,
    run_id           UUID,
    stop_requested   TEXT,
    last_error       TEXT,
    report           TEXT,
    actor            TEXT NOT NULL,
    key_id           TEXT,
    scopes           TEXT,
    correlation_id   TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state IN ('queued', 'failed');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_listing ON jobs (namespace, id);
CREATE UNIQUE INDEX jobs_unique ON jobs (namespace, unique_key)
    WHERE unique_key IS NOT NULL AND state = 'queued';

CREATE TABLE job_attempts (
    job_id      UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    worker      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT NOT NULL,
    error       TEXT,
    run_id      UUID,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE quarantines (
    artifact_id UUID PRIMARY KEY REFERENCES artifacts (id),
    namespace   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX quarantines_namespace ON quarantines (namespace);
