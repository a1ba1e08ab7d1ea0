//! The payload the tenant delivers to the agent: AES-GCM under the bootstrap key, laid out as
//! `IV(16) || ciphertext || tag(16)` and base64-encoded in the `payload` field of `/keys/ukey`
//! (`crypto.encrypt` / `crypto.decrypt`; rust-keylime `crypto.rs:decrypt_aead`).
//!
//! Keylime uses a 16-byte IV, not GCM's usual 12, so GHASH derives the counter block from it;
//! aws-lc-rs only takes 12-byte nonces, hence the RustCrypto `aes-gcm` crate here.

use super::{b64_decode, b64_encode, BootstrapKey, KeylimeError, Result};
use aes_gcm::aead::consts::U16;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::{Aes128, Aes256};
use aes_gcm::AesGcm;

/// `crypto.AES_BLOCK_SIZE`: the IV length keylime uses.
pub const PAYLOAD_IV_LEN: usize = 16;
/// GCM tag length (cryptography's default, full 16 bytes).
pub const GCM_TAG_LEN: usize = 16;

type Aes128Gcm16 = AesGcm<Aes128, U16>;
type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// An encrypted payload in keylime's layout. Holding one means it is at least IV + tag long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedPayload(Vec<u8>);

impl EncryptedPayload {
    /// Raw `IV || ciphertext || tag`; rejects inputs shorter than IV + tag, as rust-keylime does.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < PAYLOAD_IV_LEN + GCM_TAG_LEN {
            return Err(KeylimeError::PayloadTooShort { len: bytes.len() });
        }
        Ok(Self(bytes))
    }

    /// The wire form: the `payload` string of `/keys/ukey`, which is `crypto.encrypt`'s base64
    /// output unchanged.
    pub fn from_base64(text: &str) -> Result<Self> {
        Self::from_bytes(b64_decode("payload", text)?)
    }

    pub fn to_base64(&self) -> String {
        b64_encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn parts(&self) -> (&[u8], &[u8]) {
        let (iv, rest) = self.0.split_at(PAYLOAD_IV_LEN);
        (iv, rest)
    }
}

/// Encrypt `plaintext` under `key` with a fresh random 16-byte IV, as `crypto.encrypt`.
pub fn encrypt_payload(key: &BootstrapKey, plaintext: &[u8]) -> Result<EncryptedPayload> {
    let mut iv = [0u8; PAYLOAD_IV_LEN];
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| KeylimeError::Random)?;
    encrypt_with_iv(key, &iv, plaintext)
}

fn encrypt_with_iv(
    key: &BootstrapKey,
    iv: &[u8; PAYLOAD_IV_LEN],
    plaintext: &[u8],
) -> Result<EncryptedPayload> {
    let nonce = GenericArray::from_slice(iv);
    // `encrypt` appends the tag, which is exactly keylime's `ciphertext || tag`.
    let sealed = match key.as_bytes().len() {
        16 => Aes128Gcm16::new_from_slice(key.as_bytes()).map(|c| c.encrypt(nonce, plaintext)),
        _ => Aes256Gcm16::new_from_slice(key.as_bytes()).map(|c| c.encrypt(nonce, plaintext)),
    }
    .map_err(|_| KeylimeError::PayloadEncryption)?
    .map_err(|_| KeylimeError::PayloadEncryption)?;
    let mut out = Vec::with_capacity(PAYLOAD_IV_LEN + sealed.len());
    out.extend_from_slice(iv);
    out.extend_from_slice(&sealed);
    Ok(EncryptedPayload(out))
}

/// Decrypt and authenticate a payload, as `crypto.decrypt` and rust-keylime's `decrypt_aead`.
pub fn decrypt_payload(key: &BootstrapKey, payload: &EncryptedPayload) -> Result<Vec<u8>> {
    let (iv, sealed) = payload.parts();
    let nonce = GenericArray::from_slice(iv);
    match key.as_bytes().len() {
        16 => Aes128Gcm16::new_from_slice(key.as_bytes()).map(|c| c.decrypt(nonce, sealed)),
        _ => Aes256Gcm16::new_from_slice(key.as_bytes()).map(|c| c.decrypt(nonce, sealed)),
    }
    .map_err(|_| KeylimeError::PayloadAuthentication)?
    .map_err(|_| KeylimeError::PayloadAuthentication)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counting(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    #[test]
    fn known_answers_from_python_cryptography() {
        // Cipher(AES(bytes(range(n))), GCM(bytes(range(100, 116)))) over b"keylime payload".
        let iv: [u8; 16] = core::array::from_fn(|i| 100 + i as u8);
        let cases = [
            (32, "6465666768696a6b6c6d6e6f70717273b3d63a3d8d7942f8c298d4e528b688f17af995e499e61524fe0c35cd890920"),
            (16, "6465666768696a6b6c6d6e6f707172734993638ddda8f072174992665cf16a2c952dbc32c3dce0f26df8fae663a753"),
        ];
        for (len, expected) in cases {
            let k = BootstrapKey::from_bytes(&counting(len)).unwrap();
            let enc = encrypt_with_iv(&k, &iv, b"keylime payload").unwrap();
            assert_eq!(hex::encode(enc.as_bytes()), expected, "AES-{}", len * 8);
            assert_eq!(decrypt_payload(&k, &enc).unwrap(), b"keylime payload");
        }
    }

    #[test]
    fn round_trip_including_empty() {
        let k = BootstrapKey::generate().unwrap();
        for plaintext in [&b""[..], b"x", &[0x5a; 4096]] {
            let enc = encrypt_payload(&k, plaintext).unwrap();
            assert_eq!(
                enc.as_bytes().len(),
                PAYLOAD_IV_LEN + plaintext.len() + GCM_TAG_LEN
            );
            let wire = EncryptedPayload::from_base64(&enc.to_base64()).unwrap();
            assert_eq!(decrypt_payload(&k, &wire).unwrap(), plaintext);
        }
    }

    #[test]
    fn fresh_iv_each_time() {
        let k = BootstrapKey::generate().unwrap();
        let a = encrypt_payload(&k, b"same").unwrap();
        let b = encrypt_payload(&k, b"same").unwrap();
        assert_ne!(
            a.as_bytes()[..PAYLOAD_IV_LEN],
            b.as_bytes()[..PAYLOAD_IV_LEN]
        );
    }

    #[test]
    fn tampering_is_detected_everywhere() {
        let k = BootstrapKey::generate().unwrap();
        let enc = encrypt_payload(&k, b"secret payload").unwrap();
        for i in 0..enc.as_bytes().len() {
            let mut bytes = enc.clone().into_bytes();
            bytes[i] ^= 0x01;
            let tampered = EncryptedPayload::from_bytes(bytes).unwrap();
            assert!(
                matches!(
                    decrypt_payload(&k, &tampered),
                    Err(KeylimeError::PayloadAuthentication)
                ),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn wrong_key_is_rejected() {
        let enc = encrypt_payload(&BootstrapKey::generate().unwrap(), b"p").unwrap();
        let other = BootstrapKey::generate().unwrap();
        assert!(matches!(
            decrypt_payload(&other, &enc),
            Err(KeylimeError::PayloadAuthentication)
        ));
    }

    #[test]
    fn truncation_is_rejected() {
        let k = BootstrapKey::generate().unwrap();
        let enc = encrypt_payload(&k, b"payload").unwrap().into_bytes();
        assert!(matches!(
            EncryptedPayload::from_bytes(enc[..31].to_vec()),
            Err(KeylimeError::PayloadTooShort { len: 31 })
        ));
        assert!(matches!(
            EncryptedPayload::from_bytes(Vec::new()),
            Err(KeylimeError::PayloadTooShort { len: 0 })
        ));
        // Long enough to parse, but missing its last byte: the tag no longer matches.
        let cut = EncryptedPayload::from_bytes(enc[..enc.len() - 1].to_vec()).unwrap();
        assert!(matches!(
            decrypt_payload(&k, &cut),
            Err(KeylimeError::PayloadAuthentication)
        ));
        assert!(matches!(
            EncryptedPayload::from_base64("%%%"),
            Err(KeylimeError::Base64 { .. })
        ));
    }
}
