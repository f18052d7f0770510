//! The index on its own: ranking, filters, paging, replacement, ownership and
//! recovery from a damaged directory (K8).

use kontextual_index::{
    Access, Checkpoint, Filters, Granularity, IndexDoc, IndexError, Opened, SearchIndex,
    SearchRequest,
};

fn doc(id: &str, coll: &str, name: &str, title: &str, body: &str) -> IndexDoc {
    IndexDoc {
        namespace: "default".into(),
        artifact_id: id.into(),
        revision: 1,
        collection: coll.into(),
        name: name.into(),
        title: Some(title.into()),
        artifact_type: "markdown".into(),
        lifecycle: "active".into(),
        classification: "internal".into(),
        body: body.into(),
        created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        updated_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        ..Default::default()
    }
}

fn checkpoint(seq: u64) -> Checkpoint {
    Checkpoint {
        format: kontextual_index::FORMAT,
        store_id: "s1".into(),
        applied_seq: seq,
        committed_at: "2026-01-01T00:00:00Z".into(),
        applied_event: None,
    }
}

fn req(q: &str) -> SearchRequest<'_> {
    SearchRequest {
        namespace: "default",
        query: q,
        syntax: false,
        filters: Filters::default(),
        granularity: Granularity::Artifacts,
        offset: 0,
        limit: 10,
        snippet_chars: 120,
    }
}

/// A request in query syntax (phrases, `field:`, `+`/`-`, `*`).
fn syntax(q: &str) -> SearchRequest<'_> {
    SearchRequest {
        syntax: true,
        ..req(q)
    }
}

fn names(idx: &SearchIndex, r: &SearchRequest<'_>) -> Vec<String> {
    idx.search(r)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.name)
        .collect()
}

fn corpus(idx: &SearchIndex) {
    let docs = [
        doc(
            "a1",
            "rust",
            "borrow.md",
            "The borrow checker",
            "The borrow checker enforces lifetimes. Lifetimes name regions of code where a borrow is valid.",
        ),
        doc(
            "a2",
            "rust",
            "traits.md",
            "Traits",
            "Traits define shared behaviour. A borrow may appear in a trait method.",
        ),
        doc(
            "a3",
            "ops",
            "deploy.md",
            "Deploying",
            "How we deploy: build, push, roll out. Retry policy: three attempts with backoff.",
        ),
        doc(
            "a4",
            "ops",
            "oncall.md",
            "On-call",
            "Pager rotation. The retry budget is separate from the policy for retries.",
        ),
    ];
    for d in &docs {
        idx.replace(&d.artifact_id, std::slice::from_ref(d))
            .unwrap();
    }
    idx.commit(&checkpoint(4)).unwrap();
}

fn open(dir: &std::path::Path) -> SearchIndex {
    SearchIndex::open(&dir.join("index"), Access::PreferOwner, 1)
        .unwrap()
        .0
}

/// K8: BM25 ranks the document about the terms first, in an exact order.
#[test]
fn k8_ranking_sanity_exact_order() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    corpus(&idx);
    assert_eq!(
        names(&idx, &req("borrow checker lifetimes")),
        ["borrow.md", "traits.md"]
    );
    // phrase: only the exact phrase matches
    assert_eq!(names(&idx, &syntax("\"retry policy\"")), ["deploy.md"]);
    // stemming: "deploying" finds "deploy"
    assert_eq!(names(&idx, &req("deploying")), ["deploy.md"]);
    // title boost: "traits" in the title outranks a body mention
    assert_eq!(names(&idx, &req("trait")), ["traits.md"]);
    let r = idx.search(&req("lifetimes")).unwrap();
    let sn = r.hits[0].snippet.as_ref().unwrap();
    assert!(!sn.highlights.is_empty());
    let (s, e) = sn.highlights[0];
    assert_eq!(sn.text[s..e].to_lowercase(), "lifetimes");
}

/// K8: filters narrow; pagination is stable and counts the total.
#[test]
fn k8_filters_and_pagination() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    corpus(&idx);
    let mut r = req("borrow retry");
    r.filters.collections = vec!["ops".into()];
    // oncall.md says "retry" and "retries" (one stem, twice); deploy.md once
    assert_eq!(names(&idx, &r), ["oncall.md", "deploy.md"]);
    let mut r = syntax("*");
    r.limit = 3;
    let page1 = idx.search(&r).unwrap();
    assert_eq!(page1.total, 4);
    assert_eq!(page1.hits.len(), 3);
    r.offset = 3;
    let page2 = idx.search(&r).unwrap();
    assert_eq!(page2.hits.len(), 1);
    let mut all: Vec<String> = page1
        .hits
        .iter()
        .chain(&page2.hits)
        .map(|h| h.name.clone())
        .collect();
    all.sort();
    assert_eq!(all, ["borrow.md", "deploy.md", "oncall.md", "traits.md"]);
    // the same page twice gives the same order
    r.offset = 0;
    assert_eq!(names(&idx, &r), names(&idx, &r));
    // other namespace sees nothing
    let mut r = req("borrow");
    r.namespace = "other";
    assert_eq!(idx.search(&r).unwrap().total, 0);
}

#[test]
fn k8_metadata_and_date_filters() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    let mut d = doc(
        "m1",
        "ops",
        "pay.md",
        "Payments",
        "retry policy for payments",
    );
    d.metadata = vec![("team".into(), "payments".into())];
    d.updated_at = "2026-03-01T00:00:00Z".parse().unwrap();
    let mut e = doc(
        "m2",
        "ops",
        "search.md",
        "Search",
        "retry policy for search",
    );
    e.metadata = vec![("team".into(), "search".into())];
    idx.replace("m1", &[d]).unwrap();
    idx.replace("m2", &[e]).unwrap();
    idx.commit(&checkpoint(2)).unwrap();
    let mut r = req("retry policy");
    r.filters.metadata = vec![("team".into(), "payments".into())];
    assert_eq!(names(&idx, &r), ["pay.md"]);
    let mut r = req("retry");
    r.filters.since = Some("2026-02-01T00:00:00Z".parse().unwrap());
    assert_eq!(names(&idx, &r), ["pay.md"]);
    let mut r = req("retry");
    r.filters.until = Some("2026-02-01T00:00:00Z".parse().unwrap());
    assert_eq!(names(&idx, &r), ["search.md"]);
    // metadata values are searchable text too
    assert_eq!(names(&idx, &syntax("meta:payments")), ["pay.md"]);
}

/// Replacing an artifact's documents removes the superseded revision and
/// sections that no longer exist.
#[test]
fn k8_replace_removes_superseded_documents() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    let mut whole = doc("x", "c", "g.md", "Guide", "alpha install");
    let mut sec = whole.clone();
    sec.selector = Some("install".into());
    sec.part = true;
    sec.heading = Some("Install".into());
    idx.replace("x", &[whole.clone(), sec]).unwrap();
    idx.commit(&checkpoint(1)).unwrap();
    let mut s = req("install");
    s.granularity = Granularity::Sections;
    assert_eq!(idx.search(&s).unwrap().total, 1);
    whole.revision = 2;
    whole.body = "beta".into();
    idx.replace("x", &[whole]).unwrap();
    idx.commit(&checkpoint(2)).unwrap();
    assert_eq!(idx.search(&s).unwrap().total, 0);
    assert_eq!(idx.search(&req("alpha")).unwrap().total, 0);
    let r = idx.search(&req("beta")).unwrap();
    assert_eq!(r.hits[0].revision, 2);
    idx.replace("x", &[]).unwrap();
    idx.commit(&checkpoint(3)).unwrap();
    assert_eq!(idx.search(&req("beta")).unwrap().total, 0);
    let st = idx.stats().unwrap();
    assert_eq!((st.artifacts, st.sections), (0, 0));
    assert_eq!(st.checkpoint.unwrap().applied_seq, 3);
}

#[test]
fn k8_query_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    corpus(&idx);
    // everyday punctuation is text, in query syntax too
    assert_eq!(idx.search(&syntax("retry: policy")).unwrap().total, 2);
    for (q, want) in [
        ("\"unclosed", "never closed"),
        ("(borrow", "never closed"),
        ("-borrow", "only excludes terms"),
    ] {
        let e = idx.search(&syntax(q)).unwrap_err();
        assert!(matches!(e, IndexError::Query(_)), "{q}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(want), "{q}: {msg}");
        assert!(msg.contains(&format!("{q:?}")), "{msg}");
    }
}

/// K8: plain text (the default) is any string searched as words: no
/// input is a syntax error, operators and field names are words, and only
/// an empty query is refused.
#[test]
fn k8_plain_text_is_never_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    corpus(&idx);
    for q in [
        "retry: policy",
        "\"unclosed retry",
        "(borrow",
        "-borrow",
        "+borrow -checker",
        "nofield:retry",
        "notes on /slow retry/ in CI .",
        "why is the retry, - (a) slow, (b) flaky ?",
        "AND OR NOT borrow",
        "c++ vs c# -- retry?",
        "title:deploy [x] {y} <z> \\ ~2 ^3 *",
    ] {
        let r = idx.search(&req(q)).unwrap_or_else(|e| panic!("{q:?}: {e}"));
        assert!(r.total > 0, "{q:?} found nothing");
    }
    // words only: `-borrow` is the word borrow, `title:` is a word
    assert_eq!(idx.search(&req("-borrow")).unwrap().total, 2);
    // punctuation alone has no words: nothing matches, nothing fails
    assert_eq!(idx.search(&req("?!-- (\")")).unwrap().total, 0);
    for q in ["", "   \t"] {
        let e = idx.search(&req(q)).unwrap_err();
        assert!(e.to_string().contains("empty"), "{q:?}: {e}");
        let e = idx.search(&syntax(q)).unwrap_err();
        assert!(e.to_string().contains("empty"), "{q:?}: {e}");
    }
}

/// Stop words do not rank: "how" in a title does not outweigh the topic
/// word, and a query made only of stop words still finds them.
#[test]
fn k8_stop_words_do_not_dominate() {
    let dir = tempfile::tempdir().unwrap();
    let idx = open(dir.path());
    let docs = [
        doc(
            "s1",
            "c",
            "functions.md",
            "How Functions Work",
            "How functions work: a function is called.",
        ),
        doc(
            "s2",
            "c",
            "traits.md",
            "Traits",
            "Traits define shared behaviour. A trait is implemented.",
        ),
        doc("s3", "c", "hamlet.md", "Hamlet", "To be or not to be."),
    ];
    for d in &docs {
        idx.replace(&d.artifact_id, std::slice::from_ref(d))
            .unwrap();
    }
    idx.commit(&checkpoint(3)).unwrap();
    assert_eq!(names(&idx, &req("how do traits work"))[0], "traits.md");
    assert_eq!(names(&idx, &req("to be or not to be")), ["hamlet.md"]);
}

/// One writer: a second open is read-only and sees the owner's commits
/// after a reload; when the owner goes away, the next open owns it.
#[test]
fn k8_one_owner_others_read() {
    let dir = tempfile::tempdir().unwrap();
    let owner = open(dir.path());
    corpus(&owner);
    let (reader, _) = SearchIndex::open(&dir.path().join("index"), Access::PreferOwner, 1).unwrap();
    assert!(!reader.is_owner());
    assert!(matches!(
        reader.replace("z", &[]).unwrap_err(),
        IndexError::NotOwner(_)
    ));
    assert_eq!(reader.search(&req("borrow")).unwrap().total, 2);
    owner.replace("a2", &[]).unwrap();
    owner.commit(&checkpoint(5)).unwrap();
    reader.reload().unwrap();
    assert_eq!(reader.search(&req("borrow")).unwrap().total, 1);
    owner.close().unwrap();
    let next = open(dir.path());
    assert!(next.is_owner());
    assert_eq!(next.checkpoint().unwrap().unwrap().applied_seq, 5);
}

/// A deleted or damaged index directory is detected on open and replaced by
/// an empty one that says why (the projection then rebuilds it).
#[test]
fn k8_damaged_index_is_detected_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    {
        let idx = open(dir.path());
        corpus(&idx);
        idx.close().unwrap();
    }
    // reopen is clean
    let (idx, opened) = SearchIndex::open(&path, Access::PreferOwner, 1).unwrap();
    assert_eq!(opened, Opened::Existing);
    drop(idx);
    // damage every segment's store file
    for e in std::fs::read_dir(&path).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "store") {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    let (idx, opened) = SearchIndex::open(&path, Access::PreferOwner, 1).unwrap();
    assert!(
        matches!(opened, Opened::Fresh { ref reason } if reason.contains("corrupt")),
        "{opened:?}"
    );
    assert_eq!(idx.stats().unwrap().artifacts, 0);
    assert!(idx.checkpoint().unwrap().is_none());
    drop(idx);
    // deleted outright
    std::fs::remove_dir_all(&path).unwrap();
    let (_, opened) = SearchIndex::open(&path, Access::PreferOwner, 1).unwrap();
    assert!(matches!(opened, Opened::Fresh { .. }));
}

/// K8: rebuilding (clear, then every document again, then commit) in
/// quick succession, as an import does right after a fresh index was
/// built, never loses or duplicates a document — whatever the background
/// merges of the previous commit are doing meanwhile.
#[test]
fn k8_back_to_back_rebuilds_keep_every_document() {
    let t = tempfile::tempdir().unwrap();
    let (idx, _) = SearchIndex::open(&t.path().join("index"), Access::PreferOwner, 2).unwrap();
    for round in 0..60u64 {
        idx.clear().unwrap();
        for i in 0..5 {
            let id = format!("a{i}");
            let mut parts = vec![doc(&id, "c", &format!("n{i}"), "T", "whole text")];
            for s in 0..3 {
                parts.push(IndexDoc {
                    part: true,
                    selector: Some(format!("s{s}")),
                    ..doc(&id, "c", &format!("n{i}"), "T", "section text")
                });
            }
            idx.replace(&id, &parts).unwrap();
        }
        idx.commit(&checkpoint(round + 1)).unwrap();
        let stats = idx.stats().unwrap();
        assert_eq!((stats.artifacts, stats.sections), (5, 15), "round {round}");
    }
}
