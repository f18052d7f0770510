//! Conformance cases for access bookkeeping (X1): the access log, key use
//! and the byte order of access listings.

use kontextual_model::{AccessEntry, Actor, ApiKey, Change, Classification, Digest, Namespace};
use kontextual_model::{Scope, Timestamp};

use super::{Harness, ctx};
use crate::{AccessOp, Op, PageRequest, Store, WriteBatch, WriteContext};

fn write(store: &Store, ctx: &WriteContext, ops: Vec<Op>) -> crate::Result<Vec<Change>> {
    store.write(WriteBatch {
        ctx: ctx.clone(),
        ops,
    })
}

fn at(micros: i64) -> Timestamp {
    Timestamp::from_microsecond(micros).expect("timestamp")
}

fn actor(s: &str) -> Actor {
    s.parse().expect("actor")
}

fn entry(ns: &str, who: &str, when: Timestamp, key_id: Option<&str>) -> AccessEntry {
    AccessEntry {
        seq: 0,
        at: when,
        namespace: Namespace::new(ns).expect("namespace"),
        actor: actor(who),
        key_id: key_id.map(str::to_owned),
        action: "read".into(),
        target: format!("h/{who}.md"),
        correlation_id: "c-1".into(),
    }
}

/// X1: the access log keeps what it is given, lists it in sequence order
/// per namespace, filtered by actor and time, paged by sequence, with a
/// page of at least one entry; pruning drops what is older. None of it is
/// audited (no changes).
pub fn x1_access_log_is_filtered_paged_and_pruned(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = Namespace::default();
    let base = 1_700_000_000_000_000;
    let entries = vec![
        entry("default", "agent:a", at(base), Some("0123456789abcdef")),
        entry("default", "agent:b", at(base + 10), None),
        entry("default", "agent:a", at(base + 20), None),
        entry("other", "agent:a", at(base + 5), None),
    ];
    let changes = write(
        &s,
        &c,
        vec![Op::Access(AccessOp::RecordAccess {
            entries: entries.clone(),
        })],
    )
    .unwrap();
    assert!(changes.is_empty(), "{changes:?}");

    let all = s.access().log(&ns, None, None, 0, 100).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let stripped: Vec<AccessEntry> = all
        .iter()
        .map(|e| AccessEntry {
            seq: 0,
            ..e.clone()
        })
        .collect();
    assert_eq!(stripped, entries[..3]);

    let by_a = s
        .access()
        .log(&ns, Some(&actor("agent:a")), None, 0, 100)
        .unwrap();
    assert_eq!(
        by_a.iter().map(|e| e.at).collect::<Vec<_>>(),
        [at(base), at(base + 20)]
    );
    let since = s
        .access()
        .log(&ns, None, Some(at(base + 10)), 0, 100)
        .unwrap();
    assert_eq!(since.len(), 2);
    let both = s
        .access()
        .log(&ns, Some(&actor("agent:b")), Some(at(base + 10)), 0, 100)
        .unwrap();
    assert_eq!(both.len(), 1);

    let page = s.access().log(&ns, None, None, all[0].seq, 1).unwrap();
    assert_eq!(page, all[1..2]);
    // a page of zero is a page of one, on every engine
    assert_eq!(s.access().log(&ns, None, None, 0, 0).unwrap(), all[..1]);
    // a position past every entry (even past i64) lists nothing
    assert!(
        s.access()
            .log(&ns, None, None, u64::MAX, 10)
            .unwrap()
            .is_empty()
    );

    let other = s
        .access()
        .log(&Namespace::new("other").unwrap(), None, None, 0, 100)
        .unwrap();
    assert_eq!(other.len(), 1);

    let changes = write(
        &s,
        &c,
        vec![Op::Access(AccessOp::PruneAccessLog {
            older_than: at(base + 10),
        })],
    )
    .unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    let left = s.access().log(&ns, None, None, 0, 100).unwrap();
    assert_eq!(left, all[1..]);
    assert!(
        s.access()
            .log(&Namespace::new("other").unwrap(), None, None, 0, 100)
            .unwrap()
            .is_empty()
    );
}

fn api_key(id: &str, name: &str) -> ApiKey {
    ApiKey {
        id: id.into(),
        name: name.into(),
        namespace: Namespace::default(),
        actor: actor("agent:ci"),
        scopes: vec![Scope::Read],
        created_at: kontextual_model::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        secret_hash: Some(Digest::of(id.as_bytes())),
    }
}

/// X1: a key's last use only moves forward; keys and clearances are listed
/// in byte order (upper case before lower case) whatever the database's
/// collation, and key pages follow that order.
pub fn x1_key_use_moves_forward_and_listings_keep_byte_order(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = Namespace::default();
    for (id, name) in [
        ("00000000000000b1", "b"),
        ("00000000000000b2", "B"),
        ("00000000000000a1", "a"),
    ] {
        write(
            &s,
            &c,
            vec![Op::Access(AccessOp::CreateKey(api_key(id, name)))],
        )
        .unwrap();
    }
    let listed = s.access().keys(&ns, &PageRequest::default()).unwrap();
    let names: Vec<&str> = listed.items.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["B", "a", "b"]);
    let mut paged = Vec::new();
    let mut req = PageRequest::first(1);
    loop {
        let page = s.access().keys(&ns, &req).unwrap();
        paged.extend(page.items.into_iter().map(|k| k.name));
        match page.next {
            Some(next) => req.after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, ["B", "a", "b"]);

    let (newer, older) = (at(1_700_000_000_000_200), at(1_700_000_000_000_100));
    for when in [newer, older] {
        let changes = write(
            &s,
            &c,
            vec![Op::Access(AccessOp::TouchKeys {
                uses: vec![("00000000000000a1".into(), when)],
            })],
        )
        .unwrap();
        assert!(changes.is_empty(), "{changes:?}");
    }
    assert_eq!(
        s.access()
            .key("00000000000000a1")
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(newer)
    );

    for who in ["agent:b", "agent:B", "agent:a"] {
        write(
            &s,
            &c,
            vec![Op::Access(AccessOp::SetClearance {
                actor: actor(who),
                level: Classification::Internal,
            })],
        )
        .unwrap();
    }
    let actors: Vec<String> = s
        .access()
        .clearances(&ns, None)
        .unwrap()
        .into_iter()
        .map(|cl| cl.actor.to_string())
        .collect();
    assert_eq!(actors, ["agent:B", "agent:a", "agent:b"]);
}
