//! Conformance cases for webhook storage (O5): subscriptions, secrets,
//! deliveries, attempts, their jobs, retention and namespace scoping.

use kontextual_model::{
    Change, DELIVER_JOB, Delivery, DeliveryId, DeliveryState, JobId, JobState, Namespace,
    Timestamp, Webhook, WebhookAction, WebhookId, WebhookState,
};

use super::{Harness, coll, ctx};
use crate::{
    DeliveryOutcome, DeliveryQuery, ErrorKind, JobQuery, NewDelivery, Op, PageRequest, Store,
    WebhookOp, WebhookPatch, WriteBatch, WriteContext,
};

const SECRET: &str = "whsec_c0nf0rmance_current_9f2d";
const ROTATED: &str = "whsec_c0nf0rmance_rotated_41ab";

fn write(store: &Store, ctx: &WriteContext, ops: Vec<Op>) -> crate::Result<Vec<Change>> {
    store.write(WriteBatch {
        ctx: ctx.clone(),
        ops,
    })
}

fn one(store: &Store, ctx: &WriteContext, op: WebhookOp) -> crate::Result<Change> {
    let mut changes = write(store, ctx, vec![Op::Webhooks(op)])?;
    assert_eq!(changes.len(), 1, "{changes:?}");
    Ok(changes.pop().expect("one change"))
}

fn draft(url: &str) -> Webhook {
    let now = kontextual_model::now();
    Webhook {
        id: WebhookId::new(),
        namespace: Namespace::default(),
        url: url.to_owned(),
        description: "conformance".to_owned(),
        types: vec!["artifact.*".to_owned()],
        collections: vec![coll("docs")],
        state: WebhookState::Enabled,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
        created_by: kontextual_model::Actor::system(),
        first_failure_at: None,
        creator_scopes: None,
    }
}

fn create(s: &Store, c: &WriteContext, url: &str) -> Webhook {
    match one(
        s,
        c,
        WebhookOp::CreateWebhook {
            webhook: draft(url),
            secret: SECRET.into(),
        },
    )
    .unwrap()
    {
        Change::Webhook {
            action: WebhookAction::Created,
            webhook,
        } => webhook,
        other => panic!("unexpected {other:?}"),
    }
}

fn new_delivery(webhook: WebhookId, seq: u64) -> NewDelivery {
    NewDelivery {
        id: DeliveryId::new(),
        webhook,
        event_seq: seq,
        event_type: "artifact.created".to_owned(),
        body: format!("{{\"seq\":{seq}}}").into_bytes(),
    }
}

fn deliver(s: &Store, c: &WriteContext, d: Vec<NewDelivery>) -> (Vec<DeliveryId>, Vec<JobId>) {
    match one(
        s,
        c,
        WebhookOp::CreateDeliveries {
            deliveries: d,
            max_attempts: 7,
            per_job: 1,
        },
    )
    .unwrap()
    {
        Change::WebhookDeliveriesCreated { deliveries, jobs } => (deliveries, jobs),
        other => panic!("unexpected {other:?}"),
    }
}

fn attempt(
    s: &Store,
    c: &WriteContext,
    id: DeliveryId,
    at: Timestamp,
    state: DeliveryState,
) -> crate::Result<Delivery> {
    let ok = state == DeliveryState::Succeeded;
    match one(
        s,
        c,
        WebhookOp::RecordAttempt(DeliveryOutcome {
            delivery: id,
            at,
            status: Some(if ok { 204 } else { 503 }),
            latency_ms: Some(12),
            error: (!ok).then(|| "503 Service Unavailable".to_owned()),
            response: Some("busy".to_owned()),
            state,
            next_attempt_at: (state == DeliveryState::Failed)
                .then(|| at + jiff::SignedDuration::from_secs(30)),
        }),
    )? {
        Change::WebhookAttemptRecorded { delivery } => Ok(delivery),
        other => panic!("unexpected {other:?}"),
    }
}

fn delivery_jobs(s: &Store, ns: &Namespace) -> Vec<kontextual_model::Job> {
    s.jobs()
        .list(
            ns,
            &JobQuery {
                kind: Some(DELIVER_JOB.to_owned()),
                ..JobQuery::default()
            },
            &PageRequest::first(100),
        )
        .unwrap()
        .items
}

fn audit_actions(s: &Store) -> Vec<String> {
    s.audit()
        .records(0, 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.draft.action)
        .collect()
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// O5: a webhook is created, read, listed, updated, disabled and enabled,
/// has its secret rotated and is deleted; each write returns its change
/// and is audited with an event, and reads never show the secret.
pub fn o5_webhooks_are_created_updated_rotated_and_deleted(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let w = create(&s, &c, "https://hooks.example.com/a");
    assert_eq!(w.namespace, ns);
    assert_eq!(w.created_by, c.actor);
    assert_eq!(w.types, vec!["artifact.*".to_owned()]);
    assert_eq!(w.collections, vec![coll("docs")]);
    assert_eq!(s.webhooks().get(&ns, w.id).unwrap().as_ref(), Some(&w));
    let secrets = s.webhooks().secrets(&ns, w.id).unwrap().expect("secrets");
    assert_eq!(secrets.current, SECRET);
    assert_eq!(secrets.previous, None);

    // a taken id
    let mut again = draft("https://hooks.example.com/other");
    again.id = w.id;
    let e = one(
        &s,
        &c,
        WebhookOp::CreateWebhook {
            webhook: again,
            secret: SECRET.into(),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // bad input
    let e = one(
        &s,
        &c,
        WebhookOp::CreateWebhook {
            webhook: draft(""),
            secret: SECRET.into(),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = one(
        &s,
        &c,
        WebhookOp::CreateWebhook {
            webhook: draft("https://hooks.example.com/b"),
            secret: "".into(),
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // listing: newest first, paged
    let w2 = create(&s, &c, "https://hooks.example.com/b");
    let w3 = create(&s, &c, "https://hooks.example.com/c");
    let p1 = s.webhooks().list(&ns, &PageRequest::first(2)).unwrap();
    assert_eq!(
        p1.items.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![w3.id, w2.id]
    );
    let p2 = s
        .webhooks()
        .list(
            &ns,
            &PageRequest {
                after: p1.next.clone(),
                limit: 2,
            },
        )
        .unwrap();
    assert_eq!(
        p2.items.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![w.id]
    );
    assert!(p2.next.is_none());

    // update: only the given fields change
    let updated = match one(
        &s,
        &c,
        WebhookOp::UpdateWebhook {
            id: w.id,
            patch: WebhookPatch {
                url: Some("https://hooks.example.com/a2".into()),
                types: Some(vec!["artifact.*".into(), "run.*".into()]),
                collections: Some(Vec::new()),
                ..WebhookPatch::default()
            },
        },
    )
    .unwrap()
    {
        Change::Webhook {
            action: WebhookAction::Updated,
            webhook,
        } => webhook,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(updated.url, "https://hooks.example.com/a2");
    assert_eq!(updated.description, "conformance");
    assert_eq!(updated.types.len(), 2);
    assert!(updated.collections.is_empty());
    assert_eq!(updated.created_at, w.created_at);
    assert_eq!(s.webhooks().get(&ns, w.id).unwrap(), Some(updated.clone()));

    // disable, then enable
    let disabled = match one(
        &s,
        &c,
        WebhookOp::SetWebhookState {
            id: w.id,
            state: WebhookState::Disabled,
            reason: Some("maintenance".into()),
        },
    )
    .unwrap()
    {
        Change::Webhook {
            action: WebhookAction::Disabled,
            webhook,
        } => webhook,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(disabled.state, WebhookState::Disabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("maintenance"));
    let enabled: Vec<WebhookId> = s
        .webhooks()
        .enabled()
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(enabled, vec![w2.id, w3.id], "the dispatcher skips it");
    match one(
        &s,
        &c,
        WebhookOp::SetWebhookState {
            id: w.id,
            state: WebhookState::Enabled,
            reason: None,
        },
    )
    .unwrap()
    {
        Change::Webhook {
            action: WebhookAction::Enabled,
            webhook,
        } => {
            assert_eq!(webhook.state, WebhookState::Enabled);
            assert_eq!(webhook.disabled_reason, None);
        }
        other => panic!("unexpected {other:?}"),
    }

    // rotate: current becomes previous, until it expires
    let expires = ts("2030-01-01T00:00:00Z");
    match one(
        &s,
        &c,
        WebhookOp::RotateSecret {
            id: w.id,
            secret: ROTATED.into(),
            previous_expires_at: Some(expires),
        },
    )
    .unwrap()
    {
        Change::Webhook {
            action: WebhookAction::SecretRotated,
            webhook,
        } => assert_eq!(webhook.id, w.id),
        other => panic!("unexpected {other:?}"),
    }
    let secrets = s.webhooks().secrets(&ns, w.id).unwrap().expect("secrets");
    assert_eq!(secrets.current, ROTATED);
    assert_eq!(secrets.previous.as_deref(), Some(SECRET));
    assert_eq!(secrets.previous_expires_at, Some(expires));

    // unknown ids
    for op in [
        WebhookOp::UpdateWebhook {
            id: WebhookId::new(),
            patch: WebhookPatch::default(),
        },
        WebhookOp::SetWebhookState {
            id: WebhookId::new(),
            state: WebhookState::Disabled,
            reason: None,
        },
        WebhookOp::RotateSecret {
            id: WebhookId::new(),
            secret: ROTATED.into(),
            previous_expires_at: None,
        },
        WebhookOp::DeleteWebhook {
            id: WebhookId::new(),
        },
    ] {
        let e = one(&s, &c, op).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }

    // delete
    match one(&s, &c, WebhookOp::DeleteWebhook { id: w.id }).unwrap() {
        Change::WebhookDeleted { webhook, cancelled } => {
            assert_eq!(webhook.id, w.id);
            assert_eq!(cancelled, 0);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(s.webhooks().get(&ns, w.id).unwrap(), None);
    assert!(s.webhooks().secrets(&ns, w.id).unwrap().is_none());

    // every configuration change is audited, with an event
    let actions = audit_actions(&s);
    for a in [
        "webhook.create",
        "webhook.update",
        "webhook.disable",
        "webhook.enable",
        "webhook.rotate_secret",
        "webhook.delete",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    let kinds: Vec<String> = s
        .feed()
        .events(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.draft.kind)
        .collect();
    for k in [
        "webhook.created",
        "webhook.updated",
        "webhook.disabled",
        "webhook.enabled",
        "webhook.secret_rotated",
        "webhook.deleted",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    let rec = s
        .audit()
        .records(0, 1000)
        .unwrap()
        .into_iter()
        .find(|r| r.draft.action == "webhook.create")
        .expect("create record");
    assert_eq!(rec.draft.target_kind, "webhook");
    assert_eq!(rec.draft.target_id, w.id.to_string());
    assert_eq!(
        rec.draft.target_name.as_deref(),
        Some("https://hooks.example.com/a")
    );
}

/// O5: a webhook's deliveries are listed newest event first, in pages
/// that resume after the last event shown (whatever order their ids were
/// minted in), with the state filter; a cursor of another listing is
/// refused, not misread.
pub fn o5_deliveries_are_paged_by_event(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let w = create(&s, &c, "https://hooks.example.com/a");
    let other = create(&s, &c, "https://hooks.example.com/b");
    // ids minted in the opposite order of the events
    let mut batch: Vec<NewDelivery> = (1..=5)
        .rev()
        .map(|seq| new_delivery(w.id, seq * 10))
        .collect();
    batch.reverse();
    deliver(&s, &c, batch);
    deliver(&s, &c, vec![new_delivery(other.id, 25)]);
    let list = |q: &DeliveryQuery, after: Option<crate::Cursor>| {
        s.webhooks()
            .deliveries(&ns, w.id, q, &PageRequest { after, limit: 2 })
    };
    let all = DeliveryQuery::default();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = list(&all, after).unwrap();
        seen.extend(page.items.iter().map(|d| d.event_seq));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, [50, 40, 30, 20, 10], "newest event first, each once");
    let failed = DeliveryQuery {
        states: vec![DeliveryState::Failed],
        ..DeliveryQuery::default()
    };
    assert!(list(&failed, None).unwrap().items.is_empty());
    let foreign = crate::Cursor(DeliveryId::new().to_string());
    let err = list(&all, Some(foreign)).unwrap_err();
    assert!(err.to_string().contains("cursor"), "{err}");
}

/// O5: creating the deliveries of an event twice (a replay after a crash)
/// creates one delivery and one delivery job; the job is enqueued in the
/// same transaction, in the webhook's namespace, and nothing is audited.
pub fn o5_deliveries_are_created_once_with_their_job(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let w = create(&s, &c, "https://hooks.example.com/a");
    let audited = s.audit().head().unwrap();
    let first = new_delivery(w.id, 41);
    let (created, jobs) = deliver(&s, &c, vec![first.clone(), new_delivery(w.id, 42)]);
    assert_eq!(created.len(), 2);
    assert_eq!(jobs.len(), 2);
    assert_eq!(created[0], first.id);
    // the replay: same (webhook, event) pairs, fresh ids
    let (again, again_jobs) = deliver(&s, &c, vec![new_delivery(w.id, 41), new_delivery(w.id, 42)]);
    assert!(again.is_empty() && again_jobs.is_empty(), "{again:?}");
    // a deleted (unknown) webhook is skipped
    let (none, _) = deliver(&s, &c, vec![new_delivery(WebhookId::new(), 41)]);
    assert!(none.is_empty());
    assert_eq!(
        s.audit().head().unwrap(),
        audited,
        "bookkeeping: not audited"
    );

    let page = s
        .webhooks()
        .deliveries(
            &ns,
            w.id,
            &DeliveryQuery::default(),
            &PageRequest::first(10),
        )
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let d = s
        .webhooks()
        .delivery(&ns, first.id)
        .unwrap()
        .expect("delivery");
    assert_eq!(d.body, first.body, "the exact bytes, fixed at creation");
    assert_eq!(d.delivery.state, DeliveryState::Pending);
    assert_eq!(d.delivery.event_seq, 41);
    assert_eq!(d.delivery.event_type, "artifact.created");
    assert_eq!(d.delivery.webhook, w.id);
    assert_eq!(d.delivery.attempts, 0);
    assert!(d.attempts.is_empty());

    let queued = delivery_jobs(&s, &ns);
    assert_eq!(queued.len(), 2, "one job per delivery");
    let job = queued
        .iter()
        .find(|j| j.id == jobs[0])
        .expect("the first delivery's job");
    assert_eq!(job.kind, DELIVER_JOB);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.max_attempts, 7);
    assert_eq!(
        job.payload,
        serde_json::json!({ "delivery": first.id.to_string() })
    );
    assert_eq!(job.namespace, ns);
    assert_eq!(job.attempt, 0);
    assert_eq!(
        job.unique_key.as_deref(),
        Some(format!("{DELIVER_JOB}:{}", first.id).as_str())
    );
    assert_eq!(job.actor, c.actor);
    assert_eq!(job.correlation_id, c.correlation_id);
    assert!(job.run_at <= kontextual_model::now());
    assert_eq!((job.key_id.as_ref(), job.scopes.as_ref()), (None, None));

    // a batch mixing a replayed event and new ones: only the new are made,
    // in order, each with its job; any bytes survive as they are
    let mut binary = new_delivery(w.id, 44);
    binary.body = vec![0, 255, 1, 0x80, b'"', b'\\'];
    let fresh = new_delivery(w.id, 43);
    let (made, made_jobs) = deliver(
        &s,
        &c,
        vec![new_delivery(w.id, 42), fresh.clone(), binary.clone()],
    );
    assert_eq!(made, vec![fresh.id, binary.id]);
    assert_eq!(made_jobs.len(), 2);
    let stored = s
        .webhooks()
        .delivery(&ns, binary.id)
        .unwrap()
        .expect("delivery");
    assert_eq!(stored.body, binary.body);
    // text bodies (PostgreSQL once took them inside JSON text): quotes,
    // escapes, non-ASCII, a NUL byte in valid UTF-8, the empty body
    let texts: Vec<Vec<u8>> = vec![
        "{\"q\":\"\\\"a\\\\b\\u0000\",\"é\":\"日本 🎉\"}".into(),
        "nul \0 inside".into(),
        Vec::new(),
    ];
    let batch: Vec<NewDelivery> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| NewDelivery {
            body: t.clone(),
            ..new_delivery(w.id, 50 + i as u64)
        })
        .collect();
    let (made_texts, _) = deliver(&s, &c, batch.clone());
    assert_eq!(made_texts.len(), texts.len());
    for d in &batch {
        let stored = s.webhooks().delivery(&ns, d.id).unwrap().expect("delivery");
        assert_eq!(
            stored.body,
            d.body,
            "{:?}",
            String::from_utf8_lossy(&d.body)
        );
    }
    let job = s.jobs().get(&ns, made_jobs[1]).unwrap().expect("job");
    assert_eq!(
        job.payload,
        serde_json::json!({ "delivery": binary.id.to_string() })
    );

    // a webhook of another namespace: its delivery and job land there
    let other = ctx("other");
    let w_other = create(&s, &other, "https://hooks.example.com/o");
    let (made, _) = deliver(&s, &c, vec![new_delivery(w_other.id, 41)]);
    assert_eq!(made.len(), 1);
    assert!(s.webhooks().delivery(&ns, made[0]).unwrap().is_none());
    assert!(
        s.webhooks()
            .delivery(&other.namespace, made[0])
            .unwrap()
            .is_some()
    );
    assert_eq!(delivery_jobs(&s, &other.namespace).len(), 1);
    assert_eq!(delivery_jobs(&s, &ns).len(), 4 + texts.len());

    // a bad max_attempts is refused
    let e = one(
        &s,
        &c,
        WebhookOp::CreateDeliveries {
            deliveries: vec![new_delivery(w.id, 43)],
            max_attempts: 0,
            per_job: 1,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

/// O5: attempts are appended to the delivery, which keeps the latest
/// outcome; the webhook's failure streak starts at the first failure,
/// survives further failures and ends with a success or on enabling.
pub fn o5_attempts_update_the_delivery_and_the_failure_streak(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let w = create(&s, &c, "https://hooks.example.com/a");
    let (ids, _) = deliver(&s, &c, vec![new_delivery(w.id, 1), new_delivery(w.id, 2)]);
    let audited = s.audit().head().unwrap();
    let t1 = ts("2026-12-01T10:00:00Z");
    let t2 = ts("2026-12-01T10:05:00Z");
    let t3 = ts("2026-12-01T10:10:00Z");

    let d = attempt(&s, &c, ids[0], t1, DeliveryState::Failed).unwrap();
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_status, Some(503));
    assert_eq!(d.last_error.as_deref(), Some("503 Service Unavailable"));
    assert_eq!(d.last_latency_ms, Some(12));
    assert_eq!(
        d.next_attempt_at,
        Some(t1 + jiff::SignedDuration::from_secs(30))
    );
    let streak = |s: &Store| {
        s.webhooks()
            .get(&ns, w.id)
            .unwrap()
            .expect("webhook")
            .first_failure_at
    };
    assert_eq!(streak(&s), Some(t1));
    attempt(&s, &c, ids[1], t2, DeliveryState::Failed).unwrap();
    assert_eq!(streak(&s), Some(t1), "a streak keeps its start");

    let d = attempt(&s, &c, ids[0], t3, DeliveryState::Succeeded).unwrap();
    assert_eq!(d.state, DeliveryState::Succeeded);
    assert_eq!(d.attempts, 2);
    assert_eq!(d.last_status, Some(204));
    assert_eq!(d.last_error, None);
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(streak(&s), None, "a success ends the streak");

    let detail = s.webhooks().delivery(&ns, ids[0]).unwrap().expect("detail");
    assert_eq!(detail.attempts.len(), 2);
    assert_eq!(detail.attempts[0].at, t1);
    assert_eq!(detail.attempts[0].status, Some(503));
    assert_eq!(detail.attempts[0].response.as_deref(), Some("busy"));
    assert_eq!(detail.attempts[1].at, t3);
    assert_eq!(detail.attempts[1].error, None);

    // dead: the streak starts again; enabling clears it
    let d = attempt(&s, &c, ids[1], t3, DeliveryState::Dead).unwrap();
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(streak(&s), Some(t3));
    assert_eq!(
        s.audit().head().unwrap(),
        audited,
        "attempts are not audited"
    );
    one(
        &s,
        &c,
        WebhookOp::SetWebhookState {
            id: w.id,
            state: WebhookState::Disabled,
            reason: Some("failing since 10:10".into()),
        },
    )
    .unwrap();
    assert_eq!(streak(&s), Some(t3), "disabling keeps the streak");
    one(
        &s,
        &c,
        WebhookOp::SetWebhookState {
            id: w.id,
            state: WebhookState::Enabled,
            reason: None,
        },
    )
    .unwrap();
    assert_eq!(streak(&s), None, "enabling clears the streak");

    let counts = s.webhooks().counts(&ns, w.id).unwrap();
    assert_eq!(counts.succeeded, 1);
    assert_eq!(counts.dead, 1);
    assert_eq!(counts.pending, 0);
    let failed_only = s
        .webhooks()
        .deliveries(
            &ns,
            w.id,
            &DeliveryQuery {
                states: vec![DeliveryState::Dead, DeliveryState::Failed],
                since: None,
            },
            &PageRequest::first(10),
        )
        .unwrap();
    assert_eq!(
        failed_only.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );

    // an attempt does not end a delivery as pending; unknown ids are NotFound
    let e = attempt(&s, &c, ids[0], t3, DeliveryState::Pending).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = attempt(&s, &c, DeliveryId::new(), t3, DeliveryState::Failed).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

/// O5: an operator's resend puts deliveries back to pending with a fresh
/// delivery job each (audited); deleting a webhook cancels what it still
/// had to deliver, and a late attempt does not revive a cancelled delivery.
pub fn o5_resend_requeues_and_delete_cancels(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let w = create(&s, &c, "https://hooks.example.com/a");
    let other = create(&s, &c, "https://hooks.example.com/b");
    let (ids, jobs) = deliver(&s, &c, vec![new_delivery(w.id, 1), new_delivery(w.id, 2)]);
    let (other_ids, _) = deliver(&s, &c, vec![new_delivery(other.id, 1)]);
    let t = ts("2026-12-01T10:00:00Z");
    attempt(&s, &c, ids[0], t, DeliveryState::Dead).unwrap();
    // the first job is done with
    let done: Vec<Op> = jobs
        .iter()
        .map(|id| {
            Op::Jobs(crate::JobOp::ActOnJob {
                id: *id,
                action: crate::JobAction::Cancel,
            })
        })
        .collect();
    write(&s, &c, done).unwrap();

    match one(
        &s,
        &c,
        WebhookOp::ResendDeliveries {
            webhook: w.id,
            deliveries: vec![ids[0]],
            max_attempts: 4,
        },
    )
    .unwrap()
    {
        Change::WebhookDeliveriesResent {
            webhook,
            deliveries,
            jobs: fresh,
        } => {
            assert_eq!(webhook.id, w.id);
            assert_eq!(deliveries, vec![ids[0]]);
            assert_eq!(fresh.len(), 1);
            assert!(!jobs.contains(&fresh[0]), "a fresh job");
            let job = s.jobs().get(&ns, fresh[0]).unwrap().expect("job");
            assert_eq!(job.kind, DELIVER_JOB);
            assert_eq!(job.state, JobState::Queued);
            assert_eq!(job.max_attempts, 4);
            assert_eq!(
                job.payload,
                serde_json::json!({ "delivery": ids[0].to_string() })
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let d = s
        .webhooks()
        .delivery(&ns, ids[0])
        .unwrap()
        .expect("delivery");
    assert_eq!(d.delivery.state, DeliveryState::Pending);
    assert_eq!(d.attempts.len(), 1, "history is kept");
    assert!(audit_actions(&s).iter().any(|a| a == "webhook.resend"));
    // a delivery of another webhook, or an unknown one: NotFound, nothing changed
    for wrong in [other_ids[0], DeliveryId::new()] {
        let e = one(
            &s,
            &c,
            WebhookOp::ResendDeliveries {
                webhook: w.id,
                deliveries: vec![ids[1], wrong],
                max_attempts: 4,
            },
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }

    // the deliverer's read: delivery, body, webhook and secrets at once
    let found = s.webhooks().to_send(&ns, ids[1]).unwrap().expect("to send");
    assert_eq!(found.delivery.id, ids[1]);
    assert_eq!(found.delivery.state, DeliveryState::Pending);
    assert_eq!(found.body, b"{\"seq\":2}".to_vec());
    let hook = found.webhook.expect("its webhook");
    let (webhook, secrets) = &*hook;
    assert_eq!(webhook.id, w.id);
    assert_eq!(webhook.url, w.url);
    assert_eq!(secrets.current, SECRET);
    assert!(
        s.webhooks()
            .to_send(&ns, DeliveryId::new())
            .unwrap()
            .is_none()
    );
    let elsewhere: Namespace = "elsewhere".parse().expect("namespace");
    assert!(
        s.webhooks().to_send(&elsewhere, ids[1]).unwrap().is_none(),
        "another namespace's delivery is not there"
    );
    // a batch's read: every known id, any namespace, scoped by the caller
    let mut many = s
        .webhooks()
        .to_send_many(&[ids[1], DeliveryId::new(), other_ids[0], ids[0]])
        .unwrap();
    many.sort_by_key(|f| f.delivery.id);
    let mut want = vec![ids[0], ids[1], other_ids[0]];
    want.sort();
    assert_eq!(
        many.iter().map(|f| f.delivery.id).collect::<Vec<_>>(),
        want,
        "unknown ids are left out"
    );
    for f in many {
        let shared = f.webhook.clone().expect("a webhook");
        let (hook, secrets) = &*shared;
        assert_eq!(hook.id, f.delivery.webhook);
        assert_eq!(secrets.current, SECRET);
        assert!(f.clone().scoped(&elsewhere).is_none());
        assert!(f.scoped(&ns).is_some_and(|f| f.webhook.is_some()));
    }

    // delete: pending and failed deliveries are cancelled, finished ones kept
    attempt(&s, &c, ids[1], t, DeliveryState::Succeeded).unwrap();
    match one(&s, &c, WebhookOp::DeleteWebhook { id: w.id }).unwrap() {
        Change::WebhookDeleted { cancelled, .. } => assert_eq!(cancelled, 1),
        other => panic!("unexpected {other:?}"),
    }
    let state = |id| {
        s.webhooks()
            .delivery(&ns, id)
            .unwrap()
            .expect("kept")
            .delivery
            .state
    };
    assert_eq!(state(ids[0]), DeliveryState::Cancelled);
    assert_eq!(state(ids[1]), DeliveryState::Succeeded);
    let orphan = s.webhooks().to_send(&ns, ids[0]).unwrap().expect("kept");
    assert!(orphan.webhook.is_none(), "the webhook is gone");
    assert_eq!(
        state(other_ids[0]),
        DeliveryState::Pending,
        "other webhooks untouched"
    );
    // an attempt that was under way when the webhook went
    let d = attempt(&s, &c, ids[0], t, DeliveryState::Failed).unwrap();
    assert_eq!(d.state, DeliveryState::Cancelled);
    assert_eq!(d.next_attempt_at, None);
    let e = one(
        &s,
        &c,
        WebhookOp::ResendDeliveries {
            webhook: w.id,
            deliveries: vec![ids[0]],
            max_attempts: 4,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "the webhook is gone");
}

/// O5: recorders of one delivery at once (a rescued job and its old
/// worker, or a resend racing a retry) each add their attempt: none is
/// lost or numbered twice, whether the delivery had been tried before or
/// not. On PostgreSQL they run on separate connections, so this exercises
/// the row lock that moves the latest attempt aside.
pub fn o5_concurrent_recorders_keep_every_attempt(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let w = create(&s, &c, "https://hooks.example.com/a");
    let (ids, _) = deliver(&s, &c, vec![new_delivery(w.id, 1), new_delivery(w.id, 2)]);
    let t = |m: i64| ts("2026-12-01T10:00:00Z") + jiff::SignedDuration::from_mins(m);
    // the second delivery has been tried once already
    attempt(&s, &c, ids[1], t(0), DeliveryState::Failed).unwrap();
    const RECORDERS: i64 = 4;
    for round in 0..3 {
        std::thread::scope(|scope| {
            for r in 0..RECORDERS {
                for id in &ids {
                    let (s, c, id) = (s.clone(), c.clone(), *id);
                    scope.spawn(move || {
                        attempt(
                            &s,
                            &c,
                            id,
                            t(1 + round * RECORDERS + r),
                            DeliveryState::Failed,
                        )
                        .expect("recorded")
                    });
                }
            }
        });
    }
    for (id, before) in ids.iter().zip([0, 1]) {
        let d = s.webhooks().delivery(&ns, *id).unwrap().expect("delivery");
        let want = before + 3 * RECORDERS as u32;
        assert_eq!(d.delivery.attempts, want, "every attempt counted");
        let mut at: Vec<Timestamp> = d.attempts.iter().map(|a| a.at).collect();
        assert_eq!(at.len() as u32, want, "every attempt listed once");
        at.sort();
        at.dedup();
        assert_eq!(at.len() as u32, want, "no attempt listed twice");
    }
}

/// O5: retention deletes finished deliveries (and their attempts) older
/// than the cutoff, keeps those still to deliver, and is not audited.
pub fn o5_finished_deliveries_are_pruned(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let w = create(&s, &c, "https://hooks.example.com/a");
    let (ids, _) = deliver(&s, &c, (1..=4).map(|seq| new_delivery(w.id, seq)).collect());
    let t = ts("2026-12-01T10:00:00Z");
    attempt(&s, &c, ids[0], t, DeliveryState::Succeeded).unwrap();
    attempt(&s, &c, ids[1], t, DeliveryState::Dead).unwrap();
    attempt(&s, &c, ids[2], t, DeliveryState::Failed).unwrap();
    let audited = s.audit().head().unwrap();
    // a cutoff before they finished: nothing
    let changes = write(
        &s,
        &c,
        vec![Op::Webhooks(WebhookOp::PruneDeliveries {
            older_than: ts("2020-01-01T00:00:00Z"),
        })],
    )
    .unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    let future = kontextual_model::now() + jiff::SignedDuration::from_hours(1);
    let changes = write(
        &s,
        &c,
        vec![Op::Webhooks(WebhookOp::PruneDeliveries {
            older_than: future,
        })],
    )
    .unwrap();
    assert!(
        matches!(
            changes.as_slice(),
            [Change::WebhookDeliveriesPruned { count: 2 }]
        ),
        "{changes:?}"
    );
    assert!(s.webhooks().delivery(&ns, ids[0]).unwrap().is_none());
    assert!(s.webhooks().delivery(&ns, ids[1]).unwrap().is_none());
    assert!(
        s.webhooks().delivery(&ns, ids[2]).unwrap().is_some(),
        "failed: still retried"
    );
    assert!(
        s.webhooks().delivery(&ns, ids[3]).unwrap().is_some(),
        "pending"
    );
    assert_eq!(
        s.audit().head().unwrap(),
        audited,
        "bookkeeping: not audited"
    );
    // a pruned (webhook, event) may be delivered again: it is gone
    let (again, _) = deliver(&s, &c, vec![new_delivery(w.id, 1)]);
    assert_eq!(again.len(), 1);
}

/// O5/X9: a webhook, its secrets and its deliveries are invisible from
/// another namespace, and cannot be changed from there.
pub fn o5_webhooks_are_scoped_to_their_namespace(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let other = ctx("other");
    let w = create(&s, &c, "https://hooks.example.com/a");
    let (ids, _) = deliver(&s, &c, vec![new_delivery(w.id, 1)]);
    let ons = &other.namespace;
    assert!(s.webhooks().get(ons, w.id).unwrap().is_none());
    assert!(s.webhooks().secrets(ons, w.id).unwrap().is_none());
    assert!(
        s.webhooks()
            .list(ons, &PageRequest::first(10))
            .unwrap()
            .items
            .is_empty()
    );
    assert!(s.webhooks().delivery(ons, ids[0]).unwrap().is_none());
    assert!(
        s.webhooks()
            .deliveries(
                ons,
                w.id,
                &DeliveryQuery::default(),
                &PageRequest::first(10)
            )
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(s.webhooks().counts(ons, w.id).unwrap(), Default::default());
    for op in [
        WebhookOp::UpdateWebhook {
            id: w.id,
            patch: WebhookPatch {
                url: Some("https://evil.example.com".into()),
                ..WebhookPatch::default()
            },
        },
        WebhookOp::SetWebhookState {
            id: w.id,
            state: WebhookState::Disabled,
            reason: None,
        },
        WebhookOp::RotateSecret {
            id: w.id,
            secret: ROTATED.into(),
            previous_expires_at: None,
        },
        WebhookOp::ResendDeliveries {
            webhook: w.id,
            deliveries: ids.clone(),
            max_attempts: 3,
        },
        WebhookOp::DeleteWebhook { id: w.id },
    ] {
        let e = one(&s, &other, op).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }
    assert_eq!(s.webhooks().get(&c.namespace, w.id).unwrap(), Some(w));
    assert_eq!(
        s.webhooks()
            .counts(&c.namespace, ids_webhook(&s, &c, ids[0]))
            .unwrap()
            .pending,
        1
    );
}

fn ids_webhook(s: &Store, c: &WriteContext, id: DeliveryId) -> WebhookId {
    s.webhooks()
        .delivery(&c.namespace, id)
        .unwrap()
        .expect("delivery")
        .delivery
        .webhook
}

/// O5: a webhook's secrets appear in no audit record, no outbox event, no
/// change and no `Debug` output of an operation — through create, rotate,
/// update, state changes, resend and delete.
pub fn o5_secrets_never_reach_audit_records_or_events(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let w = create(&s, &c, "https://hooks.example.com/a");
    let ops = vec![
        WebhookOp::RotateSecret {
            id: w.id,
            secret: ROTATED.into(),
            previous_expires_at: None,
        },
        WebhookOp::UpdateWebhook {
            id: w.id,
            patch: WebhookPatch {
                description: Some("renamed".into()),
                ..WebhookPatch::default()
            },
        },
        WebhookOp::SetWebhookState {
            id: w.id,
            state: WebhookState::Disabled,
            reason: Some("testing".into()),
        },
        WebhookOp::SetWebhookState {
            id: w.id,
            state: WebhookState::Enabled,
            reason: None,
        },
    ];
    let mut seen = String::new();
    for op in ops {
        seen.push_str(&format!("{op:?}"));
        let change = one(&s, &c, op).unwrap();
        seen.push_str(&format!("{change:?}"));
        seen.push_str(&serde_json::to_string(&change).unwrap());
    }
    let (ids, _) = deliver(&s, &c, vec![new_delivery(w.id, 1)]);
    let resend = WebhookOp::ResendDeliveries {
        webhook: w.id,
        deliveries: ids,
        max_attempts: 3,
    };
    seen.push_str(&format!("{resend:?}"));
    seen.push_str(&format!("{:?}", one(&s, &c, resend).unwrap()));
    let create_op = WebhookOp::CreateWebhook {
        webhook: draft("https://hooks.example.com/b"),
        secret: SECRET.into(),
    };
    seen.push_str(&format!("{create_op:?}"));
    seen.push_str(&format!("{:?}", one(&s, &c, create_op).unwrap()));
    seen.push_str(&format!(
        "{:?}",
        one(&s, &c, WebhookOp::DeleteWebhook { id: w.id }).unwrap()
    ));
    seen.push_str(&format!(
        "{:?}",
        s.webhooks().secrets(&c.namespace, w.id).unwrap()
    ));
    for rec in s.audit().records(0, 1000).unwrap() {
        seen.push_str(&serde_json::to_string(&rec).unwrap());
    }
    let events = s.feed().events(0, 1000).unwrap();
    assert!(events.iter().any(|e| e.draft.kind.starts_with("webhook.")));
    for e in events {
        seen.push_str(&serde_json::to_string(&e).unwrap());
    }
    seen.push_str(&serde_json::to_string(&delivery_jobs(&s, &c.namespace)).unwrap());
    assert!(
        seen.contains("https://hooks.example.com/a"),
        "the URL is named"
    );
    assert!(!seen.contains(SECRET), "the secret leaked: {seen}");
    assert!(!seen.contains(ROTATED), "the rotated secret leaked: {seen}");
    assert!(!seen.contains("whsec_"), "a secret leaked: {seen}");
}

/// O5: a worker's batch of attempts, written in one batch, ends exactly as
/// the same attempts written one by one: delivery states, attempt numbers
/// and history, and each webhook's failure streak; a batch naming an
/// unknown delivery is refused whole.
pub fn o5_a_batch_of_attempts_records_as_one_by_one(h: &mut dyn Harness) {
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let t = |m: i64| ts("2026-12-01T10:00:00Z") + jiff::SignedDuration::from_mins(m);
    // (webhook A or B, delivery index, state, minute); a delivery may take
    // two attempts, which the batch then records one by one
    let plan = [
        (0, 0, DeliveryState::Failed, 1),
        (0, 1, DeliveryState::Succeeded, 2),
        (1, 0, DeliveryState::Failed, 3),
        (0, 2, DeliveryState::Failed, 4),
        (1, 1, DeliveryState::Dead, 5),
        (0, 3, DeliveryState::Dead, 6),
    ];
    let outcome = |id, state: DeliveryState, at: Timestamp| {
        let ok = state == DeliveryState::Succeeded;
        DeliveryOutcome {
            delivery: id,
            at,
            status: Some(if ok { 204 } else { 503 }),
            latency_ms: Some(7),
            error: (!ok).then(|| format!("503 at {at}")),
            response: Some(format!("answer at {at}")),
            state,
            next_attempt_at: (state == DeliveryState::Failed)
                .then(|| at + jiff::SignedDuration::from_secs(30)),
        }
    };
    let setup = |label: &str| {
        let a = create(&s, &c, &format!("https://hooks.example.com/{label}/a"));
        let b = create(&s, &c, &format!("https://hooks.example.com/{label}/b"));
        let (da, _) = deliver(&s, &c, (1..=4).map(|q| new_delivery(a.id, q)).collect());
        let (db, _) = deliver(&s, &c, (1..=2).map(|q| new_delivery(b.id, q)).collect());
        ([a, b], [da, db])
    };
    let ops = |ids: &[Vec<DeliveryId>; 2]| -> Vec<DeliveryOutcome> {
        plan.iter()
            .map(|&(w, d, state, m)| outcome(ids[w][d], state, t(m)))
            .collect()
    };
    let (one_hooks, one_ids) = setup("one");
    for o in ops(&one_ids) {
        one(&s, &c, WebhookOp::RecordAttempt(o)).unwrap();
    }
    let (batch_hooks, batch_ids) = setup("batch");
    // an unknown delivery refuses the whole batch
    let mut bad: Vec<Op> = ops(&batch_ids)
        .into_iter()
        .map(|o| Op::Webhooks(WebhookOp::RecordAttempt(o)))
        .collect();
    bad.push(Op::Webhooks(WebhookOp::RecordAttempt(outcome(
        DeliveryId::new(),
        DeliveryState::Succeeded,
        t(7),
    ))));
    let e = write(&s, &c, bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let untouched = s
        .webhooks()
        .delivery(&ns, batch_ids[0][0])
        .unwrap()
        .expect("delivery");
    assert_eq!(untouched.delivery.attempts, 0, "nothing was recorded");
    assert!(untouched.attempts.is_empty());

    let changes = write(
        &s,
        &c,
        ops(&batch_ids)
            .into_iter()
            .map(|o| Op::Webhooks(WebhookOp::RecordAttempt(o)))
            .collect(),
    )
    .unwrap();
    let recorded: Vec<DeliveryId> = changes
        .iter()
        .map(|ch| match ch {
            Change::WebhookAttemptRecorded { delivery } => delivery.id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        recorded,
        plan.iter()
            .map(|&(w, d, _, _)| batch_ids[w][d])
            .collect::<Vec<_>>(),
        "one change per attempt, in order"
    );
    for w in 0..2 {
        for (x, y) in one_ids[w].iter().zip(&batch_ids[w]) {
            let x = s.webhooks().delivery(&ns, *x).unwrap().expect("one by one");
            let y = s.webhooks().delivery(&ns, *y).unwrap().expect("batched");
            assert_eq!(
                (
                    x.delivery.state,
                    x.delivery.attempts,
                    x.delivery.last_status,
                    &x.delivery.last_error,
                    x.delivery.last_latency_ms,
                    x.delivery.next_attempt_at
                ),
                (
                    y.delivery.state,
                    y.delivery.attempts,
                    y.delivery.last_status,
                    &y.delivery.last_error,
                    y.delivery.last_latency_ms,
                    y.delivery.next_attempt_at
                )
            );
            assert_eq!(x.attempts, y.attempts, "the same history");
        }
        let streak = |id| {
            s.webhooks()
                .get(&ns, id)
                .unwrap()
                .expect("webhook")
                .first_failure_at
        };
        assert_eq!(
            streak(one_hooks[w].id),
            streak(batch_hooks[w].id),
            "webhook {w}'s failure streak"
        );
    }
    // A: failed at 1, succeeded at 2, failed at 4: the streak starts at 4
    assert_eq!(
        s.webhooks()
            .get(&ns, batch_hooks[0].id)
            .unwrap()
            .expect("webhook")
            .first_failure_at,
        Some(t(4))
    );

    // two attempts of one delivery in one batch are numbered 1 and 2
    let (_, again) = setup("again");
    let id = again[0][0];
    write(
        &s,
        &c,
        vec![
            Op::Webhooks(WebhookOp::RecordAttempt(outcome(
                id,
                DeliveryState::Failed,
                t(1),
            ))),
            Op::Webhooks(WebhookOp::RecordAttempt(outcome(
                id,
                DeliveryState::Succeeded,
                t(2),
            ))),
        ],
    )
    .unwrap();
    let d = s.webhooks().delivery(&ns, id).unwrap().expect("delivery");
    assert_eq!(d.delivery.attempts, 2);
    assert_eq!(d.delivery.state, DeliveryState::Succeeded);
    assert_eq!(
        d.attempts.iter().map(|a| a.at).collect::<Vec<_>>(),
        [t(1), t(2)]
    );
}

fn jobs_of(s: &Store, ns: &Namespace, kind: &str) -> Vec<kontextual_model::Job> {
    let mut jobs = s
        .jobs()
        .list(
            ns,
            &JobQuery {
                kind: Some(kind.to_owned()),
                ..JobQuery::default()
            },
            &PageRequest::first(100),
        )
        .unwrap()
        .items;
    jobs.sort_by_key(|j| j.id);
    jobs
}

fn batch_ids(job: &kontextual_model::Job) -> Vec<String> {
    serde_json::from_value(job.payload["deliveries"].clone()).expect("a list of deliveries")
}

/// O5: above one delivery per job, a webhook's fresh deliveries are
/// grouped into `webhook.deliver_batch` jobs of up to that many, in event
/// order, each in its webhook's namespace; handing deliveries on gives each
/// pending or failed one its own `webhook.deliver` job that knows the
/// attempts made, once, and skips finished ones — none of it audited.
pub fn o5_batch_jobs_group_fresh_deliveries_and_hand_on(h: &mut dyn Harness) {
    use kontextual_model::DELIVER_BATCH_JOB;
    let s = h.store();
    let c = ctx("default");
    let ns = c.namespace.clone();
    let other = ctx("other");
    let w = create(&s, &c, "https://hooks.example.com/a");
    let v = create(&s, &other, "https://hooks.example.com/b");
    let made = [
        new_delivery(w.id, 1),
        new_delivery(v.id, 1),
        new_delivery(w.id, 2),
        new_delivery(w.id, 3),
    ];
    let ids: Vec<DeliveryId> = made.iter().map(|d| d.id).collect();
    let audited = s.audit().head().unwrap();
    let jobs = match one(
        &s,
        &c,
        WebhookOp::CreateDeliveries {
            deliveries: made.to_vec(),
            max_attempts: 7,
            per_job: 2,
        },
    )
    .unwrap()
    {
        Change::WebhookDeliveriesCreated { deliveries, jobs } => {
            assert_eq!(deliveries, ids, "every delivery, in order");
            jobs
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(jobs.len(), 3, "w: [1, 2] and [3]; v: [1]");
    let mine = jobs_of(&s, &ns, DELIVER_BATCH_JOB);
    assert_eq!(mine.len(), 2);
    let runs: Vec<Vec<String>> = mine.iter().map(batch_ids).collect();
    assert_eq!(
        runs,
        vec![
            vec![ids[0].to_string(), ids[2].to_string()],
            vec![ids[3].to_string()]
        ]
    );
    for job in &mine {
        assert_eq!(job.max_attempts, 7);
        assert_eq!(job.unique_key, None);
        assert_eq!(job.state, JobState::Queued);
    }
    let theirs = jobs_of(&s, &other.namespace, DELIVER_BATCH_JOB);
    assert_eq!(theirs.len(), 1, "in the webhook's namespace");
    assert_eq!(batch_ids(&theirs[0]), vec![ids[1].to_string()]);
    assert!(
        jobs_of(&s, &ns, DELIVER_JOB).is_empty(),
        "no job per delivery"
    );

    // per_job 0 is refused, and nothing is made
    let e = one(
        &s,
        &c,
        WebhookOp::CreateDeliveries {
            deliveries: vec![new_delivery(w.id, 9)],
            max_attempts: 7,
            per_job: 0,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // The batch tried 1 (failed) and 3 (succeeded), and hands on 1 to its
    // retry, 2 (not tried) now, and 3 — which is finished, so skipped.
    let t = ts("2026-12-01T10:00:00Z");
    let retry_at = t + jiff::SignedDuration::from_secs(5);
    attempt(&s, &c, ids[0], t, DeliveryState::Failed).unwrap();
    attempt(&s, &c, ids[3], t, DeliveryState::Succeeded).unwrap();
    let hand_on = |s: &Store| match one(
        s,
        &c,
        WebhookOp::ContinueDeliveries {
            deliveries: vec![(ids[0], Some(retry_at)), (ids[2], None), (ids[3], None)],
            max_attempts: 7,
        },
    )
    .unwrap()
    {
        Change::WebhookDeliveriesContinued { jobs } => jobs,
        other => panic!("unexpected {other:?}"),
    };
    let continued = hand_on(&s);
    assert_eq!(continued.len(), 2, "the finished one is skipped");
    let retry = s.jobs().get(&ns, continued[0]).unwrap().expect("job");
    assert_eq!(retry.kind, DELIVER_JOB);
    assert_eq!(
        retry.payload,
        serde_json::json!({ "delivery": ids[0].to_string(), "tried": 1 })
    );
    assert_eq!(retry.max_attempts, 6, "the attempts left");
    assert_eq!(retry.run_at, retry_at);
    assert_eq!(
        retry.unique_key.as_deref(),
        Some(format!("{DELIVER_JOB}:{}", ids[0]).as_str())
    );
    let untried = s.jobs().get(&ns, continued[1]).unwrap().expect("job");
    assert_eq!(
        untried.payload,
        serde_json::json!({ "delivery": ids[2].to_string() })
    );
    assert_eq!(untried.max_attempts, 7);
    assert!(untried.run_at <= kontextual_model::now());
    // handing on again keeps the pending jobs
    assert_eq!(hand_on(&s), continued);
    assert_eq!(jobs_of(&s, &ns, DELIVER_JOB).len(), 2);
    assert_eq!(
        s.audit().head().unwrap(),
        audited,
        "bookkeeping: not audited"
    );
}
