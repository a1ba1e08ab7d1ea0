//! Reading certificates, keys and CA bundles from PEM files, with errors that name the file.

use crate::error::{Result, TlsError};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The crypto provider every config in this crate is built with (explicitly, so that a
/// process-wide default installed by someone else never changes what we negotiate).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| TlsError::io(path, e))
}

/// Every certificate in a PEM file (a chain: end entity first), each parsed as X.509.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    let certs = pem_certs(&read(path)?, path)?;
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert).map_err(|e| TlsError::BadCertificate {
            path: path.into(),
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// The CERTIFICATE blocks of PEM text (at least one); `path` names the source in errors.
fn pem_certs(pem_text: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey { path: path.into() },
        source => TlsError::Pem {
            path: path.into(),
            source,
        },
    })
}

/// Trust anchors from one or more PEM files (like upstream's `trusted_client_ca` list). Every
/// certificate in every file must be usable as an anchor.
pub fn load_roots<P: AsRef<Path>>(paths: &[P]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        let path = path.as_ref();
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|source| TlsError::BadTrustAnchor {
                path: path.into(),
                source,
            })?;
        }
    }
    Ok(roots)
}

/// Trust anchors from PEM text held in memory (e.g. an agent's registered `mtls_cert`);
/// `what` names the source in errors.
pub fn roots_from_pem(pem_text: &str, what: &str) -> Result<RootCertStore> {
    let path = Path::new(what);
    let certs = pem_certs(pem_text.as_bytes(), path)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|source| TlsError::BadTrustAnchor {
            path: path.into(),
            source,
        })?;
    }
    Ok(roots)
}

/// A certificate chain and the private key that goes with it, checked to match.
#[derive(Debug)]
pub struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            cert_path: self.cert_path.clone(),
        }
    }
}

impl Identity {
    /// Load `cert` (PEM chain, end entity first) and `key` (PEM private key); fail if the key is
    /// not the certificate's.
    pub fn load(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Identity> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = load_certs(cert)?;
        let private = load_private_key(key)?;
        match CertifiedKey::from_der(chain.clone(), private.clone_key(), &provider()) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::KeyMismatch {
                    cert: cert.into(),
                    key: key.into(),
                })
            }
            Err(rustls::Error::InvalidCertificate(e)) => {
                return Err(TlsError::BadCertificate {
                    path: cert.into(),
                    reason: format!("{e:?}"),
                })
            }
            Err(source) => {
                return Err(TlsError::UnusableKey {
                    path: key.into(),
                    source,
                })
            }
        }
        Ok(Identity {
            chain,
            key: private,
            cert_path: cert.into(),
        })
    }

    /// The end-entity certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        // `load_certs` never returns an empty chain.
        &self.chain[0]
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Where the certificate was read from (for log lines).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

/// The subject CN of a DER certificate, if it has one: upstream's identity of an admin client
/// (`action_handler.py:_extract_identity`).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
