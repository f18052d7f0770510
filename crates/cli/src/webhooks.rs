//! `webhook …`: subscriptions, their deliveries, resend and recover
//! (docs/webhooks.md). Everything goes through the webhooks service, so
//! the policy (namespace administration) and the audit apply as over HTTP.

use std::process::ExitCode;

use anyhow::{Context, Result};
use kontextual_app::{DeliveryQuery, NewWebhook, WebhookChange, WebhookWithSecret};
use kontextual_model::{Delivery, DeliveryId, DeliveryState, Webhook, WebhookId};
use serde_json::json;

use crate::cli::WebhookCmd;
use crate::commands::{Ctx, page, parse_time};
use crate::output::time;

fn webhook_id(s: &str) -> Result<WebhookId> {
    s.trim()
        .parse()
        .with_context(|| format!("{s:?} is not a webhook id (see `kontextual webhook list`)"))
}

fn delivery_id(s: &str) -> Result<DeliveryId> {
    s.trim().parse().with_context(|| {
        format!("{s:?} is not a delivery id (see `kontextual webhook deliveries WEBHOOK`)")
    })
}

/// Repeated and comma-separated values, flattened.
/// A filter given on the command line: `None` when the option was left
/// out; an option given with nothing in it (`--types ""`, e.g. an empty
/// shell variable) is refused rather than read as "no filter", which would
/// send the webhook every event.
fn given_list(option: &str, values: &[String]) -> Result<Option<Vec<String>>> {
    if values.is_empty() {
        return Ok(None);
    }
    let items = list(values);
    if items.is_empty() {
        anyhow::bail!(
            "{option} is empty: give at least one value (for types, `*` is every type), \
             or leave {option} out for no filter"
        );
    }
    Ok(Some(items))
}

fn list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn describe(w: &Webhook) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("id", w.id.to_string()),
        ("url", w.url.clone()),
        ("state", w.state.to_string()),
        ("types", w.types.join(", ")),
        (
            "collections",
            if w.collections.is_empty() {
                "(every collection)".to_owned()
            } else {
                w.collections
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ];
    if !w.description.is_empty() {
        rows.push(("description", w.description.clone()));
    }
    if let Some(r) = &w.disabled_reason {
        rows.push(("disabled because", r.clone()));
    }
    if let Some(f) = w.first_failure_at {
        rows.push(("failing since", time(f)));
    }
    rows.push((
        "created",
        format!("{} by {}", time(w.created_at), w.created_by),
    ));
    rows
}

fn with_secret(ctx: &Ctx, w: &WebhookWithSecret, verb: &str) -> Result<()> {
    if ctx.out.json {
        ctx.out.json(&json!({
            "webhook": w.webhook,
            "secret": w.secret,
            "previous_secret_expires_at": w.previous_expires_at,
        }))?;
        return Ok(());
    }
    ctx.out.fields(&describe(&w.webhook));
    // The secret on stdout (it is the answer); the advice on stderr.
    println!("secret  {}", w.secret);
    if !ctx.out.quiet {
        eprintln!("{verb}. The signing secret is shown this once: store it with the receiver now.");
        if let Some(until) = w.previous_expires_at {
            eprintln!(
                "Until {} deliveries carry a signature with the previous secret too.",
                time(until)
            );
        }
    }
    Ok(())
}

fn delivery_rows(items: &[Delivery]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                time(d.created_at),
                d.event_seq.to_string(),
                d.event_type.clone(),
                d.state.to_string(),
                d.attempts.to_string(),
                d.last_status.map(|s| s.to_string()).unwrap_or_default(),
                d.last_latency_ms
                    .map(|l| format!("{l} ms"))
                    .unwrap_or_default(),
                d.next_attempt_at.map(time).unwrap_or_default(),
                d.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

const DELIVERY_HEADER: &[&str] = &[
    "delivery", "created", "seq", "type", "state", "attempts", "status", "latency", "next", "error",
];

pub(crate) fn webhook(ctx: &Ctx, cmd: WebhookCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let hooks = svc.webhooks();
    let caller = &ctx.caller;
    match cmd {
        WebhookCmd::Create {
            url,
            types,
            collections,
            description,
        } => {
            let w = hooks.create(
                caller,
                NewWebhook {
                    url,
                    types: given_list("--types", &types)?.unwrap_or_default(),
                    collections: given_list("--collection", &collections)?.unwrap_or_default(),
                    description,
                },
            )?;
            with_secret(ctx, &w, "Created")?;
        }
        WebhookCmd::List { page: p } => {
            let got = hooks.list(caller, &page(&p))?;
            if ctx.out.json {
                ctx.out
                    .json(&json!({ "items": got.items, "next": got.next.map(|c| c.0) }))?;
            } else {
                let rows = got
                    .items
                    .iter()
                    .map(|w| {
                        vec![
                            w.id.to_string(),
                            w.state.to_string(),
                            w.url.clone(),
                            w.types.join(","),
                            w.collections
                                .iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        ]
                    })
                    .collect();
                ctx.out
                    .table(&["webhook", "state", "url", "types", "collections"], rows);
                if let Some(next) = got.next {
                    ctx.out
                        .note(format!("next: kontextual webhook list --after {}", next.0));
                }
            }
        }
        WebhookCmd::Show { webhook } => {
            let d = hooks.get(caller, webhook_id(&webhook)?)?;
            if ctx.out.json {
                ctx.out.json(&json!({
                    "webhook": d.webhook,
                    "deliveries": d.deliveries,
                    "previous_secret_expires_at": d.previous_secret_expires_at,
                }))?;
            } else {
                let mut rows = describe(&d.webhook);
                let counts = DeliveryState::ALL
                    .iter()
                    .map(|s| (s, d.deliveries.get(*s)))
                    .filter(|(_, n)| *n > 0)
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect::<Vec<_>>();
                rows.push((
                    "deliveries",
                    if counts.is_empty() {
                        "none yet".to_owned()
                    } else {
                        counts.join(", ")
                    },
                ));
                if let Some(until) = d.previous_secret_expires_at {
                    rows.push(("previous secret until", time(until)));
                }
                ctx.out.fields(&rows);
            }
        }
        WebhookCmd::Update {
            webhook,
            url,
            types,
            collections,
            all_collections,
            description,
        } => {
            if !collections.is_empty() && list(&collections).is_empty() {
                // an empty list would widen the webhook to every collection
                anyhow::bail!(
                    "--collection: give at least one collection name (--all-collections for every collection)"
                );
            }
            let change = WebhookChange {
                url,
                types: (!types.is_empty()).then(|| list(&types)),
                collections: if all_collections {
                    Some(Vec::new())
                } else {
                    (!collections.is_empty()).then(|| list(&collections))
                },
                description,
            };
            let w = hooks.update(caller, webhook_id(&webhook)?, change)?;
            print_webhook(ctx, &w, "Updated")?;
        }
        WebhookCmd::Enable { webhook } => {
            let w = hooks.set_enabled(caller, webhook_id(&webhook)?, true, None)?;
            print_webhook(ctx, &w, "Enabled")?;
        }
        WebhookCmd::Disable { webhook, reason } => {
            let w = hooks.set_enabled(caller, webhook_id(&webhook)?, false, reason)?;
            print_webhook(ctx, &w, "Disabled")?;
        }
        WebhookCmd::Delete { webhook } => {
            let id = webhook_id(&webhook)?;
            let cancelled = hooks.delete(caller, id)?;
            if ctx.out.json {
                ctx.out
                    .json(&json!({ "deleted": id, "cancelled_deliveries": cancelled }))?;
            } else {
                ctx.out.note(format!(
                    "Deleted webhook {id}; {cancelled} waiting deliveries cancelled."
                ));
            }
        }
        WebhookCmd::RotateSecret { webhook } => {
            let w = hooks.rotate_secret(caller, webhook_id(&webhook)?)?;
            with_secret(ctx, &w, "Rotated")?;
        }
        WebhookCmd::Deliveries {
            webhook,
            state,
            since,
            page: p,
        } => {
            let states = list(&state)
                .iter()
                .map(|s| {
                    s.parse::<DeliveryState>().map_err(|_| {
                        anyhow::anyhow!(
                            "--state {s:?}: use pending, delivering, succeeded, failed, dead or cancelled"
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let query = DeliveryQuery {
                states,
                since: since.as_deref().map(parse_time).transpose()?,
            };
            let got = hooks.deliveries(caller, webhook_id(&webhook)?, &query, &page(&p))?;
            if ctx.out.json {
                ctx.out
                    .json(&json!({ "items": got.items, "next": got.next.map(|c| c.0) }))?;
            } else {
                ctx.out.table(DELIVERY_HEADER, delivery_rows(&got.items));
                if let Some(next) = got.next {
                    let mut words: Vec<String> = ["webhook", "deliveries"]
                        .iter()
                        .map(|w| (*w).to_owned())
                        .collect();
                    words.extend([webhook.clone(), "--after".to_owned(), next.0.to_string()]);
                    for s in &state {
                        words.extend(["--state".to_owned(), s.clone()]);
                    }
                    if let Some(since) = &since {
                        words.extend(["--since".to_owned(), since.clone()]);
                    }
                    words.extend(["--limit".to_owned(), p.limit.to_string()]);
                    ctx.out.note(format!(
                        "next: {}",
                        crate::commands::command_line(ctx, &words)
                    ));
                }
            }
        }
        WebhookCmd::Delivery { delivery } => {
            let d = hooks.delivery(caller, delivery_id(&delivery)?)?;
            let body = String::from_utf8_lossy(&d.body).into_owned();
            if ctx.out.json {
                ctx.out.json(&json!({
                    "delivery": d.delivery,
                    "attempts": d.attempts,
                    "body": serde_json::from_slice::<serde_json::Value>(&d.body)
                        .unwrap_or(serde_json::Value::String(body)),
                }))?;
            } else {
                ctx.out.table(DELIVERY_HEADER, delivery_rows(&[d.delivery]));
                let rows = d
                    .attempts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        vec![
                            (i + 1).to_string(),
                            time(a.at),
                            a.status.map(|s| s.to_string()).unwrap_or_default(),
                            a.latency_ms.map(|l| format!("{l} ms")).unwrap_or_default(),
                            a.error.clone().unwrap_or_default(),
                            a.response.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                ctx.out.table(
                    &["attempt", "at", "status", "latency", "error", "response"],
                    rows,
                );
                ctx.out.note(format!("body ({} bytes):", d.body.len()));
                ctx.out.note(body);
            }
        }
        WebhookCmd::Resend { delivery } => {
            let d = hooks.resend(caller, delivery_id(&delivery)?)?;
            if ctx.out.json {
                ctx.out.json(&d)?;
            } else {
                ctx.out.note(format!(
                    "Delivery {} is {} again; a worker (`serve` or `worker`) sends it.",
                    d.id, d.state
                ));
            }
        }
        WebhookCmd::Recover { webhook, since } => {
            let since = parse_time(&since).context("--since")?;
            let e = svc.webhook_recover(caller, webhook_id(&webhook)?, since)?;
            crate::jobs::print_enqueued(ctx, &e)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_webhook(ctx: &Ctx, w: &Webhook, verb: &str) -> Result<()> {
    if ctx.out.json {
        ctx.out.json(w)?;
    } else {
        ctx.out.fields(&describe(w));
        if !ctx.out.quiet {
            eprintln!("{verb}.");
        }
    }
    Ok(())
}
