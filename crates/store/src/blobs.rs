//! Content-addressed blobs, for both engines: content of less than one
//! chunk inline in its `blobs` row (`chunks = 0`), larger content in 1 MiB
//! `blob_chunks` rows. Large content streams in: it is spooled and hashed
//! before the write transaction ([`stage`]), which then writes its chunks
//! under the digest at once — or nothing, when that digest already exists.
//! (A reader that reaches [`store`] unstaged has its chunks written under a
//! staging key while being hashed, then renamed.) Either way the blob
//! appears in the same transaction as the revision that needs it. Reading a
//! blob back is the engines' own (`sqlite::blobs`, `postgres::blobs`).

use std::io::{self, Read};

use kontextual_model::{Digest, DigestWriter, Timestamp};

use crate::port::Content;
use crate::sql::{Tx, args};
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

/// Drains a content reader before the write transaction starts (so no
/// lock is held while waiting on a slow source): content of less than one
/// chunk into memory, more into an anonymous temporary file in `spool_dir`
/// (the data directory, so it is on the same disk; the system temp dir
/// without one). Reading errors surface here, before anything is locked.
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
    // hashed on the way to the spool: the transaction then writes the
    // chunks under their digest once (never staged and renamed, which made
    // SQLite copy the whole content again through an in-memory temp table)
    let mut w = Hashing {
        inner: io::BufWriter::with_capacity(CHUNK, file),
        hasher: DigestWriter::new(),
    };
    io::Write::write_all(&mut w, &head).map_err(|e| StoreError::io("spooling content", e))?;
    io::copy(&mut r, &mut w).map_err(|e| StoreError::io("reading content", e))?;
    let (digest, size) = w.hasher.finish();
    let mut file = w
        .inner
        .into_inner()
        .map_err(|e| StoreError::io("spooling content", e.into_error()))?;
    io::Seek::rewind(&mut file).map_err(|e| StoreError::io("spooling content", e))?;
    Ok(Content::Staged(crate::port::Staged { file, digest, size }))
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: DigestWriter,
}

impl<W: io::Write> io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Content whose digest and size are known: its chunks under its digest,
/// unless the blob exists.
fn store_known(
    tx: &mut Tx<'_>,
    digest: Digest,
    size: u64,
    file: &mut dyn Read,
    now: Timestamp,
) -> Result<(Digest, u64)> {
    if exists(tx, &digest)? {
        return Ok((digest, size));
    }
    let hex = digest.hex();
    let mut buf = vec![0u8; CHUNK];
    let (mut idx, mut read) = (0i64, 0u64);
    loop {
        let n = fill(file, &mut buf).map_err(|e| StoreError::io("reading spooled content", e))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        // a concurrent writer of the same content (PostgreSQL) wrote the
        // same bytes under the same key
        tx.execute(
            "INSERT INTO blob_chunks (digest, idx, data) VALUES (?1, ?2, ?3) \
             ON CONFLICT (digest, idx) DO NOTHING",
            args![&hex, idx, &buf[..n]],
        )?;
        idx += 1;
        if n < CHUNK {
            break;
        }
    }
    if read != size {
        return Err(StoreError::io(
            "reading spooled content",
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the spool file holds {read} bytes, {size} were written"),
            ),
        ));
    }
    tx.execute(
        "INSERT INTO blobs (digest, size, chunks, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (digest) DO NOTHING",
        args![&hex, size, idx, now],
    )?;
    Ok((digest, size))
}

fn exists(tx: &mut Tx<'_>, digest: &Digest) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM blobs WHERE digest = ?1",
            args![digest.hex()],
            |_| Ok(()),
        )?
        .is_some())
}

/// Stores `content` (deduplicated) and returns its digest and size.
/// `Content::Keep` is resolved by the caller.
pub(crate) fn store(tx: &mut Tx<'_>, content: Content, now: Timestamp) -> Result<(Digest, u64)> {
    match content {
        Content::Keep => Err(StoreError::InvalidInput("content is required".to_owned())),
        Content::Staged(mut s) => store_known(tx, s.digest, s.size, &mut s.file, now),
        Content::Bytes(bytes) if bytes.len() < CHUNK => store_small(tx, &bytes, now),
        Content::Bytes(bytes) => store_known(
            tx,
            Digest::of(&bytes),
            bytes.len() as u64,
            &mut io::Cursor::new(&bytes),
            now,
        ),
        Content::Reader(mut r) => {
            // Most content fits one chunk: read it without zeroing a whole
            // chunk buffer, and only switch to streaming when it does not.
            let mut head = Vec::with_capacity(64 * 1024);
            (&mut *r)
                .take(CHUNK as u64)
                .read_to_end(&mut head)
                .map_err(|e| StoreError::io("reading content", e))?;
            if head.len() < CHUNK {
                return store_small(tx, &head, now);
            }
            store_chunked(tx, &mut io::Cursor::new(head).chain(r), now)
        }
    }
}

/// Content of less than one chunk: one row, inline (`chunks = 0`).
fn store_small(tx: &mut Tx<'_>, bytes: &[u8], now: Timestamp) -> Result<(Digest, u64)> {
    let digest = Digest::of(bytes);
    tx.execute(
        "INSERT INTO blobs (digest, size, chunks, created_at, data) VALUES (?1, ?2, 0, ?3, ?4) \
         ON CONFLICT (digest) DO NOTHING",
        args![digest.hex(), bytes.len() as u64, now, bytes],
    )?;
    Ok((digest, bytes.len() as u64))
}

fn store_chunked(tx: &mut Tx<'_>, r: &mut dyn Read, now: Timestamp) -> Result<(Digest, u64)> {
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
        tx.execute(
            "INSERT INTO blob_chunks (digest, idx, data) VALUES (?1, ?2, ?3)",
            args![&staging, idx, &buf[..n]],
        )?;
        idx += 1;
        if n < CHUNK {
            break;
        }
    }
    let (digest, size) = hasher.finish();
    if exists(tx, &digest)? {
        tx.execute("DELETE FROM blob_chunks WHERE digest = ?1", args![&staging])?;
    } else {
        tx.execute(
            "UPDATE blob_chunks SET digest = ?1 WHERE digest = ?2",
            args![digest.hex(), &staging],
        )?;
        tx.execute(
            "INSERT INTO blobs (digest, size, chunks, created_at) VALUES (?1, ?2, ?3, ?4)",
            args![digest.hex(), size, idx, now],
        )?;
    }
    Ok((digest, size))
}

/// Removes the given blobs unless some revision with available content
/// still needs them; returns how many went.
pub(crate) fn collect(tx: &mut Tx<'_>, digests: &[Digest]) -> Result<u64> {
    let mut removed = 0;
    for d in digests {
        let needed = tx
            .query_opt(
                "SELECT 1 FROM revisions WHERE digest = ?1 AND content_available LIMIT 1",
                args![d.hex()],
                |_| Ok(()),
            )?
            .is_some();
        if !needed {
            tx.execute("DELETE FROM blob_chunks WHERE digest = ?1", args![d.hex()])?;
            removed += tx.execute("DELETE FROM blobs WHERE digest = ?1", args![d.hex()])?;
        }
    }
    Ok(removed)
}

/// Where a [`BlobReader`] runs its reads: a connection taken for one short
/// read each time (a chunk), so a slow consumer holds no connection or
/// snapshot between chunks.
pub(crate) trait ReadConnections: Send {
    fn read_on<T>(&self, f: impl Fn(&mut Tx<'_>) -> Result<T>) -> Result<T>;
}

/// Streams a blob chunk by chunk, each fetched in its own short read.
pub(crate) struct BlobReader<R> {
    source: R,
    digest: Digest,
    /// Hash of what was handed out so far; checked at the end, so a reader
    /// never finishes cleanly on corrupted content.
    hasher: Option<DigestWriter>,
    chunks: i64,
    next: i64,
    buf: Vec<u8>,
    pos: usize,
}

impl<R: ReadConnections> BlobReader<R> {
    pub(crate) fn open(source: R, digest: &Digest) -> Result<Self> {
        let found: Option<(i64, Option<Vec<u8>>)> = source.read_on(|tx| {
            tx.query_opt(
                "SELECT chunks, data FROM blobs WHERE digest = ?1",
                args![digest.hex()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
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
        Ok(BlobReader {
            source,
            digest: *digest,
            hasher: Some(hasher),
            chunks,
            next: 0,
            buf,
            pos: 0,
        })
    }

    /// At the end: the bytes handed out must hash to the digest.
    fn verify(&mut self) -> io::Result<()> {
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
        Ok(())
    }
}

impl<R: ReadConnections> Read for BlobReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next >= self.chunks {
                self.verify()?;
                return Ok(0);
            }
            let (digest, idx) = (self.digest.hex(), self.next);
            let data = self
                .source
                .read_on(|tx| {
                    tx.query_opt(
                        "SELECT data FROM blob_chunks WHERE digest = ?1 AND idx = ?2",
                        args![&digest, idx],
                        |r| r.get::<Vec<u8>>(0),
                    )
                })
                .map_err(io::Error::other)?;
            // a blob row without all its chunks is corruption
            self.buf = data.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
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
