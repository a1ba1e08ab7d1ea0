//! Keylime bootstrap-key crypto, byte-compatible with upstream keylime 7.14.3 (Python tenant and
//! verifier) and rust-keylime (the agent).
//!
//! The protocol this module implements, in upstream's terms:
//!
//! 1. The tenant draws a 32-byte bootstrap key `K` and a random share `V`, sets `U = K xor V`
//!    (`keylime/cmd/user_data_encrypt.py:encrypt`), encrypts the payload under `K` with AES-GCM
//!    and a 16-byte IV (`crypto.encrypt`), and computes `auth_tag = hex(HMAC-SHA384(K, agent_id))`
//!    (`tenant.py:Tenant.preloop`).
//! 2. The tenant RSA-OAEP-encrypts `U` to the agent's node key NK and POSTs
//!    `{"encrypted_key": b64, "auth_tag": hex, "payload": b64}` to `/keys/ukey`; the verifier, after
//!    a good quote, POSTs `{"encrypted_key": b64}` carrying `V` to `/keys/vkey`
//!    (`cloud_verifier_common.py:prepare_v`).
//! 3. The agent tries every received `U` with every `V` and keeps the `K` whose HMAC over its
//!    agent ID equals that `U`'s auth tag ([`find_key`]).
//! 4. The tenant proves delivery with `GET /keys/verify?challenge=C`, expecting
//!    `hex(HMAC-SHA384(K, C))` (`tenant.py:Tenant.do_verify`).

mod bootstrap;
mod error;
mod hmac;
mod node_key;
mod payload;

pub use bootstrap::{combine, find_key, split, BootstrapKey, KeyShare, TaggedShare};
pub use error::KeylimeError;
pub use hmac::{
    auth_tag, challenge_hmac, verify_auth_tag, verify_challenge_hmac, Challenge, KeyHmac,
};
pub use node_key::{encrypt_share_to_nk, EncryptedShare, NodeKey, NodePublicKey};
pub use payload::{
    decrypt_payload, encrypt_payload, EncryptedPayload, GCM_TAG_LEN, PAYLOAD_IV_LEN,
};

/// Result type of this module.
pub type Result<T, E = KeylimeError> = std::result::Result<T, E>;

/// Strict standard base64 (with padding), as Python's `base64.b64encode` writes and rust-keylime's
/// `general_purpose::STANDARD` reads.
fn b64_decode(field: &'static str, text: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|source| KeylimeError::Base64 {
            field,
            cause: source,
        })
}

fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
