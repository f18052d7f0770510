//! The conformance suite against PostgreSQL (X7): the same case list as
//! SQLite's (`conformance_suite!`), plus the model test. Needs
//! `KONTEXTUAL_TEST_DATABASE_URL`; each test gets a fresh database.

use kontextual_store::Store;
use kontextual_store::postgres::{PgOptions, PostgresBackend};
use kontextual_store::testsuite::{Harness, PgTestDatabase};

struct PgHarness {
    store: Option<Store>,
    /// Dropped after the store (fields drop after `Drop::drop`).
    db: PgTestDatabase,
}

impl PgHarness {
    fn new() -> Option<PgHarness> {
        let db = PgTestDatabase::create()?;
        let store = Store::new(
            PostgresBackend::open(
                &db.url,
                &PgOptions {
                    create: true,
                    ..PgOptions::default()
                },
            )
            .expect("open"),
        );
        Some(PgHarness {
            store: Some(store),
            db,
        })
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        // close the store's connections before the database is dropped
        self.store = None;
    }
}

impl Harness for PgHarness {
    fn store(&mut self) -> Store {
        self.store.clone().expect("open store")
    }
    fn reopen(&mut self) -> Store {
        self.store = None;
        let s =
            Store::new(PostgresBackend::open(&self.db.url, &PgOptions::default()).expect("reopen"));
        self.store = Some(s.clone());
        s
    }
    fn persistent(&self) -> bool {
        true
    }
}

kontextual_store::conformance_suite!(
    PgHarness::new(),
    #[cfg_attr(
        not(postgres_tests),
        ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
    )]
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
        let mut c = postgres::Client::connect(&h.db.url, postgres::NoTls).expect("connect");
        c.batch_execute(t.sql).expect("tamper");
        drop(c);
        let report = h.reopen().check(None).expect("check");
        t.assert_named(&report.problems);
    }
}
