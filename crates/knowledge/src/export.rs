//! Governed export packages (O3) and snapshots (K9): choosing what a
//! caller may export, writing it as a BagIt bag, and importing a validated
//! package back. Both are runs with manifests and audited actions.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kontextual_model::{
    Artifact, ArtifactId, Classification, Collection, Digest, Lifecycle, RunId, Scope, Timestamp,
};
use kontextual_package::progress::Reporting;
use kontextual_package::records::*;
use kontextual_package::{BagWriter, PackageError, Records, Verdict};
pub use kontextual_package::{Progress, Silent};
use kontextual_store::{
    ArtifactQuery, ImportBlob, ImportConflict, ImportRecords, KnowledgeOp, Op, PageRequest,
    RelationQuery, WriteBatch,
};
use serde::{Deserialize, Serialize};

use crate::error::index_err;
use crate::search::{SearchFilters, SearchRequest, artifact_resource};
use crate::{Caller, Error, Knowledge, Permission, Resource, Result};

/// What to export. Selectors (`artifact_ids`, `collections`, `query`,
/// `run`) and filters combine: an artifact is exported when it matches
/// every one given. `all` selects the whole namespace, deleted artifacts
/// included.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportScope {
    pub all: bool,
    pub artifact_ids: Vec<ArtifactId>,
    pub collections: Vec<String>,
    /// Full-text query (every match, not one page).
    pub query: Option<String>,
    /// Artifacts with a revision written by this run.
    pub run: Option<RunId>,
    pub source_systems: Vec<String>,
    pub lifecycles: Vec<Lifecycle>,
    pub classifications: Vec<Classification>,
    /// Last changed at or after.
    pub since: Option<Timestamp>,
    /// Last changed before.
    pub until: Option<Timestamp>,
    /// Only each artifact's current revision (a smaller package; such a
    /// package validates but cannot be imported, which needs histories).
    pub current_only: bool,
    /// Deleted and purged artifacts too (always with `all`).
    pub include_deleted: bool,
}

impl ExportScope {
    fn selects_something(&self) -> bool {
        self.all
            || !self.artifact_ids.is_empty()
            || !self.collections.is_empty()
            || self.query.is_some()
            || self.run.is_some()
            || !self.source_systems.is_empty()
            || !self.lifecycles.is_empty()
            || !self.classifications.is_empty()
            || self.since.is_some()
            || self.until.is_some()
    }
}

/// Where an export goes.
pub enum ExportTarget {
    /// A bag directory (must not exist yet).
    Dir(PathBuf),
    /// A `.tar.zst` stream, every entry under `root/`.
    TarZst {
        out: Box<dyn Write + Send>,
        root: String,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub export_id: String,
    pub run_id: RunId,
    pub counts: BTreeMap<String, u64>,
    pub payload_files: u64,
    pub payload_bytes: u64,
    pub payload_digest: String,
    pub package_digest: String,
    pub policy_filter_applied: bool,
}

/// What an import wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    pub run_id: RunId,
    pub package: String,
    pub summary: serde_json::Value,
    /// Live artifacts in the rebuilt index; `None` when another process
    /// owns the index (it catches up from the import's events).
    pub artifacts_indexed: Option<u64>,
}

/// A package opened and validated, ready to import.
pub struct CheckedPackage {
    pub verdict: Verdict,
    records: Option<Records>,
    _opened: Option<kontextual_package::Opened>,
}

fn stopped() -> Error {
    Error::Stopped("the export was asked to stop; nothing was placed under its name".to_owned())
}

fn package_err(e: PackageError) -> Error {
    match e {
        PackageError::Io { what, source } => Error::io(what, source),
        other => Error::InvalidInput(other.to_string()),
    }
}

/// Opens a package (a bag directory, or an archive unpacked into staging
/// under the hostile-input rules) and validates it. Touches no store.
pub fn check_package(
    path: &Path,
    staging_parent: Option<&Path>,
    limits: kontextual_package::Limits,
    progress: &dyn Progress,
) -> Result<CheckedPackage> {
    let opened =
        match kontextual_package::open_with_progress(path, staging_parent, limits, progress) {
            Ok(o) => o,
            Err(PackageError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(Error::NotFound(format!("package {}", path.display())));
            }
            Err(e) => match Verdict::refused(&e) {
                // An archive refused while unpacking is a verdict, not an error.
                Some(verdict) => {
                    return Ok(CheckedPackage {
                        verdict,
                        records: None,
                        _opened: None,
                    });
                }
                None => return Err(package_err(e)),
            },
        };
    let (verdict, records) = kontextual_package::validate_dir_with_progress(&opened.dir, progress);
    Ok(CheckedPackage {
        verdict,
        records,
        _opened: Some(opened),
    })
}

impl CheckedPackage {
    /// Whether the package can be imported at all: valid, a Kontextual
    /// export, with whole histories. Checked before any store is opened.
    pub fn importable(&self) -> Result<()> {
        let v = &self.verdict;
        if !v.valid {
            let n = v.problems.len();
            let first: Vec<String> = v.problems.iter().take(3).map(|p| p.to_string()).collect();
            return Err(Error::InvalidInput(format!(
                "the package is not valid ({n} problem{}; first: {}); nothing was imported",
                if n == 1 { "" } else { "s" },
                first.join("; ")
            )));
        }
        match &self.records {
            None => Err(Error::InvalidInput(
                "not a Kontextual export package (no data/kontextual.json); nothing was imported"
                    .into(),
            )),
            Some(r) if r.current_only => Err(Error::InvalidInput(
                "the package holds only current revisions; an import needs whole histories (export without --current-only); nothing was imported".into(),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Drops the staging copy (if any), keeping the verdict.
    pub fn into_verdict(self) -> Verdict {
        self.verdict
    }
}

/// Checks an output path: not there yet, its directory exists, and (for
/// jobs) absolute. Returns the archive's top-level directory name for a
/// `.tar.zst` / `.tzst` name (any case), `None` for a directory; other
/// archive names are refused rather than taken for directory names.
pub(crate) fn check_out_path(out: &Path, must_be_absolute: bool) -> Result<Option<String>> {
    if must_be_absolute && !out.is_absolute() {
        return Err(Error::InvalidInput(format!(
            "export path {}: give an absolute path (a worker may run in another directory)",
            out.display()
        )));
    }
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(Error::Store(kontextual_store::StoreError::AlreadyExists {
            what: format!(
                "{} (exports never overwrite; choose a new path)",
                out.display()
            ),
        }));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::NotFound(format!(
            "directory {} (for {})",
            parent.display(),
            out.display()
        )));
    }
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    for ext in [".tar.zst", ".tar.zstd", ".tzst"] {
        if lower.ends_with(ext) {
            let stem = &name[..name.len() - ext.len()];
            return Ok(Some(
                if stem.is_empty() { "package" } else { stem }.to_owned(),
            ));
        }
    }
    for ext in [".tar", ".tgz", ".gz", ".zip", ".zst", ".xz", ".bz2"] {
        if lower.ends_with(ext) {
            return Err(Error::InvalidInput(format!(
                "{name}: packages are written as .tar.zst archives or as directories; name it *.tar.zst, or give a directory name without an archive extension"
            )));
        }
    }
    Ok(None)
}

/// Removes `<out>.partial-<pid>` leftovers of exports whose process died
/// (interrupted). Linux only (`/proc`); job partials are cleaned by retries.
fn sweep_stale_partials(out: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let (Some(dir), Some(name)) = (out.parent(), out.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{name}.partial-");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `path` made absolute against the current directory (its parent must exist).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
    Ok(cwd.join(path))
}

/// Text longer than this is not given a normalized representation.
const MAX_REPRESENTATION_BYTES: u64 = 16 << 20;

impl Knowledge {
    /// Exports what `scope` selects and the caller may read (O3).
    pub fn export(
        &self,
        caller: &Caller,
        scope: &ExportScope,
        target: ExportTarget,
    ) -> Result<ExportReport> {
        self.export_linked(caller, scope, target, None, None, &Silent)
    }

    /// Exports to a path: a `.tar.zst` archive (by its name, any case) or a
    /// new directory. Written beside the target and renamed when complete,
    /// so a failed or interrupted export never leaves a partial package
    /// under the name (a retry removes its own leftovers).
    pub fn export_to_path(
        &self,
        caller: &Caller,
        scope: &ExportScope,
        out: &Path,
        job: Option<(kontextual_model::JobId, u32)>,
        progress: &dyn Progress,
    ) -> Result<ExportReport> {
        let archive = check_out_path(out, false)?;
        let partial = {
            let mut name = out.file_name().unwrap_or_default().to_os_string();
            name.push(match job {
                Some((id, _)) => format!(".partial-{id}"),
                None => format!(".partial-{}", std::process::id()),
            });
            out.with_file_name(name)
        };
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::remove_file(&partial);
        sweep_stale_partials(out);
        let target = match &archive {
            Some(root) => {
                let f = std::fs::File::create_new(&partial)
                    .map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
                ExportTarget::TarZst {
                    out: Box::new(std::io::BufWriter::with_capacity(1 << 20, f)),
                    root: root.clone(),
                }
            }
            None => ExportTarget::Dir(partial.clone()),
        };
        // Placed under its name before the export counts as done (and is
        // audited), never over something that appeared there meanwhile.
        let place = || -> Result<()> {
            let taken = || {
                Error::Store(kontextual_store::StoreError::AlreadyExists {
                    what: format!("{} (it appeared while the export ran)", out.display()),
                })
            };
            if archive.is_some() {
                // a hard link fails if the name exists: an atomic no-clobber rename
                std::fs::hard_link(&partial, out).map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => taken(),
                    _ => Error::io(format!("placing {}", out.display()), e),
                })?;
                let _ = std::fs::remove_file(&partial);
            } else {
                if std::fs::symlink_metadata(out).is_ok() {
                    return Err(taken());
                }
                // renaming onto a non-empty directory or a file fails
                std::fs::rename(&partial, out)
                    .map_err(|e| Error::io(format!("placing {}", out.display()), e))?;
            }
            Ok(())
        };
        match self.export_linked(caller, scope, target, job, Some(&place), progress) {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    fn export_linked(
        &self,
        caller: &Caller,
        scope: &ExportScope,
        target: ExportTarget,
        job: Option<(kontextual_model::JobId, u32)>,
        place: Option<&dyn Fn() -> Result<()>>,
        progress: &dyn Progress,
    ) -> Result<ExportReport> {
        self.export_preflight(caller, scope)?;
        let mut scope = scope.clone();
        // what `all` means, said in the record
        if scope.all {
            scope.include_deleted = true;
        }
        let scope = &scope;
        let input = serde_json::to_value(scope).unwrap_or_default();
        self.recovery_run(caller, "export", input, job, |run_id| {
            let report = self.export_in_run(caller, scope, target, run_id, progress)?;
            if let Some(place) = place {
                place()?;
            }
            self.write(
                caller,
                vec![Op::Audit(kontextual_model::AuditDraft {
                    action: "export.create".into(),
                    target_kind: "package".into(),
                    target_id: report.export_id.clone(),
                    target_name: None,
                    revision: None,
                    prev_digest: None,
                    digest: None,
                    outcome: kontextual_model::Outcome::Success,
                    detail: Some(serde_json::json!({
                        "counts": report.counts,
                        "payload_digest": report.payload_digest,
                        "package_digest": report.package_digest,
                        "policy_filter_applied": report.policy_filter_applied,
                    })),
                })],
            )?;
            Ok(report)
        })
    }

    /// Checks what can be checked before any byte is written: the caller
    /// may export, and the scope is well formed and names what exists.
    pub fn export_preflight(&self, caller: &Caller, scope: &ExportScope) -> Result<()> {
        if let Some(scopes) = &caller.scopes
            && !scopes.contains(&Scope::Export)
        {
            self.audit_denial(caller, Permission::Read, "export (needs the export scope)");
            return Err(Error::Denied {
                actor: caller.actor.to_string(),
                permission: "export",
                target: "this namespace (the key lacks the export scope)".into(),
            });
        }
        if !scope.selects_something() {
            return Err(Error::InvalidInput(
                "say what to export: --all, or --collection, --id, --query, --run, --source, --lifecycle, --classification, --since/--until".into(),
            ));
        }
        if scope.query.as_deref().is_some_and(|q| q.trim().is_empty()) {
            return Err(Error::InvalidInput("the export query is empty".into()));
        }
        if let (Some(a), Some(b)) = (scope.since, scope.until)
            && a >= b
        {
            return Err(Error::InvalidInput(format!(
                "--since {a} is not before --until {b}: the range is empty"
            )));
        }
        for id in &scope.artifact_ids {
            let found = self
                .store()
                .knowledge()
                .artifact(&caller.namespace, &kontextual_store::ArtifactKey::Id(*id))?;
            match found {
                Some(a) if self.readable(caller, &a) => {}
                _ => return Err(Error::NotFound(format!("artifact {id}"))),
            }
        }
        if let Some(run) = scope.run
            && (!self.can(caller, Permission::Read, &Resource::Namespace("runs"))
                || self
                    .store()
                    .runs()
                    .summary(&caller.namespace, run)?
                    .is_none())
        {
            return Err(Error::NotFound(format!("run {run}")));
        }
        if let Some(q) = &scope.query {
            // a query the index refuses is refused now, not mid-stream
            self.search(
                caller,
                &SearchRequest {
                    query: q.clone(),
                    limit: 1,
                    ..SearchRequest::default()
                },
            )?;
        }
        for c in &scope.collections {
            let name = kontextual_model::CollectionName::new(c)?;
            if self
                .store()
                .knowledge()
                .collection(&caller.namespace, &name)?
                .is_none()
                || !self.can(caller, Permission::Read, &Resource::Collection(c))
            {
                return Err(Error::NotFound(format!("collection {c}")));
            }
        }
        Ok(())
    }

    fn export_in_run(
        &self,
        caller: &Caller,
        scope: &ExportScope,
        target: ExportTarget,
        run_id: RunId,
        progress: &dyn Progress,
    ) -> Result<ExportReport> {
        progress.stage("selecting", None);
        let ns = &caller.namespace;
        let store = self.store();
        let audit_head = store.audit().head()?;
        let quarantined: HashSet<ArtifactId> = store
            .access()
            .quarantines(ns, None)?
            .into_iter()
            .map(|q| q.artifact_id)
            .collect();
        let matched: Option<HashSet<ArtifactId>> = match &scope.query {
            Some(q) => Some(self.query_ids(caller, q)?),
            None => None,
        };
        let ids: HashSet<ArtifactId> = scope.artifact_ids.iter().copied().collect();
        let collections: HashSet<&str> = scope.collections.iter().map(String::as_str).collect();
        // Artifacts named by id are exported in whatever state they are.
        let include_deleted = scope.all || scope.include_deleted || !ids.is_empty();

        // Candidates, in id order for a deterministic payload.
        let mut chosen: BTreeMap<ArtifactId, Artifact> = BTreeMap::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let p = store.knowledge().artifacts(
                ns,
                &ArtifactQuery {
                    include_deleted,
                    ..ArtifactQuery::default()
                },
                &page,
            )?;
            if progress.should_stop() {
                return Err(stopped());
            }
            for a in p.items {
                let keep = (ids.is_empty() || ids.contains(&a.id))
                    && (a.is_live() || scope.all || scope.include_deleted || ids.contains(&a.id))
                    && (collections.is_empty() || collections.contains(a.collection.as_str()))
                    && matched.as_ref().is_none_or(|m| m.contains(&a.id))
                    && (scope.source_systems.is_empty()
                        || a.source_system
                            .as_ref()
                            .is_some_and(|s| scope.source_systems.contains(s)))
                    && (scope.lifecycles.is_empty() || scope.lifecycles.contains(&a.lifecycle))
                    && (scope.classifications.is_empty()
                        || scope.classifications.contains(&a.classification))
                    && scope.since.is_none_or(|t| a.updated_at >= t)
                    && scope.until.is_none_or(|t| a.updated_at < t)
                    && !quarantined.contains(&a.id)
                    && self.can(caller, Permission::Read, &artifact_resource(&a))
                    && self.cleared(caller, a.classification);
                if keep {
                    chosen.insert(a.id, a);
                }
            }
            match p.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }

        // Histories (and the run filter, which needs them).
        let mut revisions: Vec<RevisionRecord> = Vec::new();
        let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut runs: BTreeSet<RunId> = BTreeSet::new();
        let mut dropped: Vec<ArtifactId> = Vec::new();
        for a in chosen.values() {
            if progress.should_stop() {
                return Err(stopped());
            }
            let mut revs = Vec::new();
            let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
            loop {
                let p = store.knowledge().revisions(ns, a.id, &page)?;
                revs.extend(p.items);
                match p.next {
                    Some(c) => page.after = Some(c),
                    None => break,
                }
            }
            if let Some(run) = scope.run
                && !revs.iter().any(|r| r.run_id == Some(run))
            {
                dropped.push(a.id);
                continue;
            }
            // Revisions written after the artifact was read belong to a
            // later state than the one exported.
            revs.retain(|r| r.revision <= a.revision);
            if scope.current_only {
                revs.retain(|r| r.revision == a.revision);
            }
            runs.extend(a.run_id);
            for r in &revs {
                runs.extend(r.run_id);
                if r.content_available {
                    blobs.insert(r.digest, r.size);
                }
                revisions.push(RevisionRecord::from(r));
            }
        }
        for id in dropped {
            chosen.remove(&id);
        }

        let mut coll_records: BTreeMap<String, CollectionRecord> = BTreeMap::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        let used: HashSet<_> = chosen.values().map(|a| a.collection_id).collect();
        loop {
            let p = store.knowledge().collections(ns, &page)?;
            for c in &p.items {
                let named = collections.contains(c.name.as_str());
                let whole = scope.all
                    && self.can(
                        caller,
                        Permission::Read,
                        &Resource::Collection(c.name.as_str()),
                    );
                if used.contains(&c.id) || named || whole {
                    coll_records.insert(c.id.to_string(), CollectionRecord::from(c));
                }
            }
            match p.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }

        let mut relations = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let p = store.knowledge().relations(
                ns,
                &RelationQuery {
                    include_deleted,
                    ..RelationQuery::default()
                },
                &page,
            )?;
            for r in &p.items {
                if chosen.contains_key(&r.source) && chosen.contains_key(&r.target) {
                    relations.push(RelationRecord::from(r));
                }
            }
            match p.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        relations.sort_by_key(|r| r.id);

        // A run's input and manifest name every file it touched, readable
        // or not: only a caller who may read runs and everything in the
        // namespace gets them; others get the runs' ids, kinds, status and
        // times (so the links hold), without input, manifest or steps.
        let full_runs = self.can(caller, Permission::Read, &Resource::Namespace("runs"))
            && self.can(caller, Permission::Read, &Resource::Namespace("everything"))
            && caller.clearance.is_none();
        let mut run_records = Vec::new();
        for id in &runs {
            match store.runs().get(ns, *id)? {
                Some(run) => {
                    let steps = if full_runs {
                        store.runs().steps(ns, *id)?
                    } else {
                        Vec::new()
                    };
                    let mut rec = RunRecord::of(&run, &steps);
                    if !full_runs {
                        rec.input = serde_json::Value::Null;
                        rec.manifest = None;
                    }
                    run_records.push(rec);
                }
                None => {
                    return Err(Error::Store(kontextual_store::StoreError::Corrupted(
                        format!(
                            "run {id} is referenced by exported revisions but missing from the store"
                        ),
                    )));
                }
            }
        }

        // Normalized representations of current, live revisions.
        let spool = tempfile::Builder::new()
            .prefix("kontextual-export-")
            .tempdir_in(self.spool_dir())
            .map_err(|e| Error::io("creating an export spool directory", e))?;
        let mut representations = Vec::new();
        let mut texts: BTreeMap<Digest, (PathBuf, u64)> = BTreeMap::new();
        for a in chosen.values() {
            if !a.is_live()
                || !kontextual_adapters::has_text(&a.artifact_type)
                || a.size > MAX_REPRESENTATION_BYTES
            {
                continue;
            }
            let mut bytes = Vec::with_capacity(a.size as usize);
            store
                .open_content(&a.digest)?
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(format!("reading {}/{}", a.collection, a.name), e))?;
            let text = kontextual_adapters::for_type(&a.artifact_type).text(&bytes);
            let text_digest = Digest::of(text.as_bytes());
            let text_is_content = text.as_bytes() == bytes.as_slice();
            if !text_is_content && !texts.contains_key(&text_digest) {
                let p = spool.path().join(text_digest.hex());
                std::fs::write(&p, text.as_bytes())
                    .map_err(|e| Error::io("spooling normalized text", e))?;
                texts.insert(text_digest, (p, text.len() as u64));
            }
            let sections = kontextual_adapters::sections::sectioner_for(&a.artifact_type)
                .map(|s| s.sections(&String::from_utf8_lossy(&bytes)))
                .unwrap_or_default()
                .into_iter()
                .map(|s| SectionRecord {
                    selector: s.selector,
                    heading: s.heading,
                    level: s.level,
                    start: s.range.start as u64,
                    end: s.range.end as u64,
                })
                .collect();
            representations.push(RepresentationRecord {
                artifact_id: a.id,
                revision: a.revision,
                content_digest: a.digest,
                text_digest,
                text_bytes: text.len() as u64,
                text_is_content,
                sections,
            });
        }

        let artifacts: Vec<ArtifactRecord> = chosen.values().map(ArtifactRecord::from).collect();
        let colls: Vec<CollectionRecord> = {
            let mut v: Vec<_> = coll_records.into_values().collect();
            v.sort_by_key(|c| c.id);
            v
        };
        let mut counts = BTreeMap::new();
        counts.insert("collections".to_owned(), colls.len() as u64);
        counts.insert("artifacts".to_owned(), artifacts.len() as u64);
        counts.insert("revisions".to_owned(), revisions.len() as u64);
        counts.insert("relations".to_owned(), relations.len() as u64);
        counts.insert("runs".to_owned(), run_records.len() as u64);
        counts.insert("representations".to_owned(), representations.len() as u64);
        counts.insert("blobs".to_owned(), blobs.len() as u64);
        counts.insert("texts".to_owned(), texts.len() as u64);
        let summary = Summary {
            format: Summary::FORMAT.to_owned(),
            schema_version: SCHEMA_VERSION,
            revisions: if scope.current_only { "current" } else { "all" }.to_owned(),
            counts: counts.clone(),
        };

        // Record files, spooled so their sizes are known before archiving.
        let mut files: BTreeMap<String, Source> = BTreeMap::new();
        let mut spool_records =
            |name: &str, write: &dyn Fn(&mut dyn Write) -> std::io::Result<()>| -> Result<()> {
                let p = spool.path().join(name.replace('/', "_"));
                let f = std::fs::File::create(&p).map_err(|e| Error::io("spooling records", e))?;
                let mut w = std::io::BufWriter::new(f);
                write(&mut w)
                    .and_then(|_| w.flush())
                    .map_err(|e| Error::io("spooling records", e))?;
                let size = std::fs::metadata(&p)
                    .map_err(|e| Error::io("spooling records", e))?
                    .len();
                files.insert(name.to_owned(), Source::File(p, size));
                Ok(())
            };
        spool_records(SUMMARY_FILE, &|w| {
            serde_json::to_writer_pretty(&mut *w, &summary)?;
            w.write_all(b"\n")
        })?;
        spool_records(COLLECTIONS_FILE, &|w| lines(w, &colls))?;
        spool_records(ARTIFACTS_FILE, &|w| lines(w, &artifacts))?;
        spool_records(REVISIONS_FILE, &|w| lines(w, &revisions))?;
        spool_records(RELATIONS_FILE, &|w| lines(w, &relations))?;
        spool_records(RUNS_FILE, &|w| lines(w, &run_records))?;
        spool_records(REPRESENTATIONS_FILE, &|w| lines(w, &representations))?;
        for (d, size) in &blobs {
            files.insert(addressed_path(BLOBS_DIR, d), Source::Blob(*d, *size));
        }
        for (d, (p, size)) in &texts {
            files.insert(addressed_path(TEXT_DIR, d), Source::File(p.clone(), *size));
        }

        let mut bag = match target {
            ExportTarget::Dir(dir) => BagWriter::create_dir(&dir),
            ExportTarget::TarZst { out, root } => BagWriter::tar_zst(out, &root, 3),
        }
        .map_err(package_err)?;
        progress.stage(
            "writing",
            Some(
                files
                    .values()
                    .map(|s| match s {
                        Source::File(_, n) | Source::Blob(_, n) => *n,
                    })
                    .sum(),
            ),
        );
        for (path, src) in &files {
            if progress.should_stop() {
                return Err(stopped());
            }
            match src {
                Source::File(p, size) => {
                    let f = std::fs::File::open(p)
                        .map_err(|e| Error::io("reading spooled records", e))?;
                    let mut r = Reporting::new(f, progress);
                    bag.add_payload(path, *size, &mut r).map_err(package_err)?;
                }
                Source::Blob(d, size) => {
                    let mut r = Reporting::new(store.open_content(d)?, progress);
                    bag.add_payload(path, *size, &mut r).map_err(package_err)?;
                }
            }
        }
        let export_id = run_id.to_string();
        let policy = PolicyContext {
            filter_applied: caller.scopes.is_some() || caller.clearance.is_some() || !full_runs,
            scopes: caller
                .scopes
                .as_ref()
                .map(|s| s.iter().map(|x| x.to_string()).collect()),
            clearance: caller.clearance.map(|c| c.to_string()),
            quarantine_excluded: true,
            runs_redacted: !full_runs,
        };
        let info = ExportInfo {
            export_id: export_id.clone(),
            schema_version: SCHEMA_VERSION,
            actor: caller.actor.to_string(),
            namespace: caller.namespace.to_string(),
            exported_at: kontextual_model::now(),
            scope: serde_json::to_value(scope).unwrap_or_default(),
            policy: policy.clone(),
            // the chain's length would tell a filtered caller how much
            // happens in the namespace
            audit_head: audit_head
                .filter(|_| !policy.filter_applied)
                .map(|h| AuditHeadInfo {
                    seq: h.seq,
                    hash: h.hash,
                }),
            payload_digest: String::new(),
            counts: counts.clone(),
            software: kontextual_package::writer::software(),
        };
        let written = bag
            .finish(
                &[
                    ("Bag-Software-Agent", kontextual_package::writer::software()),
                    ("Kontextual-Schema-Version", SCHEMA_VERSION.to_string()),
                ],
                |payload_digest| {
                    let mut info = info;
                    info.payload_digest = payload_digest.to_owned();
                    let mut bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
                    bytes.push(b'\n');
                    vec![(EXPORT_INFO_FILE.to_owned(), bytes)]
                },
            )
            .map_err(package_err)?;
        metrics::counter!("kontextual_export_bytes_total").increment(written.payload_bytes);
        Ok(ExportReport {
            export_id,
            run_id,
            counts,
            payload_files: written.payload_files,
            payload_bytes: written.payload_bytes,
            payload_digest: written.payload_digest,
            package_digest: written.package_digest,
            policy_filter_applied: policy.filter_applied,
        })
    }

    /// Every artifact id the query matches for this caller.
    fn query_ids(&self, caller: &Caller, q: &str) -> Result<HashSet<ArtifactId>> {
        let mut out = HashSet::new();
        let mut offset = 0u32;
        loop {
            let r = self.search(
                caller,
                &SearchRequest {
                    query: q.to_owned(),
                    filters: SearchFilters::default(),
                    offset,
                    limit: 100,
                    ..SearchRequest::default()
                },
            )?;
            out.extend(r.hits.iter().map(|h| h.artifact_id));
            match r.next_offset {
                Some(n) if n > offset => offset = n,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Where temporary export files go: the data directory (same disk as
    /// the store), else the system temp directory.
    fn spool_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// Imports a validated package into the caller's namespace (K9): ids,
    /// digests, metadata, revisions, relations and run links as they were.
    /// An invalid package, a current-only package or a conflict changes
    /// nothing. The import is a run; the imported artifacts are indexed.
    pub fn import_package(
        &self,
        caller: &Caller,
        pkg: CheckedPackage,
        on_conflict: ImportConflict,
        progress: &dyn Progress,
    ) -> Result<ImportReport> {
        self.authorize(
            caller,
            Permission::Admin,
            &Resource::Namespace("store (import)"),
        )?;
        pkg.importable()?;
        let Some(records) = pkg.records else {
            return Err(Error::InvalidInput(
                "not a Kontextual export package".into(),
            ));
        };
        let package = pkg
            .verdict
            .export
            .as_ref()
            .map(|e| e.export_id.clone())
            .unwrap_or_else(|| pkg.verdict.payload_digest.clone().unwrap_or_default());
        let detail = serde_json::json!({
            "payload_digest": pkg.verdict.payload_digest,
            "package_digest": pkg.verdict.package_digest,
            "counts": pkg.verdict.counts,
        });
        let input = serde_json::json!({ "package": package, "on_conflict": on_conflict, "payload_digest": pkg.verdict.payload_digest });
        let ns = caller.namespace.clone();
        let ops = ImportRecords {
            package: package.clone(),
            collections: records
                .collections
                .iter()
                .map(|c| collection(&ns, c))
                .collect(),
            artifacts: records.artifacts.iter().map(|a| artifact(&ns, a)).collect(),
            revisions: records.revisions.iter().map(revision).collect(),
            relations: records.relations.iter().map(|r| relation(&ns, r)).collect(),
            runs: records.runs.iter().map(|r| run(&ns, r)).collect(),
            blobs: records
                .blobs
                .iter()
                .map(|(d, (p, size))| ImportBlob {
                    digest: *d,
                    size: *size,
                    path: p.clone(),
                })
                .collect(),
            on_conflict,
            detail,
        };
        progress.stage("importing", None);
        let report = self.recovery_run(caller, "import", input, None, |run_id| {
            let changes = self.store().write(WriteBatch {
                ctx: kontextual_store::WriteContext {
                    run_id: Some(run_id),
                    ..caller.write_ctx()
                },
                ops: vec![Op::Knowledge(KnowledgeOp::ImportRecords(Box::new(ops)))],
            })?;
            let summary = changes
                .iter()
                .find_map(|c| match c {
                    kontextual_model::Change::Imported { summary, .. } => Some(summary.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            Ok(ImportReport {
                run_id,
                package: package.clone(),
                summary,
                artifacts_indexed: None,
            })
        })?;
        // The index is rebuilt from the store when this process owns it;
        // otherwise its owner (a running server) applies the import's
        // events, which name every imported artifact.
        let written_up_to = self.store().feed().position()?.last_seq;
        progress.stage("indexing", None);
        let p = self.projection()?;
        let indexed = if p.is_owner() {
            // opening a new index already rebuilt it from the imported store
            if p.rebuilt_since(written_up_to) {
                Some(p.index().stats().map_err(index_err)?.artifacts)
            } else {
                Some(p.rebuild()?.artifacts_reindexed)
            }
        } else {
            None
        };
        Ok(ImportReport {
            artifacts_indexed: indexed,
            ..report
        })
    }
}

enum Source {
    File(PathBuf, u64),
    Blob(Digest, u64),
}

fn lines<T: Serialize>(w: &mut dyn Write, items: &[T]) -> std::io::Result<()> {
    for i in items {
        serde_json::to_writer(&mut *w, i)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

fn collection(ns: &kontextual_model::Namespace, c: &CollectionRecord) -> Collection {
    Collection {
        id: c.id,
        namespace: ns.clone(),
        name: c.name.clone(),
        description: c.description.clone(),
        created_at: c.created_at,
        artifact_count: 0,
    }
}

fn artifact(ns: &kontextual_model::Namespace, a: &ArtifactRecord) -> Artifact {
    Artifact {
        id: a.id,
        namespace: ns.clone(),
        collection_id: a.collection_id,
        collection: a.collection.clone(),
        name: a.name.clone(),
        artifact_type: a.artifact_type.clone(),
        media_type: a.media_type.clone(),
        title: a.title.clone(),
        digest: a.digest,
        size: a.size,
        metadata: a.metadata.clone(),
        lifecycle: a.lifecycle,
        classification: a.classification,
        source_system: a.source_system.clone(),
        provenance: a.provenance.clone(),
        state: a.state,
        revision: a.revision,
        run_id: a.run_id,
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

fn revision(r: &RevisionRecord) -> kontextual_model::Revision {
    kontextual_model::Revision {
        artifact_id: r.artifact_id,
        revision: r.revision,
        change: r.change,
        prev_digest: r.prev_digest,
        digest: r.digest,
        size: r.size,
        media_type: r.media_type.clone(),
        title: r.title.clone(),
        metadata: r.metadata.clone(),
        lifecycle: r.lifecycle,
        classification: r.classification,
        provenance: r.provenance.clone(),
        content_available: r.content_available,
        actor: r.actor.clone(),
        correlation_id: r.correlation_id.clone(),
        run_id: r.run_id,
        created_at: r.created_at,
    }
}

fn relation(ns: &kontextual_model::Namespace, r: &RelationRecord) -> kontextual_model::Relation {
    kontextual_model::Relation {
        id: r.id,
        namespace: ns.clone(),
        rel_type: r.rel_type.clone(),
        source: r.source,
        target: r.target,
        properties: r.properties.clone(),
        revision: r.revision,
        deleted: r.deleted,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn run(
    ns: &kontextual_model::Namespace,
    r: &RunRecord,
) -> (kontextual_model::Run, Vec<kontextual_model::RunStep>) {
    (
        kontextual_model::Run {
            id: r.id,
            namespace: ns.clone(),
            kind: r.kind.clone(),
            status: r.status,
            actor: r.actor.clone(),
            input: r.input.clone(),
            manifest: r.manifest.clone(),
            owner: "import".into(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            job_id: None,
        },
        r.steps
            .iter()
            .map(|s| kontextual_model::RunStep {
                run_id: r.id,
                seq: s.seq,
                name: s.name.clone(),
                status: s.status,
                detail: s.detail.clone(),
                at: s.at,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use kontextual_model::{ArtifactRef, Namespace};
    use kontextual_store::Store;
    use kontextual_store::sqlite::SqliteBackend;

    use super::*;
    use crate::{ContentSource, PutRequest};
    use kontextual_kernel::AllowAll;

    /// Stages and bytes, as a progress bar would see them; asks to stop
    /// once `stop_after` bytes were written (`u64::MAX`: never).
    struct Watched {
        stages: Mutex<Vec<(String, Option<u64>)>>,
        bytes: AtomicU64,
        stop_after: u64,
    }

    impl Watched {
        fn new(stop_after: u64) -> Self {
            Watched {
                stages: Mutex::new(Vec::new()),
                bytes: AtomicU64::new(0),
                stop_after,
            }
        }
    }

    impl Progress for Watched {
        fn stage(&self, name: &str, total: Option<u64>) {
            self.stages.lock().unwrap().push((name.to_owned(), total));
        }
        fn advance(&self, bytes: u64) {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        fn should_stop(&self) -> bool {
            self.bytes.load(Ordering::Relaxed) >= self.stop_after
        }
    }

    fn seeded() -> (Knowledge, Caller) {
        let svc = Knowledge::with_store(
            Store::new(SqliteBackend::memory().unwrap()),
            Box::new(AllowAll),
        );
        let caller = Caller::new("agent:ci".parse().unwrap(), Namespace::default());
        svc.collection_create(&caller, "handbook", "").unwrap();
        for i in 0..20 {
            let target: ArtifactRef = format!("handbook/doc-{i}.md").parse().unwrap();
            let body = format!("# Doc {i}\n\n{}\n", "words ".repeat(2_000));
            svc.artifact_put(
                &caller,
                PutRequest::new(target, ContentSource::Bytes(body.into_bytes())),
            )
            .unwrap();
        }
        (svc, caller)
    }

    /// X5: an export reports its stages, and its byte bar ends exactly at
    /// the payload's size.
    #[test]
    fn x5_export_reports_stages_and_every_payload_byte() {
        let (svc, caller) = seeded();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("all.bag");
        let w = Watched::new(u64::MAX);
        let scope = ExportScope {
            all: true,
            ..ExportScope::default()
        };
        let r = svc.export_to_path(&caller, &scope, &out, None, &w).unwrap();
        let stages = w.stages.into_inner().unwrap();
        assert_eq!(
            stages,
            [
                ("selecting".to_owned(), None),
                ("writing".to_owned(), Some(r.payload_bytes))
            ]
        );
        assert_eq!(w.bytes.load(Ordering::Relaxed), r.payload_bytes);
        assert!(out.join("bagit.txt").is_file());
    }

    /// O1/O3: a stop request (a cancelled export job) ends the export
    /// between files; nothing is placed under the name, no partial stays.
    #[test]
    fn o1_export_stops_cooperatively_and_leaves_nothing() {
        let (svc, caller) = seeded();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("all.tar.zst");
        let w = Watched::new(1);
        let scope = ExportScope {
            all: true,
            ..ExportScope::default()
        };
        let e = svc
            .export_to_path(&caller, &scope, &out, None, &w)
            .unwrap_err();
        assert!(matches!(e, Error::Stopped(_)), "{e}");
        let runs = svc
            .store()
            .runs()
            .list(&caller.namespace, None, &PageRequest::first(10))
            .unwrap();
        let export_run = runs.items.iter().find(|r| r.kind == "export").unwrap();
        assert_eq!(export_run.status, kontextual_model::RunStatus::Interrupted);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // a later export under the same name works
        let r = svc
            .export_to_path(&caller, &scope, &out, None, &Silent)
            .unwrap();
        assert_eq!(r.counts["artifacts"], 20);
    }
}
