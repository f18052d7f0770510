//! Writing an export package's records with their original ids (K9).
//!
//! Everything happens inside the caller's write transaction, so a conflict
//! or a blob that does not hash to its digest leaves nothing behind.

use std::collections::{HashMap, HashSet};

use kontextual_model::{ArtifactId, Change, CollectionId, Digest, Revision, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::write::{write_artifact, write_relation};
use super::{blobs, micros, read, sql_err};
use crate::port::{Content, ImportConflict, ImportRecords, WriteContext};
use crate::{Result, StoreError};

fn exists(conn: &Connection, sql: &str, id: impl rusqlite::ToSql) -> Result<bool> {
    conn.prepare_cached(sql)
        .map_err(sql_err)?
        .query_row([id], |_| Ok(()))
        .optional()
        .map_err(sql_err)
        .map(|r| r.is_some())
}

pub(super) fn import(
    conn: &Connection,
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
        let by_id: Option<(String, String)> = conn
            .prepare_cached("SELECT namespace, name FROM collections WHERE id = ?1")
            .map_err(sql_err)?
            .query_row([c.id.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(sql_err)?;
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
                if read::collection_id(conn, ns, c.name.as_str())?.is_some() {
                    return Err(StoreError::AlreadyExists {
                        what: format!("collection {} (with another id)", c.name),
                    });
                }
                conn.prepare_cached(
                    "INSERT INTO collections (id, namespace, name, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql_err)?
                .execute(params![c.id.0, ns.as_str(), c.name.as_str(), c.description, micros(c.created_at)])
                .map_err(sql_err)?;
                *written.entry("collections").or_default() += 1;
                out.push(Change::CollectionCreated {
                    collection: c.clone(),
                });
            }
        }
        collections.insert(c.id);
    }

    // Which artifacts this import writes (the shared rules decide).
    let crate::rules::ImportPlan {
        to_write,
        present,
        needed_blobs,
        needed_runs,
        skipped: skipped_artifacts,
        differing: differing_artifacts,
    } = crate::rules::plan_import(ns, rec.artifacts, rec.revisions, &collections, skip, |id| {
        if !exists(conn, "SELECT 1 FROM artifacts WHERE id = ?1", id.0)? {
            return Ok(None);
        }
        Ok(Some(read::load_artifact(
            conn,
            ns,
            &crate::ArtifactKey::Id(id),
        )?))
    })?;
    if skipped_artifacts > 0 {
        skipped.insert("artifacts", skipped_artifacts);
    }
    if differing_artifacts > 0 {
        differing.insert("artifacts", differing_artifacts);
    }

    // Only the blobs and runs that what is written needs; each blob is
    // checked against its digest as it streams in.
    for b in rec.blobs {
        if !needed_blobs.contains(&b.digest)
            || exists(
                conn,
                "SELECT 1 FROM blobs WHERE digest = ?1",
                b.digest.hex(),
            )?
        {
            continue;
        }
        let f = std::fs::File::open(&b.path)
            .map_err(|e| StoreError::io(format!("opening {}", b.path.display()), e))?;
        let (digest, size) = blobs::store(conn, Content::Reader(Box::new(f)), now)?;
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
        if exists(conn, "SELECT 1 FROM runs WHERE id = ?1", run.id.0)? {
            if !skip {
                return Err(crate::rules::import_taken(format!("run {}", run.id)));
            }
            *skipped.entry("runs").or_default() += 1;
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO runs (id, namespace, kind, status, actor, input, manifest, owner, started_at, finished_at, job_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'import', ?8, ?9, NULL)",
        )
        .map_err(sql_err)?
        .execute(params![
            run.id.0,
            ns.as_str(),
            run.kind,
            run.status.as_str(),
            run.actor.to_string(),
            run.input.to_string(),
            run.manifest.as_ref().map(|m| m.to_string()),
            micros(run.started_at),
            run.finished_at.map(micros),
        ])
        .map_err(sql_err)?;
        for s in steps {
            conn.prepare_cached(
                "INSERT INTO run_steps (run_id, seq, name, status, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(sql_err)?
            .execute(params![run.id.0, s.seq as i64, s.name, s.status.as_str(), s.detail.to_string(), micros(s.at)])
            .map_err(sql_err)?;
        }
        *written.entry("runs").or_default() += 1;
    }

    for (a, revs) in to_write {
        write_artifact(conn, &a, true)?;
        let last = revs.len();
        *written.entry("revisions").or_default() += last as u64;
        for (i, r) in revs.into_iter().enumerate() {
            insert_revision(conn, &r)?;
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
        if exists(conn, "SELECT 1 FROM relations WHERE id = ?1", r.id.0)? {
            if !skip {
                return Err(crate::rules::import_taken(format!("relation {}", r.id)));
            }
            *skipped.entry("relations").or_default() += 1;
            continue;
        }
        for end in [r.source, r.target] {
            if !present.contains(&end) && !live_in(conn, ctx, end)? {
                return Err(StoreError::DanglingReference {
                    what: format!(
                        "relation {} points at artifact {end}, which is not in the store",
                        r.id
                    ),
                });
            }
        }
        write_relation(conn, &r, true)?;
        *written.entry("relations").or_default() += 1;
        out.push(Change::RelationImported { relation: r });
    }

    let sorted =
        |m: HashMap<&'static str, u64>| m.into_iter().collect::<std::collections::BTreeMap<_, _>>();
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

fn live_in(conn: &Connection, ctx: &WriteContext, id: ArtifactId) -> Result<bool> {
    Ok(read::load_artifact(conn, &ctx.namespace, &crate::ArtifactKey::Id(id))?.is_some())
}

fn insert_revision(conn: &Connection, r: &Revision) -> Result<()> {
    let provenance = serde_json::to_string(&r.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO revisions (artifact_id, revision, change, prev_digest, digest, size, media_type, metadata, \
         lifecycle, classification, provenance, content_available, actor, correlation_id, run_id, created_at, title) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )
    .map_err(sql_err)?
    .execute(params![
        r.artifact_id.0,
        r.revision as i64,
        r.change.as_str(),
        r.prev_digest.map(|d: Digest| d.hex()),
        r.digest.hex(),
        r.size as i64,
        r.media_type,
        r.metadata.as_str(),
        r.lifecycle.as_str(),
        r.classification.as_str(),
        provenance,
        r.content_available,
        r.actor.to_string(),
        r.correlation_id.as_str(),
        r.run_id.map(|x| x.0),
        micros(r.created_at),
        r.title,
    ])
    .map_err(sql_err)?;
    Ok(())
}
