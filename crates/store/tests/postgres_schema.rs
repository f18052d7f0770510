//! X7: the PostgreSQL schema against a real server. Needs
//! `KONTEXTUAL_TEST_DATABASE_URL` (CI sets it; see README); each test makes
//! its own database and drops it.

use std::sync::Arc;

use kontextual_store::StoreError;
use kontextual_store::postgres::{PgOptions, PgStore, schema};
use kontextual_store::testsuite::PgTestDatabase;

fn create() -> PgOptions {
    PgOptions {
        create: true,
        ..PgOptions::default()
    }
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_init_creates_schema_and_identity_once() {
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
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
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_concurrent_inits_do_not_race() {
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
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
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_diverged_or_newer_schemas_are_refused() {
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
    let s = PgStore::open(&db.url, &create()).expect("init");
    let mut c = s.pool().get().expect("connection");
    c.execute(
        "UPDATE schema_migrations SET checksum = 'x' WHERE version = 1",
        &[],
    )
    .expect("tamper");
    let e = schema::inspect(&mut c).expect_err("diverged");
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
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_the_pool_bounds_connections_and_waits() {
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
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
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_tls_is_used_when_the_url_asks_for_it() {
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
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
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_writes_wait_for_the_writer_lock_at_most_the_timeout() {
    use kontextual_store::{KnowledgeOp, Op, WriteBatch, WriteContext};
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
    let backend = kontextual_store::Store::new(
        kontextual_store::postgres::PostgresBackend::open(
            &db.url,
            &PgOptions {
                create: true,
                lock_timeout: std::time::Duration::from_millis(300),
                ..PgOptions::default()
            },
        )
        .expect("open"),
    );
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
            ops: vec![Op::Knowledge(KnowledgeOp::CreateCollection {
                name: "c".parse().expect("name"),
                description: String::new(),
                if_absent: false,
            })],
        })
        .expect_err("locked");
    assert!(matches!(e, StoreError::Locked { waited_ms: 300 }), "{e}");
    tx.rollback().expect("release");
    backend
        .write(WriteBatch {
            ctx,
            ops: vec![Op::Knowledge(KnowledgeOp::CreateCollection {
                name: "c".parse().expect("name"),
                description: String::new(),
                if_absent: false,
            })],
        })
        .expect("after the lock is released");
}

/// X7: a statement is prepared once per connection, and the server agrees
/// (`pg_prepared_statements` lists this session's protocol-level ones).
#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_statements_are_prepared_once_per_connection() {
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
    let s = PgStore::open(&db.url, &create()).expect("init");
    let mut c = s.pool().get().expect("connection");
    let before = c.prepared_count();
    for _ in 0..5 {
        c.query(
            "SELECT value FROM store_meta WHERE key = $1",
            &[&"store_id"],
        )
        .expect("query");
    }
    assert_eq!(c.prepared_count(), before + 1);
    let on_server: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(on_server as usize, c.prepared_count());
}

/// X7: a transaction whose work fails is rolled back and its connection
/// reused; a failed statement in a savepoint leaves the transaction usable;
/// a panic inside a transaction closes the connection instead of pooling
/// it mid-transaction.
#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_transactions_end_cleanly_on_error_and_panic() {
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
    let s = PgStore::open(&db.url, &create()).expect("init");
    let pool = s.pool();
    pool.get()
        .expect("connection")
        .batch_execute("CREATE TABLE t (k text PRIMARY KEY)")
        .expect("table");
    let count = || -> i64 {
        pool.get()
            .expect("connection")
            .query_one("SELECT count(*) FROM t", &[])
            .expect("count")
            .get(0)
    };
    let pid = |c: &mut kontextual_store::postgres::Conn| -> i32 {
        c.query_one("SELECT pg_backend_pid()", &[])
            .expect("pid")
            .get(0)
    };

    // an error: rolled back, and the connection comes back usable
    let mut c = pool.get().expect("connection");
    let first = pid(&mut c);
    let r: Result<(), StoreError> = c.transaction("BEGIN", |tx| {
        tx.execute("INSERT INTO t VALUES ('a')", &[])
            .expect("insert");
        Err(StoreError::InvalidInput("no".into()))
    });
    assert!(r.is_err());
    assert!(c.query("SELECT 1", &[]).is_ok(), "usable after rollback");
    drop(c);
    assert_eq!(count(), 0, "rolled back");

    // a unique violation inside a savepoint; the rest commits
    let mut c = pool.get().expect("connection");
    c.transaction("BEGIN", |tx| {
        tx.execute("INSERT INTO t VALUES ('a')", &[])
            .expect("insert");
        let dup = tx
            .execute_in_savepoint("INSERT INTO t VALUES ('a')", &[])
            .expect("savepoint");
        assert!(dup.is_err(), "a duplicate is refused");
        tx.execute("INSERT INTO t VALUES ('b')", &[])
            .expect("the transaction goes on");
        Ok(())
    })
    .expect("commit");
    drop(c);
    assert_eq!(count(), 2);

    // a panic mid-transaction: that connection is not pooled again
    let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut c = pool.get().expect("connection");
        let p = pid(&mut c);
        let _ = c.transaction("BEGIN", |tx| -> Result<(), StoreError> {
            tx.execute("INSERT INTO t VALUES ('c')", &[])
                .expect("insert");
            std::panic::panic_any(p)
        });
    }))
    .expect_err("panicked");
    let panicked_pid = *held.downcast::<i32>().expect("pid");
    assert_eq!(panicked_pid, first, "the pool reused the first connection");
    for _ in 0..4 {
        let mut c = pool.get().expect("connection");
        assert_ne!(
            pid(&mut c),
            panicked_pid,
            "a connection left mid-transaction was reused"
        );
    }
    assert_eq!(count(), 2, "the panicked transaction wrote nothing");
}

/// X7: sessions ended by the server (a restart, an administrator's
/// `pg_terminate_backend`) are only noticed when a pooled connection is
/// next used; reads and writes then go on over fresh connections instead
/// of failing.
#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_reads_and_writes_survive_terminated_sessions() {
    use kontextual_store::{KnowledgeOp, Op, PageRequest, WriteBatch, WriteContext};
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
    let backend = kontextual_store::Store::new(
        kontextual_store::postgres::PostgresBackend::open(
            &db.url,
            &PgOptions {
                create: true,
                ..PgOptions::default()
            },
        )
        .expect("open"),
    );
    let ctx = WriteContext {
        namespace: Default::default(),
        actor: kontextual_model::Actor::local_admin(),
        correlation_id: kontextual_model::CorrelationId::new(),
        run_id: None,
    };
    let create = |name: &str| {
        backend.write(WriteBatch {
            ctx: ctx.clone(),
            ops: vec![Op::Knowledge(KnowledgeOp::CreateCollection {
                name: name.parse().expect("name"),
                description: String::new(),
                if_absent: false,
            })],
        })
    };
    let list = || {
        backend
            .knowledge()
            .collections(&Default::default(), &PageRequest::first(10))
    };
    // several pooled connections, idle
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| list().expect("list"));
        }
    });
    create("a").expect("create");
    let terminate = |wait_ms: u64| {
        let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
        let n = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .expect("terminate")
            .len();
        assert!(n >= 1, "no session to terminate");
        // at once, or once the server has ended them and closed the sockets
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
    };
    let pool_up = || {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| list().expect("list"));
            }
        })
    };
    let mut made = 1;
    for wait_ms in [0, 2, 20, 200] {
        pool_up();
        terminate(wait_ms);
        assert_eq!(
            list().expect("a read after the sessions ended").items.len(),
            made,
            "after {wait_ms} ms"
        );
        pool_up();
        terminate(wait_ms);
        made += 1;
        create(&format!("c{made}")).expect("a write after the sessions ended");
        pool_up();
        terminate(wait_ms);
        assert!(
            backend
                .audit()
                .head()
                .expect("a read after the sessions ended")
                .is_some()
        );
    }
    assert_eq!(list().expect("list").items.len(), made);
}

/// X7: after migration both engines hold the same tables with the same
/// columns, nullability and logical types — the schemas cannot drift apart
/// unnoticed even though each engine keeps its own DDL.
#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set KONTEXTUAL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres to run"
)]
fn x7_both_engines_have_the_same_schema() {
    use std::collections::BTreeMap;
    type Columns = BTreeMap<String, BTreeMap<String, (&'static str, bool)>>;
    let Some(db) = PgTestDatabase::create() else {
        return;
    };
    // Logical types: SQLite keeps booleans as integers and ids as blobs.
    let logical = |t: &str| -> &'static str {
        match t.to_ascii_lowercase().as_str() {
            "integer" | "bigint" | "boolean" => "integer",
            "text" => "text",
            "blob" | "bytea" | "uuid" => "bytes",
            other => panic!("unexpected column type {other}"),
        }
    };
    PgStore::open(&db.url, &create()).expect("init");
    let mut pg = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    let mut on_pg = Columns::new();
    for r in pg
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'NO' \
             FROM information_schema.columns WHERE table_schema = current_schema()",
            &[],
        )
        .expect("columns")
    {
        on_pg
            .entry(r.get(0))
            .or_default()
            .insert(r.get(1), (logical(r.get(2)), r.get(3)));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    drop(
        kontextual_store::sqlite::SqliteBackend::open_dir(
            dir.path(),
            &kontextual_store::sqlite::OpenOptions::new(kontextual_store::sqlite::OpenMode::Create),
        )
        .expect("sqlite init"),
    );
    let lite = rusqlite::Connection::open(dir.path().join(kontextual_store::sqlite::DB_FILE))
        .expect("open sqlite");
    let mut on_sqlite = Columns::new();
    let mut stmt = lite
        .prepare(
            "SELECT m.name, c.name, c.type, c.\"notnull\" OR c.pk > 0 \
             FROM sqlite_schema m JOIN pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })
        .expect("columns");
    for row in rows {
        let (table, column, ty, not_null) = row.expect("row");
        on_sqlite
            .entry(table)
            .or_default()
            .insert(column, (logical(&ty), not_null));
    }
    let tables = |c: &Columns| c.keys().cloned().collect::<Vec<_>>();
    assert!(on_sqlite.len() >= 20, "{:?}", tables(&on_sqlite));
    assert_eq!(tables(&on_sqlite), tables(&on_pg), "the same tables");
    let mut differences = Vec::new();
    for (table, columns) in &on_sqlite {
        if columns != &on_pg[table] {
            differences.push(format!(
                "{table}:\n  sqlite   {columns:?}\n  postgres {:?}",
                on_pg[table]
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
