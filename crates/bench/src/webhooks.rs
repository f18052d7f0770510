//! Webhook delivery benchmark (issue 19), side by side with its floor in
//! one run.
//!
//! **Ours.** A webhook on a loopback receiver, N artifacts put (untimed:
//! N `artifact.created` events in the feed). Timed, as a serving process
//! runs them: the dispatcher turns the feed into N deliveries (body fixed,
//! jobs enqueued, feed acknowledged in one transaction per batch) while 1,
//! 2 or 4 worker threads drain the `webhook.deliver_batch` jobs — lease,
//! signed POSTs, attempts recorded, state updated — until every delivery is
//! recorded as succeeded. deliveries/s = N / that time.
//!
//! **Peer.** What the issue names as the peer: a minimal program that
//! reads the same events from the same store (the events API, pages of
//! 256) and POSTs each as a CloudEvent with the same client and signing —
//! one reader, the POSTs on the same number of threads — recording
//! nothing: no delivery, no attempt, no retry state. Each of our worker
//! threads keeps up to `[webhooks] in_flight` requests in flight, so the
//! peer runs twice: with as many POSTing threads as ours has worker
//! threads, and ("wide") with as many as ours has requests in flight.
//!
//! **Floor.** The same HTTP client (`kontextual_webhooks::Client`: address
//! check, signing, ureq) POSTs N bodies of the same size to the same
//! receiver from the same number of threads, with no store at all: what
//! the network path alone costs. The ratio says what durability (every
//! delivery and attempt recorded, at least once across crashes) costs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kontextual_app::{
    Caller, ContentSource, NewWebhook, PutRequest, Services, StoreConfig, StoreOpenMode,
    WebhookAllowList, WebhooksConfig, WorkerConfig,
};
use kontextual_model::{Actor, ArtifactRef, DeliveryId, Namespace};
use kontextual_webhooks::{AddressPolicy, Client, ClientConfig, Destination, Headers, Secret};

/// Connections every receiver of this process has accepted: a client that
/// keeps its connections alive opens a few per run, not one per request.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

/// A loopback receiver answering 200 to every request (keep-alive); each
/// request's head (lower-cased) and body go to `on_body`. Returns its URL.
fn listen(on_body: impl Fn(&str, &[u8]) + Clone + Send + 'static) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            ACCEPTED.fetch_add(1, Ordering::Relaxed);
            let on_body = on_body.clone();
            std::thread::spawn(move || answer_all(conn, on_body));
        }
    });
    Ok(url)
}

/// A receiver that counts requests.
fn receiver() -> Result<(String, Arc<AtomicUsize>)> {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let url = listen(move |_, _| {
        h.fetch_add(1, Ordering::Relaxed);
    })?;
    Ok((url, hits))
}

/// One request as the timing receiver saw it.
#[derive(Clone)]
struct Arrival {
    /// The `webhook-id` header: the delivery's id.
    delivery: Option<DeliveryId>,
    /// The event's CloudEvents `time`.
    event_time: jiff::Timestamp,
    arrived: jiff::Timestamp,
}

impl Arrival {
    fn ms(&self) -> f64 {
        self.arrived.duration_since(self.event_time).as_secs_f64() * 1000.0
    }
}

/// A receiver that records, per request, when it arrived and its event's
/// CloudEvents `time`.
fn timing_receiver() -> Result<(String, Arc<std::sync::Mutex<Vec<Arrival>>>)> {
    let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = lat.clone();
    let url = listen(move |head, body| {
        let arrived = jiff::Timestamp::now();
        let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let sent = body["time"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let delivery = head
            .lines()
            .find_map(|l| l.strip_prefix("webhook-id:"))
            .and_then(|v| v.trim().parse().ok());
        if let Some(event_time) = sent
            && let Ok(mut v) = l.lock()
        {
            v.push(Arrival {
                delivery,
                event_time,
                arrived,
            });
        }
    })?;
    Ok((url, lat))
}

/// How long the receiver takes to answer each request: none, or
/// `KX_BENCH_RECEIVER_MS` milliseconds — a receiver across a network, or
/// one that does work before it answers, as real ones are.
static RECEIVER_HOLD: std::sync::LazyLock<Option<Duration>> = std::sync::LazyLock::new(|| {
    std::env::var("KX_BENCH_RECEIVER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&ms: &u64| ms > 0)
        .map(Duration::from_millis)
});

fn answer_all(mut conn: TcpStream, on_body: impl Fn(&str, &[u8])) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                on_body(&head, &buf[end + 4..end + 4 + len]);
                buf.drain(..end + 4 + len);
                if let Some(hold) = *RECEIVER_HOLD {
                    std::thread::sleep(hold);
                }
                if conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                continue;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn loopback() -> Result<WebhookAllowList> {
    Ok(WebhookAllowList::from_values(&["127.0.0.1/32".to_owned()])?)
}

/// Event-to-delivery latency: artifacts put at a fixed `rate` for `secs`
/// while the serving process's background (feed follower, one worker
/// thread) dispatches and delivers, after [`WARM_UP`] events put the same
/// way; latency = arrival at the receiver minus the event's time.
fn latency(engine: Engine<'_>, rate: f64, secs: f64) -> Result<Latency> {
    let tmp = tempfile::tempdir()?;
    let (url, lat) = timing_receiver()?;
    let (svc, _db) = open(engine, tmp.path())?;
    let svc = Arc::new(svc);
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    svc.collection_create(&caller, "bench", "")?;
    svc.webhooks().create(
        &caller,
        NewWebhook {
            url,
            types: vec!["artifact.created".to_owned()],
            ..NewWebhook::default()
        },
    )?;
    let background = svc.start_background(kontextual_app::BackgroundConfig {
        follow_interval: Duration::from_millis(250),
        workers: Some(WorkerConfig {
            threads: 1,
            ..Default::default()
        }),
    });
    // Events at `rate` from the `first`th on, `n` of them; returns their
    // arrivals once all came (or 30 s passed), and forgets them.
    let paced = |first: usize, n: usize| -> Result<Vec<Arrival>> {
        let start = Instant::now();
        for i in first..first + n {
            let due = start + Duration::from_secs_f64((i - first) as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            put_doc(&svc, &caller, i)?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while lat.lock().map(|v| v.len()).unwrap_or(0) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let arrivals = lat
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        if arrivals.len() != n {
            bail!("latency: {} of {n} deliveries arrived", arrivals.len());
        }
        Ok(arrivals)
    };
    // The process's first deliveries wait while its just-started threads
    // and connections get going, which a serving process pays once:
    // measured apart.
    let cold = paced(0, WARM_UP)?;
    let cold_max = cold.iter().map(Arrival::ms).fold(0.0, f64::max);
    let n = (rate * secs) as usize;
    let mut arrivals = paced(WARM_UP, n)?;
    background.stop();
    arrivals.sort_by(|a, b| a.ms().total_cmp(&b.ms()));
    print_stages(&svc, &caller, &arrivals)?;
    let v: Vec<f64> = arrivals.iter().map(Arrival::ms).collect();
    let at = |p: f64| v[((p * v.len() as f64) as usize).min(v.len() - 1)];
    Ok(Latency {
        p50: at(0.5),
        p99: at(0.99),
        max: v[v.len() - 1],
        count: v.len(),
        cold_max,
    })
}

/// Puts the `i`th small document of the runs (one `artifact.created`).
fn put_doc(svc: &Services, caller: &Caller, i: usize) -> Result<()> {
    let target: ArtifactRef = format!("bench/doc-{i:06}.md").parse()?;
    let body = format!("# Doc {i}\n\nSome text for document {i}.\n");
    svc.artifact_put(
        caller,
        PutRequest::new(target, ContentSource::Bytes(body.into_bytes())),
    )?;
    Ok(())
}

/// Events sent, at the latency run's rate, before its measured ones.
const WARM_UP: usize = 100;

/// Event-to-delivery latencies of a run, ms.
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    count: usize,
    /// The slowest of the warm-up's deliveries.
    cold_max: f64,
}

/// Where the slowest 1 % of `arrivals` (sorted, fastest first) spent
/// their time, from the store's own record of each delivery: event →
/// delivery created (the dispatcher), then created → arrival (the job
/// queue, the worker and the POST; an attempt's recorded time is when its
/// answer came, so it cannot split the last part further).
fn print_stages(svc: &Services, caller: &Caller, arrivals: &[Arrival]) -> Result<()> {
    let slowest = arrivals.len().div_ceil(100).max(3).min(arrivals.len());
    let ms = |a: jiff::Timestamp, b: jiff::Timestamp| b.duration_since(a).as_secs_f64() * 1000.0;
    let mut lines = Vec::new();
    for a in arrivals.iter().rev().take(slowest) {
        let Some(id) = a.delivery else { continue };
        let created = svc.webhooks().delivery(caller, id)?.delivery.created_at;
        lines.push(format!(
            "{:.1} = {:.1} + {:.1}",
            a.ms(),
            ms(a.event_time, created),
            ms(created, a.arrived)
        ));
    }
    println!(
        "  slowest {slowest}, ms: total = event to delivery created + created to arrival: {}",
        lines.join("; ")
    );
    Ok(())
}

/// Which store the run uses.
#[derive(Clone, Copy)]
enum Engine<'a> {
    Sqlite,
    /// An admin URL to create a database per run from.
    Postgres(&'a str),
}

/// `[webhooks] in_flight` for ours: the default, or `KX_BENCH_IN_FLIGHT`
/// (1 is one attempt at a time per worker thread, as before it existed).
fn in_flight() -> Result<usize> {
    match std::env::var("KX_BENCH_IN_FLIGHT") {
        Err(_) => Ok(kontextual_webhooks::DEFAULT_IN_FLIGHT),
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=kontextual_webhooks::MAX_IN_FLIGHT).contains(n))
            .ok_or_else(|| anyhow::anyhow!("KX_BENCH_IN_FLIGHT: {v:?} is not 1 to 64")),
    }
}

/// Opens a fresh store on `engine` with webhooks allowed to loopback; the
/// guard keeps the PostgreSQL database until dropped.
fn open(
    engine: Engine<'_>,
    dir: &std::path::Path,
) -> Result<(Services, Option<crate::postgres::Db>)> {
    let config = WebhooksConfig {
        allow: loopback()?,
        in_flight: in_flight()?,
        ..WebhooksConfig::default()
    };
    Ok(match engine {
        Engine::Sqlite => (
            Services::open(
                &StoreConfig {
                    data_dir: dir.join("data"),
                    busy_timeout: Duration::from_secs(30),
                },
                StoreOpenMode::Create,
            )?
            .with_webhooks(config),
            None,
        ),
        Engine::Postgres(admin) => {
            let db = crate::postgres::Db::new(admin, "webhooks")?;
            let svc = Services::open_postgres(&db.url, dir, true, Duration::from_secs(30))?
                .with_webhooks(config);
            (svc, Some(db))
        }
    })
}

/// One run: ours and then the peer, on the same store's events.
struct Run {
    ours_secs: f64,
    peer_secs: f64,
    /// The peer with as many POSTing threads as ours has requests in
    /// flight (threads × `in_flight`).
    peer_wide_secs: f64,
    body_bytes: usize,
    /// Busy CPU of the whole machine per delivery (ours) and per POST
    /// (the peer), µs.
    cpu: Option<(f64, f64)>,
}

/// Ours: dispatch + deliver `n` events to each of `endpoints` webhooks;
/// then the peer over the same events and endpoints.
fn ours(engine: Engine<'_>, n: usize, endpoints: usize, threads: usize) -> Result<Run> {
    let tmp = tempfile::tempdir()?;
    let (url, hits) = receiver()?;
    let (svc, _db) = open(engine, tmp.path())?;
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    svc.collection_create(&caller, "bench", "")?;
    let mut hooks = Vec::new();
    for e in 0..endpoints {
        hooks.push(
            svc.webhooks()
                .create(
                    &caller,
                    NewWebhook {
                        url: format!("{url}/{e}"),
                        types: vec!["artifact.created".to_owned()],
                        ..NewWebhook::default()
                    },
                )?
                .webhook
                .id,
        );
    }
    let total = n * endpoints;
    for i in 0..n {
        put_doc(&svc, &caller, i)?;
    }
    // the search index catches up with the puts first: its threads would
    // otherwise take the cores from ours (and not from the peer, after)
    svc.index_follow()?;
    // ...and its background merges of the segments those puts made finish
    // (perf: 12 % of the two cores inside the timed window otherwise, on
    // ours and not on the peer's, which runs later)
    settle();
    // As a serving process runs them: the dispatcher (a feed consumer)
    // turns events into deliveries while the workers deliver them — the
    // peer, too, reads events on one thread while others POST.
    let cfg = WorkerConfig {
        threads,
        idle_poll: Duration::from_millis(50),
        housekeeping_every: Duration::from_secs(3600),
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = ACCEPTED.load(Ordering::Relaxed);
    let busy_before = busy_ticks();
    let start = Instant::now();
    let (dispatched, secs, summary, busy_after) = std::thread::scope(|s| -> Result<_> {
        let dispatcher = s.spawn(|| -> Result<f64> {
            loop {
                // a pass reads the feed to its head; done when the
                // dispatcher's cursor is there (two one-row reads: the
                // check must not load the store it measures)
                svc.follow_shared_feeds();
                let head = svc.store().feed().position()?.last_seq;
                let cursor = svc
                    .store()
                    .feed()
                    .cursors()?
                    .into_iter()
                    .find(|(name, _)| name == kontextual_webhooks::dispatch::CONSUMER)
                    .map_or(0, |(_, c)| c);
                if cursor >= head {
                    return Ok(start.elapsed().as_secs_f64());
                }
                if start.elapsed() > Duration::from_secs(600) {
                    bail!("dispatch reached event {cursor} of {head}");
                }
            }
        });
        let workers = s.spawn(|| svc.run_workers(&cfg, stop.clone()));
        // every request arrived; then the last attempts are recorded — in
        // the commit that finishes their job, so: no delivery job left
        // open (a read of the small jobs table, where counting deliveries
        // by state would scan them all; checked after the timing)
        let finished = || -> Result<bool> {
            let stats = svc.job_stats()?;
            Ok(!stats.counts.iter().any(|(kind, state, n)| {
                kind.starts_with("webhook.") && !state.is_final() && *n > 0
            }))
        };
        while hits.load(Ordering::Relaxed) < total || !finished()? {
            std::thread::sleep(Duration::from_micros(500));
            if start.elapsed() > Duration::from_secs(600) {
                break;
            }
        }
        let delivered = start.elapsed().as_secs_f64();
        let busy_after = busy_ticks();
        if std::env::var_os("KX_BENCH_PRINT_WINDOW").is_some() {
            // CLOCK_MONOTONIC (Instant's Debug on Linux), for `perf record
            // -k CLOCK_MONOTONIC` and `perf report --time` of this window
            eprintln!("  (timed window: {start:?} to {:?})", Instant::now());
        }
        stop.store(true, Ordering::Relaxed);
        let dispatched = dispatcher
            .join()
            .map_err(|_| anyhow::anyhow!("the dispatcher panicked"))??;
        let summary = workers
            .join()
            .map_err(|_| anyhow::anyhow!("the workers panicked"))??;
        Ok((dispatched, delivered, summary, busy_after))
    })?;
    let ours_cpu = cpu_us_per(busy_before, busy_after, total);
    eprintln!(
        "  ({total} deliveries over {} connections: all dispatched after {:.0} ms, all delivered after {:.0} ms)",
        ACCEPTED.load(Ordering::Relaxed) - accepted,
        dispatched * 1000.0,
        secs * 1000.0
    );
    let mut succeeded = 0;
    for hook in &hooks {
        succeeded += svc.webhooks().get(&caller, *hook)?.deliveries.succeeded;
    }
    if succeeded != total as u64 || hits.load(Ordering::Relaxed) != total {
        bail!(
            "{succeeded} of {total} deliveries succeeded, {} requests received ({summary:?})",
            hits.load(Ordering::Relaxed)
        );
    }
    let page = svc.webhooks().deliveries(
        &caller,
        hooks[0],
        &kontextual_app::DeliveryQuery::default(),
        &kontextual_app::store_types::PageRequest {
            after: None,
            limit: 1,
        },
    )?;
    let size = match page.items.first() {
        Some(d) => svc.webhooks().delivery(&caller, d.id)?.body.len(),
        None => 0,
    };
    let (peer_secs, peer_cpu) = peer(&svc, &caller, n, endpoints, threads)?;
    let in_flight = svc.webhooks().config().in_flight;
    let (peer_wide_secs, _) = peer(&svc, &caller, n, endpoints, threads * in_flight)?;
    if let (Some(ours), Some(peer)) = (ours_cpu, peer_cpu) {
        eprintln!(
            "  (busy CPU, every process: ours {ours:.0} µs per delivery, the peer {peer:.0} µs per POST)"
        );
    }
    Ok(Run {
        ours_secs: secs,
        peer_secs,
        peer_wide_secs,
        body_bytes: size,
        cpu: ours_cpu.zip(peer_cpu),
    })
}

/// CPU time the whole machine has been busy (not idle, not waiting on I/O)
/// since boot, in clock ticks (`/proc/stat`): over a timed window, what
/// one side cost every process — ours, PostgreSQL, the receiver — less
/// swayed by scheduling luck than the window's wall time. None elsewhere
/// than Linux.
fn busy_ticks() -> Option<u64> {
    let cpu = cpu_ticks()?;
    // user nice system idle iowait irq softirq: steal (time the hypervisor
    // gave another machine) is not ours
    Some(cpu.iter().take(7).sum::<u64>() - cpu.get(3)? - cpu.get(4)?)
}

/// The machine's CPU time by kind since boot, in clock ticks: the first
/// line of `/proc/stat` (user nice system idle iowait irq softirq steal …).
fn cpu_ticks() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    Some(
        stat.lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect(),
    )
}

/// Busy CPU per request, in µs, between two [`busy_ticks`] readings
/// (clock ticks of 10 ms: `getconf CLK_TCK` is 100 on Linux).
fn cpu_us_per(before: Option<u64>, after: Option<u64>, requests: usize) -> Option<f64> {
    let ticks = after?.checked_sub(before?)?;
    Some(ticks as f64 * 10_000.0 / requests.max(1) as f64)
}

/// Waits (at most 20 s) until the machine is quiet — at least 90 % idle
/// over a quarter of a second (`/proc/stat`) — so background work of the
/// set-up (index merges, PostgreSQL's autovacuum of the tables just
/// filled) does not run inside one side's timed window and not the
/// other's. Elsewhere than Linux, a fixed pause.
fn settle() {
    fn idle_and_total() -> Option<(u64, u64)> {
        let cpu = cpu_ticks()?;
        // idle + iowait is idle
        Some((cpu.get(3)? + cpu.get(4)?, cpu.iter().sum()))
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let Some(mut before) = idle_and_total() else {
        std::thread::sleep(Duration::from_secs(2));
        return;
    };
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let Some(now) = idle_and_total() else { return };
        let (idle, total) = (now.0 - before.0, now.1 - before.1);
        if total > 0 && idle * 10 >= total * 9 {
            return;
        }
        before = now;
    }
}

/// The peer (see the module docs): read the events, sign, POST; nothing
/// recorded.
fn peer(
    svc: &Services,
    caller: &Caller,
    n: usize,
    endpoints: usize,
    threads: usize,
) -> Result<(f64, Option<f64>)> {
    let (url, hits) = receiver()?;
    let client = Client::new(ClientConfig {
        policy: AddressPolicy::new(loopback()?),
        ..ClientConfig::default()
    });
    settle();
    let dests = (0..endpoints)
        .map(|e| Destination::parse(&format!("{url}/{e}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let secret = Secret::generate()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<(String, Arc<Vec<u8>>, usize)>(1024);
    let rx = std::sync::Mutex::new(rx);
    let busy_before = busy_ticks();
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok((id, body, e))) = next else { return };
                    let ts = kontextual_webhooks::unix_now();
                    if let Ok(headers) = Headers::sign(&id, ts, &body, &[&secret]) {
                        client.attempt(&dests[e], &headers, &body);
                    }
                }
            });
        }
        let created = kontextual_app::TypePattern::parse("artifact.created")?;
        let query = |after| kontextual_app::EventQuery {
            after,
            types: vec![created.clone()],
            collection: None,
            limit: 256,
        };
        let (mut after, mut sent) = (0, 0);
        while sent < n {
            let page = svc.events(caller, &query(after))?;
            if page.events.is_empty() {
                bail!("peer: the feed ended after {sent} of {n} events");
            }
            for event in &page.events {
                let body = Arc::new(serde_json::to_vec(event)?);
                for e in 0..endpoints {
                    tx.send((format!("{}-{e}", event.id), body.clone(), e))?;
                }
                sent += 1;
            }
            after = page.next_after;
        }
        drop(tx);
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_us_per(busy_before, busy_ticks(), n * endpoints);
    if hits.load(Ordering::Relaxed) != n * endpoints {
        bail!(
            "peer: {} of {} requests received",
            hits.load(Ordering::Relaxed),
            n * endpoints
        );
    }
    Ok((secs, cpu))
}

/// The floor: the same client, signing and bodies of the same size, no store.
fn floor(n: usize, threads: usize, size: usize) -> Result<f64> {
    let (url, hits) = receiver()?;
    let client = Client::new(ClientConfig {
        policy: AddressPolicy::new(loopback()?),
        ..ClientConfig::default()
    });
    let dest = Destination::parse(&url)?;
    let secret = Secret::generate()?;
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(size.saturating_sub(10)));
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let id = uuid::Uuid::now_v7().to_string();
                    let ts = kontextual_webhooks::unix_now();
                    if let Ok(headers) = Headers::sign(&id, ts, body.as_bytes(), &[&secret]) {
                        client.attempt(&dest, &headers, body.as_bytes());
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    if hits.load(Ordering::Relaxed) != n {
        bail!(
            "floor: {} of {n} requests received",
            hits.load(Ordering::Relaxed)
        );
    }
    Ok(secs)
}

/// The (endpoints, threads) configurations to run: all five, or those
/// `KX_BENCH_WEBHOOK_CONFIGS` names (`4/2,16/2`; for profiling one, so
/// the latency run is then left out; set and empty, the latency run alone).
fn configs() -> Result<Vec<(usize, usize)>> {
    let Ok(list) = std::env::var("KX_BENCH_WEBHOOK_CONFIGS") else {
        return Ok(vec![(1, 1), (1, 2), (1, 4), (4, 2), (16, 2)]);
    };
    if list.trim().is_empty() {
        // set and empty: the latency run alone
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|c| {
            let parsed = c
                .trim()
                .split_once('/')
                .and_then(|(e, t)| Some((e.parse().ok()?, t.parse().ok()?)))
                .filter(|&(e, t): &(usize, usize)| e > 0 && t > 0);
            parsed.ok_or_else(|| {
                anyhow::anyhow!("KX_BENCH_WEBHOOK_CONFIGS: {c:?} is not ENDPOINTS/THREADS")
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(n: usize, runs: usize) -> Result<()> {
    let admin = std::env::var("KX_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/postgres".to_owned());
    // KX_BENCH_ENGINE=sqlite or =postgres runs one engine only
    let only = std::env::var("KX_BENCH_ENGINE")
        .unwrap_or_default()
        .to_lowercase();
    for (name, engine) in [
        ("SQLite", Engine::Sqlite),
        ("PostgreSQL", Engine::Postgres(&admin)),
    ] {
        if !name.to_lowercase().starts_with(&only) {
            continue;
        }
        println!(
            "\n{name}: webhook deliveries, {n} events to loopback endpoints, median of {runs} runs"
        );
        println!(
            "(ours keeps up to `in_flight` = {} requests in flight per worker thread; the wide \
             peer POSTs from threads × in_flight threads, as many connections as ours)",
            in_flight()?
        );
        println!(
            "endpoints | threads | ours deliveries/s | peer POSTs/s | wide peer POSTs/s | floor POSTs/s | ours/peer | ours/wide peer | ours/floor | busy CPU per delivery, ours / peer (peer/ours)"
        );
        for (endpoints, threads) in configs()? {
            // the same number of deliveries whatever the endpoints
            let events = (n / endpoints).max(1);
            let total = events * endpoints;
            let (mut o, mut p, mut w, mut f) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut oc, mut pc) = (Vec::new(), Vec::new());
            for _ in 0..runs.max(1) {
                let run = ours(engine, events, endpoints, threads)?;
                o.push(run.ours_secs);
                p.push(run.peer_secs);
                w.push(run.peer_wide_secs);
                if let Some((ours, peer)) = run.cpu {
                    oc.push(ours);
                    pc.push(peer);
                }
                f.push(floor(total, threads, run.body_bytes)?);
            }
            let (o, p, w, f) = (
                total as f64 / median(o),
                total as f64 / median(p),
                total as f64 / median(w),
                total as f64 / median(f),
            );
            // the peer's CPU per POST over ours per delivery: what ours
            // would reach against it were both alone on their cores
            let cpu = if oc.is_empty() {
                "n/a".to_owned()
            } else {
                let (oc, pc) = (median(oc), median(pc));
                format!("{oc:.0} / {pc:.0} µs ({:.2}×)", pc / oc)
            };
            println!(
                "{endpoints:>9} | {threads:>7} | {o:>17.0} | {p:>12.0} | {w:>17.0} | {f:>13.0} | {:>8.2}× | {:>13.2}× | {:>9.2}× | {cpu}",
                o / p,
                o / w,
                o / f
            );
        }
        if std::env::var("KX_BENCH_WEBHOOK_CONFIGS").is_ok_and(|c| !c.trim().is_empty()) {
            continue;
        }
        let l = latency(engine, 200.0, 10.0)?;
        println!(
            "{name}: event-to-delivery at 200 events/s for 10 s ({} deliveries, one worker thread, after {WARM_UP} to warm up): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (warm-up's slowest {:.1} ms)",
            l.count, l.p50, l.p99, l.max, l.cold_max
        );
    }
    Ok(())
}
