//! PostgreSQL rows (issue 8): the job queue on PostgreSQL with 1, 2 and 4
//! workers side by side with procrastinate (PyPI, a PostgreSQL-backed
//! queue people use today) draining the same number of no-op jobs on the
//! same server; and ingest of one corpus into PostgreSQL and into SQLite.
//!
//!     cargo run --release -p kontextual-bench -- --only postgres --n 3000 --runs 1
//!
//! Needs `KX_BENCH_DATABASE_URL` (default `postgres://postgres@127.0.0.1/postgres`,
//! used to create and drop one database per measurement) and, for the peer,
//! `pip install procrastinate psycopg[binary]`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kontextual_app::{Caller, EnqueueOptions, Services, StoreConfig, StoreOpenMode, WorkerConfig};
use kontextual_model::{Actor, Namespace};

pub(crate) struct Db {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl Db {
    pub(crate) fn new(admin: &str, tag: &str) -> Result<Db> {
        let name = format!("kx_bench_{tag}_{}", std::process::id());
        psql(
            admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        // the same server and options (`?sslmode=…`), another database
        let (path, query) = admin
            .split_once('?')
            .map_or((admin, None), |(p, q)| (p, Some(q)));
        let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
        let url = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Ok(Db {
            admin: admin.to_owned(),
            url,
            name,
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args(["-q", "-d", url, "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Our queue on PostgreSQL: enqueue (untimed), then drain with `threads` workers.
fn ours(admin: &str, n: usize, threads: usize) -> Result<f64> {
    let db = Db::new(admin, "ours")?;
    let tmp = tempfile::tempdir()?;
    let svc = Services::open_postgres(&db.url, tmp.path(), true, Duration::from_secs(30))?;
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    let mut left = n;
    while left > 0 {
        let k = left.min(5_000);
        svc.job_enqueue_many(
            &caller,
            "noop",
            vec![serde_json::json!({}); k],
            EnqueueOptions::default(),
        )?;
        left -= k;
    }
    let cfg = WorkerConfig {
        threads,
        max_prefetch: 64,
        drain: true,
        idle_poll: Duration::from_millis(250),
        housekeeping_every: Duration::from_secs(3600),
        ..Default::default()
    };
    let t = Instant::now();
    let summary = svc.run_workers(&cfg, Arc::new(AtomicBool::new(false)))?;
    let secs = t.elapsed().as_secs_f64();
    if summary.succeeded != n as u64 {
        bail!("drained {} of {n} jobs", summary.succeeded);
    }
    Ok(secs)
}

fn peer(admin: &str, n: usize, concurrency: usize) -> Result<Option<f64>> {
    let available = Command::new("python3")
        .args(["-c", "import procrastinate, psycopg"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!(
            "  procrastinate not installed (pip install procrastinate psycopg[binary]): skipping the peer"
        );
        return Ok(None);
    }
    let db = Db::new(admin, "peer")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/procrastinate_peer.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&db.url)
        .arg(n.to_string())
        .arg(concurrency.to_string())
        .output()
        .context("running bench/procrastinate_peer.py")?;
    if !out.status.success() {
        bail!("procrastinate: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["seconds"].as_f64())
}

/// Ingest of the retrieval corpus into PostgreSQL and into SQLite (store +
/// index until searchable).
fn ingest(admin: &str, corpus: &Path, n: usize) -> Result<(f64, f64)> {
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    let req = kontextual_app::IngestRequest {
        paths: vec![corpus.to_owned()],
        collection: "bench".to_owned(),
        prune: false,
        source_system: None,
    };
    let db = Db::new(admin, "ingest")?;
    let tmp = tempfile::tempdir()?;
    crate::settle(&[]);
    let t = Instant::now();
    let svc = Services::open_postgres(
        &db.url,
        &tmp.path().join("pg"),
        true,
        Duration::from_secs(30),
    )?;
    let r = svc.ingest_and_index(&caller, &req, &kontextual_app::NoProgress)?;
    let pg = t.elapsed().as_secs_f64();
    if r.new != n as u64 {
        bail!("PostgreSQL ingest stored {} of {n}", r.new);
    }
    drop(svc);
    let t = Instant::now();
    let svc = Services::open(
        &StoreConfig {
            data_dir: tmp.path().join("lite"),
            busy_timeout: Duration::from_secs(30),
        },
        StoreOpenMode::Create,
    )?;
    let r = svc.ingest_and_index(&caller, &req, &kontextual_app::NoProgress)?;
    let lite = t.elapsed().as_secs_f64();
    if r.new != n as u64 {
        bail!("SQLite ingest stored {} of {n}", r.new);
    }
    Ok((pg, lite))
}

pub fn run(n: usize, runs: usize) -> Result<()> {
    let admin = std::env::var("KX_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/postgres".to_owned());
    println!("\n### Job queue on PostgreSQL: drain {n} no-op jobs, median of {runs}\n");
    println!("| workers | kontextual jobs/s | procrastinate jobs/s | ratio |");
    println!("|---|---|---|---|");
    for threads in [1, 2, 4] {
        let (mut o, mut p) = (Vec::new(), Vec::new());
        for _ in 0..runs.max(1) {
            o.push(ours(&admin, n, threads)?);
            if let Some(s) = peer(&admin, n, threads)? {
                p.push(s);
            }
        }
        let ours_rate = n as f64 / median(&mut o);
        if p.is_empty() {
            println!("| {threads} | {ours_rate:.0} | (not run) | |");
        } else {
            let peer_rate = n as f64 / median(&mut p);
            println!(
                "| {threads} | {ours_rate:.0} | {peer_rate:.0} | {:.1}× |",
                ours_rate / peer_rate
            );
        }
    }
    let tmp = tempfile::tempdir()?;
    let docs = (n / 2).max(1000);
    crate::retrieval::generate(&tmp.path().join("corpus"), docs)?;
    let (pg, lite) = ingest(&admin, &tmp.path().join("corpus"), docs)?;
    println!("\n### Ingest until searchable: {docs} markdown files\n");
    println!("| store | seconds | docs/s |");
    println!("|---|---|---|");
    println!("| PostgreSQL | {pg:.2} | {:.0} |", docs as f64 / pg);
    println!("| SQLite | {lite:.2} | {:.0} |", docs as f64 / lite);
    Ok(())
}
