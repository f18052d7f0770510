//! Content-addressed blobs: up to 1 MiB inline in the `blobs` row, larger
//! content in 1 MiB `bytea` chunks (a `bytea` cannot be streamed whole).
//! Reads stream chunk by chunk and re-hash what they return.

use std::io::{self, Read};
use std::sync::Arc;

use crate::postgres::conn::Conn;
use crate::{Content, Result, StoreError};
use kontextual_model::{Digest, DigestWriter, Timestamp};

use crate::postgres::pg_err;

pub(crate) const CHUNK: usize = 1 << 20;

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

/// Drains a content reader before the write transaction starts (so the
/// writer lock is never held while waiting on a slow source): a chunk or
/// less into memory, more into an anonymous temporary file.
pub(crate) fn stage(mut r: Box<dyn Read + Send>) -> Result<Content> {
    let mut head = Vec::with_capacity(64 * 1024);
    (&mut *r)
        .take(CHUNK as u64)
        .read_to_end(&mut head)
        .map_err(|e| StoreError::io("reading content", e))?;
    if head.len() < CHUNK {
        return Ok(Content::Bytes(head));
    }
    let mut file = tempfile_in_tmp()?;
    io::Write::write_all(&mut file, &head).map_err(|e| StoreError::io("spooling content", e))?;
    io::copy(&mut r, &mut file).map_err(|e| StoreError::io("reading content", e))?;
    io::Seek::rewind(&mut file).map_err(|e| StoreError::io("spooling content", e))?;
    Ok(Content::Reader(Box::new(file)))
}

fn tempfile_in_tmp() -> Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("kontextual-spool-{}", uuid::Uuid::now_v7()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StoreError::io("creating a spool file", e))?;
    // unlinked at once: the open handle keeps it until the write is done
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

fn exists(c: &mut Conn, d: &Digest) -> Result<bool> {
    Ok(
        c.query_opt("SELECT 1 FROM blobs WHERE digest = $1", &[&d.hex()])
            .map_err(pg_err)?
            .is_some(),
    )
}

/// Stores content (deduplicated by digest); returns its digest and size.
pub(crate) fn store(c: &mut Conn, content: Content, now: Timestamp) -> Result<(Digest, u64)> {
    match content {
        Content::Keep => Err(StoreError::InvalidInput("content is required".to_owned())),
        Content::Bytes(bytes) if bytes.len() < CHUNK => store_small(c, &bytes, now),
        Content::Bytes(bytes) => store_chunked(c, &mut io::Cursor::new(bytes), now),
        Content::Reader(mut r) => {
            let mut buf = Vec::with_capacity(64 * 1024);
            (&mut *r)
                .take(CHUNK as u64)
                .read_to_end(&mut buf)
                .map_err(|e| StoreError::io("reading content", e))?;
            if buf.len() < CHUNK {
                return store_small(c, &buf, now);
            }
            store_chunked(c, &mut io::Cursor::new(buf).chain(r), now)
        }
    }
}

fn store_small(c: &mut Conn, bytes: &[u8], now: Timestamp) -> Result<(Digest, u64)> {
    let d = Digest::of(bytes);
    c.execute(
        "INSERT INTO blobs (digest, size, chunks, created_at, data) VALUES ($1, $2, 0, $3, $4) \
         ON CONFLICT (digest) DO NOTHING",
        &[
            &d.hex(),
            &(bytes.len() as i64),
            &now.as_microsecond(),
            &bytes,
        ],
    )
    .map_err(pg_err)?;
    Ok((d, bytes.len() as u64))
}

fn store_chunked(c: &mut Conn, r: &mut dyn Read, now: Timestamp) -> Result<(Digest, u64)> {
    let staging = format!("staging:{}", uuid::Uuid::now_v7());
    let mut hasher = DigestWriter::new();
    let mut buf = vec![0u8; CHUNK];
    let mut idx = 0i64;
    loop {
        let n = fill(r, &mut buf).map_err(|e| StoreError::io("reading content", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        c.execute(
            "INSERT INTO blob_chunks (digest, idx, data) VALUES ($1, $2, $3)",
            &[&staging, &idx, &&buf[..n]],
        )
        .map_err(pg_err)?;
        idx += 1;
        if n < CHUNK {
            break;
        }
    }
    let (digest, size) = hasher.finish();
    if exists(c, &digest)? {
        c.execute("DELETE FROM blob_chunks WHERE digest = $1", &[&staging])
            .map_err(pg_err)?;
    } else {
        c.execute(
            "UPDATE blob_chunks SET digest = $1 WHERE digest = $2",
            &[&digest.hex(), &staging],
        )
        .map_err(pg_err)?;
        c.execute(
            "INSERT INTO blobs (digest, size, chunks, created_at) VALUES ($1, $2, $3, $4)",
            &[&digest.hex(), &(size as i64), &idx, &now.as_microsecond()],
        )
        .map_err(pg_err)?;
    }
    Ok((digest, size))
}

/// Deletes blobs that no revision with available content needs any more.
pub(crate) fn collect(c: &mut Conn, digests: &[Digest]) -> Result<u64> {
    let mut n = 0;
    for d in digests {
        let needed = c
            .query_opt(
                "SELECT 1 FROM revisions WHERE digest = $1 AND content_available LIMIT 1",
                &[&d.hex()],
            )
            .map_err(pg_err)?
            .is_some();
        if !needed {
            c.execute("DELETE FROM blob_chunks WHERE digest = $1", &[&d.hex()])
                .map_err(pg_err)?;
            n += c
                .execute("DELETE FROM blobs WHERE digest = $1", &[&d.hex()])
                .map_err(pg_err)?;
        }
    }
    Ok(n)
}

/// Streams a blob, chunk by chunk, each read on a pooled connection;
/// the bytes are re-hashed and a mismatch at the end is `InvalidData`.
pub(crate) struct BlobReader {
    pool: Arc<crate::postgres::backend::Inner>,
    digest: Digest,
    inline: Option<io::Cursor<Vec<u8>>>,
    chunks: i64,
    next: i64,
    current: io::Cursor<Vec<u8>>,
    hasher: Option<DigestWriter>,
}

impl BlobReader {
    pub(crate) fn open(
        inner: Arc<crate::postgres::backend::Inner>,
        digest: &Digest,
    ) -> Result<BlobReader> {
        let row = inner
            .pool
            .read(|c| {
                c.query_opt(
                    "SELECT chunks, data FROM blobs WHERE digest = $1",
                    &[&digest.hex()],
                )
                .map_err(pg_err)
            })?
            .ok_or_else(|| StoreError::not_found(format!("content {digest}")))?;
        let chunks: i64 = row.get(0);
        let data: Option<Vec<u8>> = row.get(1);
        Ok(BlobReader {
            pool: inner,
            digest: *digest,
            inline: data.map(io::Cursor::new),
            chunks,
            next: 0,
            current: io::Cursor::new(Vec::new()),
            hasher: Some(DigestWriter::new()),
        })
    }

    fn verify(&mut self) -> io::Result<()> {
        if let Some(h) = self.hasher.take() {
            let (got, _) = h.finish();
            if got != self.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("content {} reads back as {got}", self.digest),
                ));
            }
        }
        Ok(())
    }
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = if let Some(inline) = &mut self.inline {
            inline.read(out)?
        } else {
            loop {
                let n = self.current.read(out)?;
                if n > 0 || self.next >= self.chunks {
                    break n;
                }
                let (digest, idx) = (self.digest.hex(), self.next);
                let row = self
                    .pool
                    .pool
                    .read(|c| {
                        c.query_opt(
                            "SELECT data FROM blob_chunks WHERE digest = $1 AND idx = $2",
                            &[&digest, &idx],
                        )
                        .map_err(pg_err)
                    })
                    .map_err(|e| io::Error::other(e.to_string()))?
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("chunk {} of content {} is missing", self.next, self.digest),
                        )
                    })?;
                self.current = io::Cursor::new(row.get(0));
                self.next += 1;
            }
        };
        if n == 0 {
            self.verify()?;
        } else if let Some(h) = &mut self.hasher {
            h.update(&out[..n]);
        }
        Ok(n)
    }
}
