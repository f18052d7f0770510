//! Job-queue benchmark (issue 6), side by side with its floor in one run.
//!
//! **Throughput.** N no-op jobs are enqueued (untimed), then 1, 2 or 4
//! worker threads drain them through the real worker (`run_workers`, with
//! leases, attempt records, fenced completions); jobs/s = N / time to
//! drain. The floor: plain rusqlite on the same kind of table, the same
//! number of threads, each looping `BEGIN IMMEDIATE; UPDATE … RETURNING`
//! (claim a batch) `COMMIT; BEGIN IMMEDIATE; UPDATE` (complete each)
//! `COMMIT` with the same batch size and the same durability
//! (`synchronous = FULL`, WAL) and no queue logic.
//!
//! **Latency.** With workers running, a producer enqueues jobs at a fixed
//! rate for a few seconds; queue latency = attempt start − enqueue time,
//! read back from the store, p50/p99.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kontextual_app::{Caller, EnqueueOptions, Services, StoreConfig, StoreOpenMode, WorkerConfig};
use kontextual_model::{Actor, Namespace};

const BATCH: u32 = 64;

fn open(dir: &Path) -> Result<Services> {
    Ok(Services::open(
        &StoreConfig {
            data_dir: dir.to_path_buf(),
            busy_timeout: Duration::from_secs(30),
        },
        StoreOpenMode::Create,
    )?)
}

fn enqueue(svc: &Services, caller: &Caller, n: usize) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let k = left.min(5_000);
        svc.job_enqueue_many(
            caller,
            "noop",
            vec![serde_json::json!({}); k],
            EnqueueOptions::default(),
        )?;
        left -= k;
    }
    Ok(())
}

fn worker_cfg(threads: usize, drain: bool) -> WorkerConfig {
    WorkerConfig {
        threads,
        max_prefetch: BATCH,
        drain,
        idle_poll: Duration::from_millis(250),
        housekeeping_every: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// Drains `n` queued no-op jobs; returns seconds.
fn ours(n: usize, threads: usize) -> Result<f64> {
    let tmp = tempfile::tempdir()?;
    let svc = open(&tmp.path().join("data"))?;
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    enqueue(&svc, &caller, n)?;
    sync();
    let t = Instant::now();
    let summary = svc.run_workers(&worker_cfg(threads, true), Arc::new(AtomicBool::new(false)))?;
    let secs = t.elapsed().as_secs_f64();
    if summary.succeeded != n as u64 {
        bail!("drained {} of {n} jobs ({summary:?})", summary.succeeded);
    }
    Ok(secs)
}

/// The floor: the same claim and complete statements, no queue logic.
fn floor(n: usize, threads: usize) -> Result<f64> {
    let tmp = tempfile::tempdir()?;
    let db = tmp.path().join("floor.db");
    {
        let c = rusqlite::Connection::open(&db)?;
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL, run_at INTEGER NOT NULL,
               worker TEXT, attempt INTEGER NOT NULL DEFAULT 0, payload TEXT NOT NULL);
             CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state = 'queued';",
        )?;
        let tx = c.unchecked_transaction()?;
        {
            let mut ins = tx
                .prepare("INSERT INTO jobs (state, run_at, payload) VALUES ('queued', ?1, '{}')")?;
            for i in 0..n {
                ins.execute([i as i64])?;
            }
        }
        tx.commit()?;
    }
    sync();
    let done = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..threads {
            let (db, done) = (&db, &done);
            s.spawn(move || -> Result<()> {
                let c = rusqlite::Connection::open(db)?;
                c.execute_batch("PRAGMA synchronous = FULL;")?;
                c.busy_timeout(Duration::from_secs(30))?;
                let name = format!("floor-{w}");
                loop {
                    c.execute_batch("BEGIN IMMEDIATE")?;
                    let ids: Vec<i64> = {
                        let mut claim = c.prepare_cached(
                            "UPDATE jobs SET state = 'running', worker = ?1, attempt = attempt + 1 \
                             WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' ORDER BY run_at, id LIMIT ?2) \
                             RETURNING id",
                        )?;
                        claim
                            .query_map(rusqlite::params![name, BATCH], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()?
                    };
                    c.execute_batch("COMMIT")?;
                    if ids.is_empty() {
                        return Ok(());
                    }
                    c.execute_batch("BEGIN IMMEDIATE")?;
                    {
                        let mut fin = c.prepare_cached(
                            "UPDATE jobs SET state = 'succeeded' WHERE id = ?1 AND state = 'running'",
                        )?;
                        for id in &ids {
                            fin.execute([id])?;
                        }
                    }
                    c.execute_batch("COMMIT")?;
                    done.fetch_add(ids.len(), Ordering::Relaxed);
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    if done.load(Ordering::Relaxed) != n {
        bail!("floor drained {} of {n}", done.load(Ordering::Relaxed));
    }
    Ok(secs)
}

/// Queue latency under a steady producer: (p50 ms, p99 ms, jobs).
fn latency(threads: usize, rate: usize, seconds: u64) -> Result<(f64, f64, usize)> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let svc = Arc::new(open(&data)?);
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = std::thread::spawn({
        let (svc, stop) = (svc.clone(), stop.clone());
        move || svc.run_workers(&worker_cfg(threads, false), stop)
    });
    // enqueue in small batches, 50 times a second
    let per_tick = (rate / 50).max(1);
    let t = Instant::now();
    let mut sent = 0;
    let mut tick = 0u32;
    while t.elapsed() < Duration::from_secs(seconds) {
        svc.job_enqueue_many(
            &caller,
            "noop",
            vec![serde_json::json!({}); per_tick],
            EnqueueOptions::default(),
        )?;
        sent += per_tick;
        tick += 1;
        let next = Duration::from_millis(20) * tick;
        if let Some(wait) = next.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    // let the last ones finish
    let until = Instant::now() + Duration::from_secs(30);
    let c = rusqlite::Connection::open(data.join("kontextual.db"))?;
    loop {
        let left: i64 = c.query_row(
            "SELECT count(*) FROM jobs WHERE state != 'succeeded'",
            [],
            |r| r.get(0),
        )?;
        if left == 0 || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = workers.join();
    // every job succeeds at its first attempt, whose start the job row keeps
    let mut lat: Vec<f64> = c
        .prepare(
            "SELECT started_at - created_at FROM jobs WHERE attempt = 1 AND state = 'succeeded'",
        )?
        .query_map([], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|us| us as f64 / 1000.0))
        .collect::<rusqlite::Result<_>>()?;
    if lat.len() != sent {
        bail!("{} of {sent} jobs started", lat.len());
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    Ok((pct(0.5), pct(0.99), sent))
}

fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

pub fn run(n: usize, runs: usize) -> Result<()> {
    if std::env::var_os("KX_JOBS_OURS_ONLY").is_some() {
        let s = ours(n, 1)?;
        eprintln!("ours, 1 worker: {:.0} jobs/s", n as f64 / s);
        return Ok(());
    }
    println!(
        "\n### Job queue: {n} no-op jobs drained, batch {BATCH}, median of {runs} (rounds interleaved)\n"
    );
    println!("| workers | floor jobs/s | kontextual jobs/s | vs floor |");
    println!("|---|---|---|---|");
    for threads in [1, 2, 4] {
        let mut f = Vec::new();
        let mut o = Vec::new();
        for r in 0..runs {
            // alternate who goes first
            if r % 2 == 0 {
                f.push(floor(n, threads)?);
                o.push(ours(n, threads)?);
            } else {
                o.push(ours(n, threads)?);
                f.push(floor(n, threads)?);
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (fs, os) = (med(&mut f), med(&mut o));
        let (fr, or) = (n as f64 / fs, n as f64 / os);
        eprintln!("  {threads} worker(s): floor {fr:.0}/s, ours {or:.0}/s");
        println!("| {threads} | {fr:.0} | {or:.0} | {:.2}× |", or / fr);
    }
    println!("\n| workers | producer rate | jobs | latency p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for threads in [1, 2, 4] {
        let rate = 1000;
        let (p50, p99, sent) = latency(threads, rate, 5)?;
        println!("| {threads} | {rate}/s | {sent} | {p50:.2} | {p99:.2} |");
    }
    Ok(())
}
