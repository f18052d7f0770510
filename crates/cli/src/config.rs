//! Configuration, layered: defaults < config file < environment < flags.
//! (Clap merges environment and flags; the file fills what both left unset.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use kontextual_app::NatsConfig;
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
    /// `[events]`: where the event feed is published besides the API.
    pub events: Option<EventsFileConfig>,
}

/// The `[events]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsFileConfig {
    /// Publish every event to NATS JetStream here (`serve`).
    pub nats_url: Option<String>,
    /// Subjects are `<prefix>.<namespace>.<event type>`.
    pub nats_subject_prefix: Option<String>,
    /// The JetStream stream capturing `<prefix>.>` (created if missing).
    pub nats_stream: Option<String>,
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
    /// Publish the event feed to NATS JetStream (`serve`), if configured.
    pub nats: Option<NatsConfig>,
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

# Publish every event to NATS JetStream while `serve` runs (docs/events.md).
# Each setting can also come from KONTEXTUAL_EVENTS_NATS_URL, _SUBJECT_PREFIX, _STREAM.
# [events]
# nats_url = \"nats://127.0.0.1:4222\"
# nats_subject_prefix = \"kontextual.events\"
# nats_stream = \"KONTEXTUAL_EVENTS\"
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
        let nats = nats_config(file.events.unwrap_or_default(), |k| std::env::var(k).ok());
        Ok(Config {
            nats,
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

/// The NATS publisher's settings: the environment over the file's
/// `[events]` table; none without a URL. An empty value counts as unset.
fn nats_config(file: EventsFileConfig, env: impl Fn(&str) -> Option<String>) -> Option<NatsConfig> {
    let pick = |key: &str, from_file: Option<String>| {
        env(key).or(from_file).filter(|v| !v.trim().is_empty())
    };
    let url = pick("KONTEXTUAL_EVENTS_NATS_URL", file.nats_url)?;
    let mut cfg = NatsConfig::new(url);
    if let Some(prefix) = pick(
        "KONTEXTUAL_EVENTS_NATS_SUBJECT_PREFIX",
        file.nats_subject_prefix,
    ) {
        cfg.subject_prefix = prefix;
    }
    if let Some(stream) = pick("KONTEXTUAL_EVENTS_NATS_STREAM", file.nats_stream) {
        cfg.stream = stream;
    }
    Some(cfg)
}

fn read(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)?;
    Ok(toml::from_str(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o5_nats_settings_layer_env_over_file() {
        let none = |_: &str| None;
        assert!(nats_config(EventsFileConfig::default(), none).is_none());
        let file: FileConfig =
            toml::from_str("[events]\nnats_url = \"nats://file:4222\"\nnats_stream = \"S\"\n")
                .unwrap();
        let cfg = nats_config(file.events.unwrap(), none).unwrap();
        assert_eq!(
            (
                cfg.url.as_str(),
                cfg.stream.as_str(),
                cfg.subject_prefix.as_str()
            ),
            ("nats://file:4222", "S", "kontextual.events")
        );
        let env = |k: &str| match k {
            "KONTEXTUAL_EVENTS_NATS_URL" => Some("nats://env:4222".to_owned()),
            "KONTEXTUAL_EVENTS_NATS_SUBJECT_PREFIX" => Some("kx.ev".to_owned()),
            _ => None,
        };
        let file = EventsFileConfig {
            nats_url: Some("nats://file:4222".to_owned()),
            ..Default::default()
        };
        let cfg = nats_config(file, env).unwrap();
        assert_eq!(
            (cfg.url.as_str(), cfg.subject_prefix.as_str()),
            ("nats://env:4222", "kx.ev")
        );
        // the shipped default file parses, [events] commented out
        let shipped: FileConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert!(shipped.events.is_none());
        let typo = toml::from_str::<FileConfig>("[events]\nnats_uri = \"x\"\n");
        assert!(typo.is_err());
    }
}
