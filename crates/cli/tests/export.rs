//! O3/K9/X8 end to end with the real binary: export scopes, directory and
//! .tar.zst packages, `package validate` (and bagit-python as an
//! independent checker), import into a fresh data directory, round trips
//! with identical payloads, conflicts, and hostile packages.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{Store, s};

/// A store with two collections, markdown/HTML/JSON content, a second
/// revision, a relation, a deleted and a purged artifact, lifecycles,
/// classifications and a source system.
fn seeded(root: &Path) -> Store {
    let data = Store::new(root.join("data"));
    data.ok(&["init"]);
    let docs = root.join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(
        docs.join("deploy.md"),
        "# Deploy\n\n## Steps\n\nRun the deploy script.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("sub/rollback.md"),
        "# Rollback\n\nUndo a deploy.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("page.html"),
        "<html><head><title>Page</title></head><body><p>Deploy notes</p></body></html>",
    )
    .unwrap();
    std::fs::write(docs.join("conf.json"), "{\"deploy\": true}").unwrap();
    data.ok(&["ingest", s(&docs), "--collection", "handbook"]);
    std::fs::write(
        docs.join("deploy.md"),
        "# Deploy\n\n## Steps\n\nRun the deploy script twice.\n",
    )
    .unwrap();
    data.ok(&["ingest", s(&docs), "--collection", "handbook"]);
    data.ok(&[
        "relate",
        "handbook/deploy.md",
        "references",
        "handbook/sub/rollback.md",
    ]);
    let note = root.join("note.md");
    std::fs::write(&note, "# Ops note\n\nPager duty.\n").unwrap();
    data.ok(&["collection", "create", "ops"]);
    data.ok(&[
        "artifact",
        "put",
        "ops/note.md",
        "--file",
        s(&note),
        "--lifecycle",
        "deprecated",
        "--classification",
        "confidential",
        "--source-system",
        "wiki",
        "--metadata",
        "{\"owner\": \"ops\",\n \"tier\": 2}",
    ]);
    std::fs::write(&note, "# Gone\n").unwrap();
    data.ok(&["artifact", "put", "ops/gone.md", "--file", s(&note)]);
    data.ok(&["artifact", "delete", "ops/gone.md"]);
    data.ok(&["artifact", "put", "ops/secret.md", "--file", s(&note)]);
    data.ok(&["artifact", "purge", "ops/secret.md", "--yes"]);
    data
}

fn bagit_python() -> Option<&'static str> {
    let ok = Command::new("bagit.py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("bagit.py");
    }
    assert!(
        std::env::var_os("KONTEXTUAL_REQUIRE_BAGIT").is_none(),
        "bagit.py (pip install bagit) is required in CI"
    );
    eprintln!(
        "SKIPPED the bagit-python cross-check: bagit.py is not installed (pip install bagit)"
    );
    None
}

fn payload_files(bag: &Path) -> Vec<(String, Vec<u8>)> {
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

/// K9 + O3: export all → validate (ours and bagit-python) → import into a
/// data directory that does not exist → export all again: the payload
/// (data/ and its manifest) is byte-identical, and the restored store
/// verifies and answers searches.
#[test]
fn k9_snapshot_round_trip_is_identical() {
    let t = tempfile::tempdir().unwrap();
    let data = seeded(t.path());
    let bag = t.path().join("snap");
    let e = data.json(&["export", "--all", "--out", s(&bag)]);
    assert_eq!(e["export"]["counts"]["artifacts"], 7, "{e}");
    assert_eq!(e["export"]["counts"]["collections"], 2);
    let v = data.json(&["package", "validate", s(&bag)]);
    assert_eq!(
        (v["complete"].as_bool(), v["valid"].as_bool()),
        (Some(true), Some(true)),
        "{v}"
    );
    if let Some(py) = bagit_python() {
        let out = Command::new(py)
            .args(["--validate", s(&bag)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bagit.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // the archive form carries the same payload
    let tar = t.path().join("snap.tar.zst");
    let e2 = data.json(&["export", "--all", "--out", s(&tar)]);
    assert_eq!(
        e2["export"]["payload_digest"],
        e["export"]["payload_digest"]
    );

    let restored = Store::new(t.path().join("restored"));
    assert!(!restored.exists());
    let r = restored.json(&["import", s(&tar)]);
    assert_eq!(r["summary"]["written"]["artifacts"], 7, "{r}");
    let again = t.path().join("again");
    let e3 = restored.json(&["export", "--all", "--out", s(&again)]);
    assert_eq!(
        e3["export"]["payload_digest"],
        e["export"]["payload_digest"]
    );
    assert_eq!(payload_files(&bag), payload_files(&again));
    // same ids, digests and history; the import is its own run and audit record
    let a = data.json(&["artifact", "show", "handbook/deploy.md"]);
    let b = restored.json(&["artifact", "show", "handbook/deploy.md"]);
    for k in [
        "id",
        "digest",
        "revision",
        "metadata",
        "run_id",
        "created_at",
        "updated_at",
    ] {
        assert_eq!(a[k], b[k], "{k}");
    }
    let runs = restored.json(&["run", "show", b["run_id"].as_str().unwrap()]);
    assert_eq!(runs["run"]["kind"], "ingest", "{runs}");
    let audit = restored.ok(&["audit", "list", "--action", "store.import"]);
    assert!(audit.contains("store.import"), "{audit}");
    restored.ok(&["verify"]);
    let hits = restored.json(&["search", "twice"]);
    assert_eq!(hits["hits"][0]["ref"], "handbook/deploy.md", "{hits}");
    // the reverse direction: what was restored exports and imports again
    let third = Store::new(t.path().join("third"));
    third.json(&["import", s(&again)]);
    third.ok(&["verify"]);
}

/// O3: scopes combine, the manifest records them, and quarantined
/// artifacts are never exported.
#[test]
fn o3_export_scopes_combine() {
    let t = tempfile::tempdir().unwrap();
    let data = seeded(t.path());
    let count = |args: &[&str], name: &str| -> u64 {
        let out = t.path().join(name);
        let mut a = vec!["export", "--out", s(&out)];
        a.extend_from_slice(args);
        let e = data.json(&a);
        let v = data.json(&["package", "validate", s(&out)]);
        assert_eq!(v["valid"], true, "{args:?}: {v}");
        e["export"]["counts"]["artifacts"].as_u64().unwrap()
    };
    assert_eq!(count(&["--collection", "handbook"], "a"), 4);
    assert_eq!(count(&["--query", "deploy"], "b"), 4);
    assert_eq!(count(&["--query", "deploy", "--collection", "ops"], "c"), 0);
    assert_eq!(count(&["--lifecycle", "deprecated"], "d"), 1);
    assert_eq!(count(&["--source", "wiki"], "e"), 1);
    assert_eq!(count(&["--classification", "confidential"], "f"), 1);
    assert_eq!(
        count(&["--since", "2000-01-01", "--until", "2000-01-02"], "g"),
        0
    );
    assert_eq!(count(&["--collection", "ops", "--include-deleted"], "h"), 3);
    let deploy = data.json(&["artifact", "show", "handbook/deploy.md"]);
    let id = deploy["id"].as_str().unwrap();
    assert_eq!(count(&["--id", id], "i"), 1);
    let run_id = deploy["run_id"].as_str().unwrap();
    assert_eq!(
        count(&["--run", run_id], "j"),
        1,
        "only deploy.md changed in the second ingest"
    );
    // a relation to an artifact outside the scope is left out, so the
    // package has no broken reference
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("i/kontextual-export.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["scope"]["artifact_ids"][0], id);
    assert_eq!(info["policy"]["filter_applied"], false);
    assert!(
        std::fs::read_to_string(t.path().join("i/data/relations.json"))
            .unwrap()
            .is_empty()
    );
    // current only: one revision per artifact; such a package is refused by import
    let cur = t.path().join("cur");
    let e = data.json(&[
        "export",
        "--collection",
        "handbook",
        "--current-only",
        "--out",
        s(&cur),
    ]);
    assert_eq!(e["export"]["counts"]["revisions"], 4);
    let fresh = Store::new(t.path().join("fresh"));
    let out = fresh.run(&["import", s(&cur)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("whole histories"));
    assert!(
        !fresh.exists(),
        "a refused import must not create the data directory"
    );
    // archive names other than .tar.zst are refused rather than made directories
    for name in ["x.tar", "x.tar.gz", "x.zip"] {
        let out = data.run(&["export", "--all", "--out", s(&t.path().join(name))]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(!t.path().join(name).exists());
    }
    // ... and the extension is not case-sensitive; `-` streams to stdout
    data.json(&["export", "--all", "--out", s(&t.path().join("UP.TAR.ZST"))]);
    let v = data.json(&["package", "validate", s(&t.path().join("UP.TAR.ZST"))]);
    assert_eq!(v["valid"], true);
    let out = data.run(&["export", "--collection", "ops", "--out", "-"]);
    assert!(out.status.success());
    std::fs::write(t.path().join("stdout.tar.zst"), &out.stdout).unwrap();
    let v = data.json(&["package", "validate", s(&t.path().join("stdout.tar.zst"))]);
    assert_eq!(v["valid"], true, "{v}");
    // --id takes COLLECTION/NAME too; unknown ids and runs are not found
    assert_eq!(count(&["--id", "handbook/deploy.md"], "m"), 1);
    let out = data.run(&[
        "export",
        "--id",
        "handbook/nope.md",
        "--out",
        s(&t.path().join("n")),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let out = data.run(&[
        "export",
        "--since",
        "2027-01-01",
        "--until",
        "2026-01-01",
        "--out",
        s(&t.path().join("o")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // quarantine excludes
    data.ok(&["quarantine", "set", "handbook/page.html", "--reason", "bad"]);
    assert_eq!(count(&["--collection", "handbook"], "k"), 3);
    // nothing selected, and an existing --out, are clear errors
    let out = data.run(&["export", "--out", s(&t.path().join("l"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("say what to export"));
    let out = data.run(&["export", "--all", "--out", s(&t.path().join("a"))]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "an existing output is a conflict"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // the export is a run with a manifest, and audited
    let audit = data.ok(&["audit", "list", "--action", "export.create"]);
    assert!(audit.contains("export.create"));
}

/// K9: importing into a non-empty store follows the conflict policy; a
/// refused import changes nothing.
#[test]
fn k9_import_conflicts_fail_or_skip() {
    let t = tempfile::tempdir().unwrap();
    let data = seeded(t.path());
    let bag = t.path().join("snap");
    data.json(&["export", "--all", "--out", s(&bag)]);
    let out = data.run(&["import", s(&bag)]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in the store"));
    // the refused import left only its own failed run's records, no data
    let list = data.json(&["artifact", "list", "--include-deleted"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 7);
    let failed = data.json(&["run", "list", "--status", "failed"]);
    assert_eq!(failed["items"][0]["kind"], "import", "{failed}");
    let r = data.json(&["import", s(&bag), "--on-conflict", "skip"]);
    assert_eq!(r["summary"]["skipped"]["artifacts"], 7, "{r}");
    data.ok(&["verify"]);
}

/// X8: invalid and hostile packages are refused with a clear error, and
/// nothing is written: the target data directory is not even created.
#[test]
fn x8_bad_packages_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = seeded(t.path());
    let bag = t.path().join("snap");
    data.json(&["export", "--all", "--out", s(&bag)]);
    // tamper with one blob
    let blobs = bag.join("data/blobs/sha256");
    let sub = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let f = std::fs::read_dir(&sub)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&f, bytes).unwrap();
    let out = data.run(&["package", "validate", s(&bag)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hash_mismatch data/blobs/sha256/"), "{text}");
    assert!(
        text.contains("complete           yes") && text.contains("valid              no"),
        "{text}"
    );
    let target = Store::new(t.path().join("never"));
    let out = target.run(&["import", s(&bag)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hash_mismatch"));
    assert!(
        !target.exists(),
        "a refused import must not create the data directory"
    );

    // a hostile archive: an entry climbing out of the staging area
    let evil = t.path().join("evil.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&evil).unwrap());
        let mut h = tar::Header::new_old();
        let name = b"../../escaped.txt";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &b"bad"[..]).unwrap();
        b.finish().unwrap();
    }
    let out = target.run(&["import", s(&evil)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsafe_path") && err.contains(".."), "{err}");
    // validate gives a verdict on the refused archive, not a bare error
    let out = data.run(&["package", "validate", s(&evil)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("complete           no") && text.contains("unsafe_path"),
        "{text}"
    );
    assert!(!target.exists());
    assert!(!t.path().join("escaped.txt").exists());
    // fetch.txt is refused
    std::fs::write(
        bag.join("fetch.txt"),
        "https://example.invalid/a 1 data/a\n",
    )
    .unwrap();
    let out = data.run(&["package", "validate", s(&bag)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("fetch_refused"));
    // not a package at all
    let junk = t.path().join("junk.tar.zst");
    std::fs::write(&junk, b"definitely not zstd").unwrap();
    let out = target.run(&["import", s(&junk)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists());
}

/// O2 + O3: an export can run as a job; the worker writes the package
/// under its final name only when it is complete, and the run links to the job.
#[test]
fn o3_export_runs_as_a_background_job() {
    let t = tempfile::tempdir().unwrap();
    let data = seeded(t.path());
    let out = t.path().join("bg.tar.zst");
    let job = data.ok(&[
        "--quiet",
        "export",
        "--collection",
        "handbook",
        "--out",
        s(&out),
        "--background",
    ]);
    let job = job.trim();
    assert!(!out.exists(), "nothing is written until a worker runs it");
    data.ok(&["--quiet", "worker", "--drain"]);
    let j = data.json(&["job", "show", job]);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["kind"], "export");
    assert_eq!(j["runs"][0]["kind"], "export", "the run links to its job");
    let v = data.json(&["package", "validate", s(&out)]);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["counts"]["artifacts"], 4);
    // a relative or existing path is refused when enqueued, not when run
    let again = data.run(&["export", "--all", "--out", s(&out), "--background"]);
    assert_eq!(again.status.code(), Some(4));
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty());

    // two jobs for one output: the second cannot succeed, and is not retried
    let twin = t.path().join("twin.tar.zst");
    let enqueue = || {
        data.ok(&[
            "--quiet",
            "export",
            "--all",
            "--out",
            s(&twin),
            "--background",
        ])
        .trim()
        .to_owned()
    };
    let (first, second) = (enqueue(), enqueue());
    let _ = data.run(&["--quiet", "worker", "--drain"]);
    let states: Vec<Value> = [&first, &second]
        .iter()
        .map(|j| data.json(&["job", "show", j]))
        .collect();
    let done = states.iter().filter(|j| j["state"] == "succeeded").count();
    let refused: Vec<&Value> = states
        .iter()
        .filter(|j| j["state"] != "succeeded")
        .collect();
    assert_eq!((done, refused.len()), (1, 1), "{states:?}");
    assert_eq!(refused[0]["state"], "dead", "{}", refused[0]);
    assert_eq!(refused[0]["attempt"], 1, "no retry: {}", refused[0]);
    assert!(
        refused[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("already exists") || e.contains("appeared")),
        "{}",
        refused[0]
    );
}

/// X5/X8: `--out -` onto a terminal is refused (a binary archive would
/// garble it); run under `script`, which gives the command a terminal.
#[test]
fn x5_export_to_a_terminal_is_refused() {
    let Ok(probe) = Command::new("script").arg("--version").output() else {
        eprintln!("SKIPPED: `script` (util-linux) is not installed");
        return;
    };
    assert!(probe.status.success());
    let t = tempfile::tempdir().unwrap();
    let data = seeded(t.path());
    let cmd = format!(
        "{} {} export --all --out -",
        env!("CARGO_BIN_EXE_kontextual"),
        data.global_args().join(" ")
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("which is a terminal"), "{text}");
    assert!(
        !out.stdout.windows(4).any(|w| w == [0x28, 0xb5, 0x2f, 0xfd]),
        "archive bytes reached the terminal"
    );
}
