-- Durable jobs (O1, O2): leased work items, written in the same transaction
-- as the change that enqueues them. Claiming is one UPDATE … RETURNING on
-- the single writer; completion is fenced by (state, attempt).

CREATE TABLE jobs (
    id               BLOB PRIMARY KEY,
    namespace        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    unique_key       TEXT,
    worker           TEXT,
    lease_expires_at INTEGER,
    -- The current (or last) attempt: when it started and the run it made.
    started_at       INTEGER,
    run_id           BLOB,
    stop_requested   TEXT,
    last_error       TEXT,
    report           TEXT,
    actor            TEXT NOT NULL,
    -- The API key and scopes it was enqueued with (NULL: the local
    -- administrator), so the worker can check them again when it runs.
    key_id           TEXT,
    scopes           TEXT,
    correlation_id   TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
) STRICT;
-- Claiming: due jobs in order.
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state IN ('queued', 'failed');
-- Rescue: running jobs by lease expiry.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
-- Listing (newest first; a state filter is applied on the way: indexing
-- state would cost two index writes on every claim and completion).
CREATE INDEX jobs_listing ON jobs (namespace, id);
-- Retention needs no index of its own: ids are UUIDv7, so jobs created
-- before the cutoff are a primary-key range.
-- Unique jobs: at most one queued job per key (a running one may be joined
-- by one queued behind it, since it may have started before the change
-- that asked for the new one).
CREATE UNIQUE INDEX jobs_unique ON jobs (namespace, unique_key)
    WHERE unique_key IS NOT NULL AND state = 'queued';

-- Attempts that did not succeed (failed, lost, stopped). The latest attempt
-- lives on the job row (worker, started_at, run_id); a successful one stays
-- there, so the common case writes no attempt row at all.
CREATE TABLE job_attempts (
    job_id      BLOB NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    worker      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT NOT NULL,
    error       TEXT,
    run_id      BLOB,
    PRIMARY KEY (job_id, attempt)
) STRICT, WITHOUT ROWID;

-- Runs made by a job attempt point back at the job (K6 <-> O1).
ALTER TABLE runs ADD COLUMN job_id BLOB;
CREATE INDEX runs_job ON runs (job_id) WHERE job_id IS NOT NULL;

-- Quarantined artifacts (O2): kept, but excluded from processing, search
-- and export until released. Like holds, only active rows; history is audited.
CREATE TABLE quarantines (
    artifact_id BLOB PRIMARY KEY REFERENCES artifacts (id),
    namespace   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX quarantines_namespace ON quarantines (namespace);
