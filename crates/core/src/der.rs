//! Minimal DER *encoding* for public keys (SubjectPublicKeyInfo, PKCS#1 RSAPublicKey) and PEM
//! armour. Decoding X.509 is left to x509-parser; this only builds the few shapes the crypto
//! backend and tpm2-tools' PEM output need.

use crate::tpm::{EccCurve, Public, PublicKey};
use base64::Engine;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DerError {
    #[error("public key has an empty unique field (a template, not a key)")]
    EmptyKey,
    #[error("ECC coordinate of {len} bytes is too long for {curve}")]
    Coordinate { len: usize, curve: &'static str },
    #[error("PEM: {0}")]
    Pem(String),
}

const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23];

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n <= 0xff {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// DER INTEGER of an unsigned big-endian magnitude.
fn uint(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let mut v = Vec::with_capacity(bytes.len() - first + 1);
    if first == bytes.len() || bytes[first] & 0x80 != 0 {
        v.push(0);
    }
    v.extend_from_slice(&bytes[first..]);
    tlv(0x02, &v)
}

/// PKCS#1 RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
pub fn rsa_public_key(modulus: &[u8], exponent: u32) -> Vec<u8> {
    let mut body = uint(modulus);
    body.extend(uint(&exponent.to_be_bytes()));
    tlv(0x30, &body)
}

/// SubjectPublicKeyInfo for an RSA modulus and exponent.
pub fn rsa_spki(modulus: &[u8], exponent: u32) -> Vec<u8> {
    let mut alg = OID_RSA_ENCRYPTION.to_vec();
    alg.extend([0x05, 0x00]);
    let mut bits = vec![0u8];
    bits.extend(rsa_public_key(modulus, exponent));
    let mut body = tlv(0x30, &alg);
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

/// Uncompressed SEC1 point 0x04 || X || Y with both coordinates left-padded to the curve size.
pub fn ec_point(curve: EccCurve, x: &[u8], y: &[u8]) -> Result<Vec<u8>, DerError> {
    let n = curve.coordinate_len();
    let mut out = Vec::with_capacity(1 + 2 * n);
    out.push(0x04);
    for c in [x, y] {
        if c.len() > n {
            return Err(DerError::Coordinate {
                len: c.len(),
                curve: curve.name(),
            });
        }
        out.resize(out.len() + n - c.len(), 0);
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// SubjectPublicKeyInfo for an EC point on a named curve.
pub fn ec_spki(curve: EccCurve, x: &[u8], y: &[u8]) -> Result<Vec<u8>, DerError> {
    let mut alg = OID_EC_PUBLIC_KEY.to_vec();
    alg.extend_from_slice(match curve {
        EccCurve::NistP256 => OID_P256,
        EccCurve::NistP384 => OID_P384,
        EccCurve::NistP521 => OID_P521,
    });
    let mut bits = vec![0u8];
    bits.extend(ec_point(curve, x, y)?);
    let mut body = tlv(0x30, &alg);
    body.extend(tlv(0x03, &bits));
    Ok(tlv(0x30, &body))
}

/// SubjectPublicKeyInfo of a TPM public area.
pub fn spki(public: &Public) -> Result<Vec<u8>, DerError> {
    match &public.key {
        PublicKey::Rsa {
            modulus, exponent, ..
        } => {
            if modulus.is_empty() {
                return Err(DerError::EmptyKey);
            }
            Ok(rsa_spki(modulus, PublicKey::rsa_exponent(*exponent)))
        }
        PublicKey::Ecc { curve, x, y, .. } => {
            if x.is_empty() || y.is_empty() {
                return Err(DerError::EmptyKey);
            }
            ec_spki(*curve, x, y)
        }
    }
}

/// PEM armour with 64-column lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decode the first PEM block with the given label.
pub fn pem_decode(label: &str, text: &str) -> Result<Vec<u8>, DerError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| DerError::Pem(format!("no '{begin}' line")))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| DerError::Pem(format!("no '{end}' line")))?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| DerError::Pem(format!("bad base64 in {label}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_encoding() {
        assert_eq!(uint(&[0x00, 0x01]), vec![0x02, 0x01, 0x01]);
        assert_eq!(uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(&[0, 0]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn spki_parses_with_x509_parser() {
        use x509_parser::prelude::FromDer;
        let der = rsa_spki(&[0xc5; 256], 65537);
        let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            spki.algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.1"
        );
        let der = ec_spki(EccCurve::NistP256, &[1; 32], &[2; 31]).unwrap();
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
        assert_eq!(spki.subject_public_key.data.len(), 65);
        let pem = pem_encode("PUBLIC KEY", &der);
        assert_eq!(pem_decode("PUBLIC KEY", &pem).unwrap(), der);
    }
}
