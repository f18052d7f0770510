//! Uploads are streamed, not buffered (X4): the body of an artifact PUT is
//! read chunk by chunk on the blocking thread that stores it, so it flows
//! into the store's spool (a temporary file in the data directory for
//! content of 1 MiB or more, as a CLI `artifact put` of a file does) and is
//! never held whole in memory. Bodies that may be large — declared above
//! [`LARGE_BODY`], or of unknown length — also take one of a fixed number of
//! slots for the whole request, so a burst of large uploads waits (its bytes
//! stay in the clients' socket buffers) instead of multiplying the memory
//! each one needs on its way in (docs/reliability.md states the bound).

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::Problem;

/// Bodies declared larger than this (or of unknown length) take a slot.
pub const LARGE_BODY: u64 = 1 << 20;

/// Large uploads in flight at once, by default.
pub const DEFAULT_LARGE_UPLOADS: usize = 4;

/// The server-wide limits on upload bodies.
pub struct Uploads {
    /// The largest body accepted.
    pub max_body: u64,
    slots: Arc<Semaphore>,
}

impl Uploads {
    pub fn new(max_body: u64, large_slots: usize) -> Uploads {
        Uploads {
            max_body,
            slots: Arc::new(Semaphore::new(large_slots.max(1))),
        }
    }

    /// Waits for a slot when the body may be large; `None` for small ones.
    pub async fn admit(&self, headers: &HeaderMap) -> Option<OwnedSemaphorePermit> {
        if declared_length(headers).is_some_and(|n| n <= LARGE_BODY) {
            return None;
        }
        // the semaphore is never closed
        self.slots.clone().acquire_owned().await.ok()
    }
}

/// The body length the client declared.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Why a body stopped before its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// More bytes arrived than the server accepts.
    TooLarge(u64),
    /// The connection failed or the client gave up mid-body.
    Broken(String),
}

impl Cut {
    pub fn problem(&self) -> Problem {
        match self {
            Cut::TooLarge(limit) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than this server accepts: at most {limit} bytes ({} MiB, set by `kontextual serve --max-body-mb`)",
                    limit / (1024 * 1024)
                ),
            ),
            Cut::Broken(why) => Problem::bad_request(format!(
                "the body ended before it was complete ({why}); nothing was stored"
            )),
        }
    }
}

/// A synchronous reader over a request body, for a blocking thread: each
/// read waits for the next chunk on the runtime. What stopped it early is
/// kept in the shared [`Cut`] slot for the handler to answer with.
pub struct BodyReader {
    stream: axum::body::BodyDataStream,
    runtime: tokio::runtime::Handle,
    chunk: Bytes,
    read: u64,
    limit: u64,
    done: bool,
    cut: Arc<Mutex<Option<Cut>>>,
    /// Resolves when the request is abandoned (its handler dropped, e.g.
    /// on the request timeout): the read ends instead of waiting forever.
    abandoned: tokio::sync::oneshot::Receiver<()>,
}

/// Held by the handler while its body is read; dropping it ends the read.
pub struct Reading(#[allow(dead_code)] tokio::sync::oneshot::Sender<()>);

impl BodyReader {
    /// Must be called on the runtime (it keeps a handle to it).
    pub fn new(
        body: axum::body::Body,
        limit: u64,
    ) -> (BodyReader, Reading, Arc<Mutex<Option<Cut>>>) {
        let cut = Arc::new(Mutex::new(None));
        let (alive, abandoned) = tokio::sync::oneshot::channel();
        (
            BodyReader {
                stream: body.into_data_stream(),
                runtime: tokio::runtime::Handle::current(),
                chunk: Bytes::new(),
                read: 0,
                limit,
                done: false,
                cut: cut.clone(),
                abandoned,
            },
            Reading(alive),
            cut,
        )
    }

    fn stop(&mut self, cut: Cut) -> io::Error {
        self.done = true;
        let e = io::Error::other(match &cut {
            Cut::TooLarge(n) => format!("the body is over the limit of {n} bytes"),
            Cut::Broken(why) => why.clone(),
        });
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = Some(cut);
        e
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.done {
                return Ok(0);
            }
            let next = self.runtime.block_on(futures_util::future::select(
                self.stream.next(),
                &mut self.abandoned,
            ));
            let next = match next {
                futures_util::future::Either::Left((next, _)) => next,
                futures_util::future::Either::Right(_) => {
                    return Err(self.stop(Cut::Broken("the request was abandoned".to_owned())));
                }
            };
            match next {
                None => {
                    self.done = true;
                    return Ok(0);
                }
                Some(Ok(b)) => {
                    self.read = self.read.saturating_add(b.len() as u64);
                    if self.read > self.limit {
                        return Err(self.stop(Cut::TooLarge(self.limit)));
                    }
                    self.chunk = b;
                }
                Some(Err(e)) => return Err(self.stop(Cut::Broken(e.to_string()))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}
