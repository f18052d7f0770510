//! Store write benchmark, run side by side with its floor in one process.
//!
//! Writes N artifacts of 1–50 KB through Kontextual (artifact + revision +
//! blob + audit record + outbox event, durable group commit) and, in the same
//! run, inserts the same bytes with plain rusqlite in one transaction (the
//! floor). Both read their input files from disk inside the timed region.
//! Reports docs/s, MB/s and the ratio to the floor. Not a test: no timing is
//! asserted anywhere.
//!
//! Usage: cargo run --release -p kontextual-bench -- [--n 20000] [--writers 8] [--runs 3]
//!        cargo run --release -p kontextual-bench -- --only retrieval --n 20000 --runs 3
//!        cargo run --release -p kontextual-bench -- --only http --n 20000   (needs `cargo install oha`)
//!        cargo run --release -p kontextual-bench -- --only jobs --n 50000 --runs 3
//!        cargo run --release -p kontextual-bench -- --only export --n 20000 --runs 3
//!        cargo run --release -p kontextual-bench -- --only webhooks --n 2000 --runs 3
//!        cargo run --release -p kontextual-bench -- --only postgres --n 3000 --runs 1
//!        cargo run --release -p kontextual-bench -- --only corpus --n 20000 --out DIR   (the retrieval corpus, to profile `kontextual ingest DIR`)
//!        cargo run --release -p kontextual-bench -- --only tree --dir DIR   (a real tree until searchable, beside its rusqlite and tantivy floors)
//!        cargo run --release -p kontextual-bench -- --only quality [--verbose]   (needs `pip install bm25s PyStemmer` for the reference)

mod export;
mod http;
mod jobs;
mod postgres;
mod quality;
mod retrieval;
mod tree;
mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kontextual_app::{Caller, ContentSource, PutRequest, Services, StoreConfig, StoreOpenMode};
use kontextual_model::{
    Actor, ArtifactName, ArtifactRef, CollectionName, CorrelationId, Namespace,
};
use kontextual_store::sqlite::{OpenMode, OpenOptions, SqliteBackend};
use kontextual_store::{Content, KnowledgeOp, Op, PutArtifact, Store, WriteBatch, WriteContext};

struct Args {
    runs: usize,
    only: Option<String>,
    n: usize,
    writers: usize,
    batch: usize,
    verbose: bool,
    /// Where `--only corpus` writes the retrieval corpus.
    out: Option<PathBuf>,
    /// The tree `--only tree` ingests.
    dir: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        runs: 3,
        only: None,
        n: 20_000,
        writers: 8,
        batch: 256,
        verbose: false,
        out: None,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || -> Result<usize> { Ok(it.next().context("missing value")?.parse()?) };
        match flag.as_str() {
            "--n" => a.n = val()?,
            "--writers" => a.writers = val()?.max(1),
            "--batch" => a.batch = val()?.max(1),
            "--only" => a.only = it.next(),
            "--runs" => a.runs = val()?.max(1),
            "--verbose" => a.verbose = true,
            "--out" => a.out = it.next().map(PathBuf::from),
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "--bench" => {} // passed by `cargo bench`
            other => bail!(
                "unknown flag {other}; use --n, --writers, --batch, --runs, --verbose, --out, --only floor|concurrent|batched|ingest|retrieval|http|jobs|export|postgres|quality|corpus"
            ),
        }
    }
    Ok(a)
}

/// Deterministic corpus: sizes 1–50 KB, text-like bytes.
fn make_corpus(dir: &Path, n: usize) -> Result<(Vec<PathBuf>, u64)> {
    std::fs::create_dir_all(dir)?;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words = [
        "agent ",
        "context ",
        "store ",
        "revision ",
        "audit ",
        "chain ",
        "blob ",
        "query ",
        "\n",
    ];
    let mut files = Vec::with_capacity(n);
    let mut total = 0u64;
    for i in 0..n {
        let size = 1024 + (next() % (49 * 1024)) as usize;
        let mut body = format!("# doc {i}\n").into_bytes();
        while body.len() < size {
            body.extend_from_slice(words[(next() % words.len() as u64) as usize].as_bytes());
        }
        body.truncate(size);
        let p = dir.join(format!("doc{i:06}.md"));
        std::fs::write(&p, &body)?;
        total += body.len() as u64;
        files.push(p);
    }
    Ok((files, total))
}

fn floor(dir: &Path, files: &[PathBuf]) -> Result<Duration> {
    let conn = rusqlite::Connection::open(dir.join("floor.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         PRAGMA wal_autocheckpoint = 0; -- the floor never pays a checkpoint in its timed region
         CREATE TABLE docs (name TEXT PRIMARY KEY, content BLOB NOT NULL);",
    )?;
    let start = Instant::now();
    conn.execute_batch("BEGIN")?;
    {
        let mut stmt = conn.prepare("INSERT INTO docs (name, content) VALUES (?1, ?2)")?;
        for f in files {
            let bytes = std::fs::read(f)?;
            stmt.execute(rusqlite::params![
                f.file_name().and_then(|s| s.to_str()),
                bytes
            ])?;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(start.elapsed())
}

/// Many concurrent callers, one put per call: the group commit path (server, agents).
fn kontextual_concurrent(dir: &Path, files: &[PathBuf], writers: usize) -> Result<Duration> {
    let cfg = StoreConfig {
        data_dir: dir.join("concurrent"),
        busy_timeout: Duration::from_secs(30),
    };
    let svc = Services::open(&cfg, StoreOpenMode::Create)?;
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    svc.collection_create(&caller, "bench", "")?;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { return Ok(()) };
                        let name = f.file_name().and_then(|n| n.to_str()).context("name")?;
                        let target = ArtifactRef::Name {
                            collection: CollectionName::new("bench")?,
                            name: ArtifactName::new(name)?,
                            section: None,
                        };
                        svc.artifact_put(
                            &caller,
                            PutRequest::new(target, ContentSource::File(f.clone())),
                        )?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        Ok(())
    })?;
    let elapsed = start.elapsed();
    check(&svc, &caller, files.len())?;
    Ok(elapsed)
}

/// `Services::ingest` of the corpus directory: scan, read, detect, write,
/// run records — the whole `kontextual ingest` path without the CLI.
fn kontextual_ingest(
    dir: &Path,
    corpus: &Path,
    n: usize,
) -> Result<(Duration, kontextual_app::IngestReport)> {
    let cfg = StoreConfig {
        data_dir: dir.join("ingest"),
        busy_timeout: Duration::from_secs(30),
    };
    let svc = Services::open(&cfg, StoreOpenMode::Create)?;
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    let req = kontextual_app::IngestRequest {
        paths: vec![corpus.to_path_buf()],
        collection: "bench".to_owned(),
        prune: false,
        source_system: None,
    };
    let start = Instant::now();
    let report = svc.ingest(&caller, &req, &kontextual_app::NoProgress)?;
    let elapsed = start.elapsed();
    if report.new != n as u64 || report.failed != 0 {
        bail!("ingest stored {} new, {} failed", report.new, report.failed);
    }
    Ok((elapsed, report))
}

/// One caller writing atomic batches (the ingest path).
fn kontextual_batched(dir: &Path, files: &[PathBuf], batch: usize) -> Result<Duration> {
    let store = Store::new(SqliteBackend::open_dir(
        &dir.join("batched"),
        &OpenOptions::new(OpenMode::Create),
    )?);
    let ctx = WriteContext {
        namespace: Namespace::default(),
        actor: Actor::local_admin(),
        correlation_id: CorrelationId::new(),
        run_id: None,
    };
    let coll = CollectionName::new("bench")?;
    store.write(WriteBatch {
        ctx: ctx.clone(),
        ops: vec![Op::Knowledge(KnowledgeOp::CreateCollection {
            name: coll.clone(),
            description: String::new(),
            if_absent: false,
        })],
    })?;
    let start = Instant::now();
    for chunk in files.chunks(batch) {
        let mut ops = Vec::with_capacity(chunk.len());
        for f in chunk {
            let name = f.file_name().and_then(|n| n.to_str()).context("name")?;
            let file = std::fs::File::open(f)?;
            ops.push(Op::Knowledge(KnowledgeOp::PutArtifact(PutArtifact::new(
                coll.clone(),
                ArtifactName::new(name)?,
                Content::Reader(Box::new(file)),
            ))));
        }
        store.write(WriteBatch {
            ctx: ctx.clone(),
            ops,
        })?;
    }
    let elapsed = start.elapsed();
    let status = store.status()?;
    if status.artifacts_live != files.len() as u64 || status.audit_records != files.len() as u64 + 1
    {
        bail!(
            "batched run stored {} artifacts / {} audit records",
            status.artifacts_live,
            status.audit_records
        );
    }
    Ok(elapsed)
}

fn check(svc: &Services, caller: &Caller, n: usize) -> Result<()> {
    let status = svc.status(caller)?;
    if status.artifacts_live != n as u64 || status.outbox_events != n as u64 + 1 {
        bail!(
            "stored {} artifacts and {} events, expected {n}",
            status.artifacts_live,
            status.outbox_events
        );
    }
    Ok(())
}

/// Writes back all dirty pages (`sync`), reads the corpus once so every side
/// starts with it equally warm in the page cache, and lets the disk settle.
/// Not timed.
pub(crate) fn settle(files: &[PathBuf]) {
    let _ = std::process::Command::new("sync").status();
    for f in files {
        let _ = std::fs::read(f);
    }
    std::thread::sleep(Duration::from_millis(200));
}

fn main() -> Result<()> {
    let a = args()?;
    if a.only.as_deref() == Some("quality") {
        return quality::run(a.verbose);
    }
    if a.only.as_deref() == Some("corpus") {
        // the retrieval benchmark's corpus, for profiling `kontextual ingest` on it
        let out = a.out.context("--only corpus needs --out DIR")?;
        let files = retrieval::generate(&out, a.n)?;
        eprintln!("wrote {} files under {}", files.len(), out.display());
        return Ok(());
    }
    if a.only.as_deref() == Some("retrieval") {
        return retrieval::run(a.n, a.runs);
    }
    if a.only.as_deref() == Some("tree") {
        let dir = a.dir.context("--only tree needs --dir DIR")?;
        return tree::run(&dir);
    }
    if a.only.as_deref() == Some("http") {
        return http::run(a.n, 10);
    }
    if a.only.as_deref() == Some("postgres") {
        return postgres::run(a.n, a.runs);
    }
    if a.only.as_deref() == Some("export") {
        return export::run(a.n, a.runs);
    }
    if a.only.as_deref() == Some("jobs") {
        return jobs::run(a.n, a.runs);
    }
    if a.only.as_deref() == Some("webhooks") {
        return webhooks::run(a.n, a.runs);
    }
    let tmp = tempfile::tempdir()?;
    eprintln!("generating {} files of 1–50 KB…", a.n);
    let (files, total) = make_corpus(&tmp.path().join("corpus"), a.n)?;
    let mb = total as f64 / 1e6;
    let run = |what: &str| a.only.as_deref().is_none_or(|o| o == what);
    let zero = Duration::from_nanos(1);
    let (mut fs, mut cs, mut bs, mut is) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last_ingest = None;
    // Interleaved rounds, each into fresh stores, so disk and cache drift hit every side alike.
    for round in 0..a.runs {
        let dir = tmp.path().join(format!("round{round}"));
        std::fs::create_dir_all(&dir)?;
        eprintln!(
            "round {}/{}: floor, {} concurrent writers, batches of {}…",
            round + 1,
            a.runs,
            a.writers,
            a.batch
        );
        // Each round rotates which side goes first: a disk that has just
        // absorbed gigabytes writes slower, and no side should always pay that.
        for side in 0..4 {
            settle(&files);
            match (side + round) % 4 {
                3 => {
                    if run("ingest") {
                        let (d, r) =
                            kontextual_ingest(&dir, &tmp.path().join("corpus"), files.len())?;
                        is.push(d);
                        last_ingest = Some(r);
                    } else {
                        is.push(zero);
                    }
                }
                0 => fs.push(if run("floor") {
                    floor(&dir, &files)?
                } else {
                    zero
                }),
                1 => cs.push(if run("concurrent") {
                    kontextual_concurrent(&dir, &files, a.writers)?
                } else {
                    zero
                }),
                _ => bs.push(if run("batched") {
                    kontextual_batched(&dir, &files, a.batch)?
                } else {
                    zero
                }),
            }
        }
        std::fs::remove_dir_all(&dir)?;
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (f, c, b, i) = (
        median(&mut fs),
        median(&mut cs),
        median(&mut bs),
        median(&mut is),
    );
    let row = |label: &str, d: Duration| {
        let s = d.as_secs_f64();
        println!(
            "| {label} | {:.2} | {:.0} | {:.1} | {:.2}× |",
            s,
            a.n as f64 / s,
            mb / s,
            f.as_secs_f64() / s
        );
    };
    println!(
        "\n{} artifacts, {:.1} MB, synchronous=FULL, WAL; median of {} interleaved rounds\n",
        a.n, mb, a.runs
    );
    println!("| writer | seconds | docs/s | MB/s | vs floor |");
    println!("|---|---|---|---|---|");
    row("floor: plain rusqlite, 1 transaction", f);
    row(
        &format!(
            "kontextual: {} concurrent callers, 1 put each (group commit)",
            a.writers
        ),
        c,
    );
    row(
        &format!("kontextual: 1 caller, atomic batches of {}", a.batch),
        b,
    );
    row(
        "kontextual ingest (scan, read, detect, write, run records)",
        i,
    );
    if let Some(r) = last_ingest {
        println!(
            "\ningest time (last round): scan {} ms, read + detect {} ms, store (hash, rows, audit, outbox, commit) {} ms, total {} ms",
            r.scan_ms, r.read_parse_ms, r.store_ms, r.elapsed_ms
        );
    }
    Ok(())
}
