//! `job`, `rerun`, `reindex`, `repair`, `worker` and `quarantine`: jobs and
//! recovery (O1, O2).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use kontextual_app::{
    EnqueueOptions, Enqueued, JobAction, Services, StorePageRequest, WorkerConfig,
};
use kontextual_model::{Job, JobId, JobState, RunId};

use crate::cli::{JobCmd, QuarantineCmd, ReindexArgs, RepairArgs, RerunArgs, WorkerArgs};
use crate::commands::Ctx;
use crate::output::time;

fn job_id(s: &str) -> Result<JobId> {
    Ok(s.parse::<JobId>()?)
}

/// `10m`, `2h`, `30s`, `1d` from now, or an RFC 3339 instant.
fn when(s: &str) -> Result<kontextual_model::Timestamp> {
    let now = kontextual_model::now();
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    if let (Ok(n), Some(secs)) = (
        num.parse::<i64>(),
        match unit {
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86400),
            _ => None,
        },
    ) {
        return now
            .checked_add(jiff::SignedDuration::from_secs(n.saturating_mul(secs)))
            .map_err(|_| anyhow::anyhow!("--run-at {s:?} is too far in the future"));
    }
    s.parse::<kontextual_model::Timestamp>().with_context(|| {
        format!("--run-at {s:?}: give an RFC 3339 instant (2026-12-01T08:00:00Z) or a delay (30s, 10m, 2h, 1d)")
    })
}

pub(crate) fn print_enqueued(ctx: &Ctx, e: &Enqueued) -> Result<()> {
    if ctx.out.json {
        ctx.out.json(e)?;
    } else {
        // the id alone on stdout, so scripts can capture it
        println!("{}", e.job.id);
        if !ctx.out.quiet {
            if e.created {
                eprintln!(
                    "Queued {} job {} (`kontextual job show {}`; a worker — `serve` or `worker` — runs it).",
                    e.job.kind, e.job.id, e.job.id
                );
            } else {
                eprintln!(
                    "A {} job with the same key is already waiting: {} (nothing new was queued).",
                    e.job.kind, e.job.id
                );
            }
        }
    }
    Ok(())
}

fn job_rows(jobs: &[Job]) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.kind.clone(),
                match j.stop_requested {
                    Some(s) => format!("{} (stopping: {s})", j.state),
                    None => j.state.to_string(),
                },
                format!("{}/{}", j.attempt, j.max_attempts),
                time(j.created_at),
                j.last_error
                    .as_deref()
                    .map(|e| e.chars().take(80).collect())
                    .unwrap_or_default(),
            ]
        })
        .collect()
}

pub fn job(ctx: &Ctx, cmd: JobCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let act = |id: &str, action: JobAction| -> Result<ExitCode> {
        let t = svc.job_act(&ctx.caller, job_id(id)?, action)?;
        if ctx.out.json {
            ctx.out.json(&t)?;
        } else if t.changed {
            match t.job.stop_requested {
                // still running until its worker reaches a safe point
                Some(s) => ctx.out.note(format!(
                    "Job {}: asked to stop; its worker stops it at the next safe point, and it ends {s}.",
                    t.job.id
                )),
                None => ctx.out.note(format!(
                    "Job {}: {} → {}.",
                    t.job.id, t.from, t.job.state
                )),
            }
        } else {
            ctx.out.note(format!(
                "Job {} is already {} — nothing to {}.",
                t.job.id, t.job.state, t.action
            ));
        }
        Ok(ExitCode::SUCCESS)
    };
    match cmd {
        JobCmd::List { state, kind, page } => {
            let state = state.as_deref().map(str::parse::<JobState>).transpose()?;
            let req = StorePageRequest {
                after: page.after.map(kontextual_app::store_types::Cursor),
                limit: page.limit,
            };
            let pg = svc.job_list(&ctx.caller, state, kind.as_deref(), &req)?;
            if ctx.out.json {
                ctx.out.json(&pg)?;
            } else {
                ctx.out.table(
                    &["job", "kind", "state", "attempt", "created", "last error"],
                    job_rows(&pg.items),
                );
                if let Some(n) = pg.next {
                    ctx.out.note(format!("more: --after {}", n.0));
                }
            }
        }
        JobCmd::Show { job } => {
            let v = svc.job_show(&ctx.caller, job_id(&job)?)?;
            if ctx.out.json {
                ctx.out.json(&v)?;
            } else {
                let j = &v.job;
                let mut rows = vec![
                    ("job", j.id.to_string()),
                    ("kind", j.kind.clone()),
                    ("state", j.state.to_string()),
                    ("attempts", format!("{} of {}", j.attempt, j.max_attempts)),
                    ("payload", j.payload.to_string()),
                    ("enqueued", format!("{} by {}", time(j.created_at), j.actor)),
                    ("correlation id", j.correlation_id.to_string()),
                    ("run at", time(j.run_at)),
                ];
                if let Some(k) = &j.unique_key {
                    rows.push(("unique key", k.clone()));
                }
                if let (Some(w), Some(l)) = (&j.worker, j.lease_expires_at) {
                    rows.push(("worker", format!("{w} (lease until {})", time(l))));
                }
                if let Some(s) = j.stop_requested {
                    rows.push(("stop requested", s.to_string()));
                }
                if let Some(f) = j.finished_at {
                    rows.push(("finished", time(f)));
                }
                if let Some(e) = &j.last_error {
                    rows.push(("last error", e.clone()));
                }
                ctx.out.fields(&rows);
                if !v.attempts.is_empty() {
                    println!();
                    let rows = v
                        .attempts
                        .iter()
                        .map(|a| {
                            let ms = a.finished_at.map_or("-".to_owned(), |f| {
                                format!("{} ms", f.duration_since(a.started_at).as_millis())
                            });
                            vec![
                                a.attempt.to_string(),
                                a.outcome.to_string(),
                                a.worker.clone(),
                                time(a.started_at),
                                ms,
                                a.run_id.map(|r| r.to_string()).unwrap_or_default(),
                                a.error.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    ctx.out.table(
                        &[
                            "attempt", "outcome", "worker", "started", "took", "run", "error",
                        ],
                        rows,
                    );
                }
                if let Some(report) = &j.report {
                    println!("\nreport (latest attempt that made one):");
                    println!(
                        "{}",
                        serde_json::to_string_pretty(report).unwrap_or_default()
                    );
                }
            }
        }
        JobCmd::Retry { job } => return act(&job, JobAction::Retry),
        JobCmd::Cancel { job } => return act(&job, JobAction::Cancel),
        JobCmd::Quarantine { job } => return act(&job, JobAction::Quarantine),
        JobCmd::Release { job } => return act(&job, JobAction::Release),
        JobCmd::Enqueue {
            kind,
            payload,
            max_attempts,
            run_at,
            unique_key,
        } => {
            let text = match payload.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("--payload @{path}: cannot read the file"))?,
                None => payload,
            };
            let payload: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "--payload is not valid JSON: {}",
                    text.chars().take(200).collect::<String>()
                )
            })?;
            let opts = EnqueueOptions {
                max_attempts,
                run_at: run_at.as_deref().map(when).transpose()?,
                unique_key,
            };
            let e = svc.job_enqueue(&ctx.caller, &kind, payload, opts)?;
            print_enqueued(ctx, &e)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rerun(ctx: &Ctx, a: RerunArgs) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let run: RunId = a.run.parse()?;
    let e = svc.rerun(&ctx.caller, run)?;
    if !a.wait {
        print_enqueued(ctx, &e)?;
        return Ok(ExitCode::SUCCESS);
    }
    let svc = Arc::new(svc);
    let job = wait_for(ctx, &svc, e.job.id)?;
    // an ingest that succeeded with some files failing is "partial": exit 1
    let partial = job
        .report
        .as_ref()
        .and_then(|r| r.get("failed"))
        .and_then(|f| f.as_u64())
        .is_some_and(|n| n > 0);
    if ctx.out.json {
        ctx.out.json(&svc.job_show(&ctx.caller, job.id)?)?;
    } else {
        let why = match (&job.last_error, partial) {
            (Some(e), _) if job.state != JobState::Succeeded => format!(": {e}"),
            (_, true) => " with failed files (see `job show`)".to_owned(),
            _ => String::new(),
        };
        ctx.out.note(format!("Job {} {}{why}.", job.id, job.state));
    }
    Ok(if job.state == JobState::Succeeded && !partial {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Waits for a job to finish, running a worker here meanwhile (if another
/// worker takes the job first, that is fine too).
fn wait_for(ctx: &Ctx, svc: &Arc<Services>, id: JobId) -> Result<Job> {
    let stop = Arc::new(AtomicBool::new(false));
    let worker = std::thread::spawn({
        let (svc, stop) = (svc.clone(), stop.clone());
        move || {
            let cfg = WorkerConfig {
                threads: 1,
                idle_poll: std::time::Duration::from_millis(100),
                ..Default::default()
            };
            svc.run_workers(&cfg, stop)
        }
    });
    let started = std::time::Instant::now();
    let mut told = false;
    let done = loop {
        let j = svc.job_show(&ctx.caller, id)?.job;
        if j.state.is_final() {
            break j;
        }
        if !told
            && j.state == JobState::Queued
            && started.elapsed() > std::time::Duration::from_secs(5)
        {
            told = true;
            eprintln!(
                "Still queued, waiting for a worker{}. Ctrl-C stops waiting; the job stays queued.",
                if matches!(j.kind.as_str(), "reindex" | "repair") {
                    " (re-index and repair run only in the process that owns the search index — `serve` while it runs)"
                } else {
                    ""
                }
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    Ok(done)
}

pub fn reindex(ctx: &Ctx, a: ReindexArgs) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    if a.background {
        let e = svc.reindex_enqueue(&ctx.caller, a.collection.as_deref())?;
        print_enqueued(ctx, &e)?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = svc.reindex_now(&ctx.caller, a.collection.as_deref())?;
    if ctx.out.json {
        ctx.out.json(&r)?;
    } else {
        ctx.out.note(format!(
            "Re-indexed {} ({} artifacts) in {} ms (run {}).",
            r.collection
                .as_deref()
                .map_or("everything".to_owned(), |c| format!("collection {c}")),
            r.artifacts,
            r.elapsed_ms,
            r.run_id
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn repair(ctx: &Ctx, a: RepairArgs) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    if a.background {
        let e = svc.job_enqueue(
            &ctx.caller,
            "repair",
            serde_json::json!({}),
            EnqueueOptions {
                unique_key: Some("repair".to_owned()),
                ..Default::default()
            },
        )?;
        print_enqueued(ctx, &e)?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = svc.repair(&ctx.caller)?;
    if ctx.out.json {
        ctx.out.json(&r)?;
    } else {
        for f in &r.fixed {
            println!("fixed: {f}");
        }
        for p in &r.remaining {
            println!("remains: [{:?}] {}: {}", p.category, p.subject, p.detail);
        }
        if r.is_ok() {
            ctx.out.note(format!(
                "Healthy{} (run {}).",
                if r.fixed.is_empty() {
                    ": nothing to repair"
                } else {
                    " after repair"
                },
                r.run_id
            ));
        }
    }
    Ok(if r.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn worker(ctx: &Ctx, a: WorkerArgs) -> Result<ExitCode> {
    let svc = Arc::new(ctx.rw()?);
    let cfg = WorkerConfig {
        threads: a.threads as usize,
        kinds: a.kinds,
        lease: std::time::Duration::from_secs(a.lease),
        drain: a.drain,
        job_retention: std::time::Duration::from_secs(a.job_retention_days * 86_400),
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    ctx.out.note(format!(
        "Worker {} running {} thread(s); Ctrl-C stops (running jobs are given back at a safe point).",
        cfg.name, cfg.threads
    ));
    // Feed consumers whose results are in the shared store (the webhook
    // dispatcher) run here too, so a worker alone delivers webhooks.
    let follower = std::thread::spawn({
        let (svc, stop) = (svc.clone(), stop.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                svc.follow_shared_feeds();
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    });
    let summary = rt.block_on(async {
        let mut work = tokio::task::spawn_blocking({
            let (svc, stop) = (svc.clone(), stop.clone());
            move || svc.run_workers(&cfg, stop)
        });
        tokio::select! {
            r = &mut work => r,
            _ = kontextual_server::shutdown_signal() => {
                stop.store(true, Ordering::Relaxed);
                work.await
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    if follower.join().is_err() {
        tracing::warn!("the feed follower panicked");
    }
    let summary = summary??;
    if ctx.out.json {
        ctx.out.json(&summary)?;
    } else {
        ctx.out.note(format!(
            "Stopped: {} succeeded, {} failed, {} stopped, {} given back, {} lost to rescue.",
            summary.succeeded, summary.failed, summary.stopped, summary.returned, summary.lost
        ));
        if !summary.not_run_here.is_empty() {
            eprintln!(
                "Not run here: {} jobs — they need the search index, which another process (`serve`) owns and runs them.",
                summary.not_run_here.join(" and ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn quarantine(ctx: &Ctx, cmd: QuarantineCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let aref = |s: &str| -> Result<kontextual_model::ArtifactRef> { Ok(s.parse()?) };
    // -q: a change is confirmed by the exit status; a listing is data
    let requested = matches!(cmd, QuarantineCmd::List);
    let list = match cmd {
        QuarantineCmd::Set { artifact, reason } => {
            vec![svc.artifact_quarantine(&ctx.caller, &aref(&artifact)?, &reason)?]
        }
        QuarantineCmd::Release { artifact } => {
            vec![svc.artifact_release(&ctx.caller, &aref(&artifact)?)?]
        }
        QuarantineCmd::List => svc.quarantine_list(&ctx.caller)?,
    };
    if ctx.out.quiet && !requested && !ctx.out.json {
        return Ok(ExitCode::SUCCESS);
    }
    if ctx.out.json {
        ctx.out.json(&list)?;
    } else {
        let rows = list
            .iter()
            .map(|q| {
                vec![
                    format!(
                        "{}/{}",
                        q.collection,
                        kontextual_model::names::escape_name(q.name.as_str())
                    ),
                    q.reason.clone(),
                    q.actor.to_string(),
                    time(q.created_at),
                ]
            })
            .collect();
        ctx.out.table(&["artifact", "reason", "by", "since"], rows);
    }
    Ok(ExitCode::SUCCESS)
}
