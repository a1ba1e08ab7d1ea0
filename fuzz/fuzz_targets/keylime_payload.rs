#![no_main]
//! keylime payloads and wire encodings: never panic; forged ciphertexts never decrypt.
use libfuzzer_sys::fuzz_target;
use vouch_core::keylime::{decrypt_payload, BootstrapKey, EncryptedPayload, KeyHmac, KeyShare};

fuzz_target!(|data: &[u8]| {
    let key = BootstrapKey::from_bytes(&[7u8; 32]).expect("32-byte key");
    if let Ok(p) = EncryptedPayload::from_bytes(data.to_vec()) {
        // A random 16-byte tag authenticating is a 2^-128 event: treat success as a bug.
        assert!(decrypt_payload(&key, &p).is_err());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = EncryptedPayload::from_base64(text);
        let _ = KeyShare::from_base64(text);
        let _ = KeyHmac::from_hex(text);
    }
});
