//! O5: the event feed published to NATS JetStream, against a real server
//! (`KONTEXTUAL_TEST_NATS_URL`, default `nats://127.0.0.1:4222`, started
//! with `-js`). Each test has its own stream and subject prefix and deletes
//! the stream at the end. Without a server the tests that need one say so
//! and pass, unless `CI_REQUIRE_NATS` is set (CI), where they fail.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, message::StreamMessage};
use kontextual_app::{
    Caller, CloudEvent, ContentSource, ErrorKind, FeedConsumer, NatsConfig, NatsPublisher,
    PutRequest, Services, StoreConfig, StoreOpenMode,
};
use kontextual_model::{Actor, ArtifactRef, Namespace};

/// The server the tests publish to, or `None` (with the reason printed)
/// when none answers and CI does not require one.
fn nats_url() -> Option<String> {
    let url = std::env::var("KONTEXTUAL_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let hostport = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
        .to_owned();
    let reachable = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(url);
    }
    if std::env::var_os("CI_REQUIRE_NATS").is_some() {
        panic!("CI_REQUIRE_NATS is set but no NATS server answers at {url}");
    }
    eprintln!(
        "SKIPPED: no NATS server answers at {url} (start `nats-server -js`, or set KONTEXTUAL_TEST_NATS_URL)"
    );
    None
}

/// A name no other test or run uses.
fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    svc: Services,
    caller: Caller,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let svc = Services::open(
            &StoreConfig {
                data_dir: dir.path().join("data"),
                busy_timeout: Duration::from_secs(5),
            },
            StoreOpenMode::Create,
        )
        .unwrap();
        Fixture {
            _dir: dir,
            svc,
            caller: Caller::new(Actor::local_admin(), Namespace::default()),
        }
    }

    /// A collection and `n` artifacts in it; returns the feed head.
    fn write(&self, collection: &str, n: usize) -> u64 {
        self.svc
            .collection_create(&self.caller, collection, "published to NATS")
            .unwrap();
        for i in 0..n {
            let target: ArtifactRef = format!("{collection}/doc-{i}.md").parse().unwrap();
            let body = format!("# Doc {i}\n\nText {i}.\n").into_bytes();
            self.svc
                .artifact_put(
                    &self.caller,
                    PutRequest::new(target, ContentSource::Bytes(body)),
                )
                .unwrap();
        }
        self.svc.events_head().unwrap()
    }

    /// Every event in the store as the CloudEvent the publisher must send.
    fn expected(&self) -> (String, Vec<CloudEvent>) {
        let store = self.svc.store();
        let store_id = store.feed().position().unwrap().store_id;
        let base = kontextual_events::source_base(&store_id);
        let events = store
            .feed()
            .events(0, 10_000)
            .unwrap()
            .iter()
            .map(|e| CloudEvent::of(e, &base))
            .collect();
        (store_id, events)
    }

    fn cursor(&self, consumer: &str) -> u64 {
        self.svc
            .store()
            .feed()
            .cursors()
            .unwrap()
            .into_iter()
            .find(|(name, _)| name == consumer)
            .map_or(0, |(_, c)| c)
    }
}

fn config(url: &str, run: &str) -> NatsConfig {
    let mut cfg = NatsConfig::new(url);
    cfg.subject_prefix = format!("kxtest.{run}");
    cfg.stream = format!("KXTEST_{run}");
    cfg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Everything the stream holds, in order.
fn stream_messages(url: &str, stream: &str) -> Vec<StreamMessage> {
    runtime().block_on(async {
        let js = jetstream::new(async_nats::connect(url).await.unwrap());
        let mut stream = js.get_stream(stream).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        if state.messages == 0 {
            return out;
        }
        for seq in state.first_sequence..=state.last_sequence {
            out.push(stream.get_raw_message(seq).await.unwrap());
        }
        out
    })
}

/// Removes a test's stream (best effort).
fn drop_stream(url: &str, stream: &str) {
    runtime().block_on(async {
        if let Ok(client) = async_nats::connect(url).await {
            let _ = jetstream::new(client).delete_stream(stream).await;
        }
    });
}

/// Checks the stream holds exactly `expected`, once each, in order, with
/// the right subject, `Nats-Msg-Id` and content type.
fn assert_published_once(
    messages: &[StreamMessage],
    expected: &[CloudEvent],
    store_id: &str,
    prefix: &str,
) {
    assert_eq!(
        messages.len(),
        expected.len(),
        "each event exactly once in the stream"
    );
    for (message, want) in messages.iter().zip(expected) {
        let got: CloudEvent = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(&got, want, "the body is the event's CloudEvent JSON");
        assert_eq!(
            message.subject.as_str(),
            format!("{prefix}.{}.{}", want.namespace, want.ty)
        );
        assert_eq!(
            message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned()),
            Some(format!("{store_id}:{}", want.id)),
            "Nats-Msg-Id names the store and the CloudEvent id"
        );
        assert_eq!(
            message
                .headers
                .get("content-type")
                .map(|v| v.as_str().to_owned()),
            Some("application/cloudevents+json".to_owned())
        );
    }
}

#[test]
fn o5_nats_publishes_each_event_once_with_its_cloudevent_id() {
    let Some(url) = nats_url() else { return };
    let run = unique();
    let cfg = config(&url, &run);
    let fx = Fixture::new();
    let head = fx.write("docs", 3);
    assert!(head >= 4, "a collection and three artifacts: {head} events");

    let publisher = NatsPublisher::new(cfg.clone()).unwrap();
    publisher.follow(&fx.svc).unwrap();

    let (store_id, expected) = fx.expected();
    assert_eq!(expected.len() as u64, head);
    let messages = stream_messages(&url, &cfg.stream);
    assert_published_once(&messages, &expected, &store_id, &cfg.subject_prefix);
    assert_eq!(
        fx.cursor("nats"),
        head,
        "the feed acknowledged what JetStream holds"
    );
    assert_eq!(publisher.lag(&fx.svc).unwrap(), 0);
    let status = publisher.status();
    assert_eq!(
        (status.published, status.duplicates, status.acked_through),
        (head, 0, head)
    );
    assert!(status.connected && status.last_error.is_none());

    // later events follow on the next pass, and only they
    let head2 = fx.write("more", 2);
    assert!(head2 > head);
    publisher.follow(&fx.svc).unwrap();
    let (_, expected) = fx.expected();
    let messages = stream_messages(&url, &cfg.stream);
    assert_published_once(&messages, &expected, &store_id, &cfg.subject_prefix);
    assert_eq!(fx.cursor("nats"), head2);
    // nothing new: a pass publishes nothing
    publisher.follow(&fx.svc).unwrap();
    assert_eq!(stream_messages(&url, &cfg.stream).len() as u64, head2);
    drop_stream(&url, &cfg.stream);
}

/// A crash after JetStream stored a batch but before the feed recorded it
/// means the batch is sent again: simulated by a second publisher whose
/// cursor is still 0. The broker drops every repeat (same `Nats-Msg-Id`).
#[test]
fn o5_nats_resending_after_a_lost_acknowledgement_is_deduplicated() {
    let Some(url) = nats_url() else { return };
    let run = unique();
    let cfg = config(&url, &run);
    let fx = Fixture::new();
    let head = fx.write("docs", 3);

    let first = NatsPublisher::new(cfg.clone()).unwrap();
    first.follow(&fx.svc).unwrap();
    assert_eq!(fx.cursor("nats"), head);

    let mut again = cfg.clone();
    again.consumer = "nats-restarted".to_owned();
    let restarted = NatsPublisher::new(again).unwrap();
    assert_eq!(restarted.lag(&fx.svc).unwrap(), head, "it starts from 0");
    restarted.follow(&fx.svc).unwrap();
    let status = restarted.status();
    assert_eq!(
        (status.published, status.duplicates),
        (0, head),
        "every repeat was acknowledged as a duplicate"
    );
    assert_eq!(fx.cursor("nats-restarted"), head);

    let (store_id, expected) = fx.expected();
    let messages = stream_messages(&url, &cfg.stream);
    assert_published_once(&messages, &expected, &store_id, &cfg.subject_prefix);
    drop_stream(&url, &cfg.stream);
}

/// A server that is not there: `follow` fails at once, without panicking,
/// the cursor stays, and the passes during the back-off return at once.
#[test]
fn o5_nats_down_server_fails_fast_and_keeps_the_cursor() {
    let fx = Fixture::new();
    let head = fx.write("docs", 2);
    // port 1 on loopback: nothing listens there
    let publisher = NatsPublisher::new(config("nats://127.0.0.1:1", &unique())).unwrap();

    let started = Instant::now();
    let err = publisher.follow(&fx.svc).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "bounded by the timeouts: {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert_eq!(fx.cursor("nats"), 0, "nothing acknowledged");
    assert_eq!(publisher.lag(&fx.svc).unwrap(), head);
    let status = publisher.status();
    assert_eq!(status.failures, 1);
    assert!(!status.connected);
    assert!(status.last_error.is_some());

    // during the back-off a pass does nothing and costs nothing
    let started = Instant::now();
    publisher.follow(&fx.svc).unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(publisher.status().failures, 1);

    // and the follower carries on with the other consumers
    let mut svc = fx.svc;
    svc.publish_events_to_nats(config("nats://127.0.0.1:1", &unique()))
        .unwrap();
    svc.follow_feeds();
}

/// Wired through the composition root: the follower's step publishes.
#[test]
fn o5_nats_registered_publisher_runs_with_the_follower() {
    let Some(url) = nats_url() else { return };
    let run = unique();
    let cfg = config(&url, &run);
    let mut fx = Fixture::new();
    let head = fx.write("docs", 1);

    let publisher = fx.svc.publish_events_to_nats(cfg.clone()).unwrap();
    let twice = fx.svc.publish_events_to_nats(cfg.clone());
    assert!(twice.is_err(), "one consumer name, one registration");
    fx.svc.follow_feeds();

    let (store_id, expected) = fx.expected();
    let messages = stream_messages(&url, &cfg.stream);
    assert_published_once(&messages, &expected, &store_id, &cfg.subject_prefix);
    assert_eq!(publisher.status().acked_through, head);
    drop_stream(&url, &cfg.stream);
}

/// A stream of that name that captures other subjects is not written
/// around: the pass fails, saying what the stream captures.
#[test]
fn o5_nats_existing_stream_must_capture_the_prefix() {
    let Some(url) = nats_url() else { return };
    let run = unique();
    let cfg = config(&url, &run);
    runtime().block_on(async {
        let js = jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
        js.create_stream(jetstream::stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![format!("kxother.{run}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let fx = Fixture::new();
    fx.write("docs", 1);
    let publisher = NatsPublisher::new(cfg.clone()).unwrap();
    let err = publisher.follow(&fx.svc).unwrap_err();
    assert!(err.to_string().contains("captures"), "{err}");
    assert_eq!(fx.cursor("nats"), 0);
    assert!(stream_messages(&url, &cfg.stream).is_empty());
    drop_stream(&url, &cfg.stream);
}
