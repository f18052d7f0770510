//! Tidy checks: the layering written in ARCHITECTURE.md holds in the
//! resolved dependency graph (`cargo metadata`), and every crate and module
//! says what it is for.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// The workspace's crates, by package name.
const MODEL: &str = "kontextual-model";
const PACKAGE: &str = "kontextual-package";
const ADAPTERS: &str = "kontextual-adapters";
const STORE: &str = "kontextual-store";
const INDEX: &str = "kontextual-index";
const KERNEL: &str = "kontextual-kernel";
const EVENTS: &str = "kontextual-events";
const KNOWLEDGE: &str = "kontextual-knowledge";
const WEBHOOKS: &str = "kontextual-webhooks";
/// Publishes the event feed to NATS JetStream (ADR 0011): an outlet, not a domain.
const NATS: &str = "kontextual-nats";
const SERVER: &str = "kontextual-server";
const CLI: &str = "kontextual";
const BENCH: &str = "kontextual-bench";
/// The composition root: it wires the kernel and the domains.
const APP: &str = "kontextual-app";

/// Domain crates (knowledge, memory, …): each stands on the kernel and the
/// store alone. None may reach another domain, the server, the CLI or the
/// composition root. A new domain is one more name here, plus its row in
/// [`LAYERS`].
const DOMAINS: &[&str] = &[KNOWLEDGE, WEBHOOKS];

const DRIVERS: &[&str] = &["rusqlite", "libsqlite3-sys", "postgres", "tokio-postgres"];
/// Crates that do I/O: files, sockets, databases, an async runtime.
const IO: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "postgres",
    "tokio-postgres",
    "tantivy",
    "axum",
    "hyper",
    "tokio",
    "mio",
    "reqwest",
    "ureq",
    "async-nats",
];
/// What a library crate never lists itself: the CLI's parser and error
/// type, and the HTTP stack with its runtime.
const SURFACE: &[&str] = &["clap", "axum", "tokio", "anyhow", "hyper"];

/// Third-party crates that one workspace crate wraps. Only the owners
/// depend on them; every other crate reaches them, if at all, through an
/// owner. The bench measures each engine against its bare floor (plain
/// rusqlite, a minimal tantivy program, a minimal axum server), so it owns
/// them too.
const OWNED: &[(&str, &[&str])] = &[
    ("rusqlite", &[STORE, BENCH]),
    ("libsqlite3-sys", &[STORE, BENCH]),
    ("postgres", &[STORE]),
    ("tokio-postgres", &[STORE]),
    ("tantivy", &[INDEX, BENCH]),
    ("axum", &[SERVER, BENCH]),
    ("hyper", &[SERVER, BENCH]),
    // the webhook domain's HTTP client (ADR 0010)
    ("ureq", &[WEBHOOKS]),
    // the NATS client, and the async runtime it needs, stay in the publisher (ADR 0011)
    ("async-nats", &[NATS]),
];

/// One crate's layer: what it may not list in its own `[dependencies]`,
/// and what it may not reach at all, through any chain of dependencies.
struct Layer {
    krate: &'static str,
    never_directly: &'static [&'static [&'static str]],
    never: &'static [&'static [&'static str]],
}

/// Every workspace crate has a row; a new crate without one fails the test.
const LAYERS: &[Layer] = &[
    Layer {
        krate: MODEL,
        never_directly: &[],
        never: &[
            IO,
            SURFACE,
            &[
                PACKAGE, ADAPTERS, STORE, INDEX, KERNEL, EVENTS, KNOWLEDGE, APP, SERVER, CLI,
            ],
        ],
    },
    Layer {
        krate: PACKAGE,
        never_directly: &[SURFACE],
        never: &[
            DRIVERS,
            &["tantivy", "axum", "hyper"],
            &[STORE, KERNEL, KNOWLEDGE, APP, SERVER, CLI],
        ],
    },
    Layer {
        krate: ADAPTERS,
        never_directly: &[SURFACE],
        never: &[IO, &[STORE, INDEX, KERNEL, KNOWLEDGE, APP, SERVER, CLI]],
    },
    Layer {
        krate: STORE,
        never_directly: &[SURFACE],
        never: &[
            &["tantivy", "axum", "hyper", "clap"],
            &[INDEX, KERNEL, KNOWLEDGE, APP, SERVER, CLI],
        ],
    },
    Layer {
        krate: INDEX,
        never_directly: &[SURFACE],
        never: &[
            DRIVERS,
            &["axum", "hyper", "clap"],
            &[STORE, KERNEL, KNOWLEDGE, APP, SERVER, CLI],
        ],
    },
    // the event catalog and envelope: pure, beside the kernel
    Layer {
        krate: EVENTS,
        never_directly: &[SURFACE],
        never: &[
            IO,
            &[
                PACKAGE, ADAPTERS, STORE, INDEX, KERNEL, KNOWLEDGE, APP, SERVER, CLI,
            ],
        ],
    },
    // what every domain stands on: it knows no domain, no engine but the
    // store's handle, no surface
    Layer {
        krate: KERNEL,
        never_directly: &[SURFACE, DRIVERS],
        never: &[
            &["tantivy", "axum", "hyper", "clap"],
            &[INDEX, ADAPTERS, PACKAGE, KNOWLEDGE, NATS, APP, SERVER, CLI],
        ],
    },
    // a domain: the kernel, the store and its engines; never a surface,
    // the composition root or another domain (DOMAINS adds those)
    Layer {
        krate: KNOWLEDGE,
        never_directly: &[SURFACE, DRIVERS, &["tantivy"]],
        never: &[&["axum", "hyper", "clap"], &[SERVER, CLI, APP, NATS]],
    },
    // the webhook domain (service, dispatcher, delivery jobs): may stand
    // on model, store, kernel and events; owns the HTTP client (ureq)
    Layer {
        krate: WEBHOOKS,
        never_directly: &[SURFACE, DRIVERS, &["tantivy", "reqwest"]],
        never: &[
            &["axum", "hyper", "clap"],
            &[INDEX, ADAPTERS, PACKAGE, NATS],
        ],
    },
    // the NATS publisher: a feed consumer on model, store, kernel and
    // events; it owns the NATS client and the tokio runtime that drives it
    // (so tokio is allowed here, unlike in other libraries), no domain,
    // surface or composition root
    Layer {
        krate: NATS,
        never_directly: &[DRIVERS, &["tantivy", "axum", "hyper", "clap", "anyhow"]],
        never: &[
            &["tantivy", "axum", "hyper", "clap", "ureq"],
            &[
                INDEX, ADAPTERS, PACKAGE, KNOWLEDGE, WEBHOOKS, APP, SERVER, CLI,
            ],
        ],
    },
    // wiring only: no surface, no driver, no engine of its own
    Layer {
        krate: APP,
        never_directly: &[SURFACE, DRIVERS, &["tantivy"]],
        never: &[&["axum", "hyper", "clap"], &[SERVER, CLI]],
    },
    // the HTTP layer reaches data only through the composition root's facade
    Layer {
        krate: SERVER,
        never_directly: &[&[STORE, INDEX, "tantivy"], DRIVERS],
        never: &[&["clap"], &[CLI]],
    },
    Layer {
        krate: CLI,
        never_directly: &[DRIVERS, &["tantivy"]],
        never: &[],
    },
    Layer {
        krate: BENCH,
        never_directly: &[],
        never: &[&[CLI]],
    },
];

/// The workspace's resolved dependency graph, from `cargo metadata`.
struct Graph {
    /// Package id → package name.
    names: HashMap<String, String>,
    /// Package id → ids of its normal and build dependencies (dev
    /// dependencies never reach a user's binary).
    deps: HashMap<String, Vec<String>>,
    /// Workspace crate name → package id.
    members: BTreeMap<String, String>,
}

impl Graph {
    fn load() -> Graph {
        let out = Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1"])
            .current_dir(root())
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
        let text = |v: &Value| v.as_str().expect("a string").to_owned();
        let names: HashMap<String, String> = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (text(&p["id"]), text(&p["name"])))
            .collect();
        let deps = meta["resolve"]["nodes"]
            .as_array()
            .expect("a resolved graph")
            .iter()
            .map(|node| {
                let linked = node["deps"]
                    .as_array()
                    .expect("deps")
                    .iter()
                    .filter(|d| {
                        d["dep_kinds"]
                            .as_array()
                            .expect("dep_kinds")
                            .iter()
                            .any(|k| k["kind"].is_null() || k["kind"] == "build")
                    })
                    .map(|d| text(&d["pkg"]))
                    .collect();
                (text(&node["id"]), linked)
            })
            .collect();
        let members = meta["workspace_members"]
            .as_array()
            .expect("workspace members")
            .iter()
            .map(|id| (names[&text(id)].clone(), text(id)))
            .collect();
        Graph {
            names,
            deps,
            members,
        }
    }

    fn direct(&self, krate: &str) -> BTreeSet<&str> {
        self.deps[&self.members[krate]]
            .iter()
            .map(|id| self.names[id].as_str())
            .collect()
    }

    /// Every crate `krate` reaches, not walking past the crates in `stop`
    /// (which are themselves reached).
    fn reach(&self, krate: &str, stop: &[&str]) -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![&self.members[krate]];
        let mut visited = HashSet::new();
        while let Some(id) = todo.pop() {
            for dep in &self.deps[id] {
                let name = self.names[dep].as_str();
                seen.insert(name);
                if visited.insert(dep) && !stop.contains(&name) {
                    todo.push(dep);
                }
            }
        }
        seen
    }
}

/// The layering written in ARCHITECTURE.md holds in the resolved graph,
/// transitively: a crate cannot reach a driver, tantivy or axum around its
/// owner, nor a layer above its own.
#[test]
fn layers_do_not_leak() {
    let graph = Graph::load();
    let mut broken = Vec::new();

    for krate in graph.members.keys() {
        if !LAYERS.iter().any(|l| l.krate == krate) {
            broken.push(format!(
                "{krate} has no row in LAYERS: say what it may not reach"
            ));
        }
    }
    for layer in LAYERS {
        if !graph.members.contains_key(layer.krate) {
            broken.push(format!(
                "LAYERS names {}, which is not in the workspace",
                layer.krate
            ));
        }
    }
    for domain in DOMAINS {
        if !LAYERS.iter().any(|l| l.krate == *domain) {
            broken.push(format!("the domain {domain} needs its row in LAYERS"));
        }
    }
    if !broken.is_empty() {
        panic!("{}", broken.join("\n"));
    }

    for layer in LAYERS {
        let direct = graph.direct(layer.krate);
        for dep in layer.never_directly.iter().flat_map(|group| group.iter()) {
            if direct.contains(dep) {
                broken.push(format!("{} depends directly on {dep}", layer.krate));
            }
        }
        let reached = graph.reach(layer.krate, &[]);
        let domain_rule: Vec<&str> = if DOMAINS.contains(&layer.krate) {
            DOMAINS
                .iter()
                .copied()
                .filter(|d| *d != layer.krate)
                .chain([SERVER, CLI, APP])
                .collect()
        } else {
            Vec::new()
        };
        let never = layer
            .never
            .iter()
            .flat_map(|group| group.iter().copied())
            .chain(domain_rule);
        for dep in never {
            if reached.contains(dep) {
                broken.push(format!("{} reaches {dep}", layer.krate));
            }
        }
    }

    for (dep, owners) in OWNED {
        for krate in graph.members.keys() {
            if owners.contains(&krate.as_str()) {
                continue;
            }
            if graph.direct(krate).contains(dep) {
                broken.push(format!(
                    "{krate} depends directly on {dep}, which only {owners:?} may"
                ));
            } else if graph.reach(krate, owners).contains(dep) {
                broken.push(format!(
                    "{krate} reaches {dep} other than through {owners:?}"
                ));
            }
        }
    }

    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
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
