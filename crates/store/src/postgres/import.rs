//! Writing an export package's records with their original ids (K9), in
//! the caller's transaction under the writer lock — the same rules as the
//! SQLite store's import.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::postgres::conn::Conn;
use crate::rules;
use crate::{
    ArtifactKey, Content, ImportConflict, ImportRecords, Result, StoreError, WriteContext,
};
use kontextual_model::{Change, CollectionId, Revision, Timestamp};
use serde_json::json;

use crate::postgres::{blobs, pg_err, read};

fn exists(tx: &mut Conn, sql: &str, id: &(dyn postgres::types::ToSql + Sync)) -> Result<bool> {
    Ok(tx.query_opt(sql, &[id]).map_err(pg_err)?.is_some())
}

/// Which of `keys` the query (`… WHERE key = ANY($1)`, selecting the key)
/// finds, asked in chunks.
fn existing<K>(tx: &mut Conn, sql: &str, keys: &[K]) -> Result<HashSet<K>>
where
    K: postgres::types::ToSql
        + Sync
        + for<'a> postgres::types::FromSql<'a>
        + Eq
        + std::hash::Hash
        + Clone,
    Vec<K>: postgres::types::ToSql,
{
    let mut found = HashSet::new();
    for chunk in keys.chunks(10_000) {
        let chunk = chunk.to_vec();
        for row in tx.query(sql, &[&chunk]).map_err(pg_err)? {
            found.insert(row.get::<_, K>(0));
        }
    }
    Ok(found)
}

pub(crate) fn import(
    tx: &mut Conn,
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

    let mut collections: HashSet<CollectionId> = HashSet::new();
    for mut c in rec.collections {
        c.namespace = ns.clone();
        let by_id = tx
            .query_opt(
                "SELECT namespace, name FROM collections WHERE id = $1",
                &[&c.id.0],
            )
            .map_err(pg_err)?;
        match by_id {
            Some(r)
                if r.get::<_, String>(0) == ns.as_str()
                    && r.get::<_, String>(1) == c.name.as_str() =>
            {
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
                    "INSERT INTO collections (id, namespace, name, description, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &[&c.id.0, &ns.as_str(), &c.name.as_str(), &c.description, &c.created_at.as_microsecond()],
                )
                .map_err(pg_err)?;
                *written.entry("collections").or_default() += 1;
                out.push(Change::CollectionCreated {
                    collection: c.clone(),
                });
            }
        }
        collections.insert(c.id);
    }

    let rules::ImportPlan {
        to_write,
        present,
        needed_blobs,
        needed_runs,
        skipped: skipped_artifacts,
        differing: differing_artifacts,
    } = {
        // which of the package's ids are taken, in one query per chunk
        // rather than one round trip per artifact
        let ids: Vec<uuid::Uuid> = rec.artifacts.iter().map(|a| a.id.0).collect();
        let taken = existing(tx, "SELECT id FROM artifacts WHERE id = ANY($1)", &ids)?;
        rules::plan_import(ns, rec.artifacts, rec.revisions, &collections, skip, |id| {
            if !taken.contains(&id.0) {
                return Ok(None);
            }
            Ok(Some(read::artifact(tx, ns, &ArtifactKey::Id(id))?))
        })?
    };
    if skipped_artifacts > 0 {
        skipped.insert("artifacts", skipped_artifacts);
    }
    if differing_artifacts > 0 {
        differing.insert("artifacts", differing_artifacts);
    }

    let stored_blobs: HashSet<String> = {
        let wanted: Vec<String> = rec
            .blobs
            .iter()
            .filter(|b| needed_blobs.contains(&b.digest))
            .map(|b| b.digest.hex())
            .collect();
        existing(
            tx,
            "SELECT digest FROM blobs WHERE digest = ANY($1)",
            &wanted,
        )?
    };
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

    for (run, steps) in rec.runs {
        if skip && !needed_runs.contains(&run.id) {
            continue;
        }
        if exists(tx, "SELECT 1 FROM runs WHERE id = $1", &run.id.0)? {
            if !skip {
                return Err(rules::import_taken(format!("run {}", run.id)));
            }
            *skipped.entry("runs").or_default() += 1;
            continue;
        }
        tx.execute(
            "INSERT INTO runs (id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'import', $8, $9, NULL)",
            &[
                &run.id.0,
                &ns.as_str(),
                &run.kind,
                &run.status.as_str(),
                &run.actor.to_string(),
                &run.input.to_string(),
                &run.manifest.as_ref().map(|m| m.to_string()),
                &run.started_at.as_microsecond(),
                &run.finished_at.map(|t| t.as_microsecond()),
            ],
        )
        .map_err(pg_err)?;
        for s in steps {
            tx.execute(
                "INSERT INTO run_steps (run_id, seq, name, status, detail, at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&run.id.0, &(s.seq as i64), &s.name, &s.status.as_str(), &s.detail.to_string(), &s.at.as_microsecond()],
            )
            .map_err(pg_err)?;
        }
        *written.entry("runs").or_default() += 1;
    }

    for (a, revs) in to_write {
        crate::postgres::write::write_artifact(tx, &a, true)?;
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
        if exists(tx, "SELECT 1 FROM relations WHERE id = $1", &r.id.0)? {
            if !skip {
                return Err(rules::import_taken(format!("relation {}", r.id)));
            }
            *skipped.entry("relations").or_default() += 1;
            continue;
        }
        for end in [r.source, r.target] {
            if !present.contains(&end) && read::artifact(tx, ns, &ArtifactKey::Id(end))?.is_none() {
                return Err(StoreError::DanglingReference {
                    what: format!(
                        "relation {} points at artifact {end}, which is not in the store",
                        r.id
                    ),
                });
            }
        }
        crate::postgres::write::write_relation(tx, &r, true)?;
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

fn insert_revision(tx: &mut Conn, r: &Revision) -> Result<()> {
    let provenance = serde_json::to_string(&r.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    tx.execute(
        "INSERT INTO revisions (artifact_id, revision, change, prev_digest, digest, size, media_type, metadata, \
         lifecycle, classification, provenance, content_available, actor, correlation_id, run_id, created_at, title) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        &[
            &r.artifact_id.0,
            &(r.revision as i64),
            &r.change.as_str(),
            &r.prev_digest.map(|d| d.hex()),
            &r.digest.hex(),
            &(r.size as i64),
            &r.media_type,
            &r.metadata.as_str(),
            &r.lifecycle.as_str(),
            &r.classification.as_str(),
            &provenance,
            &r.content_available,
            &r.actor.to_string(),
            &r.correlation_id.as_str(),
            &r.run_id.map(|x| x.0),
            &r.created_at.as_microsecond(),
            &r.title,
        ],
    )
    .map_err(pg_err)?;
    Ok(())
}
