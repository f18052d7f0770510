//! A real directory tree, ingested until searchable, beside its two floors
//! (issue 15, item 5): `kontextual-bench --only tree --dir DIR`, e.g. the
//! Rust toolchain's HTML documentation
//! (`$(rustc --print sysroot)/share/doc/rust/html`).
//!
//! - **Ours:** `Services::ingest_and_index` of DIR into a fresh store — what
//!   `kontextual ingest DIR` does until every document is searchable.
//! - **Floor, store:** plain `rusqlite`, one transaction, one
//!   `INSERT (path, content)` per file, the bytes read from disk in the
//!   timed region (as ours reads them).
//! - **Floor, index:** a minimal tantivy program — one document per file
//!   with readable text, the text extracted by the same adapters before the
//!   timed region, English stemming and positions, two indexing threads,
//!   one commit.
//!
//! The page cache is warmed by reading every file once before any side.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kontextual_app::{Caller, Services, StoreConfig, StoreOpenMode};
use kontextual_model::{Actor, Namespace};
use tantivy::schema::{IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{Index, TantivyDocument};

/// Every regular file under `dir` (no symbolic links), by path.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry?;
        if entry.file_type().is_file() {
            out.push(entry.into_path());
        }
    }
    out.sort();
    Ok(out)
}

fn rusqlite_floor(work: &Path, root: &Path, files: &[PathBuf]) -> Result<Duration> {
    let conn = rusqlite::Connection::open(work.join("floor.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE docs (path TEXT PRIMARY KEY, content BLOB NOT NULL);",
    )?;
    let start = Instant::now();
    conn.execute_batch("BEGIN")?;
    {
        let mut stmt = conn.prepare("INSERT INTO docs (path, content) VALUES (?1, ?2)")?;
        for f in files {
            let bytes = std::fs::read(f)?;
            let path = f.strip_prefix(root).unwrap_or(f).to_string_lossy();
            stmt.execute(rusqlite::params![path.as_ref(), bytes])?;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(start.elapsed())
}

/// The readable text of each file the adapters read text from.
fn texts(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(f)?;
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Ok((adapter, _)) = kontextual_adapters::detect(name, &bytes) else {
            continue;
        };
        if kontextual_adapters::has_text(adapter.artifact_type()) {
            out.push(adapter.text(&bytes));
        }
    }
    Ok(out)
}

fn tantivy_floor(work: &Path, texts: &[String]) -> Result<Duration> {
    let mut b = Schema::builder();
    let body = b.add_text_field(
        "body",
        TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("en_stem")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored(),
    );
    let dir = work.join("floor-index");
    std::fs::create_dir_all(&dir)?;
    let index = Index::create_in_dir(&dir, b.build())?;
    let start = Instant::now();
    let mut w = index.writer_with_num_threads(2, 256 * 1024 * 1024)?;
    for t in texts {
        let mut d = TantivyDocument::default();
        d.add_text(body, t);
        w.add_document(d)?;
    }
    w.commit()?;
    Ok(start.elapsed())
}

fn ours(work: &Path, dir: &Path) -> Result<(Duration, u64, u64)> {
    let cfg = StoreConfig {
        data_dir: work.join("data"),
        busy_timeout: Duration::from_secs(30),
    };
    let svc = Services::open(&cfg, StoreOpenMode::Create)?;
    let caller = Caller::new(Actor::local_admin(), Namespace::default());
    let req = kontextual_app::IngestRequest {
        paths: vec![dir.to_path_buf()],
        collection: "tree".to_owned(),
        prune: false,
        source_system: None,
    };
    let start = Instant::now();
    let report = svc.ingest_and_index(&caller, &req, &kontextual_app::NoProgress)?;
    let took = start.elapsed();
    Ok((
        took,
        report.failed,
        report.indexed.as_ref().map_or(0, |i| i.artifacts),
    ))
}

/// `--only tree --dir DIR`.
pub fn run(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("--dir {}: not a directory", dir.display());
    }
    let files = files(dir).with_context(|| format!("walking {}", dir.display()))?;
    let mut bytes = 0u64;
    for f in &files {
        bytes += std::fs::read(f)?.len() as u64; // warms the page cache
    }
    let work = tempfile::tempdir()?;
    let texts = texts(&files)?;
    let text_bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    let (ours, failed, indexed) = ours(work.path(), dir)?;
    let store = rusqlite_floor(work.path(), dir, &files)?;
    let index = tantivy_floor(work.path(), &texts)?;
    let n = files.len() as f64;
    let mb = bytes as f64 / 1e6;
    println!(
        "\n### Ingest until searchable: {} ({} files, {:.0} MB; {} with text, {:.0} MB of it)\n",
        dir.display(),
        files.len(),
        mb,
        texts.len(),
        text_bytes as f64 / 1e6
    );
    println!("| side | seconds | docs/s | MB/s |\n|---|---:|---:|---:|");
    for (side, t) in [
        ("kontextual ingest, until searchable", ours),
        ("floor: plain rusqlite insert of the bytes", store),
        ("floor: minimal tantivy index of the extracted texts", index),
    ] {
        let s = t.as_secs_f64();
        println!("| {side} | {s:.2} | {:.0} | {:.1} |", n / s, mb / s);
    }
    println!(
        "\nours: {failed} failed, {indexed} artifacts indexed; ours / (store floor + index floor) = {:.2}×",
        (store + index).as_secs_f64() / ours.as_secs_f64()
    );
    Ok(())
}
