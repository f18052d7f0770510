//! Unpacks an untrusted `.tar.zst` (or `.tar`) package into a fresh staging
//! directory, entry by entry, never with `Archive::unpack`:
//! - only regular files and directories are accepted; symlinks, hardlinks,
//!   devices, FIFOs and sparse files are refused outright;
//! - every name passes [`check_path`](crate::manifest::check_path) and is
//!   joined only under the staging directory, which holds nothing but what
//!   this function created (no links), so nothing lands outside it;
//! - duplicate names, and names that differ only in case or Unicode
//!   normalization, are refused;
//! - bytes actually written, entry count and the expansion ratio are capped
//!   (decompression bombs), and a truncated stream is an error.
//!
//! On any error the caller drops the staging directory; nothing else was
//! touched.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::manifest::{check_path, collision_key};
use crate::{PackageError, Result};

/// Caps on what unpacking may produce.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes written to staging, in all.
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Unpacked bytes per compressed byte, checked once more than
    /// `ratio_grace` bytes were written.
    pub max_ratio: u64,
    pub ratio_grace: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 5_000_000,
            max_ratio: 1000,
            ratio_grace: 64 << 20,
        }
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Counts bytes read from the compressed file.
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn hostile(path: impl Into<String>, reason: impl Into<String>) -> PackageError {
    PackageError::Hostile {
        path: path.into(),
        reason: reason.into(),
    }
}

/// An error while reading the archive stream is a fault of the package
/// (cut short, corrupt, not an archive), not of this machine; its text is
/// cleaned of control characters and shortened (it may quote raw bytes).
fn truncated_or_io(what: String, e: io::Error) -> PackageError {
    let text: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let lower = text.to_ascii_lowercase();
    if e.kind() == io::ErrorKind::UnexpectedEof
        || lower.contains("entire block")
        || lower.contains("incomplete")
        || lower.contains("unexpected eof")
    {
        PackageError::Truncated(format!("{what}: {text} (cut short, or not a tar archive)"))
    } else {
        PackageError::Malformed(format!("{what}: {text}"))
    }
}

/// Unpacks `archive` into `staging` (an existing, empty directory).
pub fn unpack(archive: &Path, staging: &Path, limits: Limits) -> Result<()> {
    unpack_with_progress(archive, staging, limits, &crate::Silent)
}

/// [`unpack`], reporting the archive's bytes as they are read.
pub fn unpack_with_progress(
    archive: &Path,
    staging: &Path,
    limits: Limits,
    progress: &dyn crate::Progress,
) -> Result<()> {
    let mut f = File::open(archive)
        .map_err(|e| PackageError::io(format!("opening {}", archive.display()), e))?;
    let mut magic = [0u8; 4];
    let got = f
        .read(&mut magic)
        .map_err(|e| PackageError::io(format!("reading {}", archive.display()), e))?;
    let f = File::open(archive)
        .map_err(|e| PackageError::io(format!("opening {}", archive.display()), e))?;
    let compressed = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: crate::progress::Reporting::new(BufReader::with_capacity(256 * 1024, f), progress),
        n: compressed.clone(),
    };
    let reader: Box<dyn Read + '_> = if got == 4 && magic == ZSTD_MAGIC {
        Box::new(
            zstd::stream::read::Decoder::new(counting)
                .map_err(|e| PackageError::io("starting zstd", e))?,
        )
    } else {
        Box::new(counting)
    };
    // Counts the tar stream itself, to see where the archive ended.
    let consumed = Arc::new(AtomicU64::new(0));
    let reader = Counting {
        inner: reader,
        n: consumed.clone(),
    };
    let mut last_end = 0u64;
    let mut archive_reader = tar::Archive::new(reader);
    let entries = archive_reader.entries().map_err(|e| {
        PackageError::Malformed(format!("{} is not a tar archive: {e}", archive.display()))
    })?;

    let mut root: Option<Option<String>> = None;
    let mut seen: HashSet<String> = HashSet::new();
    let mut folded: HashMap<String, String> = HashMap::new();
    let mut written = 0u64;
    let mut count = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| truncated_or_io("reading the archive".into(), e))?;
        last_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
        count += 1;
        if count > limits.max_entries {
            return Err(PackageError::Bomb(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw)
            .map_err(|e| hostile(String::from_utf8_lossy(e.as_bytes()), "name is not UTF-8"))?;
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        let is_dir = match kind {
            T::Regular | T::Continuous => false,
            T::Directory => true,
            T::XGlobalHeader | T::XHeader => continue,
            T::Symlink => return Err(hostile(name, "a symbolic link (links are refused)")),
            T::Link => return Err(hostile(name, "a hard link (links are refused)")),
            T::Char | T::Block => return Err(hostile(name, "a device file")),
            T::Fifo => return Err(hostile(name, "a FIFO")),
            T::GNUSparse => return Err(hostile(name, "a sparse file")),
            other => {
                return Err(hostile(
                    name,
                    format!("an unsupported entry type {:?}", other.as_byte() as char),
                ));
            }
        };
        // `tar -C bag -cf x.tar .` writes `./bagit.txt`: a leading `./` is harmless.
        let mut trimmed = name.trim_end_matches('/');
        while let Some(rest) = trimmed.strip_prefix("./") {
            trimmed = rest;
        }
        if trimmed.is_empty() || trimmed == "." {
            continue;
        }
        check_path(trimmed).map_err(|e| hostile(name.clone(), e.reason))?;
        // The bag may sit under one top-level directory (the usual
        // serialization) or at the archive's root.
        let prefix = root.get_or_insert_with(|| {
            let first = trimmed.split('/').next().unwrap_or_default();
            let at_root = first == "data" || (!is_dir && !trimmed.contains('/'));
            (!at_root).then(|| first.to_owned())
        });
        let rel = match prefix {
            None => trimmed,
            Some(p) => {
                if trimmed == p.as_str() && is_dir {
                    continue;
                }
                match trimmed
                    .strip_prefix(p.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    Some(r) => r,
                    None => {
                        return Err(hostile(
                            name.clone(),
                            format!("outside the package's top-level directory {p}/"),
                        ));
                    }
                }
            }
        };
        if !seen.insert(rel.to_owned()) {
            return Err(hostile(name, "a duplicate entry"));
        }
        let key = collision_key(rel);
        if let Some(other) = folded.insert(key, rel.to_owned()) {
            return Err(hostile(
                name,
                format!("differs from {other} only in case or Unicode normalization"),
            ));
        }
        let dest = staging.join(rel);
        if is_dir {
            std::fs::create_dir_all(&dest)
                .map_err(|e| hostile(name.clone(), format!("cannot be a directory: {e}")))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                hostile(
                    name.clone(),
                    format!("its directory cannot be created: {e}"),
                )
            })?;
        }
        let out = File::create_new(&dest)
            .map_err(|e| hostile(name.clone(), format!("cannot be created: {e}")))?;
        let mut w = io::BufWriter::with_capacity(256 * 1024, out);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| truncated_or_io(format!("reading {name}"), e))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > limits.max_bytes {
                return Err(PackageError::Bomb(format!(
                    "unpacks to more than {} bytes (cap)",
                    limits.max_bytes
                )));
            }
            let packed = compressed.load(Ordering::Relaxed).max(1);
            if written > limits.ratio_grace && written / packed > limits.max_ratio {
                return Err(PackageError::Bomb(format!(
                    "expands more than {}:1 ({written} bytes from {packed})",
                    limits.max_ratio
                )));
            }
            w.write_all(&buf[..n])
                .map_err(|e| PackageError::io(format!("staging {name}"), e))?;
        }
        w.flush()
            .map_err(|e| PackageError::io(format!("staging {name}"), e))?;
    }
    // The tar end marker may come before the end of the compressed stream:
    // read the rest, so a truncated frame is noticed.
    // A tar archive ends with two zero blocks; the reader stopped after the
    // first. The rest must be the second and zero padding, nothing else.
    let stopped_at = consumed.load(Ordering::Relaxed);
    let mut rest = archive_reader.into_inner();
    let mut trailing = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rest
            .read(&mut buf)
            .map_err(|e| truncated_or_io("reading the end of the archive".into(), e))?;
        if n == 0 {
            break;
        }
        trailing += n as u64;
        if buf[..n].iter().any(|b| *b != 0) || trailing > 16 << 20 {
            return Err(PackageError::Malformed(
                "data follows the end of the tar archive".to_owned(),
            ));
        }
    }
    if count > 0 && (stopped_at < last_end + 512 || trailing < 512) {
        return Err(PackageError::Truncated(
            "the tar archive has no end-of-archive marker (cut short between entries?)".into(),
        ));
    }
    if count == 0 {
        return Err(PackageError::Malformed(format!(
            "{} holds no entries (empty or not a tar archive)",
            archive.display()
        )));
    }
    Ok(())
}
