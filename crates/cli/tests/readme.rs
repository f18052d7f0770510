//! X5 (issue 18): the README's tour is the documentation, and it runs as
//! written. The shell blocks of "A short tour", "Ingest" and "Search,
//! sections and context packages" are run in order, as one `sh -e` script,
//! in an empty directory with the real binary first on PATH.

mod support;

use std::process::Command;

/// The ```sh blocks between two headings of the README, in order.
fn blocks(readme: &str, from: &str, to: &str) -> Vec<String> {
    let start = readme.find(from).expect("start heading");
    let end = readme[start..].find(to).map_or(readme.len(), |e| start + e);
    let mut out = Vec::new();
    let mut rest = &readme[start..end];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("closed block");
        out.push(body[..close].to_owned());
        rest = &body[close + 3..];
    }
    out
}

#[test]
fn x5_the_readme_tour_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let script = blocks(&readme, "## A short tour", "### HTTP API").join("\n");
    assert!(script.contains("kontextual init"), "{script}");
    assert!(script.contains("kontextual context build"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_kontextual"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // on PostgreSQL the commands, as written, find the database in the environment
    let store = support::Store::new(dir.path().join("kontextual-data"));
    let mut sh = Command::new("sh");
    sh.args(["-e", "-x", "-c", &script])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path());
    if let Some(db) = store.db() {
        sh.env("KONTEXTUAL_DATABASE_URL", &db.url);
    }
    let out = sh.output().unwrap();
    assert!(
        out.status.success(),
        "the README tour stopped ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
