//! Software TPM2_MakeCredential (TPM 2.0 Part 1 §24, Part 3 §12.6): a registrar without a TPM
//! wraps a secret so that only a TPM holding both the EK and the object (AK) with the given
//! Name can recover it with TPM2_ActivateCredential.
//!
//! The construction, with every hash the EK's nameAlg:
//! - seed: RSA EK → random, RSA-OAEP-encrypted with label "IDENTITY\0"; ECC EK → ephemeral ECDH,
//!   `seed = KDFe(Z.x, "IDENTITY", ephemeral.x, EK.x)`, the secret being the ephemeral point;
//! - `symKey = KDFa(seed, "STORAGE", Name, -, EK sym key bits)`;
//!   `encIdentity = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(secret))`;
//! - `hmacKey = KDFa(seed, "INTEGRITY", -, -, digest bits)`;
//!   `outerHMAC = HMAC(hmacKey, encIdentity || Name)`;
//! - `TPM2B_ID_OBJECT = TPM2B(TPM2B_DIGEST(outerHMAC) || encIdentity)`.

mod file;
pub mod kdf;
#[cfg(test)]
mod tests;

pub use file::{CREDENTIAL_FILE_MAGIC, CREDENTIAL_FILE_VERSION};

use crate::der;
use crate::tpm::alg::{TPM_ALG_AES, TPM_ALG_CFB};
use crate::tpm::public::MAX_DIGEST_BYTES;
use crate::tpm::{
    EccCurve, HashAlg, Name, Public, PublicKey, Reader, SymDef, WireError, WireReason, Writer,
};
use aws_lc_rs::{agreement, rand, rsa};
use thiserror::Error;

/// The KDF / OAEP label of credential protection (the TPM includes the NUL).
pub const IDENTITY_LABEL: &[u8] = b"IDENTITY\0";

/// Largest TPM2B_ID_OBJECT contents: sizeof(TPMS_ID_OBJECT) = two TPM2B_DIGESTs.
pub const MAX_ID_OBJECT_BYTES: usize = 2 * (2 + MAX_DIGEST_BYTES);
/// Largest TPM2B_ENCRYPTED_SECRET contents: sizeof(TPMU_ENCRYPTED_SECRET), the RSA member.
pub const MAX_ENCRYPTED_SECRET_BYTES: usize = 512;

#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("EK ({key}) is not a restricted decryption key (objectAttributes 0x{attributes:08x}: restricted={restricted}, decrypt={decrypt}, sign={sign})")]
    NotRestrictedDecrypt {
        key: String,
        attributes: u32,
        restricted: bool,
        decrypt: bool,
        sign: bool,
    },
    #[error(
        "EK ({key}) symmetric definition {sym:?} is not usable for credential protection: {why}"
    )]
    Symmetric {
        key: String,
        sym: SymDef,
        why: &'static str,
    },
    #[error("EK public area has an empty unique field (a template, not a key)")]
    EmptyEkKey,
    #[error("EK {key} cannot be used: {why}")]
    EkKey { key: String, why: String },
    #[error("secret is {len} bytes; a TPM accepts at most {max} (the {name_alg} digest size of the EK's nameAlg)")]
    SecretTooLong {
        len: usize,
        max: usize,
        name_alg: HashAlg,
    },
    #[error("secret is empty")]
    EmptySecret,
    #[error("object Name is invalid: {0}")]
    Name(WireError),
    #[error("{0} failed in the crypto backend")]
    Crypto(&'static str),
    #[error("credential: {0}")]
    Wire(WireError),
    #[error(
        "tpm2-tools credential file: magic 0x{found:08x}, expected 0x{CREDENTIAL_FILE_MAGIC:08x}"
    )]
    FileMagic { found: u32 },
    #[error("tpm2-tools credential file: version {found}, only version {CREDENTIAL_FILE_VERSION} is known")]
    FileVersion { found: u32 },
}

impl From<WireError> for CredentialError {
    fn from(e: WireError) -> Self {
        CredentialError::Wire(e)
    }
}

/// A credential blob: what TPM2_MakeCredential returns and TPM2_ActivateCredential consumes.
///
/// Both fields hold the *contents* of their TPM2B (no u16 size prefix); the `*_tpm2b` methods
/// give the wire forms. A `Credential` is either made by [`make_credential`] or parsed by
/// [`Credential::from_parts`] / [`Credential::from_tpm2_tools_file`], which check the sizes
/// and that the ID object starts with a well-formed TPM2B_DIGEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    id_object: Vec<u8>,
    encrypted_secret: Vec<u8>,
}

impl Credential {
    /// Check and wrap TPM2B contents (without size prefixes).
    pub fn from_parts(
        id_object: Vec<u8>,
        encrypted_secret: Vec<u8>,
    ) -> Result<Self, CredentialError> {
        let mut w = Writer::new();
        w.sized(&id_object).sized(&encrypted_secret);
        let bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        let c = Self::read(&mut r)?;
        r.finish("credential")?;
        Ok(c)
    }

    /// Read TPM2B_ID_OBJECT followed by TPM2B_ENCRYPTED_SECRET.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut id = r.sized_reader(MAX_ID_OBJECT_BYTES, "TPM2B_ID_OBJECT")?;
        let id_start = id.clone();
        id.sized(MAX_DIGEST_BYTES, "TPMS_ID_OBJECT.integrityHMAC")?;
        if id.remaining() == 0 {
            return Err(id.error(
                "TPMS_ID_OBJECT.encIdentity",
                WireReason::Invalid("empty".into()),
            ));
        }
        let mut all = id_start;
        let id_object = all.bytes(all.remaining(), "TPM2B_ID_OBJECT")?.to_vec();
        let at = r.offset();
        let encrypted_secret = r
            .sized(MAX_ENCRYPTED_SECRET_BYTES, "TPM2B_ENCRYPTED_SECRET")?
            .to_vec();
        if encrypted_secret.is_empty() {
            return Err(r.error_at(
                at,
                "TPM2B_ENCRYPTED_SECRET",
                WireReason::Invalid("empty".into()),
            ));
        }
        Ok(Credential {
            id_object,
            encrypted_secret,
        })
    }

    /// TPM2B_ID_OBJECT contents: TPM2B_DIGEST(integrityHMAC) || encIdentity.
    pub fn id_object(&self) -> &[u8] {
        &self.id_object
    }

    /// TPM2B_ENCRYPTED_SECRET contents: the OAEP ciphertext (RSA EK) or a marshalled
    /// TPMS_ECC_POINT (ECC EK).
    pub fn encrypted_secret(&self) -> &[u8] {
        &self.encrypted_secret
    }

    /// TPM2B_ID_OBJECT wire form (u16 size || contents).
    pub fn id_object_tpm2b(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.sized(&self.id_object);
        w.into_vec()
    }

    /// TPM2B_ENCRYPTED_SECRET wire form (u16 size || contents).
    pub fn encrypted_secret_tpm2b(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.sized(&self.encrypted_secret);
        w.into_vec()
    }
}

/// The EK properties credential protection needs, checked once.
struct Protector {
    name_alg: HashAlg,
    sym_key_bits: u16,
}

fn check_ek(ek: &Public) -> Result<Protector, CredentialError> {
    let a = ek.attributes;
    if !(a.restricted() && a.decrypt() && !a.sign()) {
        return Err(CredentialError::NotRestrictedDecrypt {
            key: ek.describe(),
            attributes: a.0,
            restricted: a.restricted(),
            decrypt: a.decrypt(),
            sign: a.sign(),
        });
    }
    let sym = match &ek.key {
        PublicKey::Rsa {
            symmetric, modulus, ..
        } => {
            if modulus.is_empty() {
                return Err(CredentialError::EmptyEkKey);
            }
            *symmetric
        }
        PublicKey::Ecc {
            symmetric, x, y, ..
        } => {
            if x.is_empty() || y.is_empty() {
                return Err(CredentialError::EmptyEkKey);
            }
            *symmetric
        }
    };
    let sym_err = |why| CredentialError::Symmetric {
        key: ek.describe(),
        sym,
        why,
    };
    let sym_key_bits = match sym {
        SymDef::Null => return Err(sym_err("no symmetric algorithm (TPM_ALG_NULL)")),
        SymDef::Cipher {
            alg,
            key_bits,
            mode,
        } => {
            if alg != TPM_ALG_AES {
                return Err(sym_err("only AES is supported"));
            }
            if mode != TPM_ALG_CFB {
                return Err(sym_err("a restricted decryption key must use CFB mode"));
            }
            if !matches!(key_bits, 128 | 192 | 256) {
                return Err(sym_err("AES key size must be 128, 192 or 256 bits"));
            }
            key_bits
        }
    };
    Ok(Protector {
        name_alg: ek.name_alg,
        sym_key_bits,
    })
}

/// TPM2_MakeCredential in software.
///
/// `ek` is the EK's public area (any restricted decryption key works the same way),
/// `object_name` the Name of the object that must be loaded next to it (the AK), `secret` the
/// credential, at most the EK nameAlg's digest size (32 bytes for the usual SHA-256 EK).
pub fn make_credential(
    ek: &Public,
    object_name: &Name,
    secret: &[u8],
) -> Result<Credential, CredentialError> {
    let p = check_ek(ek)?;
    let name = Name::from_bytes(object_name.as_bytes()).map_err(CredentialError::Name)?;
    let max = p.name_alg.digest_len();
    if secret.len() > max {
        return Err(CredentialError::SecretTooLong {
            len: secret.len(),
            max,
            name_alg: p.name_alg,
        });
    }
    if secret.is_empty() {
        return Err(CredentialError::EmptySecret);
    }
    let (seed, encrypted_secret) = make_seed(ek, p.name_alg)?;
    let id_object = protect(&p, &seed, name.as_bytes(), secret)?;
    Ok(Credential {
        id_object,
        encrypted_secret,
    })
}

/// The seed and its encryption to the EK (Part 4 CryptSecretEncrypt with label "IDENTITY").
fn make_seed(ek: &Public, name_alg: HashAlg) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let ek_err = |why: String| CredentialError::EkKey {
        key: ek.describe(),
        why,
    };
    match &ek.key {
        PublicKey::Rsa {
            modulus, exponent, ..
        } => {
            let mut seed = vec![0u8; name_alg.digest_len()];
            rand::fill(&mut seed).map_err(|_| CredentialError::Crypto("random seed"))?;
            let spki = der::rsa_spki(modulus, PublicKey::rsa_exponent(*exponent));
            let key = rsa::PublicEncryptingKey::from_der(&spki)
                .map_err(|e| ek_err(format!("RSA key rejected: {e}")))?;
            let key = rsa::OaepPublicEncryptingKey::new(key)
                .map_err(|_| CredentialError::Crypto("RSA-OAEP key"))?;
            let alg = match name_alg {
                HashAlg::Sha1 => &rsa::OAEP_SHA1_MGF1SHA1,
                HashAlg::Sha256 => &rsa::OAEP_SHA256_MGF1SHA256,
                HashAlg::Sha384 => &rsa::OAEP_SHA384_MGF1SHA384,
                HashAlg::Sha512 => &rsa::OAEP_SHA512_MGF1SHA512,
            };
            if key.max_plaintext_size(alg) < seed.len() {
                return Err(ek_err(format!("too small for an OAEP-{name_alg} seed")));
            }
            let mut out = vec![0u8; key.ciphertext_size()];
            let ct = key
                .encrypt(alg, &seed, &mut out, Some(IDENTITY_LABEL))
                .map_err(|_| CredentialError::Crypto("RSA-OAEP encryption"))?;
            let ct = ct.to_vec();
            Ok((seed, ct))
        }
        PublicKey::Ecc { curve, x, y, .. } => {
            let alg = match curve {
                EccCurve::NistP256 => &agreement::ECDH_P256,
                EccCurve::NistP384 => &agreement::ECDH_P384,
                EccCurve::NistP521 => &agreement::ECDH_P521,
            };
            let point = der::ec_point(*curve, x, y).map_err(|e| ek_err(e.to_string()))?;
            let eph = agreement::PrivateKey::generate(alg)
                .map_err(|_| CredentialError::Crypto("ephemeral ECC key generation"))?;
            let eph_pub = eph
                .compute_public_key()
                .map_err(|_| CredentialError::Crypto("ephemeral ECC public key"))?;
            let n = curve.coordinate_len();
            let eph_point = eph_pub.as_ref();
            if eph_point.len() != 1 + 2 * n {
                return Err(CredentialError::Crypto("ephemeral ECC public key encoding"));
            }
            let (ex, ey) = (&eph_point[1..1 + n], &eph_point[1 + n..]);
            let peer = agreement::UnparsedPublicKey::new(alg, &point);
            let z = agreement::agree(&eph, peer, (), |z| Ok(z.to_vec()))
                .map_err(|()| ek_err(format!("point is not on {} (ECDH failed)", curve.name())))?;
            let bits = (name_alg.digest_len() * 8) as u32;
            let seed = kdf::kdfe(name_alg, &z, IDENTITY_LABEL, ex, x, bits);
            let mut w = Writer::new();
            w.sized(ex).sized(ey);
            Ok((seed, w.into_vec()))
        }
    }
}

/// The TPMS_ID_OBJECT protecting `secret` under `seed` for the object `name`.
fn protect(
    p: &Protector,
    seed: &[u8],
    name: &[u8],
    secret: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    let sym_key = kdf::kdfa(
        p.name_alg,
        seed,
        b"STORAGE",
        name,
        &[],
        p.sym_key_bits.into(),
    );
    let mut enc_identity = Writer::new();
    enc_identity.sized(secret);
    let mut enc_identity = enc_identity.into_vec();
    aes_cfb_encrypt(&sym_key, &mut enc_identity)?;
    let hmac_key = kdf::kdfa(
        p.name_alg,
        seed,
        b"INTEGRITY",
        &[],
        &[],
        (p.name_alg.digest_len() * 8) as u32,
    );
    let outer_hmac = kdf::hmac(p.name_alg, &hmac_key, &[&enc_identity, name]);
    let mut w = Writer::new();
    w.sized(&outer_hmac).bytes(&enc_identity);
    Ok(w.into_vec())
}

/// AES-CFB-128 with a zero IV, the TPM's parameter-protection and credential mode.
pub(crate) fn aes_cfb(key: &[u8], buf: &mut [u8], decrypt: bool) -> Result<(), CredentialError> {
    use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
    let iv = [0u8; 16];
    let bad = |_| CredentialError::Crypto("AES key setup");
    match (key.len(), decrypt) {
        (16, false) => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .map_err(bad)?
            .encrypt(buf),
        (24, false) => cfb_mode::Encryptor::<aes::Aes192>::new_from_slices(key, &iv)
            .map_err(bad)?
            .encrypt(buf),
        (32, false) => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .map_err(bad)?
            .encrypt(buf),
        (16, true) => cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .map_err(bad)?
            .decrypt(buf),
        (24, true) => cfb_mode::Decryptor::<aes::Aes192>::new_from_slices(key, &iv)
            .map_err(bad)?
            .decrypt(buf),
        (32, true) => cfb_mode::Decryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .map_err(bad)?
            .decrypt(buf),
        _ => return Err(CredentialError::Crypto("AES key length")),
    }
    Ok(())
}

fn aes_cfb_encrypt(key: &[u8], buf: &mut [u8]) -> Result<(), CredentialError> {
    aes_cfb(key, buf, false)
}
