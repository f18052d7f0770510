-- Index shapes that keep a lookup by key on its key, whatever the planner
-- knows about the tables.
--
-- PostgreSQL caches a generic plan for a prepared statement after five
-- executions, costed with the statistics of that moment. On a fresh store
-- the tables are empty, every usable index looks as cheap as another and a
-- smaller one cheaper, so the cached plan of the lookup of an artifact by
-- name (`namespace = $1 AND collection_id = $2 AND name = $3`) used
-- `artifacts_collection_state` (collection_id, state) and filtered every
-- artifact of the collection: 2 ms a put at 10,000 artifacts, growing with
-- the collection, until autovacuum's ANALYZE replaced the plan a minute or
-- more into a bulk load. With that index gone it used `artifacts_digest`
-- (namespace, digest) the same way, filtering the namespace.
--
-- So no index other than the key starts with a column that lookup
-- constrains: the collection index is partial on live artifacts (counting
-- them is what it is for) and the digest index leads with the digest.
-- `sql_statements.rs` checks every statement's generic plan on an empty
-- database (and lists the walks it still allows, with the reason).
DROP INDEX artifacts_collection_state;
CREATE INDEX artifacts_live_by_collection ON artifacts (collection_id) WHERE state = 'live';
DROP INDEX artifacts_digest;
CREATE INDEX artifacts_digest ON artifacts (digest, namespace);
