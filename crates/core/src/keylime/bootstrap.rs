//! The bootstrap key `K` and its two XOR shares `U` and `V`.

use super::hmac::{verify_auth_tag, KeyHmac};
use super::{b64_decode, b64_encode, KeylimeError, Result};
use std::fmt;

/// Length of the keys the tenant generates (`crypto.generate_random_key(32)`).
const GENERATED_KEY_LEN: usize = 32;
/// rust-keylime's `SymmKey` accepts AES-128 and AES-256 key lengths, nothing else.
const KEY_LENGTHS: [usize; 2] = [16, 32];

/// Fixed-capacity secret buffer, overwritten with zeros on drop. Best effort: without `unsafe`
/// volatile writes, `black_box` is what keeps the compiler from eliding the wipe, and copies made
/// by moves are not tracked.
#[derive(Clone)]
struct Secret {
    buf: [u8; GENERATED_KEY_LEN],
    len: usize,
}

impl Secret {
    fn new(what: &'static str, bytes: &[u8]) -> Result<Self> {
        if !KEY_LENGTHS.contains(&bytes.len()) {
            return Err(KeylimeError::KeyLength {
                what,
                len: bytes.len(),
            });
        }
        let mut buf = [0u8; GENERATED_KEY_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            buf,
            len: bytes.len(),
        })
    }

    fn random() -> Result<Self> {
        let mut buf = [0u8; GENERATED_KEY_LEN];
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| KeylimeError::Random)?;
        Ok(Self {
            buf,
            len: GENERATED_KEY_LEN,
        })
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// `crypto.strbitxor`, restricted to equal lengths like rust-keylime's `SymmKey::xor`.
    fn xor(&self, other: &Secret) -> Option<Secret> {
        if self.len != other.len {
            return None;
        }
        let mut out = Secret {
            buf: [0u8; GENERATED_KEY_LEN],
            len: self.len,
        };
        for (o, (a, b)) in out
            .buf
            .iter_mut()
            .zip(self.as_slice().iter().zip(other.as_slice()))
        {
            *o = a ^ b;
        }
        Some(out)
    }

    fn ct_eq(&self, other: &Secret) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.as_slice(), other.as_slice()).is_ok()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.buf.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.buf);
    }
}

/// The bootstrap key `K`: encrypts the payload and keys the HMACs. Never sent whole.
#[derive(Clone)]
pub struct BootstrapKey(Secret);

impl BootstrapKey {
    /// 32 fresh random bytes, as the tenant's `crypto.generate_random_key(32)`.
    pub fn generate() -> Result<Self> {
        Secret::random().map(Self)
    }

    /// A key of 16 or 32 bytes (the lengths rust-keylime accepts).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Secret::new("bootstrap key", bytes).map(Self)
    }

    /// Base64 form, as in the first line of a `user_data_encrypt` key file.
    pub fn from_base64(text: &str) -> Result<Self> {
        Self::from_bytes(&b64_decode("bootstrap key", text)?)
    }

    pub fn to_base64(&self) -> String {
        b64_encode(self.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// Split into `(U, V)`: `V` random, `U = K xor V`, as `user_data_encrypt.encrypt`.
    pub fn split(&self) -> Result<(KeyShare, KeyShare)> {
        let mut v = Secret::random()?;
        v.buf[self.0.len..].fill(0);
        v.len = self.0.len;
        let u = self.0.xor(&v).ok_or(KeylimeError::ShareLengthMismatch {
            u: self.0.len,
            v: v.len,
        })?;
        Ok((KeyShare(u), KeyShare(v)))
    }
}

impl PartialEq for BootstrapKey {
    /// Constant time in the key bytes.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0)
    }
}

impl Eq for BootstrapKey {}

impl fmt::Debug for BootstrapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapKey({} bytes, redacted)", self.0.len)
    }
}

/// One XOR share of the bootstrap key: `U` (from the tenant) or `V` (from the verifier). The two
/// are interchangeable, so they share one type.
#[derive(Clone)]
pub struct KeyShare(Secret);

impl KeyShare {
    /// A share of 16 or 32 bytes, e.g. as decrypted from `/keys/ukey` or `/keys/vkey`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Secret::new("key share", bytes).map(Self)
    }

    /// Base64 form, as the `v` field the tenant sends to the verifier.
    pub fn from_base64(text: &str) -> Result<Self> {
        Self::from_bytes(&b64_decode("key share", text)?)
    }

    pub fn to_base64(&self) -> String {
        b64_encode(self.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl PartialEq for KeyShare {
    /// Constant time in the share bytes.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0)
    }
}

impl Eq for KeyShare {}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyShare({} bytes, redacted)", self.0.len)
    }
}

/// Split `K` into `(U, V)`; see [`BootstrapKey::split`].
pub fn split(key: &BootstrapKey) -> Result<(KeyShare, KeyShare)> {
    key.split()
}

/// `K = U xor V`. Fails if the shares differ in length.
pub fn combine(u: &KeyShare, v: &KeyShare) -> Result<BootstrapKey> {
    u.0.xor(&v.0)
        .map(BootstrapKey)
        .ok_or(KeylimeError::ShareLengthMismatch {
            u: u.0.len,
            v: v.0.len,
        })
}

/// A `U` share together with the auth tag the tenant posted alongside it to `/keys/ukey`.
#[derive(Debug, Clone)]
pub struct TaggedShare {
    pub share: KeyShare,
    pub auth_tag: KeyHmac,
}

/// The agent's key derivation (rust-keylime `keys_handler.rs:try_combine_keys`): try every `U`
/// with every `V` and return the first `K = U xor V` whose HMAC over `agent_id` matches that
/// `U`'s auth tag. `None` while a share is missing or no pair matches; pairs of mismatched length
/// are skipped, not errors, because a stale share must not block a good one.
pub fn find_key(us: &[TaggedShare], vs: &[KeyShare], agent_id: &str) -> Option<BootstrapKey> {
    us.iter().find_map(|u| {
        vs.iter().find_map(|v| {
            let k = combine(&u.share, v).ok()?;
            verify_auth_tag(&k, agent_id, &u.auth_tag).then_some(k)
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::hmac::auth_tag;
    use super::*;

    #[test]
    fn split_then_combine_round_trips() {
        let k = BootstrapKey::generate().unwrap();
        let (u, v) = k.split().unwrap();
        assert_eq!(combine(&u, &v).unwrap(), k);
        assert_eq!(combine(&v, &u).unwrap(), k, "XOR is symmetric");
        assert_ne!(u, v);
    }

    #[test]
    fn sixteen_byte_keys_split_too() {
        let k = BootstrapKey::from_bytes(&[7u8; 16]).unwrap();
        let (u, v) = split(&k).unwrap();
        assert_eq!(u.as_bytes().len(), 16);
        assert_eq!(combine(&u, &v).unwrap(), k);
    }

    #[test]
    fn bad_lengths_are_rejected() {
        assert!(matches!(
            BootstrapKey::from_bytes(&[0; 31]),
            Err(KeylimeError::KeyLength { len: 31, .. })
        ));
        assert!(matches!(
            KeyShare::from_bytes(&[]),
            Err(KeylimeError::KeyLength { len: 0, .. })
        ));
        let u = KeyShare::from_bytes(&[1; 16]).unwrap();
        let v = KeyShare::from_bytes(&[1; 32]).unwrap();
        assert!(matches!(
            combine(&u, &v),
            Err(KeylimeError::ShareLengthMismatch { u: 16, v: 32 })
        ));
    }

    #[test]
    fn base64_round_trip() {
        let k = BootstrapKey::generate().unwrap();
        assert_eq!(BootstrapKey::from_base64(&k.to_base64()).unwrap(), k);
        let (u, _) = k.split().unwrap();
        assert_eq!(KeyShare::from_base64(&u.to_base64()).unwrap(), u);
        assert!(matches!(
            KeyShare::from_base64("not base64!"),
            Err(KeylimeError::Base64 { .. })
        ));
    }

    #[test]
    fn debug_does_not_leak_key_bytes() {
        let k = BootstrapKey::from_bytes(&[0xab; 32]).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }

    #[test]
    fn find_key_picks_the_matching_pair() {
        let agent = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000";
        let k = BootstrapKey::generate().unwrap();
        let (u, v) = k.split().unwrap();
        let (stale_u, stale_v) = BootstrapKey::generate().unwrap().split().unwrap();
        let stale_tag = auth_tag(&BootstrapKey::generate().unwrap(), agent);
        let us = vec![
            TaggedShare {
                share: stale_u,
                auth_tag: stale_tag,
            },
            TaggedShare {
                share: u.clone(),
                auth_tag: auth_tag(&k, agent),
            },
        ];
        let short_v = KeyShare::from_bytes(&[0; 16]).unwrap();
        let vs = vec![stale_v, short_v, v.clone()];
        assert_eq!(find_key(&us, &vs, agent), Some(k.clone()));
        assert_eq!(
            find_key(&us, &vs, "another-agent"),
            None,
            "tag binds the agent ID"
        );
        assert_eq!(find_key(&us, &[], agent), None);
        assert_eq!(find_key(&[], &vs, agent), None);
    }

    #[test]
    fn wrong_u_is_rejected() {
        let agent = "agent-1";
        let k = BootstrapKey::generate().unwrap();
        let (_, v) = k.split().unwrap();
        let (wrong_u, _) = BootstrapKey::generate().unwrap().split().unwrap();
        let us = [TaggedShare {
            share: wrong_u,
            auth_tag: auth_tag(&k, agent),
        }];
        assert_eq!(find_key(&us, &[v], agent), None);
    }
}
