//! Webhook reads: subscriptions, their secrets, deliveries and attempts.

use kontextual_model::{
    Delivery, DeliveryAttempt, DeliveryCounts, DeliveryDetail, DeliveryId, DeliveryState,
    Namespace, Timestamp, Webhook, WebhookId, WebhookSecrets,
};

use crate::port::{Cursor, DeliveryQuery, DeliveryToSend, Page, PageRequest, WebhookToSend};
use crate::sql::{Array, Dialect, Row, Tx, args};
use crate::{Result, StoreError};

/// The columns [`webhook_row`] reads, in its order (never the secrets).
pub(super) const WEBHOOK_COLS: &str = "id, namespace, url, description, types, collections, state, \
     disabled_reason, created_at, updated_at, created_by, first_failure_at, creator_scopes";

pub(super) fn webhook_row(r: &Row<'_>) -> Result<Webhook> {
    Ok(Webhook {
        id: WebhookId(r.get(0)?),
        namespace: r.parsed(1)?,
        url: r.get(2)?,
        description: r.get(3)?,
        types: r.json(4)?,
        collections: r.json(5)?,
        state: r.parsed(6)?,
        disabled_reason: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        created_by: r.parsed(10)?,
        first_failure_at: r.get(11)?,
        creator_scopes: r
            .get::<Option<String>>(12)?
            .map(|s| {
                serde_json::from_str(&s).map_err(|e| {
                    StoreError::Corrupted(format!("unreadable webhook creator scopes: {e}"))
                })
            })
            .transpose()?,
    })
}

/// The columns [`delivery_row`] reads, in its order (not the body).
pub(super) const DELIVERY_COLS: &str = "id, webhook_id, namespace, event_seq, event_type, state, \
     attempts, last_status, last_error, last_latency_ms, created_at, updated_at, next_attempt_at";

/// An HTTP status at rest (an integer column) as the model's `u16`.
fn status(r: &Row<'_>, idx: usize) -> Result<Option<u16>> {
    r.get::<Option<i64>>(idx)?
        .map(|v| {
            u16::try_from(v)
                .map_err(|_| StoreError::Corrupted(format!("HTTP status {v} in column {idx}")))
        })
        .transpose()
}

pub(super) fn delivery_row(r: &Row<'_>) -> Result<Delivery> {
    Ok(Delivery {
        id: DeliveryId(r.get(0)?),
        webhook: WebhookId(r.get(1)?),
        namespace: r.parsed(2)?,
        event_seq: r.get(3)?,
        event_type: r.get(4)?,
        state: r.parsed(5)?,
        attempts: r.get(6)?,
        last_status: status(r, 7)?,
        last_error: r.get(8)?,
        last_latency_ms: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        next_attempt_at: r.get(12)?,
    })
}

pub(crate) fn webhook(tx: &mut Tx<'_>, ns: &Namespace, id: WebhookId) -> Result<Option<Webhook>> {
    tx.query_opt(
        &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = ?1 AND namespace = ?2"),
        args![id.0, ns.as_str()],
        webhook_row,
    )
}

/// Newest first. `LIMIT (SELECT …)` and the casts: see `jobs::read::jobs`.
pub(crate) fn webhooks(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    req: &PageRequest,
) -> Result<Page<Webhook>> {
    let limit = req.effective_limit();
    let before = req.before_id()?;
    tx.page(
        &format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE namespace = ?1 AND id < ?2 \
             ORDER BY id DESC LIMIT (SELECT CAST(?3 AS BIGINT))"
        ),
        args![ns.as_str(), before, u64::from(limit) + 1],
        limit,
        webhook_row,
        |w| Cursor(w.id.to_string()),
    )
}

/// Every enabled webhook of every namespace, oldest first (the dispatcher's view).
pub(crate) fn enabled(tx: &mut Tx<'_>) -> Result<Vec<Webhook>> {
    tx.query(
        &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE state = 'enabled' ORDER BY id"),
        &[],
        webhook_row,
    )
}

pub(crate) fn secrets(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    id: WebhookId,
) -> Result<Option<WebhookSecrets>> {
    tx.query_opt(
        "SELECT secret, previous_secret, previous_expires_at FROM webhooks \
         WHERE id = ?1 AND namespace = ?2",
        args![id.0, ns.as_str()],
        |r| {
            Ok(WebhookSecrets {
                current: r.get(0)?,
                previous: r.get(1)?,
                previous_expires_at: r.get(2)?,
            })
        },
    )
}

/// The states a listing may show, spelled `,pending,failed,` for a
/// containment test in SQL; `None`: every state.
fn state_set(states: &[DeliveryState]) -> Option<String> {
    (!states.is_empty()).then(|| {
        let mut s = String::from(",");
        for st in states {
            s.push_str(st.as_str());
            s.push(',');
        }
        s
    })
}

/// A webhook's deliveries, newest event first (the order the dispatcher
/// created them in), paged by event: the unique (webhook, event) key is
/// the listing's index, so a delivery's insert maintains no index for it.
pub(crate) fn deliveries(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    webhook: WebhookId,
    q: &DeliveryQuery,
    req: &PageRequest,
) -> Result<Page<Delivery>> {
    let limit = req.effective_limit();
    let before = req.before_seq()?;
    tx.page(
        &format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = ?1 AND namespace = ?2 \
             AND event_seq < ?3 \
             AND (CAST(?4 AS TEXT) IS NULL OR CAST(?4 AS TEXT) LIKE ('%,' || state || ',%')) \
             AND (CAST(?5 AS BIGINT) IS NULL OR created_at >= CAST(?5 AS BIGINT)) \
             ORDER BY event_seq DESC LIMIT (SELECT CAST(?6 AS BIGINT))"
        ),
        args![
            webhook.0,
            ns.as_str(),
            before,
            state_set(&q.states),
            q.since,
            u64::from(limit) + 1
        ],
        limit,
        delivery_row,
        |d| Cursor(d.event_seq.to_string()),
    )
}

/// A delivery with its body and every attempt, oldest first: the earlier
/// ones from `webhook_attempts`, the latest from the delivery's row.
pub(crate) fn delivery(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    id: DeliveryId,
) -> Result<Option<DeliveryDetail>> {
    let found = tx.query_opt(
        &format!(
            "SELECT {DELIVERY_COLS}, body, last_attempt_at, last_response FROM webhook_deliveries \
             WHERE id = ?1 AND namespace = ?2"
        ),
        args![id.0, ns.as_str()],
        |r| {
            let delivery = delivery_row(r)?;
            let latest = match r.get::<Option<Timestamp>>(14)? {
                Some(at) if delivery.attempts > 0 => Some(DeliveryAttempt {
                    at,
                    status: delivery.last_status,
                    latency_ms: delivery.last_latency_ms,
                    error: delivery.last_error.clone(),
                    response: r.get(15)?,
                }),
                _ => None,
            };
            Ok((delivery, r.get::<Vec<u8>>(13)?, latest))
        },
    )?;
    let Some((delivery, body, latest)) = found else {
        return Ok(None);
    };
    let mut attempts = tx.query(
        "SELECT at, status, latency_ms, error, response FROM webhook_attempts \
         WHERE delivery_id = ?1 ORDER BY attempt",
        args![id.0],
        |r| {
            Ok(DeliveryAttempt {
                at: r.get(0)?,
                status: status(r, 1)?,
                latency_ms: r.get(2)?,
                error: r.get(3)?,
                response: r.get(4)?,
            })
        },
    )?;
    attempts.extend(latest);
    Ok(Some(DeliveryDetail {
        delivery,
        body,
        attempts,
    }))
}

/// A delivery with its webhook and secrets (the deliverer's read). By
/// primary keys alone, the namespace checked here: on SQLite a join or a
/// second constraint lets a STAT4 build re-prepare the statement on every
/// bind (profiling showed SQL parsing as the deliverer's largest cost), so
/// it reads two rows by key; PostgreSQL reads both in one round trip.
pub(crate) fn to_send(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    id: DeliveryId,
) -> Result<Option<DeliveryToSend>> {
    let found = match tx.dialect() {
        Dialect::Sqlite => to_send_by_keys(tx, id)?,
        Dialect::Postgres => tx.query_opt(&DELIVERY_TO_SEND, args![id.0], to_send_row)?,
    };
    Ok(found.and_then(|f| f.scoped(ns)))
}

/// Several deliveries with their webhooks and secrets, for a worker's batch
/// (any namespace: the caller scopes each with [`DeliveryToSend::scoped`]).
/// Each webhook is read once and shared: a batch is mostly one endpoint's
/// deliveries, and a webhook's columns and secrets on every delivery's row
/// cost PostgreSQL rows to build and this side rows to parse. PostgreSQL
/// reads the deliveries in one round trip and their webhooks in another;
/// SQLite by keys, as [`to_send`].
pub(crate) fn to_send_many(tx: &mut Tx<'_>, ids: &[DeliveryId]) -> Result<Vec<DeliveryToSend>> {
    let found: Vec<(Delivery, Vec<u8>)> = match tx.dialect() {
        Dialect::Sqlite => {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                found.extend(delivery_by_key(tx, *id)?);
            }
            found
        }
        Dialect::Postgres => {
            let (Some(low), Some(high)) = (ids.iter().min(), ids.iter().max()) else {
                return Ok(Vec::new());
            };
            let ids = Array::Uuid(ids.iter().map(|id| id.0).collect());
            tx.query(
                &DELIVERIES_WITH_BODIES_PG,
                args![ids, low.0, high.0],
                delivery_with_body_row,
            )?
        }
    };
    let mut wanted: Vec<WebhookId> = found.iter().map(|(d, _)| d.webhook).collect();
    wanted.sort();
    wanted.dedup();
    let mut webhooks: std::collections::HashMap<WebhookId, std::sync::Arc<WebhookToSend>> =
        std::collections::HashMap::with_capacity(wanted.len());
    match tx.dialect() {
        Dialect::Sqlite => {
            for id in wanted {
                if let Some(w) = webhook_with_secrets(tx, id)? {
                    webhooks.insert(id, std::sync::Arc::new(w));
                }
            }
        }
        Dialect::Postgres => {
            if !wanted.is_empty() {
                let ids = Array::Uuid(wanted.iter().map(|id| id.0).collect());
                for w in tx.query(
                    &WEBHOOKS_WITH_SECRETS_PG,
                    args![ids],
                    webhook_with_secrets_row,
                )? {
                    webhooks.insert(w.0.id, std::sync::Arc::new(w));
                }
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(delivery, body)| DeliveryToSend {
            webhook: webhooks.get(&delivery.webhook).cloned(),
            delivery,
            body,
        })
        .collect())
}

fn secrets_at(r: &Row<'_>, at: usize) -> Result<WebhookSecrets> {
    Ok(WebhookSecrets {
        current: r.get(at)?,
        previous: r.get(at + 1)?,
        previous_expires_at: r.get(at + 2)?,
    })
}

/// SQLite: the delivery, then its webhook, each by primary key alone.
fn to_send_by_keys(tx: &mut Tx<'_>, id: DeliveryId) -> Result<Option<DeliveryToSend>> {
    let Some((delivery, body)) = delivery_by_key(tx, id)? else {
        return Ok(None);
    };
    let webhook = webhook_with_secrets(tx, delivery.webhook)?.map(std::sync::Arc::new);
    Ok(Some(DeliveryToSend {
        delivery,
        body,
        webhook,
    }))
}

fn delivery_by_key(tx: &mut Tx<'_>, id: DeliveryId) -> Result<Option<(Delivery, Vec<u8>)>> {
    tx.query_opt(&DELIVERY_BY_ID, args![id.0], delivery_with_body_row)
}

fn webhook_with_secrets(
    tx: &mut Tx<'_>,
    id: WebhookId,
) -> Result<Option<(Webhook, WebhookSecrets)>> {
    tx.query_opt(
        &WEBHOOK_WITH_SECRETS_BY_ID,
        args![id.0],
        webhook_with_secrets_row,
    )
}

/// A row of [`DELIVERY_BY_ID`] / [`DELIVERIES_WITH_BODIES_PG`]: the
/// delivery's columns, then its body.
fn delivery_with_body_row(r: &Row<'_>) -> Result<(Delivery, Vec<u8>)> {
    Ok((delivery_row(r)?, r.get::<Vec<u8>>(13)?))
}

/// A row of [`WEBHOOK_WITH_SECRETS_BY_ID`] / [`WEBHOOKS_WITH_SECRETS_PG`]:
/// the three secret columns, then the webhook's.
fn webhook_with_secrets_row(r: &Row<'_>) -> Result<WebhookToSend> {
    Ok((webhook_row(&r.offset(3))?, secrets_at(r, 0)?))
}

/// A row of [`DELIVERY_TO_SEND`].
fn to_send_row(r: &Row<'_>) -> Result<DeliveryToSend> {
    let webhook = match r.get::<Option<String>>(14)? {
        None => None,
        Some(_) => Some(std::sync::Arc::new((
            webhook_row(&r.offset(17))?,
            secrets_at(r, 14)?,
        ))),
    };
    Ok(DeliveryToSend {
        delivery: delivery_row(r)?,
        body: r.get::<Vec<u8>>(13)?,
        webhook,
    })
}

pub(crate) static DELIVERY_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {DELIVERY_COLS}, body FROM webhook_deliveries WHERE id = ?1")
});

pub(crate) static WEBHOOK_WITH_SECRETS_BY_ID: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "SELECT secret, previous_secret, previous_expires_at, {WEBHOOK_COLS} FROM webhooks WHERE id = ?1"
        )
    });

pub(crate) static DELIVERY_TO_SEND: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM webhook_deliveries d \
             LEFT JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ?1",
        to_send_columns()
    )
});

/// Deliveries with their bodies, for [`to_send_many`]: the ids as one
/// array (`?1`, bound in binary), joined by key, with their range (`?2`,
/// `?3`) — as in `FIRST_ATTEMPTS_PG`, so a plan cached while the table was
/// empty reads the range at most, never every delivery. (`d.id = ANY(text
/// cast to uuid[])` was a custom plan each time that estimated every
/// element: 1.5 ms of planning per read-ahead of ~600 ids.)
pub(crate) static DELIVERIES_WITH_BODIES_PG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "SELECT {}, d.body FROM unnest(CAST(?1 AS uuid[])) AS k(k_id) \
             JOIN webhook_deliveries d ON d.id = k.k_id \
             WHERE d.id BETWEEN ?2 AND ?3",
            prefixed("d", DELIVERY_COLS)
        )
    });

/// Webhooks with their secrets, for [`to_send_many`]: the ids as one array
/// (a handful; the table is small).
pub(crate) static WEBHOOKS_WITH_SECRETS_PG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "SELECT secret, previous_secret, previous_expires_at, {WEBHOOK_COLS} FROM webhooks \
             WHERE id = ANY(CAST(?1 AS uuid[]))"
        )
    });

fn to_send_columns() -> String {
    format!(
        "{}, d.body, w.secret, w.previous_secret, w.previous_expires_at, {}",
        prefixed("d", DELIVERY_COLS),
        prefixed("w", WEBHOOK_COLS)
    )
}

/// `a, b` as `t.a, t.b`.
fn prefixed(table: &str, cols: &str) -> String {
    cols.split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A webhook's deliveries counted by state.
pub(crate) fn counts(
    tx: &mut Tx<'_>,
    ns: &Namespace,
    webhook: WebhookId,
) -> Result<DeliveryCounts> {
    let rows = tx.query(
        "SELECT state, count(*) FROM webhook_deliveries WHERE webhook_id = ?1 AND namespace = ?2 \
         GROUP BY state",
        args![webhook.0, ns.as_str()],
        |r| Ok((r.parsed::<DeliveryState>(0)?, r.get::<u64>(1)?)),
    )?;
    let mut counts = DeliveryCounts::default();
    for (state, n) in rows {
        counts.add(state, n);
    }
    Ok(counts)
}
