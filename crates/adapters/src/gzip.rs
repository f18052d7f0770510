//! gzip content (K5): decompressed in memory, within limits, so that a
//! `changelog.gz` is text for retrieval while its stored bytes stay as they
//! are. A gzip bomb is refused before it allocates: output is read through
//! `Read::take`, so at most the limit (plus one byte) is ever held.

use std::io::Read;

/// The most decompressed bytes read from one gzip file (64 MiB).
pub const GZIP_MAX_INFLATED: u64 = 64 << 20;
/// Output may exceed 1 MiB only up to this many times the compressed size.
/// Real text compresses 3–20×; a stream that inflates further is a bomb, or
/// at least not a document worth reading whole.
const MAX_RATIO: u64 = 200;
const RATIO_FLOOR: u64 = 1 << 20;
/// From a prefix (`detect_prefix`), this much output is enough to detect.
const PREFIX_OUTPUT: u64 = 64 << 10;

pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x1f\x8b")
}

/// The decompressed content, and whether it is all of it (`false` only for
/// a prefix). `complete` says `bytes` is the whole file: then the stream must
/// end properly within the limits; from a prefix, what decompresses is kept.
pub(crate) fn inflate(bytes: &[u8], complete: bool) -> Result<(Vec<u8>, bool), &'static str> {
    let limit = if complete {
        (bytes.len() as u64)
            .saturating_mul(MAX_RATIO)
            .clamp(RATIO_FLOOR, GZIP_MAX_INFLATED)
    } else {
        PREFIX_OUTPUT
    };
    let mut out = Vec::new();
    // MultiGzDecoder: `cat a.gz b.gz` is one valid gzip file
    let mut reader = flate2::read::MultiGzDecoder::new(bytes).take(limit + 1);
    let read = reader.read_to_end(&mut out);
    let over = out.len() as u64 > limit;
    match (read, complete) {
        (Ok(_), true) if over => Err("it inflates past the size limit"),
        (Ok(_), true) => Ok((out, true)),
        (Ok(_), false) if over => {
            out.truncate(PREFIX_OUTPUT as usize);
            Ok((out, false))
        }
        (Ok(_), false) => Ok((out, true)),
        // a prefix ends mid-stream: what came out so far is the head
        (Err(_), false) if !out.is_empty() => Ok((out, false)),
        (Err(_), _) => Err("it is not a readable gzip stream"),
    }
}
