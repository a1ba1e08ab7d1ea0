//! Verifier configuration: defaults < TOML file < environment / command line.
//!
//! Every key of the file has a flag `--<key-with-dashes>` and an environment variable
//! `VOUCH_VERIFIER_<KEY>` (clap reads both); the file itself comes from `--config` or
//! `VOUCH_VERIFIER_CONFIG`. `verifier.example.toml` documents every key (a test loads it).
//! Same approach as `vouch-registrar`'s `config.rs`.

use crate::mb_policy::Engine;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Default listen address (upstream verifier `port = 8881`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8881";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vouch/verifier";
pub const DEFAULT_TLS_DIR: &str = "/etc/vouch/verifier-tls";
/// Name of the database file inside `state_dir` when `db_path` is not set.
pub const DB_FILE_NAME: &str = "verifier.sqlite3";
/// Upstream `max_upload_size` is 100 MiB; an add body is a few KiB, so 1 MiB is plenty.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading config file {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {}: {cause}", path.display())]
    Parse {
        path: PathBuf,
        cause: Box<toml::de::Error>,
    },
    #[error("{key} = {value}: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTPS listener (client certificate required) for the tenant API.
    pub listen: SocketAddr,
    /// TLS directory in upstream's `cv_ca` layout (`vouch certs init`): `cacert.crt` (CA that
    /// client certificates must chain to), `server-cert.crt`, `server-private.pem`.
    pub tls_dir: PathBuf,
    /// Directory for the database (created if missing).
    pub state_dir: PathBuf,
    /// SQLite database file; `<state_dir>/verifier.sqlite3` when unset.
    pub db_path: Option<PathBuf>,
    /// `verifier_id` reported in status bodies (upstream `[verifier] uuid`, default `default`).
    pub verifier_id: String,
    /// Largest accepted request body; larger → 400 (as upstream's tornado answers).
    pub max_body_bytes: usize,
    /// Seconds between the end of a good quote check and the next quote request
    /// (upstream `quote_interval = 2`; 0 = immediately).
    pub quote_interval: f64,
    /// Connection attempts to an unreachable agent before it is marked FAILED
    /// (upstream `max_retries = 5`).
    pub max_retries: u32,
    /// Seconds before a retry (upstream `retry_interval = 2`).
    pub retry_interval: f64,
    /// Retry `n` waits `retry_interval ** n` seconds instead of `retry_interval` (upstream
    /// `exponential_backoff = True`; only when `retry_interval > 1`, as `common/retry.py`).
    pub exponential_backoff: bool,
    /// Seconds an agent request may take before it counts as a connection failure
    /// (upstream `request_timeout = 60`).
    pub request_timeout: f64,
    /// Quote requests in flight at once, over all agents.
    pub max_concurrent_quotes: usize,
    /// Talk HTTPS to agents that registered a PEM `mtls_cert`, trusting only that certificate
    /// and presenting `tls_dir`'s `client-cert.crt` (upstream `[verifier] enable_agent_mtls`,
    /// default true). False = plain HTTP to every agent.
    pub enable_agent_mtls: bool,
    /// Plain-HTTP listener for agents' "attest me now" hints (a Vouch extension; each hint is
    /// signed with the agent's NK, see `hint.rs`). Unset = no hints: polling only.
    pub hint_listen: Option<SocketAddr>,
    /// Seconds between two hint-triggered quotes of one agent, at least.
    pub min_hint_gap: f64,
    /// Where revocation notices go when an agent fails (upstream `[revocations]
    /// enabled_revocation_notifications`): any of "webhook", "agent". Default: both.
    pub enabled_revocation_notifications: Vec<String>,
    /// URL the JSON revocation notice is POSTed to (upstream `[revocations] webhook_url`);
    /// empty = none.
    pub webhook_url: String,
    /// Software CA directory (`vouch ca init`) whose certificate of a failed node is revoked
    /// and whose CRL is re-issued at once; empty = none. The node's certificate is found by
    /// the `cert_serial` the tenant put in the agent's metadata (as upstream's `--cert` does).
    pub revocation_ca_dir: PathBuf,
    /// The engine that reads every agent's measured-boot refstate (upstream `[verifier]
    /// measured_boot_policy_name`): `example` (upstream's refstate policy), `accept-all` (the
    /// log must still replay to the quote, the refstate is not read) or `reject-all`.
    /// Upstream defaults to `accept-all`, under which a tenant's refstate enforces nothing;
    /// Vouch defaults to `example`, the only engine that reads it.
    pub measured_boot_policy_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8881)),
            tls_dir: PathBuf::from(DEFAULT_TLS_DIR),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            db_path: None,
            verifier_id: "default".into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            quote_interval: 2.0,
            max_retries: 5,
            retry_interval: 2.0,
            exponential_backoff: true,
            request_timeout: 60.0,
            max_concurrent_quotes: 64,
            enable_agent_mtls: true,
            hint_listen: None,
            min_hint_gap: 0.05,
            enabled_revocation_notifications: vec!["agent".into(), "webhook".into()],
            webhook_url: String::new(),
            revocation_ca_dir: PathBuf::new(),
            measured_boot_policy_name: Engine::DEFAULT.name().into(),
        }
    }
}

impl Config {
    /// Parse a TOML file; missing keys take their defaults, unknown keys are an error.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_toml(&text).map_err(|cause| ConfigError::Parse {
            path: path.to_path_buf(),
            cause: Box::new(cause),
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.db_path
            .clone()
            .unwrap_or_else(|| self.state_dir.join(DB_FILE_NAME))
    }

    pub fn quote_interval(&self) -> Duration {
        Duration::from_secs_f64(self.quote_interval)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }

    /// The measured-boot policy engine (`measured_boot_policy_name`, checked by `validate`).
    pub fn mb_engine(&self) -> Result<Engine, ConfigError> {
        Engine::from_name(&self.measured_boot_policy_name).ok_or_else(|| ConfigError::Invalid {
            key: "measured_boot_policy_name",
            value: self.measured_boot_policy_name.clone(),
            why: "must be \"example\", \"accept-all\" or \"reject-all\"",
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let secs = |key: &'static str, v: f64, min: f64| {
            if v.is_finite() && v >= min && v <= 86_400.0 {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    why: "must be a number of seconds between the minimum and 86400",
                })
            }
        };
        secs("quote_interval", self.quote_interval, 0.0)?;
        secs("retry_interval", self.retry_interval, 0.0)?;
        secs("request_timeout", self.request_timeout, 0.001)?;
        secs("min_hint_gap", self.min_hint_gap, 0.0)?;
        for n in &self.enabled_revocation_notifications {
            if n != "agent" && n != "webhook" {
                return Err(ConfigError::Invalid {
                    key: "enabled_revocation_notifications",
                    value: n.clone(),
                    why: "each entry must be \"agent\" or \"webhook\"",
                });
            }
        }
        let url_ok = ["", "http://", "https://"].iter().any(|p| {
            if p.is_empty() {
                self.webhook_url.is_empty()
            } else {
                self.webhook_url.starts_with(p)
            }
        });
        if !url_ok {
            return Err(ConfigError::Invalid {
                key: "webhook_url",
                value: self.webhook_url.clone(),
                why: "must be an http:// or https:// URL, or empty",
            });
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                value: "0".into(),
                why: "must be at least 1",
            });
        }
        self.mb_engine()?;
        if self.max_concurrent_quotes == 0 {
            return Err(ConfigError::Invalid {
                key: "max_concurrent_quotes",
                value: "0".into(),
                why: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// Command line / environment. Each `Option` overrides the file when set.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "vouch-verifier",
    version,
    about = "Vouch verifier (keylime verifier API 2.x)"
)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "VOUCH_VERIFIER_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "VOUCH_VERIFIER_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "VOUCH_VERIFIER_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    #[arg(long, env = "VOUCH_VERIFIER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long, env = "VOUCH_VERIFIER_DB_PATH")]
    pub db_path: Option<PathBuf>,
    #[arg(long, env = "VOUCH_VERIFIER_VERIFIER_ID")]
    pub verifier_id: Option<String>,
    #[arg(long, env = "VOUCH_VERIFIER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    #[arg(long, env = "VOUCH_VERIFIER_QUOTE_INTERVAL")]
    pub quote_interval: Option<f64>,
    #[arg(long, env = "VOUCH_VERIFIER_MAX_RETRIES")]
    pub max_retries: Option<u32>,
    #[arg(long, env = "VOUCH_VERIFIER_RETRY_INTERVAL")]
    pub retry_interval: Option<f64>,
    #[arg(long, env = "VOUCH_VERIFIER_EXPONENTIAL_BACKOFF", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub exponential_backoff: Option<bool>,
    #[arg(long, env = "VOUCH_VERIFIER_REQUEST_TIMEOUT")]
    pub request_timeout: Option<f64>,
    #[arg(long, env = "VOUCH_VERIFIER_MAX_CONCURRENT_QUOTES")]
    pub max_concurrent_quotes: Option<usize>,
    #[arg(long, env = "VOUCH_VERIFIER_ENABLE_AGENT_MTLS", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub enable_agent_mtls: Option<bool>,
    #[arg(long, env = "VOUCH_VERIFIER_HINT_LISTEN")]
    pub hint_listen: Option<SocketAddr>,
    #[arg(long, env = "VOUCH_VERIFIER_MIN_HINT_GAP")]
    pub min_hint_gap: Option<f64>,
    /// Comma-separated.
    #[arg(
        long,
        env = "VOUCH_VERIFIER_ENABLED_REVOCATION_NOTIFICATIONS",
        value_delimiter = ','
    )]
    pub enabled_revocation_notifications: Option<Vec<String>>,
    #[arg(long, env = "VOUCH_VERIFIER_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    #[arg(long, env = "VOUCH_VERIFIER_REVOCATION_CA_DIR")]
    pub revocation_ca_dir: Option<PathBuf>,
    #[arg(long, env = "VOUCH_VERIFIER_MEASURED_BOOT_POLICY_NAME")]
    pub measured_boot_policy_name: Option<String>,
}

impl ConfigArgs {
    /// Defaults, then the file (if any), then these overrides; validated.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut c.listen, &self.listen);
        set(&mut c.tls_dir, &self.tls_dir);
        set(&mut c.state_dir, &self.state_dir);
        if let Some(v) = &self.db_path {
            c.db_path = Some(v.clone());
        }
        set(&mut c.verifier_id, &self.verifier_id);
        set(&mut c.max_body_bytes, &self.max_body_bytes);
        set(&mut c.quote_interval, &self.quote_interval);
        set(&mut c.max_retries, &self.max_retries);
        set(&mut c.retry_interval, &self.retry_interval);
        set(&mut c.exponential_backoff, &self.exponential_backoff);
        set(&mut c.request_timeout, &self.request_timeout);
        set(&mut c.max_concurrent_quotes, &self.max_concurrent_quotes);
        set(&mut c.enable_agent_mtls, &self.enable_agent_mtls);
        if let Some(v) = self.hint_listen {
            c.hint_listen = Some(v);
        }
        set(&mut c.min_hint_gap, &self.min_hint_gap);
        set(
            &mut c.enabled_revocation_notifications,
            &self.enabled_revocation_notifications,
        );
        set(&mut c.webhook_url, &self.webhook_url);
        set(&mut c.revocation_ca_dir, &self.revocation_ca_dir);
        set(
            &mut c.measured_boot_policy_name,
            &self.measured_boot_policy_name,
        );
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = ConfigArgs::default().resolve().unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.db_path(), Path::new(DEFAULT_STATE_DIR).join(DB_FILE_NAME));
        assert_eq!(c.quote_interval(), Duration::from_secs(2));
        assert_eq!(c.max_retries, 5);
    }

    #[test]
    fn example_file_loads_and_flags_override() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("verifier.example.toml");
        let from_file = Config::from_file(&example).unwrap();
        assert_eq!(
            from_file,
            Config::default(),
            "the example documents the defaults"
        );
        let args = ConfigArgs::try_parse_from([
            "vouch-verifier",
            "--config",
            example.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--quote-interval",
            "0.5",
            "--exponential-backoff",
            "false",
        ])
        .unwrap();
        let c = args.resolve().unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.quote_interval(), Duration::from_millis(500));
        assert!(!c.exponential_backoff);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = Config::from_toml("quote_intervall = 1").unwrap_err();
        assert!(e.to_string().contains("quote_intervall"), "{e}");
        let c = Config {
            quote_interval: -1.0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn measured_boot_engine_defaults_to_example_and_bad_names_are_refused() {
        assert_eq!(Config::default().mb_engine().unwrap().name(), "example");
        let c = Config::from_toml("measured_boot_policy_name = \"accept-all\"").unwrap();
        assert_eq!(c.mb_engine().unwrap().name(), "accept-all");
        let args = ConfigArgs::try_parse_from([
            "vouch-verifier",
            "--measured-boot-policy-name",
            "acceptall",
        ])
        .unwrap();
        let e = args.resolve().unwrap_err().to_string();
        assert!(
            e.starts_with("measured_boot_policy_name = acceptall: must be"),
            "{e}"
        );
    }
}
