//! Kontextual's webhooks domain (requirement O5), following Standard
//! Webhooks 1.0.
//!
//! The service, on the kernel:
//!
//! - [`service`]: create, list, show, update, enable/disable, delete,
//!   rotate the secret, deliveries, resend — admin-scoped, audited.
//! - [`dispatch`]: the feed consumer that turns each outbox event into one
//!   delivery per matching webhook, with the jobs that send them, in one
//!   transaction with its cursor.
//! - [`jobs`]: `webhook.deliver_batch` (the first attempts of a webhook's
//!   fresh deliveries; what fails or is not reached goes on as its own
//!   job), `webhook.deliver` (one attempt per job attempt, on the schedule,
//!   410 and five days of failure disable) and `webhook.recover`.
//!
//! The pure parts it is built from:
//!
//! - [`signing`]: `whsec_` secrets, `v1` HMAC-SHA256 signatures, the three
//!   `webhook-*` headers (several signatures while a secret rotates) and
//!   constant-time verification with a timestamp tolerance.
//! - [`ssrf`]: which addresses a delivery may never reach (loopback, private,
//!   link-local, metadata, tunnels embedding those, …), URL parsing with the
//!   `url` crate, and the operator's allowlist (`KONTEXTUAL_WEBHOOKS_ALLOW`).
//! - [`deliver`]: a blocking HTTP client that resolves each host once and
//!   checks every resolved address at connect time, never follows redirects
//!   and reports each attempt as delivered, failed or refused.
//! - [`schedule`]: the retry schedule with deterministic jitter, Retry-After
//!   and the five-day disable rule.
//!
//! ADR 0010 records the choices. **Invariant:** no secret ever reaches a log
//! line or a `Debug`/`Display` output.

pub mod deliver;
pub mod dispatch;
pub mod jobs;
pub mod schedule;
pub mod service;
pub mod signing;
pub mod ssrf;

pub use dispatch::{
    CONSUMER, DELIVERIES_PER_JOB, Dispatched, WebhookDispatcher, body_of, feed_consumer,
};
pub use jobs::{HAND_ON_AFTER, RECOVER_JOB, WebhooksHost, job_handlers, recover};
pub use service::{
    DEFAULT_IN_FLIGHT, MAX_IN_FLIGHT, NewWebhook, WebhookChange, WebhookDetail, Webhooks,
    WebhooksConfig, WithSecret,
};

pub use deliver::{
    Attempt, Client, ClientConfig, Lookup, MAX_BODY, RESPONSE_CAPTURE, SystemLookup,
    parse_retry_after, select_body,
};
pub use schedule::{DELAYS, DISABLE_AFTER, MAX_ATTEMPTS, next_delay, seed_of, should_disable};
pub use signing::{Headers, Secret, TOLERANCE, sign, unix_now, verify};
pub use ssrf::{ALLOW_ENV, AddressPolicy, AllowList, Destination, Forbidden, classify};

/// What can go wrong building or checking webhook inputs. Delivery outcomes
/// are not errors: they are [`Attempt`]s.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A secret must be written `whsec_<base64>`.
    #[error("a webhook secret must start with `whsec_`")]
    SecretPrefix,
    /// The part after `whsec_` is not standard base64.
    #[error("the webhook secret after `whsec_` is not valid base64")]
    SecretBase64,
    /// Standard Webhooks secrets are 24 to 64 bytes.
    #[error("a webhook secret must be 24 to 64 bytes, this one is {0} bytes")]
    SecretLength(usize),
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Rng(String),
    /// A message id is non-empty printable ASCII without `.` (it is part of
    /// the signed content and of a header).
    #[error("a webhook message id must be 1 to 255 printable ASCII characters without `.`")]
    MessageId,
    /// Signing needs at least one secret.
    #[error("no secret to sign with")]
    NoSecret,
    /// No signature in the header matches.
    #[error("no webhook signature matches")]
    SignatureMismatch,
    /// The timestamp is more than the tolerance away from now.
    #[error("webhook timestamp {timestamp} is outside the tolerance of now ({now})")]
    Timestamp {
        /// The message's timestamp (Unix seconds).
        timestamp: i64,
        /// The verifier's clock (Unix seconds).
        now: i64,
    },
    /// The URL does not parse.
    #[error("invalid webhook URL: {0}")]
    Url(String),
    /// Only `http` and `https` are delivered to.
    #[error("webhook URLs must be http or https, not `{0}`")]
    Scheme(String),
    /// `user:password@` in a URL would travel in the clear and end up in logs.
    #[error("webhook URLs may not carry credentials (user:password@)")]
    Credentials,
    /// The URL has no host.
    #[error("a webhook URL needs a host")]
    MissingHost,
    /// An allowlist entry is not a CIDR or an address.
    #[error("allowlist entry `{entry}` is not an IP network (CIDR) or address: {reason}")]
    AllowEntry {
        /// The entry as written.
        entry: String,
        /// Why it does not parse.
        reason: String,
    },
}
