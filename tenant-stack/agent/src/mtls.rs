//! The agent's own TLS identity for agent mTLS (docs/keylime-wire.md §7), as rust-keylime has
//! it: a self-signed certificate (CN = agent UUID) and key, generated on first start and kept
//! in `<state_dir>/mtls/` so the registered `mtls_cert` stays valid across restarts. The
//! certificate is a non-CA end entity (see `vouch_tls::self_signed`): peers pin it as their only
//! root, which both OpenSSL (upstream) and rustls (Vouch) accept.

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use thiserror::Error;
use vouch_tls::{CertFiles, Identity, SubjectName, TlsError};

#[derive(Debug, Error)]
pub enum MtlsError {
    #[error("agent mTLS certificate: {0}")]
    Tls(#[from] TlsError),
    #[error("agent mTLS certificate directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

/// The certificate (PEM, as registered) and the loaded identity.
pub struct AgentCert {
    pub pem: String,
    pub identity: Identity,
}

/// Load `cert`/`key`, or generate and write them if the certificate does not exist yet.
pub fn load_or_create(
    cert: &Path,
    key: &Path,
    uuid: &str,
    contact_ip: Option<IpAddr>,
) -> Result<AgentCert, MtlsError> {
    if !cert.exists() {
        if let Some(dir) = cert.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| MtlsError::Dir {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        let mut names = vouch_tls::default_server_names();
        if let Some(ip) = contact_ip {
            if !names.contains(&SubjectName::Ip(ip)) {
                names.push(SubjectName::Ip(ip));
            }
        }
        let issued = vouch_tls::self_signed(uuid, &names)?;
        issued.write(&CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            public: cert.with_file_name("agent-public.pem"),
        })?;
        tracing::info!(cert = %cert.display(), "generated the agent's self-signed mTLS certificate");
    }
    let identity = Identity::load(cert, key)?;
    let pem = std::fs::read_to_string(cert).map_err(|source| MtlsError::Dir {
        path: cert.display().to_string(),
        source,
    })?;
    Ok(AgentCert { pem, identity })
}
