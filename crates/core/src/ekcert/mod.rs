//! EK certificate validation: the certificate chains to a configured EK CA, is fit to be an
//! EK certificate, and certifies the EK the TPM presented.
//!
//! Chain building and signatures are rustls-webpki's. EK certificates have quirks it has to be
//! told about or that are handled here:
//! - the subject is often empty and the identity is in a critical subjectAltName holding a
//!   directoryName with the TCG attributes tcg-at-tpmManufacturer / tpmModel / tpmVersion
//!   (2.23.133.2.1/2/3), which are extracted into [`VerifiedEkCert`];
//! - the extended key usage, when present, must contain tcg-kp-EKCertificate (2.23.133.8.1)
//!   (`KeyUsage::required_if_present`; webpki applies it to the intermediates too);
//! - certificates read from NV are often padded with zero bytes up to the index size: the DER
//!   is trimmed to its encoded length, and anything else after it is an error.

mod key;
mod store;
#[cfg(test)]
mod tests;

pub use store::{CaEntry, CaRole, EkCaStore};

use crate::tpm::Public;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;
use thiserror::Error;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// tcg-kp-EKCertificate, 2.23.133.8.1, as DER OID contents.
pub const OID_TCG_KP_EK_CERTIFICATE: &[u8] = &[0x67, 0x81, 0x05, 0x08, 0x01];
const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
const OID_TPM_MODEL: &str = "2.23.133.2.2";
const OID_TPM_VERSION: &str = "2.23.133.2.3";

/// Who a certificate is, for error messages: "issuer CN=x, subject CN=y, serial 0x02".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    pub issuer: String,
    pub subject: String,
    /// Serial number in hex, as `openssl x509 -serial` prints it.
    pub serial: String,
}

impl fmt::Display for CertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = if self.subject.is_empty() {
            "(empty)"
        } else {
            &self.subject
        };
        write!(
            f,
            "issuer {}, subject {}, serial 0x{}",
            self.issuer, subject, self.serial
        )
    }
}

pub(crate) fn cert_id(c: &X509Certificate<'_>) -> CertId {
    CertId {
        issuer: c.issuer().to_string(),
        subject: c.subject().to_string(),
        serial: hex::encode_upper(c.raw_serial()),
    }
}

/// Why a chain check failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainFailure {
    #[error("the certificate is self-signed")]
    SelfSigned,
    #[error("no CA in the store issued it")]
    UnknownIssuer,
    #[error("a certificate in the chain expired (not after {not_after}, checked at {now})")]
    Expired { not_after: String, now: String },
    #[error(
        "a certificate in the chain is not valid yet (not before {not_before}, checked at {now})"
    )]
    NotValidYet { not_before: String, now: String },
    #[error("the extended key usage does not include tcg-kp-EKCertificate (2.23.133.8.1)")]
    WrongExtendedKeyUsage,
    #[error(
        "unsupported signature algorithm (SHA-1 and other legacy algorithms are not accepted)"
    )]
    UnsupportedSignatureAlgorithm,
    #[error("bad signature")]
    BadSignature,
    #[error("it is a CA certificate (basicConstraints CA:TRUE), not an end-entity EK certificate")]
    IsCaCertificate,
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Error)]
pub enum EkCertError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,

        cause: std::io::Error,
    },
    #[error("no usable CA certificate in {source_name}{why}")]
    NoCerts { source_name: String, why: String },
    #[error("EK certificate is not valid DER or PEM: {0}")]
    Encoding(String),
    #[error("EK certificate has {extra} bytes after the DER that are not zero padding")]
    Trailing { extra: usize },
    #[error("EK certificate is not a parsable X.509 certificate: {0}")]
    Parse(String),
    #[error("EK certificate ({cert}) does not chain to any CA in {store}: {reason}")]
    Chain {
        cert: Box<CertId>,
        store: String,
        reason: ChainFailure,
    },
    #[error("EK certificate ({cert}) certifies a different key than the TPM's EK: {what} differs (certificate {cert_value}, EK {ek_value})")]
    KeyMismatch {
        cert: Box<CertId>,
        what: &'static str,
        cert_value: String,
        ek_value: String,
    },
    #[error("EK certificate ({cert}): {why}")]
    Content { cert: Box<CertId>, why: String },
}

/// An EK certificate that chained to the store (and matched the EK, when one was given).
/// Only [`verify_ek_cert`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedEkCert {
    der: Vec<u8>,
    id: CertId,
    anchor: String,
    chain_len: usize,
    tpm_manufacturer: Option<String>,
    tpm_model: Option<String>,
    tpm_version: Option<String>,
    key_matched: bool,
}

impl VerifiedEkCert {
    /// The certificate DER, without NV padding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
    pub fn id(&self) -> &CertId {
        &self.id
    }
    /// Subject of the store certificate the chain ended at.
    pub fn anchor(&self) -> &str {
        &self.anchor
    }
    /// Certificates in the path, the EK certificate and the anchor included.
    pub fn chain_len(&self) -> usize {
        self.chain_len
    }
    /// tcg-at-tpmManufacturer, e.g. "id:00001014" (IBM, swtpm) or "id:49465800" (Infineon).
    pub fn tpm_manufacturer(&self) -> Option<&str> {
        self.tpm_manufacturer.as_deref()
    }
    pub fn tpm_model(&self) -> Option<&str> {
        self.tpm_model.as_deref()
    }
    pub fn tpm_version(&self) -> Option<&str> {
        self.tpm_version.as_deref()
    }
    /// True when the certificate's key was compared with (and equals) a TPM EK public area.
    pub fn key_matched(&self) -> bool {
        self.key_matched
    }
}

/// The DER certificate at the start of `bytes`, dropping NV zero padding after it.
pub fn trim_der(bytes: &[u8]) -> Result<&[u8], EkCertError> {
    let bad = |why: &str| EkCertError::Encoding(why.to_string());
    if bytes.first() != Some(&0x30) {
        return Err(bad("does not start with a DER SEQUENCE"));
    }
    let first = *bytes.get(1).ok_or_else(|| bad("truncated length"))?;
    let (header, len) = if first < 0x80 {
        (2usize, first as usize)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 {
            return Err(bad("unsupported DER length encoding"));
        }
        let len_bytes = bytes.get(2..2 + n).ok_or_else(|| bad("truncated length"))?;
        (
            2 + n,
            len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize),
        )
    };
    let total = header + len;
    if bytes.len() < total {
        return Err(EkCertError::Encoding(format!(
            "truncated: DER says {total} bytes, {} present",
            bytes.len()
        )));
    }
    let rest = &bytes[total..];
    if rest.iter().any(|&b| b != 0) {
        return Err(EkCertError::Trailing { extra: rest.len() });
    }
    Ok(&bytes[..total])
}

/// Accept a PEM ("CERTIFICATE") or DER EK certificate, NV padding allowed.
fn decode_input(input: &[u8]) -> Result<Vec<u8>, EkCertError> {
    if let Some(text) = store::pem_text(input) {
        let der = crate::der::pem_decode("CERTIFICATE", text)
            .map_err(|e| EkCertError::Encoding(e.to_string()))?;
        return Ok(trim_der(&der)?.to_vec());
    }
    Ok(trim_der(input)?.to_vec())
}

fn rfc3339ish(t: UnixTime) -> String {
    x509_parser::time::ASN1Time::from_timestamp(t.as_secs() as i64)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{} s after the epoch", t.as_secs()))
}

fn chain_failure(e: webpki::Error) -> ChainFailure {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => ChainFailure::UnknownIssuer,
        E::CertExpired { time, not_after } => ChainFailure::Expired {
            not_after: rfc3339ish(not_after),
            now: rfc3339ish(time),
        },
        E::CertNotValidYet { time, not_before } => ChainFailure::NotValidYet {
            not_before: rfc3339ish(not_before),
            now: rfc3339ish(time),
        },
        E::RequiredEkuNotFoundContext(_) => ChainFailure::WrongExtendedKeyUsage,
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            ChainFailure::UnsupportedSignatureAlgorithm
        }
        E::InvalidSignatureForPublicKey => ChainFailure::BadSignature,
        E::CaUsedAsEndEntity => ChainFailure::IsCaCertificate,
        other => ChainFailure::Other(format!("{other:?}")),
    }
}

/// Verify an EK certificate (PEM or DER, NV padding allowed) against `store` at time `now`,
/// and when `ek` is given, check that it certifies exactly that key.
pub fn verify_ek_cert(
    cert: &[u8],
    store: &EkCaStore,
    ek: Option<&Public>,
    now: SystemTime,
) -> Result<VerifiedEkCert, EkCertError> {
    let der = decode_input(cert)?;
    let (_, x509) =
        X509Certificate::from_der(&der).map_err(|e| EkCertError::Parse(e.to_string()))?;
    let id = cert_id(&x509);
    let chain_err = |reason| EkCertError::Chain {
        cert: Box::new(id.clone()),
        store: store.source.clone(),
        reason,
    };

    let cert_der = CertificateDer::from(der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&cert_der).map_err(|e| {
        chain_err(ChainFailure::Other(format!(
            "webpki cannot parse it: {e:?}"
        )))
    })?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| chain_err(ChainFailure::Other("the check time is before 1970".into())))?;
    let path = ee
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &store.anchors,
            &store.intermediates,
            UnixTime::since_unix_epoch(since_epoch),
            webpki::KeyUsage::required_if_present(OID_TCG_KP_EK_CERTIFICATE),
            None,
            None,
        )
        .map_err(|e| {
            // A certificate that names itself as issuer and is not in the store cannot chain,
            // whatever else webpki found wrong with it first: say the decisive thing.
            let reason = if x509.subject().as_raw() == x509.issuer().as_raw() {
                ChainFailure::SelfSigned
            } else {
                chain_failure(e)
            };
            chain_err(reason)
        })?;
    let anchor = store
        .anchors
        .iter()
        .position(|a| {
            a.subject == path.anchor().subject
                && a.subject_public_key_info == path.anchor().subject_public_key_info
        })
        .and_then(|i| store.anchor_subjects.get(i).cloned())
        .unwrap_or_default();
    let chain_len = path.intermediate_certificates().count() + 2;

    let (tpm_manufacturer, tpm_model, tpm_version) = tcg_attributes(&x509, &id)?;
    if let Some(ek) = ek {
        key::compare_key(&x509, ek, &id)?;
    }
    Ok(VerifiedEkCert {
        der: der.clone(),
        id,
        anchor,
        chain_len,
        tpm_manufacturer,
        tpm_model,
        tpm_version,
        key_matched: ek.is_some(),
    })
}

type TcgAttributes = (Option<String>, Option<String>, Option<String>);

/// TPM manufacturer / model / version from the SAN directoryName (or, for certificates that
/// put them there, the subject).
fn tcg_attributes(c: &X509Certificate<'_>, id: &CertId) -> Result<TcgAttributes, EkCertError> {
    let mut out: TcgAttributes = (None, None, None);
    let mut names = Vec::new();
    let san = c
        .subject_alternative_name()
        .map_err(|e| EkCertError::Content {
            cert: Box::new(id.clone()),
            why: format!("bad subjectAltName: {e}"),
        })?;
    if let Some(san) = san {
        for g in &san.value.general_names {
            if let GeneralName::DirectoryName(n) = g {
                names.push(n.clone());
            }
        }
    }
    names.push(c.subject().clone());
    for name in &names {
        for attr in name.iter_attributes() {
            let slot = match attr.attr_type().to_id_string().as_str() {
                OID_TPM_MANUFACTURER => &mut out.0,
                OID_TPM_MODEL => &mut out.1,
                OID_TPM_VERSION => &mut out.2,
                _ => continue,
            };
            if slot.is_none() {
                let v = attr
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|_| String::from_utf8_lossy(attr.as_slice()).into_owned());
                *slot = Some(v);
            }
        }
    }
    Ok(out)
}
