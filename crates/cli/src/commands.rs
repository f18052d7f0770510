//! Command handlers: turn arguments into service calls and print results.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kontextual_app::{
    AuditFilter, Caller, ContentSource, PutRequest, Services, StoreConfig, StoreOpenMode,
    StorePageRequest,
};
use kontextual_model::{Actor, ArtifactRef, ChainHead, Metadata, Namespace, RelationId, Revision};
use kontextual_store_types::{ArtifactQuery, Cursor};

use crate::cli::*;
use crate::config::{CONFIG_FILE, Config, DEFAULT_CONFIG};
use crate::output::{Out, bytes, short_digest, time};

/// Re-exported store types the CLI needs for queries and cursors.
mod kontextual_store_types {
    pub use kontextual_app::store_types::{ArtifactQuery, Cursor};
}

pub(crate) struct Ctx {
    pub(crate) cfg: Config,
    pub(crate) caller: Caller,
    pub(crate) out: Out,
}

impl Ctx {
    pub(crate) fn open(&self, mode: StoreOpenMode) -> Result<Services> {
        if let Some(url) = &self.cfg.database_url {
            if Services::store_exists(&self.cfg.data_dir) {
                tracing::warn!(
                    data_dir = %self.cfg.data_dir.display(),
                    "this data directory holds an embedded store, which is not used with --database-url"
                );
            }
            let create = matches!(mode, StoreOpenMode::Create | StoreOpenMode::Migrate);
            return Ok(Services::open_postgres(
                url,
                &self.cfg.data_dir,
                create,
                self.cfg.busy_timeout,
            )?
            .with_webhooks(self.cfg.webhooks.clone()));
        }
        Ok(Services::open(
            &StoreConfig {
                data_dir: self.cfg.data_dir.clone(),
                busy_timeout: self.cfg.busy_timeout,
            },
            mode,
        )?
        .with_webhooks(self.cfg.webhooks.clone()))
    }
    pub(crate) fn rw(&self) -> Result<Services> {
        self.open(StoreOpenMode::ReadWrite)
    }
}

pub(crate) fn page(p: &PageArgs) -> StorePageRequest {
    StorePageRequest {
        after: p.after.clone().map(Cursor),
        limit: p.limit,
    }
}

fn aref(s: &str) -> Result<ArtifactRef> {
    Ok(s.parse::<ArtifactRef>()?)
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let cfg = Config::load(&cli.global)?;
    let caller = Caller::new(
        cfg.actor.parse::<Actor>().context("actor")?,
        Namespace::new(&cfg.namespace).context("namespace")?,
    );
    let ctx = Ctx {
        cfg,
        caller,
        out: Out {
            json: cli.global.json,
            quiet: cli.global.quiet,
        },
    };
    match cli.command {
        Command::Init => init(&ctx),
        Command::Collection(c) => collection(&ctx, c),
        Command::Artifact(c) => artifact(&ctx, c),
        Command::Ingest(a) => crate::ingest::ingest(&ctx, a),
        Command::Run(c) => crate::ingest::run(&ctx, c),
        Command::Relate(a) => relate(&ctx, a),
        Command::Relation(c) => relation(&ctx, c),
        Command::Audit(c) => audit(&ctx, c),
        Command::Search(a) => crate::retrieval::search(&ctx, *a),
        Command::Context(c) => crate::retrieval::context(&ctx, c),
        Command::Index(c) => crate::retrieval::index(&ctx, c),
        Command::Verify(a) => verify(&ctx, a),
        Command::Serve(a) => serve(&ctx, a),
        Command::Key(c) => key(&ctx, c),
        Command::Grant(a) => grant(&ctx, a, true),
        Command::Hold(c) => hold(&ctx, c),
        Command::Clearance(c) => clearance(&ctx, c),
        Command::Access(c) => access(&ctx, c),
        Command::RevokeGrant(a) => grant(&ctx, a, false),
        Command::Db(c) => db(&ctx, c),
        Command::Job(c) => crate::jobs::job(&ctx, c),
        Command::Rerun(a) => crate::jobs::rerun(&ctx, a),
        Command::Reindex(a) => crate::jobs::reindex(&ctx, a),
        Command::Repair(a) => crate::jobs::repair(&ctx, a),
        Command::Worker(a) => crate::jobs::worker(&ctx, a),
        Command::Quarantine(c) => crate::jobs::quarantine(&ctx, c),
        Command::Export(a) => crate::package::export(&ctx, *a),
        Command::Package(PackageCmd::Validate { package, limits }) => {
            crate::package::validate(&ctx, &package, &limits)
        }
        Command::Import(a) => crate::package::import(&ctx, a),
        Command::EventType(c) => crate::events::event_type(&ctx, c),
        Command::Event(c) => crate::events::event(&ctx, c),
        Command::Webhook(c) => crate::webhooks::webhook(&ctx, c),
    }
}

fn ok() -> Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}

/// Writes the commented default `kontextual.toml` into a new data directory.
pub(crate) fn write_default_config(ctx: &Ctx) -> Result<()> {
    let cfg_path = ctx.cfg.data_dir.join(CONFIG_FILE);
    if !cfg_path.exists() {
        std::fs::write(&cfg_path, DEFAULT_CONFIG)
            .with_context(|| format!("writing {}", cfg_path.display()))?;
    }
    Ok(())
}

fn init(ctx: &Ctx) -> Result<ExitCode> {
    let existed = Services::store_exists(&ctx.cfg.data_dir);
    let svc = ctx.open(StoreOpenMode::Create)?;
    write_default_config(ctx)?;
    let cfg_path = ctx.cfg.data_dir.join(CONFIG_FILE);
    let status = svc.status(&ctx.caller)?;
    if ctx.out.json {
        ctx.out.json(&serde_json::json!({
            "data_dir": ctx.cfg.data_dir,
            "created": !existed,
            "schema_version": status.schema_version,
            "store_id": status.store_id,
        }))?;
    } else if ctx.cfg.database_url.is_some() {
        ctx.out.note(format!(
            "PostgreSQL store {} ready (schema v{}, store {}); this process's search index lives in {}.",
            status.location,
            status.schema_version,
            status.store_id,
            ctx.cfg.data_dir.display()
        ));
    } else if existed {
        ctx.out.note(format!(
            "Store already initialised at {} (schema v{}).",
            ctx.cfg.data_dir.display(),
            status.schema_version
        ));
    } else {
        ctx.out.note(format!(
            "Initialised a new store at {} (schema v{}, config {}).",
            ctx.cfg.data_dir.display(),
            status.schema_version,
            cfg_path.display()
        ));
    }
    ok()
}

fn collection(ctx: &Ctx, cmd: CollectionCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    match cmd {
        CollectionCmd::Create { name, description } => {
            let c = svc.collection_create(&ctx.caller, &name, &description)?;
            if ctx.out.json {
                ctx.out.json(&c)?;
            } else {
                ctx.out
                    .note(format!("Created collection {} ({}).", c.name, c.id));
            }
        }
        CollectionCmd::Show { name } => {
            let c = svc.collection_show(&ctx.caller, &name)?;
            if ctx.out.json {
                ctx.out.json(&c)?;
            } else {
                ctx.out.fields(&[
                    ("name", c.name.to_string()),
                    ("id", c.id.to_string()),
                    ("namespace", c.namespace.to_string()),
                    ("description", c.description.clone()),
                    ("artifacts", c.artifact_count.to_string()),
                    ("created", time(c.created_at)),
                ]);
            }
        }
        CollectionCmd::List(p) => {
            let pg = svc.collection_list(&ctx.caller, &page(&p))?;
            if ctx.out.json {
                ctx.out.json(&pg)?;
            } else {
                let rows = pg
                    .items
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.to_string(),
                            c.artifact_count.to_string(),
                            time(c.created_at),
                            c.description.clone(),
                        ]
                    })
                    .collect();
                ctx.out
                    .table(&["collection", "artifacts", "created", "description"], rows);
                next_hint(ctx, pg.next.as_ref());
            }
        }
    }
    ok()
}

pub(crate) fn next_hint(ctx: &Ctx, next: Option<&Cursor>) {
    if let Some(c) = next {
        ctx.out.note(format!("More results: --after {}", c.0));
    }
}

fn parse_metadata(args: &PutArgs) -> Result<Option<Metadata>> {
    if let Some(text) = &args.metadata {
        return Ok(Some(Metadata::parse(text)?));
    }
    if args.meta.is_empty() {
        return Ok(None);
    }
    let mut pairs = Vec::new();
    for m in &args.meta {
        let Some((k, v)) = m.split_once('=') else {
            bail!("--meta {m:?}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("--meta {m:?}: the key is empty");
        }
        pairs.push((k, v));
    }
    Ok(Some(Metadata::from_pairs(pairs)?))
}

fn artifact(ctx: &Ctx, cmd: ArtifactCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    match cmd {
        ArtifactCmd::Put(args) => {
            let content = match (&args.file, args.stdin, args.keep_content) {
                (Some(p), _, _) => ContentSource::File(p.clone()),
                (None, true, _) => ContentSource::Stdin,
                (None, false, true) => ContentSource::Keep,
                (None, false, false) => {
                    bail!("give the content with --file PATH or --stdin (or --keep-content)")
                }
            };
            let mut req = PutRequest::new(aref(&args.artifact)?, content);
            req.metadata = parse_metadata(&args)?;
            req.artifact_type = args.artifact_type.clone();
            req.media_type = args.media_type.clone();
            req.lifecycle = args.lifecycle.as_deref().map(str::parse).transpose()?;
            req.classification = args.classification.as_deref().map(str::parse).transpose()?;
            req.source_system = args.source_system.clone();
            req.expect_revision = args.expect_revision;
            req.create_only = args.create_only;
            req.derived_from = args
                .derived_from
                .iter()
                .map(|s| aref(s))
                .collect::<Result<_>>()?;
            req.transformation = args.transformation.clone();
            let outcome = svc.artifact_put(&ctx.caller, req)?;
            let a = &outcome.artifact;
            if ctx.out.json {
                ctx.out.json(&outcome)?;
            } else {
                match outcome.change {
                    Some(kind) => ctx.out.note(format!(
                        "{} {} revision {} ({}, {}).",
                        capitalize(kind.as_str()),
                        addr(a),
                        a.revision,
                        short_digest(&a.digest),
                        bytes(a.size)
                    )),
                    None => ctx.out.note(format!(
                        "Unchanged {} (revision {}): content and attributes are identical.",
                        addr(a),
                        a.revision
                    )),
                }
            }
        }
        ArtifactCmd::Show {
            artifact,
            content,
            revision,
            sections,
            expand,
            depth,
        } => {
            let r = aref(&artifact)?;
            if let Some(sel) = r.section() {
                let v = svc.artifact_section(&ctx.caller, &r, sel, revision)?;
                if content {
                    let mut stdout = io::stdout().lock();
                    stdout.write_all(v.text.as_bytes())?;
                    stdout.flush()?;
                } else if ctx.out.json {
                    ctx.out.json(&v)?;
                } else {
                    ctx.out.fields(&[
                        ("section", v.reference.clone()),
                        ("heading", v.heading.clone()),
                        ("revision", v.revision.to_string()),
                        ("bytes", format!("{}..{}", v.byte_range.0, v.byte_range.1)),
                        ("digest", v.digest.to_string()),
                    ]);
                    println!("\n{}", v.text.trim_end());
                }
                return ok();
            }
            if sections {
                let list = svc.artifact_sections(&ctx.caller, &r, revision)?;
                if ctx.out.json {
                    ctx.out.json(&list)?;
                } else if list.is_empty() {
                    ctx.out
                        .note(format!("{r} has no headings, so no sections."));
                } else {
                    let rows = list
                        .iter()
                        .map(|s| {
                            vec![
                                format!("#{}", s.selector),
                                format!("{}{}", "  ".repeat(s.level as usize - 1), s.heading),
                                format!("{}..{}", s.byte_range.0, s.byte_range.1),
                            ]
                        })
                        .collect();
                    ctx.out.table(&["selector", "heading", "bytes"], rows);
                }
                return ok();
            }
            if !expand.is_empty() && revision.is_none() && !content {
                let a = svc.artifact_show(&ctx.caller, &r)?;
                let related = svc.artifact_related(&ctx.caller, &r, &expand, depth)?;
                if ctx.out.json {
                    ctx.out
                        .json(&serde_json::json!({ "artifact": a, "related": related }))?;
                } else {
                    ctx.out
                        .note(format!("{} (revision {})", addr(&a), a.revision));
                    let rows = related
                        .iter()
                        .map(|x| {
                            vec![
                                x.depth.to_string(),
                                format!(
                                    "{} {}",
                                    if x.direction == "out" { "→" } else { "←" },
                                    x.via
                                ),
                                x.reference.clone(),
                                x.title.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    ctx.out.table(&["depth", "via", "artifact", "title"], rows);
                }
                return ok();
            }
            if content {
                let mut reader = svc.artifact_content(&ctx.caller, &r, revision)?;
                let mut stdout = io::stdout().lock();
                io::copy(&mut reader, &mut stdout)?;
                stdout.flush()?;
                return ok();
            }
            if let Some(n) = revision {
                let rev = svc.artifact_revision(&ctx.caller, &r, n)?;
                if ctx.out.json {
                    ctx.out.json(&rev)?;
                } else {
                    ctx.out.fields(&[
                        ("artifact", r.to_string()),
                        ("revision", rev.revision.to_string()),
                        ("change", rev.change.to_string()),
                        ("digest", rev.digest.to_string()),
                        (
                            "previous digest",
                            rev.prev_digest.map_or("-".to_owned(), |d| d.to_string()),
                        ),
                        (
                            "content",
                            if rev.content_available {
                                "available"
                            } else {
                                "purged"
                            }
                            .to_owned(),
                        ),
                        ("size", bytes(rev.size)),
                        ("media type", rev.media_type.clone()),
                        ("metadata", rev.metadata.to_string()),
                        ("lifecycle", rev.lifecycle.to_string()),
                        ("classification", rev.classification.to_string()),
                        ("actor", rev.actor.to_string()),
                        ("correlation", rev.correlation_id.to_string()),
                        ("at", time(rev.created_at)),
                    ]);
                }
                return ok();
            }
            let a = svc.artifact_show(&ctx.caller, &r)?;
            if ctx.out.json {
                ctx.out.json(&a)?;
            } else {
                let mut rows = vec![
                    ("artifact", addr(&a)),
                    ("id", a.id.to_string()),
                    ("state", a.state.to_string()),
                    ("revision", a.revision.to_string()),
                    ("type", a.artifact_type.clone()),
                    ("media type", a.media_type.clone()),
                    ("title", a.title.clone().unwrap_or_else(|| "-".to_owned())),
                    ("digest", a.digest.to_string()),
                    ("size", bytes(a.size)),
                    ("metadata", a.metadata.to_string()),
                    ("lifecycle", a.lifecycle.to_string()),
                    ("classification", a.classification.to_string()),
                ];
                if let Some(s) = &a.source_system {
                    rows.push(("source system", s.clone()));
                }
                if let Some(p) = &a.provenance.source_path {
                    rows.push(("source path", p.clone()));
                }
                if let Some(t) = a.provenance.source_mtime {
                    rows.push(("source mtime", time(t)));
                }
                if !a.provenance.derived_from.is_empty() {
                    let ids: Vec<String> = a
                        .provenance
                        .derived_from
                        .iter()
                        .map(|i| i.to_string())
                        .collect();
                    rows.push(("derived from", ids.join(", ")));
                }
                if let Some(t) = &a.provenance.transformation {
                    rows.push(("transformation", t.clone()));
                }
                rows.push(("created", time(a.created_at)));
                rows.push(("updated", time(a.updated_at)));
                ctx.out.fields(&rows);
            }
        }
        ArtifactCmd::List {
            collection,
            include_deleted,
            digest,
            page: p,
        } => {
            let q = ArtifactQuery {
                collection: collection.as_deref().map(str::parse).transpose()?,
                digest: digest
                    .as_deref()
                    .map(str::parse::<kontextual_model::Digest>)
                    .transpose()?,
                include_deleted,
                ..ArtifactQuery::default()
            };
            let pg = svc.artifact_list(&ctx.caller, &q, &page(&p))?;
            if ctx.out.json {
                ctx.out.json(&pg)?;
            } else {
                let rows = pg
                    .items
                    .iter()
                    .map(|a| {
                        vec![
                            format!(
                                "{}/{}",
                                a.collection,
                                kontextual_model::names::escape_name(a.name.as_str())
                            ),
                            a.revision.to_string(),
                            a.state.to_string(),
                            a.artifact_type.clone(),
                            bytes(a.size),
                            time(a.updated_at),
                        ]
                    })
                    .collect();
                ctx.out.table(
                    &["artifact", "rev", "state", "type", "size", "updated"],
                    rows,
                );
                next_hint(ctx, pg.next.as_ref());
            }
        }
        ArtifactCmd::History { artifact, page: p } => {
            let pg = svc.artifact_history(&ctx.caller, &aref(&artifact)?, &page(&p))?;
            if ctx.out.json {
                ctx.out.json(&pg)?;
            } else {
                let rows = pg.items.iter().map(history_row).collect();
                ctx.out.table(
                    &["rev", "change", "digest", "previous", "size", "actor", "at"],
                    rows,
                );
                next_hint(ctx, pg.next.as_ref());
            }
        }
        ArtifactCmd::Diff { artifact, from, to } => {
            let d = svc.artifact_diff(&ctx.caller, &aref(&artifact)?, from, to)?;
            if ctx.out.json {
                ctx.out.json(&d)?;
            } else {
                println!(
                    "{}: revision {} → {}",
                    d.artifact, d.from.revision, d.to.revision
                );
                for (field, old, new) in &d.attributes {
                    println!("  {field}: {old} → {new}");
                }
                use kontextual_app::DiffContent;
                match &d.content {
                    DiffContent::Same => println!("content: unchanged"),
                    DiffContent::Unavailable => println!("content: unavailable (purged)"),
                    DiffContent::Binary { from_size, to_size } => {
                        println!(
                            "content: binary or too large to show ({} → {})",
                            bytes(*from_size),
                            bytes(*to_size)
                        )
                    }
                    DiffContent::Text { unified } => print!("{unified}"),
                }
            }
        }
        ArtifactCmd::Delete {
            artifact,
            expect_revision,
        } => {
            let a = svc.artifact_delete(&ctx.caller, &aref(&artifact)?, expect_revision)?;
            if ctx.out.json {
                ctx.out.json(&a)?;
            } else {
                ctx.out.note(format!(
                    "Deleted {} (tombstone at revision {}; history kept).",
                    addr(&a),
                    a.revision
                ));
            }
        }
        ArtifactCmd::Purge {
            artifact,
            expect_revision,
            yes,
        } => {
            if !yes {
                bail!(
                    "purge erases the content of every revision of {artifact} for good; add --yes to confirm"
                );
            }
            let a = svc.artifact_purge(&ctx.caller, &aref(&artifact)?, expect_revision)?;
            if ctx.out.json {
                ctx.out.json(&a)?;
            } else {
                ctx.out.note(format!(
                    "Purged the content of {} (revision {}); the tombstone and change records remain.",
                    addr(&a),
                    a.revision
                ));
            }
        }
    }
    ok()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// An artifact's address as the user types it back (`#` and `%` escaped).
fn addr(a: &kontextual_model::Artifact) -> String {
    format!(
        "{}/{}",
        a.collection,
        kontextual_model::names::escape_name(a.name.as_str())
    )
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn history_row(r: &Revision) -> Vec<String> {
    let mut digest = short_digest(&r.digest);
    if !r.content_available {
        digest.push_str(" (purged)");
    }
    vec![
        r.revision.to_string(),
        r.change.to_string(),
        digest,
        r.prev_digest
            .as_ref()
            .map(short_digest)
            .unwrap_or_else(|| "-".to_owned()),
        bytes(r.size),
        r.actor.to_string(),
        time(r.created_at),
    ]
}

fn relate(ctx: &Ctx, a: RelateArgs) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let props = a.props.as_deref().map(Metadata::parse).transpose()?;
    let r = svc.relate(
        &ctx.caller,
        &aref(&a.source)?,
        &a.rel_type,
        &aref(&a.target)?,
        props,
    )?;
    if ctx.out.json {
        ctx.out.json(&r)?;
    } else {
        ctx.out.note(format!(
            "Related {} {} {} (relation {}).",
            a.source, r.rel_type, a.target, r.id
        ));
    }
    ok()
}

fn relation(ctx: &Ctx, cmd: RelationCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    match cmd {
        RelationCmd::List {
            artifact,
            rel_type,
            include_deleted,
            page: p,
        } => {
            let artifact = artifact.as_deref().map(aref).transpose()?;
            let pg = svc.relation_list(
                &ctx.caller,
                artifact.as_ref(),
                rel_type.as_deref(),
                include_deleted,
                &page(&p),
            )?;
            if ctx.out.json {
                ctx.out.json(&pg)?;
            } else {
                let name = |id: kontextual_model::ArtifactId| -> String {
                    svc.artifact_show(&ctx.caller, &ArtifactRef::Id(id))
                        .map(|a| addr(&a))
                        .unwrap_or_else(|_| id.to_string())
                };
                let rows = pg
                    .items
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            name(r.source),
                            r.rel_type.to_string(),
                            name(r.target),
                            r.revision.to_string(),
                            if r.deleted { "deleted" } else { "live" }.to_owned(),
                        ]
                    })
                    .collect();
                ctx.out.table(
                    &["relation", "source", "type", "target", "rev", "state"],
                    rows,
                );
                next_hint(ctx, pg.next.as_ref());
            }
        }
        RelationCmd::Update {
            id,
            rel_type,
            props,
            expect_revision,
        } => {
            let id: RelationId = id.parse()?;
            let props = props.as_deref().map(Metadata::parse).transpose()?;
            let r =
                svc.relation_update(&ctx.caller, id, rel_type.as_deref(), props, expect_revision)?;
            if ctx.out.json {
                ctx.out.json(&r)?;
            } else {
                ctx.out.note(format!(
                    "Updated relation {} (revision {}).",
                    r.id, r.revision
                ));
            }
        }
        RelationCmd::Delete {
            id,
            expect_revision,
        } => {
            let id: RelationId = id.parse()?;
            let r = svc.relation_delete(&ctx.caller, id, expect_revision)?;
            if ctx.out.json {
                ctx.out.json(&r)?;
            } else {
                ctx.out.note(format!("Deleted relation {}.", r.id));
            }
        }
    }
    ok()
}

/// An RFC 3339 instant, or a date (midnight UTC).
pub(crate) fn parse_time(s: &str) -> Result<kontextual_model::Timestamp> {
    parse_time_at(s, jiff::Timestamp::now())
}

/// A time as people write it: RFC 3339, a date (midnight UTC), `now`,
/// `today`, `yesterday`, or an age — `7d`, `2h`, `30m`, `1w`, `1 day`
/// (jiff's friendly spans) — meaning that long before `now`.
fn parse_time_at(s: &str, now: jiff::Timestamp) -> Result<kontextual_model::Timestamp> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<kontextual_model::Timestamp>() {
        return Ok(ts);
    }
    let out_of_range = || {
        anyhow::anyhow!(
            "{s:?} is out of range: times run from {} to {}",
            jiff::Timestamp::MIN,
            jiff::Timestamp::MAX
        )
    };
    if jiff::fmt::temporal::Pieces::parse(t).is_ok_and(|p| p.offset().is_some()) {
        // well-formed, but past the last instant that is a date at every
        // UTC offset (`9999-12-31T23:59:59Z`)
        return Err(out_of_range());
    }
    let utc = now.to_zoned(jiff::tz::TimeZone::UTC);
    let midnight = |z: &jiff::Zoned| -> Result<kontextual_model::Timestamp> {
        Ok(z.date().to_zoned(jiff::tz::TimeZone::UTC)?.timestamp())
    };
    match t.to_ascii_lowercase().as_str() {
        "now" => return Ok(now),
        "today" => return midnight(&utc),
        "yesterday" => return midnight(&utc.yesterday()?),
        _ => {}
    }
    if let Ok(date) = t.parse::<jiff::civil::Date>() {
        return date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|_| out_of_range());
    }
    let age = t.strip_suffix(" ago").unwrap_or(t);
    if let Ok(span) = age.parse::<jiff::Span>()
        && !span.is_negative()
        && let Ok(then) = utc.checked_sub(span)
    {
        return Ok(then.timestamp());
    }
    bail!(
        "{s:?} is not a time: use RFC 3339 (2026-11-21T09:00:00Z), a date (2026-11-21), \
         now, today, yesterday, or an age such as 7d, 2h or 30m"
    )
}

fn parse_head(s: Option<&str>) -> Result<Option<ChainHead>> {
    Ok(s.map(str::parse::<ChainHead>).transpose()?)
}

fn audit(ctx: &Ctx, cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::List {
            by,
            action,
            target,
            since,
            until,
            correlation,
            after,
            limit,
        } => {
            let svc = ctx.rw()?;
            let filter = AuditFilter {
                actor: by,
                action,
                target,
                since: since.as_deref().map(parse_time).transpose()?,
                until: until.as_deref().map(parse_time).transpose()?,
                correlation_id: correlation,
            };
            let recs = svc.audit_list(&ctx.caller, &filter, after, limit)?;
            // a full page may have more after it: resume with --after <last seq>
            let next = (recs.len() == limit as usize)
                .then(|| recs.last().map(|r| r.seq))
                .flatten();
            if ctx.out.json {
                ctx.out
                    .json(&serde_json::json!({ "items": recs, "next": next }))?;
            } else {
                let rows = recs
                    .iter()
                    .map(|r| {
                        vec![
                            r.seq.to_string(),
                            time(r.at),
                            r.actor.to_string(),
                            r.draft.action.clone(),
                            r.draft
                                .target_name
                                .clone()
                                .unwrap_or_else(|| r.draft.target_id.clone()),
                            r.draft.outcome.as_str().to_owned(),
                            r.correlation_id.to_string(),
                        ]
                    })
                    .collect();
                ctx.out.table(
                    &[
                        "seq",
                        "at",
                        "actor",
                        "action",
                        "target",
                        "outcome",
                        "correlation",
                    ],
                    rows,
                );
            }
            ok()
        }
        AuditCmd::Verify(args) => {
            let svc = ctx.open(StoreOpenMode::Inspect)?;
            let v = svc.audit_verify(&ctx.caller, parse_head(args.expect_head.as_deref())?)?;
            if ctx.out.json {
                ctx.out.json(&v)?;
            } else {
                let q = ctx.out.quiet;
                let head = v.report.head.as_ref().map(|h| h.to_string());
                if v.report.is_valid() {
                    if !q {
                        println!("Audit chain OK: {} records.", v.report.records);
                    } else if let Some(h) = &head {
                        // -q: only the head, the data this command exists to give
                        println!("{h}");
                    }
                } else {
                    println!(
                        "Audit chain BROKEN: {} records, {}:",
                        v.report.records,
                        plural(v.report.problems.len(), "problem")
                    );
                    for p in &v.report.problems {
                        println!("  - {p}");
                    }
                }
                if !q {
                    println!("head: {}", head.as_deref().unwrap_or("(empty chain)"));
                    match &v.expected_head_source {
                        Some(src) => println!("checked against the expected head from {src}"),
                        None if v.report.records > 0 => eprintln!(
                            "warning: no chain head recorded outside the database was found, so a truncated \
                             tail cannot be detected; pass --expect-head SEQ:HASH"
                        ),
                        None => {}
                    }
                    if let (true, Some(h)) = (v.report.is_valid(), &head) {
                        println!(
                            "Keep this head outside the store and pass it later: audit verify --expect-head {h}"
                        );
                    }
                }
            }
            Ok(if v.report.is_valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn verify(ctx: &Ctx, args: VerifyArgs) -> Result<ExitCode> {
    let svc = ctx.open(StoreOpenMode::Inspect)?;
    let r = svc.verify(&ctx.caller, parse_head(args.expect_head.as_deref())?)?;
    if ctx.out.json {
        ctx.out.json(&r)?;
    } else {
        if !ctx.out.quiet {
            println!(
                "Checked {} blobs ({}), {} revisions, {} audit records.",
                r.blobs_checked,
                bytes(r.blob_bytes_checked),
                r.revisions_checked,
                r.audit.records
            );
            if let Some(h) = &r.audit.head {
                println!("audit head: {h}");
            }
        }
        if r.is_ok() {
            ctx.out.note("Store OK.");
        } else {
            println!("{}:", plural(r.problems.len(), "problem"));
            for p in &r.problems {
                let cat = serde_json::to_value(p.category)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                println!("  [{cat}] {}: {}", p.subject, p.detail);
            }
        }
    }
    Ok(if r.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn key(ctx: &Ctx, cmd: KeyCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    match cmd {
        KeyCmd::Create {
            name,
            key_actor,
            scopes,
            expires,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| s.trim().parse::<kontextual_model::Scope>())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let expires = expires.as_deref().map(parse_time).transpose()?;
            let first_key = !svc.keys_exist()?;
            let k = svc.key_create(&ctx.caller, &name, key_actor.parse()?, scopes, expires)?;
            // what a new key does not do by itself, said at once
            let mut warnings = Vec::new();
            if svc.grant_list(&ctx.caller, Some(&k.key.actor))?.is_empty() {
                warnings.push(format!(
                    "{} has no grants yet: requests with this key may do nothing until you run e.g. `kontextual grant {} read --collection NAME`",
                    k.key.actor, k.key.actor
                ));
            }
            if first_key {
                warnings.push(
                    "this is the first API key: from now on every /v1 request to `kontextual serve` needs `Authorization: Bearer …`".to_owned(),
                );
            }
            if ctx.out.json {
                let mut v = serde_json::to_value(&k)?;
                v["warnings"] = serde_json::json!(warnings);
                ctx.out.json(&v)?;
            } else {
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
                println!("{}", k.token);
                eprintln!(
                    "Created API key {} ({}) for {}, scopes {}. The token above is shown once: store it now.",
                    k.key.id,
                    k.key.name,
                    k.key.actor,
                    k.key
                        .scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        KeyCmd::List(p) => {
            let pg = svc.key_list(&ctx.caller, &page(&p))?;
            if ctx.out.json {
                ctx.out.json(&pg)?;
            } else {
                let rows = pg
                    .items
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.name.clone(),
                            k.actor.to_string(),
                            k.scopes
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            if k.revoked_at.is_some() {
                                "revoked".to_owned()
                            } else if k.expires_at.is_some_and(|e| e <= kontextual_model::now()) {
                                "expired".to_owned()
                            } else {
                                "active".to_owned()
                            },
                            k.last_used_at.map(time).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                ctx.out.table(
                    &["id", "name", "actor", "scopes", "state", "last used"],
                    rows,
                );
                next_hint(ctx, pg.next.as_ref());
            }
        }
        KeyCmd::Revoke { id } => {
            let k = svc.key_revoke(&ctx.caller, &id)?;
            if ctx.out.json {
                ctx.out.json(&k)?;
            } else {
                ctx.out
                    .note(format!("Revoked API key {} ({}).", k.id, k.name));
            }
        }
    }
    ok()
}

fn access(ctx: &Ctx, cmd: AccessCmd) -> Result<ExitCode> {
    let AccessCmd::List {
        by,
        since,
        after,
        limit,
    } = cmd;
    let svc = ctx.rw()?;
    let by: Option<kontextual_model::Actor> = by.as_deref().map(str::parse).transpose()?;
    let since = since.as_deref().map(parse_time).transpose()?;
    let list = svc.access_list(&ctx.caller, by.as_ref(), since, after, limit)?;
    if ctx.out.json {
        ctx.out.json(&list)?;
    } else {
        let rows = list
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    time(e.at),
                    e.actor.to_string(),
                    e.action.clone(),
                    e.target.clone(),
                ]
            })
            .collect();
        ctx.out
            .table(&["seq", "at", "actor", "action", "target"], rows);
    }
    ok()
}

fn clearance(ctx: &Ctx, cmd: ClearanceCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let requested = matches!(cmd, ClearanceCmd::List);
    let list = match cmd {
        ClearanceCmd::Set { subject, level } => {
            vec![svc.clearance_set(&ctx.caller, subject.parse()?, level.parse()?)?]
        }
        ClearanceCmd::List => svc.clearance_list(&ctx.caller)?,
    };
    if ctx.out.quiet && !requested && !ctx.out.json {
        return ok();
    }
    if ctx.out.json {
        ctx.out.json(&list)?;
    } else {
        let rows = list
            .iter()
            .map(|c| vec![c.actor.to_string(), c.level.to_string(), time(c.set_at)])
            .collect();
        ctx.out.table(&["actor", "clearance", "since"], rows);
    }
    ok()
}

fn hold(ctx: &Ctx, cmd: HoldCmd) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let requested = matches!(cmd, HoldCmd::List);
    let holds = match cmd {
        HoldCmd::Set { artifact, reason } => {
            vec![svc.hold_set(&ctx.caller, &aref(&artifact)?, &reason)?]
        }
        HoldCmd::Release { artifact } => vec![svc.hold_release(&ctx.caller, &aref(&artifact)?)?],
        HoldCmd::List => svc.hold_list(&ctx.caller)?,
    };
    if ctx.out.quiet && !requested && !ctx.out.json {
        return ok();
    }
    if ctx.out.json {
        ctx.out.json(&holds)?;
    } else {
        let rows = holds
            .iter()
            .map(|h| {
                vec![
                    format!(
                        "{}/{}",
                        h.collection,
                        kontextual_model::names::escape_name(h.name.as_str())
                    ),
                    h.reason.clone(),
                    h.actor.to_string(),
                    time(h.created_at),
                ]
            })
            .collect();
        ctx.out.table(&["artifact", "reason", "by", "since"], rows);
    }
    ok()
}

fn grant(ctx: &Ctx, a: GrantArgs, give: bool) -> Result<ExitCode> {
    let svc = ctx.rw()?;
    let (actor, permission) = match (&a.grantee, &a.permission) {
        (Some(actor), Some(p)) => (
            actor.parse()?,
            p.parse::<kontextual_model::GrantPermission>()?,
        ),
        (None, None) if give && a.collection.is_none() && a.artifact.is_none() => {
            let grants = svc.grant_list(&ctx.caller, None)?;
            if ctx.out.json {
                ctx.out.json(&grants)?;
            } else {
                let rows = grants
                    .iter()
                    .map(|g| {
                        vec![
                            g.actor.to_string(),
                            g.permission.to_string(),
                            g.scope.to_string(),
                            time(g.created_at),
                        ]
                    })
                    .collect();
                ctx.out.table(&["actor", "permission", "on", "since"], rows);
            }
            return ok();
        }
        _ => bail!(
            "give an ACTOR and a PERMISSION (read, write, admin, export), e.g. `grant agent:ci read --collection handbook`"
        ),
    };
    let on = match (&a.collection, &a.artifact) {
        (Some(c), _) => kontextual_app::GrantOn::Collection(c),
        (None, Some(r)) => kontextual_app::GrantOn::Artifact(r),
        (None, None) => kontextual_app::GrantOn::Namespace,
    };
    let g = if give {
        svc.grant(&ctx.caller, actor, permission, on)?
    } else {
        svc.revoke_grant(&ctx.caller, actor, permission, on)?
    };
    if ctx.out.json {
        ctx.out.json(&g)?;
    } else {
        ctx.out.note(format!(
            "{} {} {} on {}.",
            if give { "Granted" } else { "Revoked" },
            g.actor,
            g.permission,
            g.scope
        ));
    }
    ok()
}

fn serve(ctx: &Ctx, a: ServeArgs) -> Result<ExitCode> {
    let mut svc = ctx.rw()?;
    if let Some(nats) = &ctx.cfg.nats {
        svc.publish_events_to_nats(nats.clone())?;
    }
    let svc = std::sync::Arc::new(svc);
    let state = kontextual_server::AppState::new(
        svc,
        ctx.caller.actor.clone(),
        ctx.caller.namespace.clone(),
        kontextual_server::limits::LimitConfig {
            per_key_per_second: a.rate_limit,
            per_key_burst: a.rate_limit.saturating_mul(2),
            ..Default::default()
        },
    );
    let cfg = kontextual_server::ServeConfig {
        bind: a.bind,
        max_body_bytes: (a.max_body_mb * 1024 * 1024) as usize,
        request_timeout: std::time::Duration::from_secs(a.request_timeout),
        header_timeout: std::time::Duration::from_secs(a.header_timeout),
        max_connections: usize::try_from(a.max_connections).unwrap_or(usize::MAX),
        large_uploads: usize::try_from(a.max_large_uploads).unwrap_or(usize::MAX),
        // With --workers 0 the server still runs the index maintenance jobs
        // (re-index, repair): only the index's owner can, and it is the owner.
        workers: Some(kontextual_app::WorkerConfig {
            threads: (a.workers as usize).max(1),
            kinds: if a.workers == 0 {
                vec!["reindex".to_owned(), "repair".to_owned()]
            } else {
                Vec::new()
            },
            job_retention: std::time::Duration::from_secs(a.job_retention_days * 86_400),
            ..Default::default()
        }),
        ..Default::default()
    };
    let quiet = ctx.out.quiet;
    let json = ctx.out.json;
    crate::heap::spawn_trimmer();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(kontextual_server::serve(state, cfg, move |addr| {
        if json {
            println!("{}", serde_json::json!({ "listening": addr.to_string() }));
        } else if !quiet {
            println!("Listening on http://{addr} (API under /v1, description at /openapi.json). Ctrl-C stops.");
        }
        let _ = io::stdout().flush();
    }))?;
    // stdout may be gone by now (a supervisor that read the first line),
    // so the farewell goes to stderr, best effort
    // (with --json the exit status says it; nothing more is printed)
    if !json && !quiet {
        let _ = writeln!(
            io::stderr(),
            "Stopped: in-flight requests finished, jobs handed back."
        );
    }
    ok()
}

fn db(ctx: &Ctx, cmd: DbCmd) -> Result<ExitCode> {
    match cmd {
        DbCmd::Status => {
            let svc = ctx.open(StoreOpenMode::Inspect)?;
            let s = svc.status(&ctx.caller)?;
            if ctx.out.json {
                ctx.out.json(&s)?;
            } else {
                let pending = if s.pending_migrations.is_empty() {
                    "none".to_owned()
                } else {
                    format!(
                        "{} (run `kontextual db migrate`)",
                        s.pending_migrations.join(", ")
                    )
                };
                ctx.out.fields(&[
                    ("store", s.location.clone()),
                    ("store id", s.store_id.clone()),
                    (
                        "schema version",
                        format!(
                            "{} (this kontextual: {})",
                            s.schema_version, s.latest_schema_version
                        ),
                    ),
                    ("pending migrations", pending),
                    ("collections", s.collections.to_string()),
                    (
                        "artifacts",
                        format!(
                            "{} live, {} deleted, {} purged",
                            s.artifacts_live, s.artifacts_deleted, s.artifacts_purged
                        ),
                    ),
                    ("revisions", s.revisions.to_string()),
                    ("relations", s.relations_live.to_string()),
                    ("blobs", format!("{} ({})", s.blobs, bytes(s.blob_bytes))),
                    ("audit records", s.audit_records.to_string()),
                    (
                        "audit head",
                        s.audit_head
                            .as_ref()
                            .map_or("-".to_owned(), |h| h.to_string()),
                    ),
                    (
                        "outbox",
                        format!(
                            "{} events (last seq {})",
                            s.outbox_events, s.outbox_last_seq
                        ),
                    ),
                    ("database size", bytes(s.size_bytes)),
                ]);
            }
        }
        DbCmd::Migrate => {
            let before = ctx.open(StoreOpenMode::Inspect)?.status(&ctx.caller)?;
            let svc = ctx.open(StoreOpenMode::Migrate)?;
            let after = svc.status(&ctx.caller)?;
            if ctx.out.json {
                ctx.out.json(&serde_json::json!({
                    "from": before.schema_version,
                    "to": after.schema_version,
                    "applied": before.pending_migrations,
                }))?;
            } else if before.pending_migrations.is_empty() {
                ctx.out
                    .note(format!("Schema is up to date (v{}).", after.schema_version));
            } else {
                ctx.out.note(format!(
                    "Migrated schema v{} → v{} ({}).",
                    before.schema_version,
                    after.schema_version,
                    before.pending_migrations.join(", ")
                ));
            }
        }
    }
    ok()
}

/// A `kontextual` command line to copy and run for the same store and
/// namespace as this one: `--data-dir` and `--namespace` when they are not
/// the defaults (a PostgreSQL URL is never printed: it may hold a
/// password), then `words`, each quoted for a POSIX shell where it needs it
/// (`'artifact.*'`).
pub(crate) fn command_line(ctx: &Ctx, words: &[String]) -> String {
    let mut all = vec!["kontextual".to_owned()];
    if ctx.cfg.database_url.is_none() && ctx.cfg.data_dir != std::path::Path::new("kontextual-data")
    {
        all.push("--data-dir".to_owned());
        all.push(ctx.cfg.data_dir.display().to_string());
    }
    if ctx.cfg.namespace != kontextual_model::Namespace::default().as_str() {
        all.push("--namespace".to_owned());
        all.push(ctx.cfg.namespace.clone());
    }
    all.extend(words.iter().cloned());
    all.iter()
        .map(|w| shlex::try_quote(w).map_or_else(|_| w.clone(), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod time_tests {
    use super::parse_time_at;

    /// X5: dates as people write them, and errors in plain words.
    #[test]
    fn x5_times_accept_rfc3339_dates_and_ages() {
        let now: jiff::Timestamp = "2026-12-04T15:30:00Z".parse().unwrap();
        let at = |s: &str| parse_time_at(s, now).map(|t| t.to_string());
        assert_eq!(at("2026-11-21T09:00:00Z").unwrap(), "2026-11-21T09:00:00Z");
        assert_eq!(at("2026-11-21").unwrap(), "2026-11-21T00:00:00Z");
        assert_eq!(at("yesterday").unwrap(), "2026-12-03T00:00:00Z");
        assert_eq!(at("today").unwrap(), "2026-12-04T00:00:00Z");
        assert_eq!(at("7d").unwrap(), "2026-11-27T15:30:00Z");
        assert_eq!(at("2h").unwrap(), "2026-12-04T13:30:00Z");
        assert_eq!(at("30m ago").unwrap(), "2026-12-04T15:00:00Z");
        let e = at("last tuesday-ish").unwrap_err().to_string();
        assert!(e.contains("is not a time") && e.contains("7d"), "{e}");
        assert!(!e.contains("four digit"), "no parser internals: {e}");
        for far in [
            "9999-12-31T23:59:59Z",
            "9999-12-31",
            "-009999-01-01T00:00:00Z",
        ] {
            let e = at(far).unwrap_err().to_string();
            assert!(e.contains("is out of range: times run from"), "{far}: {e}");
        }
    }
}
