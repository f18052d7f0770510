//! Publishes the store's change feed to NATS JetStream (O5): a feed
//! consumer ([`NatsPublisher`], registered as `nats`) that sends every
//! outbox event as its CloudEvents 1.0 JSON to
//! `<prefix>.<namespace>.<event type>`, with `Nats-Msg-Id` =
//! `<store id>:<event id>`, waits for JetStream's acknowledgement of each
//! message, and only then acknowledges the feed position. A crash or a
//! failure between publishing and acknowledging re-publishes on the next
//! pass; the broker drops the repeat within its duplicate window
//! (at-least-once delivery, de-duplicated by the broker).
//!
//! Invariant: the feed cursor never passes an event the broker has not
//! acknowledged. A broker that is down never blocks the feed follower for
//! longer than the connect and acknowledgement timeouts, and failing
//! passes back off (1 s doubling to 30 s) before they try again.
//! Boundary: the only crate that knows the NATS client (`async-nats`) and
//! the only one that runs an async runtime for it; the kernel and the
//! domains never see it. It stands on model, store, kernel and events.

mod publisher;
pub mod subject;

use std::time::Duration;

use kontextual_kernel::{DomainError, ErrorKind, Kernel};

pub use publisher::{NatsPublisher, NatsStatus, message_id};

/// The feed consumer name the publisher acknowledges under by default.
pub const CONSUMER: &str = "nats";
/// Where events go unless configured otherwise.
pub const DEFAULT_SUBJECT_PREFIX: &str = "kontextual.events";
/// The JetStream stream that captures them unless configured otherwise.
pub const DEFAULT_STREAM: &str = "KONTEXTUAL_EVENTS";

/// What the publisher needs from the process it runs in: the kernel (and
/// through it the store's feed). The composition root implements it.
pub trait NatsHost {
    fn kernel(&self) -> &Kernel;
}

/// Where and how to publish.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// `nats://host:port` (several, comma-separated, for a cluster;
    /// `tls://` for TLS; credentials as `nats://user:pass@host`).
    pub url: String,
    /// Subjects are `<prefix>.<namespace>.<event type>`.
    pub subject_prefix: String,
    /// The stream that captures `<prefix>.>`; created if missing.
    pub stream: String,
    /// The feed consumer name acknowledgements are recorded under (one
    /// per NATS target; retention keeps what it has not published).
    pub consumer: String,
    /// The longest a connection attempt (with the stream check) may take.
    pub connect_timeout: Duration,
    /// The longest to wait for JetStream to acknowledge a message.
    pub ack_timeout: Duration,
    /// Events published per batch; a batch's acknowledgements are awaited
    /// together and its position acknowledged after the last.
    pub batch: u32,
    /// The duplicate window of a stream this creates (a stream that
    /// exists keeps its own).
    pub duplicate_window: Duration,
    /// The longest pause between attempts after failures.
    pub max_backoff: Duration,
}

impl NatsConfig {
    /// The defaults for `url`: prefix `kontextual.events`, stream
    /// `KONTEXTUAL_EVENTS`, consumer `nats`, connect 2 s, ack 5 s,
    /// batches of 256, a two-minute duplicate window, back-off up to 30 s.
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            stream: DEFAULT_STREAM.to_owned(),
            consumer: CONSUMER.to_owned(),
            connect_timeout: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(5),
            batch: 256,
            duplicate_window: Duration::from_secs(120),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// Checks what can be checked without a server: the URL parses, the
    /// prefix and stream name are valid, the consumer name is usable.
    pub fn check(&self) -> Result<(), NatsError> {
        publisher::server_addrs(&self.url)?;
        subject::check_prefix(&self.subject_prefix)?;
        subject::check_stream_name(&self.stream)?;
        if self.consumer.is_empty()
            || self.consumer.len() > 128
            || self.consumer.chars().any(char::is_control)
        {
            return Err(NatsError::Config(format!(
                "feed consumer name {:?} must be 1-128 printable characters",
                self.consumer
            )));
        }
        if self.batch == 0 {
            return Err(NatsError::Config("batch must be at least 1".to_owned()));
        }
        Ok(())
    }
}

/// What went wrong publishing. URLs in messages never carry credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The configuration cannot work (a bad URL, prefix or stream name).
    #[error("NATS configuration: {0}")]
    Config(String),
    /// No connection within the connect timeout, or refused.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The connection was lost; the next pass connects again.
    #[error("lost the connection to NATS at {url}")]
    Disconnected { url: String },
    /// The stream is missing and cannot be created, or does not capture
    /// the configured subjects.
    #[error("NATS stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    /// A message was not accepted (or its acknowledgement did not come).
    #[error("publishing event {seq} to {subject}: {reason}")]
    Publish {
        seq: u64,
        subject: String,
        reason: String,
    },
    /// A batch did not finish within its time bound.
    #[error("publishing to NATS took longer than {0:?}; the batch will be sent again")]
    Timeout(Duration),
    /// The publisher's own machinery failed (its runtime).
    #[error("NATS publisher: {0}")]
    Internal(String),
}

impl NatsError {
    /// The kernel's kind: bad configuration is the caller's input; the rest
    /// is a broker that is not available (retryable).
    pub fn kind(&self) -> ErrorKind {
        match self {
            NatsError::Config(_) => ErrorKind::InvalidInput,
            NatsError::Internal(_) => ErrorKind::Internal,
            _ => ErrorKind::Unavailable,
        }
    }
}

impl From<NatsError> for kontextual_kernel::Error {
    fn from(e: NatsError) -> Self {
        kontextual_kernel::Error::Domain(DomainError::new(e.kind(), e))
    }
}
