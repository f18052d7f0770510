//! The command-line grammar: `kontextual [GLOBAL FLAGS] <noun> <verb> [ARGS]`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kontextual",
    version,
    about = "Kontextual: the self-hosted knowledge runtime for AI agents and their operators.",
    long_about = "Kontextual keeps what agents know: collections of artifacts with full revision \
history, typed relationships, content-addressed blobs and a hash-chained audit log.\n\n\
Artifacts are addressed by id or by COLLECTION/NAME (e.g. handbook/guides/setup.md); \
escape '#' and '%' inside names as %23 and %25.",
    after_help = "Exit codes: 0 ok, 1 verification found problems, 2 invalid input, 3 not found, \
4 conflict, 5 store unavailable, 6 permission denied, 7 corruption, 8 I/O error, 10 internal error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Data directory holding the embedded store [default: ./kontextual-data]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "KONTEXTUAL_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user@host/db); PostgreSQL then holds the store, --data-dir only this process's search index
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "KONTEXTUAL_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Namespace (tenant) to act in [default: default]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "KONTEXTUAL_NAMESPACE",
        value_name = "NS"
    )]
    pub namespace: Option<String>,
    /// Actor to act as, KIND:NAME [default: user:local-admin]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "KONTEXTUAL_ACTOR",
        value_name = "ACTOR"
    )]
    pub actor: Option<String>,
    /// Config file [default: DATA_DIR/kontextual.toml, if present]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "KONTEXTUAL_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Print nothing but errors (and requested data)
    #[arg(long, short, global = true, help_heading = "Global options")]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the store (data directory and database); safe to run again
    Init,
    /// Collections of artifacts
    #[command(subcommand)]
    Collection(CollectionCmd),
    /// Artifacts, their revisions and content
    #[command(subcommand)]
    Artifact(ArtifactCmd),
    /// Ingest files and directory trees into a collection (created if missing)
    Ingest(IngestArgs),
    /// Operation runs (ingests): input, steps, manifest, diagnostics
    #[command(subcommand)]
    Run(RunCmd),
    /// Relate two artifacts: SRC TYPE DST (e.g. handbook/a.md references handbook/b.md)
    Relate(RelateArgs),
    /// Typed relationships
    #[command(subcommand)]
    Relation(RelationCmd),
    /// The hash-chained audit log
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Full-text search (BM25) over content, names, titles, headings and metadata
    Search(Box<SearchArgs>),
    /// Context packages: the best artifacts and sections under a token budget, verifiable later
    #[command(subcommand)]
    Context(ContextCmd),
    /// The search index (a projection of the store): status and rebuild
    #[command(subcommand)]
    Index(IndexCmd),
    /// Check the whole store: database integrity, every blob, references, migrations, audit chain, search index
    Verify(VerifyArgs),
    /// The HTTP API (JSON under /v1, OpenAPI at /openapi.json); owns the search index while it runs
    Serve(ServeArgs),
    /// API keys for the HTTP API: create (prints the token once), list, revoke
    #[command(subcommand)]
    Key(KeyCmd),
    /// Give an actor a permission on the namespace, a collection or an artifact (no arguments: list grants)
    Grant(GrantArgs),
    /// Take a grant back
    RevokeGrant(GrantArgs),
    /// The read access log: who read or searched what (admin)
    #[command(subcommand)]
    Access(AccessCmd),
    /// Clearances: the highest classification an actor may read (API-key actors default to internal)
    #[command(subcommand)]
    Clearance(ClearanceCmd),
    /// Legal holds: a held artifact cannot be deleted or purged
    #[command(subcommand)]
    Hold(HoldCmd),
    /// Schema status and migrations
    #[command(subcommand)]
    Db(DbCmd),
    /// Jobs (background work): list, show, retry, cancel, quarantine, release (admin)
    #[command(subcommand, visible_alias = "jobs")]
    Job(JobCmd),
    /// Run a past run's input bundle again, as a new run (a job; --wait to wait for it)
    Rerun(RerunArgs),
    /// Index one collection (or everything) again from the store
    Reindex(ReindexArgs),
    /// Run the store and index checks, fix what can be fixed, report the rest (exit 1 if any remains)
    Repair(RepairArgs),
    /// Run job workers until Ctrl-C / SIGTERM (`serve` runs them too)
    Worker(WorkerArgs),
    /// Quarantine: a quarantined artifact is kept, but skipped by ingest and left out of search and export
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// Export what you may read as a BagIt package: a directory, or .tar.zst by extension
    Export(Box<ExportArgs>),
    /// Export packages: validate (complete? valid? what is missing or altered?)
    #[command(subcommand)]
    Package(PackageCmd),
    /// Import an export package (directory or .tar.zst); initialises the data directory if needed
    Import(ImportArgs),
    /// The event catalog: every event type, its version and the JSON Schema of its data
    #[command(subcommand)]
    EventType(EventTypeCmd),
    /// The change feed: events after a cursor, as CloudEvents (only what you may read)
    #[command(subcommand)]
    Event(EventCmd),
    /// Webhooks: signed HTTP deliveries of events (Standard Webhooks 1.0); administrators only
    #[command(subcommand)]
    Webhook(WebhookCmd),
}

#[derive(Subcommand, Debug)]
pub enum WebhookCmd {
    /// Subscribe a URL to events; prints the signing secret (whsec_…) once
    Create {
        /// Where deliveries are POSTed (http or https, no user:password@)
        #[arg(long)]
        url: String,
        /// Event types: exact names, families (artifact.*) or *; comma-separated or repeated (default: *)
        #[arg(long, value_name = "PATTERNS")]
        types: Vec<String>,
        /// Only events about things in this collection; comma-separated or repeated (default: every collection)
        #[arg(long = "collection", short = 'c', value_name = "C")]
        collections: Vec<String>,
        /// What it is for
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The namespace's webhooks, newest first
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// A webhook and its deliveries counted by state
    Show { webhook: String },
    /// Change a webhook's URL, types, collections or description
    Update {
        webhook: String,
        #[arg(long)]
        url: Option<String>,
        /// Replaces the type patterns (comma-separated or repeated)
        #[arg(long, value_name = "PATTERNS")]
        types: Vec<String>,
        /// Replaces the collections (comma-separated or repeated)
        #[arg(
            long = "collection",
            short = 'c',
            value_name = "C",
            conflicts_with = "all_collections"
        )]
        collections: Vec<String>,
        /// Deliver events of every collection again
        #[arg(long)]
        all_collections: bool,
        #[arg(long)]
        description: Option<String>,
    },
    /// Start delivering again (clears the failure streak)
    Enable { webhook: String },
    /// Stop delivering (events meanwhile are not delivered)
    Disable {
        webhook: String,
        /// Why (shown with the webhook and in its webhook.disabled event)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a webhook; its pending and failed deliveries are cancelled
    Delete { webhook: String },
    /// A new signing secret, printed once; the old one keeps signing for 24 h
    RotateSecret { webhook: String },
    /// A webhook's deliveries, newest event first
    Deliveries {
        webhook: String,
        /// Only these states: pending, delivering, succeeded, failed, dead, cancelled (comma-separated or repeated)
        #[arg(long, value_name = "STATE")]
        state: Vec<String>,
        /// Only deliveries created since then (RFC 3339, a date, yesterday, 2h, …)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One delivery: every attempt (time, status, latency, error, response) and its body
    Delivery { delivery: String },
    /// Send a delivery again (same webhook-id, a fresh retry schedule)
    Resend { delivery: String },
    /// Resend, as a background job, every failed or dead delivery since a time
    Recover {
        webhook: String,
        /// RFC 3339, a date, yesterday, 2h, …
        #[arg(long, value_name = "TIME")]
        since: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum EventTypeCmd {
    /// Every event type: name, version, status (emitted or reserved), description
    List,
    /// One event type, with the JSON Schema of its data
    Show {
        /// The type's name, e.g. artifact.created
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum EventCmd {
    /// Events after a cursor, oldest first (at most --limit)
    List {
        /// Events after this sequence number (0: from the oldest kept)
        #[arg(long, value_name = "SEQ", default_value_t = 0, allow_hyphen_values = true, value_parser = sequence)]
        after: u64,
        /// Only these types: exact names, families (artifact.*) or *; repeatable or comma-separated
        #[arg(long = "type", value_name = "PATTERN")]
        types: Vec<String>,
        /// Only events about something in this collection
        #[arg(long, short = 'c', value_name = "C")]
        collection: Option<String>,
        /// At most this many events (1-1000)
        #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Where to write: a new directory, or a file ending in .tar.zst (deterministic archive)
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// The whole namespace, deleted artifacts included (a snapshot)
    #[arg(long)]
    pub all: bool,
    /// Only this collection (repeatable)
    #[arg(long = "collection", short = 'c', value_name = "NAME")]
    pub collections: Vec<String>,
    /// Only this artifact id (repeatable)
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Only artifacts a full-text query matches (every match)
    #[arg(long)]
    pub query: Option<String>,
    /// Only artifacts with a revision written by this run
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Only artifacts from this source system (repeatable)
    #[arg(long = "source", value_name = "SYSTEM")]
    pub sources: Vec<String>,
    /// Only this lifecycle state (repeatable): draft, active, deprecated, archived
    #[arg(long = "lifecycle", value_name = "STATE")]
    pub lifecycles: Vec<String>,
    /// Only this classification (repeatable): public, internal, confidential, restricted
    #[arg(long = "classification", value_name = "LEVEL")]
    pub classifications: Vec<String>,
    /// Only artifacts last changed at or after (RFC 3339 or a date)
    #[arg(long)]
    pub since: Option<String>,
    /// Only artifacts last changed before (RFC 3339 or a date)
    #[arg(long)]
    pub until: Option<String>,
    /// Only current revisions (smaller; such a package cannot be imported)
    #[arg(long)]
    pub current_only: bool,
    /// Deleted and purged artifacts too (always with --all)
    #[arg(long)]
    pub include_deleted: bool,
    /// Enqueue it as a job: a worker writes --out (an absolute path on its machine)
    #[arg(long)]
    pub background: bool,
}

#[derive(Subcommand, Debug)]
pub enum PackageCmd {
    /// Check a package: complete (nothing missing or extra) and valid (every checksum, count and reference); exit 1 if not
    Validate {
        /// A bag directory or a .tar.zst / .tar archive
        package: PathBuf,
        #[command(flatten)]
        limits: UnpackArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct UnpackArgs {
    /// Refuse an archive that unpacks to more than this many bytes
    #[arg(long, default_value_t = 64 << 30, value_name = "BYTES")]
    pub max_unpacked_bytes: u64,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A bag directory or a .tar.zst / .tar archive
    pub package: PathBuf,
    /// What to do with records whose id the store already holds: fail (nothing is imported) or skip (keep the store's copy)
    #[arg(long, default_value = "fail", value_parser = ["fail", "skip"])]
    pub on_conflict: String,
    #[command(flatten)]
    pub limits: UnpackArgs,
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Jobs, newest first
    List {
        /// Only jobs in this state (queued, running, succeeded, failed, dead, cancelled, quarantined)
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this kind (ingest, reindex, repair, export, noop)
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One job: state, attempts with errors and timings, partial-failure report, runs
    Show { job: String },
    /// Queue a failed, dead or cancelled job again (with one more attempt allowed)
    Retry { job: String },
    /// Cancel a queued job, or ask a running one to stop at a safe point
    Cancel { job: String },
    /// Keep a job but never process it until released
    Quarantine { job: String },
    /// Queue a quarantined job again
    Release { job: String },
    /// Enqueue a job directly: KIND with a JSON payload (ingest, reindex, repair, export, noop)
    Enqueue {
        kind: String,
        /// The payload as JSON, or @FILE to read it from a file (default `{}`). ingest: {"paths":[ABSOLUTE…],"collection":C,"prune":bool}; reindex: {"collection":C}; repair: {}; export: {"scope":{"collections":[C],…},"out":ABSOLUTE.tar.zst}; noop: {"sleep_ms":N,"fail":"msg","permanent":bool}
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Attempts before the job is dead
        #[arg(long, value_parser = u32_in::<1, 1000>)]
        max_attempts: Option<u32>,
        /// Not before this instant (RFC 3339) or delay (e.g. 10m, 2h)
        #[arg(long, value_name = "WHEN")]
        run_at: Option<String>,
        /// While a job with this key waits, enqueueing returns it instead
        #[arg(long)]
        unique_key: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct RerunArgs {
    pub run: String,
    /// Wait for the new run to finish (runs a worker in this process if none is running)
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct ReindexArgs {
    /// Only this collection (default: everything)
    #[arg(long, short)]
    pub collection: Option<String>,
    /// Enqueue it as a job instead of running it here
    #[arg(long)]
    pub background: bool,
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    /// Enqueue it as a job instead of running it here
    #[arg(long)]
    pub background: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Jobs run at once
    #[arg(long, default_value_t = 2, value_parser = u64_in::<1, 64>)]
    pub threads: u64,
    /// Only these kinds (comma-separated; default: every kind this process can run)
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Seconds a claimed job is held without a heartbeat before another worker may rescue it
    #[arg(long, default_value_t = 60, value_parser = u64_in::<1, 86400>)]
    pub lease: u64,
    /// Stop when no job is due (instead of waiting for more)
    #[arg(long)]
    pub drain: bool,
    /// Keep finished jobs (succeeded, dead, cancelled) this many days, then prune them
    #[arg(long, default_value_t = 14, value_parser = u64_in::<1, 3650>)]
    pub job_retention_days: u64,
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCmd {
    /// Quarantine an artifact
    Set {
        artifact: String,
        /// Why (recorded with the quarantine and in the audit log)
        #[arg(long)]
        reason: String,
    },
    /// Release a quarantined artifact (it is searchable again)
    Release { artifact: String },
    /// Quarantined artifacts
    List,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PageArgs {
    /// Maximum number of items (1-1000)
    #[arg(long, default_value_t = 100, value_parser = u32_in::<1, 1000>)]
    pub limit: u32,
    /// Continue after this cursor (printed as `next` by the previous page)
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CollectionCmd {
    /// Create a collection
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List collections with their artifact counts
    List(PageArgs),
    /// Show one collection
    Show { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ArtifactCmd {
    /// Create or update an artifact from a file or stdin (a new revision when anything changed)
    Put(Box<PutArgs>),
    /// Show an artifact's current state (or print its content with --content)
    Show {
        /// COLLECTION/NAME or id
        artifact: String,
        /// Print the raw content to stdout instead
        #[arg(long)]
        content: bool,
        /// Show (or with --content, print) this revision instead of the current one
        #[arg(long, value_name = "N")]
        revision: Option<u64>,
        /// List the artifact's sections (markdown headings) and their selectors
        #[arg(long, conflicts_with = "content")]
        sections: bool,
        /// Follow relationships of this type (repeatable), e.g. references
        #[arg(long, value_name = "TYPE")]
        expand: Vec<String>,
        /// How many hops to follow with --expand (1-5)
        #[arg(long, default_value_t = 1)]
        depth: u32,
    },
    /// List artifacts
    List {
        /// Only artifacts of this collection
        #[arg(long, short)]
        collection: Option<String>,
        /// Include deleted and purged artifacts
        #[arg(long)]
        include_deleted: bool,
        /// Only artifacts whose current content has this digest (sha256:HEX)
        #[arg(long, value_name = "DIGEST")]
        digest: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revision history: every change record with old and new digest
    History {
        artifact: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Differences between two revisions [default: the last two]
    Diff {
        artifact: String,
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Delete (tombstone) an artifact; its history stays and its relations are deleted
    Delete {
        artifact: String,
        /// Fail unless the current revision is this one
        #[arg(long, value_name = "N")]
        expect_revision: Option<u64>,
    },
    /// Erase an artifact's content for good (all revisions); a tombstone and change record remain
    Purge {
        artifact: String,
        #[arg(long, value_name = "N")]
        expect_revision: Option<u64>,
        /// Confirm the erasure (required: it cannot be undone)
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// COLLECTION/NAME (a missing collection is created, as by ingest) or the id of an existing artifact
    pub artifact: String,
    /// Read content from this file (streamed)
    #[arg(long, short, value_name = "PATH", conflicts_with_all = ["stdin", "keep_content"])]
    pub file: Option<PathBuf>,
    /// Read content from stdin (streamed)
    #[arg(long, conflicts_with = "keep_content")]
    pub stdin: bool,
    /// Keep the current content; change attributes only
    #[arg(long)]
    pub keep_content: bool,
    /// Metadata entry KEY=VALUE (repeatable; string values). Replaces the whole metadata object
    #[arg(long = "meta", value_name = "KEY=VALUE", conflicts_with = "metadata")]
    pub meta: Vec<String>,
    /// Metadata as a JSON object, kept exactly as written. Replaces the whole metadata object
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// Artifact type (markdown, text, html, json, opaque, …) [default: from the name]
    #[arg(long = "type", value_name = "TYPE")]
    pub artifact_type: Option<String>,
    /// Media type [default: from the name]
    #[arg(long, value_name = "TYPE/SUBTYPE")]
    pub media_type: Option<String>,
    /// draft, active, deprecated or archived
    #[arg(long)]
    pub lifecycle: Option<String>,
    /// public, internal, confidential or restricted
    #[arg(long)]
    pub classification: Option<String>,
    /// The system the content came from
    #[arg(long, value_name = "NAME")]
    pub source_system: Option<String>,
    /// Fail with a conflict unless the current revision is N (optimistic concurrency)
    #[arg(long, value_name = "N", conflicts_with = "create_only")]
    pub expect_revision: Option<u64>,
    /// Fail if a live artifact with this name exists (a deleted one is restored).
    /// `--expect-revision 0` means the same
    #[arg(long)]
    pub create_only: bool,
    /// An artifact this one was derived from (repeatable)
    #[arg(long, value_name = "ARTIFACT")]
    pub derived_from: Vec<String>,
    /// The transformation that derived it
    #[arg(long, value_name = "NAME", requires = "derived_from")]
    pub transformation: Option<String>,
}

#[derive(Args, Debug)]
pub struct RelateArgs {
    /// The source artifact (COLLECTION/NAME or id)
    pub source: String,
    /// Relation type, e.g. references, depends-on, derived-from
    #[arg(value_name = "TYPE")]
    pub rel_type: String,
    /// The target artifact (COLLECTION/NAME or id)
    pub target: String,
    /// Properties as a JSON object
    #[arg(long, value_name = "JSON")]
    pub props: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RelationCmd {
    /// List relations (of one artifact, as source or target)
    List {
        #[arg(long)]
        artifact: Option<String>,
        #[arg(long = "type", value_name = "TYPE")]
        rel_type: Option<String>,
        #[arg(long)]
        include_deleted: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a relation's type or properties
    Update {
        id: String,
        #[arg(long = "type", value_name = "TYPE")]
        rel_type: Option<String>,
        #[arg(long, value_name = "JSON")]
        props: Option<String>,
        #[arg(long, value_name = "N")]
        expect_revision: Option<u64>,
    },
    /// Delete a relation
    Delete {
        id: String,
        #[arg(long, value_name = "N")]
        expect_revision: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// List audit records, oldest first
    List {
        /// Only records by this actor (KIND:NAME)
        #[arg(long = "by", value_name = "ACTOR")]
        by: Option<String>,
        /// Only this action (e.g. artifact.update) or family (artifact)
        #[arg(long)]
        action: Option<String>,
        /// Only records about this target id or name
        #[arg(long)]
        target: Option<String>,
        /// Only records at or after this time (RFC 3339, e.g. 2026-11-21T00:00:00Z, or a date)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only records before this time
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only records of one request (its correlation id, e.g. from X-Correlation-Id)
        #[arg(long, value_name = "ID")]
        correlation: Option<String>,
        /// Start after this sequence number
        #[arg(long, value_name = "SEQ", default_value_t = 0, allow_hyphen_values = true, value_parser = sequence)]
        after: u64,
        /// Maximum number of records (1-10000)
        #[arg(long, default_value_t = 100, value_parser = u32_in::<1, 10_000>)]
        limit: u32,
    },
    /// Verify the hash chain; prints the head to keep as SEQ:HASH
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A chain head recorded earlier (SEQ:HASH); detects a truncated tail
    #[arg(long, value_name = "SEQ:HASH")]
    pub expect_head: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// Schema version, pending migrations and what the store holds
    Status,
    /// Apply pending migrations
    Migrate,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Files and directories; names are paths relative to each given directory
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The collection to ingest into
    #[arg(long, short)]
    pub collection: String,
    /// Tombstone artifacts of the collection whose files are no longer there
    #[arg(long)]
    pub prune: bool,
    /// The system the files came from (recorded as provenance)
    #[arg(long, value_name = "NAME")]
    pub source_system: Option<String>,
    /// Enqueue the ingest as a job and print its id (a worker — `serve` or `worker` — runs it)
    #[arg(long)]
    pub background: bool,
    /// List every skipped file (by default: counts by reason)
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum RunCmd {
    /// Runs, newest first
    List {
        /// Only runs in this status (running, succeeded, partial, failed, interrupted)
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One run: input bundle, steps, manifest, diagnostics, audit chain head
    Show {
        /// A run id, or `latest` for the most recent run
        run: String,
        /// Also list every output artifact of the manifest
        #[arg(long)]
        outputs: bool,
    },
}

/// Filters shared by `search` and `context build`.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only this collection (repeatable: any of them)
    #[arg(long, short, value_name = "NAME")]
    pub collection: Vec<String>,
    /// Only this artifact type, e.g. markdown (repeatable)
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only this lifecycle state: draft, active, deprecated, archived (repeatable)
    #[arg(long, value_name = "STATE")]
    pub lifecycle: Vec<String>,
    /// Only artifacts whose metadata has KEY=VALUE (repeatable: all must match; KEY may be a.b)
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Only artifacts updated at or after this time (RFC 3339 or a date)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only artifacts updated before this time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// What to search for: any text, searched as words (questions welcome). With --syntax: words, "exact phrases", +required, -excluded, field:term (title, name, heading, body, meta), * for everything
    #[arg(allow_hyphen_values = true)]
    pub query: String,
    /// Read the query as query syntax (phrases, +required, -excluded, field:term) instead of plain text
    #[arg(long)]
    pub syntax: bool,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// One hit per section (markdown heading) instead of per artifact
    #[arg(long)]
    pub sections: bool,
    /// Maximum hits (1-100)
    #[arg(long, default_value_t = 10, value_parser = u32_in::<1, 100>)]
    pub limit: u32,
    /// Skip this many hits (use the `next_offset` of the previous page)
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    /// Follow relationships of this type from each hit (repeatable), e.g. references
    #[arg(long, value_name = "TYPE")]
    pub expand: Vec<String>,
    /// How many hops to follow with --expand (1-5) [default: 1 with --expand]
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub depth: u32,
}

#[derive(Subcommand, Debug)]
pub enum ContextCmd {
    /// Assemble a package from queries and selectors under a token budget
    Build(Box<ContextBuildArgs>),
    /// Show a package: its manifest, or rendered for a prompt with --format markdown
    Show {
        name: String,
        /// An older version [default: the latest]
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// table (summary), json (manifest) or markdown (the content, for a prompt)
        #[arg(long, default_value = "table", value_parser = ["table", "json", "markdown"])]
        format: String,
    },
    /// Check that nothing the package references has changed or gone missing
    Verify {
        name: String,
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// Packages, with their latest version
    List(PageArgs),
}

#[derive(Args, Debug)]
pub struct ContextBuildArgs {
    /// The package name (a new version is stored if the result differs from the latest)
    #[arg(long)]
    pub name: String,
    /// A search query, any text searched as words (repeatable; their best hits are interleaved)
    #[arg(long, value_name = "QUERY", allow_hyphen_values = true)]
    pub query: Vec<String>,
    /// Read the queries as query syntax (phrases, +required, -excluded, field:term) instead of plain text
    #[arg(long)]
    pub syntax: bool,
    /// An artifact or section to include first: COLLECTION/NAME[#SECTION] (repeatable)
    #[arg(long = "select", value_name = "REF")]
    pub select: Vec<String>,
    /// Token budget for the package's items
    #[arg(long, value_name = "TOKENS")]
    pub budget: u32,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Also include artifacts related by this type (repeatable)
    #[arg(long, value_name = "TYPE")]
    pub expand: Vec<String>,
    /// Hops to follow with --expand (1-5) [default: 1 with --expand]
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub depth: u32,
    /// An opaque reference to an external memory record, as JSON with "source" and "id" (repeatable)
    #[arg(long = "memory-ref", value_name = "JSON")]
    pub memory_ref: Vec<String>,
    /// Token encoding: cl100k_base or o200k_base
    #[arg(long, default_value = "cl100k_base")]
    pub encoding: String,
}

#[derive(Subcommand, Debug)]
pub enum IndexCmd {
    /// Documents in the index vs the store, lag, last commit, size, health
    Status,
    /// Drop the index and build it again from the store
    Rebuild,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT — an IP or a host name such as localhost (loopback only until API keys exist)
    #[arg(long, default_value = "127.0.0.1:7700", value_name = "HOST:PORT", value_parser = parse_bind)]
    pub bind: std::net::SocketAddr,
    /// Largest request body in MiB (artifact uploads included)
    #[arg(long, default_value_t = 64, value_parser = u64_in::<1, 4096>)]
    pub max_body_mb: u64,
    /// Job worker threads run by the server (0: only re-index and repair jobs, which need the search index this server owns; run `kontextual worker` for the rest)
    #[arg(long, default_value_t = 2, value_parser = u64_in::<0, 64>)]
    pub workers: u64,
    /// Keep finished jobs this many days, then prune them (with --workers > 0)
    #[arg(long, default_value_t = 14, value_parser = u64_in::<1, 3650>)]
    pub job_retention_days: u64,
    /// Requests per second each API key may make (bursts up to twice that); 429 beyond
    #[arg(long, default_value_t = 100, value_parser = u32_in::<1, 1_000_000>)]
    pub rate_limit: u32,
    /// Seconds before a request is answered 408
    #[arg(long, default_value_t = 30, value_parser = u64_in::<1, 3600>)]
    pub request_timeout: u64,
    /// Seconds a client has to send a request's headers; also how long an idle kept-alive connection stays open
    #[arg(long, default_value_t = 10, value_parser = u64_in::<1, 3600>)]
    pub header_timeout: u64,
    /// Open connections at most; beyond, new connections are closed at once (and a warning is logged)
    #[arg(long, default_value_t = 4096, value_parser = u64_in::<1, 1_000_000>)]
    pub max_connections: u64,
    /// Uploads over 1 MiB (or of unknown length) read at once; more wait their turn. Each streams to a spool file, so this bounds the server's memory for bodies
    #[arg(long, default_value_t = 4, value_parser = u64_in::<1, 1024>)]
    pub max_large_uploads: u64,
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create a key; its token is printed once and only its hash is kept
    Create {
        /// A name to recognise it by
        #[arg(long)]
        name: String,
        /// The actor requests with this key act as: user|agent|application|service:NAME
        /// (the global --actor is who creates it, recorded in the audit log)
        #[arg(long = "for", id = "key_actor", value_name = "ACTOR")]
        key_actor: String,
        /// Comma-separated: read, write, admin, export
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Expiry: RFC 3339 time or a date
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
    },
    /// Keys of the namespace (never their secrets)
    List(PageArgs),
    /// Revoke a key by its id; requests with it are refused at once
    Revoke { id: String },
}

#[derive(Args, Debug)]
pub struct GrantArgs {
    /// The actor who gets (or loses) the permission: user|agent|application|service:NAME
    // its own id: an argument named `actor` would be the global --actor
    // (who acts, recorded in the audit log) and overwrite it
    #[arg(id = "grantee", value_name = "ACTOR")]
    pub grantee: Option<String>,
    /// read, write (includes read), admin (includes write) or export
    pub permission: Option<String>,
    /// Only this collection (and its artifacts) [default: the whole namespace]
    #[arg(long, short, conflicts_with = "artifact")]
    pub collection: Option<String>,
    /// Only this artifact (COLLECTION/NAME)
    #[arg(long)]
    pub artifact: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum HoldCmd {
    /// Put an artifact under legal hold
    Set {
        artifact: String,
        /// Why (recorded in the hold and the audit log)
        #[arg(long)]
        reason: String,
    },
    /// Release an artifact's hold
    Release { artifact: String },
    /// Active holds
    List,
}

#[derive(Subcommand, Debug)]
pub enum ClearanceCmd {
    /// Set an actor's clearance: public, internal, confidential or restricted
    Set {
        /// Whose clearance (KIND:NAME); the global --actor is who sets it
        #[arg(id = "subject", value_name = "ACTOR")]
        subject: String,
        level: String,
    },
    /// Clearances set in the namespace
    List,
}

#[derive(Subcommand, Debug)]
pub enum AccessCmd {
    /// Reads, oldest first
    List {
        /// Only reads by this actor (KIND:NAME)
        #[arg(long = "by", value_name = "ACTOR")]
        by: Option<String>,
        /// Only reads at or after this time (RFC 3339 or a date)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Start after this sequence number
        #[arg(long, value_name = "SEQ", default_value_t = 0, allow_hyphen_values = true, value_parser = sequence)]
        after: u64,
        /// Maximum entries (1-10000)
        #[arg(long, default_value_t = 100, value_parser = u32_in::<1, 10_000>)]
        limit: u32,
    },
}

/// `HOST:PORT` with an IP address or a host name (resolved; the first
/// address wins).
fn parse_bind(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let hint = "use HOST:PORT, e.g. 127.0.0.1:7700 or localhost:7700";
    if !s.contains(':') {
        return Err(format!("{s:?} has no port: {hint}"));
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address: {hint}")),
        Err(e) => Err(format!("cannot resolve {s:?} ({e}): {hint}")),
    }
}

/// A whole number in `LO..=HI`, with an error in plain words ("use 1 to
/// 1000"), not Rust's range syntax.
fn number_in(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let with_sep = |n: u64| {
        let d = n.to_string();
        let mut out = String::new();
        for (i, c) in d.chars().enumerate() {
            if i > 0 && (d.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    let range = format!("use {} to {}", with_sep(lo), with_sep(hi));
    match s.trim().parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(_) => Err(format!("{s} is out of range: {range}")),
        Err(_) => Err(format!("{s:?} is not a whole number: {range}")),
    }
}

pub(crate) fn u32_in<const LO: u32, const HI: u32>(s: &str) -> Result<u32, String> {
    number_in(s, u64::from(LO), u64::from(HI)).map(|n| n as u32)
}

pub(crate) fn u64_in<const LO: u64, const HI: u64>(s: &str) -> Result<u64, String> {
    number_in(s, LO, HI)
}

/// A position in a sequence (events, audit records): 0 (before the first)
/// or more, as the HTTP API takes it (a cursor past the last is an empty
/// page). Negative numbers reach the parser (`allow_hyphen_values`) so they
/// get this message, not "unexpected argument '-1'".
pub(crate) fn sequence(s: &str) -> Result<u64, String> {
    number_in(s, 0, u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// X5: one CLI grammar — a short flag means the same long option on
    /// every command, and an option that has a short form somewhere has it
    /// everywhere.
    #[test]
    fn x5_short_flags_mean_the_same_everywhere() {
        use std::collections::BTreeMap;
        fn walk(
            cmd: &clap::Command,
            path: &str,
            by_short: &mut BTreeMap<char, BTreeMap<String, Vec<String>>>,
            by_long: &mut BTreeMap<String, BTreeMap<Option<char>, Vec<String>>>,
        ) {
            for a in cmd.get_arguments() {
                let Some(long) = a.get_long() else { continue };
                if let Some(c) = a.get_short() {
                    by_short
                        .entry(c)
                        .or_default()
                        .entry(long.to_owned())
                        .or_default()
                        .push(path.to_owned());
                }
                by_long
                    .entry(long.to_owned())
                    .or_default()
                    .entry(a.get_short())
                    .or_default()
                    .push(path.to_owned());
            }
            for sub in cmd.get_subcommands() {
                walk(
                    sub,
                    &format!("{path} {}", sub.get_name()),
                    by_short,
                    by_long,
                );
            }
        }
        let (mut by_short, mut by_long) = (BTreeMap::new(), BTreeMap::new());
        walk(&Cli::command(), "kontextual", &mut by_short, &mut by_long);
        for (c, longs) in &by_short {
            assert_eq!(longs.len(), 1, "-{c} means different options: {longs:?}");
        }
        for (long, shorts) in &by_long {
            if shorts.keys().any(Option::is_some) {
                assert_eq!(
                    shorts.len(),
                    1,
                    "--{long} has a short form on some commands only: {shorts:?}"
                );
            }
        }
    }

    /// X5: the global options are under their own heading in every
    /// command's help, not interleaved with the command's own.
    #[test]
    fn x5_global_options_have_their_own_heading() {
        let mut cmd = Cli::command();
        cmd.build();
        let search = cmd.find_subcommand_mut("search").unwrap();
        let help = search.render_help().to_string();
        let global = help.find("Global options:").expect(&help);
        assert!(help[global..].contains("--data-dir"), "{help}");
        assert!(!help[..global].contains("--data-dir"), "{help}");
        assert!(help[..global].contains("--limit"), "{help}");
    }

    /// X5: `--bind` takes host names.
    #[test]
    fn x5_bind_takes_host_names() {
        assert!(parse_bind("localhost:7701").unwrap().ip().is_loopback());
        assert_eq!(parse_bind("127.0.0.1:7700").unwrap().port(), 7700);
        assert!(parse_bind("localhost").unwrap_err().contains("no port"));
    }

    /// X5: a number out of range says the range in words.
    #[test]
    fn x5_ranges_are_explained_in_words() {
        assert_eq!(
            u32_in::<1, 1000>("0").unwrap_err(),
            "0 is out of range: use 1 to 1,000"
        );
        assert!(
            u32_in::<1, 100>("ten")
                .unwrap_err()
                .contains("not a whole number: use 1 to 100")
        );
        assert_eq!(u64_in::<0, 64>("64"), Ok(64));
    }

    /// X3 (regression): no subcommand argument shares its id with a global
    /// option — clap would store both in one slot, and `grant agent:zz …`
    /// once overwrote `--actor` (who acts, and who the audit log names).
    #[test]
    fn x3_no_argument_shadows_a_global_option() {
        let root = Cli::command();
        let globals: Vec<String> = root
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(globals.contains(&"actor".to_owned()), "{globals:?}");
        fn walk(cmd: &clap::Command, globals: &[String], path: &str, bad: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let here = format!("{path} {}", sub.get_name());
                for a in sub.get_arguments() {
                    if !a.is_global_set() && globals.contains(&a.get_id().to_string()) {
                        bad.push(format!("{here}: {}", a.get_id()));
                    }
                }
                walk(sub, globals, &here, bad);
            }
        }
        let mut bad = Vec::new();
        walk(&root, &globals, "kontextual", &mut bad);
        assert!(
            bad.is_empty(),
            "arguments shadowing global options: {bad:?}"
        );
    }

    /// A negative or oversized sequence number is refused with the range,
    /// not clap's "unexpected argument '-1'".
    #[test]
    fn o5_sequence_numbers_name_their_range() {
        for args in [
            ["kontextual", "event", "list", "--after", "-1"],
            ["kontextual", "audit", "list", "--after", "-1"],
            ["kontextual", "access", "list", "--after", "-1"],
            [
                "kontextual",
                "event",
                "list",
                "--after",
                "18446744073709551616",
            ],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(
                e.contains("use 0 to 18,446,744,073,709,551,615"),
                "{args:?}: {e}"
            );
        }
        let ok = Cli::try_parse_from([
            "kontextual",
            "event",
            "list",
            "--after",
            "18446744073709551615",
        ]);
        assert!(ok.is_ok(), "{ok:?}");
    }
}
