//! Writing an export package's records with their original ids (K9), for
//! both engines.
//!
//! Everything happens inside the caller's write transaction (under the
//! writer lock), so a conflict or a blob that does not hash to its digest
//! leaves nothing behind.

use std::collections::{BTreeMap, HashMap, HashSet};

use kontextual_model::{Change, CollectionId, Revision, Timestamp};
use serde_json::json;

use crate::knowledge::{read, write};
use crate::port::{ArtifactKey, Content, ImportConflict, ImportRecords, WriteContext};
use crate::sql::{Tx, Value, args};
use crate::{Result, StoreError, blobs, rules};

fn exists(tx: &mut Tx<'_>, sql: &str, key: Value<'_>) -> Result<bool> {
    Ok(tx.query_opt(sql, &[key], |_| Ok(()))?.is_some())
}

/// How many keys one existence query asks about (well under both engines'
/// parameter limits).
const KEYS_PER_QUERY: usize = 500;

/// Which of `keys` `table` holds in `column`: a query per few hundred keys
/// rather than a round trip per key.
fn stored<K>(
    tx: &mut Tx<'_>,
    table: &str,
    column: &str,
    keys: &[K],
    read_key: impl Fn(&crate::sql::Row<'_>) -> Result<K>,
) -> Result<HashSet<K>>
where
    K: Clone + Eq + std::hash::Hash + for<'k> Into<Value<'k>>,
{
    let mut found = HashSet::new();
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let placeholders = (1..=chunk.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {column} FROM {table} WHERE {column} IN ({placeholders})");
        let args: Vec<Value<'_>> = chunk.iter().cloned().map(Into::into).collect();
        tx.for_each(&sql, &args, |r| {
            found.insert(read_key(r)?);
            Ok(())
        })?;
    }
    Ok(found)
}

pub(crate) fn import(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    rec: ImportRecords,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let ns = &ctx.namespace;
    let skip = rec.on_conflict == ImportConflict::Skip;
    let mut out = Vec::new();
    let mut skipped: HashMap<&'static str, u64> = HashMap::new();
    let mut written: HashMap<&'static str, u64> = HashMap::new();
    let mut differing: HashMap<&'static str, u64> = HashMap::new();

    // Collections: the same id and name is the same collection (reused).
    let mut collections: HashSet<CollectionId> = HashSet::new();
    for mut c in rec.collections {
        c.namespace = ns.clone();
        let by_id: Option<(String, String)> = tx.query_opt(
            "SELECT namespace, name FROM collections WHERE id = ?1",
            args![c.id.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        match by_id {
            Some((n, name)) if n == ns.as_str() && name == c.name.as_str() => {
                *skipped.entry("collections").or_default() += 1;
            }
            Some(_) => {
                return Err(StoreError::AlreadyExists {
                    what: format!("collection id {} (used by another collection)", c.id),
                });
            }
            None => {
                if read::collection_id(tx, ns, c.name.as_str())?.is_some() {
                    return Err(StoreError::AlreadyExists {
                        what: format!("collection {} (with another id)", c.name),
                    });
                }
                tx.execute(
                    "INSERT INTO collections (id, namespace, name, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![c.id.0, ns.as_str(), c.name.as_str(), &c.description, c.created_at],
                )?;
                *written.entry("collections").or_default() += 1;
                out.push(Change::CollectionCreated {
                    collection: c.clone(),
                });
            }
        }
        collections.insert(c.id);
    }

    // Which artifacts this import writes (the shared rules decide). Which
    // of the package's ids are taken is asked up front, in few queries.
    let ids: Vec<uuid::Uuid> = rec.artifacts.iter().map(|a| a.id.0).collect();
    let taken = stored(tx, "artifacts", "id", &ids, |r| r.get(0))?;
    let rules::ImportPlan {
        to_write,
        present,
        needed_blobs,
        needed_runs,
        skipped: skipped_artifacts,
        differing: differing_artifacts,
    } = rules::plan_import(ns, rec.artifacts, rec.revisions, &collections, skip, |id| {
        if !taken.contains(&id.0) {
            return Ok(None);
        }
        Ok(Some(read::artifact(tx, ns, &ArtifactKey::Id(id))?))
    })?;
    if skipped_artifacts > 0 {
        skipped.insert("artifacts", skipped_artifacts);
    }
    if differing_artifacts > 0 {
        differing.insert("artifacts", differing_artifacts);
    }

    // Only the blobs and runs that what is written needs; each blob is
    // checked against its digest as it streams in.
    let wanted: Vec<String> = rec
        .blobs
        .iter()
        .filter(|b| needed_blobs.contains(&b.digest))
        .map(|b| b.digest.hex())
        .collect();
    let stored_blobs = stored(tx, "blobs", "digest", &wanted, |r| r.get(0))?;
    for b in rec.blobs {
        if !needed_blobs.contains(&b.digest) || stored_blobs.contains(&b.digest.hex()) {
            continue;
        }
        let f = std::fs::File::open(&b.path)
            .map_err(|e| StoreError::io(format!("opening {}", b.path.display()), e))?;
        let (digest, size) = blobs::store(tx, Content::Reader(Box::new(f)), now)?;
        if digest != b.digest || size != b.size {
            return Err(StoreError::InvalidInput(format!(
                "blob {} does not match its digest and size (found {digest}, {size} bytes)",
                b.digest
            )));
        }
        *written.entry("blobs").or_default() += 1;
    }

    // Runs keep their ids, status and times; the process and job that ran
    // them belong to the exporting deployment.
    for (run, steps) in rec.runs {
        if skip && !needed_runs.contains(&run.id) {
            continue;
        }
        if exists(tx, "SELECT 1 FROM runs WHERE id = ?1", run.id.0.into())? {
            if !skip {
                return Err(rules::import_taken(format!("run {}", run.id)));
            }
            *skipped.entry("runs").or_default() += 1;
            continue;
        }
        tx.execute(
            "INSERT INTO runs (id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'import', ?8, ?9, NULL)",
            args![
                run.id.0,
                ns.as_str(),
                &run.kind,
                run.status.as_str(),
                run.actor.to_string(),
                run.input.to_string(),
                run.manifest.as_ref().map(|m| m.to_string()),
                run.started_at,
                run.finished_at,
            ],
        )?;
        for s in steps {
            tx.execute(
                "INSERT INTO run_steps (run_id, seq, name, status, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![run.id.0, s.seq, &s.name, s.status.as_str(), s.detail.to_string(), s.at],
            )?;
        }
        *written.entry("runs").or_default() += 1;
    }

    for (a, revs) in to_write {
        write::write_artifact(tx, &a, true)?;
        let last = revs.len();
        *written.entry("revisions").or_default() += last as u64;
        for (i, r) in revs.into_iter().enumerate() {
            insert_revision(tx, &r)?;
            let current = (i + 1 == last).then(|| Box::new(a.clone()));
            out.push(Change::RevisionImported {
                revision: Box::new(r),
                current,
            });
        }
        *written.entry("artifacts").or_default() += 1;
    }

    for mut r in rec.relations {
        r.namespace = ns.clone();
        if exists(tx, "SELECT 1 FROM relations WHERE id = ?1", r.id.0.into())? {
            if !skip {
                return Err(rules::import_taken(format!("relation {}", r.id)));
            }
            *skipped.entry("relations").or_default() += 1;
            continue;
        }
        for end in [r.source, r.target] {
            // an endpoint already in the store may be in any state
            if !present.contains(&end) && read::artifact(tx, ns, &ArtifactKey::Id(end))?.is_none() {
                return Err(StoreError::DanglingReference {
                    what: format!(
                        "relation {} points at artifact {end}, which is not in the store",
                        r.id
                    ),
                });
            }
        }
        write::write_relation(tx, &r, true)?;
        *written.entry("relations").or_default() += 1;
        out.push(Change::RelationImported { relation: r });
    }

    let sorted = |m: HashMap<&'static str, u64>| m.into_iter().collect::<BTreeMap<_, _>>();
    out.push(Change::Imported {
        package: rec.package,
        summary: json!({
            "written": sorted(written),
            "skipped": sorted(skipped),
            "skipped_differing": sorted(differing),
            "on_conflict": rec.on_conflict,
            "package": rec.detail,
        }),
    });
    Ok(out)
}

/// Inserts a revision as exported (its actor, correlation and time kept).
fn insert_revision(tx: &mut Tx<'_>, r: &Revision) -> Result<()> {
    let provenance = serde_json::to_string(&r.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    tx.execute(
        "INSERT INTO revisions (artifact_id, revision, change, prev_digest, digest, size, media_type, metadata, \
         lifecycle, classification, provenance, content_available, actor, correlation_id, run_id, created_at, title) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        args![
            r.artifact_id.0,
            r.revision,
            r.change.as_str(),
            r.prev_digest.map(|d| d.hex()),
            r.digest.hex(),
            r.size,
            &r.media_type,
            r.metadata.as_str(),
            r.lifecycle.as_str(),
            r.classification.as_str(),
            provenance,
            r.content_available,
            r.actor.to_string(),
            r.correlation_id.as_str(),
            r.run_id.map(|x| x.0),
            r.created_at,
            &r.title,
        ],
    )?;
    Ok(())
}
