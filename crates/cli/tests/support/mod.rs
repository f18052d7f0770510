//! What every end-to-end test of the binary shares: the engine the tests
//! run on, a store (a data directory and, on PostgreSQL, its own database),
//! and running the binary on it.
//!
//! `KONTEXTUAL_TEST_ENGINE=postgres` (default `sqlite`) runs every test that
//! opens a store on a fresh PostgreSQL database, created from
//! `KONTEXTUAL_TEST_DATABASE_URL` and dropped at the end, by passing
//! `--database-url`; the data directory then holds only the search index.
//! Tests about the SQLite data directory itself are listed in
//! [`SQLITE_ONLY`] with the reason, and keep SQLite on either engine.

#![allow(dead_code)] // each test crate uses part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

/// Tests that stay on SQLite whatever `KONTEXTUAL_TEST_ENGINE` says:
/// (test crate, test, why). The one place that says so.
pub const SQLITE_ONLY: &[(&str, &str, &str)] = &[
    (
        "cli",
        "x8_foreign_and_locked_stores_are_clear_errors",
        "a foreign non-empty data directory and a SQLite writer lock held with rusqlite",
    ),
    (
        "cli",
        "x3_audit_verify_detects_tampering_and_truncation",
        "tampers with kontextual.db and audit.head in the data directory (PostgreSQL: postgres.rs x3_postgres_audit_tail_truncation_is_found_from_the_head_copy)",
    ),
    (
        "cli",
        "k3_schema_version_is_inspectable_and_newer_stores_are_refused",
        "writes a future migration into kontextual.db with rusqlite",
    ),
    (
        "cli",
        "k4_verify_reports_corrupt_content",
        "corrupts a blob in kontextual.db with rusqlite",
    ),
    (
        "cli",
        "k4_corrupted_content_is_not_served_silently",
        "corrupts a blob in kontextual.db with rusqlite",
    ),
    (
        "serve",
        "o1_a_full_disk_is_a_condition_not_a_crash",
        "fills the small tmpfs that holds the SQLite data directory",
    ),
];

/// The engine the end-to-end tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// `KONTEXTUAL_TEST_ENGINE`: `sqlite` (default) or `postgres`.
pub fn engine() -> Engine {
    match std::env::var("KONTEXTUAL_TEST_ENGINE").as_deref() {
        Err(_) | Ok("" | "sqlite") => Engine::Sqlite,
        Ok("postgres") => Engine::Postgres,
        Ok(other) => panic!("KONTEXTUAL_TEST_ENGINE={other}: expected sqlite or postgres"),
    }
}

/// The engine for a store of the running test: [`engine`], unless the test
/// is listed in [`SQLITE_ONLY`] (libtest names the test's thread after it).
fn engine_here() -> Engine {
    let crate_name = env!("CARGO_CRATE_NAME");
    let thread = std::thread::current();
    let test = thread.name().unwrap_or_default();
    match SQLITE_ONLY
        .iter()
        .find(|(c, t, _)| *c == crate_name && *t == test)
    {
        Some((_, _, why)) if engine() == Engine::Postgres => {
            eprintln!("SQLITE ONLY: {test} stays on SQLite: {why}");
            Engine::Sqlite
        }
        _ => engine(),
    }
}

/// A fresh PostgreSQL database, dropped (with its connections) at the end.
pub struct Db {
    admin: String,
    name: String,
    pub url: String,
}

impl Db {
    /// A database for a test that needs PostgreSQL whatever the engine:
    /// `None` (and a note) without `KONTEXTUAL_TEST_DATABASE_URL`, which CI
    /// (`CI_REQUIRE_POSTGRES`) refuses.
    pub fn new() -> Option<Db> {
        let Ok(admin) = std::env::var("KONTEXTUAL_TEST_DATABASE_URL") else {
            eprintln!("SKIPPED: KONTEXTUAL_TEST_DATABASE_URL is not set");
            assert!(
                std::env::var_os("CI_REQUIRE_POSTGRES").is_none(),
                "CI requires the PostgreSQL tests"
            );
            return None;
        };
        Some(Db::create(admin))
    }

    /// Like [`Db::new`], with the database's files in `tablespace`.
    pub fn new_in(tablespace: &str) -> Option<Db> {
        let admin = std::env::var("KONTEXTUAL_TEST_DATABASE_URL").ok()?;
        Some(Db::create_with(admin, &format!(" TABLESPACE {tablespace}")))
    }

    /// Runs SQL on the server's admin database (the one the tests' URL
    /// names) with psql; the error, if any.
    pub fn admin_psql(sql: &str) -> Result<(), String> {
        let admin = std::env::var("KONTEXTUAL_TEST_DATABASE_URL")
            .map_err(|_| "KONTEXTUAL_TEST_DATABASE_URL is not set".to_owned())?;
        let out = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &admin, "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// A database for a store on the PostgreSQL engine: needs
    /// `KONTEXTUAL_TEST_DATABASE_URL`.
    fn required() -> Db {
        let admin = std::env::var("KONTEXTUAL_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "KONTEXTUAL_TEST_ENGINE=postgres needs KONTEXTUAL_TEST_DATABASE_URL=postgres://USER@HOST/DB (tests create their own databases from it)"
            )
        });
        Db::create(admin)
    }

    fn create(admin: String) -> Db {
        Db::create_with(admin, "")
    }

    fn create_with(admin: String, options: &str) -> Db {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "kx_e2e_{}_{}_{}",
            std::process::id(),
            nanos,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("psql")
            .args([
                "-q",
                "-d",
                &admin,
                "-c",
                &format!("CREATE DATABASE {name}{options}"),
            ])
            .output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "could not create database {name} with psql: {:?}",
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        );
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Db { admin, name, url }
    }

    /// Runs a query with psql; its output, unaligned without headers.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-qtA", "-v", "ON_ERROR_STOP=1", "-d", &self.url, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs SQL in this database with psql; panics if it fails.
    pub fn psql(&self, sql: &str) {
        let out = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &self.url, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-q",
                "-d",
                &self.admin,
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One store for the binary: its data directory and, on PostgreSQL, its
/// database (shared by [`Store::sibling`]s, dropped with the last one).
pub struct Store {
    data: PathBuf,
    db: Option<Rc<Db>>,
    cwd: Option<PathBuf>,
}

impl Store {
    /// A store in `data` on the engine of this test (nothing is created yet:
    /// run `init`).
    pub fn new(data: impl Into<PathBuf>) -> Store {
        let db = match engine_here() {
            Engine::Sqlite => None,
            Engine::Postgres => Some(Rc::new(Db::required())),
        };
        Store {
            data: data.into(),
            db,
            cwd: None,
        }
    }

    /// A store on PostgreSQL in the given database, whatever the engine of
    /// this test.
    pub fn on_database(data: impl Into<PathBuf>, db: Db) -> Store {
        Store {
            data: data.into(),
            db: Some(Rc::new(db)),
            cwd: None,
        }
    }

    /// Another process's view of the same store: on PostgreSQL the same
    /// database with its own data directory (its own search index); on
    /// SQLite the same data directory.
    pub fn sibling(&self, data: impl Into<PathBuf>) -> Store {
        let data = data.into();
        Store {
            data: if self.db.is_some() {
                data
            } else {
                self.data.clone()
            },
            db: self.db.clone(),
            cwd: self.cwd.clone(),
        }
    }

    /// The data directory (on PostgreSQL it holds only the search index).
    pub fn dir(&self) -> &Path {
        &self.data
    }

    /// Whether anything of the store was created: the data directory, and on
    /// PostgreSQL also a table in the database.
    pub fn exists(&self) -> bool {
        self.data.exists()
            || self.db.as_ref().is_some_and(|db| {
                db.query("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')") != "0"
            })
    }

    /// The PostgreSQL database, if the store is on PostgreSQL.
    pub fn db(&self) -> Option<&Db> {
        self.db.as_deref()
    }

    pub fn engine(&self) -> Engine {
        if self.db.is_some() {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }

    /// `--data-dir DIR` and, on PostgreSQL, `--database-url URL`.
    pub fn global_args(&self) -> Vec<String> {
        let mut a = vec!["--data-dir".to_owned(), s(&self.data).to_owned()];
        if let Some(db) = &self.db {
            a.extend(["--database-url".to_owned(), db.url.clone()]);
        }
        a
    }

    /// The binary on this store, with a clean environment.
    pub fn kx(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kontextual"));
        if let Some(cwd) = &self.cwd {
            c.current_dir(cwd);
        }
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--data-dir")
            .arg(&self.data);
        if let Some(db) = &self.db {
            c.arg("--database-url").arg(&db.url);
        }
        c
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.kx();
        c.args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// `--json`, asserts success, parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// `--json` whatever the exit code (a partial failure still reports).
    pub fn json_any(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}{}", stdout(&out), stderr(&out)))
    }

    /// Runs, asserts the exit code, returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stderr(&out)
    }

    /// The SQLite database of the store (tests in [`SQLITE_ONLY`]).
    pub fn sqlite(&self) -> rusqlite::Connection {
        assert!(
            self.db.is_none(),
            "an SQLite-only test: list it in support::SQLITE_ONLY"
        );
        rusqlite::Connection::open(self.data.join("kontextual.db")).unwrap()
    }
}

/// A temporary directory the binary runs in, with a store in `data/`.
pub struct Env {
    dir: tempfile::TempDir,
    store: Store,
}

impl Env {
    /// An empty directory; the store is not initialised.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path().join("data"));
        store.cwd = Some(dir.path().to_owned());
        Env { dir, store }
    }

    /// After `init`.
    pub fn init() -> Env {
        let env = Env::new();
        env.ok(&["init"]);
        env
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn data(&self) -> PathBuf {
        self.store.data.clone()
    }

    /// Another store in this directory (`data` relative to it), on the
    /// test's engine.
    pub fn store(&self, data: &str) -> Store {
        let mut s = Store::new(self.path(data));
        s.cwd = Some(self.dir.path().to_owned());
        s
    }

    /// Writes a file (and its directories) under the directory.
    pub fn write(&self, rel: &str, body: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        p
    }
}

impl std::ops::Deref for Env {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One HTTP/1.1 exchange over a fresh connection: (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (status, body)
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve` on a free loopback port: the process and the address it says it
/// listens on (its first line of `--json` output).
pub fn serve(store: &Store, extra: &[&str]) -> (Proc, String) {
    serve_on(store, "127.0.0.1:0", extra)
}

/// `serve --bind BIND`: the process and the address it listens on.
pub fn serve_on(store: &Store, bind: &str, extra: &[&str]) -> (Proc, String) {
    let mut child = store
        .cmd(&["--json", "serve", "--bind", bind])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Proc(child);
    let addr = serde_json::from_str::<Value>(&line)
        .unwrap_or_else(|e| panic!("serve said {line:?}: {e}"))["listening"]
        .as_str()
        .unwrap()
        .to_owned();
    (server, addr)
}

/// Every name in [`SQLITE_ONLY`] is a test of its file (no stale entries).
#[test]
fn sqlite_only_names_real_tests() {
    let crate_name = env!("CARGO_CRATE_NAME");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/{crate_name}.rs"));
    let source = std::fs::read_to_string(&file).unwrap();
    for (c, test, _) in SQLITE_ONLY.iter().filter(|(c, _, _)| *c == crate_name) {
        assert!(
            source.contains(&format!("#[test]\nfn {test}()")),
            "support::SQLITE_ONLY names {c}::{test}, which is not a test in {}",
            file.display()
        );
    }
}
