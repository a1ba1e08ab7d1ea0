//! The agent's node key NK, which carries the `U` and `V` shares to the agent.
//!
//! Upstream: the agent publishes the NK public key as an SPKI PEM (`-----BEGIN PUBLIC KEY-----`)
//! in the `pubkey` field of its quote and `/keys/pubkey` responses (rust-keylime
//! `crypto.rs:pkey_pub_to_pem`, Python `crypto.rsa_export_pubkey`); the tenant and verifier
//! encrypt each share with `crypto.rsa_encrypt` — RSA-OAEP, SHA-1, MGF1-SHA-1, no label — and send
//! it base64-encoded as `encrypted_key`.

use super::{b64_decode, b64_encode, KeyShare, KeylimeError, Result};
use crate::der::{pem_decode, pem_encode};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, OAEP_SHA1_MGF1SHA1,
};
use std::fmt;

const PEM_SPKI: &str = "PUBLIC KEY";
const PEM_PKCS1: &str = "RSA PUBLIC KEY";

/// A share encrypted to a node key: the decoded `encrypted_key` of `/keys/ukey` or `/keys/vkey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedShare(Vec<u8>);

impl EncryptedShare {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The `encrypted_key` JSON string.
    pub fn from_base64(text: &str) -> Result<Self> {
        b64_decode("encrypted_key", text).map(Self)
    }

    pub fn to_base64(&self) -> String {
        b64_encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Agent side: a software RSA-2048 node key, generated at start-up as rust-keylime does.
pub struct NodeKey {
    private: OaepPrivateDecryptingKey,
    /// The same RSA key as a signing key: Vouch's "attest me now" hints are signed with the NK
    /// (the key a verified quote binds into PCR 16), see `api::hint`.
    signer: aws_lc_rs::rsa::KeyPair,
    public_pem: String,
}

impl NodeKey {
    pub fn generate() -> Result<Self> {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|_| KeylimeError::NodeKeyGeneration)?;
        let spki: PublicKeyX509Der = private
            .public_key()
            .as_der()
            .map_err(|_| KeylimeError::NodeKeyGeneration)?;
        let public_pem = pem_encode(PEM_SPKI, spki.as_ref());
        let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der = private
            .as_der()
            .map_err(|_| KeylimeError::NodeKeyGeneration)?;
        let signer = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| KeylimeError::NodeKeyGeneration)?;
        let private =
            OaepPrivateDecryptingKey::new(private).map_err(|_| KeylimeError::NodeKeyGeneration)?;
        Ok(Self {
            private,
            signer,
            public_pem,
        })
    }

    /// RSA-PSS (SHA-256, MGF1-SHA-256, salt = hash length) signature of `message`. Only for
    /// domain-separated Vouch messages (`api::hint`), never for anything a share is made of.
    pub fn sign_pss_sha256(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.signer.public_modulus_len()];
        self.signer
            .sign(
                &aws_lc_rs::signature::RSA_PSS_SHA256,
                &rng,
                message,
                &mut sig,
            )
            .map_err(|_| KeylimeError::NodeKeyGeneration)?;
        Ok(sig)
    }

    /// The SPKI PEM the agent returns as `pubkey`: 64-column base64, trailing newline, as
    /// OpenSSL's `PEM_write_bio_PUBKEY` and Python's `rsa_export_pubkey` write it.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The public half, for a verifier or tenant living in the same process (tests, demos).
    pub fn public_key(&self) -> Result<NodePublicKey> {
        NodePublicKey::from_pem(&self.public_pem)
    }

    /// Decrypt a `U` or `V` share (rust-keylime `keys_handler.rs:u_key`/`v_key`), checking the
    /// plaintext is a 16- or 32-byte key.
    pub fn decrypt_share(&self, share: &EncryptedShare) -> Result<KeyShare> {
        let mut out = vec![0u8; self.private.min_output_size()];
        let plain = self
            .private
            .decrypt(&OAEP_SHA1_MGF1SHA1, share.as_bytes(), &mut out, None)
            .map_err(|_| KeylimeError::ShareDecryption)?;
        let result = KeyShare::from_bytes(plain);
        out.fill(0);
        std::hint::black_box(&out);
        result
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeKey(RSA-{}, private part redacted)",
            self.private.key_size_bits()
        )
    }
}

/// Tenant / verifier side: the agent's NK public key, parsed once so the verifier can encrypt `V`
/// again after a new quote without re-parsing.
pub struct NodePublicKey {
    public: OaepPublicEncryptingKey,
    spki: Vec<u8>,
}

impl NodePublicKey {
    /// Accept what `crypto.rsa_import_pubkey` accepts from an RSA agent: an SPKI `PUBLIC KEY`
    /// block (what every agent sends) or a PKCS#1 `RSA PUBLIC KEY` block.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let spki = if pem.contains(&format!("-----BEGIN {PEM_PKCS1}-----")) {
            spki_from_pkcs1(&pem_decode(PEM_PKCS1, pem).map_err(KeylimeError::NodeKeyPem)?)
        } else {
            pem_decode(PEM_SPKI, pem).map_err(KeylimeError::NodeKeyPem)?
        };
        let public =
            PublicEncryptingKey::from_der(&spki).map_err(|e| KeylimeError::NodeKeyRejected {
                reason: e.to_string(),
            })?;
        let public =
            OaepPublicEncryptingKey::new(public).map_err(|e| KeylimeError::NodeKeyRejected {
                reason: e.to_string(),
            })?;
        Ok(Self { public, spki })
    }

    /// Check an RSA-PSS-SHA256 signature made by [`NodeKey::sign_pss_sha256`].
    pub fn verify_pss_sha256(&self, message: &[u8], signature: &[u8]) -> bool {
        use x509_parser::prelude::FromDer;
        // The SPKI's subjectPublicKey BIT STRING holds the PKCS#1 key aws-lc-rs wants.
        let Ok((_, spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&self.spki) else {
            return false;
        };
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
            spki.subject_public_key.data.as_ref(),
        )
        .verify(message, signature)
        .is_ok()
    }

    /// `crypto.rsa_encrypt(NK, share)`: RSA-OAEP with SHA-1, MGF1-SHA-1 and no label.
    pub fn encrypt_share(&self, share: &KeyShare) -> Result<EncryptedShare> {
        let mut out = vec![0u8; self.public.ciphertext_size()];
        let len = self
            .public
            .encrypt(&OAEP_SHA1_MGF1SHA1, share.as_bytes(), &mut out, None)
            .map_err(|_| KeylimeError::ShareEncryption)?
            .len();
        out.truncate(len);
        Ok(EncryptedShare(out))
    }

    pub fn bits(&self) -> usize {
        self.public.key_size_bits()
    }
}

impl fmt::Debug for NodePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodePublicKey(RSA-{})", self.bits())
    }
}

/// Encrypt a share to the NK PEM the agent reported (tenant: `U` in `do_quote`; verifier: `V` in
/// `prepare_v`).
pub fn encrypt_share_to_nk(nk_public_pem: &str, share: &KeyShare) -> Result<EncryptedShare> {
    NodePublicKey::from_pem(nk_public_pem)?.encrypt_share(share)
}

/// Wrap a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo with the rsaEncryption algorithm.
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        match n {
            0..=0x7f => out.push(n as u8),
            0x80..=0xff => out.extend([0x81, n as u8]),
            _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const RSA_ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keylime::BootstrapKey;
    use x509_parser::prelude::FromDer;

    #[test]
    fn share_round_trip_through_pem() {
        let nk = NodeKey::generate().unwrap();
        assert!(nk.public_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(nk.public_pem().ends_with("-----END PUBLIC KEY-----\n"));
        let (u, v) = BootstrapKey::generate().unwrap().split().unwrap();
        for share in [u, v] {
            let enc = encrypt_share_to_nk(nk.public_pem(), &share).unwrap();
            assert_eq!(enc.as_bytes().len(), 256);
            let wire = EncryptedShare::from_base64(&enc.to_base64()).unwrap();
            assert_eq!(nk.decrypt_share(&wire).unwrap(), share);
        }
    }

    #[test]
    fn other_node_key_cannot_decrypt() {
        let nk = NodeKey::generate().unwrap();
        let other = NodeKey::generate().unwrap();
        let share = KeyShare::from_bytes(&[9; 32]).unwrap();
        let enc = nk.public_key().unwrap().encrypt_share(&share).unwrap();
        assert!(matches!(
            other.decrypt_share(&enc),
            Err(KeylimeError::ShareDecryption)
        ));
    }

    #[test]
    fn tampered_and_truncated_ciphertexts_fail() {
        let nk = NodeKey::generate().unwrap();
        let enc = nk
            .public_key()
            .unwrap()
            .encrypt_share(&KeyShare::from_bytes(&[1; 32]).unwrap())
            .unwrap();
        let mut bytes = enc.as_bytes().to_vec();
        bytes[100] ^= 0x80;
        assert!(nk
            .decrypt_share(&EncryptedShare::from_bytes(bytes))
            .is_err());
        let cut = EncryptedShare::from_bytes(enc.as_bytes()[..255].to_vec());
        assert!(matches!(
            nk.decrypt_share(&cut),
            Err(KeylimeError::ShareDecryption)
        ));
        assert!(matches!(
            nk.decrypt_share(&EncryptedShare::from_bytes(Vec::new())),
            Err(KeylimeError::ShareDecryption)
        ));
    }

    #[test]
    fn pkcs1_pem_is_accepted() {
        let nk = NodeKey::generate().unwrap();
        let spki = pem_decode(PEM_SPKI, nk.public_pem()).unwrap();
        // An SPKI is SEQUENCE { alg(15 bytes), BIT STRING { 0x00, pkcs1 } }: rebuild and compare.
        let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        let pkcs1 = parsed.subject_public_key.data.to_vec();
        assert_eq!(spki_from_pkcs1(&pkcs1), spki);
        let pem = pem_encode(PEM_PKCS1, &pkcs1);
        let share = KeyShare::from_bytes(&[3; 16]).unwrap();
        let enc = encrypt_share_to_nk(&pem, &share).unwrap();
        assert_eq!(nk.decrypt_share(&enc).unwrap(), share);
    }

    #[test]
    fn bad_pems_are_explained() {
        assert!(matches!(
            NodePublicKey::from_pem("hello"),
            Err(KeylimeError::NodeKeyPem(_))
        ));
        let junk = pem_encode(PEM_SPKI, b"not der");
        assert!(matches!(
            NodePublicKey::from_pem(&junk),
            Err(KeylimeError::NodeKeyRejected { .. })
        ));
    }
}
