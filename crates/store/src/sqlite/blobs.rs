//! Reading blobs back on SQLite (storing them is `crate::blobs`).

use std::io::{self, Read};

use kontextual_model::{Digest, DigestWriter};
use rusqlite::{OptionalExtension, params};

use super::{SqliteBackend, sql_err};
use crate::{Result, StoreError};

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
