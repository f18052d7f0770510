//! Kontextual export packages (O3, K9, X8).
//!
//! A package is a BagIt 1.0 bag (RFC 8493): `bagit.txt`, `bag-info.txt`
//! with Payload-Oxum, `manifest-sha256.txt` over every payload file,
//! `tagmanifest-sha256.txt` over the tag files, and the payload under
//! `data/` — record files ([`records`]) and content-addressed blobs. The
//! export-time facts live in the tag file `kontextual-export.json`, so the
//! payload depends only on the store's state.
//!
//! This crate knows files and bytes, not the store: [`writer`] writes
//! bags, [`unpack`] stages untrusted archives safely, [`validate`] says
//! whether a bag is complete and valid and loads its records.

use std::path::Path;

pub mod manifest;
pub mod progress;
pub mod records;
pub mod unpack;
pub mod validate;
pub mod writer;

pub use progress::{Progress, Silent};
pub use unpack::Limits;
pub use validate::{
    Problem, ProblemKind, Records, Verdict, validate_dir, validate_dir_with_progress,
};
pub use writer::{BagWriter, Written};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The archive holds an entry that could write outside the staging
    /// area or is not a plain file (X8).
    #[error("refused package entry {path:?}: {reason}")]
    Hostile { path: String, reason: String },
    #[error("refused package: {0} (decompression bomb?)")]
    Bomb(String),
    #[error("truncated package: {0}")]
    Truncated(String),
    #[error("malformed package: {0}")]
    Malformed(String),
    #[error("{0}")]
    Usage(String),
}

impl PackageError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        PackageError::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, PackageError>;

/// Whether `path` names an archive (by its content, not its name) rather
/// than a bag directory.
pub fn is_archive(path: &std::path::Path) -> bool {
    path.is_file()
}

const STAGING_PREFIX: &str = "kontextual-staging-";

/// Removes staging directories left by processes that died (killed while
/// unpacking): their names carry the owner's pid. Linux only (`/proc`).
fn sweep_stale_staging(parent: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && e.file_type().is_ok_and(|t| t.is_dir())
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A package ready to read: a bag directory, either the one given or a
/// staging copy unpacked from an archive (removed when this is dropped).
pub struct Opened {
    pub dir: std::path::PathBuf,
    _staging: Option<tempfile::TempDir>,
}

/// Opens a package: a directory is used in place; an archive is unpacked
/// into a fresh staging directory under `staging_parent` (the system temp
/// directory when `None`) with the hostile-input rules of [`unpack`].
pub fn open(
    path: &std::path::Path,
    staging_parent: Option<&std::path::Path>,
    limits: Limits,
) -> Result<Opened> {
    open_with_progress(path, staging_parent, limits, &Silent)
}

/// [`open`], reporting the unpacking stage (compressed bytes read).
pub fn open_with_progress(
    path: &std::path::Path,
    staging_parent: Option<&std::path::Path>,
    limits: Limits,
    progress: &dyn Progress,
) -> Result<Opened> {
    // The path the user names may be a link to a bag; links *inside* a bag
    // are refused by validation.
    let meta = std::fs::metadata(path)
        .map_err(|e| PackageError::io(format!("opening {}", path.display()), e))?;
    if meta.is_dir() {
        return Ok(Opened {
            dir: path.to_owned(),
            _staging: None,
        });
    }
    if !meta.is_file() {
        return Err(PackageError::Usage(format!(
            "{} is neither a bag directory nor an archive file",
            path.display()
        )));
    }
    let parent = staging_parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
    sweep_stale_staging(&parent);
    let prefix = format!("{STAGING_PREFIX}{}-", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // staged content may be confidential: only this user may read it
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let staging = builder
        .tempdir_in(&parent)
        .map_err(|e| PackageError::io("creating a staging directory", e))?;
    progress.stage("unpacking", Some(meta.len()));
    unpack::unpack_with_progress(path, staging.path(), limits, progress)?;
    Ok(Opened {
        dir: staging.path().to_owned(),
        _staging: Some(staging),
    })
}
