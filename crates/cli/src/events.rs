//! `event-type list|show` (the catalog) and `event list` (the change feed
//! as CloudEvents, through the same visibility rule as the HTTP API).

use std::process::ExitCode;

use anyhow::Result;
use kontextual_app::{EventEmission, EventQuery, Services, TypePattern};
use serde_json::json;

use crate::cli::{EventCmd, EventTypeCmd};
use crate::commands::Ctx;

fn status(t: &kontextual_app::EventType) -> (&'static str, &'static str) {
    match t.emission {
        EventEmission::Emitted(by) => ("emitted", by),
        EventEmission::Reserved(why) => ("reserved", why),
    }
}

fn describe(t: &'static kontextual_app::EventType) -> serde_json::Value {
    let (status, note) = status(t);
    json!({
        "name": t.name,
        "version": t.version,
        "description": t.description,
        "subject": t.subject,
        "status": status,
        "note": note,
        "schema": t.schema(),
    })
}

pub(crate) fn event_type(ctx: &Ctx, cmd: EventTypeCmd) -> Result<ExitCode> {
    match cmd {
        EventTypeCmd::List => {
            let types = Services::event_types();
            if ctx.out.json {
                let all: Vec<_> = types.iter().map(describe).collect();
                ctx.out.json(&all)?;
            } else {
                let rows = types
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.to_owned(),
                            t.version.to_string(),
                            status(t).0.to_owned(),
                            t.description.to_owned(),
                        ]
                    })
                    .collect();
                ctx.out
                    .table(&["type", "version", "status", "description"], rows);
            }
        }
        EventTypeCmd::Show { name } => {
            let t = Services::event_type(&name)?;
            if ctx.out.json {
                ctx.out.json(&describe(t))?;
            } else {
                let (status, note) = status(t);
                ctx.out.fields(&[
                    ("type", t.name.to_owned()),
                    ("version", t.version.to_string()),
                    ("status", format!("{status} ({note})")),
                    ("subject", t.subject.to_owned()),
                    ("description", t.description.to_owned()),
                ]);
                println!("{}", serde_json::to_string_pretty(&t.schema())?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn event(ctx: &Ctx, cmd: EventCmd) -> Result<ExitCode> {
    let EventCmd::List {
        after,
        types,
        collection,
        limit,
    } = cmd;
    let mut patterns = Vec::new();
    for t in &types {
        let parsed = TypePattern::parse_list(t)
            .map_err(|e| kontextual_app::Error::InvalidInput(e.to_string()))?;
        for p in parsed {
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
    }
    let svc = ctx.rw()?;
    let page = svc.events(
        &ctx.caller,
        &EventQuery {
            after,
            types: patterns,
            collection: collection.clone(),
            limit,
        },
    )?;
    if ctx.out.json {
        ctx.out.json(&json!({
            "items": page.events,
            "next_after": page.next_after,
        }))?;
    } else {
        let rows = page
            .events
            .iter()
            .map(|e| {
                vec![
                    e.id.clone(),
                    e.time.clone(),
                    e.ty.clone(),
                    e.collection.clone().unwrap_or_default(),
                    e.subject.clone(),
                ]
            })
            .collect();
        ctx.out
            .table(&["seq", "time", "type", "collection", "subject"], rows);
        let mut next = vec![
            "event".to_owned(),
            "list".to_owned(),
            "--after".to_owned(),
            page.next_after.to_string(),
        ];
        for t in &types {
            next.extend(["--type".to_owned(), t.clone()]);
        }
        if let Some(c) = &collection {
            next.extend(["--collection".to_owned(), c.clone()]);
        }
        next.extend(["--limit".to_owned(), limit.to_string()]);
        ctx.out.note(format!(
            "next: {}",
            crate::commands::command_line(ctx, &next)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
