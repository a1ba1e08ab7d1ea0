//! HMAC-SHA384 keyed with the bootstrap key: the `auth_tag` over the agent ID and the
//! `/keys/verify` challenge response. Both are upstream's `crypto.do_hmac(K, text)`, which hashes
//! the UTF-8 bytes of `text` and returns lowercase hex.

use super::{BootstrapKey, KeylimeError, Result};
use aws_lc_rs::hmac;
use std::fmt;

/// Output length of HMAC-SHA384.
const HMAC_LEN: usize = 48;
/// `tpm_util.random_password(20)`: the challenge length the tenant uses.
const CHALLENGE_LEN: usize = 20;
const CHALLENGE_CHARS: &[u8; 62] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz";

/// An HMAC-SHA384 value keyed with the bootstrap key. On the wire it is lowercase hex (Python's
/// `hexdigest()`); compare with [`verify_auth_tag`] / [`verify_challenge_hmac`], which run in
/// constant time, never with `==` on the hex.
#[derive(Clone)]
pub struct KeyHmac([u8; HMAC_LEN]);

impl KeyHmac {
    fn compute(key: &BootstrapKey, message: &str) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA384, key.as_bytes());
        let mut out = [0u8; HMAC_LEN];
        out.copy_from_slice(hmac::sign(&key, message.as_bytes()).as_ref());
        Self(out)
    }

    fn verify(&self, key: &BootstrapKey, message: &str) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA384, key.as_bytes());
        hmac::verify(&key, message.as_bytes(), &self.0).is_ok()
    }

    /// Parse the hex form (either case; rust-keylime uses `hex::decode`).
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text.trim()).map_err(|source| KeylimeError::Hex {
            field: "HMAC",
            cause: source,
        })?;
        let arr: [u8; HMAC_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeylimeError::HmacLength { len: bytes.len() })?;
        Ok(Self(arr))
    }

    /// Lowercase hex, exactly as `crypto.do_hmac` returns it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for KeyHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHmac({})", self.to_hex())
    }
}

/// The tenant's `auth_tag = crypto.do_hmac(K, agent_uuid)` (`tenant.py:Tenant.preloop`).
pub fn auth_tag(key: &BootstrapKey, agent_id: &str) -> KeyHmac {
    KeyHmac::compute(key, agent_id)
}

/// Whether `tag` is the auth tag of `key` for `agent_id`, in constant time.
pub fn verify_auth_tag(key: &BootstrapKey, agent_id: &str, tag: &KeyHmac) -> bool {
    tag.verify(key, agent_id)
}

/// A `/keys/verify` challenge: non-empty and alphanumeric, the agent's precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge(String);

impl Challenge {
    /// 20 characters from `[A-Za-z0-9]`, drawn like `tpm_util.random_password(20)`.
    pub fn generate() -> Result<Self> {
        let mut rand = [0u8; CHALLENGE_LEN];
        aws_lc_rs::rand::fill(&mut rand).map_err(|_| KeylimeError::Random)?;
        let text = rand
            .iter()
            .map(|&b| char::from(CHALLENGE_CHARS[usize::from(b) % CHALLENGE_CHARS.len()]))
            .collect();
        Ok(Self(text))
    }

    /// Accept a challenge as rust-keylime's `keys_handler.rs:verify` does: non-empty, every
    /// character alphanumeric.
    pub fn parse(text: &str) -> Result<Self> {
        if text.is_empty() || !text.chars().all(char::is_alphanumeric) {
            return Err(KeylimeError::Challenge {
                challenge: text.to_owned(),
            });
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The agent's `/keys/verify` answer, `hex(HMAC-SHA384(K, challenge))`; the tenant expects
/// `crypto.do_hmac(K, challenge)` (`tenant.py:Tenant.do_verify`).
pub fn challenge_hmac(key: &BootstrapKey, challenge: &Challenge) -> KeyHmac {
    KeyHmac::compute(key, challenge.as_str())
}

/// Whether the agent's answer proves it holds `key`, in constant time.
pub fn verify_challenge_hmac(key: &BootstrapKey, challenge: &Challenge, answer: &KeyHmac) -> bool {
    answer.verify(key, challenge.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // Python: hmac.new(b"\x0b" * 32, b"Hi There", hashlib.sha384).hexdigest()
        let k = BootstrapKey::from_bytes(&[0x0b; 32]).unwrap();
        let tag = auth_tag(&k, "Hi There");
        assert_eq!(
            tag.to_hex(),
            "c3f1615943d1dd07a83bb644b97fb3dc2b8a936aa5389de2a3e9dd91bc3bae0d0c30334a301733aa54ed5e1f0769e868"
        );
        assert!(verify_auth_tag(&k, "Hi There", &tag));
    }

    #[test]
    fn auth_tag_binds_key_and_agent() {
        let k = BootstrapKey::generate().unwrap();
        let tag = auth_tag(&k, "agent-a");
        assert!(verify_auth_tag(&k, "agent-a", &tag));
        assert!(!verify_auth_tag(&k, "agent-b", &tag));
        assert!(!verify_auth_tag(
            &BootstrapKey::generate().unwrap(),
            "agent-a",
            &tag
        ));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let k = BootstrapKey::generate().unwrap();
        let tag = auth_tag(&k, "x");
        let parsed = KeyHmac::from_hex(&tag.to_hex().to_uppercase()).unwrap();
        assert!(verify_auth_tag(&k, "x", &parsed));
        assert!(matches!(
            KeyHmac::from_hex("zz"),
            Err(KeylimeError::Hex { .. })
        ));
        assert!(matches!(
            KeyHmac::from_hex(&tag.to_hex()[..94]),
            Err(KeylimeError::HmacLength { len: 47 })
        ));
    }

    #[test]
    fn challenges() {
        let c = Challenge::generate().unwrap();
        assert_eq!(c.as_str().len(), 20);
        assert!(c.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(Challenge::parse("abcXYZ019").is_ok());
        assert!(Challenge::parse("").is_err());
        assert!(Challenge::parse("a&b=c").is_err());
        let k = BootstrapKey::generate().unwrap();
        let answer = challenge_hmac(&k, &c);
        assert!(verify_challenge_hmac(&k, &c, &answer));
        assert!(!verify_challenge_hmac(
            &k,
            &Challenge::parse("other").unwrap(),
            &answer
        ));
    }
}
