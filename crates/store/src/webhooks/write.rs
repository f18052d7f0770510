//! Webhook writes: each runs inside the engine's transaction and returns
//! the change it made (the caller audits the audited ones). Secrets are
//! written here and read only by `read::secrets`: no change carries one.

use kontextual_model::{
    Change, DELIVER_BATCH_JOB, DELIVER_JOB, DeliveryId, DeliveryState, JobId, Timestamp, Webhook,
    WebhookAction, WebhookId, WebhookState,
};

use super::read::{DELIVERY_COLS, WEBHOOK_COLS, delivery_row, webhook, webhook_row};
use crate::port::{
    DeliveryOutcome, NewDelivery, NewJob, Secret, WebhookOp, WebhookPatch, WriteContext,
};
use crate::sql::{Array, Dialect, Tx, args};
use crate::{Result, StoreError};

const MAX_URL: usize = 2048;
const MAX_TEXT: usize = 1024;
const MAX_TYPES: usize = 64;
/// The most deliveries one `CreateDeliveries`, `ContinueDeliveries` or
/// `ResendDeliveries` takes.
const MAX_BATCH: usize = 10_000;
/// The most deliveries one `webhook.deliver_batch` job holds.
const MAX_PER_JOB: u32 = 1_000;

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidInput(msg.into())
}

fn check_url(url: &str) -> Result<()> {
    if url.trim().is_empty() || url.len() > MAX_URL {
        return Err(invalid(format!("a webhook URL must be 1-{MAX_URL} bytes")));
    }
    Ok(())
}

fn check_description(d: &str) -> Result<()> {
    if d.len() > MAX_TEXT {
        return Err(invalid(format!(
            "a webhook description must be at most {MAX_TEXT} bytes"
        )));
    }
    Ok(())
}

fn check_types(types: &[String]) -> Result<()> {
    if types.len() > MAX_TYPES {
        return Err(invalid(format!(
            "a webhook takes at most {MAX_TYPES} event types"
        )));
    }
    if let Some(t) = types
        .iter()
        .find(|t| t.is_empty() || t.len() > 128 || t.chars().any(char::is_whitespace))
    {
        return Err(invalid(format!(
            "event type pattern {t:?}: use 1-128 characters without spaces"
        )));
    }
    Ok(())
}

fn check_secret(secret: &Secret) -> Result<()> {
    if secret.0.is_empty() || secret.0.len() > MAX_TEXT {
        // the secret itself is never part of an error
        return Err(invalid(format!(
            "a webhook secret must be 1-{MAX_TEXT} bytes"
        )));
    }
    Ok(())
}

fn check_max_attempts(n: u32) -> Result<()> {
    if n == 0 || n > 1000 {
        return Err(invalid("max attempts must be between 1 and 1000"));
    }
    Ok(())
}

/// A batch of deliveries to write: its size and the attempts its jobs may make.
fn check_batch(len: usize, max_attempts: u32) -> Result<()> {
    check_max_attempts(max_attempts)?;
    if len > MAX_BATCH {
        return Err(invalid(format!("at most {MAX_BATCH} deliveries at once")));
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(e.to_string()))
}

fn not_found(id: WebhookId) -> StoreError {
    StoreError::not_found(format!("webhook {id}"))
}

/// The webhook of the batch's namespace, or `NotFound`.
fn existing(tx: &mut Tx<'_>, ctx: &WriteContext, id: WebhookId) -> Result<Webhook> {
    webhook(tx, &ctx.namespace, id)?.ok_or_else(|| not_found(id))
}

fn reread(tx: &mut Tx<'_>, id: WebhookId) -> Result<Webhook> {
    tx.query_opt(
        &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = ?1"),
        args![id.0],
        webhook_row,
    )?
    .ok_or_else(|| StoreError::Internal(format!("webhook {id} vanished")))
}

fn create(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    webhook: Webhook,
    secret: Secret,
    now: Timestamp,
) -> Result<Change> {
    check_url(&webhook.url)?;
    check_description(&webhook.description)?;
    check_types(&webhook.types)?;
    check_secret(&secret)?;
    let webhook = Webhook {
        namespace: ctx.namespace.clone(),
        disabled_reason: match webhook.state {
            WebhookState::Enabled => None,
            WebhookState::Disabled => webhook.disabled_reason,
        },
        created_at: now,
        updated_at: now,
        created_by: ctx.actor.clone(),
        first_failure_at: None,
        ..webhook
    };
    // A taken id fails the batch, so the failed statement needs no
    // savepoint on PostgreSQL.
    tx.execute(
        "INSERT INTO webhooks (id, namespace, url, description, types, collections, state, \
           disabled_reason, secret, created_by, created_at, updated_at, creator_scopes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
        args![
            webhook.id.0,
            webhook.namespace.as_str(),
            &webhook.url,
            &webhook.description,
            to_json(&webhook.types)?,
            to_json(&webhook.collections)?,
            webhook.state.as_str(),
            &webhook.disabled_reason,
            secret.0,
            webhook.created_by.to_string(),
            now,
            webhook.creator_scopes.as_ref().map(to_json).transpose()?,
        ],
    )
    .map_err(|e| match e {
        StoreError::AlreadyExists { .. } => StoreError::AlreadyExists {
            what: format!("webhook {}", webhook.id),
        },
        other => other,
    })?;
    Ok(Change::Webhook {
        action: WebhookAction::Created,
        webhook,
    })
}

fn update(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: WebhookId,
    patch: WebhookPatch,
    now: Timestamp,
) -> Result<Change> {
    let current = existing(tx, ctx, id)?;
    let url = patch.url.unwrap_or(current.url);
    let description = patch.description.unwrap_or(current.description);
    let types = patch.types.unwrap_or(current.types);
    let collections = patch.collections.unwrap_or(current.collections);
    check_url(&url)?;
    check_description(&description)?;
    check_types(&types)?;
    tx.execute(
        "UPDATE webhooks SET url = ?2, description = ?3, types = ?4, collections = ?5, updated_at = ?6 \
         WHERE id = ?1",
        args![
            id.0,
            &url,
            &description,
            to_json(&types)?,
            to_json(&collections)?,
            now
        ],
    )?;
    Ok(Change::Webhook {
        action: WebhookAction::Updated,
        webhook: reread(tx, id)?,
    })
}

fn set_state(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: WebhookId,
    state: WebhookState,
    reason: Option<String>,
    now: Timestamp,
) -> Result<Change> {
    existing(tx, ctx, id)?;
    let action = match state {
        WebhookState::Enabled => {
            tx.execute(
                "UPDATE webhooks SET state = 'enabled', disabled_reason = NULL, \
                   first_failure_at = NULL, updated_at = ?2 WHERE id = ?1",
                args![id.0, now],
            )?;
            WebhookAction::Enabled
        }
        WebhookState::Disabled => {
            if reason.as_ref().is_some_and(|r| r.len() > MAX_TEXT) {
                return Err(invalid(format!(
                    "a reason must be at most {MAX_TEXT} bytes"
                )));
            }
            tx.execute(
                "UPDATE webhooks SET state = 'disabled', disabled_reason = ?2, updated_at = ?3 \
                 WHERE id = ?1",
                args![id.0, reason, now],
            )?;
            WebhookAction::Disabled
        }
    };
    Ok(Change::Webhook {
        action,
        webhook: reread(tx, id)?,
    })
}

fn rotate_secret(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: WebhookId,
    secret: Secret,
    previous_expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<Change> {
    check_secret(&secret)?;
    existing(tx, ctx, id)?;
    tx.execute(
        "UPDATE webhooks SET previous_secret = secret, previous_expires_at = ?3, secret = ?2, \
           updated_at = ?4 WHERE id = ?1",
        args![id.0, secret.0, previous_expires_at, now],
    )?;
    Ok(Change::Webhook {
        action: WebhookAction::SecretRotated,
        webhook: reread(tx, id)?,
    })
}

fn delete(tx: &mut Tx<'_>, ctx: &WriteContext, id: WebhookId, now: Timestamp) -> Result<Change> {
    let webhook = existing(tx, ctx, id)?;
    let cancelled = tx.execute(
        "UPDATE webhook_deliveries SET state = 'cancelled', next_attempt_at = NULL, updated_at = ?2 \
         WHERE webhook_id = ?1 AND state IN ('pending', 'delivering', 'failed')",
        args![id.0, now],
    )?;
    tx.execute("DELETE FROM webhooks WHERE id = ?1", args![id.0])?;
    Ok(Change::WebhookDeleted { webhook, cancelled })
}

/// Enqueues the job that delivers `delivery`, in `ctx`'s namespace. A
/// delivery job already waiting for the same delivery is kept instead.
/// A delivery's job. `fresh`: the delivery was inserted in this
/// transaction, so no job can hold its unique key yet (no lookup; the
/// caller wakes workers once for the batch). A resent delivery may still
/// have its job queued: then that job is kept.
/// A delivery's job: the deliverer's payload, keyed by the delivery.
fn delivery_job(delivery: DeliveryId, max_attempts: u32) -> NewJob {
    NewJob {
        id: JobId::new(),
        kind: DELIVER_JOB.to_owned(),
        payload: serde_json::json!({ "delivery": delivery.to_string() }),
        max_attempts,
        run_at: None,
        unique_key: Some(format!("{DELIVER_JOB}:{delivery}")),
        key_id: None,
        scopes: None,
    }
}

/// The first attempts of several fresh deliveries of one webhook. No
/// unique key: its deliveries were created in the same transaction, and a
/// later job of one of them is a [`DELIVER_JOB`] with its own key.
fn batch_job(deliveries: &[DeliveryId], max_attempts: u32) -> NewJob {
    let ids: Vec<String> = deliveries.iter().map(ToString::to_string).collect();
    NewJob {
        id: JobId::new(),
        kind: DELIVER_BATCH_JOB.to_owned(),
        payload: serde_json::json!({ "deliveries": ids }),
        max_attempts,
        run_at: None,
        unique_key: None,
        key_id: None,
        scopes: None,
    }
}

/// The jobs of fresh deliveries (in creation order): one each with
/// `per_job` 1, else runs of up to `per_job` deliveries of one webhook —
/// a webhook's runs in the order its deliveries came, webhooks in the
/// order each first came.
fn jobs_for(
    created: &[(DeliveryId, WebhookId, kontextual_model::Namespace)],
    max_attempts: u32,
    per_job: u32,
) -> Vec<(kontextual_model::Namespace, NewJob)> {
    if per_job <= 1 {
        return created
            .iter()
            .map(|(id, _, ns)| (ns.clone(), delivery_job(*id, max_attempts)))
            .collect();
    }
    let mut by_webhook: Vec<(WebhookId, &kontextual_model::Namespace, Vec<DeliveryId>)> =
        Vec::new();
    for (id, webhook, ns) in created {
        match by_webhook.iter_mut().find(|(w, _, _)| w == webhook) {
            Some((_, _, ids)) => ids.push(*id),
            None => by_webhook.push((*webhook, ns, vec![*id])),
        }
    }
    let per_job = usize::try_from(per_job).unwrap_or(usize::MAX);
    by_webhook
        .into_iter()
        .flat_map(|(_, ns, ids)| {
            ids.chunks(per_job)
                .map(|run| (ns.clone(), batch_job(run, max_attempts)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Enqueues a delivery's job, or finds the one pending under its key.
fn enqueue_delivery(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    new: NewJob,
    now: Timestamp,
) -> Result<JobId> {
    match crate::jobs::write::enqueue(tx, ctx, new, now)? {
        Change::JobEnqueued { job } | Change::JobUnchanged { job } => Ok(job.id),
        other => Err(StoreError::Internal(format!(
            "enqueueing a delivery job yielded {other:?}"
        ))),
    }
}

fn create_deliveries(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    deliveries: Vec<NewDelivery>,
    max_attempts: u32,
    per_job: u32,
    now: Timestamp,
) -> Result<Change> {
    check_batch(deliveries.len(), max_attempts)?;
    if per_job == 0 || per_job > MAX_PER_JOB {
        return Err(invalid(format!(
            "deliveries per job must be between 1 and {MAX_PER_JOB}"
        )));
    }
    for d in &deliveries {
        if d.event_type.is_empty() || d.event_type.len() > 128 {
            return Err(invalid("an event type must be 1-128 bytes"));
        }
    }
    // A delivery for an (endpoint, event) that already has one is skipped
    // (a replayed event), and so is one whose webhook was deleted since
    // the dispatcher read it.
    let inserted = insert_deliveries(tx, &deliveries, now)?;
    // The fresh deliveries' jobs, in one batch: no job can hold a key
    // naming a delivery that did not exist (so no unique-key lookup).
    let created: Vec<(DeliveryId, WebhookId, kontextual_model::Namespace)> = deliveries
        .iter()
        .filter_map(|d| Some((d.id, d.webhook, inserted.get(&d.id)?.clone())))
        .collect();
    if created.is_empty() {
        return Ok(Change::WebhookDeliveriesCreated {
            deliveries: Vec::new(),
            jobs: Vec::new(),
        });
    }
    let new_jobs = jobs_for(&created, max_attempts, per_job);
    let kind = if per_job > 1 {
        DELIVER_BATCH_JOB
    } else {
        DELIVER_JOB
    };
    let jobs = crate::jobs::write::enqueue_new_many(tx, ctx, new_jobs, now)?;
    let created: Vec<DeliveryId> = created.into_iter().map(|(id, _, _)| id).collect();
    if !jobs.is_empty() {
        crate::jobs::write::notify_workers(tx, kind)?;
    }
    Ok(Change::WebhookDeliveriesCreated {
        deliveries: created,
        jobs,
    })
}

/// One new delivery unless its (webhook, event) has one.
const INSERT_DELIVERY_SQLITE: &str = "INSERT INTO webhook_deliveries (id, webhook_id, namespace, \
    event_seq, event_type, body, state, attempts, created_at, updated_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?7) \
    ON CONFLICT (webhook_id, event_seq) DO NOTHING";

/// A batch of new deliveries as one array per column, in their webhooks'
/// namespaces, skipping each whose (webhook, event) has one or whose
/// webhook is gone; returns the ids inserted with their namespaces.
const INSERT_DELIVERIES_PG: &str = "INSERT INTO webhook_deliveries (id, webhook_id, namespace, \
    event_seq, event_type, body, state, attempts, created_at, updated_at) \
    SELECT v.id, v.webhook, w.namespace, v.seq, v.kind, v.body, 'pending', 0, ?6, ?6 \
    FROM unnest(CAST(?1 AS uuid[]), CAST(?2 AS uuid[]), \
      CAST(?3 AS bigint[]), CAST(?4 AS text[]), CAST(?5 AS bytea[])) \
      AS v(id, webhook, seq, kind, body) \
    JOIN webhooks w ON w.id = v.webhook \
    ON CONFLICT (webhook_id, event_seq) DO NOTHING RETURNING id, namespace";

/// Inserts new deliveries in their webhooks' namespaces, skipping those
/// whose (webhook, event) already has one and those whose webhook is gone;
/// returns the ids inserted, with their namespaces. PostgreSQL takes the
/// batch as one array per column ([`Array`]) and finds the namespaces in
/// the same statement: one round trip, bodies in binary. SQLite, in
/// process, looks each webhook up once and runs a cached statement per
/// delivery.
fn insert_deliveries(
    tx: &mut Tx<'_>,
    deliveries: &[NewDelivery],
    now: Timestamp,
) -> Result<std::collections::HashMap<DeliveryId, kontextual_model::Namespace>> {
    let mut inserted = std::collections::HashMap::with_capacity(deliveries.len());
    match tx.dialect() {
        Dialect::Sqlite => {
            // a batch has many deliveries per webhook: look each up once
            let mut namespaces = std::collections::HashMap::new();
            for d in deliveries {
                let ns = match namespaces.get(&d.webhook) {
                    Some(ns) => Option::clone(ns),
                    None => {
                        let ns = tx.query_opt(
                            "SELECT namespace FROM webhooks WHERE id = ?1",
                            args![d.webhook.0],
                            |r| r.parsed::<kontextual_model::Namespace>(0),
                        )?;
                        namespaces.insert(d.webhook, ns.clone());
                        ns
                    }
                };
                let Some(ns) = ns else { continue };
                let n = tx.execute(
                    INSERT_DELIVERY_SQLITE,
                    args![
                        d.id.0,
                        d.webhook.0,
                        ns.as_str(),
                        d.event_seq,
                        d.event_type.as_str(),
                        d.body.as_slice(),
                        now
                    ],
                )?;
                if n == 1 {
                    inserted.insert(d.id, ns);
                }
            }
        }
        Dialect::Postgres => {
            let ids = Array::Uuid(deliveries.iter().map(|d| d.id.0).collect());
            let webhooks = Array::Uuid(deliveries.iter().map(|d| d.webhook.0).collect());
            let seqs = Array::I64(
                deliveries
                    .iter()
                    .map(|d| Some(i64::try_from(d.event_seq).unwrap_or(i64::MAX)))
                    .collect(),
            );
            let kinds = Array::Text(
                deliveries
                    .iter()
                    .map(|d| Some(d.event_type.as_str()))
                    .collect(),
            );
            let bodies = Array::Bytes(deliveries.iter().map(|d| d.body.as_slice()).collect());
            tx.for_each(
                INSERT_DELIVERIES_PG,
                args![ids, webhooks, seqs, kinds, bodies, now],
                |r| {
                    inserted.insert(DeliveryId(r.get(0)?), r.parsed(1)?);
                    Ok(())
                },
            )?;
        }
    }
    Ok(inserted)
}

/// Hands deliveries on to a [`DELIVER_JOB`] each (see
/// `WebhookOp::ContinueDeliveries`). The job's `tried` and attempts left
/// come from the delivery's row, as this transaction sees it — after the
/// attempts recorded earlier in the same batch.
fn continue_deliveries(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    deliveries: Vec<(DeliveryId, Option<Timestamp>)>,
    max_attempts: u32,
    now: Timestamp,
) -> Result<Change> {
    check_batch(deliveries.len(), max_attempts)?;
    let mut jobs = Vec::with_capacity(deliveries.len());
    for (id, run_at) in deliveries {
        let row = tx.query_opt(
            "SELECT namespace, attempts FROM webhook_deliveries \
             WHERE id = ?1 AND state IN ('pending', 'failed')",
            args![id.0],
            |r| {
                Ok((
                    r.parsed::<kontextual_model::Namespace>(0)?,
                    r.get::<i64>(1)?,
                ))
            },
        )?;
        let Some((namespace, attempts)) = row else {
            continue;
        };
        let tried = u32::try_from(attempts).unwrap_or(u32::MAX);
        let mut new = delivery_job(id, max_attempts.saturating_sub(tried).max(1));
        new.run_at = run_at;
        if tried > 0
            && let Some(p) = new.payload.as_object_mut()
        {
            p.insert("tried".to_owned(), tried.into());
        }
        let in_ns = WriteContext {
            namespace,
            ..ctx.clone()
        };
        jobs.push(enqueue_delivery(tx, &in_ns, new, now)?);
    }
    if !jobs.is_empty() {
        crate::jobs::write::notify_workers(tx, DELIVER_JOB)?;
    }
    Ok(Change::WebhookDeliveriesContinued { jobs })
}

fn check_outcome(o: &DeliveryOutcome) -> Result<()> {
    if !matches!(
        o.state,
        DeliveryState::Succeeded | DeliveryState::Failed | DeliveryState::Dead
    ) {
        return Err(invalid(format!(
            "an attempt ends a delivery as succeeded, failed or dead, not {}",
            o.state
        )));
    }
    Ok(())
}

/// When a failed delivery is tried next (nothing for a final outcome).
fn next_attempt(o: &DeliveryOutcome) -> Option<Timestamp> {
    (o.state == DeliveryState::Failed)
        .then_some(o.next_attempt_at)
        .flatten()
}

/// The delivery's side of one attempt, numbering it: one statement, so two
/// recorders of the same delivery (a rescued job and its old worker) never
/// take one number. The attempt becomes the delivery's latest (`last_*`).
/// A delivery cancelled meanwhile (its webhook was deleted) stays
/// cancelled. Parameters: id, state, status, error, latency, next attempt,
/// now, the attempt's time, its response.
fn update_delivery(only_first: bool) -> String {
    format!(
        "UPDATE webhook_deliveries SET \
           state = CASE WHEN state = 'cancelled' THEN state ELSE CAST(?2 AS TEXT) END, \
           attempts = attempts + 1, last_status = ?3, last_error = ?4, last_latency_ms = ?5, \
           next_attempt_at = CASE WHEN state = 'cancelled' THEN NULL ELSE CAST(?6 AS BIGINT) END, \
           updated_at = ?7, last_attempt_at = ?8, last_response = ?9 \
         WHERE id = ?1{} RETURNING {DELIVERY_COLS}",
        if only_first { " AND attempts = 0" } else { "" }
    )
}

/// [`update_delivery`] for any attempt.
pub(crate) static UPDATE_DELIVERY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| update_delivery(false));

/// [`update_delivery`] for a delivery not tried yet (no row otherwise):
/// nothing to move to `webhook_attempts` first.
pub(crate) static FIRST_ATTEMPT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| update_delivery(true));

/// Moves a delivery's latest attempt from its row into `webhook_attempts`,
/// before a newer one takes its place. PostgreSQL locks the delivery's row
/// until the update that follows (another recorder waits, then moves the
/// attempt this one records).
fn move_latest_attempt(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => MOVE_LATEST_ATTEMPT,
        Dialect::Postgres => MOVE_LATEST_ATTEMPT_PG,
    }
}

const MOVE_LATEST_ATTEMPT: &str = "INSERT INTO webhook_attempts \
    (delivery_id, attempt, at, status, latency_ms, error, response) \
    SELECT id, attempts, last_attempt_at, last_status, last_latency_ms, last_error, last_response \
    FROM webhook_deliveries WHERE id = ?1 AND attempts > 0 AND last_attempt_at IS NOT NULL";

const MOVE_LATEST_ATTEMPT_PG: &str = "INSERT INTO webhook_attempts \
    (delivery_id, attempt, at, status, latency_ms, error, response) \
    SELECT id, attempts, last_attempt_at, last_status, last_latency_ms, last_error, last_response \
    FROM webhook_deliveries WHERE id = ?1 AND attempts > 0 AND last_attempt_at IS NOT NULL \
    FOR UPDATE";

/// Records one attempt (not the webhook's failure streak); returns the
/// delivery as updated. A first attempt is one update; a later one first
/// moves the latest attempt so far into `webhook_attempts`.
fn record_one(
    tx: &mut Tx<'_>,
    o: &DeliveryOutcome,
    now: Timestamp,
) -> Result<kontextual_model::Delivery> {
    check_outcome(o)?;
    let update = |tx: &mut Tx<'_>, sql: &str| {
        tx.query_opt(
            sql,
            args![
                o.delivery.0,
                o.state.as_str(),
                o.status.map(u32::from),
                &o.error,
                o.latency_ms,
                next_attempt(o),
                now,
                o.at,
                &o.response
            ],
            delivery_row,
        )
    };
    if let Some(delivery) = update(tx, &FIRST_ATTEMPT)? {
        return Ok(delivery);
    }
    tx.execute(move_latest_attempt(tx.dialect()), args![o.delivery.0])?;
    match update(tx, &UPDATE_DELIVERY)? {
        Some(delivery) => Ok(delivery),
        None => Err(StoreError::not_found(format!("delivery {}", o.delivery))),
    }
}

fn record_attempt(tx: &mut Tx<'_>, o: DeliveryOutcome, now: Timestamp) -> Result<Change> {
    let delivery = record_one(tx, &o, now)?;
    let webhook = delivery.webhook;
    if o.state == DeliveryState::Succeeded {
        tx.execute(
            "UPDATE webhooks SET first_failure_at = NULL WHERE id = ?1 AND first_failure_at IS NOT NULL",
            args![webhook.0],
        )?;
    } else {
        tx.execute(
            "UPDATE webhooks SET first_failure_at = ?2 WHERE id = ?1 AND first_failure_at IS NULL",
            args![webhook.0, o.at],
        )?;
    }
    Ok(Change::WebhookAttemptRecorded { delivery })
}

/// Records several attempts (a worker's batch of deliveries) with one
/// statement per webhook for the failure streaks. The outcome is
/// [`record_attempt`]'s for each, in order. Outcomes for one delivery more
/// than once go one by one. PostgreSQL takes the batch's first attempts as
/// one statement over a JSON array (one round trip instead of one or two
/// per attempt); SQLite, in process, runs [`record_one`]'s cached
/// statements per attempt — parsing the JSON cost its single writer more.
pub(crate) fn record_attempts(
    tx: &mut Tx<'_>,
    outcomes: Vec<DeliveryOutcome>,
    now: Timestamp,
) -> Result<Vec<Change>> {
    let distinct: std::collections::HashSet<DeliveryId> =
        outcomes.iter().map(|o| o.delivery).collect();
    if distinct.len() != outcomes.len() {
        return outcomes
            .into_iter()
            .map(|o| record_attempt(tx, o, now))
            .collect();
    }
    let mut by_id = match tx.dialect() {
        Dialect::Sqlite => {
            let mut by_id = std::collections::HashMap::with_capacity(outcomes.len());
            for o in &outcomes {
                let delivery = record_one(tx, o, now)?;
                by_id.insert(o.delivery, delivery);
            }
            by_id
        }
        Dialect::Postgres => record_attempts_pg(tx, &outcomes, now)?,
    };
    // The failure streak, per webhook, as one by one: the last success
    // clears it, and the first failure after that (or, with no success,
    // into an empty streak) starts it.
    let mut streaks: Vec<(WebhookId, bool, Option<Timestamp>)> = Vec::new();
    for o in &outcomes {
        let webhook = by_id[&o.delivery].webhook;
        let i = match streaks.iter().position(|(w, _, _)| *w == webhook) {
            Some(i) => i,
            None => {
                streaks.push((webhook, false, None));
                streaks.len() - 1
            }
        };
        let (_, cleared, started) = &mut streaks[i];
        if o.state == DeliveryState::Succeeded {
            *cleared = true;
            *started = None;
        } else if started.is_none() {
            *started = Some(o.at);
        }
    }
    for (webhook, cleared, started) in streaks {
        match (cleared, started) {
            (true, None) => tx.execute(
                "UPDATE webhooks SET first_failure_at = NULL WHERE id = ?1 AND first_failure_at IS NOT NULL",
                args![webhook.0],
            )?,
            (true, Some(at)) => tx.execute(
                "UPDATE webhooks SET first_failure_at = ?2 WHERE id = ?1",
                args![webhook.0, at],
            )?,
            (false, Some(at)) => tx.execute(
                "UPDATE webhooks SET first_failure_at = ?2 WHERE id = ?1 AND first_failure_at IS NULL",
                args![webhook.0, at],
            )?,
            (false, None) => 0,
        };
    }
    Ok(outcomes
        .iter()
        .filter_map(|o| by_id.remove(&o.delivery))
        .map(|delivery| Change::WebhookAttemptRecorded { delivery })
        .collect())
}

/// [`record_attempts`]' deliveries and attempts on PostgreSQL: the
/// deliveries as updated, by id. First attempts (nearly all) go in one
/// statement; a delivery tried before, or unknown, goes through
/// [`record_one`].
fn record_attempts_pg(
    tx: &mut Tx<'_>,
    outcomes: &[DeliveryOutcome],
    now: Timestamp,
) -> Result<std::collections::HashMap<DeliveryId, kontextual_model::Delivery>> {
    for o in outcomes {
        check_outcome(o)?;
    }
    // in id order, a chunk's id range holds little besides its own
    let mut sorted: Vec<&DeliveryOutcome> = outcomes.iter().collect();
    sorted.sort_by_key(|o| o.delivery);
    let mut by_id = std::collections::HashMap::with_capacity(outcomes.len());
    for chunk in sorted.chunks(FIRST_ATTEMPTS_PER_STATEMENT) {
        let (Some(low), Some(high)) = (chunk.first(), chunk.last()) else {
            continue;
        };
        let (low, high) = (low.delivery.0, high.delivery.0);
        let i64s = |f: fn(&DeliveryOutcome) -> Option<i64>| {
            Array::I64(chunk.iter().map(|o| f(o)).collect())
        };
        let texts = |f: fn(&DeliveryOutcome) -> Option<&str>| {
            Array::Text(chunk.iter().map(|o| f(o)).collect())
        };
        let columns = args![
            Array::Uuid(chunk.iter().map(|o| o.delivery.0).collect()),
            texts(|o| Some(o.state.as_str())),
            i64s(|o| o.status.map(i64::from)),
            texts(|o| o.error.as_deref()),
            i64s(|o| o.latency_ms.and_then(|l| i64::try_from(l).ok())),
            i64s(|o| next_attempt(o).map(|t| t.as_microsecond())),
            i64s(|o| Some(o.at.as_microsecond())),
            texts(|o| o.response.as_deref()),
            now,
            low,
            high
        ];
        tx.for_each(&FIRST_ATTEMPTS_PG, columns, |r| {
            let d = delivery_row(r)?;
            by_id.insert(d.id, d);
            Ok(())
        })?;
    }
    for o in outcomes {
        if let std::collections::hash_map::Entry::Vacant(e) = by_id.entry(o.delivery) {
            e.insert(record_one(tx, o, now)?);
        }
    }
    Ok(by_id)
}

/// At most this many outcomes per [`FIRST_ATTEMPTS_PG`]: a statement's cost
/// grows with its id range (which other deliveries may share), and a few
/// round trips per commit cost less than a wide range.
const FIRST_ATTEMPTS_PER_STATEMENT: usize = 64;

/// [`FIRST_ATTEMPT`] for a chunk of outcomes on PostgreSQL, one array per
/// column (?1-?8: id, state, status, error, latency, next attempt, the
/// attempt's time, response; instants in microseconds). The ids' range
/// comes too (`?10`, `?11`, the chunk's lowest and highest id): joined
/// only with the arrays' rows, a plan cached while the table was empty
/// reads every delivery (a hash join); with the range a plan reads the
/// range at most — ids are UUIDv7, so the chunk's deliveries and the few
/// created between them — or looks each id up by key. (The ids as
/// `id = ANY(…)` did that too, but a plan that puts it into the nested
/// loop's index condition searches the whole array once per row: 1,000
/// outcomes took 1.2 s, against 9 ms by range.)
pub(crate) static FIRST_ATTEMPTS_PG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE webhook_deliveries SET \
               state = CASE WHEN state = 'cancelled' THEN state ELSE v.k_state END, \
               attempts = attempts + 1, last_status = v.k_status, last_error = v.k_error, \
               last_latency_ms = v.k_latency, \
               next_attempt_at = CASE WHEN state = 'cancelled' THEN NULL ELSE v.k_next END, \
               updated_at = ?9, last_attempt_at = v.k_at, last_response = v.k_response \
             FROM unnest(CAST(?1 AS uuid[]), CAST(?2 AS text[]), CAST(?3 AS bigint[]), \
               CAST(?4 AS text[]), CAST(?5 AS bigint[]), CAST(?6 AS bigint[]), \
               CAST(?7 AS bigint[]), CAST(?8 AS text[])) \
               AS v(k_id, k_state, k_status, k_error, k_latency, k_next, k_at, k_response) \
             WHERE id = v.k_id AND id BETWEEN ?10 AND ?11 \
               AND attempts = 0 \
             RETURNING {DELIVERY_COLS}"
    )
});

fn resend(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    id: WebhookId,
    deliveries: Vec<DeliveryId>,
    max_attempts: u32,
    now: Timestamp,
) -> Result<Change> {
    check_batch(deliveries.len(), max_attempts)?;
    let webhook = existing(tx, ctx, id)?;
    let mut done = Vec::with_capacity(deliveries.len());
    let mut jobs = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        if done.contains(&d) {
            continue;
        }
        let n = tx.execute(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = NULL, updated_at = ?3 \
             WHERE id = ?1 AND webhook_id = ?2",
            args![d.0, id.0, now],
        )?;
        if n == 0 {
            return Err(StoreError::not_found(format!(
                "delivery {d} of webhook {id}"
            )));
        }
        let job = enqueue_delivery(tx, ctx, delivery_job(d, max_attempts), now)?;
        // A delivery waiting for a retry keeps its job (one per delivery,
        // by key): that job starts the schedule over, due now — not at the
        // retry time a `Retry-After` of hours may have set. One a worker
        // is running is left to it. (The state test is in the values, not
        // the WHERE, so the row is found by its key: see sql_statements.)
        tx.execute(
            "UPDATE jobs SET \
               run_at = CASE WHEN state IN ('queued', 'failed') THEN ?2 ELSE run_at END, \
               attempt = CASE WHEN state IN ('queued', 'failed') THEN 0 ELSE attempt END, \
               max_attempts = CASE WHEN state IN ('queued', 'failed') THEN ?3 ELSE max_attempts END, \
               state = CASE WHEN state IN ('queued', 'failed') THEN 'queued' ELSE state END \
             WHERE id = ?1",
            args![job.0, now, max_attempts],
        )?;
        jobs.push(job);
        done.push(d);
    }
    Ok(Change::WebhookDeliveriesResent {
        webhook,
        deliveries: done,
        jobs,
    })
}

/// Removes the deliveries that finished before `older_than`, with their
/// attempts. They are found by id, through the primary key: ids are
/// UUIDv7, minted before a delivery's first update, so one updated before
/// `older_than` has an id below [`first_id_at`] of it (no index on
/// `updated_at`, so recording an attempt touches no index: migration PG
/// 0005 / SQLite 0015). A delivery whose id came from a process whose clock
/// runs ahead of the one that finished it can be left for the next prune;
/// none is ever removed early.
fn prune(tx: &mut Tx<'_>, older_than: Timestamp) -> Result<Vec<Change>> {
    const FINISHED: &str =
        "id < ?2 AND state IN ('succeeded', 'dead', 'cancelled') AND updated_at < ?1";
    let below = first_id_at(older_than);
    tx.execute(
        &format!(
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE {FINISHED})"
        ),
        args![older_than, below],
    )?;
    let count = tx.execute(
        &format!("DELETE FROM webhook_deliveries WHERE {FINISHED}"),
        args![older_than, below],
    )?;
    Ok(if count == 0 {
        Vec::new()
    } else {
        vec![Change::WebhookDeliveriesPruned { count }]
    })
}

/// The smallest UUIDv7 of the millisecond of `t` (every id minted before
/// `t` sorts below it, as bytes and as PostgreSQL's `uuid`). Instants
/// before the epoch give the nil id, below every v7 id.
fn first_id_at(t: Timestamp) -> uuid::Uuid {
    match u64::try_from(t.as_millisecond()) {
        Ok(ms) => uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10]).into_uuid(),
        Err(_) => uuid::Uuid::nil(),
    }
}

/// Applies one webhook operation inside the engine's transaction and
/// returns the changes it made (`crate::apply` appends their audit records).
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    ctx: &WriteContext,
    op: WebhookOp,
    now: Timestamp,
) -> Result<Vec<Change>> {
    Ok(match op {
        WebhookOp::CreateWebhook { webhook, secret } => {
            vec![create(tx, ctx, webhook, secret, now)?]
        }
        WebhookOp::UpdateWebhook { id, patch } => vec![update(tx, ctx, id, patch, now)?],
        WebhookOp::SetWebhookState { id, state, reason } => {
            vec![set_state(tx, ctx, id, state, reason, now)?]
        }
        WebhookOp::RotateSecret {
            id,
            secret,
            previous_expires_at,
        } => vec![rotate_secret(
            tx,
            ctx,
            id,
            secret,
            previous_expires_at,
            now,
        )?],
        WebhookOp::DeleteWebhook { id } => vec![delete(tx, ctx, id, now)?],
        WebhookOp::CreateDeliveries {
            deliveries,
            max_attempts,
            per_job,
        } => vec![create_deliveries(
            tx,
            ctx,
            deliveries,
            max_attempts,
            per_job,
            now,
        )?],
        WebhookOp::ContinueDeliveries {
            deliveries,
            max_attempts,
        } => vec![continue_deliveries(tx, ctx, deliveries, max_attempts, now)?],
        WebhookOp::RecordAttempt(outcome) => vec![record_attempt(tx, outcome, now)?],
        WebhookOp::ResendDeliveries {
            webhook,
            deliveries,
            max_attempts,
        } => vec![resend(tx, ctx, webhook, deliveries, max_attempts, now)?],
        WebhookOp::PruneDeliveries { older_than } => prune(tx, older_than)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retention's id bound: ids minted before the instant sort below it,
    /// ids minted in its millisecond or later do not.
    #[test]
    fn o5_first_id_at_separates_ids_minted_before_and_after() {
        let t = jiff::Timestamp::from_millisecond(1_796_000_000_123).unwrap();
        let bound = first_id_at(t);
        let minted = |ms: u64, rand: [u8; 10]| {
            uuid::Builder::from_unix_timestamp_millis(ms, &rand).into_uuid()
        };
        assert!(minted(1_796_000_000_122, [0xff; 10]) < bound);
        assert!(minted(1_796_000_000_123, [0; 10]) >= bound);
        assert!(minted(1_796_000_000_124, [0; 10]) > bound);
        assert!(
            minted(1_796_000_000_122, [0xff; 10]).as_bytes() < bound.as_bytes(),
            "SQLite compares the bytes"
        );
        let before_epoch = jiff::Timestamp::from_second(-1).unwrap();
        assert_eq!(first_id_at(before_epoch), uuid::Uuid::nil());
        assert!(
            uuid::Uuid::now_v7()
                > first_id_at(kontextual_model::now() - jiff::SignedDuration::from_secs(1))
        );
    }
}
