//! Configuration, layered: defaults < config file < environment < flags.
//! (Clap merges environment and flags; the file fills what both left unset.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cli::Global;

pub const CONFIG_FILE: &str = "kontextual.toml";

/// The config file. Unknown keys are an error, so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub namespace: Option<String>,
    pub actor: Option<String>,
    /// How long a write waits for another process's write lock.
    pub busy_timeout_ms: Option<u64>,
    /// PostgreSQL URL (the store then lives there; the data directory
    /// keeps only the search index). Prefer the environment for secrets.
    pub database_url: Option<String>,
}

#[derive(Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    /// PostgreSQL holds the store; the data directory only the local
    /// search projection.
    pub database_url: Option<String>,
    pub namespace: String,
    pub actor: String,
    pub busy_timeout: Duration,
}

pub const DEFAULT_CONFIG: &str = "\
# Kontextual configuration. Precedence: these values < KONTEXTUAL_* environment < flags.

# Namespace (tenant) commands act in.
# namespace = \"default\"

# Actor recorded in the audit log for CLI actions (KIND:NAME).
# actor = \"user:local-admin\"

# How long a write waits for another process's write lock, in milliseconds.
# busy_timeout_ms = 5000

# PostgreSQL holding the store (this directory then keeps only the search index).
# A password is better given in KONTEXTUAL_DATABASE_URL than written here.
# database_url = \"postgres://user@db/kontextual\"
";

impl Config {
    pub fn load(g: &Global) -> Result<Config> {
        let data_dir = g
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("kontextual-data"));
        let file = match &g.config {
            Some(path) => {
                Some(read(path).with_context(|| format!("config file {}", path.display()))?)
            }
            None => {
                let path = data_dir.join(CONFIG_FILE);
                if path.exists() {
                    Some(read(&path).with_context(|| format!("config file {}", path.display()))?)
                } else {
                    None
                }
            }
        }
        .unwrap_or_default();
        Ok(Config {
            database_url: g.database_url.clone().or(file.database_url.clone()),
            namespace: g
                .namespace
                .clone()
                .or(file.namespace)
                .unwrap_or_else(|| "default".to_owned()),
            actor: g
                .actor
                .clone()
                .or(file.actor)
                .unwrap_or_else(|| "user:local-admin".to_owned()),
            busy_timeout: Duration::from_millis(file.busy_timeout_ms.unwrap_or(5000)),
            data_dir,
        })
    }
}

fn read(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)?;
    Ok(toml::from_str(&text)?)
}
