//! O1/O2 end to end with the real binary: background ingest, workers
//! killed with SIGKILL, poison jobs, cancel, quarantine, re-run, re-index
//! and repair.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Store;

fn job(data: &Store, id: &str) -> Value {
    data.json(&["job", "show", id])
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(data: &Store, args: &[&str]) -> Worker {
    Worker(
        data.kx()
            .args(["--quiet", "worker"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn tree(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("d{}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}.md")),
            format!(
                "# File {i}\n\nword{i} deploy rollback {}\n",
                "text ".repeat(50)
            ),
        )
        .unwrap();
    }
}

/// O2: a worker killed with SIGKILL in the middle of an ingest job: the
/// job's lease expires, another worker rescues it, and in effect the ingest
/// happened once — every file present once, at revision 1, and the job
/// succeeded on its second attempt with the first recorded as lost.
#[test]
fn o2_a_sigkilled_worker_job_is_rescued_and_completed_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = Store::new(dir.path().join("data"));
    let docs = dir.path().join("docs");
    let n = 4000;
    tree(&docs, n);
    data.ok(&["init"]);
    let id = data
        .ok(&[
            "ingest",
            docs.to_str().unwrap(),
            "--collection",
            "big",
            "--background",
        ])
        .trim()
        .to_owned();
    let mut first = spawn_worker(&data, &["--lease", "1", "--threads", "1"]);
    wait_until("the job to run", Duration::from_secs(30), || {
        job(&data, &id)["state"] == "running"
    });
    // let it write some batches, then kill it without warning
    std::thread::sleep(Duration::from_millis(150));
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let j = job(&data, &id);
    assert_eq!(j["state"], "running", "killed mid-job: {j}");
    // a new worker rescues the job once its 1 s lease has expired
    let _second = spawn_worker(&data, &["--lease", "5"]);
    wait_until(
        "the rescued job to finish",
        Duration::from_secs(120),
        || job(&data, &id)["state"] == "succeeded",
    );
    let j = job(&data, &id);
    let outcomes: Vec<&str> = j["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["lost", "succeeded"], "{j}");
    assert!(
        j["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("lease expired"),
        "{j}"
    );
    // the runs link back to the job, and the killed one is not left running
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{j}");
    assert_eq!(runs[1]["status"], "succeeded");
    let killed_run = data.json(&["run", "show", runs[0]["id"].as_str().unwrap()]);
    assert_eq!(killed_run["run"]["job_id"], id.as_str());
    assert_ne!(killed_run["run"]["status"], "running", "{killed_run}");
    // exactly once in effect: every file once, nothing written twice
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["artifact", "list", "--collection", "big", "--limit", "1000"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let page = data.json(&args);
        listed.extend(page["items"].as_array().unwrap().clone());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed.len(), n);
    assert!(listed.iter().all(|a| a["revision"] == 1));
    let report = &j["report"];
    assert_eq!(
        report["new"].as_u64().unwrap() + report["unchanged"].as_u64().unwrap(),
        n as u64,
        "{report}"
    );
    assert_eq!(
        data.json(&["search", "word3999"])["hits"][0]["ref"],
        "big/d19/f3999.md"
    );
    data.ok(&["verify"]);
}

/// O2: a poison job fails, retries with backoff, and ends dead with its
/// error history, while the jobs queued behind it all succeed.
#[test]
fn o2_a_poison_job_ends_dead_without_blocking_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = Store::new(dir.path().join("data"));
    data.ok(&["init"]);
    let poison = data
        .ok(&[
            "job",
            "enqueue",
            "noop",
            "--payload",
            r#"{"fail":"the input is cursed"}"#,
            "--max-attempts",
            "2",
        ])
        .trim()
        .to_owned();
    let fatal = data
        .ok(&[
            "job",
            "enqueue",
            "noop",
            "--payload",
            r#"{"fail":"bad payload","permanent":true}"#,
        ])
        .trim()
        .to_owned();
    // payloads carry instructions, not data
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, format!(r#"{{"fail":"{}"}}"#, "x".repeat(300_000))).unwrap();
    let arg = format!("@{}", huge.display());
    let out = data.run(&["job", "enqueue", "noop", "--payload", &arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("over the limit"));
    let good: Vec<String> = (0..5)
        .map(|_| data.ok(&["job", "enqueue", "noop"]).trim().to_owned())
        .collect();
    data.ok(&["worker", "--drain"]);
    for g in &good {
        assert_eq!(job(&data, g)["state"], "succeeded");
    }
    assert_eq!(job(&data, &fatal)["state"], "dead", "not retried");
    let p = job(&data, &poison);
    assert_eq!(p["state"], "failed", "waiting for its retry: {p}");
    // the retry is due within the backoff (≤ 2 s for a first retry)
    wait_until("the retry to be due", Duration::from_secs(5), || {
        data.ok(&["worker", "--drain"]);
        job(&data, &poison)["state"] == "dead"
    });
    let p = job(&data, &poison);
    let errors: Vec<&str> = p["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{p}");
    assert!(errors.iter().all(|e| e.contains("the input is cursed")));
    let dead = data.json(&["job", "list", "--state", "dead"]);
    assert_eq!(dead["items"].as_array().unwrap().len(), 2);
    // an operator retries it: one more attempt is allowed, and it is audited
    let r = data.json(&["job", "retry", &poison]);
    assert_eq!(r["job"]["state"], "queued");
    assert_eq!(r["job"]["max_attempts"], 3);
    let audit = data.json(&["audit", "list", "--action", "job.retry"]);
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
}

/// O2: cancelling a running job stops it cooperatively (its worker sees
/// the request at its next heartbeat); cancelling again changes nothing.
#[test]
fn o2_a_running_job_is_cancelled_cooperatively() {
    let dir = tempfile::tempdir().unwrap();
    let data = Store::new(dir.path().join("data"));
    data.ok(&["init"]);
    let id = data
        .ok(&[
            "job",
            "enqueue",
            "noop",
            "--payload",
            r#"{"sleep_ms":60000}"#,
        ])
        .trim()
        .to_owned();
    let _w = spawn_worker(&data, &["--lease", "1"]);
    wait_until("the job to run", Duration::from_secs(30), || {
        job(&data, &id)["state"] == "running"
    });
    let t = data.json(&["job", "cancel", &id]);
    assert_eq!(t["job"]["stop_requested"], "cancelled", "{t}");
    wait_until("the worker to stop it", Duration::from_secs(10), || {
        job(&data, &id)["state"] == "cancelled"
    });
    let j = job(&data, &id);
    assert_eq!(j["attempts"][0]["outcome"], "stopped");
    let again = data.json(&["job", "cancel", &id]);
    assert_eq!(again["changed"], false);
    let actions: Vec<String> = data.json(&["audit", "list", "--action", "job"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["job.enqueue", "job.cancel"]);
}

/// O2: a quarantined artifact stays in the store but leaves search, and
/// ingest skips its file; release brings it back. Quarantined jobs wait.
#[test]
fn o2_quarantine_excludes_from_search_and_processing_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let data = Store::new(dir.path().join("data"));
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("bad.md"), "# Bad\n\nsuspicious payload\n").unwrap();
    std::fs::write(docs.join("good.md"), "# Good\n\nfine payload\n").unwrap();
    data.ok(&["init"]);
    data.ok(&["ingest", docs.to_str().unwrap(), "--collection", "h"]);
    assert_eq!(data.json(&["search", "payload"])["total"], 2);
    data.ok(&[
        "quarantine",
        "set",
        "h/bad.md",
        "--reason",
        "malware scan hit",
    ]);
    let s = data.json(&["search", "payload"]);
    assert_eq!(s["total"], 1, "{s}");
    assert_eq!(s["hits"][0]["ref"], "h/good.md");
    assert_eq!(data.json(&["artifact", "show", "h/bad.md"])["revision"], 1);
    // nor does it reach agents through context packages or relations
    let out = data.run(&[
        "context", "build", "--name", "c", "--select", "h/bad.md", "--budget", "500",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("quarantined"));
    data.ok(&["relate", "h/good.md", "references", "h/bad.md"]);
    let s = data.json(&["search", "fine", "--expand", "references"]);
    assert_eq!(
        s["hits"][0]["related"].as_array().map_or(0, Vec::len),
        0,
        "{s}"
    );
    // ingest leaves it alone, and says so
    std::fs::write(docs.join("bad.md"), "# Bad\n\nchanged payload\n").unwrap();
    let r = data.json(&["ingest", docs.to_str().unwrap(), "--collection", "h"]);
    assert!(r["skipped"].to_string().contains("quarantined"), "{r}");
    assert_eq!(data.json(&["artifact", "show", "h/bad.md"])["revision"], 1);
    assert_eq!(
        data.json(&["index", "status"])["health"],
        "ok",
        "a quarantined artifact is not a divergence"
    );
    data.ok(&["quarantine", "release", "h/bad.md"]);
    assert_eq!(data.json(&["search", "payload"])["total"], 2);
    let s = data.json(&["search", "fine", "--expand", "references"]);
    assert_eq!(s["hits"][0]["related"][0]["ref"], "h/bad.md", "{s}");
    // a quarantined job is never claimed until released
    let id = data.ok(&["job", "enqueue", "noop"]).trim().to_owned();
    data.ok(&["job", "quarantine", &id]);
    data.ok(&["worker", "--drain"]);
    assert_eq!(job(&data, &id)["state"], "quarantined");
    data.ok(&["job", "release", &id]);
    data.ok(&["worker", "--drain"]);
    assert_eq!(job(&data, &id)["state"], "succeeded");
}

/// O2/K6: re-run a past ingest run from its input bundle; re-index a
/// collection; repair a store whose index was damaged.
#[test]
fn o2_rerun_reindex_and_repair() {
    let dir = tempfile::tempdir().unwrap();
    let data = Store::new(dir.path().join("data"));
    let docs = dir.path().join("docs");
    tree(&docs, 30);
    data.ok(&["init"]);
    let first = data.json(&["ingest", docs.to_str().unwrap(), "--collection", "h"]);
    let run_id = first["run_id"].as_str().unwrap().to_owned();
    std::fs::write(docs.join("d0/f0.md"), "# File 0\n\nrewritten\n").unwrap();
    let again = data.json(&["rerun", &run_id, "--wait"]);
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(again["report"]["updated"], 1);
    assert_eq!(again["report"]["unchanged"], 29);
    let new_run = again["runs"][0]["id"].as_str().unwrap();
    assert_ne!(new_run, run_id);
    let r = data.json(&["reindex", "--collection", "h"]);
    assert_eq!(r["artifacts"], 30);
    assert_eq!(
        data.run(&["reindex", "--collection", "nope"]).status.code(),
        Some(3)
    );
    // a healthy store: nothing to repair
    let r = data.json(&["repair"]);
    assert!(r["remaining"].as_array().unwrap().is_empty(), "{r}");
    // damage the index: repair rebuilds it, and search works again
    let index = data.dir().join("index");
    for e in std::fs::read_dir(&index).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "idx") {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    let r = data.json(&["repair"]);
    assert!(r["fixed"].to_string().contains("search index"), "{r}");
    assert!(r["remaining"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(data.json(&["search", "rewritten"])["total"], 1);
    data.ok(&["verify"]);
    // both recovery runs are recorded
    let kinds: Vec<String> = data.json(&["run", "list"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"repair".to_owned()) && kinds.contains(&"reindex".to_owned()));
}
