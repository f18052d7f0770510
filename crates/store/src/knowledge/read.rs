//! Knowledge reads: collections, artifacts, revisions, relations and
//! context packages. Listings use keyset cursors over their sort key.
//!
//! Every listing `LIMIT` is written `LIMIT (SELECT CAST(?N AS BIGINT))`:
//! the SQLite store's scalar-subquery spelling, meant to keep the bundled
//! SQLite (STAT4) from re-preparing the statement whenever the bound page
//! size changes, with a cast so PostgreSQL can type the parameter (it
//! cannot inside a bare `SELECT`).

use kontextual_model::{
    Artifact, ArtifactId, Collection, CollectionId, ContextPackage, Namespace, Relation,
    RelationId, Revision,
};
use uuid::Uuid;

use super::rows::{
    self, ARTIFACT_COLS, COLLECTION_COLS, PACKAGE_COLS, RELATION_COLS, REVISION_COLS,
};
use crate::port::{ArtifactKey, ArtifactQuery, Cursor, Page, PageRequest, RelationQuery};
use crate::sql::{Dialect, Row, Tx, Value, args};
use crate::{Result, StoreError};

pub(crate) fn bad_cursor() -> StoreError {
    StoreError::InvalidInput(
        "the page cursor is malformed or belongs to another listing".to_owned(),
    )
}

/// Runs a listing statement that fetches `limit + 1` rows (its last
/// argument) to know whether more follow.
fn page<T>(
    tx: &mut Tx<'_>,
    sql: &str,
    args: &[Value<'_>],
    limit: u32,
    map: impl FnMut(&Row<'_>) -> Result<T>,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Result<Page<T>> {
    let mut items = tx.query(sql, args, map)?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(cursor_of)
    } else {
        None
    };
    Ok(Page { items, next })
}

pub(crate) fn encode_pair(a: &str, b: &str) -> Cursor {
    Cursor(format!("{}:{}", hex::encode(a), hex::encode(b)))
}

pub(crate) fn decode_pair(c: &Cursor) -> Result<(String, String)> {
    let (a, b) = c.0.split_once(':').ok_or_else(bad_cursor)?;
    let dec = |s: &str| -> Result<String> {
        String::from_utf8(hex::decode(s).map_err(|_| bad_cursor())?).map_err(|_| bad_cursor())
    };
    Ok((dec(a)?, dec(b)?))
}

/// The id of a collection, without the artifact count (the write path).
pub(crate) fn collection_id(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    name: &str,
) -> Result<Option<CollectionId>> {
    tx.query_opt(
        "SELECT id FROM collections WHERE namespace = ?1 AND name = ?2",
        args![ns.as_str(), name],
        |r| Ok(CollectionId(r.get(0)?)),
    )
}

pub(crate) fn collection(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    name: &str,
) -> Result<Option<Collection>> {
    tx.query_opt(
        &format!(
            "SELECT {COLLECTION_COLS} FROM collections c WHERE c.namespace = ?1 AND c.name = ?2"
        ),
        args![ns.as_str(), name],
        rows::collection,
    )
}

pub(crate) fn collections(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<Collection>> {
    let limit = req.effective_limit();
    let after = req.after.as_ref().map(|c| c.0.as_str()).unwrap_or_default();
    page(
        tx,
        &format!(
            "SELECT {COLLECTION_COLS} FROM collections c WHERE c.namespace = ?1 AND c.name > ?2 \
             ORDER BY c.name LIMIT (SELECT CAST(?3 AS BIGINT))"
        ),
        args![ns.as_str(), after, limit + 1],
        limit,
        rows::collection,
        |c| Cursor(c.name.to_string()),
    )
}

/// Hot statements, built once (their text is also their cache key).
/// By primary key alone, the collection name by a correlated subquery: on
/// SQLite a join (or a second constraint) lets a STAT4 build mark the
/// statement for re-preparation on every bind, which profiling showed as
/// SQL parsing on every read.
pub(crate) static ARTIFACT_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM artifacts a WHERE a.id = ?1",
        ARTIFACT_COLS.replace(
            "c.name",
            "(SELECT c.name FROM collections c WHERE c.id = a.collection_id)"
        )
    )
});
/// By collection id and name, the collection's name passed in: no join
/// (see [`artifact_in`]).
pub(crate) static ARTIFACT_BY_NAME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM artifacts a WHERE a.namespace = ?1 AND a.collection_id = ?2 AND a.name = ?3",
        ARTIFACT_COLS.replacen("c.name", "CAST(?4 AS TEXT)", 1)
    )
});
/// PostgreSQL looks an artifact up by names in one round trip. The
/// collection's id comes from a subquery, not a join: joined, a generic
/// plan may read the artifacts first by `(namespace, …, name)`, skipping
/// the collection column — every artifact of the namespace per lookup.
pub(crate) static ARTIFACT_BY_NAMES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM artifacts a WHERE a.namespace = ?1 \
           AND a.collection_id = (SELECT c.id FROM collections c WHERE c.namespace = ?1 AND c.name = ?2) \
           AND a.name = ?3",
        ARTIFACT_COLS.replacen("c.name", "CAST(?2 AS TEXT)", 1)
    )
});

pub(crate) fn artifact(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    key: &ArtifactKey,
) -> Result<Option<Artifact>> {
    match key {
        ArtifactKey::Id(id) => Ok(tx
            .query_opt(&ARTIFACT_BY_ID, args![id.0], rows::artifact)?
            .filter(|a| &a.namespace == ns)),
        ArtifactKey::Name { collection, name } => match tx.dialect() {
            // Two simple lookups instead of one join: a parameter used twice
            // in one statement makes SQLite (with STAT4) re-prepare it on
            // every bind.
            Dialect::Sqlite => {
                let Some(cid) = collection_id(tx, ns, collection.as_str())? else {
                    return Ok(None);
                };
                artifact_in(tx, ns, cid, collection.as_str(), name.as_str())
            }
            Dialect::Postgres => tx.query_opt(
                &ARTIFACT_BY_NAMES,
                args![ns.as_str(), collection.as_str(), name.as_str()],
                rows::artifact,
            ),
        },
    }
}

/// An artifact by collection id and name. No join: with a join, SQLite
/// derives a transitive constraint on the bound id and then re-prepares the
/// statement on every execution (STAT4 expmask), which dominated the write path.
pub(crate) fn artifact_in(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    cid: CollectionId,
    collection: &str,
    name: &str,
) -> Result<Option<Artifact>> {
    tx.query_opt(
        &ARTIFACT_BY_NAME,
        args![ns.as_str(), cid.0, name, collection],
        rows::artifact,
    )
}

/// The listing filters of [`ArtifactQuery`], numbered after the keyset
/// arguments: `?4` collection, `?5` digest, `?6` include deleted, `?7`
/// allowed classifications (`,a,b,`), `?8` no quarantined. Only the
/// substring test is spelt differently.
macro_rules! artifact_filters {
    ($position_of:literal) => {
        concat!(
            "AND (CAST(?4 AS TEXT) IS NULL OR c.name = ?4) ",
            "AND (CAST(?5 AS TEXT) IS NULL OR a.digest = ?5) ",
            "AND (?6 OR a.state = 'live') ",
            "AND (CAST(?7 AS TEXT) IS NULL OR ",
            $position_of,
            "(?7, ',' || a.classification || ',') > 0) ",
            "AND (NOT ?8 OR NOT EXISTS (SELECT 1 FROM quarantines q WHERE q.artifact_id = a.id))"
        )
    };
}

fn artifact_filters(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => artifact_filters!("instr"),
        Dialect::Postgres => artifact_filters!("strpos"),
    }
}

pub(crate) fn count_artifacts(tx: &mut Tx<'_>, ns: &Namespace, q: &ArtifactQuery) -> Result<u64> {
    let sql = format!(
        "SELECT count(*) FROM collections c JOIN artifacts a \
           ON a.namespace = c.namespace AND a.collection_id = c.id \
         WHERE c.namespace = ?1 AND ?2 = '' AND ?3 = '' {}",
        // ?2 and ?3 are the listing's keyset arguments, unused here but
        // present so the filters keep their numbers (PostgreSQL must see
        // every parameter to type it)
        artifact_filters(tx.dialect())
    );
    tx.query_one(
        &sql,
        args![
            ns.as_str(),
            "",
            "",
            q.collection.as_ref().map(|c| c.as_str()),
            q.digest.map(|d| d.hex()),
            q.include_deleted,
            q.classification_set(),
            q.exclude_quarantined
        ],
        |r| r.get(0),
    )
}

/// [`artifacts`]' page within the cursor's collection (`?2`), after the
/// artifact name `?3`. On PostgreSQL the artifacts are read by a lateral
/// subquery of the collection: as a join, a generic plan may scan the
/// artifacts by (namespace, name) alone, skipping the collection column of
/// the index — every artifact of the namespace per page.
pub(crate) fn listing_in_collection(d: Dialect) -> String {
    listing(d, "c.name = ?2", "AND a.name > ?3", "a.name")
}

/// [`artifacts`]' page from the collections after `?2` (`?3` unused).
pub(crate) fn listing_after_collection(d: Dialect) -> String {
    listing(d, "c.name > ?2 AND ?3 = ''", "", "c.name, a.name")
}

fn listing(d: Dialect, collections: &str, names: &str, order: &str) -> String {
    let filters = artifact_filters(d);
    match d {
        Dialect::Sqlite => format!(
            "SELECT {ARTIFACT_COLS} FROM collections c JOIN artifacts a \
               ON a.namespace = c.namespace AND a.collection_id = c.id \
             WHERE c.namespace = ?1 AND {collections} {names} {filters} \
             ORDER BY {order} LIMIT (SELECT CAST(?9 AS BIGINT))"
        ),
        // each collection's first page by the index, then merged
        Dialect::Postgres => format!(
            "SELECT {ARTIFACT_COLS} FROM collections c CROSS JOIN LATERAL \
               (SELECT a.* FROM artifacts a \
                WHERE a.namespace = c.namespace AND a.collection_id = c.id {names} {filters} \
                ORDER BY a.name LIMIT (SELECT CAST(?9 AS BIGINT))) a \
             WHERE c.namespace = ?1 AND {collections} \
             ORDER BY {order} LIMIT (SELECT CAST(?9 AS BIGINT))"
        ),
    }
}

/// Lists artifacts in (collection name, artifact name) byte order with a
/// keyset cursor. Two index-ordered range scans instead of one filtered
/// scan, so a page costs O(log n + page) however deep the cursor: first the
/// rest of the cursor's collection, then the collections after it.
pub(crate) fn artifacts(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    q: &ArtifactQuery,
    req: &PageRequest,
) -> Result<Page<Artifact>> {
    let limit = req.effective_limit() as usize;
    let (after_c, after_n) = match &req.after {
        Some(c) => decode_pair(c)?,
        None => (String::new(), String::new()),
    };
    let coll = q.collection.as_ref().map(|c| c.as_str());
    let dig = q.digest.map(|d| d.hex());
    let classes = q.classification_set();
    let mut items: Vec<Artifact> = Vec::with_capacity(limit + 1);
    let run = |tx: &mut Tx<'_>,
               sql: String,
               c_name: &str,
               a_name: &str,
               want: usize,
               items: &mut Vec<Artifact>| {
        tx.for_each(
            &sql,
            args![
                ns.as_str(),
                c_name,
                a_name,
                coll,
                dig.as_deref(),
                q.include_deleted,
                classes.as_deref(),
                q.exclude_quarantined,
                want as u64
            ],
            |r| {
                items.push(rows::artifact(r)?);
                Ok(())
            },
        )
    };
    if req.after.is_some() {
        run(
            tx,
            listing_in_collection(tx.dialect()),
            &after_c,
            &after_n,
            limit + 1,
            &mut items,
        )?;
    }
    let have = items.len();
    if have <= limit {
        run(
            tx,
            listing_after_collection(tx.dialect()),
            &after_c,
            "",
            limit + 1 - have,
            &mut items,
        )?;
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|a| encode_pair(a.collection.as_str(), a.name.as_str()))
    } else {
        None
    };
    Ok(Page { items, next })
}

pub(crate) fn revisions(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    id: ArtifactId,
    req: &PageRequest,
) -> Result<Page<Revision>> {
    let limit = req.effective_limit();
    let after: i64 = match &req.after {
        Some(c) => c.0.parse().map_err(|_| bad_cursor())?,
        None => 0,
    };
    page(
        tx,
        &format!(
            "SELECT {REVISION_COLS} FROM revisions r JOIN artifacts a ON a.id = r.artifact_id \
             WHERE r.artifact_id = ?1 AND a.namespace = ?2 AND r.revision > ?3 \
             ORDER BY r.revision LIMIT (SELECT CAST(?4 AS BIGINT))"
        ),
        args![id.0, ns.as_str(), after, limit + 1],
        limit,
        rows::revision,
        |r| Cursor(r.revision.to_string()),
    )
}

pub(crate) fn revision(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    id: ArtifactId,
    rev: u64,
) -> Result<Option<Revision>> {
    tx.query_opt(
        &format!(
            "SELECT {REVISION_COLS} FROM revisions r JOIN artifacts a ON a.id = r.artifact_id \
             WHERE r.artifact_id = ?1 AND a.namespace = ?2 AND r.revision = ?3"
        ),
        args![id.0, ns.as_str(), rev],
        rows::revision,
    )
}

pub(crate) fn relation(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    id: RelationId,
) -> Result<Option<Relation>> {
    tx.query_opt(
        &format!("SELECT {RELATION_COLS} FROM relations WHERE id = ?1 AND namespace = ?2"),
        args![id.0, ns.as_str()],
        rows::relation,
    )
}

pub(crate) fn relations(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    q: &RelationQuery,
    req: &PageRequest,
) -> Result<Page<Relation>> {
    let limit = req.effective_limit();
    let after: Uuid = match &req.after {
        Some(c) => Uuid::parse_str(&c.0).map_err(|_| bad_cursor())?,
        None => Uuid::nil(),
    };
    let ty = q.rel_type.as_ref().map(|t| t.as_str());
    let filters = "AND (CAST(?3 AS TEXT) IS NULL OR rel_type = ?3) AND (?4 OR NOT deleted)";
    // With an artifact, look it up through the source and target indexes
    // (then order the few matches); without, walk the primary key in order.
    match q.artifact {
        Some(art) => page(
            tx,
            &format!(
                "SELECT {RELATION_COLS} FROM relations WHERE namespace = ?1 AND id > ?2 {filters} \
                   AND (source_id = ?6 OR target_id = ?6) \
                 ORDER BY id LIMIT (SELECT CAST(?5 AS BIGINT))"
            ),
            args![ns.as_str(), after, ty, q.include_deleted, limit + 1, art.0],
            limit,
            rows::relation,
            |r| Cursor(r.id.to_string()),
        ),
        None => page(
            tx,
            &format!(
                "SELECT {RELATION_COLS} FROM relations WHERE namespace = ?1 AND id > ?2 {filters} \
                 ORDER BY id LIMIT (SELECT CAST(?5 AS BIGINT))"
            ),
            args![ns.as_str(), after, ty, q.include_deleted, limit + 1],
            limit,
            rows::relation,
            |r| Cursor(r.id.to_string()),
        ),
    }
}

/// Live relations touching an artifact (for cascades). Deleted ones are
/// dropped here, not in the statement: with `NOT deleted` a cached plan may
/// take the partial index of live edges (namespace, source, type, target)
/// for each side, walking all of it, instead of the source and target
/// indexes.
pub(crate) fn live_relations_of(tx: &mut Tx<'_>, id: ArtifactId) -> Result<Vec<Relation>> {
    let mut relations = tx.query(
        &format!(
            "SELECT {RELATION_COLS} FROM relations \
             WHERE source_id = ?1 OR target_id = ?1 ORDER BY id"
        ),
        args![id.0],
        rows::relation,
    )?;
    relations.retain(|r| !r.deleted);
    Ok(relations)
}

/// A context package's latest version, or the version asked for.
pub(crate) fn context_package(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    name: &str,
    version: Option<u64>,
) -> Result<Option<ContextPackage>> {
    tx.query_opt(
        &format!(
            "SELECT {PACKAGE_COLS} FROM context_packages WHERE namespace = ?1 AND name = ?2 \
             AND (CAST(?3 AS BIGINT) IS NULL OR version = ?3) ORDER BY version DESC LIMIT 1"
        ),
        args![ns.as_str(), name, version],
        rows::package,
    )
}

/// The latest version of each context package, by name.
pub(crate) fn context_packages(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<ContextPackage>> {
    let limit = req.effective_limit();
    let after = req.after.as_ref().map(|c| c.0.as_str()).unwrap_or_default();
    page(
        tx,
        &format!(
            "SELECT {PACKAGE_COLS} FROM context_packages p WHERE namespace = ?1 AND name > ?2 \
             AND version = (SELECT max(version) FROM context_packages q \
                            WHERE q.namespace = p.namespace AND q.name = p.name) \
             ORDER BY name LIMIT (SELECT CAST(?3 AS BIGINT))"
        ),
        args![ns.as_str(), after, limit + 1],
        limit,
        rows::package,
        |p| Cursor(p.name.to_string()),
    )
}

/// Namespaces that have a collection, in byte order.
pub(crate) fn namespaces(tx: &mut Tx<'_>) -> Result<Vec<Namespace>> {
    let sql = match tx.dialect() {
        // SQLite compares text bytewise already
        Dialect::Sqlite => "SELECT DISTINCT namespace FROM collections ORDER BY namespace",
        Dialect::Postgres => {
            "SELECT namespace FROM collections GROUP BY namespace ORDER BY namespace COLLATE \"C\""
        }
    };
    tx.query(sql, &[], |r| rows::parsed(r, 0))
}

#[cfg(test)]
mod tests {
    use kontextual_model::Namespace;

    use super::*;

    /// The artifact lookups run on every request and every put: on SQLite
    /// their statements must be prepared once, not again whenever a bound
    /// value changes (STAT4).
    #[test]
    fn o1_artifact_lookups_are_never_re_prepared_on_sqlite() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::sqlite::schema::migrate(&mut conn, None, true).unwrap();
        let ns = Namespace::default();
        let mut tx = Tx::Sqlite(&conn);
        for i in 0..4 {
            let (c, a) = (format!("c{i}"), format!("a{i}.md"));
            artifact_in(&mut tx, &ns, CollectionId::new(), &c, &a).unwrap();
            artifact(&mut tx, &ns, &ArtifactKey::Id(ArtifactId::new())).unwrap();
        }
        for sql in [ARTIFACT_BY_ID.as_str(), ARTIFACT_BY_NAME.as_str()] {
            let stmt = conn.prepare_cached(sql).unwrap();
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "{sql}"
            );
        }
    }
}
