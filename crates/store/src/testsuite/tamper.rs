//! Edits behind the audit chain's back (X3): one table of SQL statements
//! that both engines accept, each changing one kind of row that carries
//! history or authority. Every engine's tests seed a store with
//! [`seed_authority`], apply one statement to a fresh copy, and expect
//! `verify` to name the row ([`Tamper::names`]).

use kontextual_model::{
    ApiKey, Classification, Digest, GrantPermission, GrantScope, Metadata, Namespace, RelationType,
    Scope,
};

use super::{coll, ctx, name};
use crate::{
    AccessOp, ArtifactKey, Content, KnowledgeOp, Op, ProblemCategory, PutArtifact, Store,
    WriteBatch,
};

/// One edit and what `verify` must then report.
pub struct Tamper {
    pub what: &'static str,
    /// Portable SQL (SQLite and PostgreSQL).
    pub sql: &'static str,
    /// A word the problem's subject must contain.
    pub names: &'static str,
}

pub const TAMPERS: &[Tamper] = &[
    Tamper {
        what: "a revision's actor",
        sql: "UPDATE revisions SET actor = 'user:mallory' WHERE revision = 1",
        names: "revision 1",
    },
    Tamper {
        what: "a revision's creation time",
        sql: "UPDATE revisions SET created_at = created_at - 1000000 WHERE revision = 1",
        names: "revision 1",
    },
    Tamper {
        what: "a revision's correlation id",
        sql: "UPDATE revisions SET correlation_id = '0123456789abcdef0123456789abcdef' WHERE revision = 1",
        names: "revision 1",
    },
    Tamper {
        what: "a revision's run",
        sql: "UPDATE revisions SET run_id = artifact_id WHERE revision = 1",
        names: "revision 1",
    },
    Tamper {
        what: "a relation's type",
        sql: "UPDATE relations SET rel_type = 'forged'",
        names: "relation",
    },
    Tamper {
        what: "a relation's target",
        sql: "UPDATE relations SET target_id = source_id",
        names: "relation",
    },
    Tamper {
        what: "a relation's row",
        sql: "DELETE FROM relations",
        names: "relation",
    },
    Tamper {
        what: "an API key's scopes",
        sql: "UPDATE api_keys SET scopes = '[\"admin\"]'",
        names: "API key",
    },
    Tamper {
        what: "an API key's expiry",
        sql: "UPDATE api_keys SET expires_at = NULL",
        names: "API key",
    },
    Tamper {
        what: "an API key's revocation",
        sql: "UPDATE api_keys SET revoked_at = NULL",
        names: "API key",
    },
    Tamper {
        what: "an API key's secret hash",
        sql: "UPDATE api_keys SET secret_hash = '0000000000000000000000000000000000000000000000000000000000000000'",
        names: "API key",
    },
    Tamper {
        what: "a grant's permission",
        sql: "UPDATE grants SET permission = 'admin'",
        names: "grant",
    },
    Tamper {
        what: "a grant's actor",
        sql: "UPDATE grants SET actor = 'agent:mallory'",
        names: "grant",
    },
    Tamper {
        what: "a grant's row",
        sql: "DELETE FROM grants",
        names: "grant",
    },
    Tamper {
        what: "a clearance",
        sql: "UPDATE clearances SET level = 'restricted'",
        names: "clearance",
    },
    Tamper {
        what: "a legal hold's row",
        sql: "DELETE FROM holds",
        names: "legal hold",
    },
    Tamper {
        what: "a legal hold's reason",
        sql: "UPDATE holds SET reason = 'none'",
        names: "legal hold",
    },
    Tamper {
        what: "a quarantine's row",
        sql: "DELETE FROM quarantines",
        names: "quarantine",
    },
];

/// Two artifacts (one updated), a relation, two keys (one revoked, one
/// expiring), a grant, a clearance, a hold and a quarantine — every kind of
/// row [`TAMPERS`] edits.
pub fn seed_authority(s: &Store) {
    let c = ctx("default");
    let key = |id: &str| ApiKey {
        id: id.into(),
        name: id.into(),
        namespace: Namespace::default(),
        actor: "agent:ci".parse().expect("actor"),
        scopes: vec![Scope::Read],
        created_at: kontextual_model::now(),
        expires_at: Some(kontextual_model::now()),
        revoked_at: None,
        last_used_at: None,
        secret_hash: Some(Digest::of(id.as_bytes())),
    };
    let by_name = |n: &str| ArtifactKey::Name {
        collection: coll("h"),
        name: name(n),
    };
    let batches = vec![
        vec![
            Op::Knowledge(KnowledgeOp::CreateCollection {
                name: coll("h"),
                description: String::new(),
                if_absent: false,
            }),
            Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("h"),
                name("a.md"),
                Content::Bytes(b"alpha".to_vec()),
            ))),
            Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll("h"),
                name("b.md"),
                Content::Bytes(b"beta".to_vec()),
            ))),
        ],
        vec![Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
            coll("h"),
            name("a.md"),
            Content::Bytes(b"alpha 2".to_vec()),
        )))],
        vec![Op::Knowledge(KnowledgeOp::CreateRelation {
            source: by_name("a.md"),
            rel_type: RelationType::new("references").expect("type"),
            target: by_name("b.md"),
            properties: Metadata::default(),
        })],
        vec![
            Op::Access(AccessOp::CreateKey(key("0123456789abcdef"))),
            Op::Access(AccessOp::CreateKey(key("fedcba9876543210"))),
        ],
        vec![Op::Access(AccessOp::RevokeKey {
            id: "fedcba9876543210".into(),
        })],
        vec![Op::Access(AccessOp::CreateGrant {
            actor: "agent:ci".parse().expect("actor"),
            permission: GrantPermission::Read,
            scope: GrantScope::Collection(coll("h")),
        })],
        vec![Op::Access(AccessOp::SetClearance {
            actor: "agent:ci".parse().expect("actor"),
            level: Classification::Internal,
        })],
        vec![Op::Access(AccessOp::SetHold {
            key: by_name("a.md"),
            reason: "litigation".into(),
        })],
        vec![Op::Access(AccessOp::QuarantineArtifact {
            key: by_name("b.md"),
            reason: "scan hit".into(),
        })],
    ];
    for ops in batches {
        s.write(WriteBatch {
            ctx: c.clone(),
            ops,
        })
        .expect("seed");
    }
    let healthy = s.check(None).expect("check");
    assert!(
        healthy.problems.is_empty(),
        "a store written only through Kontextual verifies: {:?}",
        healthy.problems
    );
}

impl Tamper {
    /// Panics unless `problems` name the edited row.
    pub fn assert_named(&self, problems: &[crate::Problem]) {
        assert!(
            problems.iter().any(|p| p.subject.contains(self.names)
                && matches!(
                    p.category,
                    ProblemCategory::Corruption
                        | ProblemCategory::MissingReference
                        | ProblemCategory::AuditChain
                )),
            "{} edited with `{}` went unnoticed: {problems:?}",
            self.what,
            self.sql
        );
    }
}
