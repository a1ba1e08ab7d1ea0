//! Does the EK certificate certify the TPM's EK? Compares the subjectPublicKey with the EK
//! public area: modulus and exponent, or curve and point.

use super::{CertId, EkCertError};
use crate::tpm::{EccCurve, Public, PublicKey};
use x509_parser::prelude::X509Certificate;

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

/// The certificate's subjectPublicKey must be the EK's public key.
pub(super) fn compare_key(
    c: &X509Certificate<'_>,
    ek: &Public,
    id: &CertId,
) -> Result<(), EkCertError> {
    use x509_parser::public_key::PublicKey as X509Key;
    let mismatch = |what, cert_value: String, ek_value: String| EkCertError::KeyMismatch {
        cert: Box::new(id.clone()),
        what,
        cert_value,
        ek_value,
    };
    let spki = c.public_key();
    let parsed = spki.parsed().map_err(|e| EkCertError::Content {
        cert: Box::new(id.clone()),
        why: format!("unparsable public key: {e}"),
    })?;
    match (&ek.key, parsed) {
        (
            PublicKey::Rsa {
                modulus, exponent, ..
            },
            X509Key::RSA(rsa),
        ) => {
            if strip_zeros(rsa.modulus) != strip_zeros(modulus) {
                return Err(mismatch(
                    "RSA modulus",
                    format!(
                        "{} bits, starts {}",
                        strip_zeros(rsa.modulus).len() * 8,
                        short_hex(strip_zeros(rsa.modulus))
                    ),
                    format!(
                        "{} bits, starts {}",
                        strip_zeros(modulus).len() * 8,
                        short_hex(strip_zeros(modulus))
                    ),
                ));
            }
            let ek_e = PublicKey::rsa_exponent(*exponent).to_be_bytes();
            if strip_zeros(rsa.exponent) != strip_zeros(&ek_e) {
                return Err(mismatch(
                    "RSA exponent",
                    format!("0x{}", hex::encode(strip_zeros(rsa.exponent))),
                    format!("0x{}", hex::encode(strip_zeros(&ek_e))),
                ));
            }
            Ok(())
        }
        (PublicKey::Ecc { curve, x, y, .. }, X509Key::EC(point)) => {
            let cert_curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let want = match curve {
                EccCurve::NistP256 => "1.2.840.10045.3.1.7",
                EccCurve::NistP384 => "1.3.132.0.34",
                EccCurve::NistP521 => "1.3.132.0.35",
            };
            if cert_curve != want {
                return Err(mismatch(
                    "ECC curve",
                    format!("OID {cert_curve}"),
                    format!("{} (OID {want})", curve.name()),
                ));
            }
            let ek_point =
                crate::der::ec_point(*curve, x, y).map_err(|e| EkCertError::Content {
                    cert: Box::new(id.clone()),
                    why: format!("EK point: {e}"),
                })?;
            if point.data() != ek_point.as_slice() {
                return Err(mismatch(
                    "ECC point",
                    short_hex(point.data()),
                    short_hex(&ek_point),
                ));
            }
            Ok(())
        }
        (ek_key, cert_key) => {
            let cert_kind = match cert_key {
                X509Key::RSA(_) => "RSA",
                X509Key::EC(_) => "ECC",
                _ => "another algorithm",
            };
            let ek_kind = match ek_key {
                PublicKey::Rsa { .. } => "RSA",
                PublicKey::Ecc { .. } => "ECC",
            };
            Err(mismatch("key type", cert_kind.into(), ek_kind.into()))
        }
    }
}

fn short_hex(b: &[u8]) -> String {
    let h = hex::encode(&b[..b.len().min(8)]);
    if b.len() > 8 {
        format!("{h}…")
    } else {
        h
    }
}
