//! Knowledge writes: each applies one operation inside the engine's
//! transaction and returns the changes it made (the caller appends their
//! audit records and events).

use std::collections::HashMap;

use kontextual_model::change::RelationDeleteCause;
use kontextual_model::{
    Artifact, ArtifactId, ArtifactState, Change, ChangeKind, Collection, CollectionId,
    ContextPackage, Digest, Metadata, PackageName, Provenance, Relation, RelationId, RelationType,
    Timestamp,
};

use super::read;
use crate::access::write::refuse_if_held;
use crate::blobs;
use crate::port::{ArtifactKey, Content, PutArtifact, WriteContext};
use crate::rules;
use crate::sql::{Tx, args};
use crate::{Result, StoreError};

pub(crate) fn create_collection(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    name: &str,
    description: &str,
    if_absent: bool,
    now: Timestamp,
) -> Result<Vec<Change>> {
    if read::collection_id(tx, &ctx.namespace, name)?.is_some() {
        if if_absent {
            return Ok(Vec::new());
        }
        return Err(StoreError::AlreadyExists {
            what: format!("collection {name}"),
        });
    }
    let c = Collection {
        id: CollectionId::new(),
        namespace: ctx.namespace.clone(),
        name: name.parse()?,
        description: description.to_owned(),
        created_at: now,
        artifact_count: 0,
    };
    tx.execute(
        "INSERT INTO collections (id, namespace, name, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![c.id.0, c.namespace.as_str(), c.name.as_str(), &c.description, now],
    )?;
    Ok(vec![Change::CollectionCreated { collection: c }])
}

/// Collection ids looked up by a batch's consecutive puts (an ingest batch
/// puts many files into one collection). The dispatcher forgets them at any
/// other operation, which might create or change a collection.
#[derive(Default)]
pub(crate) struct CollectionIds(HashMap<String, CollectionId>);

impl CollectionIds {
    pub(crate) fn forget(&mut self) {
        self.0.clear();
    }

    fn get(&mut self, tx: &mut Tx<'_>, ctx: &WriteContext, name: &str) -> Result<CollectionId> {
        if let Some(id) = self.0.get(name) {
            return Ok(*id);
        }
        let id = read::collection_id(tx, &ctx.namespace, name)?
            .ok_or_else(|| StoreError::not_found(format!("collection {name}")))?;
        self.0.insert(name.to_owned(), id);
        Ok(id)
    }
}

fn check_derived_from(tx: &mut Tx<'_>, ctx: &WriteContext, p: &Provenance) -> Result<()> {
    for id in &p.derived_from {
        match read::artifact(tx, &ctx.namespace, &ArtifactKey::Id(*id))? {
            Some(a) if a.is_live() => {}
            _ => {
                return Err(StoreError::DanglingReference {
                    what: format!("derived_from artifact {id} does not exist or is deleted"),
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn put_artifact(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    mut put: PutArtifact,
    now: Timestamp,
    collections: &mut CollectionIds,
) -> Result<Change> {
    let what = format!("artifact {}/{}", put.collection, put.name);
    let coll_id = collections.get(tx, ctx, put.collection.as_str())?;
    let current = read::artifact_in(
        tx,
        &ctx.namespace,
        coll_id,
        put.collection.as_str(),
        put.name.as_str(),
    )?;
    rules::check_expect(&what, current.as_ref(), put.expect)?;
    rules::check_put(&put)?;
    if let Some(p) = &put.provenance {
        check_derived_from(tx, ctx, p)?;
    }
    let content = std::mem::replace(&mut put.content, Content::Keep);
    let keep = matches!(content, Content::Keep);
    let (digest, size) = match (content, &current) {
        (Content::Keep, Some(cur)) if cur.state != ArtifactState::Purged => (cur.digest, cur.size),
        (Content::Keep, _) => {
            return Err(StoreError::InvalidInput(format!(
                "{what} has no content to keep: provide content"
            )));
        }
        (content, _) => blobs::store(tx, content, now)?,
    };
    let plan = rules::plan_put(ctx, put, coll_id, current.as_ref(), digest, size, keep, now);
    if let rules::PutPlan::Write {
        next,
        kind,
        prev_digest,
    } = &plan
    {
        write_artifact(tx, next, current.is_none())?;
        insert_revision(tx, ctx, next, *kind, *prev_digest, true)?;
    }
    Ok(rules::put_change(plan))
}

/// Inserts or updates an artifact's current row.
pub(crate) fn write_artifact(tx: &mut Tx<'_>, a: &Artifact, insert: bool) -> Result<()> {
    let provenance = serde_json::to_string(&a.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    let sql = if insert {
        "INSERT INTO artifacts (id, namespace, collection_id, name, artifact_type, media_type, digest, size, \
         metadata, lifecycle, classification, source_system, provenance, state, revision, run_id, created_at, updated_at, title) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    } else {
        "UPDATE artifacts SET namespace = ?2, collection_id = ?3, name = ?4, artifact_type = ?5, media_type = ?6, \
         digest = ?7, size = ?8, metadata = ?9, lifecycle = ?10, classification = ?11, source_system = ?12, \
         provenance = ?13, state = ?14, revision = ?15, run_id = ?16, created_at = ?17, updated_at = ?18, title = ?19 WHERE id = ?1"
    };
    tx.execute(
        sql,
        args![
            a.id.0,
            a.namespace.as_str(),
            a.collection_id.0,
            a.name.as_str(),
            &a.artifact_type,
            &a.media_type,
            a.digest.hex(),
            a.size,
            a.metadata.as_str(),
            a.lifecycle.as_str(),
            a.classification.as_str(),
            &a.source_system,
            provenance,
            a.state.as_str(),
            a.revision,
            a.run_id.map(|r| r.0),
            a.created_at,
            a.updated_at,
            &a.title,
        ],
    )
    .map_err(|e| match e {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!("artifact {}/{}", a.collection, a.name),
        },
        other => other,
    })?;
    Ok(())
}

fn insert_revision(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    a: &Artifact,
    kind: ChangeKind,
    prev_digest: Option<Digest>,
    content_available: bool,
) -> Result<()> {
    let provenance = serde_json::to_string(&a.provenance)
        .map_err(|e| StoreError::Internal(format!("encoding provenance: {e}")))?;
    tx.execute(
        "INSERT INTO revisions (artifact_id, revision, change, prev_digest, digest, size, media_type, metadata, \
         lifecycle, classification, provenance, content_available, actor, correlation_id, run_id, created_at, title) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        args![
            a.id.0,
            a.revision,
            kind.as_str(),
            prev_digest.map(|d| d.hex()),
            a.digest.hex(),
            a.size,
            &a.media_type,
            a.metadata.as_str(),
            a.lifecycle.as_str(),
            a.classification.as_str(),
            provenance,
            content_available,
            ctx.actor.to_string(),
            ctx.correlation_id.as_str(),
            ctx.run_id.map(|r| r.0),
            a.updated_at,
            &a.title,
        ],
    )?;
    Ok(())
}

fn existing(tx: &mut Tx<'_>, ctx: &WriteContext, key: &ArtifactKey) -> Result<Artifact> {
    read::artifact(tx, &ctx.namespace, key)?.ok_or_else(|| StoreError::not_found(key.to_string()))
}

fn check_rev(what: &str, current: u64, expect: Option<u64>) -> Result<()> {
    match expect {
        Some(e) if e != current => Err(StoreError::Conflict {
            what: what.to_owned(),
            expected: e,
            actual: current.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Deletes the live relations touching an artifact that is going away.
fn cascade_relations(tx: &mut Tx<'_>, id: ArtifactId, now: Timestamp) -> Result<Vec<Change>> {
    read::live_relations_of(tx, id)?
        .into_iter()
        .map(|r| delete_relation(tx, r, RelationDeleteCause::EndpointDeleted, now))
        .collect()
}

pub(crate) fn delete_artifact(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    key: &ArtifactKey,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let cur = existing(tx, ctx, key)?;
    let what = format!("artifact {}/{}", cur.collection, cur.name);
    if !cur.is_live() {
        return Err(StoreError::not_found(format!(
            "{what} (already {})",
            cur.state
        )));
    }
    check_rev(&what, cur.revision, expect)?;
    refuse_if_held(tx, ctx, &cur, &what)?;
    let mut changes = cascade_relations(tx, cur.id, now)?;
    changes.push(tombstone(tx, ctx, &cur, ChangeKind::Deleted, now)?);
    Ok(changes)
}

/// Appends the revision that ends an artifact's life (deleted or purged):
/// same content record, new state, one revision up.
fn tombstone(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    cur: &Artifact,
    kind: ChangeKind,
    now: Timestamp,
) -> Result<Change> {
    let (state, content_available) = match kind {
        ChangeKind::Purged => (ArtifactState::Purged, false),
        _ => (ArtifactState::Deleted, true),
    };
    let next = Artifact {
        state,
        revision: cur.revision + 1,
        run_id: ctx.run_id,
        updated_at: now,
        ..cur.clone()
    };
    write_artifact(tx, &next, false)?;
    insert_revision(tx, ctx, &next, kind, Some(cur.digest), content_available)?;
    Ok(Change::Artifact {
        kind,
        artifact: next,
        prev_digest: Some(cur.digest),
    })
}

/// Removes an artifact's content from every revision (the history stays),
/// and the blobs nothing else needs.
pub(crate) fn purge_artifact(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    key: &ArtifactKey,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let cur = existing(tx, ctx, key)?;
    let what = format!("artifact {}/{}", cur.collection, cur.name);
    if cur.state == ArtifactState::Purged {
        return Err(StoreError::not_found(format!(
            "content of {what} (already purged)"
        )));
    }
    check_rev(&what, cur.revision, expect)?;
    refuse_if_held(tx, ctx, &cur, &what)?;
    let mut changes = cascade_relations(tx, cur.id, now)?;
    let digests = tx.query(
        "SELECT DISTINCT digest FROM revisions WHERE artifact_id = ?1 AND content_available",
        args![cur.id.0],
        |r| super::rows::digest(r, 0),
    )?;
    tx.execute(
        "UPDATE revisions SET content_available = FALSE WHERE artifact_id = ?1",
        args![cur.id.0],
    )?;
    let change = tombstone(tx, ctx, &cur, ChangeKind::Purged, now)?;
    blobs::collect(tx, &digests)?;
    changes.push(change);
    Ok(changes)
}

fn endpoint(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    role: &str,
    key: &ArtifactKey,
) -> Result<Artifact> {
    match read::artifact(tx, &ctx.namespace, key)? {
        Some(a) if a.is_live() => Ok(a),
        Some(a) => Err(StoreError::DanglingReference {
            what: format!("relation {role} {key} is {}", a.state),
        }),
        None => Err(StoreError::DanglingReference {
            what: format!("relation {role} {key} does not exist"),
        }),
    }
}

/// Inserts or updates a relation's row.
pub(crate) fn write_relation(tx: &mut Tx<'_>, r: &Relation, insert: bool) -> Result<()> {
    let sql = if insert {
        "INSERT INTO relations (id, namespace, rel_type, source_id, target_id, properties, revision, deleted, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    } else {
        "UPDATE relations SET namespace = ?2, rel_type = ?3, source_id = ?4, target_id = ?5, properties = ?6, \
         revision = ?7, deleted = ?8, created_at = ?9, updated_at = ?10 WHERE id = ?1"
    };
    tx.execute(
        sql,
        args![
            r.id.0,
            r.namespace.as_str(),
            r.rel_type.as_str(),
            r.source.0,
            r.target.0,
            r.properties.as_str(),
            r.revision,
            r.deleted,
            r.created_at,
            r.updated_at,
        ],
    )
    .map_err(|e| match e {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!("relation {} {} {}", r.source, r.rel_type, r.target),
        },
        other => other,
    })?;
    Ok(())
}

/// Whether another live relation already joins these endpoints with this
/// type. Asked before writing: on PostgreSQL a failed statement would
/// abort the whole transaction.
fn live_edge_exists(tx: &mut Tx<'_>, r: &Relation) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM relations WHERE namespace = ?1 AND source_id = ?2 AND rel_type = ?3 \
             AND target_id = ?4 AND NOT deleted AND id <> ?5",
            args![
                r.namespace.as_str(),
                r.source.0,
                r.rel_type.as_str(),
                r.target.0,
                r.id.0
            ],
            |_| Ok(()),
        )?
        .is_some())
}

pub(crate) fn create_relation(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    source: &ArtifactKey,
    rel_type: RelationType,
    target: &ArtifactKey,
    properties: Metadata,
    now: Timestamp,
) -> Result<Change> {
    let s = endpoint(tx, ctx, "source", source)?;
    let t = endpoint(tx, ctx, "target", target)?;
    if s.id == t.id {
        return Err(StoreError::InvalidInput(format!(
            "artifact {}/{} cannot be related to itself",
            s.collection, s.name
        )));
    }
    let r = Relation {
        id: RelationId::new(),
        namespace: ctx.namespace.clone(),
        rel_type,
        source: s.id,
        target: t.id,
        properties,
        revision: 1,
        deleted: false,
        created_at: now,
        updated_at: now,
    };
    if live_edge_exists(tx, &r)? {
        return Err(StoreError::AlreadyExists {
            what: format!(
                "relation {}/{} {} {}/{}",
                s.collection, s.name, r.rel_type, t.collection, t.name
            ),
        });
    }
    write_relation(tx, &r, true)?;
    Ok(Change::RelationCreated { relation: r })
}

/// A live relation, at the expected revision if one is given.
pub(crate) fn live_relation(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: RelationId,
    expect: Option<u64>,
) -> Result<Relation> {
    let r = read::relation(tx, &ctx.namespace, id)?
        .filter(|r| !r.deleted)
        .ok_or_else(|| StoreError::not_found(format!("relation {id}")))?;
    check_rev(&format!("relation {id}"), r.revision, expect)?;
    Ok(r)
}

pub(crate) fn update_relation(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: RelationId,
    rel_type: Option<RelationType>,
    properties: Option<Metadata>,
    expect: Option<u64>,
    now: Timestamp,
) -> Result<Change> {
    let cur = live_relation(tx, ctx, id, expect)?;
    let next = Relation {
        rel_type: rel_type.unwrap_or_else(|| cur.rel_type.clone()),
        properties: properties.unwrap_or_else(|| cur.properties.clone()),
        revision: cur.revision + 1,
        updated_at: now,
        ..cur.clone()
    };
    if next.rel_type != cur.rel_type && live_edge_exists(tx, &next)? {
        return Err(StoreError::AlreadyExists {
            what: format!("relation {} {} {}", next.source, next.rel_type, next.target),
        });
    }
    write_relation(tx, &next, false)?;
    Ok(Change::RelationUpdated { relation: next })
}

pub(crate) fn delete_relation(
    tx: &mut Tx<'_>,
    cur: Relation,
    cause: RelationDeleteCause,
    now: Timestamp,
) -> Result<Change> {
    let next = Relation {
        deleted: true,
        revision: cur.revision + 1,
        updated_at: now,
        ..cur
    };
    write_relation(tx, &next, false)?;
    Ok(Change::RelationDeleted {
        relation: next,
        cause,
    })
}

/// Saves a new version of a context package, unless its latest version
/// already has this digest.
pub(crate) fn save_context_package(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    name: PackageName,
    digest: Digest,
    manifest: serde_json::Value,
    now: Timestamp,
) -> Result<Change> {
    let latest = read::context_package(tx, &ctx.namespace, name.as_str(), None)?;
    if let Some(p) = latest.as_ref().filter(|p| p.digest == digest) {
        return Ok(Change::ContextPackageUnchanged { package: p.clone() });
    }
    let package = ContextPackage {
        id: uuid::Uuid::now_v7(),
        namespace: ctx.namespace.clone(),
        name,
        version: latest.map_or(1, |p| p.version + 1),
        digest,
        manifest,
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        created_at: now,
    };
    tx.execute(
        "INSERT INTO context_packages (namespace, name, version, id, digest, manifest, actor, \
         correlation_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![
            package.namespace.as_str(),
            package.name.as_str(),
            package.version,
            package.id,
            package.digest.hex(),
            package.manifest.to_string(),
            package.actor.to_string(),
            package.correlation_id.as_str(),
            now,
        ],
    )?;
    Ok(Change::ContextPackageSaved { package })
}

/// Applies one knowledge operation inside the engine's transaction and
/// returns the changes it made (`crate::apply` appends their audit records).
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    op: crate::port::KnowledgeOp,
    now: Timestamp,
    collections: &mut CollectionIds,
) -> Result<Vec<Change>> {
    use crate::port::KnowledgeOp;
    Ok(match op {
        KnowledgeOp::CreateCollection {
            name,
            description,
            if_absent,
        } => create_collection(tx, ctx, name.as_str(), &description, if_absent, now)?,
        KnowledgeOp::PutArtifact(put) => vec![put_artifact(tx, ctx, put, now, collections)?],
        KnowledgeOp::DeleteArtifact { key, expect } => delete_artifact(tx, ctx, &key, expect, now)?,
        KnowledgeOp::PurgeArtifact { key, expect } => purge_artifact(tx, ctx, &key, expect, now)?,
        KnowledgeOp::CreateRelation {
            source,
            rel_type,
            target,
            properties,
        } => vec![create_relation(
            tx, ctx, &source, rel_type, &target, properties, now,
        )?],
        KnowledgeOp::UpdateRelation {
            id,
            rel_type,
            properties,
            expect,
        } => vec![update_relation(
            tx, ctx, id, rel_type, properties, expect, now,
        )?],
        KnowledgeOp::DeleteRelation { id, expect } => {
            let cur = live_relation(tx, ctx, id, expect)?;
            vec![delete_relation(
                tx,
                cur,
                RelationDeleteCause::Requested,
                now,
            )?]
        }
        KnowledgeOp::SaveContextPackage {
            name,
            digest,
            manifest,
        } => vec![save_context_package(tx, ctx, name, digest, manifest, now)?],
        KnowledgeOp::ImportRecords(rec) => crate::import::import(tx, ctx, *rec, now)?,
    })
}
