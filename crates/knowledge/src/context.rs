//! Context packages (K7): the best artifacts and sections for some queries
//! and explicit selectors, under a token budget, persisted as a manifest
//! that can be verified later and rendered for a prompt.
//!
//! Invariants:
//! - The manifest holds no clock time and no score, only facts of the data
//!   (ids, revisions, digests, token counts, ranks), so building twice over
//!   unchanged data gives the same manifest, digest and version.
//! - Every item names the exact revision and byte range it was cut from;
//!   `show` renders those revisions (not the current ones) and `verify`
//!   re-hashes them.

use std::collections::{BTreeMap, HashSet};

use kontextual_adapters::sections::{find, sectioner_for};
use kontextual_index::{Granularity, SearchRequest as IndexRequest};
use kontextual_model::{
    Artifact, ArtifactId, ArtifactRef, ContextPackage, Digest, PackageName, RelationId, RunId,
};
use kontextual_store::{ArtifactKey, KnowledgeOp, Op, Page, PageRequest, RelationQuery};
use serde::{Deserialize, Serialize};

use crate::error::index_err;
use crate::search::{SearchFilters, artifact_ref, expand_depth, relation_types};
use crate::sections::without_section;
use crate::{Caller, Error, Knowledge, Permission, Resource, Result};

pub const MANIFEST_SCHEMA: &str = "kontextual.context-package/1";
/// Candidates taken from each query's ranking.
const PER_QUERY: usize = 20;

/// A token encoding (tiktoken tables shipped inside the binary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[default]
    Cl100kBase,
    O200kBase,
}

impl std::str::FromStr for Encoding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cl100k_base" => Ok(Encoding::Cl100kBase),
            "o200k_base" => Ok(Encoding::O200kBase),
            other => Err(Error::InvalidInput(format!(
                "unknown token encoding {other:?}: use cl100k_base or o200k_base"
            ))),
        }
    }
}

impl Encoding {
    pub fn count(self, text: &str) -> u32 {
        let bpe = match self {
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        };
        bpe.encode_ordinary(text).len() as u32
    }
}

#[derive(Clone, Debug, Default)]
pub struct ContextRequest {
    pub name: String,
    pub queries: Vec<String>,
    /// Whether the queries are query syntax rather than plain text.
    pub syntax: bool,
    /// `COLLECTION/NAME` or `COLLECTION/NAME#section`, or an id.
    pub selectors: Vec<String>,
    pub budget: u32,
    pub filters: SearchFilters,
    pub expand: Vec<String>,
    pub depth: u32,
    /// Opaque references to external memory records; each an object with
    /// at least `source` and `id` strings. Never interpreted.
    pub memory_refs: Vec<serde_json::Value>,
    pub encoding: Encoding,
}

/// Why an item is in the package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    Selector {
        selector: String,
    },
    Query {
        query: String,
        rank: u32,
    },
    Related {
        via: String,
        from: String,
        depth: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub position: u32,
    #[serde(rename = "ref")]
    pub reference: String,
    pub artifact_id: ArtifactId,
    pub revision: u64,
    /// Digest of the revision's whole content.
    pub digest: Digest,
    pub selector: Option<String>,
    /// For a section: its byte range and the digest of those bytes.
    pub byte_range: Option<(usize, usize)>,
    pub section_digest: Option<Digest>,
    pub tokens: u32,
    pub reason: Reason,
    pub run_id: Option<RunId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Omitted {
    #[serde(rename = "ref")]
    pub reference: String,
    pub revision: u64,
    pub tokens: Option<u32>,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelationEntry {
    pub id: RelationId,
    #[serde(rename = "type")]
    pub rel_type: String,
    pub source: ArtifactId,
    pub target: ArtifactId,
    pub revision: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    pub id: RunId,
    pub kind: String,
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub name: String,
    pub request: ManifestRequest,
    pub encoding: Encoding,
    pub budget: u32,
    pub tokens_used: u32,
    pub items: Vec<Item>,
    pub relations: Vec<RelationEntry>,
    pub runs: Vec<RunEntry>,
    pub memory_refs: Vec<serde_json::Value>,
    pub omitted: Vec<Omitted>,
    /// Set when no item made it in, saying why.
    pub empty_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRequest {
    pub queries: Vec<String>,
    pub selectors: Vec<String>,
    pub filters: serde_json::Value,
    pub expand: Vec<String>,
    pub depth: u32,
}

/// A stored package with its manifest parsed.
#[derive(Clone, Debug, Serialize)]
pub struct ContextView {
    pub name: String,
    pub version: u64,
    pub id: uuid::Uuid,
    pub digest: Digest,
    pub created_at: kontextual_model::Timestamp,
    pub actor: String,
    /// False when the build produced the same manifest as the latest version.
    pub new_version: bool,
    pub manifest: Manifest,
}

/// A part of an artifact already in the package (`None` = the whole) and
/// the reference it was included as.
type Taken = (Option<(usize, usize)>, String);

/// One candidate before the budget is applied.
struct Candidate {
    artifact: Artifact,
    selector: Option<String>,
    reason: Reason,
}

impl Knowledge {
    pub fn context_build(&self, caller: &Caller, req: &ContextRequest) -> Result<ContextView> {
        let name = PackageName::new(&req.name)?;
        self.authorize(
            caller,
            Permission::Write,
            &Resource::Namespace(&format!("context package {name}")),
        )?;
        if req.queries.is_empty() && req.selectors.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to build from: give at least one --query or --select".to_owned(),
            ));
        }
        if req.budget == 0 {
            return Err(Error::InvalidInput(
                "--budget must be at least 1 token".to_owned(),
            ));
        }
        for q in &req.queries {
            if q.trim().is_empty() {
                return Err(Error::InvalidInput("--query must not be empty".to_owned()));
            }
        }
        for m in &req.memory_refs {
            check_memory_ref(m)?;
        }
        let expand = relation_types(&req.expand)?;
        let depth = expand_depth(&expand, req.depth)?;
        let filters = self.index_filters(caller, &req.filters)?;

        let mut candidates = Vec::new();
        for s in &req.selectors {
            candidates.push(self.selector_candidate(caller, s)?);
        }
        if !req.queries.is_empty() {
            // a package is a record: it waits for every earlier write
            let (p, lag) = self.fresh_index(true)?;
            if lag > 0 {
                // A package is a record meant to be reproduced and verified;
                // one built from a stale index would silently miss changes.
                return Err(index_err(kontextual_index::IndexError::Unavailable(
                    format!(
                        "the search index is {lag} change(s) behind the store and another process owns it; \
                     try again when it has caught up (`kontextual index status`)"
                    ),
                )));
            }
            let mut ranked: Vec<Vec<Candidate>> = Vec::new();
            for q in &req.queries {
                let ir = IndexRequest {
                    namespace: caller.namespace.as_str(),
                    query: q,
                    syntax: req.syntax,
                    filters: filters.clone(),
                    granularity: Granularity::All,
                    offset: 0,
                    // a few extra, so ties at the cut are broken by name, not by
                    // where documents happen to sit in the index
                    limit: PER_QUERY + 10,
                    snippet_chars: 0,
                };
                let mut hits = p.index().search(&ir).map_err(index_err)?.hits;
                let key = |h: &kontextual_index::Hit| {
                    (h.collection.clone(), h.name.clone(), h.selector.clone())
                };
                // BM25 statistics count deleted documents until segments
                // merge, so scores drift slightly with merges; ranking on
                // scores rounded to two decimals, then by name, keeps
                // near-ties from reordering between builds.
                let rounded =
                    |h: &kontextual_index::Hit| (f64::from(h.score) * 100.0).round() as i64;
                hits.sort_by(|x, y| {
                    rounded(y)
                        .cmp(&rounded(x))
                        .then_with(|| key(x).cmp(&key(y)))
                });
                hits.truncate(PER_QUERY);
                let mut list = Vec::new();
                for (i, h) in hits.into_iter().enumerate() {
                    if let Some(a) = self.checked(caller, &h)? {
                        list.push(Candidate {
                            artifact: a,
                            selector: h.selector,
                            reason: Reason::Query {
                                query: q.clone(),
                                rank: i as u32 + 1,
                            },
                        });
                    }
                }
                ranked.push(list);
            }
            // Interleave the queries by rank, so each query gets its best first.
            let longest = ranked.iter().map(Vec::len).max().unwrap_or(0);
            let mut iters: Vec<_> = ranked.into_iter().map(|v| v.into_iter()).collect();
            for _ in 0..longest {
                for it in iters.iter_mut() {
                    if let Some(c) = it.next() {
                        candidates.push(c);
                    }
                }
            }
        }
        if depth > 0 {
            let primary: Vec<(ArtifactId, String)> = candidates
                .iter()
                .map(|c| (c.artifact.id, artifact_ref(&c.artifact)))
                .collect();
            let mut seen = HashSet::new();
            for (id, r) in primary {
                if !seen.insert(id) {
                    continue;
                }
                for rel in self.related(caller, id, &expand, depth)? {
                    if let Some(a) = self
                        .store()
                        .knowledge()
                        .artifact(&caller.namespace, &ArtifactKey::Id(rel.artifact_id))?
                    {
                        candidates.push(Candidate {
                            artifact: a,
                            selector: None,
                            reason: Reason::Related {
                                via: format!("{} ({})", rel.via, rel.direction),
                                from: r.clone(),
                                depth: rel.depth,
                            },
                        });
                    }
                }
            }
        }

        let manifest = self.assemble(caller, req, &name, candidates, &expand, depth)?;
        let value = serde_json::to_value(&manifest)
            .map_err(|e| Error::InvalidInput(format!("manifest: {e}")))?;
        let digest = Digest::of_json(&value);
        let changes = self.write(
            caller,
            vec![Op::Knowledge(KnowledgeOp::SaveContextPackage {
                name,
                digest,
                manifest: value,
            })],
        )?;
        match changes.into_iter().next() {
            Some(kontextual_model::Change::ContextPackageSaved { package }) => view(package, true),
            Some(kontextual_model::Change::ContextPackageUnchanged { package }) => {
                view(package, false)
            }
            other => Err(Error::InvalidInput(format!(
                "unexpected store answer {other:?}"
            ))),
        }
    }

    fn selector_candidate(&self, caller: &Caller, s: &str) -> Result<Candidate> {
        let r: ArtifactRef = s
            .parse()
            .map_err(|e| Error::InvalidInput(format!("--select {s:?}: {e}")))?;
        let a = self.artifact_show(caller, &without_section(&r))?;
        if !a.is_live() {
            return Err(Error::NotFound(format!("artifact {s} (it is {})", a.state)));
        }
        if let Some(q) = self
            .store()
            .access()
            .quarantines(&caller.namespace, Some(a.id))?
            .pop()
        {
            return Err(Error::InvalidInput(format!(
                "--select {s}: the artifact is quarantined ({}); release it to use it",
                q.reason
            )));
        }
        let selector = match r.section() {
            Some(sel) => {
                // Resolve now, so an unknown selector is an error, not an omission.
                let rev = self.artifact_revision(caller, &without_section(&r), a.revision)?;
                let bytes = self.revision_bytes(&a, &rev)?;
                Some(self.section_in(&a, &rev, &bytes, sel)?.selector)
            }
            None => None,
        };
        Ok(Candidate {
            artifact: a,
            selector,
            reason: Reason::Selector {
                selector: s.to_owned(),
            },
        })
    }

    /// Applies the budget in candidate order and gathers relations and runs.
    fn assemble(
        &self,
        caller: &Caller,
        req: &ContextRequest,
        name: &PackageName,
        candidates: Vec<Candidate>,
        expand: &[kontextual_model::RelationType],
        depth: u32,
    ) -> Result<Manifest> {
        let mut items: Vec<Item> = Vec::new();
        let mut omitted: Vec<Omitted> = Vec::new();
        let mut used = 0u32;
        // artifact -> ranges taken (None = whole)
        let mut taken: BTreeMap<ArtifactId, Vec<Taken>> = BTreeMap::new();
        for c in candidates {
            let a = &c.artifact;
            let rev = self.artifact_revision(caller, &ArtifactRef::Id(a.id), a.revision)?;
            let bytes = match self.revision_bytes(a, &rev) {
                Ok(b) => b,
                Err(e) => {
                    omitted.push(Omitted {
                        reference: artifact_ref(a),
                        revision: a.revision,
                        tokens: None,
                        why: format!("content not readable: {e}"),
                    });
                    continue;
                }
            };
            let (text, range, section_digest, selector) = match &c.selector {
                Some(sel) => {
                    let v = self.section_in(a, &rev, &bytes, sel)?;
                    let text = crate::sections::readable(&a.artifact_type, &v.text);
                    (text, Some(v.byte_range), Some(v.digest), Some(v.selector))
                }
                None if kontextual_adapters::has_text(&a.artifact_type) => (
                    kontextual_adapters::for_type(&a.artifact_type).text(&bytes),
                    None,
                    None,
                    None,
                ),
                None => {
                    omitted.push(Omitted {
                        reference: artifact_ref(a),
                        revision: a.revision,
                        tokens: None,
                        why: format!("{} content has no text to include", a.artifact_type),
                    });
                    continue;
                }
            };
            let reference = match &selector {
                Some(s) => format!("{}#{s}", artifact_ref(a)),
                None => artifact_ref(a),
            };
            let spans = taken.entry(a.id).or_default();
            if let Some((_, by)) = spans.iter().find(|(s, _)| overlaps(*s, range)) {
                omitted.push(Omitted {
                    reference,
                    revision: a.revision,
                    tokens: None,
                    why: format!("overlaps {by}, which is already in the package"),
                });
                continue;
            }
            let tokens = req
                .encoding
                .count(&render_block(&reference, a.revision, &text));
            if used + tokens > req.budget {
                // An explicit selection is a demand, not a candidate: a
                // package without it would be a different package. Nothing
                // is stored.
                if let Reason::Selector { selector } = &c.reason {
                    return Err(Error::InvalidInput(format!(
                        "--select {selector} does not fit the budget: it needs {tokens} tokens and {} of {} are left; raise --budget or select a section",
                        req.budget - used,
                        req.budget
                    )));
                }
                omitted.push(Omitted {
                    reference,
                    revision: a.revision,
                    tokens: Some(tokens),
                    why: format!(
                        "over budget: needs {tokens} tokens, {} of {} left",
                        req.budget - used,
                        req.budget
                    ),
                });
                continue;
            }
            used += tokens;
            spans.push((range, reference.clone()));
            items.push(Item {
                position: items.len() as u32 + 1,
                reference,
                artifact_id: a.id,
                revision: a.revision,
                digest: rev.digest,
                selector,
                byte_range: range,
                section_digest,
                tokens,
                reason: c.reason,
                run_id: rev.run_id,
            });
        }

        // Each left-out part once, with the first reason it was left out
        // for (several queries may hit the same part).
        let mut seen_omitted = HashSet::new();
        omitted.retain(|o| seen_omitted.insert((o.reference.clone(), o.revision)));

        // Relations among the included artifacts, plus the expanded ones.
        let included: HashSet<ArtifactId> = items.iter().map(|i| i.artifact_id).collect();
        let mut relations: BTreeMap<RelationId, RelationEntry> = BTreeMap::new();
        for id in &included {
            let q = RelationQuery {
                artifact: Some(*id),
                rel_type: None,
                include_deleted: false,
            };
            let page: Page<kontextual_model::Relation> = self.store().knowledge().relations(
                &caller.namespace,
                &q,
                &PageRequest::first(PageRequest::MAX_LIMIT),
            )?;
            for r in page.items {
                let both = included.contains(&r.source) && included.contains(&r.target);
                let followed = depth > 0 && expand.contains(&r.rel_type);
                if both || followed {
                    relations.insert(
                        r.id,
                        RelationEntry {
                            id: r.id,
                            rel_type: r.rel_type.to_string(),
                            source: r.source,
                            target: r.target,
                            revision: r.revision,
                        },
                    );
                }
            }
        }
        let mut runs: BTreeMap<RunId, RunEntry> = BTreeMap::new();
        for run_id in items.iter().filter_map(|i| i.run_id) {
            if let Some(run) = self.store().runs().summary(&caller.namespace, run_id)? {
                runs.insert(
                    run_id,
                    RunEntry {
                        id: run.id,
                        kind: run.kind,
                        status: run.status.to_string(),
                    },
                );
            }
        }
        let empty_reason = items.is_empty().then(|| {
            if omitted.iter().any(|o| o.why.starts_with("over budget")) {
                match omitted.iter().filter_map(|o| o.tokens).min() {
                    Some(smallest) => format!(
                        "the budget of {} tokens is too small for any item (the smallest needs {smallest})",
                        req.budget
                    ),
                    None => format!(
                        "the budget of {} tokens is too small for any item",
                        req.budget
                    ),
                }
            } else if omitted.is_empty() {
                "nothing matched the queries and filters".to_owned()
            } else {
                "no matching item has text to include".to_owned()
            }
        });
        Ok(Manifest {
            schema: MANIFEST_SCHEMA.to_owned(),
            name: name.to_string(),
            request: ManifestRequest {
                queries: req.queries.clone(),
                selectors: req.selectors.clone(),
                filters: serde_json::to_value(&req.filters).unwrap_or(serde_json::Value::Null),
                expand: req.expand.clone(),
                depth,
            },
            encoding: req.encoding,
            budget: req.budget,
            tokens_used: used,
            items,
            relations: relations.into_values().collect(),
            runs: runs.into_values().collect(),
            memory_refs: req.memory_refs.clone(),
            omitted,
            empty_reason,
        })
    }

    pub fn context_show(
        &self,
        caller: &Caller,
        name: &str,
        version: Option<u64>,
    ) -> Result<ContextView> {
        let pname = PackageName::new(name)?;
        self.authorize(
            caller,
            Permission::Read,
            &Resource::Namespace(&format!("context package {pname}")),
        )?;
        let p = self
            .store()
            .knowledge()
            .context_package(&caller.namespace, &pname, version)?
            .ok_or_else(|| match version {
                Some(v) => Error::NotFound(format!("context package {pname} version {v}")),
                None => Error::NotFound(format!("context package {pname}")),
            })?;
        view(p, false)
    }

    pub fn context_list(&self, caller: &Caller, page: &PageRequest) -> Result<Page<ContextView>> {
        self.authorize(
            caller,
            Permission::Read,
            &Resource::Namespace("context packages"),
        )?;
        let p = self
            .store()
            .knowledge()
            .context_packages(&caller.namespace, page)?;
        Ok(Page {
            items: p
                .items
                .into_iter()
                .map(|p| view(p, false))
                .collect::<Result<_>>()?,
            next: p.next,
        })
    }

    /// Renders the package for a prompt: each item's text cut from the
    /// exact revision the manifest names. Also returns how many items could
    /// not be read (purged or damaged content), which are marked in place.
    pub fn context_render(&self, caller: &Caller, v: &ContextView) -> Result<(String, usize)> {
        let mut missing = 0;
        let m = &v.manifest;
        let mut out = format!(
            "# Context: {} (version {}, {} of {} tokens, {})\n\n",
            m.name,
            v.version,
            m.tokens_used,
            m.budget,
            match m.encoding {
                Encoding::Cl100kBase => "cl100k_base",
                Encoding::O200kBase => "o200k_base",
            }
        );
        if let Some(why) = &m.empty_reason {
            out.push_str(&format!("_Empty package: {why}._\n"));
        }
        for item in &m.items {
            let text = match self.item_text(caller, item) {
                Ok(t) => t,
                Err(e) => {
                    missing += 1;
                    format!("[not available: {e}]")
                }
            };
            out.push_str(&render_block(&item.reference, item.revision, &text));
        }
        if !m.memory_refs.is_empty() {
            out.push_str("## Memory references\n\n");
            for r in &m.memory_refs {
                out.push_str(&format!("- `{r}`\n"));
            }
        }
        Ok((out, missing))
    }

    /// An item's text from its recorded revision.
    fn item_text(&self, caller: &Caller, item: &Item) -> Result<String> {
        let a = self.artifact_show(caller, &ArtifactRef::Id(item.artifact_id))?;
        let rev =
            self.artifact_revision(caller, &ArtifactRef::Id(item.artifact_id), item.revision)?;
        let bytes = self.revision_bytes(&a, &rev)?;
        Ok(match item.byte_range {
            Some((s, e)) => crate::sections::readable(
                &a.artifact_type,
                &String::from_utf8_lossy(bytes.get(s..e).unwrap_or_default()),
            ),
            None => kontextual_adapters::for_type(&a.artifact_type).text(&bytes),
        })
    }

    /// Checks that everything the package references is still there,
    /// unchanged: the manifest against its digest, each item's revision
    /// content and section bytes against theirs, and whether each item,
    /// relation and run is still current.
    pub fn context_verify(
        &self,
        caller: &Caller,
        name: &str,
        version: Option<u64>,
    ) -> Result<ContextVerification> {
        let pname = PackageName::new(name)?;
        self.authorize(
            caller,
            Permission::Read,
            &Resource::Namespace(&format!("context package {pname}")),
        )?;
        let p = self
            .store()
            .knowledge()
            .context_package(&caller.namespace, &pname, version)?
            .ok_or_else(|| Error::NotFound(format!("context package {pname}")))?;
        let mut problems = Vec::new();
        if Digest::of_json(&p.manifest) != p.digest {
            problems.push(VerifyProblem {
                subject: format!("context package {pname} version {}", p.version),
                kind: "altered",
                detail: "the stored manifest does not match its digest".to_owned(),
            });
        }
        let v = view(p, false)?;
        let mut checked = 0;
        for item in &v.manifest.items {
            checked += 1;
            if let Some(problem) = self.verify_item(caller, item)? {
                problems.push(problem);
            }
        }
        for r in &v.manifest.relations {
            checked += 1;
            let subject = format!("relation {} ({})", r.id, r.rel_type);
            match self.store().knowledge().relation(&caller.namespace, r.id)? {
                None => problems.push(VerifyProblem {
                    subject,
                    kind: "missing",
                    detail: "no longer exists".to_owned(),
                }),
                Some(now) if now.deleted => problems.push(VerifyProblem {
                    subject,
                    kind: "deleted",
                    detail: format!("deleted after revision {}", r.revision),
                }),
                Some(now) if now.revision != r.revision => problems.push(VerifyProblem {
                    subject,
                    kind: "changed",
                    detail: format!("revision {} is now {}", r.revision, now.revision),
                }),
                Some(_) => {}
            }
        }
        for run in &v.manifest.runs {
            checked += 1;
            if self
                .store()
                .runs()
                .summary(&caller.namespace, run.id)?
                .is_none()
            {
                problems.push(VerifyProblem {
                    subject: format!("run {}", run.id),
                    kind: "missing",
                    detail: "no longer exists".to_owned(),
                });
            }
        }
        Ok(ContextVerification {
            name: v.name,
            version: v.version,
            digest: v.digest,
            checked,
            verified: problems.is_empty(),
            problems,
        })
    }

    fn verify_item(&self, caller: &Caller, item: &Item) -> Result<Option<VerifyProblem>> {
        let subject = format!(
            "item {} {} (revision {})",
            item.position, item.reference, item.revision
        );
        let problem = |kind, detail: String| {
            Ok(Some(VerifyProblem {
                subject: subject.clone(),
                kind,
                detail,
            }))
        };
        let Some(a) = self
            .store()
            .knowledge()
            .artifact(&caller.namespace, &ArtifactKey::Id(item.artifact_id))?
        else {
            return problem("missing", "the artifact no longer exists".to_owned());
        };
        let Some(rev) =
            self.store()
                .knowledge()
                .revision(&caller.namespace, a.id, item.revision)?
        else {
            return problem("missing", "the revision no longer exists".to_owned());
        };
        if rev.digest != item.digest {
            return problem(
                "altered",
                format!(
                    "revision digest is {}, manifest says {}",
                    rev.digest, item.digest
                ),
            );
        }
        let bytes = match self.revision_bytes(&a, &rev) {
            Ok(b) => b,
            Err(e) if e.kind() == crate::ErrorKind::Corrupted => {
                return problem("altered", e.to_string());
            }
            Err(e) => return problem("missing", e.to_string()),
        };
        if let (Some((s, e)), Some(want)) = (item.byte_range, item.section_digest) {
            let got = bytes.get(s..e).map(Digest::of);
            if got != Some(want) {
                return problem(
                    "altered",
                    format!("the section bytes {s}..{e} no longer hash to {want}"),
                );
            }
            // The selector should still name those bytes in that revision.
            if let (Some(sel), Some(sectioner)) = (&item.selector, sectioner_for(&a.artifact_type))
            {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let secs = sectioner.sections(&text);
                if find(&secs, sel).map(|x| (x.range.start, x.range.end)) != Ok((s, e)) {
                    return problem("altered", format!("#{sel} no longer names bytes {s}..{e}"));
                }
            }
        }
        if !a.is_live() {
            return problem("deleted", format!("the artifact is {} now", a.state));
        }
        if a.revision != item.revision && !self.same_in_current(&a, item)? {
            return problem(
                "changed",
                format!(
                    "revision {} is superseded by revision {}, whose {} differs",
                    item.revision,
                    a.revision,
                    if item.selector.is_some() {
                        "section"
                    } else {
                        "content"
                    }
                ),
            );
        }
        Ok(None)
    }
}

impl Knowledge {
    /// Whether the artifact's current revision still holds exactly the
    /// item's bytes (a metadata-only update, or a change elsewhere in the
    /// document than the packaged section).
    fn same_in_current(&self, a: &Artifact, item: &Item) -> Result<bool> {
        let Some(cur) = self
            .store()
            .knowledge()
            .revision(&a.namespace, a.id, a.revision)?
        else {
            return Ok(false);
        };
        match (&item.selector, item.section_digest) {
            (Some(sel), Some(want)) => {
                let Ok(bytes) = self.revision_bytes(a, &cur) else {
                    return Ok(false);
                };
                Ok(self
                    .section_in(a, &cur, &bytes, sel)
                    .is_ok_and(|v| v.digest == want))
            }
            _ => Ok(cur.digest == item.digest),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyProblem {
    pub subject: String,
    /// `missing`, `altered`, `deleted` or `changed`.
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ContextVerification {
    pub name: String,
    pub version: u64,
    pub digest: Digest,
    /// Items, relations and runs checked.
    pub checked: u32,
    pub verified: bool,
    pub problems: Vec<VerifyProblem>,
}

fn view(p: ContextPackage, new_version: bool) -> Result<ContextView> {
    let manifest: Manifest = serde_json::from_value(p.manifest.clone()).map_err(|e| {
        Error::Store(kontextual_store::StoreError::Corrupted(format!(
            "context package {} version {}: unreadable manifest: {e}",
            p.name, p.version
        )))
    })?;
    Ok(ContextView {
        name: p.name.to_string(),
        version: p.version,
        id: p.id,
        digest: p.digest,
        created_at: p.created_at,
        actor: p.actor.to_string(),
        new_version,
        manifest,
    })
}

/// Whether two spans of one artifact overlap (`None` is the whole).
fn overlaps(a: Option<(usize, usize)>, b: Option<(usize, usize)>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some((s1, e1)), Some((s2, e2))) => s1 < e2 && s2 < e1,
    }
}

/// One item as it appears in the rendered package (what the budget counts):
/// a heading naming it, then its text fenced with more backticks than it
/// contains, so an unclosed fence or a `#` heading inside one item cannot
/// swallow or restructure the rest of the package.
fn render_block(reference: &str, revision: u64, text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!(
        "## {reference} (revision {revision})\n\n{fence}\n{}\n{fence}\n\n",
        text.trim_end()
    )
}

fn check_memory_ref(v: &serde_json::Value) -> Result<()> {
    let ok = v.as_object().is_some_and(|o| {
        o.get("source")
            .and_then(|s| s.as_str())
            .is_some_and(|s| !s.is_empty())
            && o.get("id")
                .and_then(|s| s.as_str())
                .is_some_and(|s| !s.is_empty())
    });
    if ok && v.to_string().len() <= 16 * 1024 {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "memory reference {v}: must be a JSON object (at most 16 KiB) with non-empty \"source\" and \"id\" strings; other members are kept as given"
        )))
    }
}
