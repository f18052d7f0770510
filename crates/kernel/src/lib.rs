//! The kernel: what every domain stands on. Who is calling ([`Caller`]),
//! what they may do ([`Policy`]), the one error table, runs, the job queue
//! and its worker with a registry of job handlers, the feed-consumer
//! runtime, API keys, grants and clearances, idempotency, the read access
//! log and the audit chain's read side.
//!
//! Invariant: every write of a domain goes through [`Kernel::write`], which
//! stamps it with the caller's actor, namespace and correlation id; the
//! store audits it in the same transaction.
//! Boundary: the kernel knows no domain (no artifacts' engines, no search
//! index), no surface (CLI, HTTP) and no database driver. Domains plug in
//! by registering job handlers ([`JobHandler`]) and feed consumers
//! ([`FeedConsumer`]) with the host the composition root builds.

mod access;
mod audit;
#[cfg(feature = "contract")]
pub mod contract;
mod error;
mod error_codes;
mod events;
mod feed;
mod grants;
mod job_registry;
mod jobs;
mod keys;
mod policy;
mod runs;
mod throttle;
mod worker;

use kontextual_model::{Actor, CorrelationId, Namespace};
use kontextual_store::{Op, Store, WriteBatch, WriteContext};

pub use audit::{AuditFilter, AuditVerification};
pub use error::{DomainError, Error, ErrorKind, Result, is_storage_full};
pub use error_codes::ErrorCode;
pub use events::{
    DEFAULT_EVENTS_PAGE, EVENTS_SCAN_BUDGET, EventPage, EventQuery, EventVisibility,
    MAX_EVENTS_PAGE, event_collection,
};
pub use feed::{
    FeedConsumer, FeedConsumers, FeedPass, Finish as FeedFinish, acknowledge, catch_up,
};
pub use grants::GrantOn;
pub use job_registry::{
    JobContext, JobFailure, JobHandler, JobHost, JobRegistry, NoopJob, NoopPayload, Prepared,
    parse_payload,
};
pub use jobs::{EnqueueOptions, Enqueued, JobQueue, JobView, MAX_ENQUEUE_BATCH};
pub use keys::{AUTH_CACHE_TTL, NewKey};
pub use policy::{AccessPolicy, AllowAll, Permission, Policy, Resource};
pub use runs::this_process;
pub use throttle::{LogThrottle, STORE_DOWN_EVERY, store_unavailable};
pub use worker::{WorkerConfig, WorkerSummary};

/// Who is calling: actor, namespace and the correlation id of this request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub actor: Actor,
    pub namespace: Namespace,
    pub correlation_id: CorrelationId,
    /// What the caller's API key allows; `None` for the local administrator
    /// (the CLI on its own data directory).
    pub scopes: Option<Vec<kontextual_model::Scope>>,
    /// The key the caller authenticated with, if any.
    pub key_id: Option<String>,
    /// The actor's grants, loaded when the key was checked.
    pub grants: Option<std::sync::Arc<Vec<kontextual_model::Grant>>>,
    /// The highest classification the caller may read; `None`: any.
    pub clearance: Option<kontextual_model::Classification>,
}

impl Caller {
    pub fn new(actor: Actor, namespace: Namespace) -> Self {
        Caller {
            actor,
            namespace,
            correlation_id: CorrelationId::new(),
            scopes: None,
            key_id: None,
            grants: None,
            clearance: None,
        }
    }

    /// The audit context of this caller's writes.
    pub fn write_ctx(&self) -> WriteContext {
        WriteContext {
            namespace: self.namespace.clone(),
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            run_id: None,
        }
    }
}

/// The kernel over one open store: policy, credentials, the access log and
/// the job queue's wake-up signal. Domains hold it and write through it.
pub struct Kernel {
    store: Store,
    policy: Box<dyn Policy>,
    /// API key uses not written yet (coalesced).
    touches: keys::TouchState,
    /// Reads not written to the access log yet.
    access: access::AccessState,
    /// Recently verified API keys.
    auth_cache: keys::AuthCacheState,
    /// Wakes idle workers of this process when it enqueues a job.
    job_signal: std::sync::Arc<worker::JobSignal>,
    /// Wakes this process's feed followers when it writes (see
    /// [`Kernel::wait_for_writes`]).
    write_signal: worker::JobSignal,
}

impl Kernel {
    /// The kernel over an open store with a given policy.
    pub fn new(store: Store, policy: Box<dyn Policy>) -> Self {
        Kernel {
            store,
            policy,
            touches: Default::default(),
            access: Default::default(),
            auth_cache: Default::default(),
            job_signal: Default::default(),
            write_signal: Default::default(),
        }
    }

    /// How many writes this kernel has made so far (a generation to pass
    /// to [`Kernel::wait_for_writes`]).
    pub fn writes_seen(&self) -> u64 {
        self.write_signal.generation()
    }

    /// Waits until this kernel writes again after generation `seen`, or
    /// `timeout` passes: a follower that must react quickly to what this
    /// process writes (the webhook dispatcher) waits here instead of
    /// sleeping a whole interval. Writes by other processes arrive at the
    /// timeout.
    pub fn wait_for_writes(&self, seen: u64, timeout: std::time::Duration) {
        self.write_signal.wait(seen, timeout);
    }

    /// The store, for the domains built on this kernel. Surfaces never
    /// reach it: they call a domain or the kernel.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Wakes this process's idle workers: a domain wrote jobs itself (as
    /// part of its own ops, e.g. webhook deliveries) rather than through
    /// the queue's enqueue.
    pub fn jobs_enqueued(&self) {
        self.job_signal.notify();
    }

    /// Writes one op and returns what `pick` finds in its changes.
    pub fn write_one<T>(
        &self,
        caller: &Caller,
        op: Op,
        pick: impl Fn(kontextual_model::Change) -> Option<T>,
    ) -> Result<T> {
        self.write(caller, vec![op])?
            .into_iter()
            .find_map(pick)
            .ok_or_else(|| Error::internal("the store reported no change of the expected kind"))
    }

    /// Writes ops in one transaction, as `caller` (audited by the store).
    ///
    /// A write refused by a legal hold is a denial (X2): it is audited as
    /// `policy.deny.write` with the hold as its reason, which the outbox
    /// announces as `policy.denied`.
    pub fn write(&self, caller: &Caller, ops: Vec<Op>) -> Result<Vec<kontextual_model::Change>> {
        match self.store.write(WriteBatch {
            ctx: caller.write_ctx(),
            ops,
        }) {
            Ok(changes) => {
                self.write_signal.notify();
                Ok(changes)
            }
            Err(kontextual_store::StoreError::Held { what, reason }) => {
                self.audit_hold_denial(caller, &what);
                Err(kontextual_store::StoreError::Held { what, reason }.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
