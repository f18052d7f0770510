//! Validation: is a bag *complete* (every required element and listed file
//! present, nothing unlisted, no unsafe name) and *valid* (complete, every
//! checksum verifies, and — for a Kontextual package — the records parse,
//! match their counts and reference only what the package holds)?
//!
//! Names from manifests are checked before they are joined to the bag's
//! path, and links inside a bag directory are reported, never followed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use kontextual_model::{ArtifactId, CollectionId, Digest, RunId};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::manifest::{self, check_path, collision_key};
use crate::records::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// `bagit.txt`, `data/` or the payload manifest is missing or unreadable.
    MissingElement,
    /// A manifest lists a file that is not there.
    MissingFile,
    /// A payload file no manifest lists.
    ExtraFile,
    UnsafePath,
    /// A link, device or other non-regular file.
    UnsupportedEntry,
    /// Two names that differ only in case or Unicode normalization.
    NameCollision,
    DuplicateEntry,
    /// `fetch.txt` is present: remote fetching is refused.
    FetchRefused,
    MalformedManifest,
    OxumMismatch,
    UnsupportedAlgorithm,
    HashMismatch,
    UnknownSchemaVersion,
    MalformedRecord,
    CountMismatch,
    DuplicateRecord,
    /// A record points at a record or blob the package does not hold.
    BrokenReference,
    /// A record the others require is absent (a revision of the history).
    MissingRecord,
    /// Records that contradict each other: an artifact and its current
    /// revision, a revision and its content's size, a broken digest chain.
    InconsistentRecord,
    /// The export description (`kontextual-export.json`) does not match
    /// the payload (digest or counts).
    TagMismatch,
    /// The archive ends early.
    Truncated,
    /// The archive is damaged, not an archive, or has data after its end.
    CorruptArchive,
    /// The archive unpacks to more than the caps allow.
    Oversized,
}

impl ProblemKind {
    /// Whether the problem makes the bag incomplete (RFC 8493 §3), not
    /// merely invalid.
    pub fn breaks_completeness(self) -> bool {
        use ProblemKind::*;
        matches!(
            self,
            MissingElement
                | MissingFile
                | ExtraFile
                | UnsafePath
                | UnsupportedEntry
                | NameCollision
                | DuplicateEntry
                | FetchRefused
                | MalformedManifest
                | OxumMismatch
                | Truncated
                | CorruptArchive
                | Oversized
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The bag-relative file concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The record concerned (`artifact <id>`, `relation <id>`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        write!(f, "{kind}")?;
        if let Some(p) = &self.path {
            write!(f, " {p}")?;
        }
        if let Some(r) = &self.record {
            write!(f, " [{r}]")?;
        }
        write!(f, ": {}", self.detail)
    }
}

fn problem(
    kind: ProblemKind,
    path: Option<&str>,
    record: Option<String>,
    detail: impl Into<String>,
) -> Problem {
    Problem {
        kind,
        path: path.map(str::to_owned),
        record,
        detail: detail.into(),
    }
}

/// The verdict on a package.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub complete: bool,
    pub valid: bool,
    /// A Kontextual export (has `data/kontextual.json`), not just any bag.
    pub kontextual: bool,
    pub bagit_version: Option<String>,
    pub payload_files: u64,
    pub payload_bytes: u64,
    /// SHA-256 of `manifest-sha256.txt`.
    pub payload_digest: Option<String>,
    /// SHA-256 of `tagmanifest-sha256.txt`.
    pub package_digest: Option<String>,
    /// Records found, per type.
    pub counts: BTreeMap<String, u64>,
    /// The export-time facts, when the tag file is present and readable.
    pub export: Option<ExportInfo>,
    pub problems: Vec<Problem>,
}

impl Verdict {
    /// The verdict on an archive that was refused while unpacking (hostile
    /// entry, bomb, truncation, not an archive); `None` for errors that are
    /// not about the package (I/O, usage).
    pub fn refused(e: &crate::PackageError) -> Option<Verdict> {
        use crate::PackageError as E;
        let (kind, path, detail) = match e {
            E::Hostile { path, reason } => {
                let kind = if reason.contains("link")
                    || reason.contains("device")
                    || reason.contains("FIFO")
                    || reason.contains("sparse")
                    || reason.contains("entry type")
                {
                    ProblemKind::UnsupportedEntry
                } else if reason.contains("duplicate") {
                    ProblemKind::DuplicateEntry
                } else if reason.contains("case or Unicode") {
                    ProblemKind::NameCollision
                } else {
                    ProblemKind::UnsafePath
                };
                (kind, Some(path.clone()), reason.clone())
            }
            E::Bomb(m) => (ProblemKind::Oversized, None, m.clone()),
            E::Truncated(m) => (ProblemKind::Truncated, None, m.clone()),
            E::Malformed(m) => (ProblemKind::CorruptArchive, None, m.clone()),
            E::Io { .. } | E::Usage(_) => return None,
        };
        Some(Verdict {
            complete: false,
            valid: false,
            kontextual: false,
            bagit_version: None,
            payload_files: 0,
            payload_bytes: 0,
            payload_digest: None,
            package_digest: None,
            counts: BTreeMap::new(),
            export: None,
            problems: vec![Problem {
                kind,
                path,
                record: None,
                detail: format!("{detail} (the archive was refused; nothing was kept)"),
            }],
        })
    }
}

/// A Kontextual package's records, loaded while validating.
#[derive(Clone, Debug, Default)]
pub struct Records {
    pub current_only: bool,
    pub collections: Vec<CollectionRecord>,
    pub artifacts: Vec<ArtifactRecord>,
    pub revisions: Vec<RevisionRecord>,
    pub relations: Vec<RelationRecord>,
    pub runs: Vec<RunRecord>,
    pub representations: Vec<RepresentationRecord>,
    /// Each blob's file and size.
    pub blobs: BTreeMap<Digest, (PathBuf, u64)>,
}

/// Validates the bag in `root`; returns the verdict and, for a Kontextual
/// package whose records could be read, the records.
pub fn validate_dir(root: &Path) -> (Verdict, Option<Records>) {
    validate_dir_with_progress(root, &crate::Silent)
}

/// [`validate_dir`], reporting the checksum stage (bytes hashed).
pub fn validate_dir_with_progress(
    root: &Path,
    progress: &dyn crate::Progress,
) -> (Verdict, Option<Records>) {
    let mut v = Verdict {
        complete: false,
        valid: false,
        kontextual: false,
        bagit_version: None,
        payload_files: 0,
        payload_bytes: 0,
        payload_digest: None,
        package_digest: None,
        counts: BTreeMap::new(),
        export: None,
        problems: Vec::new(),
    };
    let records = check(root, &mut v, progress);
    v.complete = !v.problems.iter().any(|p| p.kind.breaks_completeness());
    v.valid = v.problems.is_empty();
    (v, records)
}

/// Files found on disk: bag-relative path → size.
struct Scan {
    files: BTreeMap<String, u64>,
    has_data_dir: bool,
}

fn scan(root: &Path, problems: &mut Vec<Problem>) -> Scan {
    let mut out = Scan {
        files: BTreeMap::new(),
        has_data_dir: false,
    };
    let mut folded: HashMap<String, String> = HashMap::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_owned(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                problems.push(problem(
                    ProblemKind::MissingElement,
                    Some(if rel.is_empty() { "." } else { &rel }),
                    None,
                    format!("cannot read the directory: {e}"),
                ));
                continue;
            }
        };
        for entry in rd.flatten() {
            let name = match entry.file_name().into_string() {
                Ok(n) => n,
                Err(n) => {
                    problems.push(problem(
                        ProblemKind::UnsafePath,
                        Some(&format!("{rel}{}", n.to_string_lossy())),
                        None,
                        "name is not UTF-8",
                    ));
                    continue;
                }
            };
            let path = format!("{rel}{name}");
            if let Some(other) = folded.insert(collision_key(&path), path.clone()) {
                problems.push(problem(
                    ProblemKind::NameCollision,
                    Some(&path),
                    None,
                    format!("differs from {other} only in case or Unicode normalization"),
                ));
            }
            let ft = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    problems.push(problem(
                        ProblemKind::MissingElement,
                        Some(&path),
                        None,
                        e.to_string(),
                    ));
                    continue;
                }
            };
            if ft.is_symlink() {
                problems.push(problem(
                    ProblemKind::UnsupportedEntry,
                    Some(&path),
                    None,
                    "a symbolic link (not followed)",
                ));
            } else if ft.is_dir() {
                if path == "data" {
                    out.has_data_dir = true;
                }
                stack.push((entry.path(), format!("{path}/")));
            } else if ft.is_file() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.files.insert(path, size);
            } else {
                problems.push(problem(
                    ProblemKind::UnsupportedEntry,
                    Some(&path),
                    None,
                    "not a regular file (device, FIFO or socket)",
                ));
            }
        }
    }
    out
}

fn read_small(root: &Path, rel: &str, max: u64) -> std::io::Result<String> {
    let mut s = String::new();
    File::open(root.join(rel))?
        .take(max)
        .read_to_string(&mut s)?;
    Ok(s)
}

/// Reads a manifest and returns its entries with safe paths only.
fn load_manifest(
    root: &Path,
    name: &str,
    payload: bool,
    problems: &mut Vec<Problem>,
) -> Option<(Vec<manifest::Entry>, String)> {
    let text = match read_small(root, name, 1 << 30) {
        Ok(t) => t,
        Err(e) => {
            problems.push(problem(
                ProblemKind::MissingElement,
                Some(name),
                None,
                format!("cannot be read: {e}"),
            ));
            return None;
        }
    };
    let (entries, bad) = manifest::parse(&text);
    // Over the manifest in canonical form (sorted by path, one space pair,
    // lowercase): a tool that rewrites the same manifest in another order
    // does not change the digest.
    let digest = hex::encode(Sha256::digest(manifest::render(&entries).as_bytes()));
    for b in bad {
        problems.push(problem(
            ProblemKind::MalformedManifest,
            Some(name),
            None,
            format!("line {}: {}", b.line, b.detail),
        ));
    }
    let mut seen = HashSet::new();
    let mut safe = Vec::with_capacity(entries.len());
    for e in entries {
        if let Err(u) = check_path(&e.path) {
            problems.push(problem(
                ProblemKind::UnsafePath,
                Some(&e.path),
                None,
                format!("listed in {name}: {}", u.reason),
            ));
            continue;
        }
        let in_data = e.path.starts_with("data/");
        if payload != in_data {
            let detail = if payload {
                "a payload manifest may list only files under data/"
            } else {
                "a tag manifest may not list payload files"
            };
            problems.push(problem(
                ProblemKind::MalformedManifest,
                Some(&e.path),
                None,
                format!("{name}: {detail}"),
            ));
            continue;
        }
        if !seen.insert(e.path.clone()) {
            problems.push(problem(
                ProblemKind::DuplicateEntry,
                Some(&e.path),
                None,
                format!("listed twice in {name}"),
            ));
            continue;
        }
        safe.push(e);
    }
    Some((safe, digest))
}

fn check(root: &Path, v: &mut Verdict, progress: &dyn crate::Progress) -> Option<Records> {
    let problems = &mut v.problems;
    let found = scan(root, problems);
    match read_small(root, "bagit.txt", 64 * 1024) {
        Ok(text) => {
            let version = text
                .lines()
                .find_map(|l| l.strip_prefix("BagIt-Version:"))
                .map(|s| s.trim().to_owned());
            match version.as_deref() {
                Some("1.0") | Some("0.97") => {}
                Some(other) => problems.push(problem(
                    ProblemKind::MissingElement,
                    Some("bagit.txt"),
                    None,
                    format!("BagIt-Version {other} is not supported (1.0 or 0.97)"),
                )),
                None => problems.push(problem(
                    ProblemKind::MissingElement,
                    Some("bagit.txt"),
                    None,
                    "has no BagIt-Version line",
                )),
            }
            v.bagit_version = version;
        }
        Err(_) => problems.push(problem(
            ProblemKind::MissingElement,
            Some("bagit.txt"),
            None,
            "missing: not a BagIt bag",
        )),
    }
    if !found.has_data_dir {
        problems.push(problem(
            ProblemKind::MissingElement,
            Some("data/"),
            None,
            "missing payload directory",
        ));
    }
    if found.files.contains_key("fetch.txt") {
        problems.push(problem(
            ProblemKind::FetchRefused,
            Some("fetch.txt"),
            None,
            "the package asks to fetch files from elsewhere; remote fetching is refused",
        ));
    }
    for name in found.files.keys() {
        if let Some(alg) = name
            .strip_prefix("manifest-")
            .or_else(|| name.strip_prefix("tagmanifest-"))
            .and_then(|s| s.strip_suffix(".txt"))
            && Alg::of(alg).is_none()
        {
            problems.push(problem(
                ProblemKind::UnsupportedAlgorithm,
                Some(name),
                None,
                format!("{alg} manifests cannot be verified (sha256 and sha512 can)"),
            ));
        }
    }

    // What must be hashed, and against what. In BagIt 1.0 every payload
    // file is listed in every payload manifest.
    let mut to_hash: Vec<(String, Alg, String)> = Vec::new();
    let payload_files: Vec<&String> = found
        .files
        .keys()
        .filter(|p| p.starts_with("data/"))
        .collect();
    let mut payload_manifests = 0;
    for alg in [Alg::Sha256, Alg::Sha512] {
        let name = format!("manifest-{}.txt", alg.name());
        if !found.files.contains_key(&name) {
            continue;
        }
        payload_manifests += 1;
        let Some((entries, digest)) = load_manifest(root, &name, true, problems) else {
            continue;
        };
        let mut listed: HashSet<String> = HashSet::new();
        if alg == Alg::Sha256 {
            v.payload_digest = Some(format!("sha256:{digest}"));
        }
        for e in entries {
            if !alg.fits(&e.checksum) {
                problems.push(problem(
                    ProblemKind::MalformedManifest,
                    Some(&e.path),
                    None,
                    format!("{name}: not a {} checksum", alg.name()),
                ));
                continue;
            }
            match found.files.get(&e.path) {
                Some(size) => {
                    if payload_manifests == 1 {
                        v.payload_files += 1;
                        v.payload_bytes += size;
                    }
                    listed.insert(e.path.clone());
                    to_hash.push((e.path, alg, e.checksum));
                }
                None => problems.push(problem(
                    ProblemKind::MissingFile,
                    Some(&e.path),
                    None,
                    format!("listed in {name} but absent"),
                )),
            }
        }
        for path in &payload_files {
            if !listed.contains(*path) {
                problems.push(problem(
                    ProblemKind::ExtraFile,
                    Some(path),
                    None,
                    format!("in data/ but not in {name}"),
                ));
            }
        }
    }
    if payload_manifests == 0 {
        problems.push(problem(
            ProblemKind::MissingElement,
            Some("manifest-sha256.txt"),
            None,
            "missing payload manifest",
        ));
    }
    for alg in [Alg::Sha256, Alg::Sha512] {
        let name = format!("tagmanifest-{}.txt", alg.name());
        if !found.files.contains_key(&name) {
            continue;
        }
        let Some((entries, digest)) = load_manifest(root, &name, false, problems) else {
            continue;
        };
        if alg == Alg::Sha256 {
            v.package_digest = Some(format!("sha256:{digest}"));
        }
        for e in entries {
            if !alg.fits(&e.checksum) {
                problems.push(problem(
                    ProblemKind::MalformedManifest,
                    Some(&e.path),
                    None,
                    format!("{name}: not a {} checksum", alg.name()),
                ));
            } else if found.files.contains_key(&e.path) {
                to_hash.push((e.path, alg, e.checksum));
            } else {
                problems.push(problem(
                    ProblemKind::MissingFile,
                    Some(&e.path),
                    None,
                    format!("listed in {name} but absent"),
                ));
            }
        }
    }
    if let Ok(info) = read_small(root, "bag-info.txt", 1 << 20)
        && let Some(oxum) = info.lines().find_map(|l| l.strip_prefix("Payload-Oxum:"))
    {
        let want = format!(
            "{}.{}",
            payload_files.iter().map(|p| found.files[*p]).sum::<u64>(),
            payload_files.len()
        );
        if oxum.trim() != want {
            problems.push(problem(
                ProblemKind::OxumMismatch,
                Some("bag-info.txt"),
                None,
                format!(
                    "Payload-Oxum says {} but the payload is {want} (octets.files)",
                    oxum.trim()
                ),
            ));
        }
    }
    progress.stage(
        "verifying",
        Some(
            to_hash
                .iter()
                .map(|(p, _, _)| found.files.get(p.as_str()).copied().unwrap_or(0))
                .sum(),
        ),
    );
    problems.extend(hash_all(root, &to_hash, progress));
    let to_hash: Vec<(String, String)> = to_hash
        .into_iter()
        .filter(|(_, a, _)| *a == Alg::Sha256)
        .map(|(p, _, h)| (p, h))
        .collect();
    if let Ok(text) = read_small(root, EXPORT_INFO_FILE, 16 << 20) {
        v.export = serde_json::from_str(&text).ok();
    }

    // Kontextual records.
    if !found.files.contains_key(SUMMARY_FILE) {
        return None;
    }
    v.kontextual = true;
    // A Kontextual package pins its tag files too, and its tag file must
    // describe this payload.
    for required in [
        "manifest-sha256.txt",
        "tagmanifest-sha256.txt",
        EXPORT_INFO_FILE,
    ] {
        if !found.files.contains_key(required) {
            problems.push(problem(
                ProblemKind::MissingElement,
                Some(required),
                None,
                "required in a Kontextual package",
            ));
        }
    }
    let tag_listed = to_hash.iter().any(|(p, _)| p == EXPORT_INFO_FILE);
    if found.files.contains_key(EXPORT_INFO_FILE)
        && found.files.contains_key("tagmanifest-sha256.txt")
        && !tag_listed
    {
        problems.push(problem(
            ProblemKind::MissingFile,
            Some(EXPORT_INFO_FILE),
            None,
            "not listed in tagmanifest-sha256.txt",
        ));
    }
    match (&v.export, found.files.contains_key(EXPORT_INFO_FILE)) {
        (None, true) => problems.push(problem(
            ProblemKind::MalformedRecord,
            Some(EXPORT_INFO_FILE),
            None,
            "not a readable export description",
        )),
        (Some(info), _) if Some(&info.payload_digest) != v.payload_digest.as_ref() => problems
            .push(problem(
                ProblemKind::TagMismatch,
                Some(EXPORT_INFO_FILE),
                None,
                format!(
                    "says the payload digest is {}, but the payload manifest's is {}",
                    info.payload_digest,
                    v.payload_digest.as_deref().unwrap_or("(none)")
                ),
            )),
        _ => {}
    }
    let sum_text = match read_small(root, SUMMARY_FILE, 1 << 20) {
        Ok(t) => t,
        Err(e) => {
            problems.push(problem(
                ProblemKind::MalformedRecord,
                Some(SUMMARY_FILE),
                None,
                e.to_string(),
            ));
            return None;
        }
    };
    let version = serde_json::from_str::<serde_json::Value>(&sum_text)
        .ok()
        .and_then(|s| s.get("schema_version").and_then(|x| x.as_u64()));
    if version != Some(SCHEMA_VERSION as u64) {
        problems.push(problem(
            ProblemKind::UnknownSchemaVersion,
            Some(SUMMARY_FILE),
            None,
            format!(
                "schema version {} is not one this build reads ({SCHEMA_VERSION})",
                version.map_or("(none)".to_owned(), |n| n.to_string())
            ),
        ));
        return None;
    }
    let summary: Summary = match serde_json::from_str(&sum_text) {
        Ok(s) => s,
        Err(e) => {
            problems.push(problem(
                ProblemKind::MalformedRecord,
                Some(SUMMARY_FILE),
                None,
                e.to_string(),
            ));
            return None;
        }
    };
    if summary.format != Summary::FORMAT {
        problems.push(problem(
            ProblemKind::UnknownSchemaVersion,
            Some(SUMMARY_FILE),
            None,
            format!("format {:?} is not {:?}", summary.format, Summary::FORMAT),
        ));
        return None;
    }
    let mut recs = Records {
        current_only: summary.revisions == "current",
        ..Records::default()
    };
    let before = problems.len();
    recs.collections = load(root, COLLECTIONS_FILE, &found, problems);
    recs.artifacts = load(root, ARTIFACTS_FILE, &found, problems);
    recs.revisions = load(root, REVISIONS_FILE, &found, problems);
    recs.relations = load(root, RELATIONS_FILE, &found, problems);
    recs.runs = load(root, RUNS_FILE, &found, problems);
    recs.representations = load(root, REPRESENTATIONS_FILE, &found, problems);
    let blob_prefix = format!("{BLOBS_DIR}/");
    let hashes: HashMap<&str, &str> = to_hash
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    let mut texts = 0u64;
    for (path, size) in &found.files {
        if let Some(rest) = path.strip_prefix(&blob_prefix) {
            let name = rest.rsplit('/').next().unwrap_or(rest);
            match Digest::from_hex(name) {
                Ok(d) if addressed_path(BLOBS_DIR, &d) == *path => {
                    if hashes.get(path.as_str()).is_some_and(|h| *h != d.hex()) {
                        problems.push(problem(
                            ProblemKind::HashMismatch,
                            Some(path),
                            None,
                            "the manifest's checksum differs from the blob's content address",
                        ));
                    }
                    recs.blobs.insert(d, (root.join(path), *size));
                }
                _ => problems.push(problem(
                    ProblemKind::ExtraFile,
                    Some(path),
                    None,
                    "not a content-addressed blob name",
                )),
            }
        } else if let Some(rest) = path.strip_prefix(&format!("{TEXT_DIR}/")) {
            let name = rest.rsplit('/').next().unwrap_or(rest);
            match Digest::from_hex(name) {
                Ok(d) if addressed_path(TEXT_DIR, &d) == *path => {
                    if hashes.get(path.as_str()).is_some_and(|h| *h != d.hex()) {
                        problems.push(problem(
                            ProblemKind::HashMismatch,
                            Some(path),
                            None,
                            "the manifest's checksum differs from the text's content address",
                        ));
                    }
                    texts += 1;
                }
                _ => problems.push(problem(
                    ProblemKind::ExtraFile,
                    Some(path),
                    None,
                    "not a content-addressed text name",
                )),
            }
        } else if path.starts_with("data/") && !RECORD_FILES.contains(&path.as_str()) {
            problems.push(problem(
                ProblemKind::ExtraFile,
                Some(path),
                None,
                "not part of a Kontextual package (schema 1)",
            ));
        }
    }
    let counted: [(&str, u64); 8] = [
        ("collections", recs.collections.len() as u64),
        ("artifacts", recs.artifacts.len() as u64),
        ("revisions", recs.revisions.len() as u64),
        ("relations", recs.relations.len() as u64),
        ("runs", recs.runs.len() as u64),
        ("representations", recs.representations.len() as u64),
        ("blobs", recs.blobs.len() as u64),
        ("texts", texts),
    ];
    for (kind, n) in counted {
        v.counts.insert(kind.to_owned(), n);
        let want = summary.counts.get(kind).copied().unwrap_or(0);
        if want != n && problems.len() == before {
            problems.push(problem(
                ProblemKind::CountMismatch,
                Some(SUMMARY_FILE),
                None,
                format!("{kind}: the summary says {want}, the package holds {n}"),
            ));
        }
    }
    if let Some(info) = &v.export
        && info.counts != v.counts
    {
        problems.push(problem(
            ProblemKind::TagMismatch,
            Some(EXPORT_INFO_FILE),
            None,
            "its counts differ from what the package holds",
        ));
    }
    // References into a file that could not be read whole would only
    // repeat that problem.
    if problems[before..]
        .iter()
        .all(|p| p.kind != ProblemKind::MalformedRecord)
    {
        check_references(&recs, &found, problems);
    }
    // Name the revisions whose content a damaged blob is.
    let mut users: HashMap<String, String> = HashMap::new();
    for r in &recs.revisions {
        users
            .entry(addressed_path(BLOBS_DIR, &r.digest))
            .or_insert_with(|| format!("artifact {} revision {}", r.artifact_id, r.revision));
    }
    for p in problems.iter_mut() {
        if p.kind == ProblemKind::HashMismatch
            && p.record.is_none()
            && let Some(u) = p.path.as_ref().and_then(|path| users.get(path))
        {
            p.record = Some(u.clone());
        }
    }
    Some(recs)
}

fn load<T: serde::de::DeserializeOwned>(
    root: &Path,
    rel: &str,
    found: &Scan,
    problems: &mut Vec<Problem>,
) -> Vec<T> {
    if !found.files.contains_key(rel) {
        problems.push(problem(
            ProblemKind::MissingFile,
            Some(rel),
            None,
            "record file absent",
        ));
        return Vec::new();
    }
    let f = match File::open(root.join(rel)) {
        Ok(f) => f,
        Err(e) => {
            problems.push(problem(
                ProblemKind::MissingFile,
                Some(rel),
                None,
                e.to_string(),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, r) in read_records::<T, _>(f).enumerate() {
        match r {
            Ok(x) => out.push(x),
            Err(e) => {
                problems.push(problem(
                    ProblemKind::MalformedRecord,
                    Some(rel),
                    Some(format!("record {}", i + 1)),
                    format!("{e} (the rest of the file is not read)"),
                ));
                break;
            }
        }
    }
    out
}

fn check_references(recs: &Records, found: &Scan, problems: &mut Vec<Problem>) {
    use ProblemKind::*;
    let mut collections: HashMap<CollectionId, &CollectionRecord> = HashMap::new();
    for c in &recs.collections {
        if collections.insert(c.id, c).is_some() {
            problems.push(problem(
                DuplicateRecord,
                Some(COLLECTIONS_FILE),
                Some(format!("collection {}", c.id)),
                "id appears twice",
            ));
        }
    }
    let mut artifacts: HashMap<ArtifactId, &ArtifactRecord> = HashMap::new();
    let mut names = HashSet::new();
    for a in &recs.artifacts {
        let rec = Some(format!("artifact {}", a.id));
        if artifacts.insert(a.id, a).is_some() {
            problems.push(problem(
                DuplicateRecord,
                Some(ARTIFACTS_FILE),
                rec.clone(),
                "id appears twice",
            ));
        }
        if !names.insert((a.collection_id, a.name.as_str())) {
            problems.push(problem(
                DuplicateRecord,
                Some(ARTIFACTS_FILE),
                rec.clone(),
                format!("name {}/{} appears twice", a.collection, a.name),
            ));
        }
        match collections.get(&a.collection_id) {
            None => problems.push(problem(
                BrokenReference,
                Some(ARTIFACTS_FILE),
                rec,
                format!("collection {} is not in the package", a.collection_id),
            )),
            Some(c) if c.name != a.collection => problems.push(problem(
                BrokenReference,
                Some(ARTIFACTS_FILE),
                rec,
                format!(
                    "names collection {} but its id is collection {}",
                    a.collection, c.name
                ),
            )),
            Some(_) => {}
        }
    }
    let runs: HashSet<RunId> = recs.runs.iter().map(|r| r.id).collect();
    if runs.len() != recs.runs.len() {
        problems.push(problem(
            DuplicateRecord,
            Some(RUNS_FILE),
            None,
            "a run id appears twice",
        ));
    }
    let mut revs: HashSet<(ArtifactId, u64)> = HashSet::new();
    for r in &recs.revisions {
        let rec = Some(format!(
            "artifact {} revision {}",
            r.artifact_id, r.revision
        ));
        if !revs.insert((r.artifact_id, r.revision)) {
            problems.push(problem(
                DuplicateRecord,
                Some(REVISIONS_FILE),
                rec.clone(),
                "appears twice",
            ));
        }
        match artifacts.get(&r.artifact_id) {
            None => problems.push(problem(
                BrokenReference,
                Some(REVISIONS_FILE),
                rec.clone(),
                "its artifact is not in the package",
            )),
            Some(a) if r.revision == 0 || r.revision > a.revision => problems.push(problem(
                BrokenReference,
                Some(REVISIONS_FILE),
                rec.clone(),
                format!(
                    "outside the artifact's history (its current revision is {})",
                    a.revision
                ),
            )),
            Some(_) => {}
        }
        if r.content_available && !recs.blobs.contains_key(&r.digest) {
            let path = addressed_path(BLOBS_DIR, &r.digest);
            problems.push(problem(
                BrokenReference,
                Some(&path),
                rec.clone(),
                format!("content {} is not in the package", r.digest),
            ));
        }
        if let Some(run) = r.run_id
            && !runs.contains(&run)
        {
            problems.push(problem(
                BrokenReference,
                Some(REVISIONS_FILE),
                rec,
                format!("run {run} is not in the package"),
            ));
        }
    }
    for a in &recs.artifacts {
        let rec = Some(format!("artifact {}", a.id));
        let first = if recs.current_only { a.revision } else { 1 };
        for n in first..=a.revision {
            if !revs.contains(&(a.id, n)) {
                problems.push(problem(
                    MissingRecord,
                    Some(REVISIONS_FILE),
                    rec.clone(),
                    format!("revision {n} is missing"),
                ));
            }
        }
        if let Some(run) = a.run_id
            && !runs.contains(&run)
        {
            problems.push(problem(
                BrokenReference,
                Some(ARTIFACTS_FILE),
                rec,
                format!("run {run} is not in the package"),
            ));
        }
    }
    let mut rel_ids = HashSet::new();
    for r in &recs.relations {
        let rec = Some(format!("relation {}", r.id));
        if !rel_ids.insert(r.id) {
            problems.push(problem(
                DuplicateRecord,
                Some(RELATIONS_FILE),
                rec.clone(),
                "id appears twice",
            ));
        }
        for (role, end) in [("source", r.source), ("target", r.target)] {
            if !artifacts.contains_key(&end) {
                problems.push(problem(
                    BrokenReference,
                    Some(RELATIONS_FILE),
                    rec.clone(),
                    format!("{role} artifact {end} is not in the package"),
                ));
            }
        }
    }
    for p in &recs.representations {
        let rec = Some(format!(
            "artifact {} revision {}",
            p.artifact_id, p.revision
        ));
        if !revs.contains(&(p.artifact_id, p.revision)) {
            problems.push(problem(
                BrokenReference,
                Some(REPRESENTATIONS_FILE),
                rec.clone(),
                "describes a revision that is not in the package",
            ));
        }
        if !p.text_is_content {
            let path = addressed_path(TEXT_DIR, &p.text_digest);
            if !found.files.contains_key(&path) {
                problems.push(problem(
                    BrokenReference,
                    Some(&path),
                    rec,
                    "normalized text is not in the package",
                ));
            }
        }
    }
    check_consistency(recs, found, problems);
}

/// What an import would write must be what a store could have written:
/// each artifact equal to its current revision, sizes equal to the
/// content's, digest chains unbroken, one live edge per relation, names
/// unique, and no content nobody refers to.
fn check_consistency(recs: &Records, found: &Scan, problems: &mut Vec<Problem>) {
    use ProblemKind::*;
    let mut names: HashMap<&str, CollectionId> = HashMap::new();
    for c in &recs.collections {
        if let Some(other) = names.insert(c.name.as_str(), c.id)
            && other != c.id
        {
            problems.push(problem(
                DuplicateRecord,
                Some(COLLECTIONS_FILE),
                Some(format!("collection {}", c.id)),
                format!("name {} is also collection {other}", c.name),
            ));
        }
    }
    let by_rev: HashMap<(ArtifactId, u64), &RevisionRecord> = recs
        .revisions
        .iter()
        .map(|r| ((r.artifact_id, r.revision), r))
        .collect();
    let mut live: HashSet<ArtifactId> = HashSet::new();
    let known: HashSet<ArtifactId> = recs.artifacts.iter().map(|a| a.id).collect();
    for a in &recs.artifacts {
        let rec = Some(format!("artifact {}", a.id));
        if a.state == kontextual_model::ArtifactState::Live {
            live.insert(a.id);
        }
        let Some(r) = by_rev.get(&(a.id, a.revision)) else {
            continue;
        };
        let mut differs = Vec::new();
        if a.digest != r.digest {
            differs.push("digest");
        }
        if a.size != r.size {
            differs.push("size");
        }
        if a.media_type != r.media_type {
            differs.push("media_type");
        }
        if a.title != r.title {
            differs.push("title");
        }
        if a.metadata.as_str() != r.metadata.as_str() {
            differs.push("metadata");
        }
        if a.lifecycle != r.lifecycle {
            differs.push("lifecycle");
        }
        if a.classification != r.classification {
            differs.push("classification");
        }
        if a.provenance != r.provenance {
            differs.push("provenance");
        }
        let state_fits = match a.state {
            kontextual_model::ArtifactState::Live => !matches!(
                r.change,
                kontextual_model::ChangeKind::Deleted | kontextual_model::ChangeKind::Purged
            ),
            kontextual_model::ArtifactState::Deleted => {
                r.change == kontextual_model::ChangeKind::Deleted
            }
            kontextual_model::ArtifactState::Purged => {
                r.change == kontextual_model::ChangeKind::Purged
            }
        };
        if !state_fits {
            differs.push("state");
        }
        if !differs.is_empty() {
            problems.push(problem(
                InconsistentRecord,
                Some(ARTIFACTS_FILE),
                rec,
                format!(
                    "differs from its current revision {} in {}",
                    a.revision,
                    differs.join(", ")
                ),
            ));
        }
    }
    let mut referenced: HashSet<Digest> = HashSet::new();
    for r in &recs.revisions {
        let rec = Some(format!(
            "artifact {} revision {}",
            r.artifact_id, r.revision
        ));
        if r.content_available {
            referenced.insert(r.digest);
            if let Some((_, size)) = recs.blobs.get(&r.digest)
                && *size != r.size
            {
                problems.push(problem(
                    InconsistentRecord,
                    Some(REVISIONS_FILE),
                    rec.clone(),
                    format!("says {} bytes; its content has {size}", r.size),
                ));
            }
        }
        if recs.current_only {
            continue;
        }
        let want = if r.revision <= 1 {
            None
        } else {
            by_rev
                .get(&(r.artifact_id, r.revision - 1))
                .map(|p| p.digest)
        };
        if r.revision <= 1 && r.prev_digest.is_some() {
            problems.push(problem(
                InconsistentRecord,
                Some(REVISIONS_FILE),
                rec,
                "the first revision has a previous digest",
            ));
        } else if r.revision > 1 && want.is_some() && r.prev_digest != want {
            problems.push(problem(
                InconsistentRecord,
                Some(REVISIONS_FILE),
                rec,
                "its previous digest is not the digest of the revision before it",
            ));
        }
    }
    let mut edges = HashSet::new();
    for r in &recs.relations {
        let rec = Some(format!("relation {}", r.id));
        if r.source == r.target {
            problems.push(problem(
                BrokenReference,
                Some(RELATIONS_FILE),
                rec.clone(),
                "relates an artifact to itself",
            ));
        }
        if r.deleted {
            continue;
        }
        if [r.source, r.target]
            .iter()
            .any(|e| known.contains(e) && !live.contains(e))
        {
            problems.push(problem(
                BrokenReference,
                Some(RELATIONS_FILE),
                rec.clone(),
                "is live but an endpoint is deleted",
            ));
        }
        if !edges.insert((r.source, r.rel_type.as_str(), r.target)) {
            problems.push(problem(
                DuplicateRecord,
                Some(RELATIONS_FILE),
                rec,
                "the same live edge appears twice",
            ));
        }
    }
    for d in recs.blobs.keys() {
        if !referenced.contains(d) {
            problems.push(problem(
                ExtraFile,
                Some(&addressed_path(BLOBS_DIR, d)),
                None,
                "content that no revision refers to",
            ));
        }
    }
    let texts: HashSet<Digest> = recs
        .representations
        .iter()
        .filter(|p| !p.text_is_content)
        .map(|p| p.text_digest)
        .collect();
    let prefix = format!("{TEXT_DIR}/");
    for path in found.files.keys().filter(|p| p.starts_with(&prefix)) {
        let name = path.rsplit('/').next().unwrap_or(path);
        if Digest::from_hex(name).is_ok_and(|d| !texts.contains(&d)) {
            problems.push(problem(
                ExtraFile,
                Some(path),
                None,
                "normalized text that no representation refers to",
            ));
        }
    }
}

/// A checksum algorithm of a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Sha256,
    Sha512,
}

impl Alg {
    fn of(name: &str) -> Option<Alg> {
        match name {
            "sha256" => Some(Alg::Sha256),
            "sha512" => Some(Alg::Sha512),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Alg::Sha256 => "sha256",
            Alg::Sha512 => "sha512",
        }
    }
    fn fits(self, checksum: &str) -> bool {
        checksum.len() == if self == Alg::Sha256 { 64 } else { 128 }
    }
}

/// Verifies checksums with one reader per core; returns the mismatches.
fn hash_all(
    root: &Path,
    files: &[(String, Alg, String)],
    progress: &dyn crate::Progress,
) -> Vec<Problem> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    std::thread::scope(|s| {
        for _ in 0..threads.min(files.len().max(1)) {
            s.spawn(|| {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, alg, want)) = files.get(i) else {
                        break;
                    };
                    let got = checksum_file(&root.join(path), *alg, &mut buf, progress);
                    let p = match got {
                        Ok(h) if h == *want => continue,
                        Ok(h) => problem(
                            ProblemKind::HashMismatch,
                            Some(path),
                            None,
                            format!("{} is {h}, the manifest says {want}", alg.name()),
                        ),
                        Err(e) => problem(
                            ProblemKind::MissingFile,
                            Some(path),
                            None,
                            format!("cannot be read: {e}"),
                        ),
                    };
                    if let Ok(mut o) = out.lock() {
                        o.push(p);
                    }
                }
            });
        }
    });
    let mut v = out.into_inner().unwrap_or_default();
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

fn checksum_file(
    path: &Path,
    alg: Alg,
    buf: &mut [u8],
    progress: &dyn crate::Progress,
) -> std::io::Result<String> {
    let mut f = crate::progress::Reporting::new(File::open(path)?, progress);
    match alg {
        Alg::Sha256 => {
            let mut h = Sha256::new();
            loop {
                let n = f.read(buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(hex::encode(h.finalize()))
        }
        Alg::Sha512 => {
            let mut h = sha2::Sha512::new();
            loop {
                let n = f.read(buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(hex::encode(h.finalize()))
        }
    }
}
