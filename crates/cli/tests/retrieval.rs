//! K5 (sections), K7 (context packages), K8 (search and the index) through
//! the real binary, one process per step, so every step crosses the
//! projection's catch-up from the change feed.

mod support;

use serde_json::Value;
use support::{Env, text};

/// Writes `body` to a file and puts it as `target`.
fn put(env: &Env, target: &str, body: &str, extra: &[&str]) {
    let file = format!("in/{}", target.replace('/', "_"));
    env.write(&file, body);
    let mut a = vec!["artifact", "put", target, "--file", &file];
    a.extend_from_slice(extra);
    env.ok(&a);
}

fn refs(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["ref"].as_str().unwrap().to_owned())
        .collect()
}

const GUIDE: &str = "# Guide\n\nHow we deploy the service to production.\n\n## Installation\n\n### Linux\n\nRun apt install kontextual.\n\n### macOS\n\nUse brew install kontextual on a Mac.\n\n## Retry policy\n\nThree attempts with exponential backoff, then page the on-call.\n";

/// A small fixed corpus whose ranking is known.
fn corpus() -> Env {
    let env = Env::init();
    env.write("docs/guide.md", GUIDE);
    env.write(
        "docs/rust/borrow.md",
        "# The borrow checker\n\nThe borrow checker enforces lifetimes. Lifetimes name the regions where a borrow is valid.\n",
    );
    env.write(
        "docs/rust/traits.md",
        "# Traits\n\nTraits describe shared behaviour. A borrow can appear in a method signature.\n",
    );
    env.write(
        "docs/runbook.html",
        "<html><head><title>Deploy runbook</title></head><body><h1>Deploy</h1><p>Roll out with canaries; the retry policy applies to failed steps.</p></body></html>",
    );
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    env
}

/// K8: BM25 ranking on a fixture corpus, in an exact order; phrases;
/// section hits; snippets with highlights; total and paging.
#[test]
fn k8_search_ranks_in_a_known_order() {
    let env = corpus();
    let v = env.json_any(&["search", "borrow checker lifetimes"]);
    assert_eq!(
        refs(&v),
        ["handbook/rust/borrow.md", "handbook/rust/traits.md"]
    );
    assert_eq!(v["total"], 2);
    assert_eq!(v["index"]["lag"], 0);
    let snip = &v["hits"][0]["snippet"];
    let (a, b) = (
        snip["highlights"][0][0].as_u64().unwrap() as usize,
        snip["highlights"][0][1].as_u64().unwrap() as usize,
    );
    assert_eq!(
        snip["text"].as_str().unwrap()[a..b].to_lowercase(),
        "borrow"
    );
    assert_eq!(v["hits"][0]["title"], "The borrow checker");
    // a phrase matches only where the words are adjacent; the shorter
    // document ranks first (BM25 length normalisation)
    let v = env.json_any(&["search", "--syntax", "\"retry policy\""]);
    assert_eq!(refs(&v), ["handbook/runbook.html", "handbook/guide.md"]);
    let v = env.json_any(&["search", "--syntax", "\"policy retry\""]);
    assert!(refs(&v).is_empty());
    // sections: the heading-path selector addresses the hit
    let v = env.json_any(&["search", "--syntax", "\"retry policy\"", "--sections"]);
    // an HTML page is split by its headings like markdown
    assert_eq!(
        refs(&v),
        [
            "handbook/guide.md#retry-policy",
            "handbook/runbook.html#deploy"
        ]
    );
    // "install" and the heading "Installation" share a stem; headings weigh
    // more; the shorter of the two subsections ranks first (no exact tie,
    // whose order would be the index's)
    let v = env.json_any(&["search", "install", "--sections"]);
    assert_eq!(
        refs(&v),
        [
            "handbook/guide.md#installation",
            "handbook/guide.md#installation/linux",
            "handbook/guide.md#installation/macos"
        ]
    );
    // users name the same fields whatever the granularity
    let v = env.json_any(&["search", "--syntax", "heading:linux", "--sections"]);
    assert_eq!(refs(&v), ["handbook/guide.md#installation/linux"]);
    let v = env.json_any(&["search", "--syntax", "title:traits"]);
    assert_eq!(refs(&v), ["handbook/rust/traits.md"]);
    // paging: stable order, total, next offset
    let all = env.json_any(&["search", "--syntax", "*", "--limit", "100"]);
    assert_eq!(all["total"], 4);
    let p1 = env.json_any(&["search", "--syntax", "*", "--limit", "3"]);
    assert_eq!(p1["next_offset"], 3);
    let p2 = env.json_any(&["search", "--syntax", "*", "--limit", "3", "--offset", "3"]);
    assert!(p2["next_offset"].is_null());
    let mut paged = refs(&p1);
    paged.extend(refs(&p2));
    assert_eq!(paged, refs(&all));
    // the table names the hit; piped, the snippet is plain text (matches
    // are bold only on a terminal, so no marker collides with the content)
    let out = env.ok(&["search", "lifetimes"]);
    assert!(out.contains("handbook/rust/borrow.md"), "{out}");
    assert!(out.contains("Lifetimes name the regions"), "{out}");
    assert!(!out.contains("**") && !out.contains('\x1b'), "{out}");
}

/// K8: filters by collection, type, lifecycle, metadata and date.
#[test]
fn k8_search_filters() {
    let env = corpus();
    env.ok(&["collection", "create", "ops"]);
    put(
        &env,
        "ops/payments.md",
        "# Payments\n\nRetry policy for card payments.\n",
        &["--meta", "team=payments", "--lifecycle", "deprecated"],
    );
    put(
        &env,
        "ops/search.md",
        "# Search\n\nRetry policy for the search cluster.\n",
        &["--meta", "team=search"],
    );
    let q = |extra: &[&str]| {
        let mut a = vec!["search", "retry policy"];
        a.extend_from_slice(extra);
        refs(&env.json_any(&a))
    };
    assert_eq!(
        q(&["--collection", "ops", "--meta", "team=payments"]),
        ["ops/payments.md"]
    );
    assert_eq!(q(&["--type", "html"]), ["handbook/runbook.html"]);
    assert_eq!(q(&["--lifecycle", "deprecated"]), ["ops/payments.md"]);
    assert_eq!(
        q(&["--since", "2000-01-01", "--collection", "ops"]).len(),
        2
    );
    assert!(q(&["--until", "2000-01-01"]).is_empty());
    assert_eq!(
        q(&["--collection", "ops", "--collection", "handbook"]).len(),
        4
    );
}

/// K8: questions and pasted text are plain text, searched as words: every
/// class of punctuation, unbalanced quotes and brackets, operators as words,
/// field-like colons. None is an error; each finds what its words find.
#[test]
fn k8_questions_are_searched_as_words() {
    let env = corpus();
    let words = |q: &str| refs(&env.json_any(&["search", "--syntax", q]));
    for (question, same_as) in [
        ("notes on /retry policy/ in CI .", "notes retry policy CI"),
        (
            "why do deploys appear to be,. - (a) slower than before, (b) flaky on CI ?",
            "deploys appear slower than before b flaky CI",
        ),
        ("what is \"retry", "retry"),
        ("AND OR NOT retry", "retry"),
        ("c++ vs c# -- which borrow?", "c vs c borrow"),
        ("retry: policy!", "retry policy"),
        ("title:traits", "title traits"),
        ("+retry -policy", "retry policy"),
        (
            "[retry] {policy} <deploy> (borrow",
            "retry policy deploy borrow",
        ),
        (
            "don't `retry` ~policy^2 'deploy' ; borrow | lifetimes & traits",
            "don t retry policy 2 deploy borrow lifetimes traits",
        ),
        ("retry\\policy*", "retry policy"),
        (
            "https://example.org/retry?policy=1#deploy",
            "https example org retry policy 1 deploy",
        ),
    ] {
        let v = env.json_any(&["search", question]);
        assert_eq!(refs(&v), words(same_as), "{question:?}: {v}");
        assert!(!refs(&v).is_empty(), "{question:?} found nothing");
    }
    // no match is an empty answer, not an error
    let v = env.json_any(&["search", "what is \"ownership"]);
    assert_eq!(v["total"], 0, "{v}");
    // context packages and exports take the same plain text
    env.ok(&[
        "context",
        "build",
        "--name",
        "q",
        "--budget",
        "500",
        "--query",
        "why do deploys (a) retry -- or not?",
    ]);
    env.ok(&["export", "--query", "AND OR \"retry", "--out", "q.tar.zst"]);
}

/// K8: English stop words do not rank: a question is about its topic words.
#[test]
fn k8_stop_words_do_not_dominate_questions() {
    let env = Env::init();
    env.write(
        "docs/functions.md",
        "# How Functions Work\n\nHow do functions work? A function is how you name a step.\n",
    );
    env.write(
        "docs/traits.md",
        "# Traits\n\nTraits define shared behaviour that types implement.\n",
    );
    env.ok(&["ingest", "docs", "--collection", "book"]);
    let v = env.json_any(&["search", "how do traits work"]);
    assert_eq!(refs(&v)[0], "book/traits.md", "{v}");
}

/// K8: bad input is a clear error with the right exit code.
#[test]
fn k8_search_bad_input_is_explained() {
    let env = corpus();
    // an empty query is refused, not read as "everything"
    for q in ["", "  "] {
        let e = env.fails(2, &["search", q]);
        assert!(e.contains("empty"), "{q:?}: {e}");
    }
    // query syntax: everyday punctuation is text, not syntax
    for q in [
        "retry: policy",
        "don't retry",
        "what's the policy?",
        "see https://x/y at 12:30",
        "[retry]",
    ] {
        let v = env.json_any(&["search", "--syntax", q]);
        assert!(v["hits"].is_array(), "{q}: {v}");
    }
    assert_eq!(
        refs(&env.json_any(&["search", "--syntax", "retry: policy"])),
        refs(&env.json_any(&["search", "--syntax", "retry policy"]))
    );
    let e = env.fails(2, &["search", "--syntax", "retry \"unclosed"]);
    assert!(
        e.contains("double quote at character 7 is never closed"),
        "{e}"
    );
    let e = env.fails(2, &["search", "--syntax", "(retry policy"]);
    assert!(e.contains("'(' at character 1 is never closed"), "{e}");
    let e = env.fails(2, &["search", "--syntax", "retry)"]);
    assert!(e.contains("unmatched ')' at character 6"), "{e}");
    let e = env.fails(2, &["search", "--syntax", "-retry"]);
    assert!(e.contains("only excludes"), "{e}");
    let e = env.fails(3, &["search", "x", "--collection", "nope"]);
    assert!(e.contains("collection nope not found"), "{e}");
    let e = env.fails(2, &["search", "x", "--lifecycle", "gone"]);
    assert!(e.contains("draft"), "{e}");
    let e = env.fails(2, &["search", "x", "--meta", "novalue"]);
    assert!(e.contains("KEY=VALUE"), "{e}");
    let e = env.fails(2, &["search", "x", "--depth", "2"]);
    assert!(e.contains("--expand"), "{e}");
}

/// K8: updates and deletes show in search at once (each step is a new
/// process: the index catches up from the change feed before answering).
#[test]
fn k8_search_reflects_updates_and_deletes() {
    let env = corpus();
    put(&env, "handbook/note.md", "# Note\n\nzebra crossing\n", &[]);
    assert_eq!(
        refs(&env.json_any(&["search", "zebra"])),
        ["handbook/note.md"]
    );
    put(&env, "handbook/note.md", "# Note\n\ngiraffe neck\n", &[]);
    assert!(refs(&env.json_any(&["search", "zebra"])).is_empty());
    let v = env.json_any(&["search", "giraffe"]);
    assert_eq!(refs(&v), ["handbook/note.md"]);
    assert_eq!(v["hits"][0]["revision"], 2);
    env.ok(&["artifact", "delete", "handbook/note.md"]);
    assert!(refs(&env.json_any(&["search", "giraffe"])).is_empty());
    // restored by a new put
    put(&env, "handbook/note.md", "# Note\n\ngiraffe again\n", &[]);
    assert_eq!(
        refs(&env.json_any(&["search", "giraffe"])),
        ["handbook/note.md"]
    );
    // a purge removes it from the index too
    env.ok(&["artifact", "purge", "handbook/note.md", "--yes"]);
    assert!(refs(&env.json_any(&["search", "giraffe"])).is_empty());
    let s = env.json_any(&["index", "status"]);
    assert_eq!(s["health"], "ok");
    assert_eq!(s["indexed_artifacts"], s["store_live_artifacts"]);
}

/// K8: a deleted or damaged index directory is detected and rebuilt, on
/// open and on demand; status compares it with the store.
#[test]
fn k8_index_rebuilds_when_deleted_or_damaged() {
    let env = corpus();
    let s = env.json_any(&["index", "status"]);
    assert_eq!(s["health"], "ok");
    assert_eq!(s["indexed_artifacts"], 4);
    // parts: guide.md's 5 sections, each rust note's 1 (its title), and the
    // HTML page whole (it has no sections)
    assert_eq!(s["indexed_sections"], 8);
    assert_eq!(s["lag"], 0);
    std::fs::remove_dir_all(env.path("data/index")).unwrap();
    assert_eq!(
        refs(&env.json_any(&["search", "lifetimes"])),
        ["handbook/rust/borrow.md"]
    );
    for e in std::fs::read_dir(env.path("data/index")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "store" || x == "idx") {
            std::fs::write(&p, b"not a segment").unwrap();
        }
    }
    // `verify` checks the index read-only and says how to fix it
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(report.contains("[search_index]"), "{report}");
    assert!(report.contains("kontextual index rebuild"), "{report}");
    let s = env.json_any(&["index", "status"]);
    assert_eq!(s["health"], "ok", "{s}");
    assert_eq!(s["indexed_artifacts"], 4);
    env.ok(&["verify"]);
    let r = env.json_any(&["index", "rebuild"]);
    assert_eq!(r["caught_up"]["artifacts_reindexed"], 4);
    assert_eq!(
        refs(&env.json_any(&["search", "lifetimes"])),
        ["handbook/rust/borrow.md"]
    );
}

/// K8: while another process owns the index, commands keep working: a
/// search waits (bounded) for the owner, then answers from what is indexed
/// and reports the lag; it never returns what the store no longer backs.
#[test]
fn k8_search_while_another_process_owns_the_index() {
    let env = corpus();
    env.ok(&["search", "x"]); // the index exists and is current
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(env.path("data/index.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    put(
        &env,
        "handbook/fresh.md",
        "# Fresh\n\nlifetimes again\n",
        &[],
    );
    env.ok(&["artifact", "delete", "handbook/rust/traits.md"]);
    let v = env.json_any(&["search", "lifetimes borrow"]);
    assert_eq!(v["index"]["owner"], false);
    assert!(v["index"]["lag"].as_u64().unwrap() > 0, "{v}");
    // the deleted artifact is still in the (stale) index but not returned
    assert_eq!(refs(&v), ["handbook/rust/borrow.md"]);
    assert_eq!(v["dropped"], 1);
    drop(lock);
    let v = env.json_any(&["search", "lifetimes borrow"]);
    assert_eq!(v["index"]["lag"], 0);
    assert_eq!(refs(&v), ["handbook/rust/borrow.md", "handbook/fresh.md"]);
}

/// K5: a section by selector (full path or unique last part), with its
/// byte range and digest; unknown and ambiguous selectors are explained.
#[test]
fn k5_sections_by_selector() {
    let env = corpus();
    let v = env.json_any(&["artifact", "show", "handbook/guide.md#installation/linux"]);
    assert_eq!(v["selector"], "installation/linux");
    assert_eq!(v["heading"], "Linux");
    assert_eq!(v["text"], "### Linux\n\nRun apt install kontextual.\n\n");
    let (a, b) = (
        v["byte_range"][0].as_u64().unwrap() as usize,
        v["byte_range"][1].as_u64().unwrap() as usize,
    );
    assert_eq!(&GUIDE[a..b], v["text"].as_str().unwrap());
    // by id, too
    let id = env.json_any(&["artifact", "show", "handbook/guide.md"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_id = env.json_any(&["artifact", "show", &format!("{id}#installation/linux")]);
    assert_eq!(by_id["text"], v["text"]);
    let out = env.ok(&["artifact", "show", "handbook/guide.md#macos", "--content"]);
    assert_eq!(
        out,
        "### macOS\n\nUse brew install kontextual on a Mac.\n\n"
    );
    let e = env.fails(3, &["artifact", "show", "handbook/guide.md#windows"]);
    assert!(e.contains("section #windows"), "{e}");
    assert!(e.contains("installation/linux"), "{e}");
    let list = env.json_any(&["artifact", "show", "handbook/guide.md", "--sections"]);
    let sels: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["selector"].as_str().unwrap())
        .collect();
    assert_eq!(
        sels,
        [
            "guide",
            "installation",
            "installation/linux",
            "installation/macos",
            "retry-policy"
        ]
    );
    // HTML pages have sections too: a byte range into the stored markup
    let v = env.json_any(&["artifact", "show", "handbook/runbook.html#deploy"]);
    assert_eq!(v["heading"], "Deploy");
    assert!(
        v["text"].as_str().unwrap().starts_with("<h1>Deploy</h1>"),
        "{v}"
    );
    // formats without sections say so
    env.write("in/plain.txt", "just text\n");
    env.ok(&[
        "artifact",
        "put",
        "handbook/plain.txt",
        "--file",
        "in/plain.txt",
    ]);
    let e = env.fails(2, &["artifact", "show", "handbook/plain.txt#deploy"]);
    assert!(e.contains("has no sections"), "{e}");
}

/// K8: relationship traversal follows typed edges for several hops and
/// stops at cycles.
#[test]
fn k8_expand_follows_relations_without_looping() {
    let env = corpus();
    env.ok(&[
        "relate",
        "handbook/rust/borrow.md",
        "references",
        "handbook/rust/traits.md",
    ]);
    env.ok(&[
        "relate",
        "handbook/rust/traits.md",
        "references",
        "handbook/guide.md",
    ]);
    env.ok(&[
        "relate",
        "handbook/guide.md",
        "references",
        "handbook/rust/borrow.md",
    ]);
    env.ok(&[
        "relate",
        "handbook/guide.md",
        "depends-on",
        "handbook/runbook.html",
    ]);
    let v = env.json_any(&[
        "search",
        "lifetimes",
        "--expand",
        "references",
        "--depth",
        "5",
    ]);
    let related: Vec<(String, u64)> = v["hits"][0]["related"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ref"].as_str().unwrap().to_owned(),
                r["depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        related,
        [
            ("handbook/rust/traits.md".to_owned(), 1),
            ("handbook/guide.md".to_owned(), 1)
        ]
    );
    let v = env.json_any(&[
        "artifact",
        "show",
        "handbook/rust/traits.md",
        "--expand",
        "references",
        "--expand",
        "depends-on",
        "--depth",
        "2",
    ]);
    let related: Vec<&str> = v["related"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        related,
        [
            "handbook/rust/borrow.md",
            "handbook/guide.md",
            "handbook/runbook.html"
        ]
    );
}

/// K7: a package is deterministic (same data, same manifest, no new
/// version), renders for a prompt, and `verify` detects a change.
#[test]
fn k7_context_packages_are_deterministic_and_verifiable() {
    let env = corpus();
    env.ok(&[
        "relate",
        "handbook/guide.md",
        "references",
        "handbook/runbook.html",
    ]);
    let build = [
        "context",
        "build",
        "--name",
        "deploy-brief",
        "--query",
        "how do we deploy",
        "--query",
        "retry policy",
        "--select",
        "handbook/guide.md#installation/linux",
        "--budget",
        "200",
        "--memory-ref",
        r#"{"source":"pmem","id":"m-42","note":"kept as given"}"#,
    ];
    let first = env.json_any(&build);
    assert_eq!(first["version"], 1);
    assert_eq!(first["new_version"], true);
    let m = &first["manifest"];
    assert_eq!(m["encoding"], "cl100k_base");
    let items = m["items"].as_array().unwrap();
    assert_eq!(items[0]["ref"], "handbook/guide.md#installation/linux");
    assert_eq!(items[0]["reason"]["kind"], "selector");
    let used: u64 = items.iter().map(|i| i["tokens"].as_u64().unwrap()).sum();
    assert_eq!(m["tokens_used"].as_u64().unwrap(), used);
    assert!(used <= 200);
    assert!(
        items
            .iter()
            .all(|i| i["digest"].as_str().unwrap().starts_with("sha256:"))
    );
    assert_eq!(m["memory_refs"][0]["note"], "kept as given");
    assert!(!m["relations"].as_array().unwrap().is_empty(), "{m}");
    assert_eq!(m["runs"].as_array().unwrap().len(), 1, "the ingest run");
    // same data, same manifest: no new version
    let again = env.json_any(&build);
    assert_eq!(again["version"], 1);
    assert_eq!(again["new_version"], false);
    assert_eq!(again["digest"], first["digest"]);
    let md = env.ok(&["context", "show", "deploy-brief", "--format", "markdown"]);
    assert!(md.starts_with("# Context: deploy-brief (version 1"), "{md}");
    assert!(md.contains("## handbook/guide.md#installation/linux (revision 1)\n\n```\n### Linux\n\nRun apt install kontextual.\n```\n"), "{md}");
    assert!(md.contains("m-42"), "{md}");
    assert!(
        env.ok(&["context", "verify", "deploy-brief"])
            .contains("Verified")
    );
    // change an included artifact: verify fails and says what changed
    env.write(
        "docs/guide.md",
        GUIDE.replace("apt install", "snap install"),
    );
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    let out = env.run(&["--json", "context", "verify", "deploy-brief"]);
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verified"], false);
    assert!(
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "changed" && p["subject"].as_str().unwrap().contains("guide.md")),
        "{r}"
    );
    // the old version still renders from its recorded revision
    let md = env.ok(&["context", "show", "deploy-brief", "--format", "markdown"]);
    assert!(md.contains("apt install"), "{md}");
    // rebuilding makes version 2
    let v2 = env.json_any(&build);
    assert_eq!(v2["version"], 2);
    let list = env.json_any(&["context", "list"]);
    assert_eq!(list["items"][0]["version"], 2);
}

/// K7: a budget too small for anything gives an empty package that says
/// why; bad requests are refused with a reason.
#[test]
fn k7_small_budget_and_bad_requests() {
    let env = corpus();
    let v = env.json_any(&[
        "context", "build", "--name", "tiny", "--query", "deploy", "--budget", "3",
    ]);
    let m = &v["manifest"];
    assert!(m["items"].as_array().unwrap().is_empty());
    assert!(
        m["empty_reason"].as_str().unwrap().contains("too small"),
        "{m}"
    );
    assert!(!m["omitted"].as_array().unwrap().is_empty());
    let e = env.fails(2, &["context", "build", "--name", "x", "--budget", "100"]);
    assert!(e.contains("--query or --select"), "{e}");
    let e = env.fails(
        3,
        &[
            "context",
            "build",
            "--name",
            "x",
            "--budget",
            "100",
            "--select",
            "handbook/guide.md#nope",
        ],
    );
    assert!(e.contains("section #nope"), "{e}");
    let e = env.fails(
        2,
        &[
            "context",
            "build",
            "--name",
            "x",
            "--budget",
            "100",
            "--query",
            "q",
            "--memory-ref",
            "{}",
        ],
    );
    assert!(e.contains("\"source\" and \"id\""), "{e}");
    let e = env.fails(
        2,
        &[
            "context", "build", "--name", "bad name", "--budget", "9", "--query", "q",
        ],
    );
    assert!(e.contains("context package name"), "{e}");
    let e = env.fails(3, &["context", "show", "missing"]);
    assert!(e.contains("context package missing not found"), "{e}");
}

/// K8: lookup by id, by name and by content digest.
#[test]
fn k8_lookup_by_id_name_and_digest() {
    let env = corpus();
    let a = env.json_any(&["artifact", "show", "handbook/guide.md"]);
    let by_id = env.json_any(&["artifact", "show", a["id"].as_str().unwrap()]);
    assert_eq!(by_id["name"], "guide.md");
    let digest = a["digest"].as_str().unwrap();
    let list = env.json_any(&["artifact", "list", "--digest", digest]);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["guide.md"]);
    let e = env.fails(2, &["artifact", "list", "--digest", "md5:abc"]);
    assert!(e.contains("digest"), "{e}");
}

/// Review fixes: overlaps are recorded, unchanged sections verify, a
/// lagging index refuses a build, headings are searchable per artifact,
/// and a section search misses no text.
#[test]
fn k7_overlaps_unchanged_sections_and_lag() {
    let env = corpus();
    // a section, then its whole document: the overlap is recorded, not silent
    let v = env.json_any(&[
        "context",
        "build",
        "--name",
        "o",
        "--budget",
        "2000",
        "--select",
        "handbook/guide.md#installation/linux",
        "--select",
        "handbook/guide.md",
    ]);
    let m = &v["manifest"];
    assert_eq!(m["items"].as_array().unwrap().len(), 1);
    assert_eq!(m["omitted"][0]["ref"], "handbook/guide.md");
    assert!(
        m["omitted"][0]["why"]
            .as_str()
            .unwrap()
            .contains("overlaps handbook/guide.md#installation/linux"),
        "{m}"
    );
    // editing another section leaves a packaged section verified
    env.json_any(&[
        "context",
        "build",
        "--name",
        "sec",
        "--budget",
        "2000",
        "--select",
        "handbook/guide.md#installation/linux",
        "--select",
        "handbook/rust/borrow.md",
    ]);
    env.write(
        "docs/guide.md",
        GUIDE.replace("Three attempts", "Five attempts"),
    );
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    assert!(env.ok(&["context", "verify", "sec"]).contains("Verified"));
    env.write(
        "docs/guide.md",
        GUIDE.replace("apt install", "snap install"),
    );
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    let r = env.json_any(&["context", "verify", "sec"]);
    assert_eq!(r["problems"].as_array().unwrap().len(), 1, "{r}");
    assert!(
        r["problems"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("section differs"),
        "{r}"
    );
    // purged content: the rendering marks it and exits 1, verify says why
    env.ok(&["artifact", "purge", "handbook/rust/borrow.md", "--yes"]);
    let out = env.run(&["context", "show", "sec", "--format", "markdown"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("[not available"),
        "{}",
        text(&out.stdout)
    );
    let r = env.json_any(&["context", "verify", "sec"]);
    assert!(
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "missing"),
        "{r}"
    );
    // headings are searchable at artifact level too
    assert_eq!(
        refs(&env.json_any(&["search", "--syntax", "heading:macos"])),
        ["handbook/guide.md"]
    );
    // text before the first heading is found by a section search
    env.write("docs/pre.md", "preambleword here\n\n# Heading\n\nbody\n");
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    assert_eq!(
        refs(&env.json_any(&["search", "preambleword", "--sections"])),
        ["handbook/pre.md"]
    );
    // while another process owns a lagging index, a build refuses (exit 5)
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(env.path("data/index.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    env.write("docs/late.md", "# Late\n\nlateword\n");
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    let e = env.fails(
        5,
        &[
            "context", "build", "--name", "l", "--query", "lateword", "--budget", "100",
        ],
    );
    assert!(e.contains("behind the store"), "{e}");
    drop(lock);
    let v = env.json_any(&[
        "context", "build", "--name", "l", "--query", "lateword", "--budget", "100",
    ]);
    // the whole note or its title section: both hold the word
    assert!(
        v["manifest"]["items"][0]["ref"]
            .as_str()
            .unwrap()
            .starts_with("handbook/late.md"),
        "{v}"
    );
}

/// K4/X2: `hold set` blocks delete and purge (exit 4, says why) until
/// `hold release`.
#[test]
fn k4_holds_from_the_cli() {
    let env = corpus();
    env.ok(&[
        "hold",
        "set",
        "handbook/guide.md",
        "--reason",
        "litigation 7",
    ]);
    let list = env.ok(&["hold", "list"]);
    assert!(list.contains("litigation 7"), "{list}");
    let e = env.fails(4, &["artifact", "purge", "handbook/guide.md", "--yes"]);
    assert!(e.contains("legal hold (litigation 7)"), "{e}");
    env.fails(4, &["artifact", "delete", "handbook/guide.md"]);
    env.ok(&["hold", "release", "handbook/guide.md"]);
    env.ok(&["artifact", "delete", "handbook/guide.md"]);
}

/// K5/K8/X8 (regression): the 60-byte page that once panicked the HTML
/// adapter and poisoned the index for every later search, rebuild and
/// repair; now it ingests, is found, and every later command works. Real
/// HTML has sections, a declared Latin-1 charset is honoured, and a context
/// package can take one section of an HTML page.
#[test]
fn k5_real_html_never_poisons_the_index_and_has_sections() {
    let env = Env::init();
    std::fs::create_dir_all(env.path("site")).unwrap();
    std::fs::write(
        env.path("site/poison.html"),
        b"<html><body><pre>&lt;Hd&gt;,\xc2\xa0&lt;Hn&gt;</pre></body></html>",
    )
    .unwrap();
    std::fs::write(
        env.path("site/latin1.html"),
        b"<html><head><meta charset=\"ISO-8859-1\"><title>Caf\xe9</title></head><body><p>cr\xe8me br\xfbl\xe9e</p></body></html>",
    )
    .unwrap();
    env.write(
        "site/guide.html",
        "<html><head><title>Guide</title></head><body><nav>Keyboard shortcuts Auto Light Rust Coal</nav>\
         <main><h1>Guide</h1><p>Intro &amp; overview: a &lt; b and more.</p>\
         <h2 id=\"install\">Installing</h2><p>Run the installer on 2²ⁿ⁻² machines.</p>\
         <h2>Rollback</h2><p>Undo a deploy with the rollback lever.</p></main></body></html>",
    );
    env.ok(&["ingest", "site", "--collection", "web"]);
    let hits = env.json_any(&["search", "Hn", "--collection", "web"]);
    assert_eq!(refs(&hits), ["web/poison.html"], "{hits}");
    let hits = env.json_any(&["search", "crème", "--collection", "web"]);
    assert_eq!(refs(&hits), ["web/latin1.html"], "{hits}");
    // entities decoded, no text lost, chrome outside <main> left out
    let hits = env.json_any(&["search", "overview", "--collection", "web"]);
    assert_eq!(refs(&hits), ["web/guide.html"]);
    assert_eq!(
        refs(&env.json_any(&["search", "Coal", "--collection", "web"])),
        Vec::<String>::new()
    );
    // sections of an HTML page, by id and by heading slug
    let secs = env.ok(&["artifact", "show", "web/guide.html", "--sections"]);
    assert!(
        secs.contains("install") && secs.contains("rollback"),
        "{secs}"
    );
    let hits = env.json_any(&[
        "search",
        "rollback lever",
        "--sections",
        "--collection",
        "web",
    ]);
    assert!(
        hits["hits"][0]["selector"]
            .as_str()
            .unwrap_or_default()
            .ends_with("rollback"),
        "{hits}"
    );
    let pkg = env.json_any(&[
        "context",
        "build",
        "--name",
        "html-part",
        "--select",
        "web/guide.html#rollback",
        "--budget",
        "200",
    ]);
    let item = &pkg["manifest"]["items"][0];
    assert_eq!(item["selector"], "rollback", "{pkg}");
    let shown = env.ok(&["context", "show", "html-part", "--format", "markdown"]);
    assert!(
        shown.contains("rollback lever") && !shown.contains("<p>"),
        "{shown}"
    );
    env.ok(&["context", "verify", "html-part"]);
    // nothing poisoned: status, rebuild, repair and verify all work
    let status = env.json_any(&["index", "status"]);
    assert_eq!(status["health"], "ok", "{status}");
    env.ok(&["index", "rebuild"]);
    env.ok(&["repair"]);
    env.ok(&["verify"]);
    assert_eq!(
        refs(&env.json_any(&["search", "Hd", "--collection", "web"])),
        ["web/poison.html"]
    );
}

/// K7/X5: an explicit selection that cannot fit the budget fails and stores
/// nothing; every left-out candidate is listed once.
#[test]
fn k7_a_selection_that_cannot_fit_fails_and_left_outs_are_listed_once() {
    let env = corpus();
    let e = env.fails(
        2,
        &[
            "context",
            "build",
            "--name",
            "tiny",
            "--select",
            "handbook/guide.md",
            "--budget",
            "10",
        ],
    );
    assert!(e.contains("does not fit the budget"), "{e}");
    env.fails(3, &["context", "show", "tiny"]);
    let v = env.json_any(&[
        "context",
        "build",
        "--name",
        "twice",
        "--query",
        "retry policy",
        "--query",
        "retry",
        "--select",
        "handbook/guide.md",
        "--budget",
        "4000",
    ]);
    let omitted: Vec<String> = v["manifest"]["omitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["ref"].as_str().unwrap().to_owned())
        .collect();
    let unique: std::collections::BTreeSet<_> = omitted.iter().collect();
    assert_eq!(unique.len(), omitted.len(), "{omitted:?}");
    assert!(!omitted.is_empty(), "{v}");
}
