//! `search`, `context …` and `index …`: retrieval for people and agents.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use kontextual_app::{
    ContextRequest, ContextView, Reason, SearchFilters, SearchHit, SearchRequest, StorePageRequest,
};

use crate::cli::{ContextBuildArgs, ContextCmd, FilterArgs, IndexCmd, PageArgs, SearchArgs};
use crate::commands::{Ctx, next_hint, parse_time};
use crate::output::{bytes, short_digest, time};

fn filters(f: &FilterArgs) -> Result<SearchFilters> {
    let metadata = f
        .meta
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--meta {kv:?}: expected KEY=VALUE"))?;
            if k.trim().is_empty() {
                bail!("--meta {kv:?}: the key is empty");
            }
            Ok((k.trim().to_owned(), v.to_owned()))
        })
        .collect::<Result<_>>()?;
    Ok(SearchFilters {
        collections: f.collection.clone(),
        types: f.types.clone(),
        lifecycles: f.lifecycle.clone(),
        metadata,
        since: f.since.as_deref().map(parse_time).transpose()?,
        until: f.until.as_deref().map(parse_time).transpose()?,
    })
}

/// A snippet with its matches in bold on a terminal (ANSI), and plain when
/// piped: a marker such as `**` would collide with the content itself
/// (Markdown); `--json` gives the highlight ranges.
fn marked(s: &kontextual_app::Snippet) -> String {
    use std::io::IsTerminal;
    mark_with(s, std::io::stdout().is_terminal())
}

fn mark_with(s: &kontextual_app::Snippet, bold: bool) -> String {
    let (on, off) = if bold {
        ("\x1b[1m", "\x1b[22m")
    } else {
        ("", "")
    };
    let mut out = String::with_capacity(s.text.len() + 8);
    let mut at = 0;
    for &(a, b) in &s.highlights {
        if a < at || b > s.text.len() || !s.text.is_char_boundary(a) || !s.text.is_char_boundary(b)
        {
            continue;
        }
        out.push_str(&s.text[at..a]);
        out.push_str(on);
        out.push_str(&s.text[a..b]);
        out.push_str(off);
        at = b;
    }
    out.push_str(&s.text[at..]);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn search(ctx: &Ctx, a: SearchArgs) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let req = SearchRequest {
        query: a.query,
        syntax: a.syntax,
        filters: filters(&a.filters)?,
        sections: a.sections,
        offset: a.offset,
        limit: a.limit,
        expand: a.expand,
        depth: a.depth,
        // a command sees every write before it, its own and others'
        read_your_writes: true,
    };
    let r = svc.search(&ctx.caller, &req)?;
    if ctx.out.json {
        ctx.out.json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    if r.hits.is_empty() {
        ctx.out.note(format!("No matches for {:?}.", r.query));
    } else {
        let rows = r.hits.iter().map(hit_row).collect();
        ctx.out
            .table(&["#", "artifact", "title", "score", "snippet"], rows);
        for h in r.hits.iter().filter(|h| !h.related.is_empty()) {
            for rel in &h.related {
                ctx.out.note(format!(
                    "  #{} {} {} {} {} (depth {})",
                    h.rank,
                    h.reference,
                    if rel.direction == "out" { "→" } else { "←" },
                    rel.via,
                    rel.reference,
                    rel.depth
                ));
            }
        }
    }
    let shown = r.offset as usize + r.hits.len();
    let mut summary = format!(
        "{} of {} match{}",
        if r.hits.is_empty() {
            "0".to_owned()
        } else {
            format!("{}-{}", r.offset + 1, shown)
        },
        r.total,
        if r.total == 1 { "" } else { "es" }
    );
    if let Some(n) = r.next_offset {
        summary.push_str(&format!("; next page: --offset {n}"));
    }
    if r.index.lag > 0 {
        summary.push_str(&format!(
            "; the index is {} change(s) behind the store (another process owns it)",
            r.index.lag
        ));
    }
    ctx.out.note(summary);
    Ok(ExitCode::SUCCESS)
}

fn hit_row(h: &SearchHit) -> Vec<String> {
    vec![
        h.rank.to_string(),
        h.reference.clone(),
        h.heading
            .clone()
            .or_else(|| h.title.clone())
            .unwrap_or_default(),
        format!("{:.2}", h.score),
        h.snippet.as_ref().map(marked).unwrap_or_default(),
    ]
}

pub(crate) fn context(ctx: &Ctx, cmd: ContextCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    match cmd {
        ContextCmd::Build(a) => {
            let v = svc.context_build(&ctx.caller, &build_request(&a)?)?;
            if ctx.out.json {
                ctx.out.json(&v)?;
            } else if !ctx.out.quiet {
                summary(ctx, &v);
                ctx.out.note(format!(
                    "{} context package {} version {} ({}).",
                    if v.new_version {
                        "Stored"
                    } else {
                        "Unchanged:"
                    },
                    v.name,
                    v.version,
                    short_digest(&v.digest)
                ));
            }
        }
        ContextCmd::Show {
            name,
            version,
            format,
        } => {
            let v = svc.context_show(&ctx.caller, &name, version)?;
            match (format.as_str(), ctx.out.json) {
                ("markdown", _) => {
                    let (text, missing) = svc.context_render(&ctx.caller, &v)?;
                    print!("{text}");
                    if missing > 0 {
                        eprintln!(
                            "{missing} item(s) of {} version {} could not be read (marked in place); `kontextual context verify {}` says why.",
                            v.name, v.version, v.name
                        );
                        return Ok(ExitCode::from(1));
                    }
                }
                ("json", _) | (_, true) => ctx.out.json(&v)?,
                _ => {
                    ctx.out.fields(&[
                        ("name", v.name.clone()),
                        ("version", v.version.to_string()),
                        ("digest", v.digest.to_string()),
                        ("built", format!("{} by {}", time(v.created_at), v.actor)),
                    ]);
                    summary(ctx, &v);
                }
            }
        }
        ContextCmd::Verify { name, version } => {
            let r = svc.context_verify(&ctx.caller, &name, version)?;
            if ctx.out.json {
                ctx.out.json(&r)?;
            } else if r.verified {
                ctx.out.note(format!(
                    "Verified context package {} version {}: {} references unchanged ({}).",
                    r.name,
                    r.version,
                    r.checked,
                    short_digest(&r.digest)
                ));
            } else {
                let rows = r
                    .problems
                    .iter()
                    .map(|p| vec![p.kind.to_owned(), p.subject.clone(), p.detail.clone()])
                    .collect();
                ctx.out.table(&["problem", "subject", "detail"], rows);
                eprintln!(
                    "Context package {} version {}: {} of {} references changed or missing.",
                    r.name,
                    r.version,
                    r.problems.len(),
                    r.checked
                );
            }
            return Ok(if r.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        ContextCmd::List(p) => {
            let page = svc.context_list(&ctx.caller, &page_req(&p))?;
            if ctx.out.json {
                ctx.out.json(&page)?;
            } else {
                let rows = page
                    .items
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.clone(),
                            v.version.to_string(),
                            v.manifest.items.len().to_string(),
                            format!("{}/{}", v.manifest.tokens_used, v.manifest.budget),
                            time(v.created_at),
                        ]
                    })
                    .collect();
                ctx.out
                    .table(&["name", "version", "items", "tokens", "built"], rows);
                next_hint(ctx, page.next.as_ref());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn page_req(p: &PageArgs) -> StorePageRequest {
    StorePageRequest {
        after: p.after.clone().map(kontextual_app::store_types::Cursor),
        limit: p.limit,
    }
}

fn build_request(a: &ContextBuildArgs) -> Result<ContextRequest> {
    let memory_refs = a
        .memory_ref
        .iter()
        .map(|s| {
            serde_json::from_str::<serde_json::Value>(s)
                .with_context(|| format!("--memory-ref {s:?} is not JSON"))
        })
        .collect::<Result<_>>()?;
    Ok(ContextRequest {
        name: a.name.clone(),
        queries: a.query.clone(),
        syntax: a.syntax,
        selectors: a.select.clone(),
        budget: a.budget,
        filters: filters(&a.filters)?,
        expand: a.expand.clone(),
        depth: a.depth,
        memory_refs,
        encoding: a.encoding.parse()?,
    })
}

fn summary(ctx: &Ctx, v: &ContextView) {
    let m = &v.manifest;
    if !m.items.is_empty() {
        let rows = m
            .items
            .iter()
            .map(|i| {
                vec![
                    i.position.to_string(),
                    i.reference.clone(),
                    i.revision.to_string(),
                    i.tokens.to_string(),
                    match &i.reason {
                        Reason::Selector { .. } => "selected".to_owned(),
                        Reason::Query { query, rank } => format!("{query:?} #{rank}"),
                        Reason::Related { via, from, .. } => format!("{via} from {from}"),
                    },
                ]
            })
            .collect();
        ctx.out
            .table(&["#", "item", "revision", "tokens", "why"], rows);
    }
    let mut line = format!(
        "{} item(s), {} of {} tokens ({}); {} relation(s), {} run(s), {} memory reference(s)",
        m.items.len(),
        m.tokens_used,
        m.budget,
        serde_json::to_value(m.encoding)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        m.relations.len(),
        m.runs.len(),
        m.memory_refs.len()
    );
    if !m.omitted.is_empty() {
        line.push_str(&format!("; left out: {}", m.omitted.len()));
    }
    ctx.out.note(line);
    const LISTED: usize = 20;
    for o in m.omitted.iter().take(LISTED) {
        ctx.out
            .note(format!("  left out {}: {}", o.reference, o.why));
    }
    if m.omitted.len() > LISTED {
        ctx.out.note(format!(
            "  and {} more (`context show NAME --json` lists them all)",
            m.omitted.len() - LISTED
        ));
    }
    if let Some(why) = &m.empty_reason {
        ctx.out.note(format!("Empty package: {why}."));
    }
}

pub(crate) fn index(ctx: &Ctx, cmd: IndexCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let s = match cmd {
        IndexCmd::Status => {
            let _s = spinner(ctx, "checking the search index (catching up if behind)…");
            svc.index_status(&ctx.caller)?
        }
        IndexCmd::Rebuild => {
            let _s = spinner(ctx, "rebuilding the search index from the store…");
            svc.index_rebuild(&ctx.caller)?
        }
    };
    if ctx.out.json {
        ctx.out.json(&s)?;
    } else if ctx.out.quiet {
        if s.health != "ok" {
            eprintln!("search index: {} (lag {})", s.health, s.lag);
        }
    } else {
        ctx.out.fields(&[
            ("health", s.health.to_owned()),
            ("path", s.path.clone()),
            (
                "owner",
                if s.owner {
                    "this process".to_owned()
                } else {
                    "another process (e.g. serve)".to_owned()
                },
            ),
            (
                "artifacts",
                format!(
                    "{} indexed / {} live in the store",
                    s.indexed_artifacts, s.store_live_artifacts
                ),
            ),
            ("sections", s.indexed_sections.to_string()),
            (
                "position",
                format!(
                    "change {} of {} (lag {})",
                    s.applied_seq, s.store_seq, s.lag
                ),
            ),
            (
                "last commit",
                s.last_commit.clone().unwrap_or_else(|| "never".into()),
            ),
            (
                "size",
                format!("{} in {} segment(s)", bytes(s.size_bytes), s.segments),
            ),
        ]);
        if let Some(c) = &s.caught_up
            && c.artifacts_reindexed > 0
        {
            ctx.out.note(format!(
                "Applied changes {}..{}: {} artifact(s) re-indexed.",
                c.from_seq, c.to_seq, c.artifacts_reindexed
            ));
        }
    }
    Ok(if s.health == "ok" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A spinner on stderr while a long operation runs, only for people (a
/// terminal, not `--json` or `-q`); cleared when dropped.
pub(crate) fn spinner(ctx: &Ctx, msg: &'static str) -> Option<Spinner> {
    use std::io::IsTerminal;
    if ctx.out.quiet || ctx.out.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(Spinner(pb))
}

pub(crate) struct Spinner(indicatif::ProgressBar);

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::mark_with;

    /// X5: highlights cannot collide with Markdown in the content.
    #[test]
    fn x5_snippet_highlights_never_collide_with_content() {
        let s = kontextual_app::Snippet {
            text: "**Retries** in CHANGELOG_V10.md".to_owned(),
            highlights: vec![(2, 9)],
        };
        assert_eq!(mark_with(&s, false), "**Retries** in CHANGELOG_V10.md");
        assert_eq!(
            mark_with(&s, true),
            "**\x1b[1mRetries\x1b[22m** in CHANGELOG_V10.md"
        );
    }
}
