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
    assert!(a.describe().starts_with("postgres://"));
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
            ..PgOptions::default()
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

/// X7: `sslmode=require` connects over TLS (rustls); with a CA file that
/// did not sign the server's certificate the connection is refused.
#[test]
fn x7_tls_is_used_when_the_url_asks_for_it() {
    let Some(db) = TestDb::new() else { return };
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}sslmode=require", db.url);
    let s = match PgStore::open(&url, &create()) {
        Ok(s) => s,
        Err(e)
            if e.to_string().contains("does not support TLS") || e.to_string().contains("ssl") =>
        {
            eprintln!("SKIPPED: the test server does not offer TLS ({e})");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut c = s.pool().get().expect("connection");
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl, "the connection is encrypted");
    drop(c);
    // a CA that did not sign the server certificate: refused (checked in a
    // child process, since the CA comes from the environment)
    let ca = std::env::temp_dir().join(format!("kx-wrong-ca-{}.pem", std::process::id()));
    let wrong = std::fs::read_dir("/etc/ssl/certs").ok().and_then(|mut d| {
        d.find_map(|e| {
            e.ok()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pem"))
                .map(|e| e.path())
        })
    });
    let Some(wrong) = wrong else { return };
    std::fs::copy(&wrong, &ca).expect("copy a CA");
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "tls_child", "--nocapture", "--include-ignored"])
        .env("KONTEXTUAL_DATABASE_CA", &ca)
        .env("KX_TLS_CHILD_URL", &url)
        .output()
        .expect("child");
    let _ = std::fs::remove_file(&ca);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Run by `x7_tls_is_used_when_the_url_asks_for_it` with a wrong CA.
#[test]
#[ignore = "run by x7_tls_is_used_when_the_url_asks_for_it"]
fn tls_child() {
    let Ok(url) = std::env::var("KX_TLS_CHILD_URL") else {
        return;
    };
    let e = PgStore::open(&url, &PgOptions::default())
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("certificate") || text.contains("TLS") || text.contains("tls"),
        "{text}"
    );
}

/// X7: a write waits for another process's writer lock at most its lock
/// timeout, then fails with `Locked` (as SQLite's busy timeout does).
#[test]
fn x7_writes_wait_for_the_writer_lock_at_most_the_timeout() {
    use kontextual_store::{Backend, Op, WriteBatch, WriteContext};
    let Some(db) = TestDb::new() else { return };
    let backend = kontextual_store_postgres::PostgresBackend::open(
        &db.url,
        &PgOptions {
            create: true,
            lock_timeout: std::time::Duration::from_millis(300),
            ..PgOptions::default()
        },
    )
    .expect("open");
    let mut holder = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    let mut tx = holder.transaction().expect("tx");
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&0x4B4E_5458_0000_0002_i64],
    )
    .expect("take the writer lock");
    let ctx = WriteContext {
        namespace: Default::default(),
        actor: kontextual_model::Actor::local_admin(),
        correlation_id: kontextual_model::CorrelationId::new(),
        run_id: None,
    };
    let e = backend
        .write(WriteBatch {
            ctx: ctx.clone(),
            ops: vec![Op::CreateCollection {
                name: "c".parse().expect("name"),
                description: String::new(),
                if_absent: false,
            }],
        })
        .expect_err("locked");
    assert!(matches!(e, StoreError::Locked { waited_ms: 300 }), "{e}");
    tx.rollback().expect("release");
    backend
        .write(WriteBatch {
            ctx,
            ops: vec![Op::CreateCollection {
                name: "c".parse().expect("name"),
                description: String::new(),
                if_absent: false,
            }],
        })
        .expect("after the lock is released");
}
