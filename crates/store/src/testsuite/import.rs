//! Conformance cases for imports (K9): records keep their ids, history,
//! actors and times; every imported revision is vouched for by an audit
//! record; conflicts and bad blobs leave nothing behind.

use std::io::Read;

use kontextual_model::{
    Actor, Artifact, ArtifactId, ArtifactState, Change, ChangeKind, Collection, CollectionId,
    CorrelationId, Digest, Metadata, Namespace, Relation, RelationId, Revision, Run, RunId,
    RunStatus, RunStep, Timestamp,
};

use super::{Harness, coll, ctx, name};
use crate::{
    ArtifactKey, ErrorKind, ImportBlob, ImportConflict, ImportRecords, KnowledgeOp, Op,
    PageRequest, Store, WriteBatch, WriteContext,
};

fn t(s: &str) -> Timestamp {
    s.parse().expect("time")
}

/// Two artifacts (one with two revisions), a relation and a run in
/// collection `label`, with blobs (whose bytes start with `label`) in files
/// under `dir`.
fn records(dir: &std::path::Path, label: &str) -> (ImportRecords, Vec<Artifact>) {
    let ns = Namespace::default();
    let c = Collection {
        id: CollectionId::new(),
        namespace: ns.clone(),
        name: coll(label),
        description: "from elsewhere".into(),
        created_at: t("2025-03-01T00:00:00.000001Z"),
        artifact_count: 0,
    };
    let run = Run {
        id: RunId::new(),
        namespace: ns.clone(),
        kind: "ingest".into(),
        status: RunStatus::Succeeded,
        actor: "user:alice".parse().expect("actor"),
        input: serde_json::json!({"paths": ["docs"]}),
        manifest: Some(serde_json::json!({"written": 3})),
        owner: "elsewhere:1:1".into(),
        started_at: t("2025-03-01T00:00:01Z"),
        finished_at: Some(t("2025-03-01T00:00:02Z")),
        job_id: None,
    };
    let steps = vec![RunStep {
        run_id: run.id,
        seq: 1,
        name: "scan".into(),
        status: RunStatus::Succeeded,
        detail: serde_json::json!({"files": 2}),
        at: t("2025-03-01T00:00:01.5Z"),
    }];
    let owned: Vec<Vec<u8>> = ["first", "second", "other"]
        .iter()
        .map(|b| format!("{label}:{b}").into_bytes())
        .collect();
    let bodies: [&[u8]; 3] = [&owned[0], &owned[1], &owned[2]];
    let mut blobs = Vec::new();
    for b in bodies {
        let d = Digest::of(b);
        let p = dir.join(d.hex());
        std::fs::write(&p, b).expect("blob file");
        blobs.push(ImportBlob {
            digest: d,
            size: b.len() as u64,
            path: p,
        });
    }
    let art = |n: &str, rev: u64, body: &[u8]| Artifact {
        id: ArtifactId::new(),
        namespace: ns.clone(),
        collection_id: c.id,
        collection: c.name.clone(),
        name: name(n),
        artifact_type: "text".into(),
        media_type: "text/plain".into(),
        title: Some("A title".into()),
        digest: Digest::of(body),
        size: body.len() as u64,
        metadata: Metadata::parse("{\"b\": 1,\n \"a\": [2]}").expect("metadata"),
        lifecycle: "active".parse().expect("lifecycle"),
        classification: "internal".parse().expect("classification"),
        source_system: Some("wiki".into()),
        provenance: Default::default(),
        state: ArtifactState::Live,
        revision: rev,
        run_id: Some(run.id),
        created_at: t("2025-03-01T00:00:01.000001Z"),
        updated_at: t("2025-03-01T00:00:02.000002Z"),
    };
    let a = art("a.txt", 2, bodies[1]);
    let b = art("b.txt", 1, bodies[2]);
    let rev = |a: &Artifact, n: u64, body: &[u8], prev: Option<Digest>| Revision {
        artifact_id: a.id,
        revision: n,
        change: if n == 1 {
            ChangeKind::Created
        } else {
            ChangeKind::Updated
        },
        prev_digest: prev,
        digest: Digest::of(body),
        size: body.len() as u64,
        media_type: a.media_type.clone(),
        title: a.title.clone(),
        metadata: a.metadata.clone(),
        lifecycle: a.lifecycle,
        classification: a.classification,
        provenance: a.provenance.clone(),
        content_available: true,
        actor: "user:alice".parse::<Actor>().expect("actor"),
        correlation_id: CorrelationId::new(),
        run_id: Some(run.id),
        created_at: if n == 1 { a.created_at } else { a.updated_at },
    };
    let revisions = vec![
        rev(&a, 1, bodies[0], None),
        rev(&a, 2, bodies[1], Some(Digest::of(bodies[0]))),
        rev(&b, 1, bodies[2], None),
    ];
    let relation = Relation {
        id: RelationId::new(),
        namespace: ns,
        rel_type: "references".parse().expect("type"),
        source: a.id,
        target: b.id,
        properties: Metadata::parse("{}").expect("metadata"),
        revision: 1,
        deleted: false,
        created_at: a.updated_at,
        updated_at: a.updated_at,
    };
    let artifacts = vec![a, b];
    (
        ImportRecords {
            package: "pkg-1".into(),
            collections: vec![c],
            artifacts: artifacts.clone(),
            revisions,
            relations: vec![relation],
            runs: vec![(run, steps)],
            blobs,
            on_conflict: ImportConflict::Fail,
            detail: serde_json::json!({"test": true}),
        },
        artifacts,
    )
}

fn import(store: &Store, c: &WriteContext, r: ImportRecords) -> crate::Result<Vec<Change>> {
    store.write(WriteBatch {
        ctx: c.clone(),
        ops: vec![Op::Knowledge(KnowledgeOp::ImportRecords(Box::new(r)))],
    })
}

fn read_all(store: &Store, d: &Digest) -> Vec<u8> {
    let mut v = Vec::new();
    store
        .open_content(d)
        .expect("content")
        .read_to_end(&mut v)
        .expect("read");
    v
}

/// K9: an import writes every record with its own id, history, actors and
/// times into the batch's namespace; the store still checks clean (each
/// imported revision is vouched for by an audit record).
pub fn k9_import_preserves_ids_history_and_links(h: &mut dyn Harness) {
    let store = h.store();
    let files = tempfile::tempdir().expect("temp dir");
    let (recs, artifacts) = records(files.path(), "imported");
    let run_id = recs.runs[0].0.id;
    let rel_id = recs.relations[0].id;
    let revs = recs.revisions.clone();
    let c = ctx("tenant");
    let changes = import(&store, &c, recs).expect("import");
    let ns = Namespace::new("tenant").expect("ns");
    let imported = changes
        .iter()
        .filter(|ch| matches!(ch, Change::RevisionImported { .. }))
        .count();
    assert_eq!(imported, 3);
    match changes.last() {
        Some(Change::Imported { package, summary }) => {
            assert_eq!(package, "pkg-1");
            assert_eq!(summary["written"]["artifacts"], 2, "{summary}");
        }
        other => panic!("expected the import summary last, got {other:?}"),
    }
    let store = h.reopen();
    for want in &artifacts {
        let got = store
            .knowledge()
            .artifact(&ns, &ArtifactKey::Id(want.id))
            .expect("read")
            .expect("imported artifact");
        assert_eq!(
            got,
            Artifact {
                namespace: ns.clone(),
                ..want.clone()
            }
        );
    }
    let history = store
        .knowledge()
        .revisions(&ns, artifacts[0].id, &PageRequest::default())
        .expect("history");
    assert_eq!(history.items, revs[..2].to_vec());
    assert_eq!(read_all(&store, &revs[0].digest), b"imported:first");
    assert_eq!(read_all(&store, &artifacts[1].digest), b"imported:other");
    let rel = store
        .knowledge()
        .relation(&ns, rel_id)
        .expect("read")
        .expect("relation");
    assert_eq!((rel.source, rel.target), (artifacts[0].id, artifacts[1].id));
    let run = store.runs().get(&ns, run_id).expect("read").expect("run");
    assert_eq!(
        (run.kind.as_str(), run.status),
        ("ingest", RunStatus::Succeeded)
    );
    assert_eq!(store.runs().steps(&ns, run_id).expect("steps").len(), 1);
    // not visible from another namespace
    assert!(
        store
            .knowledge()
            .artifact(&Namespace::default(), &ArtifactKey::Id(artifacts[0].id))
            .expect("read")
            .is_none()
    );
    let report = store.check(None).expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);
    // audited once for the package and once per revision
    let audit = store.audit().records(0, 1000).expect("audit");
    let count = |a: &str| audit.iter().filter(|r| r.draft.action == a).count();
    assert_eq!((count("artifact.import"), count("store.import")), (3, 1));
}

/// K9: importing what is already there fails as a whole (nothing written),
/// or with `Skip` keeps the store's copy; a collection name taken by
/// another id, a blob that does not hash to its digest and a history with
/// a gap are refused and leave nothing behind.
pub fn k9_import_conflicts_and_bad_input_leave_nothing(h: &mut dyn Harness) {
    let store = h.store();
    let files = tempfile::tempdir().expect("temp dir");
    let c = ctx("default");
    let (recs, _) = records(files.path(), "imported");
    import(&store, &c, recs.clone()).expect("first import");
    let head = store.audit().head().expect("head");

    let e = import(&store, &c, recs.clone()).expect_err("same ids");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("already in the store"), "{e}");
    assert_eq!(
        store.audit().head().expect("head"),
        head,
        "a refused import writes nothing"
    );

    let changes = import(
        &store,
        &c,
        ImportRecords {
            on_conflict: ImportConflict::Skip,
            ..recs
        },
    )
    .expect("skip");
    match changes.last() {
        Some(Change::Imported { summary, .. }) => {
            assert_eq!(summary["skipped"]["artifacts"], 2, "{summary}");
            assert_eq!(summary["skipped"]["relations"], 1, "{summary}");
            assert!(summary["written"].get("artifacts").is_none(), "{summary}");
        }
        other => panic!("{other:?}"),
    }
    let head = store.audit().head().expect("head");

    // the collection name is taken by another id
    let (taken, _) = records(files.path(), "imported");
    let e = import(&store, &c, taken).expect_err("name taken");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(store.audit().head().expect("head"), head);

    // a blob whose bytes do not match its digest
    let (bad, _) = records(files.path(), "bad");
    std::fs::write(&bad.blobs[0].path, b"not what the digest says").expect("write");
    let e = import(&store, &c, bad).expect_err("corrupt blob");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(store.audit().head().expect("head"), head);
    assert!(
        store
            .knowledge()
            .collection(&c.namespace, &coll("bad"))
            .expect("read")
            .is_none()
    );

    // a history with a gap
    let (mut gap, _) = records(files.path(), "gap");
    gap.revisions.remove(0);
    let e = import(&store, &c, gap).expect_err("gap");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(store.audit().head().expect("head"), head);
    assert!(
        store
            .knowledge()
            .collection(&c.namespace, &coll("gap"))
            .expect("read")
            .is_none()
    );
}
