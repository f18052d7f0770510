//! O5: the catalog is well formed, every event `Change::event` yields
//! validates against its type's schema, and every type in the catalog is
//! emitted by some change (or is reserved, saying why).

use std::collections::BTreeSet;

use kontextual_events::{CATALOG, CloudEvent, Emission, check, find, source_base};
use kontextual_model::change::RelationDeleteCause;
use kontextual_model::*;
use serde_json::json;

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn artifact(derived: bool) -> Artifact {
    Artifact {
        id: ArtifactId::new(),
        namespace: Namespace::default(),
        collection_id: CollectionId::new(),
        collection: "docs".parse().unwrap(),
        name: "guide/a.md".parse().unwrap(),
        artifact_type: "markdown".into(),
        media_type: "text/markdown".into(),
        title: None,
        digest: Digest::of(b"a"),
        size: 1,
        metadata: Metadata::empty(),
        lifecycle: Lifecycle::default(),
        classification: Classification::default(),
        source_system: None,
        provenance: Provenance {
            source_path: None,
            source_mtime: None,
            derived_from: if derived {
                vec![ArtifactId::new()]
            } else {
                vec![]
            },
            transformation: derived.then(|| "summary".to_owned()),
        },
        state: ArtifactState::default(),
        revision: 2,
        run_id: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn run(kind: &str, status: RunStatus) -> Run {
    Run {
        id: RunId::new(),
        namespace: Namespace::default(),
        kind: kind.into(),
        status,
        actor: Actor::local_admin(),
        input: json!({ "kind": kind, "collection": "docs" }),
        manifest: None,
        owner: "h:1:2".into(),
        started_at: now(),
        finished_at: None,
        job_id: None,
    }
}

fn job(state: JobState) -> Job {
    Job {
        id: JobId::new(),
        namespace: Namespace::default(),
        kind: "ingest".into(),
        payload: json!({}),
        state,
        attempt: 1,
        max_attempts: 3,
        run_at: now(),
        unique_key: None,
        worker: None,
        lease_expires_at: None,
        stop_requested: None,
        last_error: None,
        report: None,
        actor: Actor::local_admin(),
        correlation_id: CorrelationId::new(),
        created_at: now(),
        updated_at: now(),
        finished_at: None,
        key_id: None,
        scopes: None,
    }
}

fn mark() -> Hold {
    Hold {
        artifact_id: ArtifactId::new(),
        namespace: Namespace::default(),
        collection: "docs".parse().unwrap(),
        name: "a.md".parse().unwrap(),
        reason: "litigation".into(),
        actor: Actor::local_admin(),
        created_at: now(),
    }
}

fn relation() -> Relation {
    Relation {
        id: RelationId::new(),
        namespace: Namespace::default(),
        rel_type: "cites".parse().unwrap(),
        source: ArtifactId::new(),
        target: ArtifactId::new(),
        properties: Metadata::empty(),
        revision: 1,
        deleted: false,
        created_at: now(),
        updated_at: now(),
    }
}

fn key() -> ApiKey {
    ApiKey {
        id: "kx_1".into(),
        name: "ci".into(),
        namespace: Namespace::default(),
        actor: "user:alice".parse().unwrap(),
        scopes: vec![Scope::Read],
        created_at: now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        secret_hash: Some(Digest::of(b"secret")),
    }
}

fn grant(scope: GrantScope) -> Grant {
    Grant {
        id: uuid::Uuid::now_v7(),
        namespace: Namespace::default(),
        actor: "user:alice".parse().unwrap(),
        permission: GrantPermission::Read,
        scope,
        created_at: now(),
    }
}

/// One change of every kind that yields an event.
fn changes() -> Vec<Change> {
    let mut out = vec![Change::CollectionCreated {
        collection: Collection {
            id: CollectionId::new(),
            namespace: Namespace::default(),
            name: "docs".parse().unwrap(),
            description: String::new(),
            created_at: now(),
            artifact_count: 0,
        },
    }];
    for kind in [
        ChangeKind::Created,
        ChangeKind::Updated,
        ChangeKind::Deleted,
        ChangeKind::Restored,
        ChangeKind::Purged,
    ] {
        out.push(Change::Artifact {
            kind,
            artifact: artifact(false),
            prev_digest: Some(Digest::of(b"0")),
        });
    }
    out.push(Change::Artifact {
        kind: ChangeKind::Created,
        artifact: artifact(true),
        prev_digest: None,
    });
    for status in [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Partial,
        RunStatus::Interrupted,
    ] {
        out.push(Change::Run {
            run: run("ingest", status),
        });
        out.push(Change::Run {
            run: run("reindex", status),
        });
    }
    out.push(Change::Run {
        run: run("export", RunStatus::Succeeded),
    });
    out.push(Change::ContextPackageSaved {
        package: ContextPackage {
            id: uuid::Uuid::now_v7(),
            namespace: Namespace::default(),
            name: "onboarding".parse().unwrap(),
            version: 3,
            digest: Digest::of(b"m"),
            manifest: json!({}),
            actor: Actor::local_admin(),
            correlation_id: CorrelationId::new(),
            created_at: now(),
        },
    });
    out.push(Change::KeyCreated {
        key: key(),
        row_hash: "h".into(),
    });
    out.push(Change::KeyRevoked {
        key: key(),
        row_hash: "h".into(),
    });
    out.push(Change::ClearanceSet {
        clearance: Clearance {
            namespace: Namespace::default(),
            actor: "user:alice".parse().unwrap(),
            level: Classification::Confidential,
            set_at: now(),
        },
    });
    out.push(Change::HoldSet { hold: mark() });
    out.push(Change::HoldReleased { hold: mark() });
    out.push(Change::GrantCreated {
        grant: grant(GrantScope::Namespace),
    });
    out.push(Change::GrantDeleted {
        grant: grant(GrantScope::Collection("docs".parse().unwrap())),
    });
    out.push(Change::ArtifactQuarantined { quarantine: mark() });
    out.push(Change::ArtifactReleased { quarantine: mark() });
    out.push(Change::JobEnqueued {
        job: job(JobState::Queued),
    });
    for (action, to) in [
        ("cancel", JobState::Cancelled),
        ("retry", JobState::Queued),
        ("quarantine", JobState::Quarantined),
        ("release", JobState::Queued),
    ] {
        out.push(Change::JobActed(JobTransition {
            action: action.into(),
            job: job(to),
            from: JobState::Failed,
            changed: true,
        }));
    }
    let a = artifact(false);
    let revision = Revision {
        artifact_id: a.id,
        revision: 1,
        change: ChangeKind::Created,
        prev_digest: None,
        digest: a.digest,
        size: 1,
        media_type: a.media_type.clone(),
        title: None,
        metadata: Metadata::empty(),
        lifecycle: Lifecycle::default(),
        classification: Classification::default(),
        provenance: Provenance::default(),
        content_available: true,
        actor: Actor::local_admin(),
        correlation_id: CorrelationId::new(),
        run_id: None,
        created_at: now(),
    };
    out.push(Change::RevisionImported {
        revision: Box::new(revision),
        current: Some(Box::new(a)),
    });
    out.push(Change::Imported {
        package: "pkg".into(),
        summary: json!({ "artifacts": 1 }),
    });
    out.push(Change::RelationCreated {
        relation: relation(),
    });
    out.push(Change::RelationUpdated {
        relation: relation(),
    });
    out.push(Change::RelationDeleted {
        relation: relation(),
        cause: RelationDeleteCause::EndpointDeleted,
    });
    let webhook = |state: WebhookState| Webhook {
        id: WebhookId::new(),
        namespace: Namespace::default(),
        url: "https://hooks.example.com/kx".into(),
        description: String::new(),
        types: vec!["artifact.*".into()],
        collections: vec!["docs".parse().unwrap()],
        state,
        disabled_reason: (state == WebhookState::Disabled).then(|| "gone".to_owned()),
        created_at: now(),
        updated_at: now(),
        created_by: Actor::local_admin(),
        first_failure_at: None,
        creator_scopes: None,
    };
    for action in WebhookAction::ALL {
        let state = if *action == WebhookAction::Disabled {
            WebhookState::Disabled
        } else {
            WebhookState::Enabled
        };
        out.push(Change::Webhook {
            action: *action,
            webhook: webhook(state),
        });
    }
    out.push(Change::WebhookDeleted {
        webhook: webhook(WebhookState::Enabled),
        cancelled: 2,
    });
    out
}

fn denial(reason: Option<&str>) -> EventDraft {
    let draft = AuditDraft {
        action: "policy.deny.write".into(),
        target_kind: "resource".into(),
        target_id: "collection docs".into(),
        target_name: None,
        revision: None,
        prev_digest: None,
        digest: None,
        outcome: Outcome::Denied,
        detail: reason.map(|r| json!({ "reason": r })),
    };
    Change::audit_only_event(&draft).expect("a denial has an event")
}

#[test]
fn o5_every_emitted_event_validates_against_its_schema_and_every_type_is_emitted_or_reserved() {
    let mut emitted = BTreeSet::new();
    let all = changes();
    let drafts = all
        .iter()
        .filter_map(Change::event)
        .chain([denial(None), denial(Some("hold"))]);
    for e in drafts {
        check(&e.kind, &e.payload).unwrap_or_else(|err| panic!("{err}: {}", e.payload));
        emitted.insert(e.kind);
    }
    for t in CATALOG {
        match t.emission {
            Emission::Emitted(by) => assert!(
                emitted.contains(t.name),
                "{} says it is emitted by {by}, but no change emitted it",
                t.name
            ),
            Emission::Reserved(why) => {
                assert!(!why.is_empty());
                assert!(
                    !emitted.contains(t.name),
                    "{} is emitted: not reserved",
                    t.name
                );
            }
        }
    }
    // an audit-only record that is not a denial has no event
    let read = AuditDraft {
        action: "artifact.read".into(),
        target_kind: "artifact".into(),
        target_id: "x".into(),
        target_name: None,
        revision: None,
        prev_digest: None,
        digest: None,
        outcome: Outcome::Denied,
        detail: None,
    };
    assert!(Change::audit_only_event(&read).is_none());
}

#[test]
fn o5_catalog_is_sorted_unique_versioned_and_its_names_are_patterns() {
    let names: Vec<&str> = CATALOG.iter().map(|t| t.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "sorted, no duplicates");
    for t in CATALOG {
        assert_eq!(t.version, 1);
        assert!(!t.description.is_empty() && !t.subject.is_empty());
        assert_eq!(
            TypePattern::parse(t.name).unwrap(),
            TypePattern::Exact(t.name.to_owned())
        );
        let s = t.schema();
        assert_eq!(s["type"], "object", "{}: {s}", t.name);
        assert_eq!(s["title"], t.name);
        assert_eq!(s["additionalProperties"], false, "{}", t.name);
        assert!(s["properties"].is_object());
    }
    for required in [
        "collection.created",
        "artifact.created",
        "artifact.updated",
        "artifact.deleted",
        "artifact.purged",
        "artifact.restored",
        "relation.created",
        "relation.deleted",
        "ingest.started",
        "ingest.succeeded",
        "ingest.failed",
        "run.started",
        "run.succeeded",
        "run.failed",
        "job.succeeded",
        "job.failed",
        "job.dead",
        "job.cancelled",
        "job.retrying",
        "policy.denied",
        "artifact.derived",
        "export.created",
        "artifact.quarantined",
        "artifact.released",
        "context.built",
        "key.created",
        "key.revoked",
        "grant.created",
        "grant.deleted",
        "webhook.created",
        "webhook.updated",
        "webhook.disabled",
        "webhook.enabled",
        "webhook.deleted",
        "webhook.secret_rotated",
    ] {
        assert!(find(required).is_some(), "{required} is in the catalog");
    }
}

#[test]
fn o5_check_refuses_missing_extra_and_mistyped_members() {
    let ok = json!({ "collection": "docs" });
    check("collection.created", &ok).unwrap();
    assert!(check("collection.created", &json!({})).is_err());
    assert!(check("collection.created", &json!({ "collection": "d", "x": 1 })).is_err());
    assert!(check("collection.created", &json!({ "collection": 3 })).is_err());
    assert!(check("nope.happened", &ok).is_err());
    let e = check(
        "relation.created",
        &json!({ "type": "cites", "source": "a", "target": "b" }),
    )
    .unwrap_err();
    assert!(e.to_string().contains("revision"), "{e}");
}

#[test]
fn o5_cloudevent_envelope_carries_the_outbox_facts() {
    let c = &changes()[1];
    let draft = c.event().unwrap();
    let ev = OutboxEvent {
        seq: 42,
        at: now(),
        namespace: Namespace::default(),
        correlation_id: CorrelationId::new(),
        audit_seq: 40,
        draft,
    };
    let ce = CloudEvent::of(&ev, &source_base("st_1"));
    let v = serde_json::to_value(&ce).unwrap();
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["id"], "42");
    assert_eq!(v["sequence"], "42");
    assert_eq!(
        v["source"],
        format!("kontextual://st_1/{}", Namespace::default().as_str())
    );
    assert_eq!(v["type"], "artifact.created");
    assert_eq!(v["datacontenttype"], "application/json");
    assert_eq!(v["collection"], "docs");
    assert_eq!(v["correlationid"], ev.correlation_id.as_str());
    assert!(jiff::Timestamp::from_str_rfc3339(
        v["time"].as_str().unwrap()
    ));
    let back: CloudEvent = serde_json::from_value(v).unwrap();
    assert_eq!(back, ce);
    // no collection member for an event about no collection
    let k = Change::KeyCreated {
        key: key(),
        row_hash: "h".into(),
    }
    .event()
    .unwrap();
    let ev = OutboxEvent { draft: k, ..ev };
    let v = serde_json::to_value(CloudEvent::of(&ev, "kontextual://st_1/")).unwrap();
    assert!(v.get("collection").is_none());
    assert!(!v["source"].as_str().unwrap().contains("//st_1//"));
}

trait Rfc3339 {
    fn from_str_rfc3339(s: &str) -> bool;
}
impl Rfc3339 for jiff::Timestamp {
    fn from_str_rfc3339(s: &str) -> bool {
        s.parse::<jiff::Timestamp>().is_ok() && s.ends_with('Z')
    }
}

/// O5: the catalog table in docs/events.md is the catalog (set
/// `KONTEXTUAL_BLESS=1` to rewrite it after changing the catalog).
#[test]
fn o5_docs_events_md_lists_the_catalog() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (start, end) = ("<!-- catalog:start -->\n", "<!-- catalog:end -->");
    let a = doc
        .find(start)
        .expect("docs/events.md has the catalog markers")
        + start.len();
    let b = doc.find(end).unwrap();
    let table = kontextual_events::catalog::markdown_table();
    if std::env::var_os("KONTEXTUAL_BLESS").is_some() {
        std::fs::write(&path, format!("{}{}{}", &doc[..a], table, &doc[b..])).unwrap();
        return;
    }
    assert_eq!(
        &doc[a..b],
        table,
        "docs/events.md's catalog is stale: run with KONTEXTUAL_BLESS=1"
    );
}
