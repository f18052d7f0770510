//! X7/K9 with the real binary on PostgreSQL: `--database-url` keeps the
//! store in PostgreSQL (each process with its own data directory for its
//! search index), snapshots move SQLite → PostgreSQL → SQLite with
//! identical payloads, and concurrent ingests from several processes keep
//! one audit chain. Needs `KONTEXTUAL_TEST_DATABASE_URL` (CI sets it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A fresh database, dropped at the end.
struct Db {
    admin: String,
    name: String,
    url: String,
}

impl Db {
    fn new() -> Option<Db> {
        let Ok(admin) = std::env::var("KONTEXTUAL_TEST_DATABASE_URL") else {
            eprintln!("SKIPPED: KONTEXTUAL_TEST_DATABASE_URL is not set");
            assert!(
                std::env::var_os("CI_REQUIRE_POSTGRES").is_none(),
                "CI requires the PostgreSQL tests"
            );
            return None;
        };
        let name = format!("kx_cli_{}_{}", std::process::id(), uniq());
        let ok = Command::new("psql")
            .args(["-q", "-d", &admin, "-c", &format!("CREATE DATABASE {name}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not create database {name} (psql)");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Db { admin, name, url })
    }
}

fn uniq() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
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

fn kx(data: &Path, db: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kontextual"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("--data-dir")
        .arg(data);
    if let Some(url) = db {
        c.arg("--database-url").arg(url);
    }
    c
}

fn run(data: &Path, db: Option<&str>, args: &[&str]) -> Output {
    kx(data, db).args(args).output().unwrap()
}

fn ok(data: &Path, db: Option<&str>, args: &[&str]) -> String {
    let out = run(data, db, args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(data: &Path, db: Option<&str>, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(data, db, &a)).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn payload(bag: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap().flatten() {
            let name = format!("{rel}{}", e.file_name().to_str().unwrap());
            if e.file_type().unwrap().is_dir() {
                walk(root, &format!("{name}/"), out);
            } else {
                out.push((name.clone(), std::fs::read(root.join(&name)).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(bag, "data/", &mut out);
    out.push((
        "manifest-sha256.txt".into(),
        std::fs::read(bag.join("manifest-sha256.txt")).unwrap(),
    ));
    out.sort();
    out
}

fn docs(root: &Path, n: usize, tag: &str) -> PathBuf {
    let dir = root.join(format!("docs-{tag}"));
    for i in 0..n {
        let sub = dir.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i}.md")),
            format!("# File {i}\n\nShared text about deploys, number {i}.\n"),
        )
        .unwrap();
    }
    dir
}

/// K9: export from SQLite → import into PostgreSQL → export again gives an
/// identical payload, and the reverse; the PostgreSQL store verifies.
#[test]
fn k9_snapshots_move_between_sqlite_and_postgres() {
    let Some(db) = Db::new() else { return };
    let t = tempfile::tempdir().unwrap();
    let lite = t.path().join("lite");
    ok(&lite, None, &["init"]);
    let d = docs(t.path(), 12, "a");
    ok(&lite, None, &["ingest", s(&d), "--collection", "handbook"]);
    std::fs::write(d.join("d0/f0.md"), "# File 0\n\nchanged\n").unwrap();
    ok(&lite, None, &["ingest", s(&d), "--collection", "handbook"]);
    ok(
        &lite,
        None,
        &[
            "relate",
            "handbook/d0/f0.md",
            "references",
            "handbook/d1/f1.md",
        ],
    );
    ok(&lite, None, &["artifact", "delete", "handbook/d2/f2.md"]);
    let a = t.path().join("a.bag");
    ok(&lite, None, &["export", "--all", "--out", s(&a)]);

    let pg_dir = t.path().join("pg-a");
    let url = Some(db.url.as_str());
    json(&pg_dir, url, &["import", s(&a)]);
    let b = t.path().join("b.bag");
    ok(&pg_dir, url, &["export", "--all", "--out", s(&b)]);
    assert_eq!(payload(&a), payload(&b), "SQLite → PostgreSQL → export");
    ok(&pg_dir, url, &["verify"]);

    let back = t.path().join("back");
    json(&back, None, &["import", s(&b)]);
    let c = t.path().join("c.bag");
    ok(&back, None, &["export", "--all", "--out", s(&c)]);
    assert_eq!(payload(&b), payload(&c), "PostgreSQL → SQLite → export");

    // nothing of the store is in the PostgreSQL process's data directory
    assert!(!pg_dir.join("kontextual.db").exists());
    // a second process with its own data directory finds what the first wrote
    let other = t.path().join("pg-b");
    let hits = json(&other, url, &["search", "changed"]);
    assert_eq!(hits["hits"][0]["ref"], "handbook/d0/f0.md", "{hits}");
}

/// X7: several processes ingest overlapping trees into one PostgreSQL store
/// at once: every file once with the right digest, no duplicate names, one
/// audit chain that verifies.
#[test]
fn x7_concurrent_ingests_from_several_processes() {
    let Some(db) = Db::new() else { return };
    let t = tempfile::tempdir().unwrap();
    let url = Some(db.url.as_str());
    ok(&t.path().join("p0"), url, &["init"]);
    let tree = docs(t.path(), 40, "shared");
    let children: Vec<_> = (0..3)
        .map(|i| {
            kx(&t.path().join(format!("p{i}")), url)
                .args(["--quiet", "ingest", s(&tree), "--collection", "shared"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = json(
        &t.path().join("p0"),
        url,
        &[
            "artifact",
            "list",
            "--collection",
            "shared",
            "--limit",
            "1000",
        ],
    );
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 40, "every file once");
    for a in items {
        assert_eq!(a["revision"], 1, "{a}");
        let name = a["name"].as_str().unwrap();
        let bytes = std::fs::read(tree.join(name)).unwrap();
        let content = run(
            &t.path().join("p0"),
            url,
            &["artifact", "show", &format!("shared/{name}"), "--content"],
        );
        assert_eq!(content.stdout, bytes, "{name}");
    }
    let v = json(&t.path().join("p0"), url, &["audit", "verify"]);
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(0), "{v}");
    ok(&t.path().join("p1"), url, &["verify"]);
}
