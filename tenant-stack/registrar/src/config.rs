//! Registrar configuration: defaults < TOML file < environment / command line.
//!
//! Every key of the file has a flag `--<key-with-dashes>` and an environment variable
//! `VOUCH_REGISTRAR_<KEY>` (clap reads both); the file itself comes from `--config` or
//! `VOUCH_REGISTRAR_CONFIG`. `registrar.example.toml` documents every key (a test loads it).

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Default HTTP listen address (upstream registrar `port = 8890`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8890";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vouch/registrar";
pub const DEFAULT_EK_CA_DIR: &str = "/etc/vouch/ek-ca";
/// Name of the database file inside `state_dir` when `db_path` is not set.
pub const DB_FILE_NAME: &str = "registrar.sqlite3";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default mTLS listen address (upstream registrar `tls_port = 8891`).
pub const DEFAULT_TLS_LISTEN: &str = "127.0.0.1:8891";

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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Plain-HTTP listener: `/version`, registration, activation (what agents use).
    pub listen: SocketAddr,
    /// Directory for the database (created if missing).
    pub state_dir: PathBuf,
    /// SQLite database file; `<state_dir>/registrar.sqlite3` when unset.
    pub db_path: Option<PathBuf>,
    /// Directory of CA certificates (PEM/DER) that EK certificates must chain to.
    pub ek_ca_dir: PathBuf,
    /// Refuse registrations without an EK certificate that chains to `ek_ca_dir`. When false,
    /// the certificate is optional and its chain is not checked (a warning is logged for every
    /// registration); a certificate that is sent must still certify the EK.
    pub require_ek_cert: bool,
    /// Let an existing agent id re-register with a different EK, EK certificate or AK
    /// (upstream refuses with 403; delete the agent first instead).
    pub allow_reregistration_with_new_keys: bool,
    /// Largest accepted request body; larger → 413.
    pub max_body_bytes: usize,
    /// Serve the admin routes (list, show, delete) on the plain-HTTP listener. Upstream serves
    /// them only over mTLS; enable for tests and trusted loopback setups only.
    pub insecure_admin_over_http: bool,
    /// mTLS listener: every route, admin routes included, for clients holding a certificate
    /// issued by the CA of `tls_dir`. Only bound when `tls_dir` is set.
    pub tls_listen: SocketAddr,
    /// TLS directory in upstream's `cv_ca` layout (`vouch certs init`): `cacert.crt` (CA that
    /// client certificates must chain to), `server-cert.crt`, `server-private.pem`. Unset: no
    /// TLS listener (the admin API is then unreachable unless `insecure_admin_over_http`).
    pub tls_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8890)),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            db_path: None,
            ek_ca_dir: PathBuf::from(DEFAULT_EK_CA_DIR),
            require_ek_cert: true,
            allow_reregistration_with_new_keys: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            insecure_admin_over_http: false,
            tls_listen: SocketAddr::from(([127, 0, 0, 1], 8891)),
            tls_dir: None,
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

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
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
    name = "vouch-registrar",
    version,
    about = "Vouch registrar (keylime registrar API 2.x)"
)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "VOUCH_REGISTRAR_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "VOUCH_REGISTRAR_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "VOUCH_REGISTRAR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long, env = "VOUCH_REGISTRAR_DB_PATH")]
    pub db_path: Option<PathBuf>,
    #[arg(long, env = "VOUCH_REGISTRAR_EK_CA_DIR")]
    pub ek_ca_dir: Option<PathBuf>,
    #[arg(long, env = "VOUCH_REGISTRAR_REQUIRE_EK_CERT", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub require_ek_cert: Option<bool>,
    #[arg(long, env = "VOUCH_REGISTRAR_ALLOW_REREGISTRATION_WITH_NEW_KEYS", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub allow_reregistration_with_new_keys: Option<bool>,
    #[arg(long, env = "VOUCH_REGISTRAR_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    #[arg(long, env = "VOUCH_REGISTRAR_INSECURE_ADMIN_OVER_HTTP", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub insecure_admin_over_http: Option<bool>,
    #[arg(long, env = "VOUCH_REGISTRAR_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    #[arg(long, env = "VOUCH_REGISTRAR_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Defaults, then the file (if any), then these overrides; validated.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = &self.state_dir {
            c.state_dir = v.clone();
        }
        if let Some(v) = &self.db_path {
            c.db_path = Some(v.clone());
        }
        if let Some(v) = &self.ek_ca_dir {
            c.ek_ca_dir = v.clone();
        }
        if let Some(v) = self.require_ek_cert {
            c.require_ek_cert = v;
        }
        if let Some(v) = self.allow_reregistration_with_new_keys {
            c.allow_reregistration_with_new_keys = v;
        }
        if let Some(v) = self.max_body_bytes {
            c.max_body_bytes = v;
        }
        if let Some(v) = self.insecure_admin_over_http {
            c.insecure_admin_over_http = v;
        }
        if let Some(v) = self.tls_listen {
            c.tls_listen = v;
        }
        if let Some(v) = &self.tls_dir {
            c.tls_dir = Some(v.clone());
        }
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
        assert!(c.require_ek_cert);
        assert!(!c.allow_reregistration_with_new_keys);
        assert!(!c.insecure_admin_over_http);
        assert_eq!(c.tls_listen.to_string(), DEFAULT_TLS_LISTEN);
        assert_eq!(c.tls_dir, None);
    }

    #[test]
    fn example_file_loads_and_flags_override() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("registrar.example.toml");
        let from_file = Config::from_file(&example).unwrap();
        assert_eq!(
            from_file,
            Config::default(),
            "the example documents the defaults"
        );
        let args = ConfigArgs::try_parse_from([
            "vouch-registrar",
            "--config",
            example.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--require-ek-cert",
            "false",
            "--max-body-bytes",
            "10",
            "--tls-dir",
            "/tmp/tls",
        ])
        .unwrap();
        let c = args.resolve().unwrap();
        assert_eq!(c.listen.port(), 0);
        assert!(!c.require_ek_cert);
        assert_eq!(c.max_body_bytes, 10);
        assert_eq!(c.tls_dir.as_deref(), Some(Path::new("/tmp/tls")));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = Config::from_toml("requre_ek_cert = false").unwrap_err();
        assert!(
            e.to_string().contains("unknown field `requre_ek_cert`"),
            "{e}"
        );
        let e = Config::from_toml("listen = \"nowhere\"").unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let c = Config {
            max_body_bytes: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }
}
