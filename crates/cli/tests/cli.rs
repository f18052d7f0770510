//! End-to-end tests: the real `kontextual` binary in a temporary directory.
//! Each command is a new process, so every step also proves persistence.

mod support;

use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Env, stderr, stdout};

fn seeded() -> Env {
    let env = Env::new();
    env.ok(&["init"]);
    env.ok(&["collection", "create", "handbook"]);
    let intro = env.write("intro.md", "# Intro\nHello\n");
    env.ok(&[
        "artifact",
        "put",
        "handbook/intro.md",
        "--file",
        intro.to_str().unwrap(),
        "--meta",
        "owner=docs",
    ]);
    env
}

/// K2, K3, K4, X3, X5: the README tour, one process per step.
#[test]
fn k2_tour_works_across_processes() {
    let env = seeded();
    let intro = env.write("intro.md", "# Intro\nHello world\n");
    let out = env.json(&[
        "artifact",
        "put",
        "handbook/intro.md",
        "--file",
        intro.to_str().unwrap(),
    ]);
    assert_eq!(out["change"], "updated");
    assert_eq!(out["artifact"]["revision"], 2);
    assert_eq!(
        out["artifact"]["metadata"]["owner"], "docs",
        "metadata kept on update"
    );
    let again = env.json(&[
        "artifact",
        "put",
        "handbook/intro.md",
        "--file",
        intro.to_str().unwrap(),
    ]);
    assert_eq!(
        again["change"],
        Value::Null,
        "unchanged content makes no revision"
    );

    let show = env.json(&["artifact", "show", "handbook/intro.md"]);
    assert_eq!(show["type"], "markdown");
    assert_eq!(show["media_type"], "text/markdown; charset=utf-8");
    assert_eq!(
        show["title"], "Intro",
        "title detected from the first heading"
    );
    assert_eq!(show["revision"], 2);
    assert_eq!(
        env.ok(&["artifact", "show", "handbook/intro.md", "--content"]),
        "# Intro\nHello world\n"
    );
    assert_eq!(
        env.ok(&[
            "artifact",
            "show",
            "handbook/intro.md",
            "--content",
            "--revision",
            "1"
        ]),
        "# Intro\nHello\n"
    );
    let id = show["id"].as_str().unwrap().to_owned();
    assert_eq!(
        env.json(&["artifact", "show", &id])["name"],
        "intro.md",
        "lookup by id"
    );

    let hist = env.json(&["artifact", "history", "handbook/intro.md"]);
    let items = hist["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["change"], "updated");
    assert_eq!(items[1]["prev_digest"], items[0]["digest"]);

    let diff = env.ok(&[
        "artifact",
        "diff",
        "handbook/intro.md",
        "--from",
        "1",
        "--to",
        "2",
    ]);
    assert!(
        diff.contains("-Hello\n") && diff.contains("+Hello world\n"),
        "{diff}"
    );

    let setup = env.write("setup.md", "setup\n");
    env.ok(&[
        "artifact",
        "put",
        "handbook/setup.md",
        "--file",
        setup.to_str().unwrap(),
    ]);
    let rel = env.json(&[
        "relate",
        "handbook/intro.md",
        "references",
        "handbook/setup.md",
    ]);
    assert_eq!(rel["type"], "references");
    assert_eq!(
        env.json(&["relation", "list"])["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.ok(&["artifact", "delete", "handbook/setup.md"]);
    assert!(
        env.json(&["relation", "list"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let all = env.json(&["relation", "list", "--include-deleted"]);
    assert_eq!(all["items"][0]["deleted"], true);
    let listed = env.json(&["artifact", "list", "--collection", "handbook"]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let colls = env.json(&["collection", "list"]);
    assert_eq!(colls["items"][0]["artifact_count"], 1);

    let verify = env.ok(&["audit", "verify"]);
    assert!(verify.contains("Audit chain OK"), "{verify}");
    let head = env.json(&["audit", "verify"])["head"].clone();
    let head = format!("{}:{}", head["seq"], head["hash"].as_str().unwrap());
    env.ok(&["audit", "verify", "--expect-head", &head]);
    assert!(env.ok(&["verify"]).contains("Store OK"));
    let status = env.json(&["db", "status"]);
    assert_eq!(status["schema_version"], status["latest_schema_version"]);
    assert_eq!(status["artifacts_live"], 1);
    assert_eq!(status["artifacts_deleted"], 1);
    let audit = env.json(&["audit", "list", "--action", "artifact"]);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "artifact.create",
            "artifact.update",
            "artifact.create",
            "artifact.delete"
        ]
    );
}

/// X8: each bad input gets a clear error and a meaningful exit code, and nothing stored is lost.
#[test]
fn x8_bad_input_is_refused_and_loses_nothing() {
    let env = seeded();
    let before = env.json(&["db", "status"]);
    let f = env.write("x.md", "x");
    let file = f.to_str().unwrap();
    let e = env.fails(
        2,
        &[
            "artifact",
            "put",
            "handbook/x.md",
            "--file",
            file,
            "--metadata",
            "{\"a\":",
        ],
    );
    assert!(e.contains("not valid JSON"), "{e}");
    let e = env.fails(
        2,
        &[
            "artifact",
            "put",
            "handbook/x.md",
            "--file",
            file,
            "--metadata",
            "[1]",
        ],
    );
    assert!(e.contains("must be a JSON object"), "{e}");
    let e = env.fails(
        2,
        &[
            "relate",
            "handbook/intro.md",
            "references",
            "handbook/ghost.md",
        ],
    );
    assert!(
        e.contains("dangling reference") && e.contains("handbook/ghost.md does not exist"),
        "{e}"
    );
    let e = env.fails(4, &["collection", "create", "handbook"]);
    assert!(e.contains("collection handbook already exists"), "{e}");
    let e = env.fails(
        4,
        &[
            "artifact",
            "put",
            "handbook/intro.md",
            "--file",
            file,
            "--expect-revision",
            "7",
        ],
    );
    assert!(
        e.contains("expected revision 7, but the current revision is 1"),
        "{e}"
    );
    let e = env.fails(
        4,
        &[
            "artifact",
            "put",
            "handbook/intro.md",
            "--file",
            file,
            "--create-only",
        ],
    );
    assert!(e.contains("already exists"), "{e}");
    let e = env.fails(2, &["artifact", "put", "No Such/x.md", "--file", file]);
    assert!(e.contains("No Such"), "{e}");
    let e = env.fails(
        8,
        &[
            "artifact",
            "put",
            "handbook/y.md",
            "--file",
            "/definitely/missing.md",
        ],
    );
    assert!(e.contains("cannot read /definitely/missing.md"), "{e}");
    let e = env.fails(
        2,
        &["artifact", "put", "handbook/../etc/passwd", "--file", file],
    );
    assert!(e.contains("'.' or '..'"), "{e}");
    let e = env.fails(
        2,
        &[
            "artifact",
            "put",
            "handbook/y.md",
            "--file",
            file,
            "--lifecycle",
            "shiny",
        ],
    );
    assert!(e.contains("draft, active, deprecated, archived"), "{e}");
    let e = env.fails(3, &["artifact", "show", "handbook/nothing.md"]);
    assert!(e.contains("artifact handbook/nothing.md not found"), "{e}");
    let e = env.fails(2, &["artifact", "purge", "handbook/intro.md"]);
    assert!(e.contains("--yes"), "{e}");
    let e = env.fails(2, &["--actor", "robot", "collection", "list"]);
    assert!(e.contains("KIND:NAME"), "{e}");
    let out = env.run(&["--json", "artifact", "show", "handbook/nothing.md"]);
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "not_found");

    let after = env.json(&["db", "status"]);
    for k in ["artifacts_live", "revisions", "audit_records", "blobs"] {
        assert_eq!(before[k], after[k], "{k} changed after refused input");
    }
    env.ok(&["verify"]);
}

/// X8: a directory that is not a store, a file that is not our database, a locked store.
/// X8 (issue 17): names, refs and metadata that are not valid UTF-8 are
/// refused with exit 2 naming where — never replaced lossily, never a
/// panic — on the plain and the `--json` error path; nothing is stored.
#[cfg(unix)]
#[test]
fn x8_arguments_that_are_not_utf8_are_refused_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let env = seeded();
    let before = env.json(&["db", "status"]);
    let f = env.write("x.md", "x");
    let bad = |s: &[u8]| std::ffi::OsStr::from_bytes(s).to_owned();
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                "artifact".into(),
                "put".into(),
                bad(b"handbook/x\xff.md"),
                "--file".into(),
                f.clone().into(),
            ],
            "argument ",
        ),
        (
            vec![
                "artifact".into(),
                "put".into(),
                "handbook/y.md".into(),
                "--file".into(),
                f.clone().into(),
                "--meta".into(),
                bad(b"k=v\xfe"),
            ],
            "the value of --meta",
        ),
        (vec!["search".into(), bad(b"caf\xc3")], "argument "),
    ];
    for (args, names) in &cases {
        let out = env.kx().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is not valid UTF-8") && err.contains(names),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        let out = env.kx().arg("--json").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["code"], "usage", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not valid UTF-8"),
            "{v}"
        );
        assert!(out.stderr.is_empty(), "--json errors go to stdout only");
    }
    assert_eq!(env.json(&["db", "status"]), before, "nothing stored");
}

#[test]
fn x8_foreign_and_locked_stores_are_clear_errors() {
    let env = Env::new();
    let e = env.fails(5, &["collection", "list"]);
    assert!(e.contains("run `kontextual init`"), "{e}");
    std::fs::create_dir_all(env.path("elsewhere")).unwrap();
    std::fs::write(env.path("elsewhere/notes.txt"), "keep me").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kontextual"))
        .env_clear()
        .args([
            "--data-dir",
            env.path("elsewhere").to_str().unwrap(),
            "init",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(env.path("elsewhere/notes.txt")).unwrap(),
        "keep me"
    );

    env.ok(&["init"]);
    env.ok(&["collection", "create", "h"]);
    std::fs::write(
        env.data().join("kontextual.toml"),
        "busy_timeout_ms = 300\n",
    )
    .unwrap();
    let holder = env.sqlite();
    holder
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO store_meta VALUES ('lock-test', 'x');")
        .unwrap();
    let e = env.fails(5, &["collection", "create", "other"]);
    assert!(
        e.contains("locked by another writer (waited 300 ms)"),
        "{e}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    env.ok(&["collection", "create", "other"]);
    assert_eq!(
        env.json(&["collection", "list"])["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    std::fs::write(env.data().join("kontextual.toml"), "colour = \"blue\"\n").unwrap();
    let e = env.fails(2, &["collection", "list"]);
    assert!(e.contains("unknown field `colour`"), "{e}");
}

/// X3: tampering with the audit log in the database is detected by `audit verify` and `verify`.
#[test]
fn x3_audit_verify_detects_tampering_and_truncation() {
    let env = seeded();
    let v = env.json(&["audit", "verify"]);
    let head = format!(
        "{}:{}",
        v["head"]["seq"],
        v["head"]["hash"].as_str().unwrap()
    );
    env.sqlite()
        .execute(
            "UPDATE audit_log SET target_name = 'handbook/other.md' WHERE seq = 2",
            [],
        )
        .unwrap();
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("record 2 was altered"),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("[audit_chain]"), "{}", stdout(&out));

    let env = seeded();
    let v = env.json(&["audit", "verify"]);
    let head2 = format!(
        "{}:{}",
        v["head"]["seq"],
        v["head"]["hash"].as_str().unwrap()
    );
    std::fs::remove_file(env.data().join("audit.head")).unwrap();
    env.sqlite()
        .execute("DELETE FROM audit_log WHERE seq = 2", [])
        .unwrap();
    let out = env.run(&["audit", "verify", "--expect-head", &head2]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("tail truncated"), "{}", stdout(&out));
    let _ = head;
}

/// K3: migrations status, a newer store refused, a pending migration reported.
#[test]
fn k3_schema_version_is_inspectable_and_newer_stores_are_refused() {
    let env = seeded();
    let s = env.ok(&["db", "status"]);
    assert!(
        s.contains("schema version      17 (this kontextual: 17)"),
        "{s}"
    );
    assert!(env.ok(&["db", "migrate"]).contains("up to date"));
    env.sqlite()
        .execute(
            "INSERT INTO schema_migrations VALUES (999, 'from-the-future', 'x', 0)",
            [],
        )
        .unwrap();
    let e = env.fails(5, &["artifact", "list"]);
    assert!(
        e.contains("schema is version 999, newer than this kontextual supports (17)"),
        "{e}"
    );
    let e = env.fails(5, &["db", "status"]);
    assert!(e.contains("upgrade kontextual"), "{e}");
}

/// K4: content streams in and out intact; purge erases it and `verify` stays clean.
#[test]
fn k4_large_content_streams_and_purge_erases() {
    let env = seeded();
    let big: String = (0..300_000).map(|i| format!("{i}\n")).collect();
    let mut child = env
        .cmd(&["artifact", "put", "handbook/big.txt", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(big.as_bytes())
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    let out = env.ok(&["artifact", "show", "handbook/big.txt", "--content"]);
    assert!(
        out == big,
        "content differs after streaming ({} vs {} bytes)",
        out.len(),
        big.len()
    );
    env.ok(&["artifact", "purge", "handbook/big.txt", "--yes"]);
    let e = env.fails(3, &["artifact", "show", "handbook/big.txt", "--content"]);
    assert!(e.contains("purged"), "{e}");
    let shown = env.json(&["artifact", "show", "handbook/big.txt"]);
    assert_eq!(shown["state"], "purged");
    assert_eq!(
        env.json(&["db", "status"])["blobs"],
        1,
        "only intro.md's blob is left"
    );
    env.ok(&["verify"]);
}

/// K4: `verify` names a corrupt blob (exit 1).
#[test]
fn k4_verify_reports_corrupt_content() {
    let env = seeded();
    env.sqlite()
        .execute("UPDATE blobs SET data = x'41'", [])
        .unwrap();
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("[corruption]") && text.contains("digest mismatch"),
        "{text}"
    );
}

/// X6, X9: config file < environment < flags; namespaces keep data apart.
#[test]
fn x6_config_layers_and_x9_namespaces() {
    let env = Env::new();
    env.ok(&["init"]);
    assert!(
        env.data().join("kontextual.toml").exists(),
        "init writes a commented config"
    );
    std::fs::write(
        env.data().join("kontextual.toml"),
        "namespace = \"alpha\"\n",
    )
    .unwrap();
    env.ok(&["collection", "create", "from-file"]);
    let mut c = env.cmd(&["collection", "create", "from-env"]);
    c.env("KONTEXTUAL_NAMESPACE", "beta");
    assert!(c.output().unwrap().status.success());
    let mut c = env.cmd(&["--namespace", "gamma", "collection", "create", "from-flag"]);
    c.env("KONTEXTUAL_NAMESPACE", "beta");
    assert!(c.output().unwrap().status.success());
    let names = |ns: &str| -> Vec<String> {
        env.json(&["--namespace", ns, "collection", "list"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("alpha"), ["from-file"]);
    assert_eq!(names("beta"), ["from-env"]);
    assert_eq!(names("gamma"), ["from-flag"]);
    assert!(names("default").is_empty());
    let e = env.fails(2, &["--namespace", "Bad NS", "collection", "list"]);
    assert!(e.contains("namespace"), "{e}");
}

/// X5: --help explains, and output goes to stdout while messages go to stderr.
#[test]
fn x5_help_explains_commands() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    for word in [
        "init",
        "collection",
        "artifact",
        "relate",
        "audit",
        "verify",
        "db",
        "Exit codes",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
    let put = env.ok(&["artifact", "put", "--help"]);
    assert!(
        put.contains("--expect-revision") && put.contains("--meta"),
        "{put}"
    );
}

/// K2, X5: the JSON documents scripts rely on, pinned as snapshots (ids and times redacted).
#[test]
fn k2_json_documents_are_stable() {
    let env = seeded();
    let intro = env.write("intro.md", "# Intro\nHello again\n");
    env.ok(&[
        "artifact",
        "put",
        "handbook/intro.md",
        "--file",
        intro.to_str().unwrap(),
        "--lifecycle",
        "deprecated",
    ]);
    let history = env.json(&["artifact", "history", "handbook/intro.md"]);
    insta::assert_json_snapshot!("artifact_history", history, {
        ".items[].artifact_id" => "[id]",
        ".items[].created_at" => "[time]",
        ".items[].correlation_id" => "[correlation]",
        ".items[].provenance.source_path" => "[path]",
        ".items[].provenance.source_mtime" => "[time]",
    });
    let status = env.json(&["db", "status"]);
    // the engines number their schemas apart, so each has its own document
    let name = match env.engine() {
        support::Engine::Sqlite => "db_status",
        support::Engine::Postgres => "db_status_postgres",
    };
    insta::assert_json_snapshot!(name, status, {
        ".location" => "[location]",
        ".store_id" => "[id]",
        ".size_bytes" => "[size]",
        ".audit_head.hash" => "[hash]",
    });
}

/// X5, X8: usage errors are JSON under --json; limits are validated; single revisions are shown.
#[test]
fn x5_usage_errors_and_revision_views() {
    let env = seeded();
    let out = env.run(&["--json", "artifact", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["code"], "usage");
    env.fails(2, &["artifact", "list", "--limit", "0"]);
    let rev = env.json(&["artifact", "show", "handbook/intro.md", "--revision", "1"]);
    assert_eq!(rev["metadata"]["owner"], "docs");
    assert_eq!(rev["change"], "created");
    let e = env.fails(2, &["artifact", "diff", "handbook/intro.md"]);
    assert!(e.contains("nothing to compare"), "{e}");
    let e = env.fails(2, &["artifact", "show", "/etc/passwd"]);
    assert!(e.contains("not an absolute path"), "{e}");
}

/// K2: the same bytes from another path or with a new mtime are not a new revision;
/// a derived-from reference must point at a live artifact.
#[test]
fn k2_provenance_only_changes_make_no_revision() {
    let env = seeded();
    let copy = env.write("copy-of-intro.md", "# Intro\nHello\n");
    let out = env.json(&[
        "artifact",
        "put",
        "handbook/intro.md",
        "--file",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out["change"], Value::Null, "{out}");
    let f = env.write("d.md", "derived");
    let e = env.fails(
        2,
        &[
            "artifact",
            "put",
            "handbook/d.md",
            "--file",
            f.to_str().unwrap(),
            "--derived-from",
            "handbook/ghost.md",
        ],
    );
    assert!(
        e.contains("dangling reference: derived-from artifact handbook/ghost.md does not exist"),
        "{e}"
    );
    let ok = env.json(&[
        "artifact",
        "put",
        "handbook/d.md",
        "--file",
        f.to_str().unwrap(),
        "--derived-from",
        "handbook/intro.md",
        "--transformation",
        "copy",
    ]);
    assert_eq!(ok["artifact"]["provenance"]["transformation"], "copy");
}

/// K4: reading corrupted content ends with the corruption exit code, not success.
#[test]
fn k4_corrupted_content_is_not_served_silently() {
    let env = seeded();
    env.sqlite()
        .execute("UPDATE blobs SET data = x'41414141'", [])
        .unwrap();
    let e = env.fails(7, &["artifact", "show", "handbook/intro.md", "--content"]);
    assert!(e.contains("is corrupted"), "{e}");
}

/// X3 (regression): every audited CLI command records who acted (`--actor`),
/// never the actor it acts on (a grantee, a key's actor, a clearance's
/// subject), which goes in the target.
#[test]
fn x3_every_audited_cli_command_names_the_acting_actor() {
    let env = Env::new();
    let note = env.write("a.md", "# A\n\nalpha\n");
    let note_b = env.write("b.md", "# B\n\nbeta\n");
    let alice = |args: &[&str]| {
        let mut a = vec!["--actor", "user:alice"];
        a.extend_from_slice(args);
        env.ok(&a)
    };
    alice(&["init"]);
    alice(&["collection", "create", "drafts"]);
    alice(&[
        "artifact",
        "put",
        "drafts/a.md",
        "--file",
        note.to_str().unwrap(),
    ]);
    alice(&[
        "artifact",
        "put",
        "drafts/b.md",
        "--file",
        note_b.to_str().unwrap(),
    ]);
    alice(&["relate", "drafts/a.md", "references", "drafts/b.md"]);
    alice(&["grant", "agent:zz", "read", "--collection", "drafts"]);
    alice(&["revoke-grant", "agent:zz", "read", "--collection", "drafts"]);
    alice(&["clearance", "set", "agent:zz", "confidential"]);
    let token = alice(&[
        "key",
        "create",
        "--name",
        "r",
        "--for",
        "agent:reader",
        "--scopes",
        "read",
    ]);
    let key_id = token.trim().split('_').nth(1).unwrap().to_owned();
    alice(&["key", "revoke", &key_id]);
    alice(&["hold", "set", "drafts/a.md", "--reason", "case 1"]);
    alice(&["hold", "release", "drafts/a.md"]);
    alice(&["quarantine", "set", "drafts/b.md", "--reason", "scan"]);
    alice(&["quarantine", "release", "drafts/b.md"]);
    alice(&["artifact", "delete", "drafts/b.md"]);
    let records = env.json(&["audit", "list", "--limit", "1000"]);
    let records = records["items"].as_array().unwrap();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for wanted in [
        "collection.create",
        "artifact.create",
        "relation.create",
        "grant.create",
        "grant.delete",
        "clearance.set",
        "key.create",
        "key.revoke",
        "hold.set",
        "hold.release",
        "artifact.quarantine",
        "artifact.release",
        "artifact.delete",
    ] {
        assert!(
            actions.contains(&wanted),
            "{wanted} not audited: {actions:?}"
        );
    }
    for r in records {
        assert_eq!(r["actor"], "user:alice", "{r}");
    }
    // the subjects are in the targets
    let target = |action: &str| {
        records
            .iter()
            .find(|r| r["action"] == action)
            .map(|r| format!("{} {}", r["target_id"], r["target_name"]))
            .unwrap()
    };
    assert!(target("grant.create").contains("agent:zz"));
    assert!(target("clearance.set").contains("agent:zz"));
}

/// X5: `artifact put` creates a missing collection, as `ingest` does — one
/// rule for both.
#[test]
fn x5_put_creates_a_missing_collection_like_ingest() {
    let env = Env::new();
    env.ok(&["init"]);
    let file = env.write("x.md", "# X\n");
    env.ok(&[
        "artifact",
        "put",
        "fresh/x.md",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        env.json(&["collection", "show", "fresh"])["artifact_count"],
        1
    );
    let audit = env.json(&["audit", "list", "--action", "collection.create"]);
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
}

/// X5: one rule for errors — with `--json`, exactly one JSON object on
/// stdout and nothing on stderr; without, one `error:` line on stderr and
/// nothing on stdout — for every kind of failure.
#[test]
fn x5_errors_follow_one_rule_for_every_exit_code() {
    let env = seeded();
    let cases: [(i32, &str, Vec<&str>); 5] = [
        (2, "usage", vec!["artifact", "frobnicate"]),
        (2, "invalid_input", vec!["artifact", "show", "/etc/passwd"]),
        (
            3,
            "not_found",
            vec!["artifact", "show", "handbook/nothing.md"],
        ),
        (4, "conflict", vec!["collection", "create", "handbook"]),
        (
            8,
            "io_error",
            vec!["artifact", "put", "handbook/z.md", "--file", "no-such-file"],
        ),
    ];
    for (code, name, args) in &cases {
        let mut json_args = vec!["--json"];
        json_args.extend(args.iter().copied());
        let out = env.run(&json_args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}");
        let text = stdout(&out);
        assert_eq!(text.trim().lines().count(), 1, "one object: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], *name, "{v}");
        assert!(
            stderr(&out).is_empty(),
            "{args:?} --json wrote to stderr: {}",
            stderr(&out)
        );
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}");
        assert!(
            stdout(&out).is_empty(),
            "{args:?} wrote to stdout: {}",
            stdout(&out)
        );
        assert!(!stderr(&out).is_empty());
    }
    // a store that is not there: 5
    let out = Command::new(env!("CARGO_BIN_EXE_kontextual"))
        .env_clear()
        .args(["--json", "--data-dir"])
        .arg(env.path("nowhere"))
        .args(["artifact", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // the code the HTTP API answers for the same failure (one error table)
    assert_eq!(v["error"]["code"], "unavailable");
}

/// X1/X5: a new key says what it does not do by itself — its actor without
/// grants can do nothing, and the first key makes every request need one.
#[test]
fn x1_key_create_warns_about_grants_and_the_first_key() {
    let env = seeded();
    let out = env.run(&[
        "key", "create", "--name", "a", "--for", "agent:a", "--scopes", "read",
    ]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("agent:a has no grants yet"), "{err}");
    assert!(err.contains("first API key"), "{err}");
    assert!(
        stdout(&out).trim().starts_with("kx_"),
        "the token alone on stdout"
    );
    env.ok(&["grant", "agent:b", "read", "--collection", "handbook"]);
    let v = env.json(&[
        "key", "create", "--name", "b", "--for", "agent:b", "--scopes", "read",
    ]);
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");
}

/// X5: `-q` leaves only errors and requested data (a change is confirmed by
/// its exit status); tables piped to another program are tab-separated
/// lines without padding or box drawing.
#[test]
fn x5_quiet_and_piped_tables() {
    let env = seeded();
    for args in [
        vec![
            "-q",
            "quarantine",
            "set",
            "handbook/intro.md",
            "--reason",
            "scan",
        ],
        vec!["-q", "quarantine", "release", "handbook/intro.md"],
        vec!["-q", "hold", "set", "handbook/intro.md", "--reason", "case"],
        vec!["-q", "hold", "release", "handbook/intro.md"],
        vec!["-q", "clearance", "set", "agent:x", "internal"],
        vec!["-q", "grant", "agent:x", "read"],
    ] {
        let out = env.run(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }
    let listed = env.ok(&["-q", "artifact", "list"]);
    let mut lines = listed.lines();
    let header = lines.next().unwrap();
    assert!(header.contains('\t') && !header.contains('│'), "{listed}");
    assert!(lines.any(|l| l.contains("intro.md")), "{listed}");
    assert!(!listed.contains("  "), "no padding: {listed:?}");
}
