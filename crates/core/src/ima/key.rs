//! IMA signature keys (upstream keylime/ima/file_signatures.py `ImaKeyring._get_keyidv2`,
//! `get_pubkey`).
//!
//! A key is identified by its "keyidv2": the last four bytes of the certificate's Subject Key
//! Identifier, or else of SHA-1 over the key's public bits (PKCS#1 `RSAPublicKey` for RSA, the
//! uncompressed point for EC).

use super::signature::SigError;
use aws_lc_rs::{digest, signature};
use thiserror::Error;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey as X509Key;
use x509_parser::x509::SubjectPublicKeyInfo;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("not a DER SubjectPublicKeyInfo: {0}")]
    NotSpki(String),
    #[error("unsupported key type {0} (IMA keys are RSA or NIST P-256/384/521 EC keys)")]
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    EcP521,
}

/// A public key IMA signatures may be verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaKey {
    keyid: u32,
    kind: KeyKind,
    spki: Vec<u8>,
}

/// keyidv2 of raw public key bits: the last 4 bytes of their SHA-1, big-endian.
pub fn keyid_v2(public_bits: &[u8]) -> u32 {
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, public_bits);
    let b = d.as_ref();
    u32::from_be_bytes([b[16], b[17], b[18], b[19]])
}

impl ImaKey {
    /// From a DER SubjectPublicKeyInfo; without a keyid (or with 0, as upstream) it is derived.
    pub fn from_spki_der(der: &[u8], keyid: Option<u32>) -> Result<Self, KeyError> {
        let (rest, spki) =
            SubjectPublicKeyInfo::from_der(der).map_err(|e| KeyError::NotSpki(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::NotSpki(format!("{} trailing bytes", rest.len())));
        }
        Self::from_spki(&spki, keyid)
    }

    fn from_spki(spki: &SubjectPublicKeyInfo<'_>, keyid: Option<u32>) -> Result<Self, KeyError> {
        let oid = spki.algorithm.algorithm.to_id_string();
        let kind = match spki.parsed() {
            Ok(X509Key::RSA(_)) => KeyKind::Rsa,
            Ok(X509Key::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .ok_or_else(|| KeyError::Unsupported("EC without a named curve".into()))?;
                if curve == OID_EC_P256 {
                    KeyKind::EcP256
                } else if curve == OID_NIST_EC_P384 {
                    KeyKind::EcP384
                } else if curve == OID_NIST_EC_P521 {
                    KeyKind::EcP521
                } else {
                    return Err(KeyError::Unsupported(format!(
                        "EC on curve {}",
                        curve.to_id_string()
                    )));
                }
            }
            _ => return Err(KeyError::Unsupported(format!("with algorithm OID {oid}"))),
        };
        let keyid = match keyid {
            Some(k) if k != 0 => k,
            _ => keyid_v2(&spki.subject_public_key.data),
        };
        Ok(Self {
            keyid,
            kind,
            spki: spki.raw.to_vec(),
        })
    }

    /// Interpret measured or uploaded bytes as a key, as upstream's `get_pubkey`: an X.509
    /// certificate (DER or PEM; keyid from its Subject Key Identifier) or a public key (DER or
    /// PEM). `Ok(None)` when the bytes are no key at all; an error when they are a key of an
    /// unsupported type. (Private keys, which upstream also accepts, are not looked for.)
    pub fn from_file_data(data: &[u8]) -> Result<Option<Self>, KeyError> {
        if let Ok((rest, cert)) = X509Certificate::from_der(data) {
            if rest.is_empty() {
                return Self::from_cert(&cert).map(Some);
            }
        }
        if let Ok((rest, spki)) = SubjectPublicKeyInfo::from_der(data) {
            if rest.is_empty() {
                return Self::from_spki(&spki, None).map(Some);
            }
        }
        if let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(data) {
            match pem.label.as_str() {
                "CERTIFICATE" => {
                    if let Ok((_, cert)) = X509Certificate::from_der(&pem.contents) {
                        return Self::from_cert(&cert).map(Some);
                    }
                }
                "PUBLIC KEY" => return Self::from_spki_der(&pem.contents, None).map(Some),
                _ => {}
            }
        }
        Ok(None)
    }

    fn from_cert(cert: &X509Certificate<'_>) -> Result<Self, KeyError> {
        let skid = cert
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(kid) if kid.0.len() >= 4 => {
                    let b = &kid.0[kid.0.len() - 4..];
                    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                }
                _ => None,
            });
        Self::from_spki(cert.public_key(), skid)
    }

    pub fn keyid(&self) -> u32 {
        self.keyid
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Verify a signature over an already computed digest (IMA signs the file digest).
    pub(crate) fn verify_prehashed(
        &self,
        hash: &str,
        file_digest: &[u8],
        sig: &[u8],
    ) -> Result<(), SigError> {
        let unsupported = || SigError::UnsupportedCombination {
            hash: hash.to_string(),
            key: self.kind,
        };
        let (dalg, valg): (
            &'static digest::Algorithm,
            &'static dyn signature::VerificationAlgorithm,
        ) = match (self.kind, hash) {
            (KeyKind::Rsa, "sha1") => (
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            ),
            (KeyKind::Rsa, "sha256") => (
                &digest::SHA256,
                &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            ),
            (KeyKind::Rsa, "sha384") => (&digest::SHA384, &signature::RSA_PKCS1_2048_8192_SHA384),
            (KeyKind::Rsa, "sha512") => (
                &digest::SHA512,
                &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            ),
            (KeyKind::EcP256, "sha1") => (
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                &signature::ECDSA_P256_SHA1_ASN1,
            ),
            (KeyKind::EcP256, "sha256") => (&digest::SHA256, &signature::ECDSA_P256_SHA256_ASN1),
            (KeyKind::EcP256, "sha384") => (&digest::SHA384, &signature::ECDSA_P256_SHA384_ASN1),
            (KeyKind::EcP256, "sha512") => (&digest::SHA512, &signature::ECDSA_P256_SHA512_ASN1),
            (KeyKind::EcP384, "sha256") => (&digest::SHA256, &signature::ECDSA_P384_SHA256_ASN1),
            (KeyKind::EcP384, "sha384") => (&digest::SHA384, &signature::ECDSA_P384_SHA384_ASN1),
            (KeyKind::EcP384, "sha512") => (&digest::SHA512, &signature::ECDSA_P384_SHA512_ASN1),
            (KeyKind::EcP521, "sha1") => (
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                &signature::ECDSA_P521_SHA1_ASN1,
            ),
            (KeyKind::EcP521, "sha256") => (&digest::SHA256, &signature::ECDSA_P521_SHA256_ASN1),
            (KeyKind::EcP521, "sha384") => (&digest::SHA384, &signature::ECDSA_P521_SHA384_ASN1),
            (KeyKind::EcP521, "sha512") => (&digest::SHA512, &signature::ECDSA_P521_SHA512_ASN1),
            _ => return Err(unsupported()),
        };
        let d = digest::Digest::import_less_safe(file_digest, dalg).map_err(|_| unsupported())?;
        signature::UnparsedPublicKey::new(valg, &self.spki)
            .verify_digest(&d, sig)
            .map_err(|_| SigError::BadSignature { keyid: self.keyid })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};

    /// A fresh P-256 key pair and its SubjectPublicKeyInfo (DER), for the IMA key tests.
    pub(crate) fn ec_key() -> (EcdsaKeyPair, Vec<u8>) {
        let kp = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = kp.public_key().as_der().unwrap().as_ref().to_vec();
        (kp, spki)
    }

    #[test]
    fn keyid_matches_upstream_definition() {
        let (_, spki) = ec_key();
        let key = ImaKey::from_spki_der(&spki, None).unwrap();
        let (_, parsed) = SubjectPublicKeyInfo::from_der(&spki).unwrap();
        let point = parsed.subject_public_key.data.to_vec();
        assert_eq!(point.len(), 65);
        let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &point);
        assert_eq!(key.keyid().to_be_bytes(), sha1.as_ref()[16..20]);
        assert_eq!(
            ImaKey::from_spki_der(&spki, Some(0)).unwrap().keyid(),
            key.keyid()
        );
        assert_eq!(ImaKey::from_spki_der(&spki, Some(7)).unwrap().keyid(), 7);
    }

    #[test]
    fn keys_from_certificates_and_pem() {
        let ck = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["ima".into()]).unwrap();
        params.key_identifier_method =
            rcgen::KeyIdMethod::PreSpecified(vec![1, 2, 3, 4, 5, 0xde, 0xad, 0xbe, 0xef]);
        // rcgen writes a Subject Key Identifier only with an explicit CA choice.
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let cert = params.self_signed(&ck).unwrap();
        let key = ImaKey::from_file_data(cert.der()).unwrap().unwrap();
        assert_eq!(key.keyid(), 0xdeadbeef);
        let key = ImaKey::from_file_data(cert.pem().as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(key.keyid(), 0xdeadbeef);
        let key = ImaKey::from_file_data(ck.public_key_pem().as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(key.spki_der(), ck.public_key_der());
        let key = ImaKey::from_file_data(&ck.public_key_der())
            .unwrap()
            .unwrap();
        assert_eq!(key.kind(), KeyKind::EcP256);
        assert_eq!(
            ImaKey::from_file_data(b"/boot/vmlinuz root=/dev/sda").unwrap(),
            None
        );
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(matches!(
            ImaKey::from_file_data(&ed.public_key_der()),
            Err(KeyError::Unsupported(_))
        ));
    }
}
