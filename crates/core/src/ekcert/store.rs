//! The directory of CA certificates EK certificates must chain to.

use super::{cert_id, EkCertError};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use std::fmt;
use std::path::{Path, PathBuf};
use x509_parser::prelude::{FromDer, X509Certificate};

/// How a CA certificate of the store is used in path building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRole {
    /// Self-signed: a root, trusted as is.
    Root,
    /// Issued by another certificate in the store: used to build the path, and checked
    /// (validity, CA basic constraints, signature) like any intermediate.
    Intermediate,
    /// Issued by a CA that is *not* in the store: trusted as is, the way upstream keylime
    /// trusts every certificate in its `tpm_cert_store`.
    OrphanIntermediate,
}

/// One CA certificate of the store, for diagnostics.
#[derive(Debug, Clone)]
pub struct CaEntry {
    pub file: PathBuf,
    pub subject: String,
    pub role: CaRole,
}

/// CA certificates that EK certificates are verified against.
///
/// Roots and intermediates: a self-signed certificate is a trust anchor; a certificate whose
/// issuer is another certificate in the store is an intermediate, so its validity period and
/// CA constraints are checked on every path through it (swtpm's local CA is exactly this: a
/// self-signed `swtpm-localca-rootca` and an intermediate `swtpm-localca` that signs the EK
/// certificates). A certificate whose issuer is *not* in the store is trusted directly as an
/// anchor: that keeps keylime's `tpm_cert_store` semantics ("every file is a trusted EK
/// issuer", vendors often publish only the issuing CA) while still giving full-path checks
/// whenever the root is present.
#[derive(Debug, Clone)]
pub struct EkCaStore {
    pub(super) source: String,
    pub(super) anchors: Vec<TrustAnchor<'static>>,
    pub(super) intermediates: Vec<CertificateDer<'static>>,
    /// Subject of `anchors[i]`, for reports.
    pub(super) anchor_subjects: Vec<String>,
    entries: Vec<CaEntry>,
    skipped: Vec<(PathBuf, String)>,
}

const EXTENSIONS: [&str; 4] = ["pem", "crt", "cer", "der"];

impl EkCaStore {
    /// Load every certificate in `dir` (not recursive): `.pem`, `.crt`, `.cer` holding one or
    /// more PEM certificates, or DER. Other files, and files that hold no parsable
    /// certificate, are skipped and listed by [`EkCaStore::skipped`]; a directory with no
    /// certificate at all is an error.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, EkCertError> {
        let dir = dir.as_ref();
        let io = |source| EkCertError::Io {
            path: dir.to_path_buf(),
            cause: source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        paths.sort();
        let mut certs = Vec::new();
        let mut skipped = Vec::new();
        for path in paths {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !path.is_file() {
                skipped.push((path, "not a regular file".into()));
                continue;
            }
            if !ext.as_deref().is_some_and(|e| EXTENSIONS.contains(&e)) {
                skipped.push((path, "extension is not .pem, .crt, .cer or .der".into()));
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| EkCertError::Io {
                path: path.clone(),
                cause: source,
            })?;
            match decode_certs(&bytes) {
                Ok(found) if found.is_empty() => {
                    skipped.push((path, "no certificate in the file".into()))
                }
                Ok(found) => certs.extend(found.into_iter().map(|c| (path.clone(), c))),
                Err(why) => skipped.push((path, why)),
            }
        }
        Self::build(dir.display().to_string(), certs, skipped)
    }

    /// A store from certificates held in memory (PEM or DER each); `source` names them in
    /// error messages.
    pub fn from_certs(source: &str, certs: &[&[u8]]) -> Result<Self, EkCertError> {
        let mut all = Vec::new();
        let mut skipped = Vec::new();
        for (i, bytes) in certs.iter().enumerate() {
            let label = PathBuf::from(format!("{source}[{i}]"));
            match decode_certs(bytes) {
                Ok(found) => all.extend(found.into_iter().map(|c| (label.clone(), c))),
                Err(why) => skipped.push((label, why)),
            }
        }
        Self::build(source.to_string(), all, skipped)
    }

    fn build(
        source: String,
        certs: Vec<(PathBuf, CertificateDer<'static>)>,
        mut skipped: Vec<(PathBuf, String)>,
    ) -> Result<Self, EkCertError> {
        // Raw subject / issuer DER of each certificate, to classify roots and intermediates.
        let mut parsed = Vec::new();
        for (path, der) in certs {
            match X509Certificate::from_der(der.as_ref()) {
                Ok((_, c)) => {
                    let subject = c.subject().as_raw().to_vec();
                    let issuer = c.issuer().as_raw().to_vec();
                    let name = cert_id(&c).subject;
                    parsed.push((path, der.clone(), subject, issuer, name));
                }
                Err(e) => skipped.push((path, format!("not an X.509 certificate: {e}"))),
            }
        }
        let mut store = EkCaStore {
            source: source.clone(),
            anchors: Vec::new(),
            intermediates: Vec::new(),
            anchor_subjects: Vec::new(),
            entries: Vec::new(),
            skipped: Vec::new(),
        };
        for (path, der, subject, issuer, name) in &parsed {
            let role = if subject == issuer {
                CaRole::Root
            } else if parsed.iter().any(|p| &p.2 == issuer) {
                CaRole::Intermediate
            } else {
                CaRole::OrphanIntermediate
            };
            if role == CaRole::Intermediate {
                store.intermediates.push(der.clone());
            } else {
                match webpki::anchor_from_trusted_cert(der) {
                    Ok(a) => {
                        store.anchors.push(a.to_owned());
                        store.anchor_subjects.push(name.clone());
                    }
                    Err(e) => {
                        skipped.push((
                            path.clone(),
                            format!("{name}: not usable as a trust anchor: {e}"),
                        ));
                        continue;
                    }
                }
            }
            store.entries.push(CaEntry {
                file: path.clone(),
                subject: name.clone(),
                role,
            });
        }
        store.skipped = skipped;
        if store.anchors.is_empty() {
            let why = if store.skipped.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = store
                    .skipped
                    .iter()
                    .map(|(p, r)| format!("{}: {r}", p.display()))
                    .collect();
                format!(" (skipped: {})", list.join("; "))
            };
            return Err(EkCertError::NoCerts {
                source_name: source,
                why,
            });
        }
        Ok(store)
    }

    /// The certificates loaded, with the role each plays.
    pub fn entries(&self) -> &[CaEntry] {
        &self.entries
    }

    /// Files (or in-memory inputs) that were not loaded, and why: worth a debug log line.
    pub fn skipped(&self) -> &[(PathBuf, String)] {
        &self.skipped
    }

    /// Where the certificates came from (the directory), as used in error messages.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for EkCaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} anchors, {} intermediates)",
            self.source,
            self.anchors.len(),
            self.intermediates.len()
        )
    }
}

/// All certificates in a PEM file (every CERTIFICATE block), or the single DER certificate.
fn decode_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if let Some(text) = pem_text(bytes) {
        let mut out = Vec::new();
        let mut rest = text;
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        while let Some(i) = rest.find(BEGIN) {
            let block = &rest[i..];
            let der = crate::der::pem_decode("CERTIFICATE", block).map_err(|e| e.to_string())?;
            out.push(CertificateDer::from(der));
            rest = &block[BEGIN.len()..];
        }
        return Ok(out);
    }
    let der = super::trim_der(bytes).map_err(|e| e.to_string())?;
    Ok(vec![CertificateDer::from(der.to_vec())])
}

/// The input as text if it looks like PEM.
pub(super) fn pem_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.contains("-----BEGIN ").then_some(text)
}
