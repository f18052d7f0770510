//! Reading blobs back on PostgreSQL (storing them is `crate::blobs`):
//! chunk by chunk, each on a pooled connection (a `bytea` cannot be
//! streamed whole), re-hashing what they return.

use std::io::{self, Read};
use std::sync::Arc;

use crate::{Result, StoreError};
use kontextual_model::{Digest, DigestWriter};

use crate::postgres::pg_err;

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
