//! SQLite-file specifics: corruption and schema diagnostics (K3, K4), foreign
//! files (X8) and another process holding the write lock.

use std::time::Duration;

use kontextual_model::{ChainHead, Digest};
use kontextual_store::sqlite::{DB_FILE, OpenMode, OpenOptions, SqliteBackend};
use kontextual_store::testsuite::{coll, ctx, name};
use kontextual_store::{
    Content, ErrorKind, KnowledgeOp, Op, ProblemCategory, PutArtifact, Store, WriteBatch,
};
use rusqlite::Connection;

fn create(dir: &std::path::Path) -> Store {
    Store::new(SqliteBackend::open_dir(dir, &OpenOptions::new(OpenMode::Create)).unwrap())
}

fn open(dir: &std::path::Path) -> Result<Store, kontextual_store::StoreError> {
    SqliteBackend::open_dir(dir, &OpenOptions::new(OpenMode::ReadWrite)).map(Store::new)
}

fn seed(s: &Store) {
    let c = ctx("default");
    s.write(WriteBatch {
        ctx: c.clone(),
        ops: vec![
            Op::Knowledge(KnowledgeOp::CreateCollection {
                name: coll("h"),
                description: String::new(),
                if_absent: false,
            }),
            Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("h"),
                name("a.md"),
                Content::Bytes(b"alpha".to_vec()),
            ))),
            Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("h"),
                name("b.md"),
                Content::Bytes(b"beta".to_vec()),
            ))),
        ],
    })
    .unwrap();
}

fn raw(dir: &std::path::Path) -> Connection {
    Connection::open(dir.join(DB_FILE)).unwrap()
}

#[test]
fn k4_verify_finds_corrupt_and_missing_blobs() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    seed(&create(&dir));
    let alpha = Digest::of(b"alpha").hex();
    let beta = Digest::of(b"beta").hex();
    raw(&dir)
        .execute("UPDATE blobs SET data = x'00' WHERE digest = ?1", [&alpha])
        .unwrap();
    raw(&dir)
        .execute("DELETE FROM blob_chunks WHERE digest = ?1", [&beta])
        .unwrap();
    raw(&dir)
        .execute("DELETE FROM blobs WHERE digest = ?1", [&beta])
        .unwrap();
    let report = open(&dir).unwrap().check(None).unwrap();
    let cats: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.category, p.subject.clone(), p.detail.clone()))
        .collect();
    assert!(
        cats.iter()
            .any(|(c, s, d)| *c == ProblemCategory::Corruption
                && s.contains(&alpha)
                && d.contains("digest mismatch")),
        "{cats:?}"
    );
    assert!(
        cats.iter()
            .any(|(c, _, d)| *c == ProblemCategory::MissingReference && d.contains(&beta)),
        "{cats:?}"
    );
}

#[test]
fn x3_verify_detects_altered_audit_and_truncation_via_head_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    seed(&create(&dir));
    let s = open(&dir).unwrap();
    let head = s.audit().head().unwrap().unwrap();
    assert_eq!(head.seq, 3);
    assert!(s.check(None).unwrap().is_ok());
    drop(s);
    // the head recorded outside the database
    let file: ChainHead = std::fs::read_to_string(dir.join("audit.head"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(file, head);
    raw(&dir)
        .execute("DELETE FROM audit_log WHERE seq = 3", [])
        .unwrap();
    let report = open(&dir).unwrap().check(None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.detail.contains("tail truncated")),
        "{:?}",
        report.problems
    );
    // later writes extend the truncated chain past the recorded head, but
    // do not overwrite it: the evidence stays until someone looks
    let s = open(&dir).unwrap();
    for n in ["c.md", "d.md"] {
        s.write(WriteBatch {
            ctx: ctx("default"),
            ops: vec![Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("h"),
                name(n),
                Content::Bytes(n.as_bytes().to_vec()),
            )))],
        })
        .unwrap();
    }
    assert!(s.audit().head().unwrap().unwrap().seq > file.seq);
    let kept: ChainHead = std::fs::read_to_string(dir.join("audit.head"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(kept, file, "the recorded head was overwritten");
    let report = s.check(None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.detail.contains("record 3")),
        "{:?}",
        report.problems
    );
    drop(s);
    raw(&dir)
        .execute(
            "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 1",
            [],
        )
        .unwrap();
    let report = open(&dir).unwrap().check(None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.detail.contains("record 1 was altered")),
        "{:?}",
        report.problems
    );
}

#[test]
fn k3_newer_schema_and_pending_migrations_are_reported() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    let mut opts = OpenOptions::new(OpenMode::Create);
    opts.schema_target = Some(1);
    drop(SqliteBackend::open_dir(&dir, &opts).unwrap());
    let e = open(&dir).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SchemaMismatch);
    assert!(e.to_string().contains("run `kontextual db migrate`"), "{e}");
    let inspect = kontextual_store::Store::new(
        SqliteBackend::open_dir(&dir, &OpenOptions::new(OpenMode::Inspect)).unwrap(),
    );
    let report = inspect.check(None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.category == ProblemCategory::PendingMigration)
    );
    assert_eq!(
        report.problems.len() as u32,
        kontextual_store::sqlite::latest_version() - 1
    );
    drop(inspect);
    drop(SqliteBackend::open_dir(&dir, &OpenOptions::new(OpenMode::Migrate)).unwrap());
    let s = open(&dir).unwrap();
    seed(&s);
    drop(s);
    raw(&dir)
        .execute(
            "INSERT INTO schema_migrations VALUES (42, 'future', 'x', 0)",
            [],
        )
        .unwrap();
    let e = open(&dir).unwrap_err();
    assert!(
        e.to_string()
            .contains("newer than this kontextual supports"),
        "{e}"
    );
}

#[test]
fn x8_foreign_files_and_directories_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let e = open(&t.path().join("missing")).unwrap_err();
    assert!(e.to_string().contains("run `kontextual init`"), "{e}");
    std::fs::write(t.path().join("notes.txt"), "hi").unwrap();
    let e = SqliteBackend::open_dir(t.path(), &OpenOptions::new(OpenMode::Create))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::NotAStore);
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("notes.txt")).unwrap(),
        "hi"
    );
    let junk = t.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(
        junk.join(DB_FILE),
        b"this is not sqlite at all, just text padding it out",
    )
    .unwrap();
    let e = open(&junk).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAStore, "{e}");
    let other = t.path().join("other");
    std::fs::create_dir(&other).unwrap();
    Connection::open(other.join(DB_FILE))
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let e = open(&other).unwrap_err();
    assert!(e.to_string().contains("another application"), "{e}");
}

#[test]
fn x8_a_store_locked_by_another_writer_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    seed(&create(&dir));
    let mut opts = OpenOptions::new(OpenMode::ReadWrite);
    opts.busy_timeout = Duration::from_millis(200);
    let s = Store::new(SqliteBackend::open_dir(&dir, &opts).unwrap());
    let other = raw(&dir);
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = s
        .write(WriteBatch {
            ctx: ctx("default"),
            ops: vec![Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("h"),
                name("c.md"),
                Content::Bytes(b"c".to_vec()),
            )))],
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Locked);
    assert!(
        e.to_string()
            .contains("locked by another writer (waited 200 ms)"),
        "{e}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(s.status().unwrap().artifacts_live, 2, "nothing lost");
}

#[test]
fn k4_reading_corrupted_content_fails_instead_of_returning_bad_bytes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    seed(&create(&dir));
    raw(&dir)
        .execute(
            "UPDATE blobs SET data = x'616c70686100' WHERE digest = ?1",
            [Digest::of(b"alpha").hex()],
        )
        .unwrap();
    let s = open(&dir).unwrap();
    let mut out = Vec::new();
    let e = std::io::Read::read_to_end(
        &mut s.open_content(&Digest::of(b"alpha")).unwrap(),
        &mut out,
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("is corrupted"), "{e}");
}

fn problems_after(dir: &std::path::Path, sql: &str) -> Vec<(ProblemCategory, String)> {
    raw(dir).execute_batch(sql).unwrap();
    let report = open(dir).unwrap().check(None).unwrap();
    report
        .problems
        .into_iter()
        .map(|p| (p.category, format!("{}: {}", p.subject, p.detail)))
        .collect()
}

#[test]
fn k4_verify_finds_rows_edited_behind_the_audit_chain() {
    let fresh = || {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        let s = create(&dir);
        seed(&s);
        s.write(WriteBatch {
            ctx: ctx("default"),
            ops: vec![Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("h"),
                name("a.md"),
                Content::Bytes(b"alpha 2".to_vec()),
            )))],
        })
        .unwrap();
        drop(s);
        (t, dir)
    };
    let (_t, dir) = fresh();
    let p = problems_after(
        &dir,
        "UPDATE revisions SET metadata = '{\"owner\":\"mallory\"}' WHERE revision = 1",
    );
    assert!(
        p.iter()
            .any(|(c, d)| *c == ProblemCategory::Corruption && d.contains("audit record")),
        "{p:?}"
    );
    let (_t, dir) = fresh();
    let beta = Digest::of(b"beta").hex();
    let p = problems_after(
        &dir,
        &format!(
            "UPDATE revisions SET digest = '{beta}' WHERE revision = 2; UPDATE artifacts SET digest = '{beta}' WHERE revision = 2"
        ),
    );
    assert!(
        p.iter()
            .any(|(c, d)| *c == ProblemCategory::Corruption && d.contains("revision 2")),
        "{p:?}"
    );
    let (_t, dir) = fresh();
    let p = problems_after(
        &dir,
        "DELETE FROM revisions WHERE revision = 1 AND digest = (SELECT digest FROM blobs WHERE size = 5)",
    );
    assert!(
        p.iter()
            .any(|(c, d)| *c == ProblemCategory::MissingReference
                && d.contains("revisions are missing")),
        "{p:?}"
    );
    for edit in [
        "UPDATE artifacts SET state = 'deleted' WHERE name = 'b.md'",
        "UPDATE artifacts SET name = 'renamed.md' WHERE name = 'b.md'",
        "UPDATE artifacts SET artifact_type = 'html' WHERE name = 'b.md'",
        "UPDATE artifacts SET source_system = 'elsewhere' WHERE name = 'b.md'",
        "UPDATE artifacts SET namespace = 'other' WHERE name = 'b.md'",
    ] {
        let (_t, dir) = fresh();
        let p = problems_after(&dir, edit);
        assert!(!p.is_empty(), "{edit} went unnoticed");
    }
    let (_t, dir) = fresh();
    let p = problems_after(&dir, "UPDATE artifacts SET metadata = '{\"x\":1}'");
    assert!(
        p.iter()
            .any(|(c, d)| *c == ProblemCategory::Corruption && d.contains("current state differs")),
        "{p:?}"
    );
}

#[test]
fn k4_purge_leaves_no_bytes_in_the_database_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    let s = create(&dir);
    let marker = b"TOP-SECRET-MARKER-5f1d2c".repeat(500);
    s.write(WriteBatch {
        ctx: ctx("default"),
        ops: vec![
            Op::Knowledge(KnowledgeOp::CreateCollection {
                name: coll("h"),
                description: String::new(),
                if_absent: false,
            }),
            Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("h"),
                name("secret.txt"),
                Content::Bytes(marker.clone()),
            ))),
        ],
    })
    .unwrap();
    s.write(WriteBatch {
        ctx: ctx("default"),
        ops: vec![Op::Knowledge(KnowledgeOp::PurgeArtifact {
            key: kontextual_store::ArtifactKey::Name {
                collection: coll("h"),
                name: name("secret.txt"),
            },
            expect: None,
        })],
    })
    .unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let path = f.unwrap().path();
        // the audit head's temporary file may be renamed away meanwhile
        let bytes = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            other => other.unwrap(),
        };
        assert!(
            !bytes.windows(24).any(|w| w == b"TOP-SECRET-MARKER-5f1d2c"),
            "purged content still readable in {}",
            path.display()
        );
    }
}

#[test]
fn x3_an_unreadable_head_file_is_a_problem_and_a_missing_one_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    seed(&create(&dir));
    std::fs::write(dir.join("audit.head"), "garbage").unwrap();
    let s = open(&dir).unwrap();
    let (report, source) = s.audit().verify(None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.to_string().contains("unreadable")),
        "{:?}",
        report.problems
    );
    assert_eq!(source, None);
    std::fs::remove_file(dir.join("audit.head")).unwrap();
    let (report, source) = s.audit().verify(None).unwrap();
    assert!(report.is_valid());
    assert_eq!(source, None, "no head to compare with");
}

#[test]
fn k3_concurrent_init_creates_one_store() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    SqliteBackend::open_dir(&dir, &OpenOptions::new(OpenMode::Create))
                        .map(Store::new)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stores: Vec<Store> = results
        .into_iter()
        .map(|r| r.expect("every concurrent init succeeds"))
        .collect();
    let ids: std::collections::BTreeSet<String> = stores
        .iter()
        .map(|s| s.status().unwrap().store_id)
        .collect();
    assert_eq!(ids.len(), 1, "one store identity: {ids:?}");
    drop(stores);
    seed(&open(&dir).unwrap());
}

#[test]
fn k3_an_interrupted_init_is_reported_as_not_initialised() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(DB_FILE), b"").unwrap();
    let e = open(&dir).unwrap_err();
    assert!(e.to_string().contains("run `kontextual init`"), "{e}");
    create(&dir);
    seed(&open(&dir).unwrap());
}

#[test]
fn k4_verify_finds_a_missing_chunk_of_large_content() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    let s = create(&dir);
    seed(&s);
    let big = vec![42u8; 3 << 20];
    s.write(WriteBatch {
        ctx: ctx("default"),
        ops: vec![Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
            coll("h"),
            name("big.bin"),
            Content::Reader(Box::new(std::io::Cursor::new(big.clone()))),
        )))],
    })
    .unwrap();
    drop(s);
    let chunks: i64 = raw(&dir)
        .query_row(
            "SELECT chunks FROM blobs WHERE digest = ?1",
            [Digest::of(&big).hex()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(chunks, 3, "large content is chunked");
    raw(&dir)
        .execute("DELETE FROM blob_chunks WHERE idx = 1", [])
        .unwrap();
    let report = open(&dir).unwrap().check(None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.detail == "chunk 1 is missing"),
        "{:?}",
        report.problems
    );
}

#[test]
fn x3_verify_while_writers_run_raises_no_false_alarm() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    seed(&create(&dir));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // another "process": its own handle on the same data directory
            let w = open(&dir).unwrap();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                w.write(WriteBatch {
                    ctx: ctx("default"),
                    ops: vec![Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                        coll("h"),
                        name(&format!("w{i}.md")),
                        Content::Bytes(vec![b'x'; i % 3000]),
                    )))],
                })
                .unwrap();
            }
        });
        let r = open(&dir).unwrap();
        for _ in 0..15 {
            let report = r.check(None).unwrap();
            assert!(report.is_ok(), "{:?}", report.problems);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// X3: every kind of row that carries history or authority, edited with SQL
/// behind the audit chain's back, is named by `verify` (the same table runs
/// on PostgreSQL).
#[test]
fn x3_verify_names_every_row_edited_behind_the_audit_chain() {
    for t in kontextual_store::testsuite::TAMPERS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let s = create(&dir);
        kontextual_store::testsuite::seed_authority(&s);
        drop(s);
        raw(&dir).execute_batch(t.sql).unwrap();
        let report = open(&dir).unwrap().check(None).unwrap();
        t.assert_named(&report.problems);
    }
}
