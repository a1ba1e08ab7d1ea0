//! Agent configuration: a TOML file (`--config` / `VOUCH_AGENT_CONFIG`), every key overridable
//! by `VOUCH_AGENT_<KEY>` (upper case), and defaults good enough for a first run.
//! `agent.example.toml` documents every key; a test loads it.

use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use vouch_core::tpm::HashAlg;
use vouch_tpm::{AkKind, EkKind};

/// rust-keylime's default agent UUID (`keylime-agent.conf`), so a stock tenant command works.
pub const DEFAULT_UUID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000";
/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "VOUCH_AGENT_";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "VOUCH_AGENT_CONFIG";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config: {0}")]
    Invalid(String),
    #[error("environment variable {var}: {detail}")]
    Env { var: String, detail: String },
}

/// The keys as written in TOML; see `agent.example.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Agent ID registered with the registrar (keylime accepts `[\w.-]+`).
    pub uuid: String,
    /// Address the agent API listens on (`host:port`; port 0 = any free port).
    pub listen: String,
    /// Address registered as the agent's `ip`; empty = the listen address's IP.
    pub contact_ip: String,
    /// Port registered as the agent's `port`; 0 = the port actually bound.
    pub contact_port: u16,
    /// Registrar `host:port` (its plain-HTTP port), or a full `http://` URL.
    pub registrar: String,
    /// Where the AK blobs are kept across restarts.
    pub state_dir: PathBuf,
    /// TPM TCTI, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`; empty =
    /// `VOUCH_TCTI` / `TPM2TOOLS_TCTI`.
    pub tcti: String,
    /// EK template: `rsa2048`, `ecc-p256` or `ecc-p384`.
    pub ek: String,
    /// AK type: `rsa2048` (RSASSA) or `ecc-p256` (ECDSA).
    pub ak: String,
    /// The AK's signing hash, which is also the quote's PCR bank: sha1, sha256, sha384, sha512.
    pub hash_alg: String,
    /// Registration attempts while the registrar is unreachable or answers 5xx (0 = forever).
    pub registrar_retries: u32,
    /// First retry delay in milliseconds; doubles per attempt up to 30 s.
    pub registrar_retry_ms: u64,
    /// Where decrypted payloads go (a tmpfs mounted there when root); empty = `<state_dir>/secure`.
    pub secure_mount: PathBuf,
    /// tmpfs `size=` of the secure mount: digits with an optional k/m/g/% suffix.
    pub secure_size: String,
    /// Extract zip payloads into `<secure_mount>/unzipped` (rust-keylime `extract_payload_zip`).
    pub extract_payload_zip: bool,
    /// Run the payload's `autorun.sh` (rust-keylime `payload_script = "autorun.sh"`).
    pub run_autorun: bool,
    /// Seconds `autorun.sh` may run before it is killed.
    pub autorun_timeout_secs: u64,
    /// Run payload scripts although the agent API has no mTLS (rust-keylime's option of the
    /// same name; without it upstream refuses to deploy payloads on a non-mTLS agent).
    pub enable_insecure_payload: bool,
    /// TPM NV index keeping U across reboots (owner-authorized, 82 bytes); 0 = do not keep U.
    pub nv_index: u32,
    /// Serve the agent API over mTLS with the agent's own self-signed certificate (registered
    /// as `mtls_cert`), requiring client certificates issued by `trusted_client_ca`.
    /// Unset = on exactly when `trusted_client_ca` is set. Off = plain HTTP and
    /// `mtls_cert: "disabled"` (upstream's `enable_agent_mtls = False`).
    pub enable_agent_mtls: Option<bool>,
    /// PEM file of the CA(s) whose client certificates (verifier, tenant) may call the agent
    /// API (rust-keylime `trusted_client_ca`); empty = none.
    pub trusted_client_ca: PathBuf,
    /// The kernel's ASCII IMA log, served from entry `ima_ml_entry` on (rust-keylime
    /// `ima_ml_path`). A missing file means no IMA: integrity quotes then carry no list.
    pub ima_ml_path: PathBuf,
    /// The binary UEFI event log, sent with quotes whose mask includes PCR 0 (rust-keylime
    /// `measuredboot_ml_path`). A missing file means no measured boot log.
    pub measuredboot_ml_path: PathBuf,
    /// The verifier's hint listener (`http://host:port`, its `hint_listen`): when set, the
    /// agent watches its IMA log and PCRs and sends a signed "attest me now" on a change.
    /// Empty = no hints (the verifier's polling alone detects changes).
    pub verifier_hint_url: String,
    /// Milliseconds between two looks at the IMA log for new entries.
    pub hint_ima_poll_ms: u64,
    /// Milliseconds between two PCR reads for change detection; 0 = PCRs not watched.
    pub hint_pcr_poll_ms: u64,
    /// Revocation actions run for every verified revocation notice, before the payload's
    /// `action_list` (rust-keylime `revocation_actions`): file names in
    /// `revocation_actions_dir`, comma- or space-separated; empty = none.
    pub revocation_actions: String,
    /// Where installed revocation actions live (rust-keylime `revocation_actions_dir`).
    pub revocation_actions_dir: PathBuf,
    /// Whether actions shipped in the payload (named in its `action_list`) may run
    /// (rust-keylime `allow_payload_revocation_actions`). Like `autorun.sh`, they run only
    /// with agent mTLS on or `enable_insecure_payload`.
    pub allow_payload_revocation_actions: bool,
    /// Seconds one revocation action may run before its process group is killed.
    pub revocation_action_timeout_secs: u64,
    /// The certificate revocation notices must be signed by (rust-keylime `revocation_cert`);
    /// `default` or empty = `RevocationNotifier-cert.crt` from the payload
    /// (`<secure_mount>/unzipped/`), relative paths are under `<secure_mount>/unzipped/` too.
    pub revocation_cert: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            uuid: DEFAULT_UUID.into(),
            listen: "127.0.0.1:9002".into(),
            contact_ip: String::new(),
            contact_port: 0,
            registrar: "127.0.0.1:8890".into(),
            state_dir: PathBuf::from("/var/lib/vouch-agent"),
            tcti: String::new(),
            ek: "rsa2048".into(),
            ak: "rsa2048".into(),
            hash_alg: "sha256".into(),
            registrar_retries: 10,
            registrar_retry_ms: 500,
            secure_mount: PathBuf::new(),
            secure_size: "1m".into(),
            extract_payload_zip: true,
            run_autorun: true,
            autorun_timeout_secs: 300,
            enable_insecure_payload: false,
            nv_index: crate::nv_share::DEFAULT_NV_INDEX,
            enable_agent_mtls: None,
            trusted_client_ca: PathBuf::new(),
            ima_ml_path: PathBuf::from("/sys/kernel/security/ima/ascii_runtime_measurements"),
            measuredboot_ml_path: PathBuf::from(
                "/sys/kernel/security/tpm0/binary_bios_measurements",
            ),
            verifier_hint_url: String::new(),
            hint_ima_poll_ms: 10,
            hint_pcr_poll_ms: 100,
            revocation_actions: String::new(),
            revocation_actions_dir: PathBuf::from(crate::revocation::DEFAULT_ACTIONS_DIR),
            allow_payload_revocation_actions: true,
            revocation_action_timeout_secs: crate::revocation::DEFAULT_ACTION_TIMEOUT.as_secs(),
            revocation_cert: "default".into(),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
}

/// Every key with the type of its value (for env overrides).
const KEYS: [(&str, Kind); 31] = [
    ("uuid", Kind::Str),
    ("listen", Kind::Str),
    ("contact_ip", Kind::Str),
    ("contact_port", Kind::Int),
    ("registrar", Kind::Str),
    ("state_dir", Kind::Str),
    ("tcti", Kind::Str),
    ("ek", Kind::Str),
    ("ak", Kind::Str),
    ("hash_alg", Kind::Str),
    ("registrar_retries", Kind::Int),
    ("registrar_retry_ms", Kind::Int),
    ("secure_mount", Kind::Str),
    ("secure_size", Kind::Str),
    ("extract_payload_zip", Kind::Bool),
    ("run_autorun", Kind::Bool),
    ("autorun_timeout_secs", Kind::Int),
    ("enable_insecure_payload", Kind::Bool),
    ("nv_index", Kind::Int),
    ("enable_agent_mtls", Kind::Bool),
    ("trusted_client_ca", Kind::Str),
    ("ima_ml_path", Kind::Str),
    ("measuredboot_ml_path", Kind::Str),
    ("verifier_hint_url", Kind::Str),
    ("hint_ima_poll_ms", Kind::Int),
    ("hint_pcr_poll_ms", Kind::Int),
    ("revocation_actions", Kind::Str),
    ("revocation_actions_dir", Kind::Str),
    ("allow_payload_revocation_actions", Kind::Bool),
    ("revocation_action_timeout_secs", Kind::Int),
    ("revocation_cert", Kind::Str),
];

impl AgentConfig {
    /// Load `path` (or the defaults when `None`), then apply `VOUCH_AGENT_*` from the process
    /// environment, then validate.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// [`Self::load`] with an explicit environment (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_path_buf(),
                    source: Box::new(e),
                })?
            }
            None => toml::Table::new(),
        };
        for (key, kind) in KEYS {
            let var = format!("{ENV_PREFIX}{}", key.to_ascii_uppercase());
            let Some(value) = env.get(&var) else { continue };
            let value = match kind {
                Kind::Int => {
                    let v = value.trim();
                    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                        Some(hex) => i64::from_str_radix(hex, 16),
                        None => v.parse(),
                    };
                    toml::Value::Integer(n.map_err(|_| ConfigError::Env {
                        var: var.clone(),
                        detail: format!("{value:?} is not an integer"),
                    })?)
                }
                Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => toml::Value::Boolean(true),
                    "false" | "0" | "no" => toml::Value::Boolean(false),
                    _ => {
                        return Err(ConfigError::Env {
                            var,
                            detail: format!("{value:?} is not true or false"),
                        })
                    }
                },
                Kind::Str => toml::Value::String(value.clone()),
            };
            table.insert(key.to_string(), value);
        }
        let config: AgentConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e| ConfigError::Parse {
                    path: path.map_or_else(|| PathBuf::from("<environment>"), Path::to_path_buf),
                    source: Box::new(e),
                })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        vouch_core::api::registrar::AgentId::parse(&self.uuid)
            .map_err(|e| ConfigError::Invalid(format!("uuid: {e}")))?;
        self.listen_addr()?;
        self.ek_kind()?;
        self.ak_kind()?;
        self.hash()?;
        self.registrar_url()?;
        let size = self
            .secure_size
            .trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || self.secure_size.len() > size.len() + 1
        {
            return Err(ConfigError::Invalid(format!(
                "secure_size {:?}: expected a tmpfs size such as 1m, 512k or 10%",
                self.secure_size
            )));
        }
        if self.nv_index != 0 && self.nv_index >> 24 != 0x01 {
            return Err(ConfigError::Invalid(format!(
                "nv_index {:#x} is not an NV index handle (0x01xxxxxx), or 0 to disable",
                self.nv_index
            )));
        }
        if !self.contact_ip.is_empty() && self.contact_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "contact_ip {:?} is not an IP address",
                self.contact_ip
            )));
        }
        if !self.verifier_hint_url.is_empty() && !self.verifier_hint_url.starts_with("http://") {
            return Err(ConfigError::Invalid(format!(
                "verifier_hint_url {:?}: expected http://host:port (the verifier's hint_listen)",
                self.verifier_hint_url
            )));
        }
        if self.hint_ima_poll_ms == 0 {
            return Err(ConfigError::Invalid(
                "hint_ima_poll_ms must be at least 1".into(),
            ));
        }
        if let Some(bad) = crate::revocation::parse_action_list(&self.revocation_actions)
            .into_iter()
            .find(|a| a.contains('/') || a == "." || a == "..")
        {
            return Err(ConfigError::Invalid(format!(
                "revocation_actions: {bad:?} is not a plain file name (actions are looked up in \
                 revocation_actions_dir)"
            )));
        }
        if self.revocation_action_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "revocation_action_timeout_secs must be at least 1".into(),
            ));
        }
        if self.agent_mtls() && self.trusted_client_ca.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "enable_agent_mtls = true needs trusted_client_ca (the CA file of the verifier's \
                 and tenant's client certificates)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether the API is served over mTLS (see `enable_agent_mtls`).
    pub fn agent_mtls(&self) -> bool {
        self.enable_agent_mtls
            .unwrap_or(!self.trusted_client_ca.as_os_str().is_empty())
    }

    /// Where the agent keeps its own TLS certificate and key.
    pub fn mtls_files(&self) -> (PathBuf, PathBuf) {
        let dir = self.state_dir.join("mtls");
        (dir.join("agent-cert.crt"), dir.join("agent-private.pem"))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "listen {:?} is not an IP:port address",
                self.listen
            ))
        })
    }

    pub fn ek_kind(&self) -> Result<EkKind, ConfigError> {
        parse_ek(&self.ek).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "ek {:?}: expected rsa2048, ecc-p256 or ecc-p384",
                self.ek
            ))
        })
    }

    pub fn ak_kind(&self) -> Result<AkKind, ConfigError> {
        parse_ak(&self.ak).ok_or_else(|| {
            ConfigError::Invalid(format!("ak {:?}: expected rsa2048 or ecc-p256", self.ak))
        })
    }

    pub fn hash(&self) -> Result<HashAlg, ConfigError> {
        HashAlg::from_name(&self.hash_alg).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "hash_alg {:?}: expected sha1, sha256, sha384 or sha512",
                self.hash_alg
            ))
        })
    }

    /// The registrar base URL, without a trailing slash.
    pub fn registrar_url(&self) -> Result<String, ConfigError> {
        let r = self.registrar.trim().trim_end_matches('/');
        if r.starts_with("https://") {
            return Err(ConfigError::Invalid(format!(
                "registrar {r:?}: the agent registers over the registrar's plain-HTTP port (docs/keylime-wire.md §7); TLS is not supported yet"
            )));
        }
        let url = if r.starts_with("http://") {
            r.to_string()
        } else {
            format!("http://{r}")
        };
        let host = url.trim_start_matches("http://");
        if host.is_empty() || !host.contains(':') {
            return Err(ConfigError::Invalid(format!(
                "registrar {:?}: expected host:port, e.g. 127.0.0.1:8890",
                self.registrar
            )));
        }
        Ok(url)
    }

    /// The secure mount directory (`secure_mount`, else `<state_dir>/secure`).
    pub fn secure_mount_dir(&self) -> PathBuf {
        if self.secure_mount.as_os_str().is_empty() {
            self.state_dir.join("secure")
        } else {
            self.secure_mount.clone()
        }
    }

    /// Where payloads are extracted, and where a payload's revocation files are read from.
    pub fn unzipped_dir(&self) -> PathBuf {
        self.secure_mount_dir().join(crate::payload::UNZIPPED)
    }

    /// The replay record of revocation notices (`<state_dir>/revocation-seen.json`).
    pub fn revocation_seen_store(&self) -> PathBuf {
        self.state_dir.join(crate::revocation::SEEN_FILE)
    }

    /// What the revocation module needs (see `revocation.rs`).
    pub fn revocation(&self) -> crate::revocation::RevocationConfig {
        let cert = self.revocation_cert.trim();
        crate::revocation::RevocationConfig {
            actions: self.revocation_actions.clone(),
            actions_dir: self.revocation_actions_dir.clone(),
            allow_payload_actions: self.allow_payload_revocation_actions
                && (self.agent_mtls() || self.enable_insecure_payload),
            action_timeout: Duration::from_secs(self.revocation_action_timeout_secs.max(1)),
            cert: (!cert.is_empty() && cert != "default").then(|| self.unzipped_dir().join(cert)),
        }
    }

    pub fn retry_delay(&self) -> Duration {
        Duration::from_millis(self.registrar_retry_ms.max(1))
    }
}

pub(crate) fn parse_ek(s: &str) -> Option<EkKind> {
    match s {
        "rsa2048" | "rsa" => Some(EkKind::Rsa2048),
        "ecc-p256" | "ecc256" => Some(EkKind::EccP256),
        "ecc-p384" | "ecc384" => Some(EkKind::EccP384),
        _ => None,
    }
}

pub(crate) fn ek_name(k: EkKind) -> &'static str {
    match k {
        EkKind::Rsa2048 => "rsa2048",
        EkKind::EccP256 => "ecc-p256",
        EkKind::EccP384 => "ecc-p384",
    }
}

pub(crate) fn parse_ak(s: &str) -> Option<AkKind> {
    match s {
        "rsa2048" | "rsa" => Some(AkKind::Rsa2048),
        "ecc-p256" | "ecc256" => Some(AkKind::EccP256),
        _ => None,
    }
}

pub(crate) fn ak_name(k: AkKind) -> &'static str {
    match k {
        AkKind::Rsa2048 => "rsa2048",
        AkKind::EccP256 => "ecc-p256",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let c = AgentConfig::load_with_env(None, &env(&[])).unwrap();
        assert_eq!(c, AgentConfig::default());
        assert_eq!(c.registrar_url().unwrap(), "http://127.0.0.1:8890");
        assert_eq!(c.listen_addr().unwrap().port(), 9002);
    }

    #[test]
    fn example_file_loads_and_env_overrides() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        let c = AgentConfig::load_with_env(Some(&path), &env(&[])).unwrap();
        assert_eq!(
            c,
            AgentConfig::default(),
            "the example documents the defaults"
        );
        let c = AgentConfig::load_with_env(
            Some(&path),
            &env(&[
                ("VOUCH_AGENT_UUID", "node-1"),
                ("VOUCH_AGENT_CONTACT_PORT", "9100"),
                ("VOUCH_AGENT_REGISTRAR", "http://10.0.0.1:8890/"),
                ("VOUCH_AGENT_NV_INDEX", "0x01500020"),
                ("VOUCH_AGENT_RUN_AUTORUN", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.nv_index, 0x0150_0020);
        assert!(!c.run_autorun);
        assert_eq!(c.secure_mount_dir(), c.state_dir.join("secure"));
        assert_eq!(c.uuid, "node-1");
        assert_eq!(c.contact_port, 9100);
        assert_eq!(c.registrar_url().unwrap(), "http://10.0.0.1:8890");
    }

    #[test]
    fn revocation_keys() {
        let c = AgentConfig::load_with_env(None, &env(&[])).unwrap();
        let r = c.revocation();
        assert_eq!(
            r.cert, None,
            "default: the payload's RevocationNotifier-cert.crt"
        );
        assert!(
            !r.allow_payload_actions,
            "payload actions are gated like autorun.sh without mTLS"
        );
        assert_eq!(c.unzipped_dir(), c.state_dir.join("secure/unzipped"));
        assert_eq!(
            c.revocation_seen_store(),
            c.state_dir.join("revocation-seen.json")
        );
        let c = AgentConfig::load_with_env(
            None,
            &env(&[
                ("VOUCH_AGENT_REVOCATION_ACTIONS", "[\"a\", 'b']"),
                ("VOUCH_AGENT_REVOCATION_CERT", "notifier.crt"),
                ("VOUCH_AGENT_ENABLE_INSECURE_PAYLOAD", "true"),
                ("VOUCH_AGENT_REVOCATION_ACTION_TIMEOUT_SECS", "5"),
            ]),
        )
        .unwrap();
        let r = c.revocation();
        assert!(r.allow_payload_actions);
        assert_eq!(r.action_timeout, Duration::from_secs(5));
        assert_eq!(r.cert, Some(c.unzipped_dir().join("notifier.crt")));
        let e = AgentConfig::load_with_env(
            None,
            &env(&[("VOUCH_AGENT_REVOCATION_ACTIONS", "ok, ../../bin/sh")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("revocation_actions"), "{e}");
        let e = AgentConfig::load_with_env(
            None,
            &env(&[("VOUCH_AGENT_REVOCATION_ACTION_TIMEOUT_SECS", "0")]),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("revocation_action_timeout_secs"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = AgentConfig::load_with_env(None, &env(&[("VOUCH_AGENT_UUID", "a/b")])).unwrap_err();
        assert!(e.to_string().contains("uuid"), "{e}");
        let e = AgentConfig::load_with_env(None, &env(&[("VOUCH_AGENT_CONTACT_PORT", "x")]))
            .unwrap_err();
        assert!(e.to_string().contains("VOUCH_AGENT_CONTACT_PORT"), "{e}");
        let e =
            AgentConfig::load_with_env(None, &env(&[("VOUCH_AGENT_HASH_ALG", "md5")])).unwrap_err();
        assert!(e.to_string().contains("hash_alg"), "{e}");
        let e = AgentConfig::load_with_env(None, &env(&[("VOUCH_AGENT_REGISTRAR", "https://r:1")]))
            .unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        for bad in ["1m,exec", "", "m", "1mm"] {
            let e = AgentConfig::load_with_env(None, &env(&[("VOUCH_AGENT_SECURE_SIZE", bad)]))
                .unwrap_err();
            assert!(e.to_string().contains("secure_size"), "{e}");
        }
        let e = AgentConfig::load_with_env(None, &env(&[("VOUCH_AGENT_NV_INDEX", "0x81000001")]))
            .unwrap_err();
        assert!(e.to_string().contains("nv_index"), "{e}");
        let e =
            AgentConfig::load_with_env(None, &env(&[("VOUCH_AGENT_ENABLE_AGENT_MTLS", "true")]))
                .unwrap_err();
        assert!(e.to_string().contains("trusted_client_ca"), "{e}");
        let c =
            AgentConfig::load_with_env(None, &env(&[("VOUCH_AGENT_TRUSTED_CLIENT_CA", "/ca.crt")]))
                .unwrap();
        assert!(
            c.agent_mtls(),
            "a trusted_client_ca turns mTLS on by default"
        );
        let c = AgentConfig::load_with_env(
            None,
            &env(&[
                ("VOUCH_AGENT_TRUSTED_CLIENT_CA", "/ca.crt"),
                ("VOUCH_AGENT_ENABLE_AGENT_MTLS", "false"),
            ]),
        )
        .unwrap();
        assert!(!c.agent_mtls());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
        let e = AgentConfig::load_with_env(Some(&p), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
