//! `ingest` and `run`: the progress bar, the summary, and run views.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use kontextual_app::{IngestProgress, IngestRequest, NoProgress, StorePageRequest};
use kontextual_model::{RunId, RunStatus};

use crate::cli::{IngestArgs, RunCmd};
use crate::commands::Ctx;
use crate::output::{bytes, time};

/// A bar over bytes, on stderr, only when stderr is a terminal; then a
/// spinner while the index catches up.
struct Bar(ProgressBar, std::sync::Mutex<Option<ProgressBar>>);

impl IngestProgress for Bar {
    fn scanned(&self, files: u64, total: u64) {
        self.0.set_length(total);
        self.0.set_message(format!("{files} files"));
    }
    fn advanced(&self, _files: u64, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finished(&self) {
        self.0.finish_and_clear();
    }
    fn indexing(&self) {
        // a spinner of its own: the bar is full, the work is not done
        let spinner = ProgressBar::new_spinner();
        spinner.set_message("indexing the last files…");
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        *self.1.lock().unwrap_or_else(|p| p.into_inner()) = Some(spinner);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(s) = self.1.lock().unwrap_or_else(|p| p.into_inner()).take() {
            s.finish_and_clear();
        }
    }
}

pub fn ingest(ctx: &Ctx, args: IngestArgs) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let req = IngestRequest {
        paths: args.paths,
        collection: args.collection,
        prune: args.prune,
        source_system: args.source_system,
    };
    if args.background {
        crate::jobs::print_enqueued(ctx, &svc.ingest_background(&ctx.caller, &req)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let show_bar = !ctx.out.quiet && !ctx.out.json && std::io::stderr().is_terminal();
    let report = if show_bar {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(
                // decimal units, like the summary's MB/s
                "{spinner} {msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        svc.ingest_and_index(&ctx.caller, &req, &Bar(pb, Default::default()))?
    } else {
        svc.ingest_and_index(&ctx.caller, &req, &NoProgress)?
    };
    if ctx.out.json {
        ctx.out.json(&report)?;
    } else {
        if !ctx.out.quiet && args.verbose {
            for f in &report.skipped {
                eprintln!("skipped: {}: {}", f.path, f.reason);
            }
        } else if !ctx.out.quiet {
            // counts by reason: a tree of 445 symbolic links is one line
            let mut by_reason: std::collections::BTreeMap<&str, usize> = Default::default();
            for f in &report.skipped {
                *by_reason.entry(f.reason.as_str()).or_default() += 1;
            }
            for (reason, n) in by_reason {
                eprintln!(
                    "skipped {n} {}: {reason} (--verbose lists them)",
                    if n == 1 { "entry" } else { "entries" }
                );
            }
        }
        for f in &report.failures {
            eprintln!("failed: {}: {}", f.path, f.reason);
        }
        if !ctx.out.quiet || report.failed > 0 {
            println!(
                "{} file{}: {} new, {} updated, {} unchanged, {} pruned, {} failed, {} skipped — {}, {:.2} s{} (run {})",
                report.files,
                if report.files == 1 { "" } else { "s" },
                report.new,
                report.updated,
                report.unchanged,
                report.pruned,
                report.failed,
                report.skipped.len(),
                rate(report.mb_per_s()),
                report.elapsed_ms as f64 / 1000.0,
                if report.indexed.as_ref().is_some_and(|i| i.owner) {
                    " until searchable"
                } else {
                    ""
                },
                report.run_id.map(|r| r.to_string()).unwrap_or_default(),
            );
            match &report.indexed {
                Some(i) if i.owner => println!(
                    "Searchable: {} artifact(s) indexed, committed {} ms after the last write.",
                    i.artifacts, i.tail_ms
                ),
                Some(_) => println!(
                    "The search index is owned by another process; it catches up from the change feed."
                ),
                None => {}
            }
        }
    }
    // 1: the run completed, but some files failed (listed above and in the run).
    Ok(if report.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One line on what a run did, from its manifest (each kind has its own).
fn run_result(m: &serde_json::Value) -> String {
    let n = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    if let Some(e) = m.get("error").and_then(|e| e.as_str()) {
        let short: String = e.chars().take(80).collect();
        return format!("error: {short}");
    }
    if let Some(c) = m.get("counts") {
        if c.get("new").is_some() {
            return format!(
                "{} new, {} updated, {} unchanged, {} pruned, {} failed",
                n(c, "new"),
                n(c, "updated"),
                n(c, "unchanged"),
                n(c, "pruned"),
                n(c, "failed")
            );
        }
        if c.get("artifacts").is_some() {
            return format!(
                "exported {} artifacts, {} revisions, {} blobs",
                n(c, "artifacts"),
                n(c, "revisions"),
                n(c, "blobs")
            );
        }
    }
    if let Some(w) = m.get("summary").and_then(|s| s.get("written")) {
        return format!(
            "imported {} artifacts, {} revisions, {} blobs",
            n(w, "artifacts"),
            n(w, "revisions"),
            n(w, "blobs")
        );
    }
    if let Some(a) = m.get("artifacts").and_then(|a| a.as_u64()) {
        return format!("{a} artifacts");
    }
    String::new()
}

pub fn run(ctx: &Ctx, cmd: RunCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    match cmd {
        RunCmd::List { status, page } => {
            let status = status.as_deref().map(str::parse::<RunStatus>).transpose()?;
            let req = StorePageRequest {
                after: page.after.clone().map(kontextual_app::store_types::Cursor),
                limit: page.limit,
            };
            let pg = svc.run_list(&ctx.caller, status, &req)?;
            if ctx.out.json {
                ctx.out.json(&pg)?;
            } else {
                let rows = pg
                    .items
                    .iter()
                    .map(|r| {
                        let counts = r.manifest.as_ref().map(run_result).unwrap_or_default();
                        vec![
                            r.id.to_string(),
                            r.kind.clone(),
                            r.status.to_string(),
                            time(r.started_at),
                            r.finished_at.map(time).unwrap_or_default(),
                            counts,
                        ]
                    })
                    .collect();
                ctx.out.table(
                    &["run", "kind", "status", "started", "finished", "result"],
                    rows,
                );
                crate::commands::next_hint(ctx, pg.next.as_ref());
            }
        }
        RunCmd::Show { run, outputs } => {
            // `latest`: the most recent run (runs list newest first)
            let id: RunId = if run == "latest" {
                svc.run_list(&ctx.caller, None, &StorePageRequest::first(1))?
                    .items
                    .first()
                    .map(|r| r.id)
                    .ok_or_else(|| anyhow::anyhow!("there is no run yet"))?
            } else {
                run.parse()?
            };
            let (r, steps) = svc.run_show(&ctx.caller, id)?;
            if ctx.out.json {
                ctx.out
                    .json(&serde_json::json!({ "run": r, "steps": steps }))?;
                return Ok(ExitCode::SUCCESS);
            }
            let m = r.manifest.clone().unwrap_or(serde_json::Value::Null);
            ctx.out.fields(&[
                ("run", r.id.to_string()),
                ("kind", r.kind.clone()),
                ("status", r.status.to_string()),
                ("actor", r.actor.to_string()),
                ("owner", r.owner.clone()),
                ("job", r.job_id.map_or("-".to_owned(), |j| j.to_string())),
                ("started", time(r.started_at)),
                (
                    "finished",
                    r.finished_at.map(time).unwrap_or_else(|| "-".to_owned()),
                ),
                ("input", r.input.to_string()),
                (
                    "counts",
                    m.get("counts").map_or("-".to_owned(), |c| c.to_string()),
                ),
                (
                    "timings (ms)",
                    m.get("timings_ms")
                        .map_or("-".to_owned(), |c| c.to_string()),
                ),
                (
                    "audit head",
                    m.get("audit_head")
                        .and_then(|h| {
                            Some(format!("{}:{}", h.get("seq")?, h.get("hash")?.as_str()?))
                        })
                        .unwrap_or_else(|| "-".to_owned()),
                ),
            ]);
            if let Some(e) = m.get("error").and_then(|e| e.as_str()) {
                println!("error: {e}");
            }
            if let Some(i) = m.get("interrupted") {
                println!("interrupted: {}", i["reason"].as_str().unwrap_or_default());
            }
            println!("steps:");
            for s in &steps {
                println!(
                    "  {}. {} {} {} {}",
                    s.seq,
                    s.name,
                    s.status,
                    time(s.at),
                    s.detail
                );
            }
            if let Some(d) = m
                .get("diagnostics")
                .and_then(|d| d.as_array())
                .filter(|d| !d.is_empty())
            {
                println!("diagnostics ({}):", d.len());
                for f in d {
                    println!(
                        "  {}: {}",
                        f["path"].as_str().unwrap_or_default(),
                        f["reason"].as_str().unwrap_or_default()
                    );
                }
            }
            if let Some(o) = m.get("outputs").and_then(|o| o.as_array()) {
                if outputs {
                    println!("outputs ({}):", o.len());
                    for x in o {
                        println!(
                            "  {} {} rev {} {}",
                            x["change"].as_str().unwrap_or_default(),
                            x["name"].as_str().unwrap_or_default(),
                            x["revision"],
                            x["digest"].as_str().unwrap_or_default()
                        );
                    }
                } else {
                    println!("outputs: {} (list them with --outputs)", o.len());
                }
            }
            let _ = bytes;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A throughput people can read: small ingests are kB/s, not "0.0 MB/s".
fn rate(mb_per_s: f64) -> String {
    if mb_per_s >= 1.0 {
        format!("{mb_per_s:.1} MB/s")
    } else {
        format!("{:.0} kB/s", mb_per_s * 1000.0)
    }
}
