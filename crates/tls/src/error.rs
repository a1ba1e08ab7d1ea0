//! One error type for the crate. Every variant that concerns a file names it, so that a message
//! like "server-cert.crt: no certificate found" can be acted on without a debugger.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: no certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("{}: not a valid X.509 certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: private key not usable: {source}", path.display())]
    UnusableKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: key does not match certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: certificate not accepted as a trust anchor: {source}", path.display())]
    BadTrustAnchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: already exists (pass --force / CaOptions::force to replace it)", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("invalid certificate name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("certificate validity not representable: {0}")]
    BadValidity(String),
    #[error("generating {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("building the client-certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

pub type Result<T, E = TlsError> = std::result::Result<T, E>;

impl TlsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> TlsError {
        TlsError::Io {
            path: path.into(),
            source,
        }
    }
}
