//! K5, K6, X8: ingest end to end with the real binary, including SIGKILL crash safety.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Env, text};

fn ingest(env: &Env, extra: &[&str]) -> Value {
    let mut a = vec!["ingest", "docs", "--collection", "handbook"];
    a.extend_from_slice(extra);
    env.json_any(&a)
}

/// K5: formats detected from bytes, re-ingest is a no-op, a change makes one
/// revision, --prune tombstones what is gone; K6: the run records it all.
#[test]
fn k5_ingest_detects_changes_and_prunes() {
    let env = Env::init();
    env.write("docs/guide.md", b"# Guide\n\nInstall it.\n");
    env.write(
        "docs/web/page.html",
        b"<!doctype html><title>Page</title><p>hi</p>",
    );
    env.write("docs/data.json", br#"{"title": "Data", "n": 1}"#);
    env.write("docs/notes", b"plain text without an extension");
    env.write(
        "docs/report.md",
        b"%PDF-1.7 binary pretending to be markdown",
    );
    let r = ingest(&env, &[]);
    assert_eq!(
        (r["files"].as_u64(), r["new"].as_u64(), r["failed"].as_u64()),
        (Some(5), Some(5), Some(0)),
        "{r}"
    );
    let show = |name: &str| env.json_any(&["artifact", "show", &format!("handbook/{name}")]);
    assert_eq!(show("guide.md")["type"], "markdown");
    assert_eq!(show("guide.md")["title"], "Guide");
    assert_eq!(show("web/page.html")["type"], "html");
    assert_eq!(show("web/page.html")["title"], "Page");
    assert_eq!(show("data.json")["title"], "Data");
    assert_eq!(show("notes")["type"], "text");
    assert_eq!(
        show("report.md")["media_type"],
        "application/pdf",
        "bytes beat the extension"
    );
    let g = show("guide.md");
    assert!(
        g["provenance"]["source_path"]
            .as_str()
            .unwrap()
            .ends_with("docs/guide.md")
    );
    assert!(g["provenance"]["source_mtime"].is_string());
    let first_run = r["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        g["run_id"], first_run,
        "revisions link to the run that produced them"
    );

    let again = ingest(&env, &[]);
    assert_eq!(
        (
            again["new"].as_u64(),
            again["updated"].as_u64(),
            again["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(5))
    );

    env.write("docs/guide.md", b"# Guide\n\nInstall it twice.\n");
    std::fs::remove_file(env.path("docs/notes")).unwrap();
    let no_prune = ingest(&env, &[]);
    assert_eq!(
        (no_prune["updated"].as_u64(), no_prune["pruned"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(show("guide.md")["revision"], 2, "exactly one new revision");
    let pruned = ingest(&env, &["--prune"]);
    assert_eq!(
        (
            pruned["updated"].as_u64(),
            pruned["pruned"].as_u64(),
            pruned["unchanged"].as_u64()
        ),
        (Some(0), Some(1), Some(4))
    );
    assert_eq!(show("notes")["state"], "deleted");
    let colls = env.json_any(&["collection", "list"]);
    assert_eq!(colls["items"][0]["artifact_count"], 4);

    let runs = env.json_any(&["run", "list"]);
    let items = runs["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|r| r["status"] == "succeeded"));
    let shown = env.json_any(&["run", "show", &first_run]);
    let steps: Vec<&str> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["scan", "write"]);
    let m = &shown["run"]["manifest"];
    assert_eq!(m["outputs"].as_array().unwrap().len(), 5);
    assert_eq!(m["counts"]["new"], 5);
    assert!(m["audit_head"]["hash"].is_string());
    assert_eq!(shown["run"]["input"]["collection"], "handbook");
    assert!(env.ok(&["verify"]).contains("Store OK"));
}

/// X8: bad files are reported one by one, skipped, and the rest lands; exit 1.
#[test]
fn x8_bad_files_are_skipped_with_reasons() {
    let env = Env::init();
    env.write("docs/good.md", b"# Good\n");
    env.write("docs/bad.md", b"caf\xe9 in latin-1");
    env.write("docs/broken.json", b"{\"a\": ");
    env.write("docs/fine.txt", b"fine");
    std::os::unix::fs::symlink("/etc/passwd", env.path("docs/escape")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(env.path("docs/pipe"))
            .status()
            .unwrap()
            .success()
    );
    // (--verbose lists each skipped entry; without it they are counted)
    let out = env.run(&["ingest", "docs", "--collection", "handbook", "--verbose"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.md: invalid UTF-8 at byte 3 in a markdown file"),
        "{err}"
    );
    assert!(err.contains("broken.json: invalid JSON"), "{err}");
    assert!(err.contains("escape: symbolic link: not followed"), "{err}");
    assert!(err.contains("pipe: not a regular file"), "{err}");
    let summary = text(&out.stdout);
    assert!(
        summary.contains("4 files: 2 new, 0 updated, 0 unchanged, 0 pruned, 2 failed, 2 skipped"),
        "{summary}"
    );
    let runs = env.json_any(&["run", "list"]);
    assert_eq!(runs["items"][0]["status"], "partial");
    let e = env.run(&["ingest", "nowhere", "--collection", "handbook"]);
    assert_eq!(e.status.code(), Some(3));
    assert!(
        text(&e.stderr).contains("nowhere (no such file or directory) not found"),
        "{}",
        text(&e.stderr)
    );
    let e = env.run(&[
        "ingest",
        "docs/good.md",
        "--collection",
        "handbook",
        "--prune",
    ]);
    assert_eq!(e.status.code(), Some(2));
    assert!(text(&e.stderr).contains("--prune needs directories"));
    // symlinks and FIFOs alone are not failures
    std::fs::remove_file(env.path("docs/bad.md")).unwrap();
    std::fs::remove_file(env.path("docs/broken.json")).unwrap();
    let out = env.run(&["ingest", "docs", "--collection", "handbook"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

fn live_pid_of(child: &std::process::Child) -> u32 {
    child.id()
}

/// K6 + crash safety: SIGKILL a large ingest at several moments. Every time:
/// verify passes, the run shows as interrupted, no half-written revision is
/// visible, and a re-run converges to exactly one artifact per file.
#[test]
fn k6_a_killed_ingest_is_interrupted_and_a_rerun_converges() {
    let env = Env::init();
    let n = 1500;
    for i in 0..n {
        let body = format!(
            "# Doc {i}\n\n{}\n",
            "lorem ipsum dolor sit amet ".repeat(200 + i % 300)
        );
        env.write(
            &format!("docs/d{:02}/doc{i:05}.md", i % 37),
            body.as_bytes(),
        );
    }
    let mut interrupted = 0;
    for (round, delay_ms) in [40u64, 120, 300].into_iter().enumerate() {
        let mut child = env
            .cmd(&["--quiet", "ingest", "docs", "--collection", "handbook"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // wait for the run to begin (the store and index open first), then
        // let it work a while before the kill
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let running = env.json_any(&["run", "list", "--status", "running"]);
            if running["items"].as_array().is_some_and(|a| !a.is_empty())
                || child.try_wait().ok().flatten().is_some()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let pid = live_pid_of(&child);
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        let _ = child.wait();
        // reopen: the dead run is noticed and marked
        let verify = env.run(&["verify"]);
        assert!(
            verify.status.success(),
            "round {round}: {}",
            text(&verify.stdout)
        );
        let runs = env.json_any(&["run", "list"]);
        // killed before the run began (opening the store and the index
        // comes first): nothing to mark in this round
        if let Some(latest) = runs["items"].as_array().and_then(|a| a.first()) {
            assert!(
                latest["status"] == "interrupted" || latest["status"] == "succeeded",
                "round {round}: {latest}"
            );
            if latest["status"] == "interrupted" {
                interrupted += 1;
                assert!(
                    latest["manifest"]["interrupted"]["reason"]
                        .as_str()
                        .unwrap()
                        .contains("is gone")
                );
            }
        }
        assert!(
            runs["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] != "running"),
            "round {round}: {runs}"
        );
        // whatever committed is intact: every live artifact's content matches its digest
        let listed = env.json_any(&[
            "artifact",
            "list",
            "--collection",
            "handbook",
            "--limit",
            "1000",
        ]);
        for a in listed["items"].as_array().into_iter().flatten().take(50) {
            let name = format!("handbook/{}", a["name"].as_str().unwrap());
            let out = env.run(&["artifact", "show", &name, "--content"]);
            assert!(out.status.success(), "{name}");
            let src = std::fs::read(env.path("docs").join(a["name"].as_str().unwrap())).unwrap();
            assert_eq!(out.stdout, src, "{name} content");
        }
    }
    assert!(
        interrupted > 0,
        "no kill landed mid-ingest; the test proved nothing"
    );
    let r = ingest(&env, &[]);
    assert_eq!(r["failed"], 0);
    let total = r["new"].as_u64().unwrap() + r["unchanged"].as_u64().unwrap();
    assert_eq!(total, n as u64, "{r}");
    let status = env.json_any(&["db", "status"]);
    assert_eq!(status["artifacts_live"], n);
    assert_eq!(
        status["revisions"], n,
        "exactly one revision per file: nothing half-written or doubled"
    );
    assert!(env.ok(&["audit", "verify"]).contains("Audit chain OK"));
}

/// K5 (regression): an ingest touches only its own — `--prune` tombstones
/// only what an ingest of the same root put there (never a hand-put
/// artifact or another root's files), and `ingest .` from a folder that
/// holds the data directory (or another store, or a search index) never
/// ingests the store itself.
#[test]
fn k5_ingest_touches_only_its_own() {
    let env = Env::init();
    env.write("docs/a.md", b"# A\n");
    env.write("docs/b.md", b"# B\n");
    env.write("other/c.md", b"# C\n");
    env.write("hand.md", b"# Hand\n");
    ingest(&env, &[]);
    env.ok(&["ingest", "other", "--collection", "handbook"]);
    env.ok(&["artifact", "put", "handbook/intro.md", "--file", "hand.md"]);
    std::fs::remove_file(env.path("docs/b.md")).unwrap();
    let pruned = ingest(&env, &["--prune"]);
    assert_eq!(pruned["pruned"], 1, "{pruned}");
    let list = env.json_any(&["artifact", "list", "--collection", "handbook"]);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.md", "c.md", "intro.md"], "{list}");
    // the folder that holds the data directory, another store and an index
    let init = Command::new(env!("CARGO_BIN_EXE_kontextual"))
        .env_clear()
        .arg("--data-dir")
        .arg(env.path("elsewhere"))
        .arg("init")
        .output()
        .unwrap();
    assert!(init.status.success());
    let report = env.json_any(&["ingest", ".", "--collection", "everything"]);
    let list = env.json_any(&[
        "artifact",
        "list",
        "--collection",
        "everything",
        "--limit",
        "1000",
    ]);
    let names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("data/") && !n.starts_with("elsewhere/")),
        "the store was ingested: {names:?}"
    );
    assert!(names.contains(&"docs/a.md".to_owned()), "{names:?}");
    assert!(report.to_string().contains("never ingested"), "{report}");
}

/// K5/X5: the ingest summary's time is the whole time until searchable (it
/// includes the index's catch-up after the last file), and counts are
/// worded right ("1 file").
#[test]
fn k5_ingest_summary_time_covers_indexing() {
    let env = Env::init();
    env.write("docs/a.md", b"# A\n\nalpha\n");
    let report = ingest(&env, &[]);
    let elapsed = report["elapsed_ms"].as_u64().unwrap();
    let tail = report["indexed"]["tail_ms"].as_u64().unwrap();
    assert!(report["indexed"]["owner"].as_bool().unwrap(), "{report}");
    assert!(elapsed >= tail, "{report}");
    env.write("docs/b.md", b"# B\n\nbeta\n");
    let out = env.ok(&["ingest", "docs/b.md", "--collection", "single"]);
    assert!(out.starts_with("1 file: 1 new"), "{out}");
    assert!(out.contains("until searchable"), "{out}");
}

/// X5: skipped files are summarised as counts by reason; --verbose lists them.
#[cfg(unix)]
#[test]
fn x5_skipped_files_are_counted_by_reason() {
    let env = Env::init();
    env.write("docs/a.md", b"# A\n");
    for i in 0..3 {
        std::os::unix::fs::symlink(env.path("docs/a.md"), env.path(&format!("docs/link{i}.md")))
            .unwrap();
    }
    let out = env.run(&["ingest", "docs", "--collection", "handbook"]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("skipped 3 entries: symbolic link: not followed (--verbose lists them)"),
        "{err}"
    );
    assert!(!err.contains("link0.md"), "{err}");
    let out = env.run(&["ingest", "docs", "--collection", "handbook", "--verbose"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("link0.md") && err.contains("link2.md"),
        "{err}"
    );
}
