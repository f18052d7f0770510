//! One delivery attempt over HTTP: a blocking `ureq` client whose resolver
//! is the SSRF gate.
//!
//! The gate sits where addresses come from. The client's resolver looks the
//! host up once (through an injectable [`Lookup`]), checks *every* address
//! with the [`AddressPolicy`] and hands the connector only checked addresses;
//! a name with any forbidden address is refused outright. IP-literal URLs
//! pass the same resolver, and a connector first in the chain checks the
//! addresses again just before the TCP connect. No proxy is used (a proxy
//! would be resolved instead of the target), so there is no second lookup
//! and no DNS-rebinding window between check and connect.
//!
//! Redirects are never followed: a `3xx` is a failed attempt. Following one
//! would send the signed body to a place the subscriber never registered,
//! and a redirect to `169.254.169.254` is the classic way around an SSRF
//! check (Standard Webhooks says the same).
//!
//! The response body is captured up to [`RESPONSE_CAPTURE`] bytes (lossy
//! UTF-8) for the delivery log; it is never forwarded anywhere.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectionDetails, Connector, NextTimeout, RustlsConnector, TcpConnector, Transport,
};

use crate::signing::Headers;
use crate::ssrf::{AddressPolicy, Destination, Forbidden};

/// Bodies larger than this (20 KiB) are replaced by the thin payload.
pub const MAX_BODY: usize = 20 * 1024;
/// How much of a response body is kept (1 KiB).
pub const RESPONSE_CAPTURE: usize = 1024;
/// The default request timeout (Standard Webhooks: 15–30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Idle keep-alive connections kept per receiver (host and port)…
const IDLE_PER_HOST: usize = 64;
/// … and in all.
const IDLE_IN_ALL: usize = 256;

/// Resolves a host name to addresses. Injectable so tests can make a name
/// resolve wherever they like.
pub trait Lookup: Send + Sync + 'static {
    /// The addresses of `host` (a name, never an IP literal).
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

impl<F> Lookup for F
where
    F: Fn(&str, u16) -> io::Result<Vec<IpAddr>> + Send + Sync + 'static,
{
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        self(host, port)
    }
}

/// The operating system's resolver (`getaddrinfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok((host, port).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// How a [`Client`] behaves.
#[derive(Clone)]
pub struct ClientConfig {
    /// Which addresses may be reached.
    pub policy: AddressPolicy,
    /// The whole attempt's deadline: lookup, connect, send, response head
    /// and the captured part of the body.
    pub timeout: Duration,
    /// The resolver.
    pub lookup: Arc<dyn Lookup>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            policy: AddressPolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            lookup: Arc::new(SystemLookup),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered `2xx`.
    Delivered {
        /// The status code.
        status: u16,
        /// From the start of the attempt to the response head.
        latency: Duration,
        /// The first [`RESPONSE_CAPTURE`] bytes of the response body.
        response: String,
    },
    /// No `2xx`: an error status (redirects included), a timeout, a refused
    /// connection, a TLS or DNS failure. Retry per the schedule.
    Failed {
        /// The status code, if a response arrived.
        status: Option<u16>,
        /// What went wrong, for the delivery log.
        error: String,
        /// The receiver's `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// `410 Gone`: the receiver asks to disable the endpoint.
        gone: bool,
        /// From the start of the attempt to its end.
        latency: Duration,
        /// The first [`RESPONSE_CAPTURE`] bytes of the response body.
        response: String,
    },
    /// The destination is a forbidden address; no connection was made.
    Refused {
        /// The address refused.
        addr: IpAddr,
        /// Its class.
        reason: Forbidden,
    },
}

/// Carried through `ureq`'s `io::Error` from the resolver or the guard.
#[derive(Debug)]
struct Refusal {
    addr: IpAddr,
    reason: Forbidden,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}", self.addr, self.reason)
    }
}

impl std::error::Error for Refusal {}

fn refusal(addr: IpAddr, reason: Forbidden) -> ureq::Error {
    ureq::Error::Io(io::Error::new(
        io::ErrorKind::PermissionDenied,
        Refusal { addr, reason },
    ))
}

/// The resolver: one lookup, every address checked.
struct GuardedResolver {
    policy: AddressPolicy,
    lookup: Arc<dyn Lookup>,
    timeout: Duration,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    /// Looks `host` up on a helper thread, bounded by the timeout (a stuck
    /// `getaddrinfo` cannot hold the worker past its deadline).
    fn lookup(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, ureq::Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let lookup = Arc::clone(&self.lookup);
        let name = host.to_owned();
        std::thread::Builder::new()
            .name("webhook-lookup".into())
            .spawn(move || {
                let _ = tx.send(lookup.lookup(&name, port));
            })
            .map_err(ureq::Error::Io)?;
        match rx.recv_timeout(self.timeout) {
            Ok(result) => Ok(result?),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(ureq::Error::Timeout(ureq::Timeout::Resolve))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ureq::Error::HostNotFound),
        }
    }
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri
            .host()
            .ok_or_else(|| ureq::Error::BadUri("no host".into()))?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ips = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.lookup(bare, port)?,
        };
        if ips.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        // Any forbidden address refuses the name: a name that also points
        // inside is not a public receiver.
        for ip in &ips {
            if let Err(reason) = self.policy.check(*ip) {
                tracing::warn!(host = %bare, addr = %ip, %reason, "webhook destination refused");
                return Err(refusal(*ip, reason));
            }
        }
        let mut out = self.empty();
        for ip in ips.into_iter().take(16) {
            out.push(SocketAddr::new(ip, port));
        }
        Ok(out)
    }
}

/// First in the connector chain: checks the addresses handed to the TCP
/// connector once more, so no path around the resolver reaches a socket.
#[derive(Debug)]
struct AddressGuard {
    policy: AddressPolicy,
}

impl<In: Transport> Connector<In> for AddressGuard {
    type Out = In;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<In>, ureq::Error> {
        if details.config.proxy().is_some() {
            return Err(ureq::Error::ConnectionFailed);
        }
        for addr in details.addrs.iter() {
            if let Err(reason) = self.policy.check(addr.ip()) {
                return Err(refusal(addr.ip(), reason));
            }
        }
        Ok(chained)
    }
}

/// A blocking webhook client. Cheap to share by reference across threads.
pub struct Client {
    agent: ureq::Agent,
    policy: AddressPolicy,
    /// An attempt's whole time bound (named in its timeout error).
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with this policy, timeout and resolver.
    pub fn new(config: ClientConfig) -> Client {
        let agent_config = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            // every worker thread keeps up to `in_flight` connections to a
            // busy endpoint; ureq's defaults (3 per host, 10 in all) would
            // close and reopen most of them between batches
            .max_idle_connections_per_host(IDLE_PER_HOST)
            .max_idle_connections(IDLE_IN_ALL)
            .user_agent(concat!("kontextual-webhooks/", env!("CARGO_PKG_VERSION")))
            .build();
        let connector = ()
            .chain(AddressGuard {
                policy: config.policy.clone(),
            })
            .chain(TcpConnector::default())
            .chain(RustlsConnector::default());
        let resolver = GuardedResolver {
            policy: config.policy.clone(),
            lookup: config.lookup,
            timeout: config.timeout,
        };
        Client {
            agent: ureq::Agent::with_parts(agent_config, connector, resolver),
            policy: config.policy,
            timeout: config.timeout,
        }
    }

    /// POSTs `body` (JSON) with the signed headers to `dest`, once.
    pub fn attempt(&self, dest: &Destination, headers: &Headers, body: &[u8]) -> Attempt {
        if let Err((addr, reason)) = self.policy.check_destination(dest) {
            tracing::warn!(addr = %addr, %reason, "webhook destination refused");
            return Attempt::Refused { addr, reason };
        }
        let start = Instant::now();
        let mut request = self
            .agent
            .post(dest.as_str())
            .header("content-type", "application/json");
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        let result = request.send(body);
        let latency = start.elapsed();
        let mut response = match result {
            Ok(response) => response,
            Err(err) => {
                if let Some(r) = refusal_in(&err) {
                    return Attempt::Refused {
                        addr: r.addr,
                        reason: r.reason,
                    };
                }
                tracing::debug!(host = %dest.host(), error = %err, "webhook attempt failed");
                // ureq says only which of its clocks ran out ("timeout: global")
                let within = self.timeout.as_secs_f64();
                let error = match err {
                    ureq::Error::Timeout(ureq::Timeout::Resolve) => {
                        format!("timeout: the host name was not resolved within {within} s")
                    }
                    ureq::Error::Timeout(_) => format!("timeout: no answer within {within} s"),
                    err => err.to_string(),
                };
                return Attempt::Failed {
                    status: None,
                    error,
                    retry_after: None,
                    gone: false,
                    latency,
                    response: String::new(),
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut captured = Vec::with_capacity(RESPONSE_CAPTURE);
        // A body that breaks off or times out still leaves what arrived.
        let _ = response
            .body_mut()
            .as_reader()
            .take(RESPONSE_CAPTURE as u64)
            .read_to_end(&mut captured);
        let text = String::from_utf8_lossy(&captured).into_owned();
        if (200..300).contains(&status) {
            return Attempt::Delivered {
                status,
                latency,
                response: text,
            };
        }
        let error = match status {
            300..=399 => format!(
                "redirect {status} not followed (to {})",
                location.as_deref().map_or("nowhere".into(), sanitize)
            ),
            410 => "410 Gone: the receiver asks to disable the endpoint".to_owned(),
            _ => format!("HTTP {status}"),
        };
        Attempt::Failed {
            status: Some(status),
            error,
            retry_after,
            gone: status == 410,
            latency,
            response: text,
        }
    }
}

/// The scheme, host and port of a `Location` (its path may carry tokens).
fn sanitize(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "a relative location".to_owned(),
    }
}

fn refusal_in(err: &ureq::Error) -> Option<&Refusal> {
    match err {
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<Refusal>(),
        _ => None,
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (relative to `now`;
/// a date in the past is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The body to send: `full` when it is at most [`MAX_BODY`] bytes, else the
/// thin payload (ids the receiver fetches details for).
pub fn select_body(full: &[u8], thin: impl FnOnce() -> Vec<u8>) -> Cow<'_, [u8]> {
    if full.len() > MAX_BODY {
        Cow::Owned(thin())
    } else {
        Cow::Borrowed(full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o5_retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sat, 05 Dec 2026 06:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sat, 05 Dec 2026 06:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sat, 05 Dec 2026 05:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn o5_large_bodies_go_thin() {
        let small = vec![b'a'; MAX_BODY];
        assert_eq!(select_body(&small, || b"thin".to_vec()).len(), MAX_BODY);
        let large = vec![b'a'; MAX_BODY + 1];
        assert_eq!(&*select_body(&large, || b"thin".to_vec()), b"thin");
    }

    #[test]
    fn o5_redirect_location_is_reduced_to_its_origin() {
        assert_eq!(
            sanitize("http://169.254.169.254/latest/meta-data/?t=x"),
            "http://169.254.169.254"
        );
        assert_eq!(sanitize("/elsewhere"), "a relative location");
    }
}
