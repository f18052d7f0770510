//! `export`, `package validate` and `import`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use kontextual_app::{
    ExportScope, ExportTarget, ImportConflict, PackageVerdict, StoreOpenMode, UnpackLimits,
    check_package,
};

use crate::cli::{ExportArgs, ImportArgs, UnpackArgs};
use crate::commands::{Ctx, parse_time};

fn invalid(msg: String) -> anyhow::Error {
    kontextual_app::Error::InvalidInput(msg).into()
}

fn limits(a: &UnpackArgs) -> UnpackLimits {
    UnpackLimits {
        max_bytes: a.max_unpacked_bytes,
        ..UnpackLimits::default()
    }
}

fn parse_all<T: std::str::FromStr>(v: &[String], what: &str) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    v.iter()
        .map(|s| s.parse().map_err(|e| invalid(format!("{what} {s:?}: {e}"))))
        .collect()
}

fn scope(a: &ExportArgs) -> Result<ExportScope> {
    Ok(ExportScope {
        all: a.all,
        // resolved against the store (ids or COLLECTION/NAME) in `export`
        artifact_ids: Vec::new(),
        collections: a.collections.clone(),
        query: a.query.clone(),
        run: a
            .run
            .as_deref()
            .map(|s| {
                s.parse()
                    .map_err(|_| invalid(format!("--run {s:?} is not a run id")))
            })
            .transpose()?,
        source_systems: a.sources.clone(),
        lifecycles: parse_all(&a.lifecycles, "--lifecycle")?,
        classifications: parse_all(&a.classifications, "--classification")?,
        since: a.since.as_deref().map(parse_time).transpose()?,
        until: a.until.as_deref().map(parse_time).transpose()?,
        current_only: a.current_only,
        include_deleted: a.include_deleted,
    })
}

pub fn export(ctx: &Ctx, a: ExportArgs) -> Result<ExitCode> {
    let mut scope = scope(&a)?;
    let to_stdout = a.out.as_os_str() == "-";
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(invalid(
            "--out - writes a binary .tar.zst archive to standard output, which is a terminal: redirect it (> export.tar.zst) or give --out PATH".into(),
        ));
    }
    if to_stdout && a.background {
        return Err(invalid(
            "--background writes to a path on the worker's machine; give --out PATH".into(),
        ));
    }
    let svc = ctx.rw()?;
    // --id takes ids or COLLECTION/NAME references, in any state
    for r in &a.ids {
        let r: kontextual_model::ArtifactRef =
            r.parse().map_err(|e| invalid(format!("--id {r:?}: {e}")))?;
        scope
            .artifact_ids
            .push(svc.artifact_show(&ctx.caller, &r)?.id);
    }
    if a.background {
        let e = svc.export_background(&ctx.caller, &scope, &a.out)?;
        crate::jobs::print_enqueued(ctx, &e)?;
        return Ok(ExitCode::SUCCESS);
    }
    let bar = crate::progress::StageBar::new(ctx);
    let report = if to_stdout {
        let out = Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout(),
        ));
        let root = "kontextual-export".to_owned();
        svc.export(&ctx.caller, &scope, ExportTarget::TarZst { out, root })?
    } else {
        svc.export_to_path(&ctx.caller, &scope, &a.out, None, &bar)?
    };
    drop(bar);
    if a.out.as_os_str() == "-" {
        // stdout carries the archive: the summary goes to stderr
        if !ctx.out.quiet {
            eprintln!(
                "exported {} artifacts, {} payload files ({}); export id {}, package digest {}",
                report.counts.get("artifacts").copied().unwrap_or(0),
                report.payload_files,
                crate::output::bytes(report.payload_bytes),
                report.export_id,
                report.package_digest
            );
        }
    } else if ctx.out.json {
        ctx.out
            .json(&serde_json::json!({ "out": a.out, "export": report }))?;
    } else if !ctx.out.quiet {
        let c = |k: &str| report.counts.get(k).copied().unwrap_or(0).to_string();
        ctx.out.fields(&[
            ("out", a.out.display().to_string()),
            ("export id", report.export_id.clone()),
            ("run", report.run_id.to_string()),
            ("collections", c("collections")),
            ("artifacts", c("artifacts")),
            ("revisions", c("revisions")),
            ("relations", c("relations")),
            ("runs", c("runs")),
            ("blobs", c("blobs")),
            (
                "payload",
                format!(
                    "{} files, {}",
                    report.payload_files,
                    crate::output::bytes(report.payload_bytes)
                ),
            ),
            ("payload digest", report.payload_digest.clone()),
            ("package digest", report.package_digest.clone()),
            (
                "policy filter",
                if report.policy_filter_applied {
                    "applied"
                } else {
                    "none (local administrator)"
                }
                .to_owned(),
            ),
        ]);
    }
    Ok(ExitCode::SUCCESS)
}

/// Problems printed in human output before "… and N more".
const MAX_SHOWN: usize = 100;

fn print_problems(v: &PackageVerdict, to_stderr: bool) {
    let mut lines: Vec<String> = v
        .problems
        .iter()
        .take(MAX_SHOWN)
        .map(|p| format!("problem: {p}"))
        .collect();
    if v.problems.len() > MAX_SHOWN {
        lines.push(format!(
            "… and {} more problems (--json lists all)",
            v.problems.len() - MAX_SHOWN
        ));
    }
    for l in lines {
        if to_stderr {
            eprintln!("{l}");
        } else {
            println!("{l}");
        }
    }
}

fn print_verdict(ctx: &Ctx, v: &PackageVerdict) -> Result<()> {
    if ctx.out.json {
        return ctx.out.json(v);
    }
    if !ctx.out.quiet {
        let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut rows = vec![
            ("complete", yes(v.complete)),
            ("valid", yes(v.valid)),
            ("kontextual export", yes(v.kontextual)),
            (
                "payload",
                format!(
                    "{} files, {}",
                    v.payload_files,
                    crate::output::bytes(v.payload_bytes)
                ),
            ),
        ];
        if let Some(d) = &v.payload_digest {
            rows.push(("payload digest", d.clone()));
        }
        if let Some(d) = &v.package_digest {
            rows.push(("package digest", d.clone()));
        }
        if let Some(e) = &v.export {
            rows.push(("export id", e.export_id.clone()));
            rows.push(("exported by", format!("{} at {}", e.actor, e.exported_at)));
            if e.policy.filter_applied {
                rows.push(("policy filter", "applied".to_owned()));
            }
        }
        for (k, n) in &v.counts {
            rows.push((k.as_str(), n.to_string()));
        }
        ctx.out.fields(&rows);
    }
    print_problems(v, false);
    Ok(())
}

pub fn validate(ctx: &Ctx, package: &Path, a: &UnpackArgs) -> Result<ExitCode> {
    // The staging copy is removed before anything is printed.
    let verdict = {
        let bar = crate::progress::StageBar::new(ctx);
        check_package(package, None, limits(a), &bar)?.into_verdict()
    };
    print_verdict(ctx, &verdict)?;
    Ok(if verdict.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn import(ctx: &Ctx, a: ImportArgs) -> Result<ExitCode> {
    // Everything is checked before the data directory is even created.
    let bar = crate::progress::StageBar::new(ctx);
    let checked = check_package(&a.package, None, limits(&a.limits), &bar)?;
    if let Err(e) = checked.importable() {
        drop(bar);
        print_problems(&checked.verdict, true);
        return Err(e.into());
    }
    let on_conflict = match a.on_conflict.as_str() {
        "skip" => ImportConflict::Skip,
        _ => ImportConflict::Fail,
    };
    // A data directory this command creates is removed again if the
    // import fails: a refused import leaves nothing behind.
    let created = !ctx.cfg.data_dir.exists();
    let attempt = (|| -> Result<kontextual_app::ImportReport> {
        let svc = ctx.open(StoreOpenMode::Create)?;
        crate::commands::write_default_config(ctx)?;
        Ok(svc.import_package(&ctx.caller, checked, on_conflict, &bar)?)
    })();
    drop(bar);
    let r = match attempt {
        Ok(r) => r,
        Err(e) => {
            if created {
                let _ = std::fs::remove_dir_all(&ctx.cfg.data_dir);
            }
            return Err(e);
        }
    };
    if ctx.out.json {
        ctx.out.json(&r)?;
    } else if !ctx.out.quiet {
        let written = &r.summary["written"];
        let skipped = &r.summary["skipped"];
        let n = |v: &serde_json::Value, k: &str| {
            v.get(k).and_then(|x| x.as_u64()).unwrap_or(0).to_string()
        };
        let mut rows = vec![
            ("package", r.package.clone()),
            ("run", r.run_id.to_string()),
            ("collections", n(written, "collections")),
            ("artifacts", n(written, "artifacts")),
            ("revisions", n(written, "revisions")),
            ("relations", n(written, "relations")),
            ("runs", n(written, "runs")),
            ("blobs", n(written, "blobs")),
            (
                "skipped",
                format!(
                    "{} artifacts, {} relations, {} runs (already in the store)",
                    n(skipped, "artifacts"),
                    n(skipped, "relations"),
                    n(skipped, "runs")
                ),
            ),
            (
                "index",
                match r.artifacts_indexed {
                    Some(n) => format!("rebuilt ({n} live artifacts)"),
                    None => {
                        "owned by another process; it catches up from the import's events".into()
                    }
                },
            ),
        ];
        let differing = n(&r.summary["skipped_differing"], "artifacts");
        if differing != "0" {
            rows.push((
                "differing",
                format!(
                    "{differing} skipped artifacts differ from the package (the store's version was kept)"
                ),
            ));
        }
        ctx.out.fields(&rows);
    }
    Ok(ExitCode::SUCCESS)
}
