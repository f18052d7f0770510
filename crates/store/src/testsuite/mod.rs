//! The backend conformance suite: one set of behaviour contracts, run
//! unchanged against every backend (`conformance_suite!`), plus a proptest
//! model test comparing random operation sequences with an in-memory oracle.
//!
//! A backend joins by providing a [`Harness`] and invoking the macro.

mod access;
mod cases;
mod import;
mod jobs;
mod model;
mod pg_database;
mod tamper;
mod webhooks;

pub use access::*;
pub use cases::*;
pub use import::*;
pub use jobs::*;
pub use model::model_test;
pub use pg_database::PgTestDatabase;
pub use tamper::{TAMPERS, Tamper, seed_authority};
pub use webhooks::*;

use std::path::PathBuf;

use kontextual_model::{Actor, ArtifactName, CollectionName, CorrelationId, Namespace};

use crate::sqlite::{OpenMode, OpenOptions, SqliteBackend};
use crate::{Store, WriteContext};

/// Gives the suite a store and a way to close and reopen it.
pub trait Harness {
    fn store(&mut self) -> Store;
    /// Drops every handle and opens the same store again (a no-op where the
    /// store cannot outlive its handle, e.g. in memory).
    fn reopen(&mut self) -> Store;
    /// Whether `reopen` really reopens.
    fn persistent(&self) -> bool;
}

/// SQLite in a temporary data directory.
pub struct SqliteFileHarness {
    dir: tempfile::TempDir,
    store: Option<Store>,
}

impl SqliteFileHarness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(
            SqliteBackend::open_dir(
                &dir.path().join("data"),
                &OpenOptions::new(OpenMode::Create),
            )
            .expect("create store"),
        );
        SqliteFileHarness {
            dir,
            store: Some(store),
        }
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Default for SqliteFileHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness for SqliteFileHarness {
    fn store(&mut self) -> Store {
        self.store.clone().expect("open store")
    }
    fn reopen(&mut self) -> Store {
        self.store = None;
        let s = Store::new(
            SqliteBackend::open_dir(&self.data_dir(), &OpenOptions::new(OpenMode::ReadWrite))
                .expect("reopen store"),
        );
        self.store = Some(s.clone());
        s
    }
    fn persistent(&self) -> bool {
        true
    }
}

/// SQLite in memory.
pub struct SqliteMemoryHarness(Store);

impl SqliteMemoryHarness {
    pub fn new() -> Self {
        SqliteMemoryHarness(Store::new(SqliteBackend::memory().expect("memory store")))
    }
}

impl Default for SqliteMemoryHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness for SqliteMemoryHarness {
    fn store(&mut self) -> Store {
        self.0.clone()
    }
    fn reopen(&mut self) -> Store {
        self.0.clone()
    }
    fn persistent(&self) -> bool {
        false
    }
}

pub fn ctx(ns: &str) -> WriteContext {
    WriteContext {
        namespace: Namespace::new(ns).expect("namespace"),
        actor: Actor::local_admin(),
        correlation_id: CorrelationId::new(),
        run_id: None,
    }
}

pub fn coll(s: &str) -> CollectionName {
    CollectionName::new(s).expect("collection name")
}

pub fn name(s: &str) -> ArtifactName {
    ArtifactName::new(s).expect("artifact name")
}

/// Instantiates every conformance case as a `#[test]` for one engine: the
/// one case list, written once. `$make` is an expression producing
/// `Option<impl Harness>` — `None` when the engine is not available here
/// (then the case returns at once; give such an engine an `ignore`
/// attribute with the reason, after the expression, so the test summary
/// shows it skipped).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr $(, $(#[$attr:meta])+)?) => {
        $crate::conformance_suite!(@cases [$($(#[$attr])+)?] $make;
            k2_put_and_lookup_by_id_name_and_digest,
            k2_update_creates_revision_with_change_record,
            k2_unchanged_put_writes_nothing,
            k2_stale_expected_revision_is_a_conflict,
            k2_duplicate_names_and_missing_collections_are_typed_errors,
            k2_delete_tombstones_hides_and_cascades_relations,
            k2_put_after_delete_restores_same_id,
            k2_relations_create_update_delete,
            k2_dangling_references_are_refused,
            k2_derived_artifacts_record_existing_inputs,
            k2_batch_writes_are_atomic,
            k2_failed_content_read_leaves_no_trace,
            k2_keyset_pagination_is_deterministic,
            k2_metadata_is_preserved_exactly,
            x9_namespaces_isolate_names_and_ids,
            k4_blobs_are_deduplicated_and_streamed,
            k4_purge_erases_content_and_collects_unneeded_blobs,
            x3_every_mutation_is_audited_with_an_event,
            x3_concurrent_writers_keep_one_chain_and_outbox_order,
            k3_data_survives_reopen,
            k4_check_passes_on_a_healthy_store,
            outbox_retention_follows_consumer_cursors,
            k2_failing_batches_do_not_disturb_concurrent_ones,
            k6_runs_record_steps_outputs_and_final_status,
            k7_context_packages_are_versioned_by_digest,
            k8_feed_position_tracks_the_outbox,
            x1_api_keys_are_hashed_revocable_and_touched,
            x4_idempotency_keys_reserve_replay_and_expire,
            x2_grants_are_unique_listed_and_audited,
            k4_legal_holds_block_delete_and_purge,
            o1_jobs_are_claimed_once_in_order_and_completed_once,
            o1_a_batch_of_successes_finishes_as_one_by_one,
            o2_expired_leases_are_rescued_and_old_workers_fenced,
            o2_failing_jobs_retry_then_die_without_blocking_others,
            o2_unique_jobs_are_not_queued_twice,
            o2_unique_key_conflicts_cancel_or_refuse_without_failing_the_batch,
            o2_recovery_actions_are_idempotent_and_audited,
            k6_job_attempts_and_runs_link_both_ways,
            x3_bookkeeping_ops_are_never_audited,
            o2_artifacts_are_quarantined_and_released,
            k9_import_preserves_ids_history_and_links,
            k9_import_conflicts_and_bad_input_leave_nothing,
            x1_access_log_is_filtered_paged_and_pruned,
            x1_key_use_moves_forward_and_listings_keep_byte_order,
            o5_webhooks_are_created_updated_rotated_and_deleted,
            o5_deliveries_are_created_once_with_their_job,
            o5_deliveries_are_paged_by_event,
            o5_attempts_update_the_delivery_and_the_failure_streak,
            o5_resend_requeues_and_delete_cancels,
            o5_a_batch_of_attempts_records_as_one_by_one,
            o5_batch_jobs_group_fresh_deliveries_and_hand_on,
            o5_concurrent_recorders_keep_every_attempt,
            o5_finished_deliveries_are_pruned,
            o5_webhooks_are_scoped_to_their_namespace,
            o5_secrets_never_reach_audit_records_or_events,
        );
    };
    (@cases $attrs:tt $make:expr; $($case:ident),+ $(,)?) => {
        $( $crate::conformance_suite!(@one $attrs $make; $case); )+
    };
    (@one [$(#[$attr:meta])*] $make:expr; $case:ident) => {
        #[test]
        $(#[$attr])*
        fn $case() {
            if let Some(mut h) = $make {
                $crate::testsuite::$case(&mut h);
            }
        }
    };
}
