//! Search (K8): the one search path for every surface. It brings the index
//! up to date (or waits, bounded, for its owner), runs the query, then checks
//! every hit against the store and the policy, so a lagging index never
//! returns a deleted, superseded or unreadable artifact.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use kontextual_index::{Filters, Granularity, Hit, SearchRequest as IndexRequest};
use kontextual_model::{
    Artifact, ArtifactId, CollectionName, Lifecycle, RelationType, Timestamp, names::escape_name,
};
use kontextual_store::{ArtifactKey, PageRequest, RelationQuery};
use serde::Serialize;

use crate::error::index_err;
use crate::projection::{FOLLOWER_WAIT, Projection, index_dir};
use crate::{Caller, Error, Knowledge, Permission, Resource, Result};

/// What a caller restricted by grants may read.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadableScope {
    pub collections: Vec<String>,
    pub artifact_ids: Vec<String>,
    /// Collections it may name in a filter (whole, or with a readable artifact).
    pub visible_collections: Vec<String>,
}

/// Largest page of hits.
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// Deepest relationship expansion.
pub const MAX_EXPAND_DEPTH: u32 = 5;
/// Most related artifacts listed per hit.
const MAX_RELATED: usize = 50;

/// Filters shared by search and context build (an export scope has its own).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SearchFilters {
    pub collections: Vec<String>,
    pub types: Vec<String>,
    pub lifecycles: Vec<String>,
    /// `(key, value)`; key is a dotted path into the metadata.
    pub metadata: Vec<(String, String)>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    /// Plain text, searched as words (any string); with `syntax`, tantivy
    /// query syntax (phrases, `+must`, `-not`, `field:term`, `*`).
    pub query: String,
    /// Whether `query` is query syntax rather than plain text.
    pub syntax: bool,
    pub filters: SearchFilters,
    /// Hits per section instead of per artifact.
    pub sections: bool,
    pub offset: u32,
    /// 0 means 10.
    pub limit: u32,
    /// Relationship types to follow from each hit.
    pub expand: Vec<String>,
    /// Hops to follow (1 when `expand` is given and this is 0).
    pub depth: u32,
    /// Wait until the index covers every write made before the search
    /// (read-your-writes); otherwise a server answers from its last refresh
    /// (at most about a quarter of a second old) and reports the lag.
    pub read_your_writes: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SearchResponse {
    pub query: String,
    /// Matching documents in the index (before store and policy checks).
    pub total: usize,
    pub offset: u32,
    pub limit: u32,
    pub next_offset: Option<u32>,
    pub hits: Vec<SearchHit>,
    /// Hits the index returned but the store no longer backs (the index
    /// lagged): deleted, superseded, or not readable by the caller.
    pub dropped: u32,
    pub index: Freshness,
}

/// How current the index was for this answer.
#[derive(Clone, Debug, Serialize)]
pub struct Freshness {
    pub applied_seq: u64,
    /// Changes in the store not yet applied (0 = read-your-writes).
    pub lag: u64,
    /// Whether this process owns (and so wrote) the index.
    pub owner: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SearchHit {
    pub rank: u32,
    pub score: f32,
    /// `COLLECTION/NAME` or `COLLECTION/NAME#selector`.
    #[serde(rename = "ref")]
    pub reference: String,
    pub artifact_id: ArtifactId,
    pub collection: String,
    pub name: String,
    pub selector: Option<String>,
    pub heading: Option<String>,
    pub title: Option<String>,
    pub artifact_type: String,
    pub lifecycle: String,
    pub revision: u64,
    pub updated_at: Timestamp,
    pub snippet: Option<kontextual_index::Snippet>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

/// An artifact reached by following relationships.
#[derive(Clone, Debug, Serialize)]
pub struct Related {
    pub depth: u32,
    /// Relation type, and whether it was followed forwards (`out`) or backwards (`in`).
    pub via: String,
    pub direction: &'static str,
    #[serde(rename = "ref")]
    pub reference: String,
    pub artifact_id: ArtifactId,
    pub title: Option<String>,
    /// The artifact the hop started from.
    pub from: ArtifactId,
}

pub(crate) fn artifact_resource(a: &Artifact) -> Resource<'_> {
    Resource::Artifact {
        collection: a.collection.as_str(),
        name: a.name.as_str(),
    }
}

/// `COLLECTION/NAME`, escaped so it parses back.
pub fn artifact_ref(a: &Artifact) -> String {
    format!("{}/{}", a.collection, escape_name(a.name.as_str()))
}

impl Knowledge {
    /// The search projection, opened (and caught up or rebuilt) on first use.
    pub(crate) fn projection(&self) -> Result<Arc<Projection>> {
        let mut slot = self.projection.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let dir = self.data_dir.as_ref().ok_or_else(|| {
            index_err(kontextual_index::IndexError::Unavailable(
                "this store has no data directory for an index".to_owned(),
            ))
        })?;
        let p = Arc::new(Projection::open(&index_dir(dir), self.store().clone())?);
        *slot = Some(p.clone());
        Ok(p)
    }

    /// The projection if this process has opened it already.
    pub(crate) fn loaded_projection(&self) -> Option<Arc<Projection>> {
        self.projection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Brings the index up to date for a read: the owner applies the feed;
    /// others wait (bounded) for the owner. Returns the remaining lag.
    ///
    /// In a server (the index refreshed by its follower, [`Self::refresh_in_background`])
    /// a read never writes: it reads the last committed view and reports its
    /// lag — or, with `read_your_writes`, first waits (bounded) until a
    /// refresh covers every write made before it (Elasticsearch's
    /// `refresh=wait_for`). Elsewhere the owner catches up itself.
    pub(crate) fn fresh_index(&self, read_your_writes: bool) -> Result<(Arc<Projection>, u64)> {
        let p = self.projection()?;
        let lag = if p.is_owner() && self.background_refresh() {
            let target = self.store().feed().position()?.last_seq;
            if read_your_writes {
                p.wait_committed(target, FOLLOWER_WAIT)
            } else {
                target.saturating_sub(p.committed_seq())
            }
        } else if p.is_owner() {
            p.catch_up()?;
            0
        } else {
            p.wait_for_owner(FOLLOWER_WAIT)?
        };
        Ok((p, lag))
    }

    /// Tells the services that a follower keeps this process's index fresh
    /// (a short interval): searches then stop catching up themselves, so a
    /// read never pays for a commit while writes arrive.
    pub fn refresh_in_background(&self) {
        self.background_refresh
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn background_refresh(&self) -> bool {
        self.background_refresh
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Validates filters into the index's terms; unknown collections are errors.
    pub(crate) fn index_filters(&self, caller: &Caller, f: &SearchFilters) -> Result<Filters> {
        let readable = self.readable_scope(caller)?;
        for c in &f.collections {
            let name = CollectionName::new(c)?;
            let visible = readable
                .as_ref()
                .is_none_or(|r| r.visible_collections.contains(c));
            if !visible
                || self
                    .store()
                    .knowledge()
                    .collection(&caller.namespace, &name)?
                    .is_none()
            {
                return Err(Error::NotFound(format!("collection {name}")));
            }
        }
        let collections = f.collections.clone();
        for t in &f.types {
            kontextual_model::artifact::check_artifact_type(t)?;
        }
        for l in &f.lifecycles {
            l.parse::<Lifecycle>()?;
        }
        if let (Some(s), Some(u)) = (f.since, f.until)
            && s >= u
        {
            return Err(Error::InvalidInput(format!(
                "--since {s} is not before --until {u}"
            )));
        }
        Ok(Filters {
            collections,
            types: f.types.clone(),
            lifecycles: f.lifecycles.clone(),
            // nothing above the caller's clearance is found or counted
            classifications: match caller.clearance {
                Some(level) => [
                    kontextual_model::Classification::Public,
                    kontextual_model::Classification::Internal,
                    kontextual_model::Classification::Confidential,
                    kontextual_model::Classification::Restricted,
                ]
                .into_iter()
                .filter(|c| *c <= level)
                .map(|c| c.to_string())
                .collect(),
                None => Vec::new(),
            },
            metadata: f.metadata.clone(),
            since: f.since,
            until: f.until,
            artifact_ids: Vec::new(),
            // Search never returns or counts what the caller may not read.
            readable: readable.map(|r| kontextual_index::Readable {
                collections: r.collections,
                artifact_ids: r.artifact_ids,
            }),
        })
    }

    /// What a caller may read, or `None` when it may read the whole
    /// namespace: whole collections, and single artifacts it holds grants on.
    pub(crate) fn readable_scope(&self, caller: &Caller) -> Result<Option<ReadableScope>> {
        if self.can(caller, Permission::Read, &Resource::Namespace("everything")) {
            return Ok(None);
        }
        let mut scope = ReadableScope::default();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let p = self
                .store()
                .knowledge()
                .collections(&caller.namespace, &page)?;
            for c in &p.items {
                if self.can(
                    caller,
                    Permission::Read,
                    &Resource::Collection(c.name.as_str()),
                ) {
                    scope.collections.push(c.name.to_string());
                    scope.visible_collections.push(c.name.to_string());
                }
            }
            match p.next {
                Some(n) => page.after = Some(n),
                None => break,
            }
        }
        for g in caller.grants.iter().flat_map(|g| g.iter()) {
            if let kontextual_model::GrantScope::Artifact(c, n) = &g.scope
                && g.permission.covers(kontextual_model::GrantPermission::Read)
            {
                let key = ArtifactKey::Name {
                    collection: c.clone(),
                    name: n.clone(),
                };
                if let Some(a) = self.store().knowledge().artifact(&caller.namespace, &key)? {
                    scope.artifact_ids.push(a.id.to_string());
                    scope.visible_collections.push(c.to_string());
                }
            }
        }
        Ok(Some(scope))
    }

    pub fn search(&self, caller: &Caller, req: &SearchRequest) -> Result<SearchResponse> {
        let started = std::time::Instant::now();
        let r = self.search_inner(caller, req);
        metrics::histogram!("kontextual_query_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        r
    }

    fn search_inner(&self, caller: &Caller, req: &SearchRequest) -> Result<SearchResponse> {
        let limit = match req.limit {
            0 => 10,
            n if n > MAX_SEARCH_LIMIT => {
                return Err(Error::InvalidInput(format!(
                    "--limit {n} is above the maximum of {MAX_SEARCH_LIMIT}"
                )));
            }
            n => n,
        };
        let expand = relation_types(&req.expand)?;
        let depth = expand_depth(&expand, req.depth)?;
        let filters = self.index_filters(caller, &req.filters)?;
        self.record_access(caller, "search", req.query.clone());
        let (p, lag) = self.fresh_index(req.read_your_writes)?;
        let ir = IndexRequest {
            namespace: caller.namespace.as_str(),
            query: &req.query,
            syntax: req.syntax,
            filters,
            granularity: if req.sections {
                Granularity::Sections
            } else {
                Granularity::Artifacts
            },
            offset: req.offset as usize,
            limit: limit as usize,
            snippet_chars: 160,
        };
        let found = p.index().search(&ir).map_err(index_err)?;
        let mut hits = Vec::with_capacity(found.hits.len());
        let mut dropped = 0;
        for (i, h) in found.hits.into_iter().enumerate() {
            let rank = req.offset + i as u32 + 1;
            // With no lag, the index equals the store as of this search (the
            // feed had nothing it had not applied), so each hit is current by
            // construction and only the policy is asked. With lag, every hit
            // is checked against the store itself.
            let hit = if lag == 0 {
                self.current_hit(caller, rank, h)
            } else {
                // a lagging index may not have dropped a fresh quarantine yet
                self.checked(caller, &h)?
                    .filter(|a| !self.is_quarantined(&caller.namespace, a.id).unwrap_or(true))
                    .map(|a| hit_from_store(rank, h, &a))
            };
            let Some(mut hit) = hit else {
                dropped += 1;
                continue;
            };
            if !expand.is_empty() {
                hit.related = self.related(caller, hit.artifact_id, &expand, depth)?;
            }
            hits.push(hit);
        }
        let seen = req.offset as usize + limit as usize;
        // Hits the store no longer backs are not counted either (only those
        // on this page are known; the index catches up shortly).
        let total = found.total.saturating_sub(dropped as usize);
        Ok(SearchResponse {
            query: req.query.clone(),
            total,
            offset: req.offset,
            limit,
            next_offset: (total > seen).then_some(seen as u32),
            hits,
            dropped,
            index: Freshness {
                applied_seq: p.applied_seq()?,
                lag,
                owner: p.is_owner(),
            },
        })
    }

    /// The store's current artifact behind a hit, if it is live, at the
    /// indexed revision, and readable by the caller.
    pub(crate) fn checked(&self, caller: &Caller, h: &Hit) -> Result<Option<Artifact>> {
        let Ok(id) = h.artifact_id.parse::<uuid::Uuid>() else {
            return Ok(None);
        };
        let Some(a) = self
            .store()
            .knowledge()
            .artifact(&caller.namespace, &ArtifactKey::Id(ArtifactId(id)))?
        else {
            return Ok(None);
        };
        if !a.is_live() || a.revision != h.revision {
            return Ok(None);
        }
        if !self.can(caller, Permission::Read, &artifact_resource(&a))
            || !self.cleared(caller, a.classification)
        {
            return Ok(None);
        }
        Ok(Some(a))
    }

    /// Artifacts reachable from `start` over `types`, breadth first, each
    /// listed once at its shortest depth; cycles end where they meet a
    /// visited artifact.
    pub fn related(
        &self,
        caller: &Caller,
        start: ArtifactId,
        types: &[RelationType],
        depth: u32,
    ) -> Result<Vec<Related>> {
        let mut out = Vec::new();
        let mut seen: HashSet<ArtifactId> = HashSet::from([start]);
        let mut queue = VecDeque::from([(start, 0u32)]);
        while let Some((from, d)) = queue.pop_front() {
            if d >= depth || out.len() >= MAX_RELATED {
                continue;
            }
            for t in types {
                let q = RelationQuery {
                    artifact: Some(from),
                    rel_type: Some(t.clone()),
                    include_deleted: false,
                };
                let rels = self.store().knowledge().relations(
                    &caller.namespace,
                    &q,
                    &PageRequest::first(PageRequest::MAX_LIMIT),
                )?;
                for r in rels.items {
                    let (other, direction) = if r.source == from {
                        (r.target, "out")
                    } else {
                        (r.source, "in")
                    };
                    if !seen.insert(other) || out.len() >= MAX_RELATED {
                        continue;
                    }
                    let Some(a) = self
                        .store()
                        .knowledge()
                        .artifact(&caller.namespace, &ArtifactKey::Id(other))?
                        .filter(|a| a.is_live())
                    else {
                        continue;
                    };
                    if !self.can(caller, Permission::Read, &artifact_resource(&a))
                        || !self.cleared(caller, a.classification)
                        || self.is_quarantined(&caller.namespace, a.id)?
                    {
                        continue;
                    }
                    out.push(Related {
                        depth: d + 1,
                        via: t.to_string(),
                        direction,
                        reference: artifact_ref(&a),
                        artifact_id: a.id,
                        title: a.title.clone(),
                        from,
                    });
                    queue.push_back((other, d + 1));
                }
            }
        }
        Ok(out)
    }
}

impl Knowledge {
    /// Artifacts related to `r` over `types` (names), up to `depth` hops.
    pub fn artifact_related(
        &self,
        caller: &Caller,
        r: &kontextual_model::ArtifactRef,
        types: &[String],
        depth: u32,
    ) -> Result<Vec<Related>> {
        let types = relation_types(types)?;
        let depth = expand_depth(&types, depth)?;
        let a = self.artifact_show(caller, r)?;
        self.related(caller, a.id, &types, depth)
    }
}

pub(crate) fn relation_types(names: &[String]) -> Result<Vec<RelationType>> {
    names
        .iter()
        .map(|t| RelationType::new(t).map_err(Error::from))
        .collect()
}

pub(crate) fn expand_depth(types: &[RelationType], depth: u32) -> Result<u32> {
    if depth > MAX_EXPAND_DEPTH {
        return Err(Error::InvalidInput(format!(
            "--depth {depth} is above the maximum of {MAX_EXPAND_DEPTH}"
        )));
    }
    if depth > 0 && types.is_empty() {
        return Err(Error::InvalidInput(
            "--depth needs --expand TYPE (which relationships to follow)".to_owned(),
        ));
    }
    Ok(if types.is_empty() { 0 } else { depth.max(1) })
}

impl Knowledge {
    /// A hit from an index that is known to be current: built from the
    /// index's stored fields, filtered by the policy.
    fn current_hit(&self, caller: &Caller, rank: u32, h: Hit) -> Option<SearchHit> {
        let id = h.artifact_id.parse::<uuid::Uuid>().ok()?;
        let resource = Resource::Artifact {
            collection: &h.collection,
            name: &h.name,
        };
        if !self.can(caller, Permission::Read, &resource) {
            return None;
        }
        let base = format!("{}/{}", h.collection, escape_name(&h.name));
        Some(SearchHit {
            rank,
            score: h.score,
            reference: match &h.selector {
                Some(s) => format!("{base}#{s}"),
                None => base,
            },
            artifact_id: ArtifactId(id),
            collection: h.collection,
            name: h.name,
            selector: h.selector,
            heading: h.heading,
            title: h.title,
            artifact_type: h.artifact_type,
            lifecycle: h.lifecycle,
            revision: h.revision,
            updated_at: h.updated_at,
            snippet: h.snippet,
            related: Vec::new(),
        })
    }
}

fn hit_from_store(rank: u32, h: Hit, a: &Artifact) -> SearchHit {
    let base = artifact_ref(a);
    SearchHit {
        rank,
        score: h.score,
        reference: match &h.selector {
            Some(s) => format!("{base}#{s}"),
            None => base,
        },
        artifact_id: a.id,
        collection: a.collection.to_string(),
        name: a.name.to_string(),
        selector: h.selector,
        heading: h.heading,
        title: a.title.clone(),
        artifact_type: a.artifact_type.clone(),
        lifecycle: a.lifecycle.to_string(),
        revision: a.revision,
        updated_at: a.updated_at,
        snippet: h.snippet,
        related: Vec::new(),
    }
}
