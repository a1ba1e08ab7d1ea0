//! TLS for Vouch: the CA directory upstream keylime's `tls_dir = generate` writes (same file
//! names, so either side can use the other's), rustls configurations loaded from those PEM
//! files with errors that name the file, and [`serve_tls`] to serve an axum `Router` with mTLS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vouch_tls::{default_server_names, self_signed, Ca, ClientCertMode, TlsDir};
//! let ca = Ca::create("/var/lib/vouch/tls", "Vouch CA")?;
//! ca.issue_server(&default_server_names())?;
//! ca.issue_client("admin")?;
//! let config = TlsDir::new("/var/lib/vouch/tls").server_config(ClientCertMode::Required)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8891").await?;
//! vouch_tls::serve_tls(listener, config, axum::Router::new(), std::future::pending()).await;
//! # Ok(()) }
//! ```

pub mod ca;
pub mod config;
pub mod error;
pub mod layout;
pub mod pem;
pub mod serve;
pub mod software_ca;

pub use ca::{
    default_server_names, self_signed, Ca, CaOptions, CertRequest, IssuedCert, SubjectName, Usage,
    Validity, CA_LIFETIME_DAYS, CERT_LIFETIME_DAYS,
};
pub use config::{client_config, server_config, ClientAuth, ClientCertMode, ServerNameCheck};
pub use error::{Result, TlsError};
pub use layout::{CertFiles, TlsDir};
pub use pem::{
    common_name, load_certs, load_private_key, load_roots, provider, roots_from_pem, Identity,
};
pub use serve::{serve_tls, PeerCertificates};
