//! Proptest model test: random create/update/delete/relate/reopen sequences,
//! compared step by step with a simple in-memory oracle.

use std::collections::BTreeMap;

use kontextual_model::{ArtifactState, Change, Digest, Metadata, RelationId, RelationType};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{Harness, coll, ctx, name};
use crate::{
    ArtifactKey, ArtifactQuery, Content, ErrorKind, KnowledgeOp, Op, PageRequest, PutArtifact,
    RelationQuery, WriteBatch,
};

#[derive(Clone, Debug)]
enum Step {
    Put { n: u8, v: u8 },
    Delete { n: u8 },
    Relate { a: u8, b: u8 },
    Unrelate { a: u8, b: u8 },
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..5, 0u8..3).prop_map(|(n, v)| Step::Put { n, v }),
        2 => (0u8..5).prop_map(|n| Step::Delete { n }),
        2 => (0u8..5, 0u8..5).prop_map(|(a, b)| Step::Relate { a, b }),
        1 => (0u8..5, 0u8..5).prop_map(|(a, b)| Step::Unrelate { a, b }),
        1 => Just(Step::Reopen),
    ]
}

#[derive(Default, Debug)]
struct Oracle {
    /// name -> (content, revision, live)
    artifacts: BTreeMap<String, (Vec<u8>, u64, bool)>,
    /// live edges (source name, target name) -> id
    edges: BTreeMap<(String, String), RelationId>,
}

fn nm(n: u8) -> String {
    format!("doc{n}.md")
}

/// Runs the model test against fresh harnesses from `make`.
pub fn model_test(make: &dyn Fn() -> Box<dyn Harness>, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(step(), 1..40), |steps| {
            run_steps(make(), &steps);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("model test failed: {e}"));
}

#[allow(clippy::map_entry)] // the branches assert different errors
fn run_steps(mut h: Box<dyn Harness>, steps: &[Step]) {
    let c = ctx("default");
    let refs = RelationType::new("references").unwrap();
    let mut store = h.store();
    let write = |store: &crate::Store, op: Op| {
        store.write(WriteBatch {
            ctx: c.clone(),
            ops: vec![op],
        })
    };
    write(
        &store,
        Op::Knowledge(KnowledgeOp::CreateCollection {
            name: coll("m"),
            description: String::new(),
            if_absent: false,
        }),
    )
    .unwrap();
    let mut o = Oracle::default();
    for step in steps {
        match *step {
            Step::Put { n, v } => {
                let content = format!("content {v}").into_bytes();
                let op = Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                    coll("m"),
                    name(&nm(n)),
                    Content::Bytes(content.clone()),
                )));
                let changes = write(&store, op).expect("put never fails here");
                let entry = o.artifacts.entry(nm(n)).or_insert((Vec::new(), 0, false));
                let unchanged = entry.2 && entry.0 == content;
                match (&changes[..], unchanged) {
                    ([Change::ArtifactUnchanged { .. }], true) => {}
                    ([Change::Artifact { artifact, .. }], false) => {
                        entry.0 = content;
                        entry.1 += 1;
                        entry.2 = true;
                        assert_eq!(artifact.revision, entry.1);
                    }
                    other => panic!("put {n}: unexpected {other:?}"),
                }
            }
            Step::Delete { n } => {
                let r = write(
                    &store,
                    Op::Knowledge(KnowledgeOp::DeleteArtifact {
                        key: key(n),
                        expect: None,
                    }),
                );
                match o.artifacts.get_mut(&nm(n)) {
                    Some(e) if e.2 => {
                        r.expect("delete of a live artifact");
                        e.1 += 1;
                        e.2 = false;
                        o.edges.retain(|(a, b), _| *a != nm(n) && *b != nm(n));
                    }
                    _ => assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound),
                }
            }
            Step::Relate { a, b } => {
                let r = write(
                    &store,
                    Op::Knowledge(KnowledgeOp::CreateRelation {
                        source: key(a),
                        rel_type: refs.clone(),
                        target: key(b),
                        properties: Metadata::empty(),
                    }),
                );
                let live = |n: u8| o.artifacts.get(&nm(n)).is_some_and(|e| e.2);
                if !live(a) || !live(b) {
                    assert_eq!(r.unwrap_err().kind(), ErrorKind::DanglingReference);
                } else if a == b {
                    assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidInput);
                } else if o.edges.contains_key(&(nm(a), nm(b))) {
                    assert_eq!(r.unwrap_err().kind(), ErrorKind::AlreadyExists);
                } else {
                    match &r.expect("relate")[..] {
                        [Change::RelationCreated { relation }] => {
                            o.edges.insert((nm(a), nm(b)), relation.id);
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            Step::Unrelate { a, b } => {
                if let Some(id) = o.edges.remove(&(nm(a), nm(b))) {
                    write(
                        &store,
                        Op::Knowledge(KnowledgeOp::DeleteRelation { id, expect: None }),
                    )
                    .expect("unrelate");
                }
            }
            Step::Reopen => store = h.reopen(),
        }
        compare(&store, &c.namespace, &o);
    }
    let report = store.check(None).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

fn key(n: u8) -> ArtifactKey {
    ArtifactKey::Name {
        collection: coll("m"),
        name: name(&nm(n)),
    }
}

fn compare(store: &crate::Store, ns: &kontextual_model::Namespace, o: &Oracle) {
    let all = store
        .knowledge()
        .artifacts(
            ns,
            &ArtifactQuery {
                include_deleted: true,
                ..Default::default()
            },
            &PageRequest::first(1000),
        )
        .unwrap()
        .items;
    let got: BTreeMap<String, (Digest, u64, bool)> = all
        .iter()
        .map(|a| {
            (
                a.name.to_string(),
                (a.digest, a.revision, a.state == ArtifactState::Live),
            )
        })
        .collect();
    let want: BTreeMap<String, (Digest, u64, bool)> = o
        .artifacts
        .iter()
        .filter(|(_, e)| e.1 > 0)
        .map(|(n, e)| (n.clone(), (Digest::of(&e.0), e.1, e.2)))
        .collect();
    assert_eq!(got, want);
    let rels = store
        .knowledge()
        .relations(ns, &RelationQuery::default(), &PageRequest::first(1000))
        .unwrap()
        .items;
    let mut ids: Vec<RelationId> = rels.iter().map(|r| r.id).collect();
    let mut want_ids: Vec<RelationId> = o.edges.values().copied().collect();
    ids.sort();
    want_ids.sort();
    assert_eq!(ids, want_ids);
}
