//! What the HTTP API tests share: the engine they run on and a store on it.
//!
//! `KONTEXTUAL_TEST_ENGINE=postgres` (default `sqlite`) opens every test's
//! store on a fresh PostgreSQL database, created from
//! `KONTEXTUAL_TEST_DATABASE_URL` and dropped at the end; the data
//! directory then holds only the search index. Tests about the SQLite data
//! directory itself are listed in [`SQLITE_ONLY`] with the reason, and keep
//! SQLite on either engine.

#![allow(dead_code)] // not every test uses every helper

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kontextual_app::{Services, StoreConfig, StoreOpenMode};

/// Tests that stay on SQLite whatever `KONTEXTUAL_TEST_ENGINE` says:
/// (test, why). The one place that says so.
pub const SQLITE_ONLY: &[(&str, &str)] = &[];

/// The engine the tests run on.
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

/// [`engine`], unless the running test is listed in [`SQLITE_ONLY`]
/// (libtest names the test's thread after it).
fn engine_here() -> Engine {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or_default();
    match SQLITE_ONLY.iter().find(|(t, _)| *t == test) {
        Some((_, why)) if engine() == Engine::Postgres => {
            eprintln!("SQLITE ONLY: {test} stays on SQLite: {why}");
            Engine::Sqlite
        }
        _ => engine(),
    }
}

/// Runs `f` on a thread of its own and waits: a test calling the services
/// directly (the server calls them off its runtime threads) must not block
/// a tokio runtime thread, which the PostgreSQL client refuses.
pub fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// A fresh PostgreSQL database, dropped (with its connections) at the end.
pub struct Db {
    admin: String,
    name: String,
    pub url: String,
}

impl Db {
    fn new() -> Db {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin = std::env::var("KONTEXTUAL_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "KONTEXTUAL_TEST_ENGINE=postgres needs KONTEXTUAL_TEST_DATABASE_URL=postgres://USER@HOST/DB (tests create their own databases from it)"
            )
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "kx_api_{}_{}_{}",
            std::process::id(),
            nanos,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("psql")
            .args(["-q", "-d", &admin, "-c", &format!("CREATE DATABASE {name}")])
            .output();
        assert!(
            out.as_ref().is_ok_and(|o| o.status.success()),
            "could not create database {name} with psql: {:?}",
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        );
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Db { admin, name, url }
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

/// A store for one test: a temporary directory with the data directory in
/// `data/` and, on PostgreSQL, its own database.
pub struct TestStore {
    dir: tempfile::TempDir,
    db: Option<Db>,
}

impl TestStore {
    /// A store on the engine of this test (created by the first
    /// [`TestStore::open`] with [`StoreOpenMode::Create`]).
    pub fn new() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().unwrap(),
            db: match engine_here() {
                Engine::Sqlite => None,
                Engine::Postgres => Some(Db::new()),
            },
        }
    }

    /// The temporary directory around the data directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory (on PostgreSQL only the search index is there).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db(&self) -> Option<&Db> {
        self.db.as_ref()
    }

    /// Services over the store, as `kontextual` opens them (`--database-url`
    /// on PostgreSQL). Opened on a thread of its own, as the server opens
    /// them before its runtime starts: the PostgreSQL client blocks, which
    /// a tokio test's runtime thread may not.
    pub fn open(&self, mode: StoreOpenMode) -> Services {
        blocking(|| self.open_here(mode))
    }

    fn open_here(&self, mode: StoreOpenMode) -> Services {
        let busy_timeout = Duration::from_secs(5);
        match &self.db {
            None => Services::open(
                &StoreConfig {
                    data_dir: self.data(),
                    busy_timeout,
                },
                mode,
            ),
            Some(db) => Services::open_postgres(
                &db.url,
                &self.data(),
                matches!(mode, StoreOpenMode::Create | StoreOpenMode::Migrate),
                busy_timeout,
            ),
        }
        .unwrap()
    }
}
