//! The search projection's life: open, catch up from the change feed,
//! rebuild, report health. The index itself is `kontextual-index`; this
//! module turns store state into index documents.
//!
//! Invariants:
//! - The index is written only here, only by the process that owns it, and
//!   only from store state (never from a request's input).
//! - Catch-up reads the *current* state of each changed artifact, so
//!   applying an event twice, or events out of date, converges.
//! - The checkpoint (last applied outbox seq) is committed with the documents
//!   it covers, and acknowledged to the store as consumer `search-index` so
//!   outbox retention keeps what the index has not applied yet. Reading the
//!   feed, committing and acknowledging are the feed runtime's
//!   (`feed.rs`); this module applies batches (`IndexPass`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kontextual_index::{Access, Checkpoint, IndexDoc, Opened, SearchIndex, metadata_pairs};
use kontextual_model::{Artifact, ArtifactId, Namespace};
use kontextual_store::{ArtifactKey, ArtifactQuery, PageRequest, Store};
use serde::Serialize;

use crate::error::index_err;
use crate::{Error, Result};

/// The outbox consumer name of the search projection.
pub const CONSUMER: &str = "search-index";

/// Text beyond this is not indexed (the artifact stays findable by its
/// beginning, name, title and metadata).
const MAX_INDEXED_TEXT: usize = 4 * 1024 * 1024;

/// Outbox events read per step.
const FEED_BATCH: u32 = 2048;

/// Commit at least every this many changed artifacts during a long catch-up,
/// so a crash loses little work and memory stays bounded.
const COMMIT_EVERY: usize = 20_000;

/// A writer that cannot be reopened is reported at most this often.
static WRITER_DOWN: kontextual_kernel::LogThrottle =
    kontextual_kernel::LogThrottle::new(kontextual_kernel::STORE_DOWN_EVERY);

/// How long a process that does not own the index waits for the owner to
/// apply changes that are already in the store before searching anyway.
pub const FOLLOWER_WAIT: Duration = Duration::from_secs(5);

/// How far the writer has applied the feed, and whether that is committed.
#[derive(Default)]
struct Progress {
    applied: u64,
    uncommitted: bool,
    /// The last event applied, as (seq, audit seq, time): if the store's
    /// event at that seq is another one, the store was replaced (restored
    /// from an older copy and written again) and the index is rebuilt.
    last_event: Option<(u64, u64, kontextual_model::Timestamp)>,
    /// The feed position the last rebuild in this process started from.
    rebuilt_at: Option<u64>,
}

pub(crate) struct Projection {
    index: SearchIndex,
    store: Store,
    /// Serialises catch-up and rebuild within this process.
    progress: Mutex<Progress>,
    opened: Opened,
    /// Artifacts whose extraction failed (ref, reason), by id.
    unextractable: Mutex<std::collections::BTreeMap<ArtifactId, (String, String)>>,
    /// The feed position of the last commit, readable without waiting for
    /// a catch-up in progress (which holds `progress`).
    committed: std::sync::atomic::AtomicU64,
    /// Why the last pass failed in the index writer (a full disk), until a
    /// pass succeeds: the index is not ready meanwhile.
    trouble: Mutex<Option<String>>,
}

/// What one catch-up did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CatchUp {
    pub from_seq: u64,
    pub to_seq: u64,
    pub artifacts_reindexed: u64,
}

impl Projection {
    pub(crate) fn open(dir: &Path, store: Store) -> Result<Projection> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        // Another process may own an index it is still creating: give it
        // the same bounded wait as a lagging owner, retrying ownership too
        // (the owner may exit meanwhile).
        let deadline = Instant::now() + FOLLOWER_WAIT;
        let (index, opened) = loop {
            match SearchIndex::open(dir, Access::PreferOwner, threads) {
                Err(kontextual_index::IndexError::Unavailable(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => break other.map_err(index_err)?,
            }
        };
        let checkpoint = index.checkpoint().map_err(index_err)?;
        let applied = checkpoint.as_ref().map_or(0, |c| c.applied_seq);
        let last_event = checkpoint.as_ref().and_then(last_event_of);
        let p = Projection {
            index,
            store,
            progress: Mutex::new(Progress {
                applied,
                uncommitted: false,
                last_event,
                rebuilt_at: None,
            }),
            opened,
            unextractable: Mutex::new(Default::default()),
            committed: std::sync::atomic::AtomicU64::new(applied),
            trouble: Mutex::new(None),
        };
        if p.index.is_owner() {
            let pos = p.store.feed().position()?;
            let reason = match (&p.opened, p.index.checkpoint().map_err(index_err)?) {
                (Opened::Fresh { reason }, _) => Some(reason.clone()),
                (_, None) => Some("no checkpoint".to_owned()),
                (_, Some(c)) if c.store_id != pos.store_id => {
                    Some("it was built from another store".to_owned())
                }
                (_, Some(c)) if c.applied_seq > pos.last_seq => {
                    Some("it is ahead of the store (restored from a backup?)".to_owned())
                }
                _ => None,
            };
            if let Some(reason) = reason {
                tracing::info!(%reason, "rebuilding the search index");
                p.rebuild()?;
            }
        }
        Ok(p)
    }

    pub(crate) fn index(&self) -> &SearchIndex {
        &self.index
    }

    pub(crate) fn is_owner(&self) -> bool {
        self.index.is_owner()
    }

    /// Whether this process rebuilt the index from a feed position at or
    /// after `seq` (so everything written up to `seq` is in it).
    pub(crate) fn rebuilt_since(&self, seq: u64) -> bool {
        self.lock().rebuilt_at.is_some_and(|at| at >= seq)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies every outbox event after the checkpoint and commits, so a
    /// search that follows sees everything written before it. A no-op for a
    /// process that does not own the index.
    pub(crate) fn catch_up(&self) -> Result<CatchUp> {
        self.apply(true)
    }

    /// Applies what the feed has without committing unless a lot is
    /// pending: for a follower running beside a long write (ingest), which
    /// commits once at the end.
    pub(crate) fn follow_step(&self) -> Result<CatchUp> {
        self.apply(false)
    }

    fn apply(&self, commit: bool) -> Result<CatchUp> {
        if !self.index.is_owner() {
            return Ok(CatchUp::default());
        }
        // A writer that failed earlier (a full disk) is reopened first.
        if self.index.writer_failure().is_some() {
            self.after_failure(&mut self.lock());
            if let Some(why) = self.index.writer_failure() {
                return Err(index_err(kontextual_index::IndexError::Unavailable(
                    format!("its writer failed ({why}) and cannot be reopened yet"),
                )));
            }
        }
        // A feed behind what the index applied means the store was
        // restored from an older copy: the index describes a state that no
        // longer exists, so it is rebuilt rather than trusted.
        let (applied, last_event) = {
            let p = self.lock();
            (p.applied, p.last_event)
        };
        let pos = self.store.feed().position()?;
        // The event the index applied last must still be the store's event
        // at that seq (unless it was pruned since).
        let replaced = match last_event {
            Some((seq, audit_seq, at)) => self
                .store
                .feed()
                .events(seq.saturating_sub(1), 1)?
                .first()
                .is_some_and(|e| e.seq == seq && (e.audit_seq != audit_seq || e.at != at)),
            None => false,
        };
        if pos.last_seq < applied || replaced {
            tracing::warn!(
                index_seq = applied,
                store_seq = pos.last_seq,
                "the store's change feed is behind or other than what the search index applied (restored from a backup?); rebuilding the index"
            );
            return self.rebuild();
        }
        let progress = self.lock();
        let mut pass = IndexPass {
            from: progress.applied,
            projection: self,
            progress,
            reindexed: 0,
            since_commit: 0,
        };
        let finish = if commit {
            crate::FeedFinish::Commit
        } else {
            crate::FeedFinish::WhenAsked
        };
        if let Err(e) = crate::catch_up(&self.store, CONSUMER, FEED_BATCH, &mut pass, finish) {
            self.after_failure(&mut pass.progress);
            return Err(e);
        }
        if !pass.progress.uncommitted {
            *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        Ok(CatchUp {
            from_seq: pass.from,
            to_seq: pass.progress.applied,
            artifacts_reindexed: pass.reindexed,
        })
    }

    /// Drops every document and indexes every live artifact of every
    /// namespace again, then checkpoints at the feed position read before
    /// the scan (events during the scan are applied again by the next
    /// catch-up, which is harmless).
    pub(crate) fn rebuild(&self) -> Result<CatchUp> {
        // The result is counted back from the committed index: a rebuild
        // that does not hold what it indexed is done again once, then
        // reported, never left to look healthy.
        let done = self
            .rebuild_once()
            .inspect_err(|_| self.after_failure(&mut self.lock()))?;
        let held = self.index.stats().map_err(index_err)?.artifacts;
        if held == done.artifacts_reindexed {
            return Ok(done);
        }
        tracing::warn!(
            indexed = done.artifacts_reindexed,
            held,
            "the rebuilt search index does not hold what was indexed; rebuilding again"
        );
        let again = self
            .rebuild_once()
            .inspect_err(|_| self.after_failure(&mut self.lock()))?;
        let held = self.index.stats().map_err(index_err)?.artifacts;
        if held != again.artifacts_reindexed {
            return Err(index_err(kontextual_index::IndexError::Engine {
                path: self.index.path().display().to_string(),
                cause: format!(
                    "the rebuilt index holds {held} artifacts but {} were indexed",
                    again.artifacts_reindexed
                ),
            }));
        }
        Ok(again)
    }

    fn rebuild_once(&self) -> Result<CatchUp> {
        if !self.index.is_owner() {
            return Err(index_err(kontextual_index::IndexError::NotOwner(
                self.index
                    .path()
                    .with_extension("lock")
                    .display()
                    .to_string(),
            )));
        }
        let mut progress = self.lock();
        let pos = self.store.feed().position()?;
        self.index.clear().map_err(index_err)?;
        let mut n = 0u64;
        for ns in self.store.knowledge().namespaces()? {
            let quarantined = self.quarantined(&ns)?;
            let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
            loop {
                let p = self
                    .store
                    .knowledge()
                    .artifacts(&ns, &ArtifactQuery::default(), &page)?;
                for a in p.items.iter().filter(|a| !quarantined.contains(&a.id)) {
                    self.index
                        .replace(&a.id.to_string(), &self.documents(a)?)
                        .map_err(index_err)?;
                    n += 1;
                    if n.is_multiple_of(COMMIT_EVERY as u64) {
                        // Intermediate commits keep the old checkpoint: a
                        // crash mid-rebuild restarts it rather than trusting
                        // a half-built index.
                        self.commit_raw(0)?;
                    }
                }
                match p.next {
                    Some(c) => page.after = Some(c),
                    None => break,
                }
            }
        }
        self.commit(pos.last_seq)?;
        let from = progress.applied;
        progress.applied = pos.last_seq;
        progress.rebuilt_at = Some(pos.last_seq);
        progress.last_event = self
            .store
            .feed()
            .events(pos.last_seq.saturating_sub(1), 1)?
            .first()
            .filter(|e| e.seq == pos.last_seq)
            .map(|e| (e.seq, e.audit_seq, e.at));
        progress.uncommitted = false;
        Ok(CatchUp {
            from_seq: from,
            to_seq: pos.last_seq,
            artifacts_reindexed: n,
        })
    }

    /// Indexes every artifact of one collection again from the store (live
    /// ones replaced, deleted and quarantined ones dropped) and commits at
    /// the current checkpoint. Returns how many artifacts were visited.
    pub(crate) fn reindex_collection(
        &self,
        ns: &Namespace,
        collection: &kontextual_model::CollectionName,
    ) -> Result<u64> {
        if !self.index.is_owner() {
            return Err(index_err(kontextual_index::IndexError::NotOwner(
                self.index
                    .path()
                    .with_extension("lock")
                    .display()
                    .to_string(),
            )));
        }
        let mut progress = self.lock();
        let q = ArtifactQuery {
            collection: Some(collection.clone()),
            include_deleted: true,
            ..Default::default()
        };
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        let mut n = 0u64;
        let quarantined = self.quarantined(ns)?;
        loop {
            let p = self.store.knowledge().artifacts(ns, &q, &page)?;
            for a in &p.items {
                self.reindex(ns, a.id, quarantined.contains(&a.id))?;
                n += 1;
            }
            match p.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        self.commit(progress.applied)?;
        progress.uncommitted = false;
        Ok(n)
    }

    /// After a failed pass: when the index writer failed (a full disk), what
    /// it held uncommitted is lost, so progress goes back to the last commit
    /// and the writer is replaced — the next pass re-applies the changes
    /// since, and no restart is needed. While it cannot be reopened, search
    /// serves the last commit and readiness says not ready.
    fn after_failure(&self, progress: &mut Progress) {
        let Some(why) = self.index.writer_failure() else {
            return;
        };
        *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        let checkpoint = self.index.checkpoint().ok().flatten();
        progress.applied = checkpoint.as_ref().map_or(0, |c| c.applied_seq);
        progress.last_event = checkpoint.as_ref().and_then(last_event_of);
        progress.uncommitted = false;
        match self.index.recover() {
            Ok(()) => tracing::warn!(
                failure = %why,
                from_seq = progress.applied,
                "the search index writer failed and was reopened; re-applying the changes since its last commit"
            ),
            Err(e) => {
                if let Some(suppressed) = WRITER_DOWN.admit() {
                    tracing::warn!(
                        failure = %why,
                        error = %e,
                        suppressed,
                        "the search index writer failed and cannot be reopened yet; searches answer from its last commit (retrying)"
                    );
                }
            }
        }
    }

    /// Why the index writer is failing (a full disk), from the failure
    /// until a pass commits again; `None` when it works.
    pub(crate) fn trouble(&self) -> Option<String> {
        self.trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The feed position searches see: what the last commit covers.
    pub(crate) fn committed_seq(&self) -> u64 {
        self.committed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits (bounded) until a commit covers `target`; the remaining lag.
    /// For an owner whose index is refreshed by its background follower.
    pub(crate) fn wait_committed(&self, target: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let done = self.committed_seq();
            if done >= target || Instant::now() >= deadline {
                return target.saturating_sub(done);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn commit_raw(&self, seq: u64) -> Result<()> {
        let store_id = self.store.feed().position()?.store_id;
        let applied_event = self
            .event_at(seq)?
            .map(|(audit_seq, at)| format!("{audit_seq}:{}", at.as_microsecond()));
        self.index
            .commit(&Checkpoint {
                format: kontextual_index::FORMAT,
                store_id,
                applied_seq: seq,
                committed_at: kontextual_model::now().to_string(),
                applied_event,
            })
            .map_err(index_err)?;
        self.committed
            .store(seq, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// The store's event at `seq` as (audit seq, time), if it is still there.
    fn event_at(&self, seq: u64) -> Result<Option<(u64, kontextual_model::Timestamp)>> {
        if seq == 0 {
            return Ok(None);
        }
        Ok(self
            .store
            .feed()
            .events(seq - 1, 1)?
            .first()
            .filter(|e| e.seq == seq)
            .map(|e| (e.audit_seq, e.at)))
    }

    fn commit(&self, seq: u64) -> Result<()> {
        self.commit_raw(seq)?;
        // Tell retention what we have applied.
        crate::acknowledge(&self.store, CONSUMER, seq);
        Ok(())
    }

    /// The namespace's quarantined artifacts.
    fn quarantined(&self, ns: &Namespace) -> Result<HashSet<ArtifactId>> {
        Ok(self
            .store
            .access()
            .quarantines(ns, None)?
            .into_iter()
            .map(|q| q.artifact_id)
            .collect())
    }

    /// Re-reads one artifact from the store and replaces its documents. A
    /// deleted or quarantined artifact has none.
    fn reindex(&self, ns: &Namespace, id: ArtifactId, quarantined: bool) -> Result<()> {
        let docs = match self.store.knowledge().artifact(ns, &ArtifactKey::Id(id))? {
            Some(a) if a.is_live() && !quarantined => self.documents(&a)?,
            _ => Vec::new(),
        };
        self.index
            .replace(&id.to_string(), &docs)
            .map_err(index_err)?;
        Ok(())
    }

    /// The documents of a live artifact: the whole and each section.
    fn documents(&self, a: &Artifact) -> Result<Vec<IndexDoc>> {
        let bytes = if kontextual_adapters::has_text(&a.artifact_type) {
            match read_all(&self.store, a) {
                Ok(bytes) => bytes,
                Err(e) => {
                    // Unreadable content must not stop the projection; the
                    // artifact stays findable by name and metadata, and
                    // `verify` reports the damaged blob.
                    tracing::warn!(artifact = %a.id, error = %e, "indexing without content");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        // Untrusted content: whatever an adapter does with it (even a
        // panic) is this document's failure, never the index's. It stays
        // findable by name and metadata and is reported by `index status`
        // and `verify`.
        let extracted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            extract(&a.artifact_type, &bytes)
        }));
        let Extracted {
            text,
            parts,
            headings,
        } = match extracted {
            Ok(x) => {
                self.unextractable_lock().remove(&a.id);
                x
            }
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the extractor panicked".to_owned());
                tracing::error!(artifact = %a.id, reason = %why, "text extraction failed; indexed without content");
                self.unextractable_lock()
                    .insert(a.id, (format!("{}/{}", a.collection, a.name), why));
                Extracted::default()
            }
        };
        let base = IndexDoc {
            namespace: a.namespace.to_string(),
            artifact_id: a.id.to_string(),
            selector: None,
            heading: None,
            headings: Vec::new(),
            part: false,
            revision: a.revision,
            collection: a.collection.to_string(),
            name: a.name.to_string(),
            title: a.title.clone(),
            artifact_type: a.artifact_type.clone(),
            lifecycle: a.lifecycle.to_string(),
            classification: a.classification.to_string(),
            metadata: metadata_pairs(&a.metadata.value()),
            body: String::new(),
            created_at: a.created_at,
            updated_at: a.updated_at,
        };
        let mut docs = Vec::with_capacity(parts.len() + 1);
        let mut whole = base.clone();
        whole.headings = headings;
        whole.body = text;
        docs.push(whole);
        for (selector, heading, body) in parts {
            let mut d = base.clone();
            d.part = true;
            d.body = body;
            d.selector = selector;
            d.heading = heading;
            docs.push(d);
        }
        Ok(docs)
    }

    fn unextractable_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<ArtifactId, (String, String)>> {
        self.unextractable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Artifacts whose text could not be extracted when this process last
    /// indexed them (ref, reason): indexed by name and metadata only.
    pub(crate) fn unextractable(&self) -> Vec<(ArtifactId, String, String)> {
        self.unextractable_lock()
            .iter()
            .map(|(id, (r, why))| (*id, r.clone(), why.clone()))
            .collect()
    }

    /// Waits (bounded) until the index has applied everything the store had
    /// when called, and the reader shows it. Returns the remaining lag (0
    /// when caught up).
    ///
    /// The checkpoint is read before the reader reloads: reloading loads
    /// the newest commit, so the reader then holds at least the commit
    /// whose checkpoint was read. (Reloading first raced the owner: a
    /// commit between the two made the newer checkpoint vouch for an older
    /// reader, and a search missed what it had waited for.)
    pub(crate) fn wait_for_owner(&self, timeout: Duration) -> Result<u64> {
        let target = self.store.feed().position()?.last_seq;
        let deadline = Instant::now() + timeout;
        loop {
            let applied = self
                .index
                .checkpoint()
                .map_err(index_err)?
                .map_or(0, |c| c.applied_seq);
            if applied >= target || Instant::now() >= deadline {
                self.index.reload().map_err(index_err)?;
                return Ok(target.saturating_sub(applied));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Applied position as this handle sees it (the owner knows it without
    /// reading the index's metadata).
    pub(crate) fn applied_seq(&self) -> Result<u64> {
        if self.index.is_owner() {
            return Ok(self.lock().applied);
        }
        Ok(self
            .index
            .checkpoint()
            .map_err(index_err)?
            .map_or(0, |c| c.applied_seq))
    }
}

/// One catch-up of the index: holds the projection's progress for the
/// whole pass, so catch-ups and rebuilds in this process never overlap.
struct IndexPass<'a> {
    projection: &'a Projection,
    progress: std::sync::MutexGuard<'a, Progress>,
    from: u64,
    reindexed: u64,
    since_commit: usize,
}

impl crate::FeedPass for IndexPass<'_> {
    fn cursor(&self) -> u64 {
        self.progress.applied
    }

    /// Re-reads every artifact the batch touched (once each) from the
    /// store's current state.
    fn apply(&mut self, events: &[kontextual_model::OutboxEvent]) -> Result<bool> {
        let Some(last) = events.last() else {
            return Ok(false);
        };
        let mut pending: Vec<(Namespace, ArtifactId)> = Vec::new();
        let mut seen = HashSet::new();
        for e in events {
            if !e.draft.kind.starts_with("artifact.") {
                continue;
            }
            if let Ok(id) = e.draft.subject.parse::<uuid::Uuid>() {
                let key = (e.namespace.clone(), ArtifactId(id));
                if seen.insert(key.clone()) {
                    pending.push(key);
                }
            }
        }
        // quarantines read once per batch and namespace (after the batch's
        // events, so a quarantine among them is seen)
        let mut quarantined: std::collections::HashMap<Namespace, HashSet<ArtifactId>> =
            Default::default();
        for (ns, id) in pending {
            if !quarantined.contains_key(&ns) {
                let q = self.projection.quarantined(&ns)?;
                quarantined.insert(ns.clone(), q);
            }
            let q = quarantined.get(&ns).is_some_and(|q| q.contains(&id));
            self.projection.reindex(&ns, id, q)?;
            self.reindexed += 1;
            self.since_commit += 1;
        }
        // the cursor only moves forward: a batch of events it has passed
        // (a replay) re-reads their artifacts but does not move it back
        if last.seq >= self.progress.applied {
            self.progress.last_event = Some((last.seq, last.audit_seq, last.at));
            self.progress.applied = last.seq;
        }
        self.progress.uncommitted = true;
        Ok(self.since_commit >= COMMIT_EVERY)
    }

    fn uncommitted(&self) -> bool {
        self.progress.uncommitted
    }

    /// Commits the documents with the checkpoint that covers them.
    fn commit(&mut self) -> Result<u64> {
        let seq = self.progress.applied;
        self.projection.commit_raw(seq)?;
        self.progress.uncommitted = false;
        self.since_commit = 0;
        Ok(seq)
    }
}

/// The event a checkpoint says it applied last, as (seq, audit seq, time).
fn last_event_of(c: &Checkpoint) -> Option<(u64, u64, kontextual_model::Timestamp)> {
    let (audit_seq, micros) = c.applied_event.as_deref()?.split_once(':')?;
    let at = kontextual_model::Timestamp::from_microsecond(micros.parse().ok()?).ok()?;
    Some((c.applied_seq, audit_seq.parse().ok()?, at))
}

fn read_all(store: &Store, a: &Artifact) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut r = store.open_content(&a.digest)?;
    let mut buf = Vec::with_capacity(a.size.min(MAX_INDEXED_TEXT as u64 * 2) as usize);
    r.read_to_end(&mut buf)
        .map_err(|e| Error::io(format!("reading {}/{}", a.collection, a.name), e))?;
    Ok(buf)
}

/// What retrieval indexes of one document: its whole readable text, its
/// headings, and its parts — each section's own text, the text before the
/// first heading, or nothing when the document has no sections (the whole
/// is then its only part) — as (selector, heading, text).
#[derive(Default)]
struct Extracted {
    text: String,
    headings: Vec<String>,
    parts: Vec<(Option<String>, Option<String>, String)>,
}

/// Reads a document's text and parts from its stored bytes. Section
/// ranges index the stored document (for HTML: its markup), and each
/// part's text is the sectioner's readable text of that range.
fn extract(artifact_type: &str, bytes: &[u8]) -> Extracted {
    if bytes.is_empty() {
        return Extracted::default();
    }
    let adapter_text = || {
        truncate(
            kontextual_adapters::for_type(artifact_type).text(bytes),
            MAX_INDEXED_TEXT,
        )
    };
    let Some((sectioner, raw)) = kontextual_adapters::sections::for_content(artifact_type, bytes)
    else {
        let text = adapter_text();
        let whole = text.clone();
        return Extracted {
            parts: if whole.trim().is_empty() {
                Vec::new()
            } else {
                vec![(None, None, whole)]
            },
            text,
            headings: Vec::new(),
        };
    };
    // the sectioner reads what the adapter reads only if the bytes were
    // UTF-8 (else `raw` holds replacement characters where the adapter
    // decodes by the document's encoding) and nothing was cut (a cut
    // document's text is not the document's text, cut)
    let whole_document = raw.len() <= MAX_INDEXED_TEXT && raw.as_bytes() == bytes;
    let raw = truncate(raw, MAX_INDEXED_TEXT);
    // one pass for the sections and the whole text where the format can
    // (HTML: one parse fewer per page)
    let (sections, text) = match sectioner.sections_and_text(&raw) {
        (sections, Some(text)) if whole_document => (sections, truncate(text, MAX_INDEXED_TEXT)),
        (sections, _) => (sections, adapter_text()),
    };
    let mut parts = Vec::with_capacity(sections.len() + 1);
    let preamble_end = sections.first().map_or(raw.len(), |s| s.range.start);
    let preamble = sectioner.text_of(&raw, 0..preamble_end);
    if !preamble.trim().is_empty() {
        parts.push((None, None, preamble));
    }
    let headings = sections.iter().map(|s| s.heading.clone()).collect();
    for s in sections {
        let body = sectioner.text_of(&raw, s.own_range());
        parts.push((Some(s.selector), Some(s.heading), body));
    }
    Extracted {
        text,
        headings,
        parts,
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Where the index of a data directory lives.
pub(crate) fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

#[cfg(test)]
mod extract_tests {
    use super::{MAX_INDEXED_TEXT, extract, truncate};

    /// K5: the whole text indexed for a page is the HTML adapter's text of
    /// it, whether it comes from the sectioner's walk (UTF-8) or from the
    /// adapter (a byte-order mark, another encoding, a page cut to the
    /// indexed maximum).
    #[test]
    fn k5_one_walk_indexes_the_adapters_text() {
        let page = "<html><head><title>T</title></head><body><nav>menu</nav><main>\
                    <p>intro &amp; more</p><h2 id=a>Alpha</h2><p>one é</p>\
                    <h2>Beta</h2><pre>a  <  b</pre></main></body></html>";
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend(page.as_bytes());
        let latin1 =
            b"<html><body><h1>Caf\xe9</h1><p>cr\xe8me br\xfbl\xe9e</p></body></html>".to_vec();
        let mut long = String::from("<html><body><h1>Long</h1><p>");
        while long.len() <= MAX_INDEXED_TEXT {
            long.push_str("word &lt;tag&gt; ");
        }
        long.push_str("</p></body></html>");
        for bytes in [page.as_bytes().to_vec(), bom, latin1, long.into_bytes()] {
            let want = truncate(
                kontextual_adapters::for_type("html").text(&bytes),
                MAX_INDEXED_TEXT,
            );
            let got = extract("html", &bytes);
            assert_eq!(
                got.text,
                want,
                "{:?}",
                String::from_utf8_lossy(&bytes[..80.min(bytes.len())])
            );
            assert!(!got.parts.is_empty());
        }
        let latin1 = extract("html", b"<html><body><h1>Caf\xe9</h1></body></html>");
        assert!(latin1.text.contains("Café"), "{:?}", latin1.text);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kontextual_kernel::contract::{FeedFixture, check_feed_pass};
    use kontextual_kernel::{AllowAll, FeedPass, Kernel};
    use kontextual_model::{Actor, ArtifactName, CollectionName, CorrelationId, Namespace};
    use kontextual_store::sqlite::SqliteBackend;
    use kontextual_store::{
        ArtifactKey, Content, KnowledgeOp, Op, PutArtifact, Store, WriteBatch, WriteContext,
    };

    use super::{IndexPass, Projection};
    use crate::Knowledge;

    struct IndexFixture {
        _dir: tempfile::TempDir,
        knowledge: Knowledge,
        projection: Arc<Projection>,
    }

    fn put(name: &str, body: String) -> Op {
        let mut put = PutArtifact::new(
            CollectionName::new("docs").unwrap(),
            ArtifactName::new(name).unwrap(),
            Content::Bytes(body.into_bytes()),
        );
        put.artifact_type = Some("markdown".to_owned());
        Op::Knowledge(KnowledgeOp::PutArtifact(put))
    }

    impl FeedFixture for IndexFixture {
        fn store(&self) -> &Store {
            self.knowledge.store()
        }

        fn consumer(&self) -> &str {
            super::CONSUMER
        }

        /// A new document each round, the guide's sections changed, and
        /// from round 2 on the first round's document deleted.
        fn produce(&self, round: u32) {
            let mut ops = vec![
                Op::Knowledge(KnowledgeOp::CreateCollection {
                    name: CollectionName::new("docs").unwrap(),
                    description: String::new(),
                    if_absent: true,
                }),
                put(&format!("r{round}.md"), format!("# Round {round}\n\nwords")),
                put(
                    "guide.md",
                    format!("# Guide\n\nintro\n\n## Step {round}\n\ndo {round}\n"),
                ),
            ];
            if round == 2 {
                ops.push(Op::Knowledge(KnowledgeOp::DeleteArtifact {
                    key: ArtifactKey::Name {
                        collection: CollectionName::new("docs").unwrap(),
                        name: ArtifactName::new("r0.md").unwrap(),
                    },
                    expect: None,
                }));
            }
            self.store()
                .write(WriteBatch {
                    ctx: WriteContext {
                        namespace: Namespace::default(),
                        actor: Actor::local_admin(),
                        correlation_id: CorrelationId::new(),
                        run_id: None,
                    },
                    ops,
                })
                .unwrap();
        }

        fn open(&self) -> Box<dyn FeedPass + '_> {
            let progress = self.projection.lock();
            Box::new(IndexPass {
                from: progress.applied,
                projection: &self.projection,
                progress,
                reindexed: 0,
                since_commit: 0,
            })
        }

        /// Every committed document: artifact, section, revision.
        fn observe(&self) -> String {
            let index = self.projection.index();
            index.reload().unwrap();
            let hits = index
                .search(&kontextual_index::SearchRequest {
                    namespace: Namespace::default().as_str(),
                    query: "*",
                    syntax: true,
                    filters: Default::default(),
                    granularity: kontextual_index::Granularity::All,
                    offset: 0,
                    limit: 10_000,
                    snippet_chars: 0,
                })
                .unwrap();
            let mut docs: Vec<String> = hits
                .hits
                .iter()
                .map(|h| format!("{} {:?} r{}", h.name, h.selector, h.revision))
                .collect();
            docs.sort();
            docs.join("\n")
        }
    }

    /// O5: the search index, the feed consumer the knowledge domain
    /// registers, keeps the feed-consumer contract.
    #[test]
    fn o5_contract_search_index_feed_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(SqliteBackend::memory().unwrap());
        let knowledge = Knowledge::new(
            Arc::new(Kernel::new(store, Box::new(AllowAll))),
            Some(dir.path().to_owned()),
        );
        let projection = knowledge.projection().unwrap();
        let fixture = IndexFixture {
            _dir: dir,
            knowledge,
            projection,
        };
        check_feed_pass(&fixture);
        let seen = fixture.observe();
        assert!(seen.contains("guide.md Some(\"step-3\")"), "{seen}");
        assert!(
            !seen.contains("r0.md"),
            "a deleted document is gone: {seen}"
        );
    }
}
