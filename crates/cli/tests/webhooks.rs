//! O5 webhooks end to end, from the real binary on either engine: a
//! receiver thread on 127.0.0.1 (allowed in the data directory's
//! `[webhooks] allow`), `webhook …` commands, and `worker` processes that
//! deliver. Signatures are checked by the reference `standardwebhooks`
//! Python package (required in CI: `CI_REQUIRE_STANDARDWEBHOOKS=1`).

#[path = "../../webhooks/tests/support/standardwebhooks.rs"]
mod standardwebhooks;
mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Env, Proc, Store, s};

// ---------------------------------------------------------------- receiver

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Hit {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the receiver answers: a status, extra header lines, and how long
/// to wait before answering.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: String,
    hold: Duration,
}

fn status(status: u16) -> Reply {
    Reply {
        status,
        headers: String::new(),
        hold: Duration::ZERO,
    }
}

type Script = dyn Fn(&Hit, usize) -> Reply + Send + Sync;

/// An HTTP/1.1 receiver on 127.0.0.1: records every request and answers
/// with `script(request, how many requests with this webhook-id came
/// before)`; the script can be swapped while it runs.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<Arc<Script>>>,
}

impl Receiver {
    fn new(script: impl Fn(&Hit, usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let script: Arc<Mutex<Arc<Script>>> = Arc::new(Mutex::new(Arc::new(script)));
        let (h, s) = (hits.clone(), script.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (h, s) = (h.clone(), s.clone());
                std::thread::spawn(move || serve_connection(conn, &h, &s));
            }
        });
        Receiver { url, hits, script }
    }

    fn answer(&self, script: impl Fn(&Hit, usize) -> Reply + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

fn serve_connection(mut conn: TcpStream, hits: &Mutex<Vec<Hit>>, script: &Mutex<Arc<Script>>) {
    conn.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut buf = Vec::new();
    loop {
        let Some(hit) = read_request(&mut conn, &mut buf) else {
            return;
        };
        let seen = {
            let mut all = hits.lock().unwrap();
            let seen = all.iter().filter(|h| h.id() == hit.id()).count();
            all.push(hit.clone());
            seen
        };
        let script = script.lock().unwrap().clone();
        let reply = script(&hit, seen);
        std::thread::sleep(reply.hold);
        let answer = format!(
            "HTTP/1.1 {} X\r\ncontent-length: 2\r\n{}\r\nok",
            reply.status, reply.headers
        );
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The next request on a (keep-alive) connection; `None` when it closes.
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Hit> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let headers: HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .get("content-length")
                .map_or(0, |v| v.parse().unwrap());
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Some(Hit {
                    at: Instant::now(),
                    headers,
                    body,
                });
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---------------------------------------------------------------- helpers

/// A store whose deliveries may reach this machine's loopback receiver,
/// with a short per-attempt timeout.
fn env_for_webhooks() -> Env {
    env_for_webhooks_with("")
}

/// [`env_for_webhooks`] with more `[webhooks]` settings.
fn env_for_webhooks_with(settings: &str) -> Env {
    let env = Env::init();
    let config = env.data().join("kontextual.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str("\n[webhooks]\nallow = [\"127.0.0.1/32\"]\ntimeout_secs = 2\n");
    text.push_str(settings);
    std::fs::write(&config, text).unwrap();
    env
}

fn create(store: &Store, url: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["webhook", "create", "--url", url];
    args.extend_from_slice(extra);
    let w = store.json(&args);
    let secret = w["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{w}");
    (w["webhook"]["id"].as_str().unwrap().to_owned(), secret)
}

fn worker(store: &Store, extra: &[&str]) -> Proc {
    Proc(
        store
            .cmd(&["worker"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn deliveries(store: &Store, webhook: &str) -> Vec<Value> {
    store.json(&["webhook", "deliveries", webhook])["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Polls until `f` says yes (at most a minute; the deliveries are a few
/// seconds away at most in these tests).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn succeeded(store: &Store, webhook: &str, n: usize) -> Vec<Value> {
    wait_for(&format!("{n} succeeded deliveries"), || {
        let d = deliveries(store, webhook);
        (d.iter().filter(|d| d["state"] == "succeeded").count() == n).then_some(d)
    })
}

/// Writes `n` small Markdown files under `docs/` and ingests them into
/// `handbook` (one `artifact.created` event each).
fn ingest_docs(env: &Env, n: usize) {
    for i in 0..n {
        env.write(
            &format!("docs/{i:03}.md"),
            format!("# Doc {i}\n\ntext {i}\n"),
        );
    }
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
}

/// A receiver answering every request after `hold`: 503 to the `nth`
/// first attempt to arrive (0-based), 200 to everything else.
fn first_try_fails(nth: usize, hold: Duration) -> Receiver {
    let first_tries = std::sync::atomic::AtomicUsize::new(0);
    Receiver::new(move |_, seen| {
        let this = if seen == 0 {
            first_tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        } else {
            usize::MAX
        };
        Reply {
            hold,
            ..status(if this == nth { 503 } else { 200 })
        }
    })
}

// ---------------------------------------------------------------- tests

/// O5: a failed attempt (500) is retried on the schedule (≈5 s, jittered)
/// and a 429's `Retry-After` is honoured; every attempt of a delivery
/// carries the same `webhook-id` and body; the collection and type filters
/// hold; the signatures verify with the reference implementation, and
/// after a rotation both the old and the new secret verify.
#[test]
fn o5_webhooks_retry_and_deliver_signed_events() {
    let env = env_for_webhooks();
    let rx = Receiver::new(|hit, seen| {
        let name = hit.json()["data"]["name"].as_str().unwrap_or("").to_owned();
        match (seen, name.as_str()) {
            (0, "a.md") => status(500),
            (0, "b.md") => Reply {
                headers: "retry-after: 7\r\n".to_owned(),
                ..status(429)
            },
            _ => status(200),
        }
    });
    let (id, secret) = create(
        &env,
        &rx.url,
        &["--types", "artifact.*", "--collection", "handbook"],
    );
    env.write("docs/a.md", "# A\n\nalpha\n");
    env.write("docs/b.md", "# B\n\nbeta\n");
    env.write("ops/c.md", "# C\n\ngamma\n");
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    env.ok(&["ingest", "ops", "--collection", "ops"]);
    let _w = worker(&env, &[]);
    let got = succeeded(&env, &id, 2);
    assert_eq!(got.len(), 2, "only handbook's artifact events: {got:?}");
    for d in &got {
        assert_eq!(d["event_type"], "artifact.created");
        assert_eq!(d["attempts"], 2, "{d}");
        assert_eq!(d["last_status"], 200);
    }

    let hits = rx.hits();
    assert_eq!(hits.len(), 4, "two attempts each");
    for name in ["a.md", "b.md"] {
        let attempts: Vec<&Hit> = hits
            .iter()
            .filter(|h| h.json()["data"]["name"] == name)
            .collect();
        assert_eq!(attempts.len(), 2, "{name}");
        let (first, second) = (attempts[0], attempts[1]);
        assert_eq!(
            first.id(),
            second.id(),
            "{name}: one webhook-id per delivery"
        );
        assert_eq!(first.body, second.body, "{name}: the same bytes on retry");
        assert!(got.iter().any(|d| d["id"] == first.id()));
        let gap = second.at - first.at;
        if name == "a.md" {
            // the schedule's 5 s, jittered by at most ±20 %
            assert!(
                gap >= Duration::from_secs(3),
                "{name}: retried after {gap:?}"
            );
        } else {
            // Retry-After: 7 wins over the 5 s of the schedule
            assert!(
                gap >= Duration::from_millis(6_900),
                "{name}: retried after {gap:?}, before Retry-After"
            );
        }
        let event = first.json();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "artifact.created");
        assert_eq!(
            first.headers["content-type"], "application/json",
            "{:?}",
            first.headers
        );
    }
    // every attempt is recorded, with its status
    let detail = env.json(&["webhook", "delivery", hits[0].id()]);
    let statuses: Vec<&Value> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[1], 200);

    // a rotation: the old secret keeps verifying for the grace period
    let rotated = env.json(&["webhook", "rotate-secret", &id]);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    env.write("docs/d.md", "# D\n\ndelta\n");
    env.ok(&["ingest", "docs/d.md", "--collection", "handbook"]);
    succeeded(&env, &id, 3);
    let hits = rx.hits();
    let after = hits.last().unwrap();
    assert_eq!(after.json()["data"]["name"], "d.md");
    assert_eq!(
        after.headers["webhook-signature"].split(' ').count(),
        2,
        "both secrets sign during the grace period"
    );

    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut cases: Vec<(&str, &Hit)> = hits[..4].iter().map(|h| (secret.as_str(), h)).collect();
    cases.push((secret.as_str(), after));
    cases.push((new_secret.as_str(), after));
    cases.push((wrong, after));
    let cases: Vec<standardwebhooks::Case<'_>> = cases
        .iter()
        .map(|(secret, hit)| standardwebhooks::Case {
            secret,
            id: &hit.headers["webhook-id"],
            timestamp: &hit.headers["webhook-timestamp"],
            signature: &hit.headers["webhook-signature"],
            body: &hit.body,
        })
        .collect();
    if let Some(verdicts) = standardwebhooks::verdicts(&cases) {
        let mut expected = vec![true; 6];
        expected.push(false);
        assert_eq!(verdicts, expected);
    }
}

/// O5: a 410 ends the delivery (dead, no retry) and disables the webhook,
/// which a `webhook.disabled` event and an audit record by the system
/// actor say; after the receiver is fixed, enable + recover resend what
/// died, with the same webhook-id.
#[test]
fn o5_a_410_disables_and_recover_resends() {
    let env = env_for_webhooks();
    let rx = Receiver::new(|_, _| status(410));
    let (id, _) = create(&env, &rx.url, &["--types", "artifact.created"]);
    env.write("docs/a.md", "# A\n\nalpha\n");
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    let w = worker(&env, &[]);
    let shown = wait_for("the webhook disabled", || {
        let s = env.json(&["webhook", "show", &id]);
        (s["webhook"]["state"] == "disabled").then_some(s)
    });
    drop(w);
    let reason = shown["webhook"]["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("410"), "{reason}");
    let dead = deliveries(&env, &id);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["state"], "dead");
    assert_eq!(dead[0]["attempts"], 1, "a 410 is not retried");

    let events = env.json(&["event", "list", "--type", "webhook.disabled"]);
    let events = events["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], id.as_str());
    let audit = env.json(&["audit", "list", "--action", "webhook.disable"]);
    let records = audit.as_array().or(audit["items"].as_array()).unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["actor"], "service:kontextual", "{audit}");

    rx.answer(|_, _| status(204));
    env.ok(&["webhook", "enable", &id]);
    let since = dead[0]["created_at"].as_str().unwrap().to_owned();
    env.ok(&["webhook", "recover", &id, "--since", &since]);
    let _w = worker(&env, &[]);
    let done = succeeded(&env, &id, 1);
    let hits = rx.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id(), hits[1].id(), "a resend keeps the webhook-id");
    assert_eq!(done[0]["last_status"], 204);
}

/// O5: a worker killed (SIGKILL) in the middle of an attempt loses
/// nothing: once its lease lapses another worker delivers, with the same
/// webhook-id (at least once, so receivers de-duplicate on it).
#[test]
fn o5_a_killed_worker_loses_no_delivery() {
    let env = env_for_webhooks();
    // the first attempt is held unanswered until the worker is dead
    let rx = Receiver::new(|_, seen| Reply {
        hold: if seen == 0 {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        },
        ..status(200)
    });
    let (id, _) = create(&env, &rx.url, &["--types", "artifact.created"]);
    env.write("docs/a.md", "# A\n\nalpha\n");
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    let mut first = worker(&env, &["--lease", "2"]);
    wait_for("the first attempt", || {
        (!rx.hits().is_empty()).then_some(())
    });
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let _second = worker(&env, &["--lease", "2"]);
    let done = succeeded(&env, &id, 1);
    let hits = rx.hits();
    assert!(hits.len() >= 2, "{hits:?}");
    assert!(hits.iter().all(|h| h.id() == hits[0].id()));
    assert_eq!(done[0]["id"], hits[0].id());
}

/// O5/X7: two workers on one store deliver every event exactly once
/// between them (on PostgreSQL, the scale-out shape) — 600 events, so
/// each worker's dispatcher goes through several of its growing batches
/// (128, 256, 512 events) while the other's passes overlap it.
#[test]
fn o5_two_workers_share_the_deliveries() {
    const N: usize = 600;
    let env = env_for_webhooks();
    let rx = Receiver::new(|_, _| status(200));
    let (id, _) = create(&env, &rx.url, &["--types", "artifact.created"]);
    ingest_docs(&env, N);
    let _a = worker(&env, &[]);
    let _b = worker(&env, &[]);
    // counted by state (a page of the listing holds fewer)
    wait_for(&format!("{N} succeeded deliveries"), || {
        let shown = env.json(&["webhook", "show", &id]);
        (shown["deliveries"]["succeeded"] == N).then_some(())
    });
    // a moment for a duplicate, if any, to arrive
    std::thread::sleep(Duration::from_millis(500));
    let hits = rx.hits();
    let mut ids: Vec<&str> = hits.iter().map(Hit::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N);
    assert_eq!(hits.len(), N, "each event once");
}

/// O5: managing a webhook does what it says and nothing more — an empty
/// type list never widens a filtered webhook to every type; disabling
/// (or enabling) twice records and announces one change; resending to a
/// disabled webhook is refused up front; and a resend starts the retry
/// schedule over, due now, even for a delivery a `Retry-After` of an hour
/// had put off.
#[test]
fn o5_webhook_changes_and_resends_do_what_they_say() {
    let env = env_for_webhooks();
    let rx = Receiver::new(|_, seen| match seen {
        0 => Reply {
            headers: "retry-after: 3600\r\n".to_owned(),
            ..status(503)
        },
        _ => status(200),
    });
    // an empty filter (an unset shell variable) is refused, not read as
    // "every event" — on create as on update
    for empty in [
        &["--types", ""][..],
        &["--types", " , "],
        &["--collection", ""],
    ] {
        let mut args = vec!["webhook", "create", "--url", rx.url.as_str()];
        args.extend_from_slice(empty);
        let err = env.fails(2, &args);
        assert!(
            err.contains("is empty") && err.contains("leave"),
            "{empty:?}: {err}"
        );
    }
    assert!(
        env.json(&["webhook", "list"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (id, _) = create(&env, &rx.url, &["--types", "artifact.*"]);
    let err = env.fails(2, &["webhook", "update", &id, "--types", ""]);
    assert!(err.contains("at least one event type pattern"), "{err}");
    let err = env.fails(2, &["webhook", "update", &id, "--collection", ""]);
    assert!(err.contains("--all-collections"), "{err}");
    assert_eq!(
        env.json(&["webhook", "show", &id])["webhook"]["types"],
        serde_json::json!(["artifact.*"])
    );
    // a change to what it already is records and announces nothing
    env.ok(&["webhook", "update", &id, "--types", "artifact.*"]);
    let updated = env.json(&["event", "list", "--type", "webhook.updated"]);
    assert!(updated["items"].as_array().unwrap().is_empty(), "{updated}");
    env.ok(&["webhook", "update", &id, "--types", "artifact.*,ingest.*"]);
    let updated = env.json(&["event", "list", "--type", "webhook.updated"]);
    assert_eq!(updated["items"].as_array().unwrap().len(), 1, "{updated}");
    env.ok(&["webhook", "update", &id, "--types", "artifact.*"]);

    env.write("docs/a.md", "# A\n\nalpha\n");
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    let w = worker(&env, &[]);
    let failed = wait_for("the first attempt's failure", || {
        deliveries(&env, &id)
            .into_iter()
            .find(|d| d["state"] == "failed")
    });
    let delivery = failed["id"].as_str().unwrap().to_owned();

    env.ok(&["webhook", "disable", &id]);
    env.ok(&["webhook", "disable", &id]);
    let disabled = env.json(&["event", "list", "--type", "webhook.disabled"]);
    assert_eq!(disabled["items"].as_array().unwrap().len(), 1, "{disabled}");
    let err = env.fails(4, &["webhook", "resend", &delivery]);
    assert!(err.contains("disabled") && err.contains("enable"), "{err}");
    let err = env.fails(4, &["webhook", "recover", &id, "--since", "1h"]);
    assert!(err.contains("disabled"), "{err}");
    env.ok(&["webhook", "enable", &id]);

    // the retry is an hour away; a resend sends it now
    env.ok(&["webhook", "resend", &delivery]);
    let done = succeeded(&env, &id, 1);
    assert_eq!(done[0]["id"], delivery.as_str());
    assert_eq!(rx.hits().len(), 2);
    drop(w);
}

/// O5/X2: a webhook the CLI created (any `--actor`: the local
/// administrator's command line reads everything) is sent every event its
/// filters match — a restricted artifact's too — but not its own
/// `webhook.created`. (One created with an API key is sent only what that
/// key's actor may read: `o5_x2_a_webhook_gets_only_what_its_creator_may_read`
/// in the server's tests.)
#[test]
fn o5_a_cli_webhook_gets_what_the_cli_reads_and_not_its_own_creation() {
    let env = env_for_webhooks();
    let rx = Receiver::new(|_, _| status(200));
    let made = env.json(&[
        "--actor", "user:ops", "webhook", "create", "--url", &rx.url, "--types", "*",
    ]);
    let id = made["webhook"]["id"].as_str().unwrap().to_owned();
    let note = env.write("note.md", "# Note\n\nopen\n");
    env.ok(&["artifact", "put", "handbook/open.md", "--file", s(&note)]);
    env.ok(&[
        "artifact",
        "put",
        "handbook/secret.md",
        "--file",
        s(&note),
        "--classification",
        "restricted",
    ]);
    let _w = worker(&env, &[]);
    // (at least) the two artifacts
    wait_for("two deliveries", || {
        let shown = env.json(&["webhook", "show", &id]);
        (shown["deliveries"]["succeeded"].as_u64() >= Some(2)).then_some(())
    });
    // a moment for anything else to arrive
    std::thread::sleep(Duration::from_millis(1000));
    let hits = rx.hits();
    let text: Vec<String> = hits.iter().map(|h| h.json().to_string()).collect();
    assert!(text.iter().any(|t| t.contains("open.md")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("secret.md")), "{text:?}");
    assert!(
        !hits.iter().any(|h| h.json()["type"] == "webhook.created"),
        "{text:?}"
    );
}

/// O5: fresh deliveries of one webhook go out as one batch job; when an
/// attempt in it fails, that delivery goes on to its retry and the ones
/// not tried yet go on as jobs of their own — every event arrives, once
/// per webhook-id, and only the failed one is tried twice.
#[test]
fn o5_a_batch_hands_on_after_a_failed_attempt() {
    // one attempt in flight: which deliveries come after the failure is exact
    let env = env_for_webhooks_with("in_flight = 1\n");
    // the third delivery's first attempt fails
    let rx = first_try_fails(2, Duration::ZERO);
    let (id, _) = create(&env, &rx.url, &["--types", "artifact.created"]);
    ingest_docs(&env, 10);
    let _w = worker(&env, &[]);
    let done = succeeded(&env, &id, 10);
    let tried: Vec<u64> = done
        .iter()
        .map(|d| d["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(tried.iter().filter(|&&n| n == 2).count(), 1, "{tried:?}");
    assert_eq!(tried.iter().filter(|&&n| n == 1).count(), 9, "{tried:?}");
    std::thread::sleep(Duration::from_millis(300));
    let hits = rx.hits();
    assert_eq!(hits.len(), 11, "ten deliveries, one retried");
    let mut ids: Vec<&str> = hits.iter().map(Hit::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10);

    let batches = env.json(&["job", "list", "--kind", "webhook.deliver_batch"]);
    let batches = batches["items"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "one batch for the ten: {batches:?}");
    let report = &env.json(&["job", "show", batches[0]["id"].as_str().unwrap()])["report"];
    assert_eq!(report["delivered"], 2, "{report}");
    assert_eq!(report["not_delivered"], 1, "{report}");
    assert_eq!(
        report["handed_on"], 8,
        "the failed one and the seven after it: {report}"
    );
    let singles = env.json(&["job", "list", "--kind", "webhook.deliver"]);
    assert_eq!(singles["items"].as_array().unwrap().len(), 8, "{singles}");
}

/// O5: a batch keeps up to `[webhooks] in_flight` attempts in flight at
/// once — here three, from one worker thread — and never more; a failure
/// among them hands on the deliveries not taken yet, and every delivery
/// still arrives, each `webhook-id` succeeding once.
#[test]
fn o5_a_batch_keeps_its_attempts_in_flight_bounded() {
    const N: usize = 24;
    const HOLD: Duration = Duration::from_millis(60);
    let env = env_for_webhooks_with("in_flight = 3\n");
    // every answer takes a while; the tenth first attempt fails
    let rx = first_try_fails(9, HOLD);
    let (id, _) = create(&env, &rx.url, &["--types", "artifact.created"]);
    ingest_docs(&env, N);
    let _w = worker(&env, &["--threads", "1"]);
    succeeded(&env, &id, N);
    std::thread::sleep(Duration::from_millis(300));
    let hits = rx.hits();
    let mut ids: Vec<&str> = hits.iter().map(Hit::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N);
    // a lane sends its next request only after its last answer (HOLD
    // later), so the requests arriving within less than HOLD of each
    // other are the attempts in flight at once
    let mut at: Vec<Instant> = hits.iter().map(|h| h.at).collect();
    at.sort_unstable();
    let window = HOLD - Duration::from_millis(5);
    let most = (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t - at[i] < window).count())
        .max()
        .unwrap();
    assert!(most <= 3, "at most three in flight, saw {most}");
    assert!(most >= 2, "attempts overlap, saw at most {most} at once");

    let batches = env.json(&["job", "list", "--kind", "webhook.deliver_batch"]);
    let batches = batches["items"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "one batch for all: {batches:?}");
    let report = &env.json(&["job", "show", batches[0]["id"].as_str().unwrap()])["report"];
    let count = |k: &str| report[k].as_u64().unwrap();
    assert_eq!(count("not_delivered"), 1, "{report}");
    // the failure stops the batch: the two other lanes finish what they
    // hold, and what no lane took yet is handed on untried
    let delivered = count("delivered");
    assert!((9..=13).contains(&delivered), "{report}");
    assert_eq!(
        count("handed_on"),
        N as u64 - delivered,
        "the failed one and every untried one: {report}"
    );
}

/// O5: what the policy refuses is refused before anything is stored: an
/// address not allowed, a type pattern matching nothing, a bad URL.
#[test]
fn o5_webhook_create_refuses_bad_input_clearly() {
    let env = env_for_webhooks();
    let err = env.fails(2, &["webhook", "create", "--url", "http://127.0.0.2:9/x"]);
    assert!(err.contains("loopback"), "{err}");
    let err = env.fails(
        2,
        &[
            "webhook",
            "create",
            "--url",
            "https://hooks.example.com/x",
            "--types",
            "artifact.exploded",
        ],
    );
    assert!(err.contains("artifact.exploded"), "{err}");
    let err = env.fails(
        2,
        &["webhook", "create", "--url", "ftp://hooks.example.com/x"],
    );
    assert!(err.contains("ftp"), "{err}");
    let listed = env.json(&["webhook", "list"]);
    assert_eq!(listed["items"], serde_json::json!([]));
    let err = env.fails(
        3,
        &["webhook", "show", "0190c6a4-0000-7000-8000-000000000000"],
    );
    assert!(
        err.contains("not found") || err.contains("no webhook"),
        "{err}"
    );
}
