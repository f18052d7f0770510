//! Ingest (K5, K6): files and directory trees into a collection, as one
//! operation run. Formats are detected by the adapters; unchanged files make
//! no revision; `prune` tombstones artifacts whose files are gone. A file
//! that cannot be read or parsed is reported with its reason and skipped;
//! the rest still lands.

use std::collections::BTreeSet;
use std::fs::File;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kontextual_model::{
    ArtifactName, Change, ChangeKind, CollectionName, JobId, Provenance, RunId, RunStatus,
    Timestamp,
};
use kontextual_store::{
    ArtifactKey, ArtifactQuery, KnowledgeOp, Op, PageRequest, PutArtifact, RunOp, WriteBatch,
    WriteContext,
};
use serde::Serialize;

use crate::artifacts::sniff;
use crate::this_process;
use crate::{Caller, Error, Knowledge, Permission, Resource, Result};

/// Files per write batch (one group commit each).
const BATCH_FILES: usize = 512;
/// Bytes per write batch, whichever limit comes first.
const BATCH_BYTES: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct IngestRequest {
    pub paths: Vec<PathBuf>,
    pub collection: String,
    /// Tombstone artifacts of the collection whose files are gone.
    pub prune: bool,
    pub source_system: Option<String>,
}

/// Receives progress; the CLI draws a bar with it.
pub trait IngestProgress {
    fn scanned(&self, files: u64, bytes: u64);
    fn advanced(&self, files: u64, bytes: u64);
    fn finished(&self);
    /// Every file is stored; the search index is catching up with the last
    /// of them (the stage a user otherwise sees as a frozen screen).
    fn indexing(&self) {}
    /// Asked between batches: true stops the ingest at that safe point
    /// (its job was cancelled or the worker is shutting down).
    fn should_stop(&self) -> bool {
        false
    }
}

/// Does nothing (no terminal, `--quiet`, tests).
pub struct NoProgress;

impl IngestProgress for NoProgress {
    fn scanned(&self, _: u64, _: u64) {}
    fn advanced(&self, _: u64, _: u64) {}
    fn finished(&self) {}
}

#[derive(Clone, Debug, Serialize)]
pub struct FileFailure {
    pub path: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    pub run_id: Option<RunId>,
    pub status: Option<RunStatus>,
    pub files: u64,
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub pruned: u64,
    pub failed: u64,
    pub bytes: u64,
    pub elapsed_ms: u64,
    /// Where the time went: finding files, reading + detecting them (on all
    /// cores), and writing them (hash, rows, audit, outbox, commit).
    pub scan_ms: u64,
    pub read_parse_ms: u64,
    pub store_ms: u64,
    pub failures: Vec<FileFailure>,
    /// Entries deliberately not ingested (symbolic links, FIFOs, `.git`):
    /// reported, but not failures.
    pub skipped: Vec<FileFailure>,
    /// What the search index applied during and after the ingest, when this
    /// process owns the index (otherwise its owner catches up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexed: Option<IndexedReport>,
}

/// The search projection's share of an ingest.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndexedReport {
    pub artifacts: u64,
    /// Time from the end of the store writes until the index was committed.
    pub tail_ms: u64,
    /// Whether the index was updated by this process (false: another
    /// process owns it and will catch up).
    pub owner: bool,
}

impl IngestReport {
    pub fn mb_per_s(&self) -> f64 {
        let s = self.elapsed_ms.max(1) as f64 / 1000.0;
        self.bytes as f64 / 1e6 / s
    }
}

/// A file found by the scan.
struct Found {
    name: ArtifactName,
    path: PathBuf,
    size: u64,
}

/// One output line of the run manifest.
#[derive(Serialize)]
struct Output {
    name: String,
    id: String,
    revision: u64,
    digest: String,
    change: &'static str,
}

impl Knowledge {
    /// Ingests while a follower thread feeds the search index from the
    /// change feed, so storing and indexing overlap; returns once both are
    /// done and the index is committed (a search right after sees it all).
    pub fn ingest_and_index(
        &self,
        caller: &Caller,
        req: &IngestRequest,
        progress: &dyn IngestProgress,
    ) -> Result<IngestReport> {
        self.ingest_and_index_linked(caller, req, progress, None)
    }

    /// [`Self::ingest_and_index`] for a job attempt: the run links to it.
    pub(crate) fn ingest_and_index_linked(
        &self,
        caller: &Caller,
        req: &IngestRequest,
        progress: &dyn IngestProgress,
        job: Option<(JobId, u32)>,
    ) -> Result<IngestReport> {
        let started = Instant::now();
        let projection = match self.projection() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "ingesting without updating the search index");
                None
            }
        };
        let Some(p) = projection.filter(|p| p.is_owner()) else {
            let mut report = self.ingest_linked(caller, req, progress, job)?;
            report.indexed = Some(IndexedReport::default());
            return Ok(report);
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (report, followed) = std::thread::scope(|scope| {
            let follower = scope.spawn(|| -> Result<u64> {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let step = p.follow_step()?;
                    n += step.artifacts_reindexed;
                    if step.artifacts_reindexed == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
                Ok(n)
            });
            let report = self.ingest_linked(caller, req, progress, job);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let followed = follower
                .join()
                .unwrap_or_else(|_| Err(Error::internal("index follower panicked")));
            (report, followed)
        });
        let mut report = report?;
        let tail = Instant::now();
        let followed = match followed {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "the index follower stopped; catching up at the end");
                0
            }
        };
        progress.indexing();
        let last = p.catch_up()?;
        report.indexed = Some(IndexedReport {
            artifacts: followed + last.artifacts_reindexed,
            tail_ms: tail.elapsed().as_millis() as u64,
            owner: true,
        });
        // the time until everything is searchable, not only stored
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    pub fn ingest(
        &self,
        caller: &Caller,
        req: &IngestRequest,
        progress: &dyn IngestProgress,
    ) -> Result<IngestReport> {
        self.ingest_linked(caller, req, progress, None)
    }

    fn ingest_linked(
        &self,
        caller: &Caller,
        req: &IngestRequest,
        progress: &dyn IngestProgress,
        job: Option<(JobId, u32)>,
    ) -> Result<IngestReport> {
        let started = Instant::now();
        let collection = CollectionName::new(&req.collection)?;
        self.authorize(
            caller,
            Permission::Write,
            &Resource::Collection(collection.as_str()),
        )?;
        if req.paths.is_empty() {
            return Err(Error::InvalidInput(
                "give at least one file or directory to ingest".to_owned(),
            ));
        }
        let mut roots_seen = BTreeSet::new();
        let mut paths = Vec::new();
        for p in &req.paths {
            let canonical = std::fs::canonicalize(p).map_err(|_| {
                Error::NotFound(format!("{} (no such file or directory)", p.display()))
            })?;
            if req.prune && !canonical.is_dir() {
                return Err(Error::InvalidInput(format!(
                    "--prune needs directories: with the file {} it would tombstone the rest of the collection",
                    p.display()
                )));
            }
            if roots_seen.insert(canonical.clone()) {
                paths.push(canonical);
            }
        }
        let run_id = RunId::new();
        let input = serde_json::json!({
            "kind": "ingest",
            "paths": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "collection": collection,
            "prune": req.prune,
            "source_system": req.source_system,
        });
        self.write(
            caller,
            vec![
                Op::Knowledge(KnowledgeOp::CreateCollection {
                    name: collection.clone(),
                    description: String::new(),
                    if_absent: true,
                }),
                Op::Runs(RunOp::StartRun {
                    id: run_id,
                    kind: "ingest".into(),
                    input,
                    owner: this_process(),
                    job,
                }),
            ],
        )?;
        let mut report = IngestReport {
            run_id: Some(run_id),
            ..Default::default()
        };
        let mut outputs: Vec<Output> = Vec::new();
        let body = self.ingest_run(
            caller,
            req,
            &collection,
            run_id,
            &paths,
            &mut report,
            &mut outputs,
            progress,
        );
        progress.finished();
        report.failed = report.failures.len() as u64;
        report.elapsed_ms = ms(started.elapsed());
        // Whatever happened, the run ends with a status and a manifest.
        let (status, error) = match &body {
            Ok(()) => {
                let ok = report.new + report.updated + report.unchanged + report.pruned;
                let status = match (report.failed, ok) {
                    (0, _) => RunStatus::Succeeded,
                    (_, 0) => RunStatus::Failed,
                    _ => RunStatus::Partial,
                };
                (status, None)
            }
            Err(e) => (RunStatus::Failed, Some(e.to_string())),
        };
        report.status = Some(status);
        // ingest documents and bytes are counted from the runs in the store
        // at scrape time, so CLI ingests count too
        metrics::counter!("kontextual_runs_finished_total", "kind" => "ingest", "status" => status.as_str())
            .increment(1);
        let manifest = serde_json::json!({
            "inputs": { "files": report.files, "bytes": report.bytes },
            "outputs": outputs,
            "counts": {
                "new": report.new, "updated": report.updated, "unchanged": report.unchanged,
                "pruned": report.pruned, "failed": report.failed, "skipped": report.skipped.len(),
            },
            "diagnostics": report.failures,
            "skipped": report.skipped,
            "error": error,
            "timings_ms": {
                "scan": report.scan_ms, "read_parse": report.read_parse_ms,
                "store": report.store_ms, "total": report.elapsed_ms,
            },
            "audit_head": self.store().audit().head()?,
        });
        self.store().write(WriteBatch {
            ctx: caller.write_ctx(),
            ops: vec![Op::Runs(RunOp::FinishRun {
                id: run_id,
                status,
                manifest,
            })],
        })?;
        body.map(|()| report)
    }

    /// The body of an ingest run: scan, write, prune. An error here ends
    /// the run as `failed` (never left `running`).
    #[allow(clippy::too_many_arguments)]
    fn ingest_run(
        &self,
        caller: &Caller,
        req: &IngestRequest,
        collection: &CollectionName,
        run_id: RunId,
        paths: &[PathBuf],
        report: &mut IngestReport,
        outputs: &mut Vec<Output>,
        progress: &dyn IngestProgress,
    ) -> Result<()> {
        let ctx = WriteContext {
            run_id: Some(run_id),
            ..caller.write_ctx()
        };

        // 1. scan
        let t = Instant::now();
        let mut scanned = Scan::default();
        // this store's own data directory is never ingested
        let own: Vec<PathBuf> = self
            .data_dir
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect();
        for root in paths {
            scan(root, &own, &mut scanned);
        }
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for f in scanned.found {
            if seen.insert(f.name.clone()) {
                found.push(f);
            } else {
                report.failures.push(FileFailure {
                    path: f.path.display().to_string(),
                    reason: format!("another input already has the name {}", f.name),
                });
            }
        }
        report.failures.extend(scanned.failures);
        report.skipped = scanned.skipped;
        report.files = found.len() as u64 + report.failures.len() as u64;
        let total: u64 = found.iter().map(|f| f.size).sum();
        progress.scanned(report.files, total);
        report.scan_ms = ms(t.elapsed());
        self.step(
            &ctx,
            run_id,
            "scan",
            RunStatus::Succeeded,
            serde_json::json!({
                "files": found.len(), "bytes": total, "failed": report.failures.len(),
                "skipped": report.skipped.len(), "ms": report.scan_ms,
            }),
        )?;

        // Quarantined artifacts are kept as they are (O2): their files are skipped.
        let quarantined: std::collections::HashMap<String, String> = self
            .store()
            .access()
            .quarantines(&caller.namespace, None)?
            .into_iter()
            .filter(|q| &q.collection == collection)
            .map(|q| (q.name.to_string(), q.reason))
            .collect();

        // 2. read, detect and write, in batches
        let t = Instant::now();
        let mut batch: Vec<&Found> = Vec::new();
        let mut batch_bytes = 0;
        for f in &found {
            if let Some(reason) = quarantined.get(f.name.as_str()) {
                report.skipped.push(FileFailure {
                    path: f.path.display().to_string(),
                    reason: format!("{collection}/{} is quarantined ({reason})", f.name),
                });
                continue;
            }
            if progress.should_stop() {
                return Err(Error::Stopped(
                    "the ingest was asked to stop; what was written so far stays".to_owned(),
                ));
            }
            batch.push(f);
            batch_bytes += f.size;
            if batch.len() >= BATCH_FILES || batch_bytes >= BATCH_BYTES {
                self.write_batch(&ctx, collection, req, &batch, report, outputs, progress)?;
                batch.clear();
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            self.write_batch(&ctx, collection, req, &batch, report, outputs, progress)?;
        }
        self.step(
            &ctx,
            run_id,
            "write",
            RunStatus::Succeeded,
            serde_json::json!({
                "new": report.new, "updated": report.updated, "unchanged": report.unchanged,
                "failed": report.failures.len(), "bytes": report.bytes, "ms": ms(t.elapsed()),
            }),
        )?;

        // 3. prune: only when every directory could be read, and never what changed meanwhile
        if req.prune {
            let t = Instant::now();
            if let Some(dir) = scanned.unreadable_dirs.first() {
                report.failures.push(FileFailure {
                    path: dir.clone(),
                    reason: "prune skipped: a directory could not be read, so missing files cannot be told from unreadable ones".to_owned(),
                });
                self.step(
                    &ctx,
                    run_id,
                    "prune",
                    RunStatus::Failed,
                    serde_json::json!({"skipped_because_unreadable": scanned.unreadable_dirs}),
                )?;
                return Ok(());
            }
            let keep: BTreeSet<String> = seen.iter().map(|n| n.to_string()).collect();
            // Only what an ingest of these roots put there is pruned: an
            // artifact written by an ingest run from a file under one of the
            // roots. Hand-put artifacts and other roots' files stay.
            let ours = |a: &kontextual_model::Artifact| {
                a.run_id.is_some()
                    && a.provenance.source_path.as_deref().is_some_and(|p| {
                        let p = Path::new(p);
                        paths
                            .iter()
                            .any(|root| p.starts_with(root) && p != root.as_path())
                    })
            };
            let mut gone = Vec::new();
            let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
            let q = ArtifactQuery {
                collection: Some(collection.clone()),
                ..Default::default()
            };
            loop {
                let p = self
                    .store()
                    .knowledge()
                    .artifacts(&caller.namespace, &q, &page)?;
                gone.extend(
                    p.items
                        .into_iter()
                        .filter(|a| !keep.contains(a.name.as_str()) && ours(a)),
                );
                match p.next {
                    Some(c) => page.after = Some(c),
                    None => break,
                }
            }
            for chunk in gone.chunks(BATCH_FILES) {
                let op = |a: &kontextual_model::Artifact| {
                    Op::Knowledge(KnowledgeOp::DeleteArtifact {
                        key: ArtifactKey::Id(a.id),
                        expect: Some(a.revision),
                    })
                };
                let changes = match self.store().write(WriteBatch {
                    ctx: ctx.clone(),
                    ops: chunk.iter().map(op).collect(),
                }) {
                    Ok(c) => c,
                    Err(_) => {
                        // something changed meanwhile: prune one by one, leave what changed
                        let mut all = Vec::new();
                        for a in chunk {
                            match self.store().write(WriteBatch {
                                ctx: ctx.clone(),
                                ops: vec![op(a)],
                            }) {
                                Ok(c) => all.extend(c),
                                Err(e) => report.failures.push(FileFailure {
                                    path: format!("{collection}/{}", a.name),
                                    reason: format!("not pruned: {e}"),
                                }),
                            }
                        }
                        all
                    }
                };
                for change in changes {
                    if let Change::Artifact {
                        kind: ChangeKind::Deleted,
                        artifact,
                        ..
                    } = change
                    {
                        report.pruned += 1;
                        outputs.push(output(&artifact, "pruned"));
                    }
                }
            }
            self.step(
                &ctx,
                run_id,
                "prune",
                RunStatus::Succeeded,
                serde_json::json!({
                    "pruned": report.pruned, "ms": ms(t.elapsed()),
                }),
            )?;
        }
        Ok(())
    }

    fn step(
        &self,
        ctx: &WriteContext,
        id: RunId,
        name: &str,
        status: RunStatus,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.store().write(WriteBatch {
            ctx: ctx.clone(),
            ops: vec![Op::Runs(RunOp::RunStep {
                id,
                name: name.to_owned(),
                status,
                detail,
            })],
        })?;
        Ok(())
    }

    /// Reads and detects a batch of files (in parallel), then writes it
    /// atomically. If the store refuses the batch, each file is retried alone
    /// so one bad file cannot sink the others.
    #[allow(clippy::too_many_arguments)]
    fn write_batch(
        &self,
        ctx: &WriteContext,
        collection: &CollectionName,
        req: &IngestRequest,
        batch: &[&Found],
        report: &mut IngestReport,
        outputs: &mut Vec<Output>,
        progress: &dyn IngestProgress,
    ) -> Result<()> {
        let t = Instant::now();
        let prepared = prepare_all(collection, req, batch);
        report.read_parse_ms += ms(t.elapsed());
        let t = Instant::now();
        let mut ops = Vec::new();
        let mut names = Vec::new();
        for (f, r) in batch.iter().zip(prepared) {
            match r {
                Ok(op) => {
                    ops.push(op);
                    names.push(*f);
                }
                Err(reason) => report.failures.push(FileFailure {
                    path: f.path.display().to_string(),
                    reason,
                }),
            }
        }
        let bytes: u64 = batch.iter().map(|f| f.size).sum();
        match self.store().write(WriteBatch {
            ctx: ctx.clone(),
            ops,
        }) {
            Ok(changes) => {
                for c in changes {
                    tally(c, report, outputs);
                }
            }
            Err(e) if names.len() > 1 => {
                tracing::warn!(error = %e, "batch refused; retrying its files one by one");
                for f in names {
                    let one = prepare(collection, req, f).and_then(|op| {
                        self.store()
                            .write(WriteBatch {
                                ctx: ctx.clone(),
                                ops: vec![op],
                            })
                            .map_err(|e| e.to_string())
                    });
                    match one {
                        Ok(changes) => changes.into_iter().for_each(|c| tally(c, report, outputs)),
                        Err(reason) => report.failures.push(FileFailure {
                            path: f.path.display().to_string(),
                            reason,
                        }),
                    }
                }
            }
            Err(e) => {
                if let Some(f) = names.first() {
                    report.failures.push(FileFailure {
                        path: f.path.display().to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        report.store_ms += ms(t.elapsed());
        report.bytes += bytes;
        progress.advanced(batch.len() as u64, bytes);
        Ok(())
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn output(a: &kontextual_model::Artifact, change: &'static str) -> Output {
    Output {
        name: a.name.to_string(),
        id: a.id.to_string(),
        revision: a.revision,
        digest: a.digest.to_string(),
        change,
    }
}

fn tally(c: Change, report: &mut IngestReport, outputs: &mut Vec<Output>) {
    match c {
        Change::Artifact { kind, artifact, .. } => {
            let label = match kind {
                ChangeKind::Created => {
                    report.new += 1;
                    "created"
                }
                ChangeKind::Restored => {
                    report.new += 1;
                    "restored"
                }
                _ => {
                    report.updated += 1;
                    "updated"
                }
            };
            outputs.push(output(&artifact, label));
        }
        Change::ArtifactUnchanged { artifact } => {
            report.unchanged += 1;
            outputs.push(output(&artifact, "unchanged"));
        }
        _ => {}
    }
}

/// Reads and detects every file of a batch, on all cores.
fn prepare_all(
    collection: &CollectionName,
    req: &IngestRequest,
    batch: &[&Found],
) -> Vec<Result<Op, String>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(batch.len())
        .max(1);
    let chunk = batch.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunks(chunk.max(1))
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|f| prepare(collection, req, f))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err("internal error while reading".to_owned())])
            })
            .collect()
    })
}

fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    }
    #[cfg(not(target_os = "linux"))]
    {
        File::open(path)
    }
}

/// One file → one put, or the reason it cannot be ingested.
fn prepare(collection: &CollectionName, req: &IngestRequest, f: &Found) -> Result<Op, String> {
    // Non-blocking: a FIFO put in place of a file after the scan must not hang us.
    let file = open_nonblocking(&f.path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("no longer a regular file: skipped".to_owned());
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok())
        .and_then(|t| Timestamp::from_microsecond(t.as_microsecond()).ok());
    let (content, parsed) = match sniff(
        collection.as_str(),
        f.name.as_str(),
        Box::new(file),
        Some(meta.len()),
    ) {
        Ok(x) => x,
        Err(Error::Io { cause, .. }) => return Err(format!("cannot read: {cause}")),
        Err(e) => return Err(strip_prefix(&e.to_string(), collection, &f.name)),
    };
    let mut put = PutArtifact::new(collection.clone(), f.name.clone(), content);
    put.artifact_type = Some(parsed.artifact_type.to_owned());
    put.media_type = Some(parsed.media_type);
    put.title = parsed.title;
    put.source_system = req.source_system.clone();
    put.provenance = Some(Provenance {
        source_path: Some(f.path.display().to_string()),
        source_mtime: mtime,
        ..Default::default()
    });
    Ok(Op::Knowledge(KnowledgeOp::PutArtifact(put)))
}

fn strip_prefix(msg: &str, collection: &CollectionName, name: &ArtifactName) -> String {
    msg.strip_prefix(&format!("{collection}/{name}: "))
        .unwrap_or(msg)
        .to_owned()
}

/// What a scan found.
#[derive(Default)]
struct Scan {
    found: Vec<Found>,
    failures: Vec<FileFailure>,
    skipped: Vec<FileFailure>,
    unreadable_dirs: Vec<String>,
}

/// Collects regular files under `root` (names relative to it, `/`-separated),
/// sorted. A root given explicitly is followed if it is a symlink; inside the
/// tree, symbolic links are not followed (they could leave it), and `.git`
/// directories, Kontextual stores and search indexes (the data directory in
/// use among them: `own` lists its paths), FIFOs, sockets and devices are
/// skipped.
fn scan(root: &Path, own: &[PathBuf], out: &mut Scan) {
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(e) => {
            out.failures.push(FileFailure {
                path: root.display().to_string(),
                reason: format!("cannot read: {e}"),
            });
            return;
        }
    };
    if meta.is_file() {
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        push(root, name, meta.len(), &mut out.found, &mut out.failures);
        return;
    }
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(true)
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 || !e.file_type().is_dir() {
                return true;
            }
            let why = if e.file_name() == ".git" {
                Some("git metadata: skipped")
            } else if own.iter().any(|o| o == e.path()) || is_kontextual_dir(e.path()) {
                Some("a Kontextual store or search index: never ingested")
            } else {
                None
            };
            if let Some(reason) = why {
                skipped.push(FileFailure {
                    path: e.path().display().to_string(),
                    reason: reason.to_owned(),
                });
            }
            why.is_none()
        });
    for entry in walk {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e
                    .path()
                    .map_or_else(|| root.display().to_string(), |p| p.display().to_string());
                let is_dir = e.path().is_some_and(|p| p.is_dir());
                out.failures.push(FileFailure {
                    path: path.clone(),
                    reason: if is_dir {
                        format!("cannot read directory: {e}")
                    } else {
                        format!("cannot read: {e}")
                    },
                });
                if is_dir {
                    out.unreadable_dirs.push(path);
                }
                continue;
            }
        };
        let t = entry.file_type();
        let skip = |reason: &str| FileFailure {
            path: entry.path().display().to_string(),
            reason: reason.to_owned(),
        };
        if t.is_dir() {
            continue;
        } else if t.is_file() {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            files.push((entry.into_path(), size));
        } else if t.is_symlink() {
            out.skipped.push(skip("symbolic link: not followed"));
        } else {
            out.skipped
                .push(skip("not a regular file (FIFO, socket or device): skipped"));
        }
    }
    out.skipped.extend(skipped);
    files.sort();
    for (path, size) in files {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let name: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        match name {
            Some(parts) => push(
                &path,
                &parts.join("/"),
                size,
                &mut out.found,
                &mut out.failures,
            ),
            None => out.failures.push(FileFailure {
                path: path.display().to_string(),
                reason: "the file name is not valid UTF-8".to_owned(),
            }),
        }
    }
}

/// Whether a directory is a Kontextual data directory (its database) or a
/// search index (tantivy's bookkeeping files).
fn is_kontextual_dir(dir: &Path) -> bool {
    dir.join(kontextual_store::sqlite::DB_FILE).exists()
        || (dir.join("meta.json").exists() && dir.join(".managed.json").exists())
}

fn push(
    path: &Path,
    name: &str,
    size: u64,
    found: &mut Vec<Found>,
    failures: &mut Vec<FileFailure>,
) {
    match ArtifactName::new(name) {
        Ok(name) => found.push(Found {
            name,
            path: path.to_path_buf(),
            size,
        }),
        Err(e) => failures.push(FileFailure {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}
