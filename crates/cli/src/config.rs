//! Configuration, layered: defaults < config file < environment < flags.
//! (Clap merges environment and flags; the file fills what both left unset.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use kontextual_app::{
    MAX_WEBHOOK_IN_FLIGHT as MAX_IN_FLIGHT, NatsConfig, WEBHOOKS_ALLOW_ENV, WebhookAllowList,
    WebhooksConfig,
};
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
    /// `[webhooks]`: how webhook deliveries are made.
    pub webhooks: Option<WebhooksFileConfig>,
}

/// The `[webhooks]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFileConfig {
    /// Networks (CIDRs or addresses) deliveries may reach although they are
    /// private, loopback, … — for a receiver on the LAN.
    pub allow: Option<Vec<String>>,
    /// One attempt's deadline in seconds (1-300; default 15).
    pub timeout_secs: Option<u64>,
    /// Finished deliveries are kept this many days (default 30).
    pub retention_days: Option<u64>,
    /// A delivery job's attempts in flight at once, per worker thread
    /// (1-64; default 4).
    pub in_flight: Option<usize>,
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
    /// How webhook deliveries are made.
    pub webhooks: WebhooksConfig,
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

# Webhook deliveries (docs/webhooks.md). Deliveries never reach loopback, private,
# link-local or metadata addresses unless their network is allowed here (or in
# KONTEXTUAL_WEBHOOKS_ALLOW=10.1.2.0/24,…, which adds to this list).
# [webhooks]
# allow = [\"10.1.2.0/24\"]
# timeout_secs = 15
# retention_days = 30
# in_flight = 4          # attempts in flight per worker thread (one connection each)
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
        let webhooks =
            webhooks_config(file.webhooks.unwrap_or_default(), |k| std::env::var(k).ok())?;
        Ok(Config {
            nats,
            webhooks,
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

/// The webhooks' settings: the file's `[webhooks]` table, with the
/// networks of `KONTEXTUAL_WEBHOOKS_ALLOW` added to its allowlist.
fn webhooks_config(
    file: WebhooksFileConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<WebhooksConfig> {
    let mut allow: Vec<String> = file.allow.unwrap_or_default();
    if let Some(v) = env(WEBHOOKS_ALLOW_ENV) {
        allow.extend(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    let mut cfg = WebhooksConfig {
        allow: WebhookAllowList::from_values(&allow)
            .context("[webhooks] allow / KONTEXTUAL_WEBHOOKS_ALLOW")?,
        ..WebhooksConfig::default()
    };
    if let Some(t) = file.timeout_secs {
        anyhow::ensure!(
            (1..=300).contains(&t),
            "[webhooks] timeout_secs must be 1 to 300 seconds, not {t}"
        );
        cfg.timeout = Duration::from_secs(t);
    }
    if let Some(d) = file.retention_days {
        anyhow::ensure!(
            (1..=3650).contains(&d),
            "[webhooks] retention_days must be 1 to 3650 days, not {d}"
        );
        cfg.retention = Duration::from_secs(d * 86_400);
    }
    if let Some(n) = file.in_flight {
        anyhow::ensure!(
            (1..=MAX_IN_FLIGHT).contains(&n),
            "[webhooks] in_flight must be 1 to {MAX_IN_FLIGHT}, not {n}"
        );
        cfg.in_flight = n;
    }
    Ok(cfg)
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
        assert!(shipped.webhooks.is_none());
        let typo = toml::from_str::<FileConfig>("[events]\nnats_uri = \"x\"\n");
        assert!(typo.is_err());
    }

    #[test]
    fn o5_webhook_settings_layer_env_onto_file() {
        let none = |_: &str| None;
        let cfg = webhooks_config(WebhooksFileConfig::default(), none).unwrap();
        assert!(cfg.allow.nets().is_empty());
        let file: FileConfig = toml::from_str(
            "[webhooks]\nallow = [\"127.0.0.1/32\"]\ntimeout_secs = 2\nretention_days = 7\nin_flight = 9\n",
        )
        .unwrap();
        let env = |k: &str| (k == WEBHOOKS_ALLOW_ENV).then(|| "10.1.2.0/24, ".to_owned());
        let cfg = webhooks_config(file.webhooks.unwrap(), env).unwrap();
        assert_eq!(cfg.allow.nets().len(), 2);
        assert_eq!(cfg.timeout, Duration::from_secs(2));
        assert_eq!(cfg.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(cfg.in_flight, 9);
        for n in [0, MAX_IN_FLIGHT + 1] {
            let bad = WebhooksFileConfig {
                in_flight: Some(n),
                ..Default::default()
            };
            let e = webhooks_config(bad, none).unwrap_err();
            assert!(
                format!("{e:#}").contains("in_flight must be 1 to 64"),
                "{e:#}"
            );
        }
        let bad = WebhooksFileConfig {
            timeout_secs: Some(0),
            ..Default::default()
        };
        assert!(webhooks_config(bad, none).is_err());
        let bad = WebhooksFileConfig {
            allow: Some(vec!["not-a-net".into()]),
            ..Default::default()
        };
        let e = webhooks_config(bad, none).unwrap_err();
        assert!(format!("{e:#}").contains("not-a-net"), "{e:#}");
    }
}
