//! The knowledge domain: artifacts, collections, relations, sections,
//! ingest, search and its projection (a registered feed consumer), context
//! packages, export and import, re-index and repair (registered job
//! handlers), media types and diffs. Each operation resolves references,
//! asks the kernel's policy, and writes through the kernel, which stamps
//! the caller; the store audits it in the same transaction.
//!
//! Boundary: depends on the kernel, the store, the model and its engines
//! (index, adapters, package); never on a surface, the composition root
//! or another domain. No database driver.

mod artifacts;
mod context;
mod diff;
mod error;
mod events;
mod export;
mod holds;
mod index_admin;
mod ingest;
mod knowledge_jobs;
mod media;
mod projection;
mod recovery;
mod relations;
mod search;
mod sections;
mod telemetry;

use std::path::PathBuf;
use std::sync::Arc;

use kontextual_kernel::{
    Caller, DomainError, EnqueueOptions, Enqueued, Error, ErrorKind, FeedConsumer, FeedFinish,
    FeedPass, JobContext, JobFailure, JobHandler, JobHost, JobQueue, Kernel, Permission, Policy,
    Resource, Result, acknowledge, catch_up, this_process,
};
use kontextual_model::{ChainHead, Collection, CollectionName};
use kontextual_store::{CheckReport, KnowledgeOp, Op, Page, PageRequest, Store};

pub use artifacts::{ContentSource, Diff, DiffContent, PutOutcome, PutRequest};
pub use context::{
    ContextRequest, ContextVerification, ContextView, Encoding, Item as ContextItem, Manifest,
    Reason, VerifyProblem,
};
pub use error::KnowledgeError;
pub use export::{
    CheckedPackage, ExportReport, ExportScope, ExportTarget, ImportReport, Progress, Silent,
    check_package,
};
pub use index_admin::{IndexStatus, SearchIndexFollower, Unextractable};
pub use ingest::{
    FileFailure, IndexedReport, IngestProgress, IngestReport, IngestRequest, NoProgress,
};
pub use knowledge_jobs::{KnowledgeHost, KnowledgeJobs, handlers as job_handlers};
pub use projection::{CatchUp, FOLLOWER_WAIT};
pub use recovery::{ReindexReport, RepairReport};
pub use search::{
    Freshness, MAX_EXPAND_DEPTH, MAX_SEARCH_LIMIT, Related, SearchFilters, SearchHit,
    SearchRequest, SearchResponse, artifact_ref,
};
pub use sections::{SectionEntry, SectionView};
pub use telemetry::MetricsSnapshot;

/// The knowledge domain over the kernel: artifacts, collections,
/// relations, sections, ingest, search and its index, context packages,
/// export and import, re-index and repair. Kernel operations are reached
/// through it (`Deref`).
pub struct Knowledge {
    kernel: Arc<Kernel>,
    /// Where the data directory is (the search index lives in it); `None`
    /// for stores without one (in memory).
    data_dir: Option<PathBuf>,
    /// Opened on first use: most commands never need the index.
    projection: std::sync::Mutex<Option<Arc<projection::Projection>>>,
    /// Whether a follower refreshes the index (a server): reads then never
    /// catch up themselves.
    background_refresh: std::sync::atomic::AtomicBool,
}

impl std::ops::Deref for Knowledge {
    type Target = Kernel;

    fn deref(&self) -> &Kernel {
        &self.kernel
    }
}

impl Knowledge {
    /// The domain over a kernel; its search index lives in `data_dir`
    /// (none: in memory, opened on first use).
    pub fn new(kernel: Arc<Kernel>, data_dir: Option<PathBuf>) -> Self {
        Knowledge {
            kernel,
            data_dir,
            projection: std::sync::Mutex::new(None),
            background_refresh: Default::default(),
        }
    }

    /// The domain over its own kernel on `store` (tests, embedding).
    pub fn with_store(store: Store, policy: Box<dyn Policy>) -> Self {
        Knowledge::new(Arc::new(Kernel::new(store, policy)), None)
    }

    /// The kernel this domain stands on.
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    // ---- collections ----

    pub fn collection_create(
        &self,
        caller: &Caller,
        name: &str,
        description: &str,
    ) -> Result<Collection> {
        let name = CollectionName::new(name)?;
        self.authorize(
            caller,
            Permission::Write,
            &Resource::Namespace(&format!("the namespace (to create collection {name})")),
        )?;
        self.write(
            caller,
            vec![Op::Knowledge(KnowledgeOp::CreateCollection {
                name: name.clone(),
                description: description.to_owned(),
                if_absent: false,
            })],
        )?;
        self.collection_show(caller, name.as_str())
    }

    pub fn collection_show(&self, caller: &Caller, name: &str) -> Result<Collection> {
        let name = CollectionName::new(name)?;
        self.authorize(
            caller,
            Permission::Read,
            &Resource::Collection(name.as_str()),
        )?;
        let c = self
            .store()
            .knowledge()
            .collection(&caller.namespace, &name)?
            .ok_or_else(|| Error::NotFound(format!("collection {name}")))?;
        self.counted_for(caller, c)
    }

    /// A collection's artifact count as the caller may see it: what it may
    /// not read is not counted either (X2).
    fn counted_for(&self, caller: &Caller, mut c: Collection) -> Result<Collection> {
        let (max_classification, exclude_quarantined) =
            self.listing_visibility(caller, &Resource::Collection(c.name.as_str()));
        if max_classification.is_some() || exclude_quarantined {
            c.artifact_count = self.store().knowledge().count_artifacts(
                &caller.namespace,
                &kontextual_store::ArtifactQuery {
                    collection: Some(c.name.clone()),
                    max_classification,
                    exclude_quarantined,
                    ..Default::default()
                },
            )?;
        }
        Ok(c)
    }

    pub fn collection_list(&self, caller: &Caller, page: &PageRequest) -> Result<Page<Collection>> {
        // everyone sees the collections they may read, and no others
        let mut page = self
            .store()
            .knowledge()
            .collections(&caller.namespace, page)?;
        page.items.retain(|c| {
            self.can(
                caller,
                Permission::Read,
                &Resource::Collection(c.name.as_str()),
            )
        });
        page.items = std::mem::take(&mut page.items)
            .into_iter()
            .map(|c| self.counted_for(caller, c))
            .collect::<Result<_>>()?;
        Ok(page)
    }

    // ---- integrity ----

    pub fn verify(&self, caller: &Caller, expect: Option<ChainHead>) -> Result<CheckReport> {
        self.authorize(caller, Permission::Admin, &Resource::Namespace("store"))?;
        let mut report = self.store().check(expect)?;
        report.problems.extend(self.index_problems());
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontextual_kernel::AllowAll;
    use kontextual_model::{Namespace, Outcome};
    use kontextual_store::sqlite::SqliteBackend;

    struct ReadOnly;
    impl Policy for ReadOnly {
        fn allows(&self, _: &Caller, p: Permission, _: &Resource<'_>) -> bool {
            p == Permission::Read
        }
    }

    /// X2/X3: a denied write changes nothing and is itself audited.
    #[test]
    fn x3_denials_are_audited_and_change_nothing() {
        let store = Store::new(SqliteBackend::memory().unwrap());
        let admin = Knowledge::with_store(store.clone(), Box::new(AllowAll));
        let caller = Caller::new("agent:ci".parse().unwrap(), Namespace::default());
        admin.collection_create(&caller, "handbook", "").unwrap();
        let limited = Knowledge::with_store(store.clone(), Box::new(ReadOnly));
        let e = limited.collection_create(&caller, "other", "").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Denied);
        assert!(
            e.to_string()
                .contains("agent:ci may not write the namespace (to create collection other)"),
            "{e}"
        );
        assert!(limited.collection_show(&caller, "other").is_err());
        let last = store.audit().records(0, 100).unwrap().pop().unwrap();
        assert_eq!(last.draft.outcome, Outcome::Denied);
        assert_eq!(last.draft.action, "policy.deny.write");
        assert_eq!(last.actor.to_string(), "agent:ci");
        assert_eq!(last.correlation_id, caller.correlation_id);
        assert_eq!(store.status().unwrap().collections, 1);
    }
}
