//! Tidy checks: the layering written in ARCHITECTURE.md holds in the manifests,
//! and every crate and module says what it is for.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deps(krate: &str) -> String {
    let text =
        std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    // only [dependencies], not dev-dependencies
    let start = text.find("[dependencies]").unwrap_or(0);
    let rest = &text[start..];
    let end = rest[1..].find("\n[").map_or(rest.len(), |i| i + 1);
    rest[..end].to_owned()
}

#[test]
fn layers_do_not_leak() {
    let forbidden_everywhere = ["clap", "axum", "tokio", "anyhow", "hyper"];
    for krate in ["model", "store", "services", "index", "adapters"] {
        let d = deps(krate);
        for f in forbidden_everywhere {
            assert!(
                !d.lines()
                    .any(|l| l.starts_with(&format!("{f} ")) || l.starts_with(&format!("{f}."))),
                "{krate} depends on {f}"
            );
        }
    }
    for db in ["rusqlite", "postgres", "tokio-postgres"] {
        for krate in ["model", "services", "cli"] {
            assert!(
                !deps(krate).lines().any(|l| l.starts_with(db)),
                "{krate} depends on database driver {db}"
            );
        }
    }
    assert!(
        !deps("model").contains("kontextual-store"),
        "model must not depend on store"
    );
    // the HTTP layer reaches data only through the services
    for dep in [
        "kontextual-store",
        "kontextual-index",
        "rusqlite",
        "tantivy",
    ] {
        assert!(
            !deps("server").lines().any(|l| l.starts_with(dep)),
            "server depends on {dep}: handlers must go through the services"
        );
    }
    // tantivy lives behind kontextual-index only
    for krate in ["model", "store", "services", "cli", "adapters"] {
        assert!(
            !deps(krate).lines().any(|l| l.starts_with("tantivy")),
            "{krate} depends on tantivy directly"
        );
    }
}

#[test]
fn every_module_has_a_doc_comment() {
    let mut missing = Vec::new();
    let mut stack = vec![root().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|e| e == "rs")
                && p.components().any(|c| c.as_os_str() == "src")
            {
                let text = std::fs::read_to_string(&p).unwrap();
                if !text.trim_start().starts_with("//!") {
                    missing.push(p);
                }
            }
        }
    }
    assert!(missing.is_empty(), "modules without a //! doc: {missing:?}");
}

#[test]
fn architecture_doc_names_every_crate() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            arch.contains(&format!("crates/{name}")),
            "ARCHITECTURE.md does not map crates/{name}"
        );
    }
}

/// K1: the backend decision is recorded as an ADR.
#[test]
fn k1_storage_decision_is_recorded() {
    let adr = std::fs::read_to_string(root().join("docs/adr/0001-storage.md")).unwrap();
    for needle in [
        "SQLite",
        "PostgreSQL",
        "synchronous",
        "SHA-256",
        "Status: accepted",
    ] {
        assert!(adr.contains(needle), "ADR 0001 does not record {needle}");
    }
}
