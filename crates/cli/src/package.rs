//! `export`, `package validate` and `import`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use kontextual_services::{
    ExportScope, ExportTarget, ImportConflict, PackageVerdict, StoreOpenMode, UnpackLimits,
    check_package,
};

use crate::cli::{ExportArgs, ImportArgs, UnpackArgs};
use crate::commands::{Ctx, parse_time};

fn invalid(msg: String) -> anyhow::Error {
    kontextual_services::Error::InvalidInput(msg).into()
}

fn limits(a: &UnpackArgs) -> UnpackLimits {
    UnpackLimits {
        max_bytes: a.max_unpacked_bytes,
        ..UnpackLimits::default()
    }
}

/// Archive output is chosen by the name: `.tar.zst` / `.tzst`.
fn archive_root(out: &Path) -> Option<String> {
    let name = out.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".tar.zst")
        .or_else(|| name.strip_suffix(".tzst"))?;
    Some(if stem.is_empty() {
        "package".to_owned()
    } else {
        stem.to_owned()
    })
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
        artifact_ids: a
            .ids
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| invalid(format!("--id {s:?} is not an artifact id")))
            })
            .collect::<Result<_>>()?,
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
    let scope = scope(&a)?;
    if std::fs::symlink_metadata(&a.out).is_ok() {
        return Err(invalid(format!(
            "{} already exists; exports never overwrite (choose a new --out)",
            a.out.display()
        )));
    }
    let svc = ctx.rw()?;
    let report = match archive_root(&a.out) {
        None => svc.export(&ctx.caller, &scope, ExportTarget::Dir(a.out.clone()))?,
        Some(root) => {
            // Written beside the target and renamed when complete, so a
            // failed export never leaves a truncated archive under the name.
            let partial = partial_path(&a.out);
            let f = std::fs::File::create_new(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            let out = Box::new(std::io::BufWriter::with_capacity(1 << 20, f));
            match svc.export(&ctx.caller, &scope, ExportTarget::TarZst { out, root }) {
                Ok(r) => {
                    std::fs::rename(&partial, &a.out)
                        .with_context(|| format!("renaming to {}", a.out.display()))?;
                    r
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e.into());
                }
            }
        }
    };
    if ctx.out.json {
        ctx.out
            .json(&serde_json::json!({ "out": a.out, "export": report }))?;
    } else {
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
            (
                "payload digest",
                format!("sha256:{}", report.payload_digest),
            ),
            (
                "package digest",
                format!("sha256:{}", report.package_digest),
            ),
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

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    out.with_file_name(name)
}

fn print_verdict(ctx: &Ctx, v: &PackageVerdict) -> Result<()> {
    if ctx.out.json {
        return ctx.out.json(v);
    }
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
        rows.push(("payload digest", format!("sha256:{d}")));
    }
    if let Some(d) = &v.package_digest {
        rows.push(("package digest", format!("sha256:{d}")));
    }
    if let Some(e) = &v.export {
        rows.push(("export id", e.export_id.clone()));
        rows.push(("exported by", format!("{} at {}", e.actor, e.exported_at)));
    }
    for (k, n) in &v.counts {
        rows.push((k.as_str(), n.to_string()));
    }
    ctx.out.fields(&rows);
    for p in &v.problems {
        println!("problem: {p}");
    }
    Ok(())
}

pub fn validate(ctx: &Ctx, package: &Path, a: &UnpackArgs) -> Result<ExitCode> {
    let checked = check_package(package, None, limits(a))?;
    print_verdict(ctx, &checked.verdict)?;
    Ok(if checked.verdict.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn import(ctx: &Ctx, a: ImportArgs) -> Result<ExitCode> {
    // Everything is checked before the data directory is even created.
    let checked = check_package(&a.package, None, limits(&a.limits))?;
    if !checked.verdict.valid {
        for p in &checked.verdict.problems {
            eprintln!("problem: {p}");
        }
        return Err(invalid(format!(
            "{} is not a valid package ({} problems); nothing was imported",
            a.package.display(),
            checked.verdict.problems.len()
        )));
    }
    let on_conflict = match a.on_conflict.as_str() {
        "skip" => ImportConflict::Skip,
        _ => ImportConflict::Fail,
    };
    let svc = ctx.open(StoreOpenMode::Create)?;
    let r = svc.import_package(&ctx.caller, checked, on_conflict)?;
    if ctx.out.json {
        ctx.out.json(&r)?;
    } else {
        let written = &r.summary["written"];
        let skipped = &r.summary["skipped"];
        let n = |v: &serde_json::Value, k: &str| {
            v.get(k).and_then(|x| x.as_u64()).unwrap_or(0).to_string()
        };
        ctx.out.fields(&[
            ("package", r.package.clone()),
            ("run", r.run_id.to_string()),
            ("collections", n(written, "collections")),
            ("artifacts", n(written, "artifacts")),
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
        ]);
    }
    Ok(ExitCode::SUCCESS)
}
