//! Signature verification keys: an attestation key from its TPM public area (attributes and
//! scheme known) or from SPKI DER / PEM (attributes unknown), verified with aws-lc-rs.
//!
//! What aws-lc-rs 1.x can verify, and so what Vouch accepts:
//! - RSASSA-PKCS1-v1_5 with SHA-1, SHA-256, SHA-384, SHA-512, RSA keys of 2048..=8192 bits.
//! - RSA-PSS with SHA-256, SHA-384, SHA-512 (no SHA-1 PSS in aws-lc-rs). The salt length is
//!   the digest length (what current TPMs and swtpm use); a signature that fails with it is
//!   retried with the maximum salt length, which TPMs built to pre-1.38 specifications use.
//! - ECDSA on P-256 (SHA-1/256/384/512), P-384 (SHA-256/384/512) and P-521 (all four).
//!   aws-lc-rs has no P-384 + SHA-1 verifier.
//!
//! aws-lc-rs binds a parsed key to one algorithm, so the key is parsed once per scheme it is
//! used with and cached: the scheme the key declares is parsed at construction, others on first
//! use. Per-quote verification then does no key parsing.

use crate::der::{self, DerError};
use crate::tpm::{EccCurve, HashAlg, ObjectAttributes, Public, PublicKey, Scheme, Signature};
use aws_lc_rs::signature::{
    self as sig, ParsedPublicKey, RsaParameters, RsaPssSaltLength, VerificationAlgorithm,
};
use std::sync::OnceLock;
use thiserror::Error;

/// Smallest RSA modulus accepted: aws-lc-rs's SHA-256+ verifiers start at 2048 bits.
pub const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("public key: {0}")]
    Der(DerError),
    #[error("SubjectPublicKeyInfo does not parse: {0}")]
    Spki(String),
    #[error("public key algorithm {0} is not supported (only RSA and EC)")]
    UnsupportedAlgorithm(String),
    #[error("EC curve {0} is not supported (only P-256, P-384, P-521)")]
    UnsupportedCurve(String),
    #[error("RSA key of {bits} bits is below the {MIN_RSA_BITS}-bit minimum")]
    RsaTooSmall { bits: usize },
    #[error("{key} key is rejected by the crypto backend: {why}")]
    Rejected { key: String, why: String },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature scheme {signature} not allowed by AK whose scheme is {key}")]
    SchemeNotAllowed { signature: String, key: String },
    #[error("signature scheme {signature} cannot be verified with {key} key: {why}")]
    Unsupported {
        signature: String,
        key: String,
        why: &'static str,
    },
    #[error("malformed {signature} signature: {why}")]
    Malformed { signature: String, why: String },
    #[error("{key} key is rejected by the crypto backend for {signature}")]
    KeyRejected { signature: String, key: String },
    #[error("{kind} signature does not verify with the given key ({key}, {signature})")]
    Invalid {
        kind: &'static str,
        signature: String,
        key: String,
    },
}

/// "RSASSA/sha256", "ECDSA/sha384", "NULL", ...
pub fn scheme_label(s: Scheme) -> String {
    match s {
        Scheme::Null => "NULL".into(),
        Scheme::Rsaes => "RSAES".into(),
        Scheme::Rsassa(h) => format!("RSASSA/{h}"),
        Scheme::Rsapss(h) => format!("RSAPSS/{h}"),
        Scheme::Oaep(h) => format!("OAEP/{h}"),
        Scheme::Ecdsa(h) => format!("ECDSA/{h}"),
        Scheme::Ecdh(h) => format!("ECDH/{h}"),
        Scheme::Ecschnorr(h) => format!("ECSCHNORR/{h}"),
        Scheme::Sm2(h) => format!("SM2/{h}"),
        Scheme::Ecdaa(h, c) => format!("ECDAA/{h}/{c}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Coordinates left-padded to the curve size.
    Ecc {
        curve: EccCurve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

/// Which verifier a signature needs: index into the per-key cache of parsed keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verifier {
    Pkcs1(HashAlg),
    Pss(HashAlg),
    PssMaxSalt(HashAlg),
    Ecdsa(HashAlg),
}

const SLOTS: usize = 16;

impl Verifier {
    fn slot(self) -> usize {
        let h = |h: HashAlg| HashAlg::ALL.iter().position(|x| *x == h).unwrap_or(0);
        match self {
            Verifier::Pkcs1(x) => h(x),
            Verifier::Pss(x) => 4 + h(x),
            Verifier::PssMaxSalt(x) => 8 + h(x),
            Verifier::Ecdsa(x) => 12 + h(x),
        }
    }
}

static PSS_MAX_SHA256: RsaParameters =
    sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
static PSS_MAX_SHA384: RsaParameters =
    sig::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(RsaPssSaltLength::Max);
static PSS_MAX_SHA512: RsaParameters =
    sig::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(RsaPssSaltLength::Max);

fn rsa_params(v: Verifier) -> Option<&'static RsaParameters> {
    use HashAlg::*;
    Some(match v {
        Verifier::Pkcs1(Sha1) => &sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        Verifier::Pkcs1(Sha256) => &sig::RSA_PKCS1_2048_8192_SHA256,
        Verifier::Pkcs1(Sha384) => &sig::RSA_PKCS1_2048_8192_SHA384,
        Verifier::Pkcs1(Sha512) => &sig::RSA_PKCS1_2048_8192_SHA512,
        Verifier::Pss(Sha256) => &sig::RSA_PSS_2048_8192_SHA256,
        Verifier::Pss(Sha384) => &sig::RSA_PSS_2048_8192_SHA384,
        Verifier::Pss(Sha512) => &sig::RSA_PSS_2048_8192_SHA512,
        Verifier::PssMaxSalt(Sha256) => &PSS_MAX_SHA256,
        Verifier::PssMaxSalt(Sha384) => &PSS_MAX_SHA384,
        Verifier::PssMaxSalt(Sha512) => &PSS_MAX_SHA512,
        _ => return None,
    })
}

/// ECDSA verifier for a curve and hash, and whether it takes the fixed r||s format (else DER).
fn ecdsa_alg(
    curve: EccCurve,
    hash: HashAlg,
) -> Option<(&'static sig::EcdsaVerificationAlgorithm, bool)> {
    use EccCurve::*;
    use HashAlg::*;
    Some(match (curve, hash) {
        (NistP256, Sha1) => (&sig::ECDSA_P256_SHA1_ASN1, false),
        (NistP256, Sha256) => (&sig::ECDSA_P256_SHA256_FIXED, true),
        (NistP256, Sha384) => (&sig::ECDSA_P256_SHA384_ASN1, false),
        (NistP256, Sha512) => (&sig::ECDSA_P256_SHA512_ASN1, false),
        (NistP384, Sha1) => return None,
        (NistP384, Sha256) => (&sig::ECDSA_P384_SHA256_ASN1, false),
        (NistP384, Sha384) => (&sig::ECDSA_P384_SHA384_FIXED, true),
        (NistP384, Sha512) => (&sig::ECDSA_P384_SHA512_ASN1, false),
        (NistP521, Sha1) => (&sig::ECDSA_P521_SHA1_FIXED, true),
        (NistP521, Sha256) => (&sig::ECDSA_P521_SHA256_FIXED, true),
        (NistP521, Sha384) => (&sig::ECDSA_P521_SHA384_FIXED, true),
        (NistP521, Sha512) => (&sig::ECDSA_P521_SHA512_FIXED, true),
    })
}

impl From<DerError> for KeyError {
    fn from(e: DerError) -> Self {
        KeyError::Der(e)
    }
}

/// A public key ready to verify TPM signatures.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    /// The TPM public area, when the key came from one.
    public: Option<Public>,
    scheme: Scheme,
    material: Material,
    parsed: [OnceLock<Option<ParsedPublicKey>>; SLOTS],
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

impl VerifyingKey {
    /// From a TPM public area; the scheme and attributes are kept for the checks they imply.
    pub fn from_public(public: &Public) -> Result<Self, KeyError> {
        let (material, scheme) = match &public.key {
            PublicKey::Rsa {
                modulus,
                exponent,
                scheme,
                ..
            } => {
                if modulus.is_empty() {
                    return Err(DerError::EmptyKey.into());
                }
                let e = PublicKey::rsa_exponent(*exponent).to_be_bytes();
                (
                    Material::Rsa {
                        n: strip_zeros(modulus).to_vec(),
                        e: strip_zeros(&e).to_vec(),
                    },
                    *scheme,
                )
            }
            PublicKey::Ecc {
                curve,
                x,
                y,
                scheme,
                ..
            } => {
                if x.is_empty() || y.is_empty() {
                    return Err(DerError::EmptyKey.into());
                }
                (ecc_material(*curve, x, y)?, *scheme)
            }
        };
        Self::build(Some(public.clone()), scheme, material)
    }

    /// From a DER SubjectPublicKeyInfo. No TPM attributes are known for such a key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521};
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey as X509Key;
        let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| KeyError::Spki(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::Spki(format!("{} trailing bytes", rest.len())));
        }
        let material = match spki.parsed().map_err(|e| KeyError::Spki(e.to_string()))? {
            X509Key::RSA(rsa) => Material::Rsa {
                n: strip_zeros(rsa.modulus).to_vec(),
                e: strip_zeros(rsa.exponent).to_vec(),
            },
            X509Key::EC(point) => {
                let oid = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .ok_or_else(|| KeyError::Spki("EC key without a named curve".into()))?;
                let curve = if oid == OID_EC_P256 {
                    EccCurve::NistP256
                } else if oid == OID_NIST_EC_P384 {
                    EccCurve::NistP384
                } else if oid == OID_NIST_EC_P521 {
                    EccCurve::NistP521
                } else {
                    return Err(KeyError::UnsupportedCurve(oid.to_id_string()));
                };
                let n = curve.coordinate_len();
                let data = point.data();
                if data.len() != 1 + 2 * n || data[0] != 0x04 {
                    return Err(KeyError::Spki(format!(
                        "EC point of {} bytes is not an uncompressed {} point",
                        data.len(),
                        curve.name()
                    )));
                }
                ecc_material(curve, &data[1..1 + n], &data[1 + n..])?
            }
            _ => {
                return Err(KeyError::UnsupportedAlgorithm(
                    spki.algorithm.algorithm.to_id_string(),
                ))
            }
        };
        Self::build(None, Scheme::Null, material)
    }

    /// From PEM `-----BEGIN PUBLIC KEY-----` (as `tpm2_readpublic -f pem` writes).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        Self::from_spki_der(&der::pem_decode("PUBLIC KEY", text)?)
    }

    fn build(public: Option<Public>, scheme: Scheme, material: Material) -> Result<Self, KeyError> {
        let key = VerifyingKey {
            public,
            scheme,
            material,
            parsed: Default::default(),
        };
        let describe = key.describe();
        if let Material::Rsa { n, .. } = &key.material {
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            if bits < MIN_RSA_BITS {
                return Err(KeyError::RsaTooSmall { bits });
            }
        }
        // Parse the scheme the key will most likely sign with now: it validates the key, and
        // verification then finds it ready.
        let first = match (&key.material, scheme) {
            (Material::Rsa { .. }, Scheme::Rsapss(h)) if h != HashAlg::Sha1 => Verifier::Pss(h),
            (Material::Rsa { .. }, Scheme::Rsassa(h)) => Verifier::Pkcs1(h),
            (Material::Rsa { .. }, _) => Verifier::Pkcs1(HashAlg::Sha256),
            (Material::Ecc { curve, .. }, Scheme::Ecdsa(h)) if ecdsa_alg(*curve, h).is_some() => {
                Verifier::Ecdsa(h)
            }
            (
                Material::Ecc {
                    curve: EccCurve::NistP384,
                    ..
                },
                _,
            ) => Verifier::Ecdsa(HashAlg::Sha384),
            (
                Material::Ecc {
                    curve: EccCurve::NistP521,
                    ..
                },
                _,
            ) => Verifier::Ecdsa(HashAlg::Sha512),
            (Material::Ecc { .. }, _) => Verifier::Ecdsa(HashAlg::Sha256),
        };
        match key.parsed_key(first) {
            Ok(_) => Ok(key),
            Err(why) => Err(KeyError::Rejected { key: describe, why }),
        }
    }

    /// The TPM public area, if the key came from one.
    pub fn public(&self) -> Option<&Public> {
        self.public.as_ref()
    }

    /// TPM object attributes; `None` for a key from SPKI / PEM, whose attributes are unknown.
    pub fn attributes(&self) -> Option<ObjectAttributes> {
        self.public.as_ref().map(|p| p.attributes)
    }

    /// The key's signing scheme; NULL (any scheme of the key's type) for SPKI / PEM keys.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// "RSA-2048" / "ECC NIST P-256".
    pub fn describe(&self) -> String {
        match &self.material {
            Material::Rsa { n, .. } => format!("RSA-{}", n.len() * 8),
            Material::Ecc { curve, .. } => format!("ECC {}", curve.name()),
        }
    }

    /// DER SubjectPublicKeyInfo of the key.
    pub fn spki_der(&self) -> Vec<u8> {
        match &self.material {
            Material::Rsa { n, e } => {
                let exp = e.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
                der::rsa_spki(n, u32::try_from(exp).unwrap_or(u32::MAX))
            }
            // Coordinates are already curve-sized, so encoding cannot fail.
            Material::Ecc { curve, x, y } => der::ec_spki(*curve, x, y).unwrap_or_default(),
        }
    }

    /// PEM `PUBLIC KEY`, as `tpm2_readpublic -f pem` writes it.
    pub fn to_pem(&self) -> String {
        der::pem_encode("PUBLIC KEY", &self.spki_der())
    }

    /// Cheap check, before any cryptography: is `signature`'s scheme one this key may use?
    pub fn check_scheme(&self, signature: &Signature) -> Result<(), SignatureError> {
        let got = signature.scheme();
        let allowed = match self.scheme {
            Scheme::Null => matches!(
                (&self.material, signature),
                (
                    Material::Rsa { .. },
                    Signature::Rsassa { .. } | Signature::Rsapss { .. }
                ) | (Material::Ecc { .. }, Signature::Ecdsa { .. })
            ),
            declared => declared == got,
        };
        if allowed {
            return Ok(());
        }
        let key = match self.scheme {
            Scheme::Null => format!("NULL (any {} scheme)", self.describe()),
            s => scheme_label(s),
        };
        Err(SignatureError::SchemeNotAllowed {
            signature: scheme_label(got),
            key,
        })
    }

    fn parsed_key(&self, v: Verifier) -> Result<&ParsedPublicKey, String> {
        let cell = &self.parsed[v.slot()];
        let parsed = cell.get_or_init(|| match (&self.material, v) {
            (Material::Rsa { n, e }, _) => {
                let params = rsa_params(v)?;
                sig::RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(params)
                .ok()
            }
            (Material::Ecc { curve, x, y }, Verifier::Ecdsa(h)) => {
                let (alg, _) = ecdsa_alg(*curve, h)?;
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                ParsedPublicKey::new(alg as &'static dyn VerificationAlgorithm, point).ok()
            }
            _ => None,
        });
        parsed
            .as_ref()
            .ok_or_else(|| format!("no {v:?} verifier accepts it"))
    }

    /// Verify a TPM signature over `message` (the TPM hashes `message` with the signature's hash).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        self.check_scheme(signature)?;
        // Error texts are built only on failure: this is the per-quote hot path.
        let fail = |f: Failure| {
            let (signature, key) = (scheme_label(signature.scheme()), self.describe());
            match f {
                Failure::Malformed(why) => SignatureError::Malformed { signature, why },
                Failure::Unsupported(why) => SignatureError::Unsupported {
                    signature,
                    key,
                    why,
                },
                Failure::Rejected => SignatureError::KeyRejected { signature, key },
                Failure::Invalid(kind) => SignatureError::Invalid {
                    kind,
                    signature,
                    key,
                },
            }
        };
        let parsed = |v: Verifier| self.parsed_key(v).map_err(|_| fail(Failure::Rejected));
        match (&self.material, signature) {
            (
                Material::Rsa { n, .. },
                Signature::Rsassa { hash, sig } | Signature::Rsapss { hash, sig },
            ) => {
                if sig.len() != n.len() {
                    let why = format!(
                        "{} bytes, the {} key needs {}",
                        sig.len(),
                        self.describe(),
                        n.len()
                    );
                    return Err(fail(Failure::Malformed(why)));
                }
                let pss = matches!(signature, Signature::Rsapss { .. });
                let v = if pss {
                    Verifier::Pss(*hash)
                } else {
                    Verifier::Pkcs1(*hash)
                };
                if rsa_params(v).is_none() {
                    return Err(fail(Failure::Unsupported(
                        "aws-lc-rs has no RSA-PSS verifier with SHA-1",
                    )));
                }
                if parsed(v)?.verify_sig(message, sig).is_ok() {
                    return Ok(());
                }
                if pss
                    && parsed(Verifier::PssMaxSalt(*hash))?
                        .verify_sig(message, sig)
                        .is_ok()
                {
                    return Ok(());
                }
                Err(fail(Failure::Invalid("RSA")))
            }
            (Material::Ecc { curve, .. }, Signature::Ecdsa { hash, r, s }) => {
                let Some((_, fixed)) = ecdsa_alg(*curve, *hash) else {
                    return Err(fail(Failure::Unsupported(
                        "aws-lc-rs has no ECDSA verifier for this curve and hash",
                    )));
                };
                let n = curve.coordinate_len();
                let (r, s) = (strip_zeros(r), strip_zeros(s));
                if r.len() > n || s.len() > n {
                    let why = format!(
                        "r or s is longer than a {} coordinate ({n} bytes)",
                        curve.name()
                    );
                    return Err(fail(Failure::Malformed(why)));
                }
                let encoded = if fixed {
                    fixed_rs(n, r, s)
                } else {
                    der_rs(r, s)
                };
                parsed(Verifier::Ecdsa(*hash))?
                    .verify_sig(message, &encoded)
                    .map_err(|_| fail(Failure::Invalid("ECDSA")))
            }
            // check_scheme has already refused a signature of the other key type.
            _ => Err(SignatureError::SchemeNotAllowed {
                signature: scheme_label(signature.scheme()),
                key: self.describe(),
            }),
        }
    }
}

enum Failure {
    Malformed(String),
    Unsupported(&'static str),
    Rejected,
    Invalid(&'static str),
}

fn ecc_material(curve: EccCurve, x: &[u8], y: &[u8]) -> Result<Material, KeyError> {
    // ec_point validates the coordinate sizes and left-pads them.
    let point = der::ec_point(curve, x, y)?;
    let n = curve.coordinate_len();
    Ok(Material::Ecc {
        curve,
        x: point[1..1 + n].to_vec(),
        y: point[1 + n..].to_vec(),
    })
}

/// r || s, each left-padded to the curve size (aws-lc-rs's "fixed" ECDSA format).
fn fixed_rs(n: usize, r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 2 * n];
    out[n - r.len()..n].copy_from_slice(r);
    out[2 * n - s.len()..].copy_from_slice(s);
    out
}

/// ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }, for the curve/hash pairs aws-lc-rs
/// only offers in ASN.1 form. r and s are at most 66 bytes, so lengths fit in one byte.
fn der_rs(r: &[u8], s: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let pad = !matches!(v.first(), Some(b) if b & 0x80 == 0);
        let mut out = vec![0x02, (v.len() + usize::from(pad)) as u8];
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

/// Real keys for tests: generated once per test binary with aws-lc-rs and turned into TPM
/// public areas, so tests sign exactly what a TPM would without binary fixtures.
#[cfg(test)]
pub(crate) mod test_keys {
    use crate::tpm::{
        EccCurve, HashAlg, KdfScheme, ObjectAttributes as A, Public, PublicKey, Scheme, Signature,
        SymDef,
    };
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
    use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair};
    use std::sync::OnceLock;

    pub(crate) const AK_ATTRS: u32 = A::AK.0;

    pub(crate) fn rsa_pair() -> &'static RsaKeyPair {
        static K: OnceLock<RsaKeyPair> = OnceLock::new();
        K.get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    pub(crate) fn ec_pair(curve: EccCurve) -> &'static EcdsaKeyPair {
        static P256: OnceLock<EcdsaKeyPair> = OnceLock::new();
        static P384: OnceLock<EcdsaKeyPair> = OnceLock::new();
        match curve {
            EccCurve::NistP256 => P256.get_or_init(|| {
                EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()
            }),
            _ => P384.get_or_init(|| {
                EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap()
            }),
        }
    }

    pub(crate) fn rsa_public(scheme: Scheme, attributes: u32) -> Public {
        let c: PublicKeyComponents<Vec<u8>> = rsa_pair().public_key().into();
        assert_eq!(c.e, vec![1, 0, 1]);
        Public {
            name_alg: HashAlg::Sha256,
            attributes: A(attributes),
            auth_policy: vec![],
            key: PublicKey::Rsa {
                symmetric: SymDef::Null,
                scheme,
                key_bits: 2048,
                exponent: 0,
                modulus: c.n,
            },
        }
    }

    pub(crate) fn ecc_public(curve: EccCurve, scheme: Scheme, attributes: u32) -> Public {
        let point = ec_pair(curve).public_key().as_ref().to_vec();
        let n = curve.coordinate_len();
        Public {
            name_alg: HashAlg::Sha256,
            attributes: A(attributes),
            auth_policy: vec![],
            key: PublicKey::Ecc {
                symmetric: SymDef::Null,
                scheme,
                curve,
                kdf: KdfScheme::Null,
                x: point[1..1 + n].to_vec(),
                y: point[1 + n..].to_vec(),
            },
        }
    }

    pub(crate) fn sign_rsa(msg: &[u8], pss: bool, hash: HashAlg) -> Signature {
        let enc: &'static dyn sig::RsaEncoding = match (pss, hash) {
            (false, HashAlg::Sha256) => &sig::RSA_PKCS1_SHA256,
            (false, HashAlg::Sha384) => &sig::RSA_PKCS1_SHA384,
            (false, HashAlg::Sha512) => &sig::RSA_PKCS1_SHA512,
            (true, HashAlg::Sha256) => &sig::RSA_PSS_SHA256,
            (true, HashAlg::Sha384) => &sig::RSA_PSS_SHA384,
            (true, HashAlg::Sha512) => &sig::RSA_PSS_SHA512,
            _ => panic!("no test signer for {hash}"),
        };
        let k = rsa_pair();
        let mut out = vec![0u8; k.public_modulus_len()];
        k.sign(enc, &SystemRandom::new(), msg, &mut out).unwrap();
        if pss {
            Signature::Rsapss { hash, sig: out }
        } else {
            Signature::Rsassa { hash, sig: out }
        }
    }

    /// ECDSA with the curve's own hash (the pairs aws-lc-rs can sign with).
    pub(crate) fn sign_ecdsa(curve: EccCurve, msg: &[u8]) -> Signature {
        let s = ec_pair(curve).sign(&SystemRandom::new(), msg).unwrap();
        let n = curve.coordinate_len();
        let b = s.as_ref();
        let hash = if curve == EccCurve::NistP256 {
            HashAlg::Sha256
        } else {
            HashAlg::Sha384
        };
        // Strip leading zeros as a TPM may, to exercise the left-padding on verification.
        let strip = |v: &[u8]| v[v.iter().position(|&x| x != 0).unwrap_or(0)..].to_vec();
        Signature::Ecdsa {
            hash,
            r: strip(&b[..n]),
            s: strip(&b[n..]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;

    const MSG: &[u8] = b"attested bytes";

    #[test]
    fn rsa_schemes_verify_and_respect_the_key_scheme() {
        let ak = VerifyingKey::from_public(&rsa_public(Scheme::Rsassa(HashAlg::Sha256), AK_ATTRS))
            .unwrap();
        ak.verify(MSG, &sign_rsa(MSG, false, HashAlg::Sha256))
            .unwrap();
        let pss = sign_rsa(MSG, true, HashAlg::Sha256);
        let e = ak.verify(MSG, &pss).unwrap_err();
        assert_eq!(
            e.to_string(),
            "signature scheme RSAPSS/sha256 not allowed by AK whose scheme is RSASSA/sha256"
        );
        let e = ak
            .verify(MSG, &sign_rsa(MSG, false, HashAlg::Sha384))
            .unwrap_err();
        assert!(matches!(e, SignatureError::SchemeNotAllowed { .. }), "{e}");
        let e = ak
            .verify(b"other", &sign_rsa(MSG, false, HashAlg::Sha256))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "RSA signature does not verify with the given key (RSA-2048, RSASSA/sha256)"
        );

        // A NULL-scheme key accepts any RSA scheme, including PSS with every hash aws-lc-rs has.
        let any = VerifyingKey::from_public(&rsa_public(Scheme::Null, A_SIGN)).unwrap();
        for h in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
            any.verify(MSG, &sign_rsa(MSG, true, h)).unwrap();
            any.verify(MSG, &sign_rsa(MSG, false, h)).unwrap();
        }
        let e = any
            .verify(
                MSG,
                &Signature::Rsapss {
                    hash: HashAlg::Sha1,
                    sig: vec![0; 256],
                },
            )
            .unwrap_err();
        assert!(matches!(e, SignatureError::Unsupported { .. }), "{e}");
        let e = any
            .verify(
                MSG,
                &Signature::Rsassa {
                    hash: HashAlg::Sha256,
                    sig: vec![0; 255],
                },
            )
            .unwrap_err();
        assert!(matches!(e, SignatureError::Malformed { .. }), "{e}");
        let e = any
            .verify(MSG, &sign_ecdsa(EccCurve::NistP256, MSG))
            .unwrap_err();
        assert!(matches!(e, SignatureError::SchemeNotAllowed { .. }), "{e}");
    }

    const A_SIGN: u32 = ObjectAttributes::SIGN | ObjectAttributes::USER_WITH_AUTH;

    #[test]
    fn ecdsa_verifies_with_stripped_r_s_on_both_curves() {
        for curve in [EccCurve::NistP256, EccCurve::NistP384] {
            let h = if curve == EccCurve::NistP256 {
                HashAlg::Sha256
            } else {
                HashAlg::Sha384
            };
            let ak =
                VerifyingKey::from_public(&ecc_public(curve, Scheme::Ecdsa(h), AK_ATTRS)).unwrap();
            for _ in 0..8 {
                ak.verify(MSG, &sign_ecdsa(curve, MSG)).unwrap();
            }
            let e = ak.verify(b"x", &sign_ecdsa(curve, MSG)).unwrap_err();
            assert!(
                matches!(e, SignatureError::Invalid { kind: "ECDSA", .. }),
                "{e}"
            );
            let e = ak
                .verify(
                    MSG,
                    &Signature::Ecdsa {
                        hash: h,
                        r: vec![1; 67],
                        s: vec![1],
                    },
                )
                .unwrap_err();
            assert!(matches!(e, SignatureError::Malformed { .. }), "{e}");
        }
    }

    #[test]
    fn spki_and_pem_keys_have_no_attributes() {
        let public = rsa_public(Scheme::Rsassa(HashAlg::Sha256), AK_ATTRS);
        let pem = der::pem_encode("PUBLIC KEY", &der::spki(&public).unwrap());
        let k = VerifyingKey::from_pem(&pem).unwrap();
        assert_eq!(k.attributes(), None);
        assert_eq!(k.scheme(), Scheme::Null);
        assert_eq!(k.to_pem(), pem);
        k.verify(MSG, &sign_rsa(MSG, true, HashAlg::Sha256))
            .unwrap();
        let ec = ecc_public(EccCurve::NistP384, Scheme::Null, A_SIGN);
        let k = VerifyingKey::from_spki_der(&der::spki(&ec).unwrap()).unwrap();
        assert_eq!(k.describe(), "ECC NIST P-384");
        k.verify(MSG, &sign_ecdsa(EccCurve::NistP384, MSG)).unwrap();
        assert!(matches!(
            VerifyingKey::from_spki_der(&[0x30, 0x00]),
            Err(KeyError::Spki(_))
        ));
        let small = der::rsa_spki(&[0xc1; 128], 65537);
        assert_eq!(
            VerifyingKey::from_spki_der(&small).unwrap_err(),
            KeyError::RsaTooSmall { bits: 1024 }
        );
    }

    #[test]
    fn der_signature_encoding() {
        assert_eq!(
            der_rs(&[0x01], &[0x80]),
            vec![0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80]
        );
        assert_eq!(fixed_rs(4, &[1], &[2, 3]), vec![0, 0, 0, 1, 0, 0, 2, 3]);
    }
}
