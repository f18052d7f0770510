//! Writes a BagIt 1.0 bag, as a directory or as a deterministic `.tar.zst`
//! stream. Payload files are hashed as they are written, so content is
//! read once and never held whole.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::manifest::{self, Entry};
use crate::{PackageError, Result};

/// Where the bag goes.
enum Sink {
    Dir(PathBuf),
    Tar {
        builder: tar::Builder<zstd::stream::write::Encoder<'static, Box<dyn Write + Send>>>,
        /// The archive's single top-level directory.
        root: String,
    },
}

/// What a finished bag is, in digests and sizes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    /// `sha256:` + SHA-256 of `manifest-sha256.txt`: pins the whole payload.
    pub payload_digest: String,
    /// `sha256:` + SHA-256 of `tagmanifest-sha256.txt`: pins every file.
    pub package_digest: String,
    pub payload_files: u64,
    pub payload_bytes: u64,
}

pub struct BagWriter {
    sink: Sink,
    payload: Vec<Entry>,
    payload_bytes: u64,
    last_path: Option<String>,
}

/// The software that wrote the bag (`Bag-Software-Agent`).
pub fn software() -> String {
    format!("kontextual/{}", env!("CARGO_PKG_VERSION"))
}

impl BagWriter {
    /// A bag in directory `dir`, which must not exist yet (its parent must).
    pub fn create_dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir(dir).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => PackageError::Usage(format!(
                "{} already exists; choose a new output path",
                dir.display()
            )),
            _ => PackageError::io(format!("creating {}", dir.display()), e),
        })?;
        Ok(Self::new(Sink::Dir(dir.to_owned())))
    }

    /// A `.tar.zst` stream into `out`, every entry under `root/`. The same
    /// entries in the same order give the same bytes: headers carry no
    /// time, owner or host facts.
    pub fn tar_zst(out: Box<dyn Write + Send>, root: &str, level: i32) -> Result<Self> {
        manifest::check_path(root).map_err(|e| PackageError::Usage(e.to_string()))?;
        let enc = zstd::stream::write::Encoder::new(out, level)
            .map_err(|e| PackageError::io("starting zstd", e))?;
        let mut builder = tar::Builder::new(enc);
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(Self::new(Sink::Tar {
            builder,
            root: root.to_owned(),
        }))
    }

    fn new(sink: Sink) -> Self {
        BagWriter {
            sink,
            payload: Vec::new(),
            payload_bytes: 0,
            last_path: None,
        }
    }

    /// Adds a payload file (`path` under `data/`) of exactly `size` bytes.
    /// Paths must come in ascending order, so archives are deterministic.
    pub fn add_payload(&mut self, path: &str, size: u64, r: &mut dyn Read) -> Result<String> {
        if !path.starts_with("data/") {
            return Err(PackageError::Usage(format!(
                "payload path {path} is not under data/"
            )));
        }
        if let Some(last) = &self.last_path
            && last.as_str() >= path
        {
            return Err(PackageError::Usage(format!(
                "payload paths out of order: {path} after {last}"
            )));
        }
        let sha = self.add_file(path, size, r)?;
        self.payload.push(Entry {
            checksum: sha.clone(),
            path: path.to_owned(),
        });
        self.payload_bytes += size;
        self.last_path = Some(path.to_owned());
        Ok(sha)
    }

    fn add_file(&mut self, path: &str, size: u64, r: &mut dyn Read) -> Result<String> {
        manifest::check_path(path).map_err(|e| PackageError::Usage(e.to_string()))?;
        let mut hashing = Hashing::new(r.take(size));
        match &mut self.sink {
            Sink::Dir(root) => {
                let full = root.join(path);
                if let Some(parent) = full.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        PackageError::io(format!("creating {}", parent.display()), e)
                    })?;
                }
                let f = File::create_new(&full)
                    .map_err(|e| PackageError::io(format!("creating {}", full.display()), e))?;
                let mut w = BufWriter::with_capacity(256 * 1024, f);
                io::copy(&mut hashing, &mut w)
                    .and_then(|_| w.flush())
                    .map_err(|e| PackageError::io(format!("writing {}", full.display()), e))?;
            }
            Sink::Tar { builder, root } => {
                let mut h = tar::Header::new_gnu();
                h.set_size(size);
                h.set_mode(0o644);
                h.set_mtime(0);
                h.set_uid(0);
                h.set_gid(0);
                h.set_entry_type(tar::EntryType::Regular);
                builder
                    .append_data(&mut h, format!("{root}/{path}"), &mut hashing)
                    .map_err(|e| PackageError::io(format!("archiving {path}"), e))?;
            }
        }
        let (sha, n) = hashing.finish();
        if n != size {
            return Err(PackageError::Usage(format!(
                "{path}: expected {size} bytes, the source gave {n}"
            )));
        }
        Ok(sha)
    }

    /// Writes the tag files: `bagit.txt`, `bag-info.txt` (with
    /// Payload-Oxum and `info`), the payload manifest, the tag files that
    /// `tags` makes from the payload digest, and the tag manifest.
    pub fn finish(
        mut self,
        info: &[(&str, String)],
        tags: impl FnOnce(&str) -> Vec<(String, Vec<u8>)>,
    ) -> Result<Written> {
        let manifest_text = manifest::render(&self.payload);
        let payload_digest = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(manifest_text.as_bytes()))
        );
        let mut bag_info = String::new();
        for (k, v) in info {
            bag_info.push_str(&format!("{k}: {}\n", v.replace(['\r', '\n'], " ")));
        }
        bag_info.push_str(&format!(
            "Payload-Oxum: {}.{}\n",
            self.payload_bytes,
            self.payload.len()
        ));
        let mut files: Vec<(String, Vec<u8>)> = vec![
            (
                "bagit.txt".into(),
                b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n".to_vec(),
            ),
            ("bag-info.txt".into(), bag_info.into_bytes()),
            ("manifest-sha256.txt".into(), manifest_text.into_bytes()),
        ];
        files.extend(tags(&payload_digest));
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tag_entries = Vec::new();
        for (name, bytes) in &files {
            let sha = self.add_file(name, bytes.len() as u64, &mut bytes.as_slice())?;
            tag_entries.push(Entry {
                checksum: sha,
                path: name.clone(),
            });
        }
        let tagmanifest = manifest::render(&tag_entries);
        let package_digest = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(tagmanifest.as_bytes()))
        );
        self.add_file(
            "tagmanifest-sha256.txt",
            tagmanifest.len() as u64,
            &mut tagmanifest.as_bytes(),
        )?;
        if let Sink::Tar { builder, .. } = self.sink {
            let enc = builder
                .into_inner()
                .map_err(|e| PackageError::io("finishing the archive", e))?;
            let mut out = enc
                .finish()
                .map_err(|e| PackageError::io("finishing zstd", e))?;
            out.flush()
                .map_err(|e| PackageError::io("flushing the archive", e))?;
        }
        Ok(Written {
            payload_digest,
            package_digest,
            payload_files: self.payload.len() as u64,
            payload_bytes: self.payload_bytes,
        })
    }
}

/// A reader that hashes and counts what passes through.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    n: u64,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            n: 0,
        }
    }

    pub(crate) fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.n)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}
