-- Operation runs (K6) and artifact titles (K5).

CREATE TABLE runs (
    id          BLOB PRIMARY KEY,
    namespace   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    input       TEXT NOT NULL,
    manifest    TEXT,
    owner       TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_namespace ON runs (namespace, id);

CREATE TABLE run_steps (
    run_id BLOB NOT NULL REFERENCES runs (id),
    seq    INTEGER NOT NULL,
    name   TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;

-- A human title taken from the content (first heading, <title>), if any.
ALTER TABLE artifacts ADD COLUMN title TEXT;
ALTER TABLE revisions ADD COLUMN title TEXT;
CREATE INDEX revisions_run ON revisions (run_id) WHERE run_id IS NOT NULL;
