//! Conformance cases. Each takes a harness and panics on a contract breach.

use std::io::{self, Read};

use kontextual_model::{
    Artifact, ArtifactState, Change, ChangeKind, Digest, Metadata, Provenance, RelationType,
};

use super::{Harness, coll, ctx, name};
use crate::{
    AccessOp, ArtifactKey, ArtifactQuery, Content, ErrorKind, Expect, FeedOp, KnowledgeOp, Op,
    PageRequest, PutArtifact, RelationQuery, RunOp, Store, WriteBatch, WriteContext,
};

fn write(store: &Store, ctx: &WriteContext, ops: Vec<Op>) -> crate::Result<Vec<Change>> {
    store.write(WriteBatch {
        ctx: ctx.clone(),
        ops,
    })
}

fn mkcoll(store: &Store, ctx: &WriteContext, c: &str) {
    write(
        store,
        ctx,
        vec![Op::Knowledge(KnowledgeOp::CreateCollection {
            name: coll(c),
            description: String::new(),
            if_absent: true,
        })],
    )
    .expect("create collection");
}

fn put_op(c: &str, n: &str, bytes: &[u8]) -> Op {
    Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
        coll(c),
        name(n),
        Content::Bytes(bytes.to_vec()),
    )))
}

fn put(store: &Store, ctx: &WriteContext, c: &str, n: &str, bytes: &[u8]) -> Artifact {
    match write(store, ctx, vec![put_op(c, n, bytes)])
        .expect("put")
        .pop()
    {
        Some(Change::Artifact { artifact, .. }) | Some(Change::ArtifactUnchanged { artifact }) => {
            artifact
        }
        other => panic!("unexpected change {other:?}"),
    }
}

fn key(c: &str, n: &str) -> ArtifactKey {
    ArtifactKey::Name {
        collection: coll(c),
        name: name(n),
    }
}

fn read_all(store: &Store, d: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .open_content(d)
        .expect("open content")
        .read_to_end(&mut out)
        .expect("read");
    out
}

fn all_artifacts(store: &Store, ctx: &WriteContext, q: &ArtifactQuery) -> Vec<Artifact> {
    let mut out = Vec::new();
    let mut req = PageRequest::first(7);
    loop {
        let page = store
            .knowledge()
            .artifacts(&ctx.namespace, q, &req)
            .expect("list");
        out.extend(page.items);
        match page.next {
            Some(c) => req.after = Some(c),
            None => return out,
        }
    }
}

fn audit_count(store: &Store) -> u64 {
    store.audit().head().expect("head").map_or(0, |h| h.seq)
}

pub fn k2_put_and_lookup_by_id_name_and_digest(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let empty = s.status().expect("status of an empty store");
    assert_eq!(
        (
            empty.artifacts_live,
            empty.outbox_last_seq,
            empty.audit_head
        ),
        (0, 0, None)
    );
    mkcoll(&s, &c, "handbook");
    let a = put(&s, &c, "handbook", "intro.md", b"# Intro\n");
    assert_eq!(a.revision, 1);
    assert_eq!(a.digest, Digest::of(b"# Intro\n"));
    assert_eq!(a.size, 8);
    assert_eq!(a.id.0.get_version_num(), 7, "ids are UUIDv7");
    let by_id = s
        .knowledge()
        .artifact(&c.namespace, &ArtifactKey::Id(a.id))
        .unwrap()
        .unwrap();
    let by_name = s
        .knowledge()
        .artifact(&c.namespace, &key("handbook", "intro.md"))
        .unwrap()
        .unwrap();
    assert_eq!(by_id, a);
    assert_eq!(by_name, a);
    let by_digest = all_artifacts(
        &s,
        &c,
        &ArtifactQuery {
            digest: Some(a.digest),
            ..Default::default()
        },
    );
    assert_eq!(by_digest, vec![a.clone()]);
    assert_eq!(read_all(&s, &a.digest), b"# Intro\n");
    assert!(
        s.knowledge()
            .artifact(&c.namespace, &key("handbook", "nope.md"))
            .unwrap()
            .is_none()
    );
}

pub fn k2_update_creates_revision_with_change_record(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let v1 = put(&s, &c, "h", "a.md", b"one");
    let changes = write(&s, &c, vec![put_op("h", "a.md", b"two")]).unwrap();
    let [
        Change::Artifact {
            kind,
            artifact: v2,
            prev_digest,
        },
    ] = &changes[..]
    else {
        panic!("expected one artifact change, got {changes:?}");
    };
    assert_eq!(*kind, ChangeKind::Updated);
    assert_eq!(v2.id, v1.id);
    assert_eq!(v2.revision, 2);
    assert_eq!(*prev_digest, Some(v1.digest));
    let hist = s
        .knowledge()
        .revisions(&c.namespace, v1.id, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].change, ChangeKind::Created);
    assert_eq!(hist[0].prev_digest, None);
    assert_eq!(hist[1].change, ChangeKind::Updated);
    assert_eq!(hist[1].prev_digest, Some(v1.digest));
    assert_eq!(hist[1].digest, Digest::of(b"two"));
    assert_eq!(
        read_all(&s, &hist[0].digest),
        b"one",
        "old revisions keep their content"
    );
}

pub fn k2_unchanged_put_writes_nothing(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    put(&s, &c, "h", "a.md", b"same");
    let before = audit_count(&s);
    let changes = write(&s, &c, vec![put_op("h", "a.md", b"same")]).unwrap();
    assert!(matches!(changes[..], [Change::ArtifactUnchanged { .. }]));
    assert_eq!(audit_count(&s), before, "no audit record for a no-op");
    let a = s
        .knowledge()
        .artifact(&c.namespace, &key("h", "a.md"))
        .unwrap()
        .unwrap();
    assert_eq!(a.revision, 1);
}

pub fn k2_stale_expected_revision_is_a_conflict(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    put(&s, &c, "h", "a.md", b"1");
    put(&s, &c, "h", "a.md", b"2");
    let mut stale = PutArtifact::new(coll("h"), name("a.md"), Content::Bytes(b"3".to_vec()));
    stale.expect = Expect::Revision(1);
    let e = write(&s, &c, vec![Op::Knowledge(KnowledgeOp::PutArtifact(stale))]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("expected revision 1"), "{e}");
    let a = s
        .knowledge()
        .artifact(&c.namespace, &key("h", "a.md"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.revision, a.digest),
        (2, Digest::of(b"2")),
        "never an overwrite"
    );
    let mut ok = PutArtifact::new(coll("h"), name("a.md"), Content::Bytes(b"3".to_vec()));
    ok.expect = Expect::Revision(2);
    write(&s, &c, vec![Op::Knowledge(KnowledgeOp::PutArtifact(ok))]).unwrap();
    let e = write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::DeleteArtifact {
            key: key("h", "a.md"),
            expect: Some(2),
        })],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let mut absent = PutArtifact::new(coll("h"), name("a.md"), Content::Bytes(b"x".to_vec()));
    absent.expect = Expect::Absent;
    let e = write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::PutArtifact(absent))],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
}

pub fn k2_duplicate_names_and_missing_collections_are_typed_errors(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let e = write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::CreateCollection {
            name: coll("h"),
            description: String::new(),
            if_absent: false,
        })],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(e.to_string(), "collection h already exists");
    let e = write(&s, &c, vec![put_op("missing", "a.md", b"x")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "collection missing not found");
}

pub fn k2_delete_tombstones_hides_and_cascades_relations(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let a = put(&s, &c, "h", "a.md", b"a");
    put(&s, &c, "h", "b.md", b"b");
    let refs = RelationType::new("references").unwrap();
    write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::CreateRelation {
            source: key("h", "a.md"),
            rel_type: refs.clone(),
            target: key("h", "b.md"),
            properties: Metadata::empty(),
        })],
    )
    .unwrap();
    let changes = write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::DeleteArtifact {
            key: key("h", "b.md"),
            expect: None,
        })],
    )
    .unwrap();
    assert!(
        matches!(changes[0], Change::RelationDeleted { .. }),
        "{changes:?}"
    );
    assert!(matches!(
        changes[1],
        Change::Artifact {
            kind: ChangeKind::Deleted,
            ..
        }
    ));
    let b = s
        .knowledge()
        .artifact(&c.namespace, &key("h", "b.md"))
        .unwrap()
        .unwrap();
    assert_eq!(b.state, ArtifactState::Deleted);
    assert_eq!(b.revision, 2);
    let live = all_artifacts(&s, &c, &ArtifactQuery::default());
    assert_eq!(
        live.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
        ["a.md"]
    );
    let all = all_artifacts(
        &s,
        &c,
        &ArtifactQuery {
            include_deleted: true,
            ..Default::default()
        },
    );
    assert_eq!(all.len(), 2);
    let q = RelationQuery {
        artifact: Some(a.id),
        ..Default::default()
    };
    assert!(
        s.knowledge()
            .relations(&c.namespace, &q, &PageRequest::default())
            .unwrap()
            .items
            .is_empty()
    );
    let q = RelationQuery {
        include_deleted: true,
        ..q
    };
    let rels = s
        .knowledge()
        .relations(&c.namespace, &q, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(rels.len(), 1);
    assert!(rels[0].deleted);
    let hist = s
        .knowledge()
        .revisions(&c.namespace, b.id, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(hist.last().unwrap().change, ChangeKind::Deleted);
    let e = write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::DeleteArtifact {
            key: key("h", "b.md"),
            expect: None,
        })],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "deleting twice: {e}");
    let coll_info = s
        .knowledge()
        .collection(&c.namespace, &coll("h"))
        .unwrap()
        .unwrap();
    assert_eq!(coll_info.artifact_count, 1, "counts exclude tombstones");
}

pub fn k2_put_after_delete_restores_same_id(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let a = put(&s, &c, "h", "a.md", b"a");
    write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::DeleteArtifact {
            key: ArtifactKey::Id(a.id),
            expect: Some(1),
        })],
    )
    .unwrap();
    let changes = write(&s, &c, vec![put_op("h", "a.md", b"a2")]).unwrap();
    let [
        Change::Artifact {
            kind: ChangeKind::Restored,
            artifact,
            ..
        },
    ] = &changes[..]
    else {
        panic!("{changes:?}");
    };
    assert_eq!(artifact.id, a.id);
    assert_eq!(artifact.revision, 3);
    assert!(artifact.is_live());
}

pub fn k2_relations_create_update_delete(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let a = put(&s, &c, "h", "a.md", b"a");
    let b = put(&s, &c, "h", "b.md", b"b");
    let rel = |t: &str| {
        Op::Knowledge(KnowledgeOp::CreateRelation {
            source: ArtifactKey::Id(a.id),
            rel_type: RelationType::new(t).unwrap(),
            target: ArtifactKey::Id(b.id),
            properties: Metadata::parse(r#"{"weight": 1}"#).unwrap(),
        })
    };
    let r = match &write(&s, &c, vec![rel("references")]).unwrap()[..] {
        [Change::RelationCreated { relation }] => relation.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((r.source, r.target, r.revision), (a.id, b.id, 1));
    let e = write(&s, &c, vec![rel("references")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    write(&s, &c, vec![rel("depends-on")]).expect("another type is another edge");
    let selfie = Op::Knowledge(KnowledgeOp::CreateRelation {
        source: ArtifactKey::Id(a.id),
        rel_type: RelationType::new("references").unwrap(),
        target: ArtifactKey::Id(a.id),
        properties: Metadata::empty(),
    });
    assert_eq!(
        write(&s, &c, vec![selfie]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let up = Op::Knowledge(KnowledgeOp::UpdateRelation {
        id: r.id,
        rel_type: None,
        properties: Some(Metadata::parse(r#"{"weight": 2}"#).unwrap()),
        expect: Some(1),
    });
    write(&s, &c, vec![up]).unwrap();
    let got = s.knowledge().relation(&c.namespace, r.id).unwrap().unwrap();
    assert_eq!(
        (got.revision, got.properties.as_str()),
        (2, r#"{"weight": 2}"#)
    );
    let stale = Op::Knowledge(KnowledgeOp::DeleteRelation {
        id: r.id,
        expect: Some(1),
    });
    assert_eq!(
        write(&s, &c, vec![stale]).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::DeleteRelation {
            id: r.id,
            expect: Some(2),
        })],
    )
    .unwrap();
    assert!(
        s.knowledge()
            .relation(&c.namespace, r.id)
            .unwrap()
            .unwrap()
            .deleted
    );
    let again = Op::Knowledge(KnowledgeOp::DeleteRelation {
        id: r.id,
        expect: None,
    });
    assert_eq!(
        write(&s, &c, vec![again]).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    write(&s, &c, vec![rel("references")]).expect("a deleted edge can be re-created");
    let q = RelationQuery {
        artifact: Some(b.id),
        ..Default::default()
    };
    let listed = s
        .knowledge()
        .relations(&c.namespace, &q, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(listed.len(), 2);
}

pub fn k2_dangling_references_are_refused(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    put(&s, &c, "h", "a.md", b"a");
    let before = audit_count(&s);
    let e = write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::CreateRelation {
            source: key("h", "a.md"),
            rel_type: RelationType::new("references").unwrap(),
            target: key("h", "ghost.md"),
            properties: Metadata::empty(),
        })],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DanglingReference);
    assert!(e.to_string().contains("h/ghost.md does not exist"), "{e}");
    assert_eq!(audit_count(&s), before);
}

pub fn k2_derived_artifacts_record_existing_inputs(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let src = put(&s, &c, "h", "src.md", b"source");
    let mut d = PutArtifact::new(
        coll("h"),
        name("summary.md"),
        Content::Bytes(b"sum".to_vec()),
    );
    d.provenance = Some(Provenance {
        derived_from: vec![src.id],
        transformation: Some("summarize".into()),
        ..Default::default()
    });
    write(&s, &c, vec![Op::Knowledge(KnowledgeOp::PutArtifact(d))]).unwrap();
    let got = s
        .knowledge()
        .artifact(&c.namespace, &key("h", "summary.md"))
        .unwrap()
        .unwrap();
    assert_eq!(got.provenance.derived_from, vec![src.id]);
    let mut bad = PutArtifact::new(coll("h"), name("bad.md"), Content::Bytes(b"x".to_vec()));
    bad.provenance = Some(Provenance {
        derived_from: vec![kontextual_model::ArtifactId::new()],
        ..Default::default()
    });
    let e = write(&s, &c, vec![Op::Knowledge(KnowledgeOp::PutArtifact(bad))]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DanglingReference);
}

pub fn k2_batch_writes_are_atomic(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let before_audit = audit_count(&s);
    let before_outbox = s.feed().events(0, 10_000).unwrap().len();
    let e = write(
        &s,
        &c,
        vec![
            put_op("h", "one.md", b"1"),
            put_op("h", "two.md", b"2"),
            Op::Knowledge(KnowledgeOp::DeleteArtifact {
                key: key("h", "ghost.md"),
                expect: None,
            }),
        ],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(all_artifacts(&s, &c, &ArtifactQuery::default()).is_empty());
    assert_eq!(audit_count(&s), before_audit);
    assert_eq!(s.feed().events(0, 10_000).unwrap().len(), before_outbox);
    assert_eq!(
        s.status().unwrap().blobs,
        0,
        "no orphan blob from a failed batch"
    );
    let ok = write(
        &s,
        &c,
        vec![put_op("h", "one.md", b"1"), put_op("h", "two.md", b"2")],
    )
    .unwrap();
    assert_eq!(ok.len(), 2);
}

struct FailingReader {
    sent: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.sent >= 3 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file vanished",
            ));
        }
        let n = buf.len().min(64 * 1024);
        buf[..n].fill(b'x');
        self.sent += n;
        Ok(n)
    }
}

pub fn k2_failed_content_read_leaves_no_trace(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let before = s.status().unwrap();
    let op = Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
        coll("h"),
        name("big.bin"),
        Content::Reader(Box::new(FailingReader { sent: 0 })),
    )));
    let e = write(&s, &c, vec![op]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("file vanished"), "{e}");
    let after = s.status().unwrap();
    assert_eq!(
        (after.blobs, after.artifacts_live, after.audit_records),
        (before.blobs, 0, before.audit_records)
    );
    assert!(s.check(None).unwrap().is_ok());
}

pub fn k2_keyset_pagination_is_deterministic(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "b");
    mkcoll(&s, &c, "a");
    let mut ops = Vec::new();
    for i in (0..25).rev() {
        ops.push(put_op(
            "b",
            &format!("doc{i:02}.md"),
            format!("{i}").as_bytes(),
        ));
        ops.push(put_op(
            "a",
            &format!("doc{i:02}.md"),
            format!("a{i}").as_bytes(),
        ));
    }
    write(&s, &c, ops).unwrap();
    let listed: Vec<String> = all_artifacts(&s, &c, &ArtifactQuery::default())
        .iter()
        .map(|a| format!("{}/{}", a.collection, a.name))
        .collect();
    let mut expected = listed.clone();
    expected.sort();
    assert_eq!(listed.len(), 50);
    assert_eq!(listed, expected, "ordered by collection, then name");
    let only_b = all_artifacts(
        &s,
        &c,
        &ArtifactQuery {
            collection: Some(coll("b")),
            ..Default::default()
        },
    );
    assert_eq!(only_b.len(), 25);
    let bad = PageRequest {
        after: Some(crate::Cursor("garbage".into())),
        limit: 5,
    };
    let e = s
        .knowledge()
        .artifacts(&c.namespace, &ArtifactQuery::default(), &bad)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

pub fn k2_metadata_is_preserved_exactly(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let text = r#"{ "z": 1.50, "a": {"nested": [1, 2.0e3]}, "big": 12345678901234567890123 }"#;
    let mut p = PutArtifact::new(coll("h"), name("m.json"), Content::Bytes(b"{}".to_vec()));
    p.metadata = Some(Metadata::parse(text).unwrap());
    write(&s, &c, vec![Op::Knowledge(KnowledgeOp::PutArtifact(p))]).unwrap();
    let s = h.reopen();
    let a = s
        .knowledge()
        .artifact(&c.namespace, &key("h", "m.json"))
        .unwrap()
        .unwrap();
    assert_eq!(a.metadata.as_str(), text);
}

pub fn x9_namespaces_isolate_names_and_ids(h: &mut dyn Harness) {
    let s = h.store();
    let one = ctx("default");
    let two = ctx("team-b");
    mkcoll(&s, &one, "h");
    mkcoll(&s, &two, "h");
    let a1 = put(&s, &one, "h", "a.md", b"one");
    let a2 = put(&s, &two, "h", "a.md", b"two");
    assert_ne!(a1.id, a2.id);
    assert!(
        s.knowledge()
            .artifact(&two.namespace, &ArtifactKey::Id(a1.id))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        all_artifacts(&s, &two, &ArtifactQuery::default()),
        vec![a2.clone()]
    );
    let e = write(
        &s,
        &two,
        vec![Op::Knowledge(KnowledgeOp::CreateRelation {
            source: ArtifactKey::Id(a2.id),
            rel_type: RelationType::new("references").unwrap(),
            target: ArtifactKey::Id(a1.id),
            properties: Metadata::empty(),
        })],
    )
    .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::DanglingReference,
        "no edges across namespaces"
    );
    assert_eq!(
        s.knowledge()
            .collections(&two.namespace, &PageRequest::default())
            .unwrap()
            .items
            .len(),
        1
    );
}

pub fn k4_blobs_are_deduplicated_and_streamed(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let big: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let op = |n: &str| {
        Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
            coll("h"),
            name(n),
            Content::Reader(Box::new(io::Cursor::new(big.clone()))),
        )))
    };
    write(&s, &c, vec![op("big1.bin")]).unwrap();
    write(&s, &c, vec![op("big2.bin")]).unwrap();
    put(&s, &c, "h", "small1", b"dup");
    put(&s, &c, "h", "small2", b"dup");
    let status = s.status().unwrap();
    assert_eq!(status.blobs, 2, "identical content is stored once");
    assert_eq!(status.blob_bytes, big.len() as u64 + 3);
    let s = h.reopen();
    let a = s
        .knowledge()
        .artifact(&c.namespace, &key("h", "big2.bin"))
        .unwrap()
        .unwrap();
    assert_eq!(a.digest, Digest::of(&big));
    assert_eq!(a.size, big.len() as u64);
    assert!(
        read_all(&s, &a.digest) == big,
        "content streams back intact"
    );
    let e = s.open_content(&Digest::of(b"never stored")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

pub fn k4_purge_erases_content_and_collects_unneeded_blobs(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let v1 = put(&s, &c, "h", "secret.md", b"secret v1");
    put(&s, &c, "h", "secret.md", b"shared");
    put(&s, &c, "h", "other.md", b"shared");
    let changes = write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::PurgeArtifact {
            key: key("h", "secret.md"),
            expect: None,
        })],
    )
    .unwrap();
    assert!(matches!(
        changes[..],
        [Change::Artifact {
            kind: ChangeKind::Purged,
            ..
        }]
    ));
    assert_eq!(
        s.open_content(&v1.digest).err().unwrap().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        read_all(&s, &Digest::of(b"shared")),
        b"shared",
        "still needed by other.md"
    );
    let a = s
        .knowledge()
        .artifact(&c.namespace, &key("h", "secret.md"))
        .unwrap()
        .unwrap();
    assert_eq!(a.state, ArtifactState::Purged);
    let hist = s
        .knowledge()
        .revisions(&c.namespace, a.id, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(hist.len(), 3);
    assert!(hist.iter().all(|r| !r.content_available));
    assert_eq!(
        hist[0].digest, v1.digest,
        "the record of what was there stays"
    );
    assert_eq!(s.status().unwrap().blobs, 1);
    let records = s.audit().records(0, 1000).unwrap();
    let last = records.last().unwrap();
    assert_eq!(last.draft.action, "artifact.purge");
    assert!(
        s.check(None).unwrap().is_ok(),
        "{:?}",
        s.check(None).unwrap().problems
    );
    let e = write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::PurgeArtifact {
            key: key("h", "secret.md"),
            expect: None,
        })],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

pub fn x3_every_mutation_is_audited_with_an_event(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    put(&s, &c, "h", "a.md", b"1");
    put(&s, &c, "h", "a.md", b"2");
    put(&s, &c, "h", "a.md", b"2");
    write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::DeleteArtifact {
            key: key("h", "a.md"),
            expect: None,
        })],
    )
    .unwrap();
    let recs = s.audit().records(0, 100).unwrap();
    let actions: Vec<&str> = recs.iter().map(|r| r.draft.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "collection.create",
            "artifact.create",
            "artifact.update",
            "artifact.delete"
        ]
    );
    assert!(
        recs.iter()
            .all(|r| r.actor.to_string() == "user:local-admin")
    );
    assert_eq!(recs[2].draft.prev_digest, Some(Digest::of(b"1")));
    assert_eq!(recs[2].draft.digest, Some(Digest::of(b"2")));
    let events = s.feed().events(0, 100).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.draft.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "collection.created",
            "artifact.created",
            "artifact.updated",
            "artifact.deleted"
        ]
    );
    for (e, r) in events.iter().zip(&recs) {
        assert_eq!(e.audit_seq, r.seq);
        assert_eq!(e.correlation_id, r.correlation_id);
    }
    let denial = kontextual_model::AuditDraft {
        action: "artifact.read".into(),
        target_kind: "artifact".into(),
        target_id: "x".into(),
        target_name: None,
        revision: None,
        prev_digest: None,
        digest: None,
        outcome: kontextual_model::Outcome::Denied,
        detail: None,
    };
    // an audit-only write says what it recorded, and appends no event
    let changes = write(&s, &c, vec![Op::Audit(denial)]).unwrap();
    assert!(
        matches!(&changes[..], [Change::Audited { action }] if action == "artifact.read"),
        "{changes:?}"
    );
    assert_eq!(s.feed().events(0, 100).unwrap().len(), events.len());
    let report = s.check(None).unwrap();
    assert!(report.audit.is_valid());
    assert_eq!(report.audit.records, 5);
}

pub fn x3_concurrent_writers_keep_one_chain_and_outbox_order(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = s.clone();
            let c = c.clone();
            scope.spawn(move || {
                for i in 0..25 {
                    put(
                        &s,
                        &c,
                        "h",
                        &format!("t{t}/{i}.md"),
                        format!("{t}-{i}").as_bytes(),
                    );
                }
            });
        }
    });
    let events = s.feed().events(0, 10_000).unwrap();
    assert_eq!(events.len(), 101);
    for w in events.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "no gaps in the outbox");
        assert!(
            w[1].audit_seq > w[0].audit_seq,
            "outbox follows audit order"
        );
    }
    let report = s.check(None).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.audit.records, 101);
}

pub fn k3_data_survives_reopen(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let a = put(&s, &c, "h", "a.md", b"persist me");
    let head = s.audit().head().unwrap();
    drop(s);
    let s = h.reopen();
    let got = s
        .knowledge()
        .artifact(&c.namespace, &ArtifactKey::Id(a.id))
        .unwrap()
        .unwrap();
    assert_eq!(got, a);
    assert_eq!(s.audit().head().unwrap(), head);
    put(&s, &c, "h", "b.md", b"after reopen");
    assert!(s.check(head).unwrap().is_ok());
}

pub fn k4_check_passes_on_a_healthy_store(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    put(&s, &c, "h", "a.md", b"a");
    let r = s.check(None).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!((r.blobs_checked, r.revisions_checked), (1, 1));
    let st = s.status().unwrap();
    assert_eq!(st.schema_version, st.latest_schema_version);
    assert!(st.pending_migrations.is_empty());
}

pub fn outbox_retention_follows_consumer_cursors(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    for i in 0..5 {
        put(&s, &c, "h", &format!("{i}.md"), format!("{i}").as_bytes());
    }
    let far_future = kontextual_model::Timestamp::from_second(4_000_000_000).unwrap();
    let prune = |s: &Store| {
        write(
            s,
            &c,
            vec![Op::Feed(FeedOp::PruneOutbox {
                older_than: far_future,
            })],
        )
        .unwrap()
    };
    assert!(
        prune(&s).is_empty(),
        "no consumer registered: nothing pruned"
    );
    let ack = |consumer: &str, seq: u64| {
        write(
            &s,
            &c,
            vec![Op::Feed(FeedOp::AckOutbox {
                consumer: consumer.to_owned(),
                seq,
            })],
        )
    };
    assert!(
        ack("index", 4).unwrap().is_empty(),
        "bookkeeping yields no change"
    );
    ack("webhooks", 2).unwrap();
    ack("index", 3).unwrap(); // never moves back
    assert_eq!(
        s.feed().cursors().unwrap(),
        vec![("index".to_owned(), 4), ("webhooks".to_owned(), 2)]
    );
    assert_eq!(
        ack("index", 99).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let changes = prune(&s);
    assert!(
        matches!(
            changes[..],
            [Change::OutboxPruned {
                through_seq: 2,
                count: 2
            }]
        ),
        "{changes:?}"
    );
    let left: Vec<u64> = s
        .feed()
        .events(0, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, [3, 4, 5, 6]);
    let recent = write(
        &s,
        &c,
        vec![Op::Feed(FeedOp::PruneOutbox {
            older_than: kontextual_model::Timestamp::UNIX_EPOCH,
        })],
    )
    .unwrap();
    assert!(recent.is_empty(), "events newer than the cutoff stay");
    put(&s, &c, "h", "next.md", b"n");
    assert_eq!(
        s.feed().events(0, 100).unwrap().last().unwrap().seq,
        7,
        "sequence numbers are never reused"
    );
    assert_eq!(s.status().unwrap().outbox_last_seq, 7);
    assert_eq!(
        s.audit()
            .records(0, 100)
            .unwrap()
            .last()
            .unwrap()
            .draft
            .action,
        "artifact.create"
    );
    assert!(s.check(None).unwrap().is_ok());
}

pub fn k2_failing_batches_do_not_disturb_concurrent_ones(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    std::thread::scope(|scope| {
        for t in 0..6 {
            let s = s.clone();
            let c = c.clone();
            scope.spawn(move || {
                for i in 0..20 {
                    let good = put_op("h", &format!("t{t}-{i}.md"), format!("{t}/{i}").as_bytes());
                    if (t + i) % 3 == 0 {
                        // same batch, then a failing op: the whole batch must vanish
                        let bad = Op::Knowledge(KnowledgeOp::DeleteArtifact {
                            key: key("h", "ghost.md"),
                            expect: None,
                        });
                        let e = write(&s, &c, vec![good, bad]).unwrap_err();
                        assert_eq!(e.kind(), ErrorKind::NotFound);
                    } else {
                        write(&s, &c, vec![good]).expect("good batch");
                    }
                }
            });
        }
    });
    let live = all_artifacts(&s, &c, &ArtifactQuery::default());
    let expected = (0..6)
        .flat_map(|t| (0..20).map(move |i| (t, i)))
        .filter(|(t, i)| (t + i) % 3 != 0)
        .count();
    assert_eq!(live.len(), expected);
    assert_eq!(audit_count(&s), expected as u64 + 1);
    assert_eq!(
        s.status().unwrap().blobs,
        expected as u64,
        "failed batches left no blob"
    );
    assert!(s.check(None).unwrap().is_ok());
}

pub fn k6_runs_record_steps_outputs_and_final_status(h: &mut dyn Harness) {
    use kontextual_model::{RunId, RunStatus};
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let id = RunId::new();
    let start = Op::Runs(RunOp::StartRun {
        id,
        kind: "ingest".into(),
        input: serde_json::json!({"paths": ["docs"]}),
        owner: "host:1:1".into(),
        job: None,
    });
    write(&s, &c, vec![start]).unwrap();
    let in_run = WriteContext {
        run_id: Some(id),
        ..c.clone()
    };
    let a = put(&s, &in_run, "h", "a.md", b"from the run");
    assert_eq!(
        a.run_id,
        Some(id),
        "the artifact links to the run that produced it"
    );
    let step = Op::Runs(RunOp::RunStep {
        id,
        name: "write".into(),
        status: RunStatus::Succeeded,
        detail: serde_json::json!({"files": 1}),
    });
    assert!(write(&s, &c, vec![step]).unwrap().is_empty());
    assert_eq!(s.runs().running().unwrap().len(), 1);
    let s = h.reopen();
    let run = s.runs().get(&c.namespace, id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running, "status survives a reopen");
    let summary = s.runs().summary(&c.namespace, id).unwrap().unwrap();
    assert_eq!(
        (summary.id, summary.kind.as_str(), summary.status),
        (id, run.kind.as_str(), run.status)
    );
    assert!(
        s.runs()
            .summary(&kontextual_model::Namespace::new("other").unwrap(), id)
            .unwrap()
            .is_none()
    );
    let finish = |st| {
        Op::Runs(RunOp::FinishRun {
            id,
            status: st,
            manifest: serde_json::json!({"outputs": 1}),
        })
    };
    write(&s, &c, vec![finish(RunStatus::Succeeded)]).unwrap();
    let e = write(&s, &c, vec![finish(RunStatus::Failed)]).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "a finished run stays finished"
    );
    let run = s.runs().get(&c.namespace, id).unwrap().unwrap();
    assert_eq!(
        (run.status, run.manifest.clone()),
        (
            RunStatus::Succeeded,
            Some(serde_json::json!({"outputs": 1}))
        )
    );
    assert!(run.finished_at.is_some());
    let steps = s.runs().steps(&c.namespace, id).unwrap();
    assert_eq!(
        (steps.len(), steps[0].name.as_str(), steps[0].seq),
        (1, "write", 1)
    );
    let hist = s
        .knowledge()
        .revisions(&c.namespace, a.id, &PageRequest::default())
        .unwrap()
        .items;
    assert_eq!(hist[0].run_id, Some(id));
    let second = RunId::new();
    write(
        &s,
        &c,
        vec![Op::Runs(RunOp::StartRun {
            id: second,
            kind: "ingest".into(),
            input: serde_json::json!({}),
            owner: "x".into(),
            job: None,
        })],
    )
    .unwrap();
    let listed: Vec<RunId> = s
        .runs()
        .list(&c.namespace, None, &PageRequest::default())
        .unwrap()
        .items
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![second, id], "newest first");
    let running = s
        .runs()
        .list(
            &c.namespace,
            Some(RunStatus::Running),
            &PageRequest::default(),
        )
        .unwrap()
        .items;
    assert_eq!(running.len(), 1);
    assert!(
        s.runs()
            .get(&kontextual_model::Namespace::new("other").unwrap(), id)
            .unwrap()
            .is_none()
    );
    let actions: Vec<String> = s
        .audit()
        .records(0, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.draft.action)
        .collect();
    assert!(
        actions.contains(&"run.start".to_owned()) && actions.contains(&"run.succeeded".to_owned()),
        "{actions:?}"
    );
    assert!(s.check(None).unwrap().is_ok());
}

/// K7: a context package is stored as versions; an identical manifest adds
/// none; each saved version is audited with its digest; latest is listed.
pub fn k7_context_packages_are_versioned_by_digest(h: &mut dyn Harness) {
    use kontextual_model::{Namespace, PackageName};
    let s = h.store();
    let c = ctx("default");
    let pname = PackageName::new("brief").expect("name");
    let save = |m: serde_json::Value| {
        let digest = Digest::of(m.to_string().as_bytes());
        write(
            &s,
            &c,
            vec![Op::Knowledge(KnowledgeOp::SaveContextPackage {
                name: pname.clone(),
                digest,
                manifest: m,
            })],
        )
        .expect("save")
        .pop()
        .expect("one change")
    };
    let first = save(serde_json::json!({"items": [1]}));
    assert!(matches!(&first, Change::ContextPackageSaved { package } if package.version == 1));
    let again = save(serde_json::json!({"items": [1]}));
    assert!(matches!(&again, Change::ContextPackageUnchanged { package } if package.version == 1));
    let second = save(serde_json::json!({"items": [1, 2]}));
    let Change::ContextPackageSaved { package: v2 } = second else {
        panic!("expected a new version, got {second:?}")
    };
    assert_eq!(v2.version, 2);
    let ns = Namespace::default();
    let latest = s
        .knowledge()
        .context_package(&ns, &pname, None)
        .unwrap()
        .unwrap();
    assert_eq!(latest, v2);
    let v1 = s
        .knowledge()
        .context_package(&ns, &pname, Some(1))
        .unwrap()
        .unwrap();
    assert_eq!(v1.manifest, serde_json::json!({"items": [1]}));
    assert!(
        s.knowledge()
            .context_package(&ns, &pname, Some(3))
            .unwrap()
            .is_none()
    );
    let other = Namespace::new("other").unwrap();
    assert!(
        s.knowledge()
            .context_package(&other, &pname, None)
            .unwrap()
            .is_none()
    );
    let list = s
        .knowledge()
        .context_packages(&ns, &PageRequest::default())
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].version, 2);
    let audits: Vec<_> = s
        .audit()
        .records(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|a| a.draft.action == "context.build")
        .collect();
    assert_eq!(audits.len(), 2);
    assert_eq!(audits[1].draft.digest, Some(v2.digest));
}

/// The change feed position moves with every mutation and names the store.
pub fn k8_feed_position_tracks_the_outbox(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let p0 = s.feed().position().unwrap();
    assert!(!p0.store_id.is_empty());
    mkcoll(&s, &c, "h");
    put(&s, &c, "h", "a.md", b"one");
    let p1 = s.feed().position().unwrap();
    assert_eq!(p1.store_id, p0.store_id);
    let events = s.feed().events(p0.last_seq, 100).unwrap();
    assert_eq!(p1.last_seq, events.last().unwrap().seq);
    assert_eq!(
        s.knowledge().namespaces().unwrap(),
        vec![kontextual_model::Namespace::default()]
    );
    // cursors past any possible position mean "after everything" (X4:
    // `/v1/audit?after=9223372036854775808` once wrapped to the start)
    for after in [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        assert!(
            s.feed().events(after, 10).unwrap().is_empty(),
            "outbox after {after}"
        );
        assert!(
            s.audit().records(after, 10).unwrap().is_empty(),
            "audit after {after}"
        );
    }
}

/// X1: API keys are stored with only their secret's hash, listed without
/// it, revoked once (audited), and their last use is recorded.
pub fn x1_api_keys_are_hashed_revocable_and_touched(h: &mut dyn Harness) {
    use kontextual_model::{ApiKey, Namespace, Scope};
    let s = h.store();
    let c = ctx("default");
    assert!(!s.access().has_keys().unwrap());
    let key = ApiKey {
        id: "0123456789abcdef".into(),
        name: "ci".into(),
        namespace: Namespace::default(),
        actor: "agent:ci".parse().unwrap(),
        scopes: vec![Scope::Read, Scope::Write],
        created_at: kontextual_model::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        secret_hash: Some(Digest::of(b"secret")),
    };
    let made = write(&s, &c, vec![Op::Access(AccessOp::CreateKey(key.clone()))]).unwrap();
    assert!(matches!(&made[0], Change::KeyCreated { key, .. } if key.secret_hash.is_none()));
    let e = write(&s, &c, vec![Op::Access(AccessOp::CreateKey(key.clone()))]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let got = s.access().key("0123456789abcdef").unwrap().unwrap();
    assert_eq!(got.secret_hash, Some(Digest::of(b"secret")));
    assert_eq!(got.scopes, vec![Scope::Read, Scope::Write]);
    assert!(s.access().has_keys().unwrap());
    let listed = s
        .access()
        .keys(&Namespace::default(), &PageRequest::default())
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.items[0].secret_hash.is_none());
    let at = kontextual_model::now();
    assert!(
        write(
            &s,
            &c,
            vec![Op::Access(AccessOp::TouchKeys {
                uses: vec![("0123456789abcdef".into(), at)]
            })]
        )
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        s.access()
            .key("0123456789abcdef")
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(at)
    );
    // another namespace cannot revoke it
    let e = write(
        &s,
        &ctx("other"),
        vec![Op::Access(AccessOp::RevokeKey {
            id: "0123456789abcdef".into(),
        })],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let revoked = write(
        &s,
        &c,
        vec![Op::Access(AccessOp::RevokeKey {
            id: "0123456789abcdef".into(),
        })],
    )
    .unwrap();
    assert!(matches!(&revoked[0], Change::KeyRevoked { .. }));
    assert!(
        write(
            &s,
            &c,
            vec![Op::Access(AccessOp::RevokeKey {
                id: "0123456789abcdef".into()
            })]
        )
        .unwrap()
        .is_empty()
    );
    assert!(
        s.access()
            .key("0123456789abcdef")
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(!s.access().has_keys().unwrap());
    let actions: Vec<String> = s
        .audit()
        .records(0, 1000)
        .unwrap()
        .into_iter()
        .map(|a| a.draft.action)
        .filter(|a| a.starts_with("key."))
        .collect();
    assert_eq!(actions, ["key.create", "key.revoke"]);
}

/// X4: an idempotency key is reserved once; a retry with the same request
/// replays the stored answer, a different request is a mismatch, an
/// unfinished one is in flight; abandoned and expired keys start afresh.
pub fn x4_idempotency_keys_reserve_replay_and_expire(h: &mut dyn Harness) {
    use kontextual_model::Idempotency;
    let s = h.store();
    let c = ctx("default");
    let past = kontextual_model::Timestamp::UNIX_EPOCH;
    let begin = |key: &str, body: &[u8], expire_before| match write(
        &s,
        &c,
        vec![Op::Access(AccessOp::BeginIdempotent {
            scope: "agent:a".into(),
            key: key.into(),
            request_hash: Digest::of(body),
            expire_before,
        })],
    )
    .unwrap()
    .pop()
    {
        Some(Change::Idempotency(state)) => state,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(begin("k1", b"req", past), Idempotency::Started);
    assert_eq!(begin("k1", b"req", past), Idempotency::InFlight);
    assert_eq!(begin("k1", b"other", past), Idempotency::Mismatch);
    write(
        &s,
        &c,
        vec![Op::Access(AccessOp::FinishIdempotent {
            scope: "agent:a".into(),
            key: "k1".into(),
            status: 201,
            content_type: "application/json".into(),
            body: b"{\"id\":1}".to_vec(),
        })],
    )
    .unwrap();
    assert_eq!(
        begin("k1", b"req", past),
        Idempotency::Replay {
            status: 201,
            content_type: "application/json".into(),
            body: b"{\"id\":1}".to_vec()
        }
    );
    // another caller's key of the same name is its own
    let other = write(
        &s,
        &c,
        vec![Op::Access(AccessOp::BeginIdempotent {
            scope: "agent:b".into(),
            key: "k1".into(),
            request_hash: Digest::of(b"zzz"),
            expire_before: past,
        })],
    )
    .unwrap();
    assert_eq!(other, vec![Change::Idempotency(Idempotency::Started)]);
    // abandoned: a retry runs again
    assert_eq!(begin("k2", b"req", past), Idempotency::Started);
    write(
        &s,
        &c,
        vec![Op::Access(AccessOp::AbandonIdempotent {
            scope: "agent:a".into(),
            key: "k2".into(),
        })],
    )
    .unwrap();
    assert_eq!(begin("k2", b"req", past), Idempotency::Started);
    // expired: forgotten
    let future = kontextual_model::now()
        .checked_add(jiff::SignedDuration::from_secs(60))
        .unwrap();
    assert_eq!(begin("k1", b"other", future), Idempotency::Started);
    // bookkeeping only: nothing audited
    assert!(s.audit().records(0, 100).unwrap().is_empty());
}

/// X2: grants are created once, listed per actor, deleted, audited.
pub fn x2_grants_are_unique_listed_and_audited(h: &mut dyn Harness) {
    use kontextual_model::{GrantPermission, GrantScope, Namespace};
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    let agent: kontextual_model::Actor = "agent:ci".parse().unwrap();
    let grant = |scope: GrantScope| {
        Op::Access(AccessOp::CreateGrant {
            actor: agent.clone(),
            permission: GrantPermission::Read,
            scope,
        })
    };
    write(&s, &c, vec![grant(GrantScope::Collection(coll("h")))]).unwrap();
    let e = write(&s, &c, vec![grant(GrantScope::Collection(coll("h")))]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let e = write(&s, &c, vec![grant(GrantScope::Collection(coll("nope")))]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    write(&s, &c, vec![grant(GrantScope::Namespace)]).unwrap();
    put(&s, &c, "h", "doc.md", b"x");
    write(
        &s,
        &c,
        vec![grant(GrantScope::Artifact(coll("h"), name("doc.md")))],
    )
    .unwrap();
    let e = write(
        &s,
        &c,
        vec![grant(GrantScope::Artifact(coll("h"), name("none.md")))],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let ns = Namespace::default();
    let mine = s.access().grants(&ns, Some(&agent)).unwrap();
    assert!(
        mine.iter()
            .any(|g| g.scope == GrantScope::Artifact(coll("h"), name("doc.md")))
    );
    write(
        &s,
        &c,
        vec![Op::Access(AccessOp::DeleteGrant {
            actor: agent.clone(),
            permission: GrantPermission::Read,
            scope: GrantScope::Artifact(coll("h"), name("doc.md")),
        })],
    )
    .unwrap();
    assert_eq!(s.access().grants(&ns, Some(&agent)).unwrap().len(), 2);
    assert!(
        s.access()
            .grants(&ns, Some(&"agent:other".parse().unwrap()))
            .unwrap()
            .is_empty()
    );
    assert!(
        s.access()
            .grants(&Namespace::new("other").unwrap(), None)
            .unwrap()
            .is_empty()
    );
    write(
        &s,
        &c,
        vec![Op::Access(AccessOp::DeleteGrant {
            actor: agent.clone(),
            permission: GrantPermission::Read,
            scope: GrantScope::Namespace,
        })],
    )
    .unwrap();
    let e = write(
        &s,
        &c,
        vec![Op::Access(AccessOp::DeleteGrant {
            actor: agent.clone(),
            permission: GrantPermission::Read,
            scope: GrantScope::Namespace,
        })],
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(s.access().grants(&ns, None).unwrap().len(), 1);
    let actions: Vec<String> = s
        .audit()
        .records(0, 1000)
        .unwrap()
        .into_iter()
        .map(|a| a.draft.action)
        .filter(|a| a.starts_with("grant."))
        .collect();
    assert_eq!(
        actions,
        [
            "grant.create",
            "grant.create",
            "grant.create",
            "grant.delete",
            "grant.delete"
        ]
    );
    // clearances: one per actor, the latest wins, audited
    use kontextual_model::Classification;
    for level in [Classification::Confidential, Classification::Public] {
        write(
            &s,
            &c,
            vec![Op::Access(AccessOp::SetClearance {
                actor: agent.clone(),
                level,
            })],
        )
        .unwrap();
    }
    let cl = s.access().clearances(&ns, Some(&agent)).unwrap();
    assert_eq!(cl.len(), 1);
    assert_eq!(cl[0].level, Classification::Public);
    assert!(
        s.access()
            .clearances(&Namespace::new("other").unwrap(), None)
            .unwrap()
            .is_empty()
    );
}

/// K4/X2: a legal hold blocks delete and purge until it is released; both
/// are audited.
pub fn k4_legal_holds_block_delete_and_purge(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    mkcoll(&s, &c, "h");
    put(&s, &c, "h", "a.md", b"keep me");
    let hold = Op::Access(AccessOp::SetHold {
        key: key("h", "a.md"),
        reason: "litigation 42".into(),
    });
    write(&s, &c, vec![hold]).unwrap();
    let again = Op::Access(AccessOp::SetHold {
        key: key("h", "a.md"),
        reason: "again".into(),
    });
    assert_eq!(
        write(&s, &c, vec![again]).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    for op in [
        Op::Knowledge(KnowledgeOp::DeleteArtifact {
            key: key("h", "a.md"),
            expect: None,
        }),
        Op::Knowledge(KnowledgeOp::PurgeArtifact {
            key: key("h", "a.md"),
            expect: None,
        }),
    ] {
        let e = write(&s, &c, vec![op]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("litigation 42"), "{e}");
    }
    let holds = s
        .access()
        .holds(&kontextual_model::Namespace::default())
        .unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].name.as_str(), "a.md");
    write(
        &s,
        &c,
        vec![Op::Access(AccessOp::ReleaseHold {
            key: key("h", "a.md"),
        })],
    )
    .unwrap();
    assert_eq!(
        write(
            &s,
            &c,
            vec![Op::Access(AccessOp::ReleaseHold {
                key: key("h", "a.md")
            })]
        )
        .unwrap_err()
        .kind(),
        ErrorKind::NotFound
    );
    write(
        &s,
        &c,
        vec![Op::Knowledge(KnowledgeOp::PurgeArtifact {
            key: key("h", "a.md"),
            expect: None,
        })],
    )
    .unwrap();
    let actions: Vec<String> = s
        .audit()
        .records(0, 1000)
        .unwrap()
        .into_iter()
        .map(|a| a.draft.action)
        .filter(|a| a.starts_with("hold."))
        .collect();
    assert_eq!(actions, ["hold.set", "hold.release"]);
}
