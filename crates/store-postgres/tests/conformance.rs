//! The backend conformance suite against PostgreSQL (X7; issue 8 in
//! progress: the cases of the operations built so far). Needs
//! `KONTEXTUAL_TEST_DATABASE_URL`; each test gets a fresh database.

use kontextual_store::Store;
use kontextual_store::testsuite::Harness;
use kontextual_store_postgres::{PgOptions, PostgresBackend};

struct PgHarness {
    admin: String,
    name: String,
    url: String,
    store: Option<Store>,
}

impl PgHarness {
    fn new() -> Option<PgHarness> {
        let Ok(admin) = std::env::var("KONTEXTUAL_TEST_DATABASE_URL") else {
            eprintln!("SKIPPED: KONTEXTUAL_TEST_DATABASE_URL is not set");
            assert!(
                std::env::var_os("CI_REQUIRE_POSTGRES").is_none(),
                "CI requires the PostgreSQL tests"
            );
            return None;
        };
        let name = format!("kx_test_{}", uuid::Uuid::now_v7().simple());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        let store = Store::new(
            PostgresBackend::open(
                &url,
                &PgOptions {
                    create: true,
                    ..PgOptions::default()
                },
            )
            .expect("open"),
        );
        Some(PgHarness {
            admin,
            name,
            url,
            store: Some(store),
        })
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        self.store = None;
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl Harness for PgHarness {
    fn store(&mut self) -> Store {
        self.store.clone().expect("open store")
    }
    fn reopen(&mut self) -> Store {
        self.store = None;
        let s =
            Store::new(PostgresBackend::open(&self.url, &PgOptions::default()).expect("reopen"));
        self.store = Some(s.clone());
        s
    }
    fn persistent(&self) -> bool {
        true
    }
}

macro_rules! pg_cases {
    ($($case:ident),+ $(,)?) => {
        $(
            #[test]
            #[cfg_attr(not(postgres_tests), ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run")]
            fn $case() {
                if let Some(mut h) = PgHarness::new() {
                    kontextual_store::testsuite::$case(&mut h);
                }
            }
        )+
    };
}

pg_cases!(
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
    outbox_retention_follows_consumer_cursors,
    k2_failing_batches_do_not_disturb_concurrent_ones,
    k6_runs_record_steps_outputs_and_final_status,
    k7_context_packages_are_versioned_by_digest,
    k8_feed_position_tracks_the_outbox,
    x1_api_keys_are_hashed_revocable_and_touched,
    x4_idempotency_keys_reserve_replay_and_expire,
    x2_grants_are_unique_listed_and_audited,
    k4_legal_holds_block_delete_and_purge,
    o2_artifacts_are_quarantined_and_released,
    o1_jobs_are_claimed_once_in_order_and_completed_once,
    o2_expired_leases_are_rescued_and_old_workers_fenced,
    o2_failing_jobs_retry_then_die_without_blocking_others,
    o2_unique_jobs_are_not_queued_twice,
    o2_recovery_actions_are_idempotent_and_audited,
    k6_job_attempts_and_runs_link_both_ways,
    k4_check_passes_on_a_healthy_store,
    k9_import_preserves_ids_history_and_links,
    k9_import_conflicts_and_bad_input_leave_nothing,
);

/// K2: random operation sequences with reopen agree with the oracle.
#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn k2_model_test_against_oracle() {
    if PgHarness::new().is_none() {
        return;
    }
    kontextual_store::testsuite::model_test(
        &|| Box::new(PgHarness::new().expect("database URL")),
        12,
    );
}

/// X7: PostgreSQL runs the whole suite — every case the SQLite backends run
/// (`conformance_suite!`) is in the list above.
#[test]
fn x7_every_conformance_case_runs_against_postgres() {
    fn cases(text: &str, start: &str) -> std::collections::BTreeSet<String> {
        let from = text.find(start).expect("the case list");
        let body = &text[from + start.len()..];
        let body = &body[..body.find(");").expect("end of the list")];
        body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.contains('_') && !w.starts_with("make"))
            .map(str::to_owned)
            .collect()
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = std::fs::read_to_string(root.join("../store/src/testsuite/mod.rs")).expect("suite");
    let here = std::fs::read_to_string(root.join("tests/conformance.rs")).expect("this file");
    let sqlite = cases(&suite, "$crate::conformance_suite!(@cases $make;");
    let pg = cases(&here, "pg_cases!(");
    let missing: Vec<_> = sqlite.difference(&pg).collect();
    assert!(
        missing.is_empty(),
        "cases not run against PostgreSQL: {missing:?}"
    );
    assert!(sqlite.len() >= 39, "{sqlite:?}");
}

/// X3: every kind of row that carries history or authority, edited with SQL
/// behind the audit chain's back, is named by `verify` — the same table of
/// edits as on SQLite (`kontextual_store::testsuite::TAMPERS`).
#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x3_verify_names_every_row_edited_behind_the_audit_chain() {
    for t in kontextual_store::testsuite::TAMPERS {
        let Some(mut h) = PgHarness::new() else {
            return;
        };
        kontextual_store::testsuite::seed_authority(&h.store());
        let mut c = postgres::Client::connect(&h.url, postgres::NoTls).expect("connect");
        c.batch_execute(t.sql).expect("tamper");
        drop(c);
        let report = h.reopen().check(None).expect("check");
        t.assert_named(&report.problems);
    }
}
