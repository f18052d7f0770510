//! The publisher: a [`FeedConsumer`] whose pass sends each batch of feed
//! events to JetStream, waits for every acknowledgement, and only then
//! lets the feed runtime acknowledge the batch's last seq. It owns a small
//! tokio runtime (one worker thread, created on first use) for the NATS
//! client, and blocks on it from the follower thread with bounded
//! timeouts. After a failure it drops the connection and waits (1 s,
//! doubling up to the configured maximum) before the next attempt; passes
//! during the wait return at once, so other consumers are not held up.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_nats::{ConnectOptions, ServerAddr};
use kontextual_events::{CloudEvent, source_base};
use kontextual_kernel::{FeedConsumer, FeedFinish, FeedPass, catch_up};
use kontextual_model::OutboxEvent;
use kontextual_store::Store;
use tokio::runtime::Runtime;

use crate::{NatsConfig, NatsError, NatsHost, subject};

/// The first pause after a failure; it doubles up to `max_backoff`.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// What the CloudEvents NATS binding calls a structured-mode message.
const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Publishes the change feed to a JetStream stream (see the crate docs).
/// Register it as a feed consumer; `follow` is one bounded pass.
pub struct NatsPublisher {
    cfg: NatsConfig,
    /// The URL without credentials, for messages.
    shown_url: String,
    /// Held for a whole pass, so passes never overlap.
    run: Mutex<Run>,
    /// Readable while a pass runs.
    status: Mutex<NatsStatus>,
}

/// How the publisher is doing, for health reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsStatus {
    /// Connected to a server (as of the last pass).
    pub connected: bool,
    /// The last event seq JetStream acknowledged and the feed recorded.
    pub acked_through: u64,
    /// Messages JetStream stored since this process started.
    pub published: u64,
    /// Messages JetStream acknowledged as duplicates (sent again after a
    /// failure or crash, dropped by the broker).
    pub duplicates: u64,
    /// Failed passes in a row (0 once one succeeds).
    pub failures: u32,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

/// What a pass needs and keeps between passes.
struct Run {
    runtime: Option<Runtime>,
    link: Option<Link>,
    /// No attempt before this, after a failure.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Whether the first pass has said where publishing starts.
    announced: bool,
}

/// A connection with the stream checked.
struct Link {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl NatsPublisher {
    /// A publisher for `cfg` (checked here; nothing connects until the
    /// first pass that has events to publish).
    pub fn new(cfg: NatsConfig) -> Result<Self, NatsError> {
        cfg.check()?;
        Ok(NatsPublisher {
            shown_url: redact(&cfg.url),
            cfg,
            run: Mutex::new(Run {
                runtime: None,
                link: None,
                retry_at: None,
                backoff: MIN_BACKOFF,
                announced: false,
            }),
            status: Mutex::new(NatsStatus::default()),
        })
    }

    pub fn config(&self) -> &NatsConfig {
        &self.cfg
    }

    /// How the publisher is doing (never waits for a pass).
    pub fn status(&self) -> NatsStatus {
        lock(&self.status).clone()
    }

    /// Events in the feed that JetStream has not acknowledged yet.
    pub fn lag<H: NatsHost>(&self, host: &H) -> kontextual_kernel::Result<u64> {
        let store = host.kernel().store();
        let head = store.feed().position()?.last_seq;
        Ok(head.saturating_sub(self.stored_cursor(store)?))
    }

    /// The feed position recorded under this publisher's consumer name
    /// (0 when it never acknowledged: publishing starts with the oldest
    /// event the store retains).
    fn stored_cursor(&self, store: &Store) -> kontextual_kernel::Result<u64> {
        Ok(store
            .feed()
            .cursors()?
            .into_iter()
            .find(|(name, _)| *name == self.cfg.consumer)
            .map_or(0, |(_, cursor)| cursor))
    }

    /// One pass: connect if needed, publish what the feed has after the
    /// recorded cursor, batch by batch.
    fn pass(&self, run: &mut Run, store: &Store) -> kontextual_kernel::Result<()> {
        let position = store.feed().position()?;
        let cursor = self.stored_cursor(store)?;
        lock(&self.status).acked_through = cursor;
        if cursor >= position.last_seq {
            return Ok(());
        }
        if !run.announced {
            run.announced = true;
            let pruned = store.feed().pruned_through()?;
            if pruned > cursor {
                tracing::warn!(
                    consumer = %self.cfg.consumer,
                    pruned_through = pruned,
                    "publishing to NATS starts after events retention already deleted; those are not published"
                );
            }
            tracing::info!(
                consumer = %self.cfg.consumer,
                url = %self.shown_url,
                stream = %self.cfg.stream,
                after = cursor.max(pruned),
                "publishing the event feed to NATS JetStream"
            );
        }
        if run.runtime.is_none() {
            run.runtime = Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("kontextual-nats")
                    .enable_all()
                    .build()
                    .map_err(|e| NatsError::Internal(format!("starting its runtime: {e}")))?,
            );
        }
        let Some(rt) = run.runtime.as_ref() else {
            return Err(NatsError::Internal("no runtime".to_owned()).into());
        };
        if run.link.is_none() {
            let bound = self.cfg.connect_timeout + self.cfg.ack_timeout;
            let link = block_on(rt, async {
                tokio::time::timeout(bound, self.connect())
                    .await
                    .map_err(|_| NatsError::Connect {
                        url: self.shown_url.clone(),
                        reason: format!("no answer within {bound:?}"),
                    })?
            })??;
            run.link = Some(link);
        }
        let Some(link) = run.link.as_ref() else {
            return Err(NatsError::Internal("no connection".to_owned()).into());
        };
        if link.client.connection_state() != async_nats::connection::State::Connected {
            return Err(NatsError::Disconnected {
                url: self.shown_url.clone(),
            }
            .into());
        }
        lock(&self.status).connected = true;
        let mut pass = Pass {
            publisher: self,
            rt,
            link,
            source_base: source_base(&position.store_id),
            store_id: &position.store_id,
            cursor,
            uncommitted: false,
        };
        catch_up(
            store,
            &self.cfg.consumer,
            self.cfg.batch,
            &mut pass,
            FeedFinish::Commit,
        )
    }

    /// Connects and makes sure the stream exists and captures the prefix.
    async fn connect(&self) -> Result<Link, NatsError> {
        let addrs = server_addrs(&self.cfg.url)?;
        let client = ConnectOptions::new()
            .name("kontextual")
            .connection_timeout(self.cfg.connect_timeout)
            .request_timeout(Some(self.cfg.ack_timeout))
            .connect(addrs)
            .await
            .map_err(|e| NatsError::Connect {
                url: self.shown_url.clone(),
                reason: e.to_string(),
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(self.cfg.ack_timeout);
        let failed = |reason: String| NatsError::Stream {
            stream: self.cfg.stream.clone(),
            reason,
        };
        let stream = js
            .get_or_create_stream(stream::Config {
                name: self.cfg.stream.clone(),
                subjects: vec![subject::stream_subject(&self.cfg.subject_prefix)],
                duplicate_window: self.cfg.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        let subjects = &stream.cached_info().config.subjects;
        if !subject::covers(subjects, &self.cfg.subject_prefix) {
            return Err(failed(format!(
                "it exists and captures {subjects:?}, not {}; add that subject to it or choose another stream",
                subject::stream_subject(&self.cfg.subject_prefix)
            )));
        }
        Ok(Link { client, js })
    }

    /// Publishes `events` (pipelined), then waits for every
    /// acknowledgement. Returns the last seq, all of which JetStream holds.
    fn publish_batch(
        &self,
        rt: &Runtime,
        link: &Link,
        source_base: &str,
        store_id: &str,
        events: &[OutboxEvent],
    ) -> Result<u64, NatsError> {
        let Some(last) = events.last() else {
            return Err(NatsError::Internal("an empty batch".to_owned()));
        };
        let bound = self.cfg.connect_timeout + self.cfg.ack_timeout;
        let work = async {
            let mut acks = Vec::with_capacity(events.len());
            for event in events {
                let (subject, message) =
                    message(&self.cfg.subject_prefix, source_base, store_id, event)?;
                let failed = |e: &dyn std::fmt::Display| NatsError::Publish {
                    seq: event.seq,
                    subject: subject.clone(),
                    reason: e.to_string(),
                };
                let ack = link
                    .js
                    .send_publish(subject.clone(), message)
                    .await
                    .map_err(|e| failed(&e))?;
                acks.push((event.seq, subject, ack));
            }
            let mut duplicates = 0u64;
            for (seq, subject, ack) in acks {
                let ack = ack.await.map_err(|e| NatsError::Publish {
                    seq,
                    subject,
                    reason: e.to_string(),
                })?;
                if ack.duplicate {
                    duplicates += 1;
                }
            }
            Ok::<u64, NatsError>(duplicates)
        };
        let duplicates = block_on(rt, async {
            tokio::time::timeout(bound, work)
                .await
                .map_err(|_| NatsError::Timeout(bound))?
        })??;
        let mut status = lock(&self.status);
        status.duplicates += duplicates;
        status.published += events.len() as u64 - duplicates;
        Ok(last.seq)
    }

    /// After a pass: reset the back-off, or drop the connection and wait.
    fn settle(&self, run: &mut Run, failure: Option<&kontextual_kernel::Error>) {
        let mut status = lock(&self.status);
        match failure {
            None => {
                if status.failures > 0 {
                    tracing::info!(
                        consumer = %self.cfg.consumer,
                        failed_attempts = status.failures,
                        "publishing to NATS again"
                    );
                }
                status.failures = 0;
                status.last_error = None;
                run.retry_at = None;
                run.backoff = MIN_BACKOFF;
            }
            Some(e) => {
                // a fresh connection and stream check next time
                run.link = None;
                status.connected = false;
                status.failures = status.failures.saturating_add(1);
                status.last_error = Some(e.to_string());
                run.retry_at = Some(Instant::now() + run.backoff);
                run.backoff = (run.backoff * 2).min(self.cfg.max_backoff.max(MIN_BACKOFF));
            }
        }
    }
}

impl<H: NatsHost> FeedConsumer<H> for NatsPublisher {
    fn name(&self) -> &str {
        &self.cfg.consumer
    }

    /// One pass, unless the last failure's back-off has not passed (then
    /// nothing, at once). An error leaves the cursor where JetStream's
    /// last acknowledgement put it; the runtime logs it, and the back-off
    /// spaces those lines out.
    fn follow(&self, host: &H) -> kontextual_kernel::Result<()> {
        let mut run = lock(&self.run);
        if run.retry_at.is_some_and(|at| Instant::now() < at) {
            return Ok(());
        }
        let result = self.pass(&mut run, host.kernel().store());
        self.settle(&mut run, result.as_ref().err());
        result
    }
}

impl Drop for NatsPublisher {
    /// The runtime may be dropped inside another (the server's), where a
    /// blocking shutdown panics: it is shut down in the background.
    fn drop(&mut self) {
        let run = self.run.get_mut().unwrap_or_else(PoisonError::into_inner);
        run.link = None;
        if let Some(rt) = run.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// One pass over the feed: publishes each batch and reports it committed
/// (JetStream holds it), so the runtime acknowledges batch by batch.
struct Pass<'a> {
    publisher: &'a NatsPublisher,
    rt: &'a Runtime,
    link: &'a Link,
    source_base: String,
    store_id: &'a str,
    cursor: u64,
    uncommitted: bool,
}

impl FeedPass for Pass<'_> {
    fn cursor(&self) -> u64 {
        self.cursor
    }

    fn apply(&mut self, events: &[OutboxEvent]) -> kontextual_kernel::Result<bool> {
        self.cursor = self.publisher.publish_batch(
            self.rt,
            self.link,
            &self.source_base,
            self.store_id,
            events,
        )?;
        self.uncommitted = true;
        Ok(true)
    }

    fn uncommitted(&self) -> bool {
        self.uncommitted
    }

    fn commit(&mut self) -> kontextual_kernel::Result<u64> {
        self.uncommitted = false;
        lock(&self.publisher.status).acked_through = self.cursor;
        Ok(self.cursor)
    }
}

/// The message for one event: its subject, and the CloudEvent JSON with
/// `Nats-Msg-Id` and the structured-mode content type.
fn message(
    prefix: &str,
    source_base: &str,
    store_id: &str,
    event: &OutboxEvent,
) -> Result<(String, PublishMessage), NatsError> {
    let envelope = CloudEvent::of(event, source_base);
    let body = serde_json::to_vec(&envelope)
        .map_err(|e| NatsError::Internal(format!("event {} as JSON: {e}", event.seq)))?;
    let subject = subject::event_subject(prefix, event.namespace.as_str(), &event.draft.kind);
    let message = PublishMessage::build()
        .payload(body.into())
        .message_id(message_id(store_id, &envelope.id))
        .header("content-type", CONTENT_TYPE);
    Ok((subject, message))
}

/// `Nats-Msg-Id` of an event: `<store id>:<CloudEvent id>`. The CloudEvent
/// id (the outbox seq) is unique only with its source, so the store id
/// keeps two stores publishing into one stream from dropping each other's
/// events as duplicates.
pub fn message_id(store_id: &str, event_id: &str) -> String {
    format!("{store_id}:{event_id}")
}

/// The servers of a URL list (`nats://a:4222,nats://b:4222`).
pub(crate) fn server_addrs(url: &str) -> Result<Vec<ServerAddr>, NatsError> {
    let addrs = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| NatsError::Config(format!("NATS URL {}: {e}", redact(s))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(NatsError::Config("the NATS URL is empty".to_owned()));
    }
    Ok(addrs)
}

/// A URL list with any `user:password@` replaced by `***@`.
pub(crate) fn redact(url: &str) -> String {
    url.split(',')
        .map(|part| {
            let (scheme, rest) = match part.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, part),
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..authority_end].rfind('@') {
                Some(at) => format!("***{}", &rest[at..]),
                None => rest.to_owned(),
            };
            match scheme {
                Some(scheme) => format!("{scheme}://{rest}"),
                None => rest,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `work` on the publisher's runtime from a plain thread (the feed
/// follower). Called from inside another runtime's context, a runtime
/// cannot block there, so a scoped thread does it.
fn block_on<F>(rt: &Runtime, work: F) -> Result<F::Output, NatsError>
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(rt.block_on(work));
    }
    std::thread::scope(|s| s.spawn(|| rt.block_on(work)).join())
        .map_err(|_| NatsError::Internal("the publishing thread panicked".to_owned()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o5_nats_urls_parse_and_credentials_are_redacted() {
        assert_eq!(server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        assert_eq!(
            server_addrs("nats://a:4222, nats://b:4222").unwrap().len(),
            2
        );
        assert!(server_addrs("").is_err());
        assert!(server_addrs(" , ").is_err());
        assert_eq!(
            redact("nats://user:secret@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(
            redact("nats://a:4222,tls://u:p@b:4222"),
            "nats://a:4222,tls://***@b:4222"
        );
        assert_eq!(redact("host:4222"), "host:4222");
        let e = server_addrs("nats://user:secret@[bad").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn o5_nats_message_ids_name_the_store() {
        assert_eq!(message_id("st-1", "42"), "st-1:42");
    }

    #[test]
    fn o5_nats_config_is_checked() {
        assert!(NatsConfig::new("nats://127.0.0.1:4222").check().is_ok());
        let mut cfg = NatsConfig::new("nats://127.0.0.1:4222");
        cfg.subject_prefix = "a.>".to_owned();
        assert!(matches!(cfg.check(), Err(NatsError::Config(_))));
        let mut cfg = NatsConfig::new("nats://127.0.0.1:4222");
        cfg.stream = "a.b".to_owned();
        assert!(NatsPublisher::new(cfg).is_err());
    }
}
