//! Artifact operations: put, show, content, history, diff, list, delete, purge.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use kontextual_model::{
    Artifact, ArtifactRef, Change, ChangeKind, Classification, Lifecycle, Metadata, Provenance,
    Revision,
};
use kontextual_store::{
    ArtifactKey, ArtifactQuery, Content, Expect, KnowledgeOp, Op, Page, PageRequest, PutArtifact,
};
use serde::Serialize;

use crate::{Caller, Error, Knowledge, Permission, Resource, Result, media};

/// Where new content comes from.
pub enum ContentSource {
    File(PathBuf),
    Stdin,
    Bytes(Vec<u8>),
    /// Content read as it arrives (an HTTP upload): it streams to the
    /// store's spool like a file, never held whole in memory.
    Reader(Box<dyn Read + Send>),
    /// Keep the current content; change attributes only.
    Keep,
}

impl std::fmt::Debug for ContentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentSource::File(p) => f.debug_tuple("File").field(p).finish(),
            ContentSource::Stdin => f.write_str("Stdin"),
            ContentSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            ContentSource::Reader(_) => f.write_str("Reader"),
            ContentSource::Keep => f.write_str("Keep"),
        }
    }
}

#[derive(Debug)]
pub struct PutRequest {
    /// `COLLECTION/NAME` (or an id, to update an existing artifact).
    pub target: ArtifactRef,
    pub content: ContentSource,
    pub artifact_type: Option<String>,
    pub media_type: Option<String>,
    pub metadata: Option<Metadata>,
    pub lifecycle: Option<Lifecycle>,
    pub classification: Option<Classification>,
    pub source_system: Option<String>,
    /// Fail with a conflict unless the current revision is this one.
    pub expect_revision: Option<u64>,
    /// Fail if a live artifact with this name exists.
    pub create_only: bool,
    /// Inputs of a derived artifact, and the transformation that derived it.
    pub derived_from: Vec<ArtifactRef>,
    pub transformation: Option<String>,
    /// The content's size when the caller knows it (an upload's
    /// Content-Length): it sizes the read buffer and nothing else, so a
    /// wrong value costs a reallocation, never a wrong result.
    pub size_hint: Option<u64>,
}

impl PutRequest {
    pub fn new(target: ArtifactRef, content: ContentSource) -> Self {
        PutRequest {
            target,
            content,
            artifact_type: None,
            media_type: None,
            metadata: None,
            lifecycle: None,
            classification: None,
            source_system: None,
            expect_revision: None,
            create_only: false,
            derived_from: Vec::new(),
            transformation: None,
            size_hint: None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PutOutcome {
    /// `created`, `updated`, `restored` — or `None` when nothing changed.
    pub change: Option<ChangeKind>,
    pub artifact: Artifact,
}

/// Differences between two revisions.
#[derive(Clone, Debug, Serialize)]
pub struct Diff {
    pub artifact: String,
    pub from: Revision,
    pub to: Revision,
    /// `(field, old, new)` for every attribute that differs.
    pub attributes: Vec<(String, String, String)>,
    pub content: DiffContent,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiffContent {
    Same,
    /// A unified diff of UTF-8 text.
    Text {
        unified: String,
    },
    /// Not text (or too large to diff): sizes only.
    Binary {
        from_size: u64,
        to_size: u64,
    },
    /// One side's content was purged.
    Unavailable,
}

const DIFF_LIMIT: u64 = 8 << 20;

/// Content up to this size is read whole and validated by its adapter.
const SNIFF_WHOLE: u64 = 8 << 20;

/// Detects content's format. Content is untrusted: a panic inside an
/// adapter is this content's failure (an invalid-input error naming it),
/// never the process's.
pub(crate) fn detect_guarded(
    name: &str,
    bytes: &[u8],
) -> std::result::Result<
    (
        &'static dyn kontextual_adapters::SourceAdapter,
        kontextual_adapters::Parsed,
    ),
    kontextual_adapters::AdapterError,
> {
    match std::panic::catch_unwind(|| kontextual_adapters::detect(name, bytes)) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(name, reason = %why, "a format adapter panicked");
            Err(kontextual_adapters::AdapterError::Unreadable(why))
        }
    }
}

/// Reads up to [`SNIFF_WHOLE`] bytes to detect the format. Small content comes
/// back whole and fully validated; larger content is described from its first
/// bytes and streams on (head, then the rest of the reader).
///
/// `size_hint` is the content's size when known (a file's length): the
/// buffer is sized by it, and by [`SNIFF_WHOLE`] when unknown.
pub(crate) fn sniff(
    collection: &str,
    name: &str,
    mut r: Box<dyn Read + Send>,
    size_hint: Option<u64>,
) -> Result<(Content, kontextual_adapters::Parsed)> {
    // Sized once: growing by doubling would reserve 16 MiB for content
    // over 8 MiB (pages are only resident once written). A known size
    // matters: an 8 MiB reservation is an mmap, and freeing it (on the
    // store's writer thread) an munmap whose TLB shootdown interrupts
    // every core — once per file, ~4 % of an ingest's CPU. Content
    // that grew since it was measured still reads whole (the buffer grows).
    let capacity = size_hint.map_or(SNIFF_WHOLE, |n| n.min(SNIFF_WHOLE)) + 1;
    let mut buf = Vec::with_capacity(capacity as usize);
    (&mut r)
        .take(SNIFF_WHOLE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(format!("reading {collection}/{name}"), e))?;
    let refuse = |e: kontextual_adapters::AdapterError| {
        Error::InvalidInput(format!("{collection}/{name}: {e}"))
    };
    if buf.len() as u64 <= SNIFF_WHOLE {
        buf.shrink_to_fit();
        let (_, p) = detect_guarded(name, &buf).map_err(refuse)?;
        return Ok((Content::Bytes(buf), p));
    }
    // Describe from a head cut at a character boundary.
    let mut head = &buf[..64 * 1024];
    if let Err(e) = std::str::from_utf8(head)
        && e.error_len().is_none()
    {
        head = &head[..e.valid_up_to()];
    }
    let (_, p) = detect_guarded(name, head).map_err(refuse)?;
    Ok((
        Content::Reader(Box::new(std::io::Cursor::new(buf).chain(r))),
        p,
    ))
}

impl Knowledge {
    /// Turns a user reference into a store key; sections are for retrieval.
    pub(crate) fn key(&self, r: &ArtifactRef) -> Result<ArtifactKey> {
        match r {
            ArtifactRef::Id(id) => Ok(ArtifactKey::Id(*id)),
            ArtifactRef::Name {
                section: Some(s), ..
            }
            | ArtifactRef::IdSection { section: s, .. } => Err(Error::InvalidInput(format!(
                "section selector #{s}: this command addresses whole artifacts; drop the #section"
            ))),
            ArtifactRef::Name {
                collection, name, ..
            } => Ok(ArtifactKey::Name {
                collection: collection.clone(),
                name: name.clone(),
            }),
        }
    }

    /// The artifact in any state, or `NotFound`.
    pub fn artifact_show(&self, caller: &Caller, r: &ArtifactRef) -> Result<Artifact> {
        let a = self.artifact_for(caller, r, Permission::Read)?;
        Ok(self.present(caller, a))
    }

    /// Whether the caller may see where on the server files came from
    /// (absolute source paths): administrators of the namespace.
    fn sees_server_paths(&self, caller: &Caller) -> bool {
        self.can(
            caller,
            Permission::Admin,
            &Resource::Namespace("server paths"),
        )
    }

    /// An artifact as this caller may see it: a source path on the server
    /// is shown to administrators, to others relative to the ingest root.
    pub(crate) fn present(&self, caller: &Caller, mut a: Artifact) -> Artifact {
        if !self.sees_server_paths(caller) {
            relative_source(&mut a.provenance, a.name.as_str());
        }
        a
    }

    fn present_revision(&self, caller: &Caller, mut r: Revision, name: &str) -> Revision {
        if !self.sees_server_paths(caller) {
            relative_source(&mut r.provenance, name);
        }
        r
    }

    /// Loads an artifact and checks `permission` on it; one the caller may
    /// not read is "not found", exactly like one that does not exist.
    pub(crate) fn artifact_for(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        permission: Permission,
    ) -> Result<Artifact> {
        let key = self.key(r)?;
        let a = self
            .store()
            .knowledge()
            .artifact(&caller.namespace, &key)?
            .ok_or_else(|| Error::NotFound(format!("artifact {r}")))?;
        let resource = Resource::Artifact {
            collection: a.collection.as_str(),
            name: a.name.as_str(),
        };
        if !self.can(caller, Permission::Read, &resource) {
            // audited as a denial, answered as not found
            let _ = self.authorize(caller, Permission::Read, &resource);
            return Err(Error::NotFound(format!("artifact {r}")));
        }
        if !self.cleared(caller, a.classification) {
            self.audit_denial(
                caller,
                Permission::Read,
                &format!("{resource} ({})", a.classification),
            );
            return Err(Error::NotFound(format!("artifact {r}")));
        }
        // quarantined: out of circulation for everyone but its administrators
        if caller.scopes.is_some()
            && !self.can(caller, Permission::Admin, &resource)
            && self.is_quarantined(&caller.namespace, a.id)?
        {
            self.audit_denial(
                caller,
                Permission::Read,
                &format!("{resource} (quarantined)"),
            );
            return Err(Error::NotFound(format!("artifact {r}")));
        }
        self.authorize(caller, permission, &resource)?;
        Ok(a)
    }

    pub fn artifact_put(&self, caller: &Caller, req: PutRequest) -> Result<PutOutcome> {
        let (collection, name) = match &req.target {
            ArtifactRef::Id(_) => {
                let a = self.artifact_show(caller, &req.target)?;
                (a.collection, a.name)
            }
            ArtifactRef::Name {
                section: Some(s), ..
            }
            | ArtifactRef::IdSection { section: s, .. } => {
                return Err(Error::InvalidInput(format!(
                    "cannot put a section (#{s}); put the whole artifact"
                )));
            }
            ArtifactRef::Name {
                collection, name, ..
            } => (collection.clone(), name.clone()),
        };
        self.authorize(
            caller,
            Permission::Write,
            &Resource::Artifact {
                collection: collection.as_str(),
                name: name.as_str(),
            },
        )?;
        let existing = self.store().knowledge().artifact(
            &caller.namespace,
            &ArtifactKey::Name {
                collection: collection.clone(),
                name: name.clone(),
            },
        )?;
        let mut provenance: Option<Provenance> = None;
        let mut size_hint = req.size_hint;
        let content = match req.content {
            ContentSource::Bytes(b) => Content::Bytes(b),
            ContentSource::Keep => Content::Keep,
            ContentSource::Stdin => Content::Reader(Box::new(std::io::stdin())),
            ContentSource::Reader(r) => Content::Reader(r),
            ContentSource::File(path) => {
                let file = File::open(&path)
                    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                let meta = file
                    .metadata()
                    .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
                if meta.is_dir() {
                    return Err(Error::InvalidInput(format!(
                        "{} is a directory; `artifact put` takes one file (ingest takes trees)",
                        path.display()
                    )));
                }
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| kontextual_model::Timestamp::try_from(t).ok())
                    .and_then(|t| {
                        kontextual_model::Timestamp::from_microsecond(t.as_microsecond()).ok()
                    });
                provenance = Some(Provenance {
                    source_path: Some(path.display().to_string()),
                    source_mtime: mtime,
                    ..existing
                        .as_ref()
                        .map(|a| a.provenance.clone())
                        .unwrap_or_default()
                });
                size_hint = Some(meta.len());
                Content::Reader(Box::new(file) as Box<dyn Read + Send>)
            }
        };
        if !req.derived_from.is_empty() || req.transformation.is_some() {
            let mut ids = Vec::new();
            for r in &req.derived_from {
                match self.artifact_show(caller, r) {
                    Ok(a) if a.is_live() => ids.push(a.id),
                    Ok(a) => {
                        return Err(Error::InvalidInput(format!(
                            "dangling reference: derived-from artifact {r} is {}",
                            a.state
                        )));
                    }
                    Err(Error::NotFound(_)) => {
                        return Err(Error::InvalidInput(format!(
                            "dangling reference: derived-from artifact {r} does not exist"
                        )));
                    }
                    Err(e) => return Err(e),
                }
            }
            let base = provenance
                .take()
                .or_else(|| existing.as_ref().map(|a| a.provenance.clone()))
                .unwrap_or_default();
            provenance = Some(Provenance {
                derived_from: ids,
                transformation: req.transformation.clone(),
                ..base
            });
        }
        // Detect the format from the bytes (K5): whole content up to 8 MiB,
        // else from its first bytes (large content then streams on).
        let (content, parsed) = match content {
            Content::Keep => (Content::Keep, None),
            Content::Bytes(b) => {
                let (_, p) = detect_guarded(name.as_str(), &b)
                    .map_err(|e| Error::InvalidInput(format!("{collection}/{name}: {e}")))?;
                (Content::Bytes(b), Some(p))
            }
            Content::Reader(r) => {
                let (c, p) = sniff(collection.as_str(), name.as_str(), r, size_hint)?;
                (c, Some(p))
            }
            // only the store stages content, after this point
            c @ Content::Staged(_) => (c, None),
        };
        let fresh = existing.is_none();
        let (guess_type, guess_media) = match &parsed {
            Some(p) => (p.artifact_type.to_owned(), p.media_type.clone()),
            None => media::guess(name.as_str()),
        };
        let put = PutArtifact {
            collection: collection.clone(),
            name,
            content,
            // detected for every new content; an explicit --type/--media-type wins
            artifact_type: req
                .artifact_type
                .or_else(|| (fresh || parsed.is_some()).then(|| guess_type.clone())),
            media_type: req
                .media_type
                .or_else(|| (fresh || parsed.is_some()).then(|| guess_media.clone())),
            title: parsed.as_ref().and_then(|p| p.title.clone()),
            metadata: req.metadata,
            lifecycle: req.lifecycle,
            classification: req.classification,
            source_system: req.source_system,
            provenance,
            expect: match (req.expect_revision, req.create_only) {
                // revision 0 = "before the first revision": the artifact must not exist yet
                (Some(0), _) => Expect::Absent,
                (Some(r), _) => Expect::Revision(r),
                (None, true) => Expect::Absent,
                (None, false) => Expect::Any,
            },
        };
        // A missing collection is created, as an ingest creates it (X5: one
        // rule for both), in the same atomic batch.
        let mut ops = Vec::with_capacity(2);
        if matches!(req.target, ArtifactRef::Name { .. }) {
            ops.push(Op::Knowledge(KnowledgeOp::CreateCollection {
                name: collection.clone(),
                description: String::new(),
                if_absent: true,
            }));
        }
        ops.push(Op::Knowledge(KnowledgeOp::PutArtifact(put)));
        let changes = self.write(caller, ops)?;
        let artifact_change = changes
            .into_iter()
            .find(|c| !matches!(c, Change::CollectionCreated { .. }));
        match artifact_change {
            Some(Change::Artifact { kind, artifact, .. }) => Ok(PutOutcome {
                change: Some(kind),
                artifact: self.present(caller, artifact),
            }),
            Some(Change::ArtifactUnchanged { artifact }) => Ok(PutOutcome {
                change: None,
                artifact: self.present(caller, artifact),
            }),
            other => Err(Error::InvalidInput(format!(
                "unexpected store answer {other:?}"
            ))),
        }
    }

    /// Streams the content of the current revision, or of `revision`.
    pub fn artifact_content(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        revision: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let a = self.artifact_show(caller, r)?;
        let rev = self.revision_of(caller, &a, revision.unwrap_or(a.revision))?;
        if !rev.content_available {
            return Err(Error::NotFound(format!(
                "content of {r} revision {} (it was purged)",
                rev.revision
            )));
        }
        Ok(self.store().open_content(&rev.digest)?)
    }

    /// One revision of an artifact (its state and change record).
    pub fn artifact_revision(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        revision: u64,
    ) -> Result<Revision> {
        let a = self.artifact_show(caller, r)?;
        let rev = self.revision_of(caller, &a, revision)?;
        Ok(self.present_revision(caller, rev, a.name.as_str()))
    }

    fn revision_of(&self, caller: &Caller, a: &Artifact, revision: u64) -> Result<Revision> {
        self.store()
            .knowledge()
            .revision(&caller.namespace, a.id, revision)?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "revision {revision} of {}/{} (it has revisions 1 to {})",
                    a.collection, a.name, a.revision
                ))
            })
    }

    pub fn artifact_history(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        page: &PageRequest,
    ) -> Result<Page<Revision>> {
        let a = self.artifact_show(caller, r)?;
        let mut page = self
            .store()
            .knowledge()
            .revisions(&caller.namespace, a.id, page)?;
        page.items = std::mem::take(&mut page.items)
            .into_iter()
            .map(|rev| self.present_revision(caller, rev, a.name.as_str()))
            .collect();
        Ok(page)
    }

    pub fn artifact_list(
        &self,
        caller: &Caller,
        q: &ArtifactQuery,
        page: &PageRequest,
    ) -> Result<Page<Artifact>> {
        let what = "all artifacts (list one collection with --collection)";
        let scope = match &q.collection {
            Some(c) => {
                self.collection_show(caller, c.as_str())?;
                Resource::Collection(c.as_str())
            }
            None => {
                self.authorize(caller, Permission::Read, &Resource::Namespace(what))?;
                Resource::Namespace(what)
            }
        };
        // the grant covers every artifact listed; clearance and quarantine
        // are per artifact and go into the query, so pages stay full
        let (max_classification, exclude_quarantined) = self.listing_visibility(caller, &scope);
        let q = ArtifactQuery {
            max_classification,
            exclude_quarantined,
            ..q.clone()
        };
        let mut page = self
            .store()
            .knowledge()
            .artifacts(&caller.namespace, &q, page)?;
        page.items = std::mem::take(&mut page.items)
            .into_iter()
            .map(|a| self.present(caller, a))
            .collect();
        Ok(page)
    }

    pub fn artifact_delete(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        expect: Option<u64>,
    ) -> Result<Artifact> {
        let key = self.key(r)?;
        self.artifact_for(caller, r, Permission::Write)?;
        let changes = self.write(
            caller,
            vec![Op::Knowledge(KnowledgeOp::DeleteArtifact { key, expect })],
        )?;
        last_artifact(changes).map(|a| self.present(caller, a))
    }

    pub fn artifact_purge(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        expect: Option<u64>,
    ) -> Result<Artifact> {
        let key = self.key(r)?;
        self.artifact_for(caller, r, Permission::Admin)?;
        let changes = self.write(
            caller,
            vec![Op::Knowledge(KnowledgeOp::PurgeArtifact { key, expect })],
        )?;
        last_artifact(changes).map(|a| self.present(caller, a))
    }

    pub fn artifact_diff(
        &self,
        caller: &Caller,
        r: &ArtifactRef,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Diff> {
        let a = self.artifact_show(caller, r)?;
        let to_rev = to.unwrap_or(a.revision);
        let from_rev = from.unwrap_or(to_rev.saturating_sub(1).max(1));
        if from_rev == to_rev {
            return Err(Error::InvalidInput(format!(
                "nothing to compare: {r} has {} revision(s); pass two different ones with --from and --to",
                a.revision
            )));
        }
        let from = self.revision_of(caller, &a, from_rev)?;
        let from = self.present_revision(caller, from, a.name.as_str());
        let to = self.revision_of(caller, &a, to_rev)?;
        let to = self.present_revision(caller, to, a.name.as_str());
        let mut attributes = Vec::new();
        let mut cmp = |field: &str, x: String, y: String| {
            if x != y {
                attributes.push((field.to_owned(), x, y));
            }
        };
        let state = |r: &Revision| match r.change {
            ChangeKind::Deleted => "deleted",
            ChangeKind::Purged => "purged",
            _ => "live",
        };
        cmp("state", state(&from).to_owned(), state(&to).to_owned());
        cmp("media_type", from.media_type.clone(), to.media_type.clone());
        cmp(
            "metadata",
            from.metadata.to_string(),
            to.metadata.to_string(),
        );
        cmp(
            "lifecycle",
            from.lifecycle.to_string(),
            to.lifecycle.to_string(),
        );
        cmp(
            "classification",
            from.classification.to_string(),
            to.classification.to_string(),
        );
        cmp("digest", from.digest.to_string(), to.digest.to_string());
        let content = if from.digest == to.digest && from.content_available == to.content_available
        {
            DiffContent::Same
        } else if !from.content_available || !to.content_available {
            DiffContent::Unavailable
        } else if from.size > DIFF_LIMIT || to.size > DIFF_LIMIT {
            DiffContent::Binary {
                from_size: from.size,
                to_size: to.size,
            }
        } else {
            let old = self.read_text(&from)?;
            let new = self.read_text(&to)?;
            match (old, new) {
                (Some(old), Some(new)) => DiffContent::Text {
                    unified: crate::diff::unified(
                        &old,
                        &new,
                        &format!("{r}@{}", from.revision),
                        &format!("{r}@{}", to.revision),
                    ),
                },
                _ => DiffContent::Binary {
                    from_size: from.size,
                    to_size: to.size,
                },
            }
        };
        Ok(Diff {
            artifact: format!("{}/{}", a.collection, a.name),
            from,
            to,
            attributes,
            content,
        })
    }

    fn read_text(&self, rev: &Revision) -> Result<Option<String>> {
        let mut buf = Vec::with_capacity(rev.size as usize);
        self.store()
            .open_content(&rev.digest)?
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading content", e))?;
        Ok(String::from_utf8(buf).ok())
    }
}

fn last_artifact(changes: Vec<Change>) -> Result<Artifact> {
    changes
        .into_iter()
        .rev()
        .find_map(|c| match c {
            Change::Artifact { artifact, .. } => Some(artifact),
            _ => None,
        })
        .ok_or_else(|| Error::InvalidInput("the store reported no artifact change".to_owned()))
}

/// Replaces an absolute source path by the path relative to the ingest
/// root — the artifact's name, where the path ends with it — or else by the
/// file's own name: callers who are not administrators never learn the
/// server's directory layout.
fn relative_source(p: &mut kontextual_model::Provenance, name: &str) {
    let Some(path) = p.source_path.as_mut() else {
        return;
    };
    let unified = path.replace('\\', "/");
    let relative = if unified.ends_with(&format!("/{name}")) || unified == name {
        name.to_owned()
    } else {
        unified.rsplit('/').next().unwrap_or_default().to_owned()
    };
    *path = relative;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(bytes: &[u8], hint: Option<u64>) -> Vec<u8> {
        let r: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(bytes.to_vec()));
        match sniff("c", "n.txt", r, hint) {
            Ok((Content::Bytes(b), _)) => b,
            other => panic!("expected whole bytes, got {:?}", other.map(|(c, _)| c)),
        }
    }

    #[test]
    fn k5_a_wrong_size_hint_never_changes_the_content() {
        let text: Vec<u8> = b"line of text\n".repeat(1000);
        for hint in [
            None,
            Some(0),
            Some(10),
            Some(text.len() as u64),
            Some(u64::MAX),
        ] {
            assert_eq!(sniffed(&text, hint), text, "hint {hint:?}");
        }
    }
}
