//! Keyrings of IMA signature keys (upstream keylime/ima/file_signatures.py `ImaKeyring`):
//! the runtime policy's `verification-keys` (the "tenant keyring") and the kernel keyrings
//! keys are learned into from `ima-buf` entries.

use super::error::PolicyError;
use super::key::ImaKey;
use crate::pyjson;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// A set of keys indexed by keyid (upstream `ImaKeyring`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<StoredKey>", into = "Vec<StoredKey>")]
pub struct Keyring {
    keys: Vec<ImaKey>,
}

/// Serialized form of a key in the replay state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub keyid: u32,
    /// Base64 DER SubjectPublicKeyInfo.
    pub spki: String,
}

impl TryFrom<Vec<StoredKey>> for Keyring {
    type Error = String;
    fn try_from(v: Vec<StoredKey>) -> Result<Self, String> {
        let mut ring = Keyring::default();
        for k in v {
            let der = base64::engine::general_purpose::STANDARD
                .decode(&k.spki)
                .map_err(|e| format!("stored key 0x{:08x}: {e}", k.keyid))?;
            let key = ImaKey::from_spki_der(&der, Some(k.keyid))
                .map_err(|e| format!("stored key 0x{:08x}: {e}", k.keyid))?;
            ring.add(key);
        }
        Ok(ring)
    }
}

impl From<Keyring> for Vec<StoredKey> {
    fn from(r: Keyring) -> Self {
        r.keys
            .iter()
            .map(|k| StoredKey {
                keyid: k.keyid(),
                spki: base64::engine::general_purpose::STANDARD.encode(k.spki_der()),
            })
            .collect()
    }
}

impl Keyring {
    /// Add a key; a key with the same keyid is replaced, as upstream's dict assignment.
    pub fn add(&mut self, key: ImaKey) {
        self.keys.retain(|k| k.keyid() != key.keyid());
        self.keys.push(key);
    }

    pub fn get(&self, keyid: u32) -> Option<&ImaKey> {
        self.keys.iter().find(|k| k.keyid() == keyid)
    }

    pub fn keys(&self) -> &[ImaKey] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parse a runtime policy's `verification-keys` string: `""`, or a JSON object
    /// `{"meta"?: {"version": n}, "keyids": [int...], "pubkeys": [base64 DER SPKI...]}`.
    /// Keys upstream would log and skip are an error here.
    pub fn from_policy_json(text: &str) -> Result<Self, PolicyError> {
        let err = |m: String| PolicyError::VerificationKeys(m);
        if text.is_empty() {
            return Ok(Self::default());
        }
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("is not a JSON object".into()))?;
        if let Some(meta) = obj.get("meta") {
            let version = meta.get("version").and_then(|v| v.as_i64());
            if !matches!(version, Some(n) if n >= 1) {
                return Err(err(
                    "\"meta\" needs an integer \"version\" of at least 1".into()
                ));
            }
        }
        let keyids = obj
            .get("keyids")
            .and_then(|v| v.as_array())
            .ok_or_else(|| err("\"keyids\" must be an array of integers".into()))?;
        let keyids: Vec<u32> = keyids
            .iter()
            .map(|k| k.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| err("\"keyids\" must be 32-bit unsigned integers".into()))?;
        let pubkeys = obj
            .get("pubkeys")
            .and_then(|v| v.as_array())
            .ok_or_else(|| err("\"pubkeys\" must be an array of strings".into()))?;
        let mut ring = Self::default();
        for (i, pk) in pubkeys.iter().enumerate() {
            let b64 = pk
                .as_str()
                .ok_or_else(|| err(format!("pubkeys[{i}] is not a string")))?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| err(format!("pubkeys[{i}] is not base64: {e}")))?;
            let key = ImaKey::from_spki_der(&der, keyids.get(i).copied())
                .map_err(|e| err(format!("pubkeys[{i}]: {e}")))?;
            ring.add(key);
        }
        Ok(ring)
    }

    /// The `verification-keys` string upstream's `ImaKeyring.to_string` writes.
    pub fn to_policy_json(&self) -> String {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let value = serde_json::json!({
            "pubkeys": self.keys.iter().map(|k| b64.encode(k.spki_der())).collect::<Vec<_>>(),
            "keyids": self.keys.iter().map(|k| k.keyid()).collect::<Vec<_>>(),
        });
        pyjson::to_string(&PreserveOrder(&value))
    }
}

/// serde_json's `json!` sorts object keys unless `preserve_order` is on; write the two keys in
/// upstream's order by hand.
struct PreserveOrder<'a>(&'a serde_json::Value);

impl Serialize for PreserveOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        for key in ["pubkeys", "keyids"] {
            m.serialize_entry(key, &self.0[key])?;
        }
        m.end()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ima::key::tests::ec_key;

    #[test]
    fn policy_keyring_json_round_trips() {
        let (_, spki) = ec_key();
        let mut ring = Keyring::default();
        ring.add(ImaKey::from_spki_der(&spki, Some(0x1234)).unwrap());
        let text = ring.to_policy_json();
        assert!(text.starts_with("{\"pubkeys\": [\""), "{text}");
        assert!(text.ends_with("\"keyids\": [4660]}"), "{text}");
        assert_eq!(Keyring::from_policy_json(&text).unwrap(), ring);
        assert!(Keyring::from_policy_json("").unwrap().is_empty());
        for bad in [
            "[]",
            "{\"pubkeys\": []}",
            "{\"keyids\": [], \"pubkeys\": [\"!!\"]}",
            "{\"keyids\": [-1], \"pubkeys\": []}",
            "{\"meta\": {}, \"keyids\": [], \"pubkeys\": []}",
            "\"x\"",
        ] {
            assert!(Keyring::from_policy_json(bad).is_err(), "{bad}");
        }
        let stored = serde_json::to_string(&ring).unwrap();
        assert_eq!(serde_json::from_str::<Keyring>(&stored).unwrap(), ring);
    }
}
