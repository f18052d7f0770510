//! X7 (in progress): the PostgreSQL schema against a real server. Needs
//! `KONTEXTUAL_TEST_DATABASE_URL` (CI sets it; see README); each test makes
//! its own database and drops it.

use std::sync::Arc;

use kontextual_store::StoreError;
use kontextual_store_postgres::{PgOptions, PgStore, schema};

/// A fresh database on the test server, dropped at the end.
struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    fn new() -> Option<TestDb> {
        let Ok(admin) = std::env::var("KONTEXTUAL_TEST_DATABASE_URL") else {
            eprintln!(
                "SKIPPED: KONTEXTUAL_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1/postgres)"
            );
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
        Some(TestDb { admin, name, url })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn create() -> PgOptions {
    PgOptions {
        create: true,
        ..PgOptions::default()
    }
}

#[test]
fn x7_init_creates_schema_and_identity_once() {
    let Some(db) = TestDb::new() else { return };
    // not initialised yet: a clear error
    let e = PgStore::open(&db.url, &PgOptions::default())
        .err()
        .expect("refused");
    assert!(matches!(e, StoreError::NotInitialized { .. }), "{e}");
    let a = PgStore::open(&db.url, &create()).expect("init");
    let b = PgStore::open(&db.url, &create()).expect("init again");
    assert_eq!(a.store_id(), b.store_id(), "init twice keeps the identity");
    assert!(a.describe().starts_with("postgres:postgres://"));
    let c = PgStore::open(&db.url, &PgOptions::default()).expect("open");
    assert_eq!(c.store_id(), a.store_id());
}

/// Processes on several hosts may run `init` at once: the migration lock
/// makes them wait for each other, and all see one identity.
#[test]
fn x7_concurrent_inits_do_not_race() {
    let Some(db) = TestDb::new() else { return };
    let url = Arc::new(db.url.clone());
    let ids: Vec<String> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                PgStore::open(&url, &create()).map(|s| s.store_id().to_owned())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("thread").expect("init"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

#[test]
fn x7_diverged_or_newer_schemas_are_refused() {
    let Some(db) = TestDb::new() else { return };
    let s = PgStore::open(&db.url, &create()).expect("init");
    let mut c = s.pool().get().expect("connection");
    c.execute(
        "UPDATE schema_migrations SET checksum = 'x' WHERE version = 1",
        &[],
    )
    .expect("tamper");
    let e = schema::inspect(&mut *c).expect_err("diverged");
    assert!(matches!(e, StoreError::Corrupted(_)), "{e}");
    c.execute(
        "INSERT INTO schema_migrations VALUES (99, 'future', 'x', 0)",
        &[],
    )
    .expect("future");
    drop(c);
    let e = PgStore::open(&db.url, &PgOptions::default())
        .err()
        .expect("newer");
    assert!(
        matches!(e, StoreError::SchemaTooNew { found: 99, .. }),
        "{e}"
    );
}

#[test]
fn x7_the_pool_bounds_connections_and_waits() {
    let Some(db) = TestDb::new() else { return };
    let s = PgStore::open(
        &db.url,
        &PgOptions {
            create: true,
            pool_size: 2,
            checkout_timeout: std::time::Duration::from_millis(200),
        },
    )
    .expect("init");
    let a = s.pool().get().expect("first");
    let _b = s.pool().get().expect("second");
    let e = s.pool().get().err().expect("third waits, then gives up");
    assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    drop(a);
    let mut c = s.pool().get().expect("returned connection");
    let one: i32 = c.query_one("SELECT 1", &[]).expect("query").get(0);
    assert_eq!(one, 1);
}
