//! Webhook delivery benchmark (issue 19), side by side with its floor in
//! one run.
//!
//! **Ours.** A webhook on a loopback receiver, N artifacts put (untimed:
//! N `artifact.created` events in the feed). Timed: the dispatcher turns
//! the feed into N deliveries (body fixed, job enqueued, feed acknowledged
//! in one transaction per batch) and 1, 2 or 4 worker threads drain the
//! `webhook.deliver` jobs — lease, signed POST, attempt recorded, state
//! updated. deliveries/s = N / that time.
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
use kontextual_model::{Actor, ArtifactRef, Namespace};
use kontextual_webhooks::{AddressPolicy, Client, ClientConfig, Destination, Headers, Secret};

/// A receiver answering 200 to every request, keep-alive; counts them.
fn receiver() -> Result<(String, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let h = h.clone();
            std::thread::spawn(move || answer_all(conn, &h));
        }
    });
    Ok((url, hits))
}

fn answer_all(mut conn: TcpStream, hits: &AtomicUsize) {
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
                buf.drain(..end + 4 + len);
                hits.fetch_add(1, Ordering::Relaxed);
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

/// Ours: dispatch + deliver `n` events; (seconds, mean body bytes).
fn ours(n: usize, threads: usize) -> Result<(f64, usize)> {
    let tmp = tempfile::tempdir()?;
    let (url, hits) = receiver()?;
    let svc = Services::open(
        &StoreConfig {
            data_dir: tmp.path().join("data"),
            busy_timeout: Duration::from_secs(30),
        },
        StoreOpenMode::Create,
    )?
    .with_webhooks(WebhooksConfig {
        allow: loopback()?,
        ..WebhooksConfig::default()
    });
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    svc.collection_create(&caller, "bench", "")?;
    let hook = svc.webhooks().create(
        &caller,
        NewWebhook {
            url,
            types: vec!["artifact.created".to_owned()],
            ..NewWebhook::default()
        },
    )?;
    for i in 0..n {
        let target: ArtifactRef = format!("bench/doc-{i:06}.md").parse()?;
        let body = format!("# Doc {i}\n\nSome text for document {i}.\n");
        svc.artifact_put(
            &caller,
            PutRequest::new(target, ContentSource::Bytes(body.into_bytes())),
        )?;
    }
    let start = Instant::now();
    // dispatch until every event is a delivery, then drain the jobs
    loop {
        svc.follow_shared_feeds();
        let d = svc.webhooks().get(&caller, hook.webhook.id)?.deliveries;
        if d.pending >= n as u64 {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("dispatch made {} of {n} deliveries", d.pending);
        }
    }
    let cfg = WorkerConfig {
        threads,
        drain: true,
        idle_poll: Duration::from_millis(50),
        housekeeping_every: Duration::from_secs(3600),
        ..Default::default()
    };
    let summary = svc.run_workers(&cfg, Arc::new(AtomicBool::new(false)))?;
    let secs = start.elapsed().as_secs_f64();
    let done = svc.webhooks().get(&caller, hook.webhook.id)?.deliveries;
    if done.succeeded != n as u64 || hits.load(Ordering::Relaxed) != n {
        bail!(
            "{} of {n} deliveries succeeded, {} requests received ({summary:?})",
            done.succeeded,
            hits.load(Ordering::Relaxed)
        );
    }
    let page = svc.webhooks().deliveries(
        &caller,
        hook.webhook.id,
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
    Ok((secs, size))
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(n: usize, runs: usize) -> Result<()> {
    println!("webhook deliveries: {n} events to a loopback receiver, median of {runs} runs");
    println!("threads | ours deliveries/s | floor requests/s | ratio");
    for threads in [1, 2, 4] {
        let (mut o, mut f) = (Vec::new(), Vec::new());
        for _ in 0..runs.max(1) {
            let (secs, size) = ours(n, threads)?;
            o.push(secs);
            f.push(floor(n, threads, size)?);
        }
        let (o, f) = (n as f64 / median(o), n as f64 / median(f));
        println!("{threads:>7} | {o:>17.0} | {f:>16.0} | {:.2}×", o / f);
    }
    Ok(())
}
