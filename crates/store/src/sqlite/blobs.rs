//! Content-addressed blobs stored in chunks.
//!
//! Small content (one chunk) is hashed in memory and inserted once. Larger
//! content streams in: chunks are written under a staging key while being
//! hashed, then renamed to the digest (or dropped if that digest already
//! exists). Either way the blob appears in the same transaction as the
//! revision that needs it.

use std::io::{self, Read};

use kontextual_model::{Digest, DigestWriter, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteBackend, micros, sql_err};
use crate::port::Content;
use crate::{Result, StoreError};

pub(crate) const CHUNK: usize = 1 << 20;

/// Reads until `buf` is full or the reader is exhausted.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn blob_exists(conn: &Connection, digest: &Digest) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")
        .map_err(sql_err)?
        .query_row([digest.hex()], |_| Ok(()))
        .optional()
        .map_err(sql_err)?
        .is_some())
}

fn insert_chunk(conn: &Connection, key: &str, idx: i64, data: &[u8]) -> Result<()> {
    conn.prepare_cached("INSERT INTO blob_chunks (digest, idx, data) VALUES (?1, ?2, ?3)")
        .map_err(sql_err)?
        .execute(params![key, idx, data])
        .map_err(sql_err)?;
    Ok(())
}

fn insert_blob(
    conn: &Connection,
    digest: &Digest,
    size: u64,
    chunks: i64,
    now: Timestamp,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO blobs (digest, size, chunks, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(sql_err)?
    .execute(params![digest.hex(), size as i64, chunks, micros(now)])
    .map_err(sql_err)?;
    Ok(())
}

/// Drains a content reader before the write transaction starts: content of
/// one chunk or less into memory, larger content into an anonymous temporary
/// file in `spool_dir` (the data directory, so it is on the same disk; the
/// system temp dir for memory stores). The writer then streams from local
/// disk. Reading errors surface here, before anything is locked.
pub(crate) fn stage(
    mut r: Box<dyn Read + Send>,
    spool_dir: Option<&std::path::Path>,
) -> Result<Content> {
    let mut head = Vec::with_capacity(64 * 1024);
    (&mut *r)
        .take(CHUNK as u64)
        .read_to_end(&mut head)
        .map_err(|e| StoreError::io("reading content", e))?;
    if head.len() < CHUNK {
        return Ok(Content::Bytes(head));
    }
    let file = match spool_dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
    .map_err(|e| StoreError::io("creating a spool file for large content", e))?;
    let mut w = std::io::BufWriter::with_capacity(CHUNK, file);
    std::io::Write::write_all(&mut w, &head).map_err(|e| StoreError::io("spooling content", e))?;
    io::copy(&mut r, &mut w).map_err(|e| StoreError::io("reading content", e))?;
    let mut file = w
        .into_inner()
        .map_err(|e| StoreError::io("spooling content", e.into_error()))?;
    io::Seek::rewind(&mut file).map_err(|e| StoreError::io("spooling content", e))?;
    Ok(Content::Reader(Box::new(file)))
}

/// Stores `content` (deduplicated) and returns its digest and size.
/// `Content::Keep` is resolved by the caller.
pub(crate) fn store(conn: &Connection, content: Content, now: Timestamp) -> Result<(Digest, u64)> {
    match content {
        Content::Keep => Err(StoreError::InvalidInput("content is required".to_owned())),
        Content::Bytes(bytes) => store_small(conn, &bytes, now),
        Content::Reader(mut r) => {
            // Most content fits one chunk: read it without zeroing a whole
            // chunk buffer, and only switch to streaming when it does not.
            let mut buf = Vec::with_capacity(64 * 1024);
            (&mut *r)
                .take(CHUNK as u64)
                .read_to_end(&mut buf)
                .map_err(|e| StoreError::io("reading content", e))?;
            if buf.len() < CHUNK {
                return store_small(conn, &buf, now);
            }
            let n = buf.len();
            let staging = format!("staging:{}", uuid::Uuid::now_v7());
            let mut hasher = DigestWriter::new();
            let mut idx = 0i64;
            let mut len = n;
            loop {
                hasher.update(&buf[..len]);
                insert_chunk(conn, &staging, idx, &buf[..len])?;
                idx += 1;
                if len < CHUNK {
                    break;
                }
                len = fill(&mut *r, &mut buf).map_err(|e| StoreError::io("reading content", e))?;
                if len == 0 {
                    break;
                }
            }
            let (digest, size) = hasher.finish();
            if blob_exists(conn, &digest)? {
                conn.execute("DELETE FROM blob_chunks WHERE digest = ?1", [&staging])
                    .map_err(sql_err)?;
            } else {
                conn.execute(
                    "UPDATE blob_chunks SET digest = ?1 WHERE digest = ?2",
                    params![digest.hex(), staging],
                )
                .map_err(sql_err)?;
                insert_blob(conn, &digest, size, idx, now)?;
            }
            Ok((digest, size))
        }
    }
}

/// Content of one chunk or less: one row, inline (`chunks = 0`).
fn store_small(conn: &Connection, bytes: &[u8], now: Timestamp) -> Result<(Digest, u64)> {
    let digest = Digest::of(bytes);
    if !blob_exists(conn, &digest)? {
        conn.prepare_cached(
            "INSERT INTO blobs (digest, size, chunks, created_at, data) VALUES (?1, ?2, 0, ?3, ?4)",
        )
        .map_err(sql_err)?
        .execute(params![
            digest.hex(),
            bytes.len() as i64,
            micros(now),
            bytes
        ])
        .map_err(sql_err)?;
    }
    Ok((digest, bytes.len() as u64))
}

/// Removes the given blobs unless some revision with available content still needs them.
pub(crate) fn collect(conn: &Connection, digests: &[Digest]) -> Result<u64> {
    let mut removed = 0;
    for d in digests {
        let needed = conn
            .query_row(
                "SELECT 1 FROM revisions WHERE digest = ?1 AND content_available = 1 LIMIT 1",
                [d.hex()],
                |_| Ok(()),
            )
            .optional()
            .map_err(sql_err)?
            .is_some();
        if !needed {
            conn.execute("DELETE FROM blob_chunks WHERE digest = ?1", [d.hex()])
                .map_err(sql_err)?;
            removed += conn
                .execute("DELETE FROM blobs WHERE digest = ?1", [d.hex()])
                .map_err(sql_err)? as u64;
        }
    }
    Ok(removed)
}

/// Streams a blob chunk by chunk, each fetched in its own short read.
pub(crate) struct ChunkReader {
    backend: SqliteBackend,
    digest: Digest,
    /// Hash of what was handed out so far; checked at the end, so a reader
    /// never finishes cleanly on corrupted content.
    hasher: Option<DigestWriter>,
    chunks: i64,
    next: i64,
    buf: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    pub(crate) fn open(backend: &SqliteBackend, digest: &Digest) -> Result<Self> {
        let found = backend.read(|c| {
            c.query_row(
                "SELECT chunks, data FROM blobs WHERE digest = ?1",
                [digest.hex()],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)),
            )
            .optional()
            .map_err(sql_err)
        })?;
        let (chunks, inline) =
            found.ok_or_else(|| StoreError::not_found(format!("content {digest}")))?;
        let mut hasher = DigestWriter::new();
        let buf = match (chunks, inline) {
            (0, Some(data)) => {
                hasher.update(&data);
                data
            }
            (0, None) => {
                return Err(StoreError::Corrupted(format!(
                    "content {digest} has no bytes"
                )));
            }
            _ => Vec::new(),
        };
        Ok(ChunkReader {
            backend: backend.clone(),
            digest: *digest,
            hasher: Some(hasher),
            chunks,
            next: 0,
            buf,
            pos: 0,
        })
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next >= self.chunks {
                if let Some(h) = self.hasher.take() {
                    let (actual, _) = h.finish();
                    if actual != self.digest {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "content {} is corrupted: the stored bytes hash to {actual}",
                                self.digest
                            ),
                        ));
                    }
                }
                return Ok(0);
            }
            let (digest, idx) = (self.digest.hex(), self.next);
            let data = self
                .backend
                .read(|c| {
                    c.prepare_cached("SELECT data FROM blob_chunks WHERE digest = ?1 AND idx = ?2")
                        .map_err(sql_err)?
                        .query_row(params![digest, idx], |r| r.get::<_, Vec<u8>>(0))
                        .optional()
                        .map_err(sql_err)
                })
                .map_err(io::Error::other)?;
            self.buf = data.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("chunk {idx} of content {} is missing", self.digest),
                )
            })?;
            self.pos = 0;
            self.next += 1;
            if let Some(h) = &mut self.hasher {
                h.update(&self.buf);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
