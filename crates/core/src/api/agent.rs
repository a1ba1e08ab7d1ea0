//! Agent API 2.x bodies: what rust-keylime serves and keylime 7.14.3's tenant and verifier read
//! (docs/keylime-wire.md §4). All are the `results` of an [`crate::api::envelope::Envelope`].
//! The agent's `/version` body is [`crate::api::version::AgentVersionInfo`].
//!
//! Optional fields are omitted when absent, never `null` (rust-keylime
//! `keylime/src/quote.rs:KeylimeQuote` uses `skip_serializing_if = "Option::is_none"`).

use crate::tpm::HashAlg;
use serde::{Deserialize, Serialize};

/// `results` of `GET /vX/quotes/identity` and `GET /vX/quotes/integrity` (§4.1, §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteResponse {
    /// The quote string ([`crate::api::quote_string::QuoteString`]).
    pub quote: String,
    /// The quote's bank, e.g. `sha256` (checked against `accept_tpm_hash_algs`).
    pub hash_alg: String,
    /// The EK family, `rsa` or `ecc` (checked against `accept_tpm_encryption_algs`).
    pub enc_alg: String,
    /// The AK scheme, `rsassa` or `ecdsa` (checked against `accept_tpm_signing_algs`).
    pub sign_alg: String,
    /// The NK public key PEM bound into PCR 16; always in identity quotes, in integrity quotes
    /// only when `partial=0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubkey: Option<String>,
    /// ASCII IMA log lines from `ima_measurement_list_entry` on; absent without an IMA log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_measurement_list: Option<String>,
    /// The IMA entry number the list starts at (an integer on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_measurement_list_entry: Option<u64>,
    /// base64 of the binary UEFI event log; only when PCR 0 is in the mask and a log exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mb_measurement_list: Option<String>,
    /// Seconds since the epoch at boot (an integer); optional, default 0 upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boottime: Option<u64>,
}

impl QuoteResponse {
    /// The `hash_alg` as a [`HashAlg`], if keylime knows the name.
    pub fn hash(&self) -> Option<HashAlg> {
        HashAlg::from_name(&self.hash_alg)
    }
}

/// Query of `GET /vX/quotes/identity?nonce=N` as sent (validated by the agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityQuoteQuery {
    pub nonce: String,
}

/// Query of `GET /vX/quotes/integrity?nonce=N&mask=M&partial=P&ima_ml_entry=E` as sent by
/// `cloud_verifier_common.py:prepare_get_quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityQuoteQuery {
    pub nonce: String,
    /// `hex()` of the PCR bitmap, e.g. `0x408000`.
    pub mask: String,
    /// `0` (send `pubkey`) or `1`.
    pub partial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_ml_entry: Option<String>,
}

/// Body of `POST /vX/keys/ukey` (tenant, §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UkeyRequest {
    /// b64(RSA-OAEP-SHA1(NK, U)).
    pub encrypted_key: String,
    /// hex(HMAC-SHA384(K, agent_id)).
    pub auth_tag: String,
    /// b64(iv || AES-256-GCM(K, data) || tag), only when the tenant sends a payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// Body of `POST /vX/keys/vkey` (verifier, §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VkeyRequest {
    /// b64(RSA-OAEP-SHA1(NK, V)).
    pub encrypted_key: String,
}

/// `results` of `GET /vX/keys/verify?challenge=C` (§4.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// hex(HMAC-SHA384(K, C)), lowercase.
    pub hmac: String,
}

/// `results` of `GET /vX/keys/pubkey` (rust-keylime `keys_handler.rs:pubkey`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubkeyResponse {
    pub pubkey: String,
}

/// `results` of `GET /vX/agent/info` (v2.2+; rust-keylime `agent_handler.rs:info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_uuid: String,
    pub tpm_hash_alg: String,
    /// `rsa`/`ecc` up to v2.4, `rsa2048`/`ecc256`… from v2.5.
    pub tpm_enc_alg: String,
    pub tpm_sign_alg: String,
    pub ak_handle: u32,
}

/// Body of `POST /vX/notifications/revocation` (§4.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationNotice {
    /// A JSON document as a string.
    pub msg: String,
    /// b64 RSA-PSS-SHA256 signature of `msg`, or `""`.
    pub signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_optionals_are_omitted() {
        let q = QuoteResponse {
            quote: "rAA==:AA==:AA==".into(),
            hash_alg: "sha256".into(),
            enc_alg: "rsa".into(),
            sign_alg: "rsassa".into(),
            pubkey: None,
            ima_measurement_list: None,
            ima_measurement_list_entry: None,
            mb_measurement_list: None,
            boottime: None,
        };
        assert_eq!(
            serde_json::to_value(&q).unwrap(),
            json!({"quote": "rAA==:AA==:AA==", "hash_alg": "sha256", "enc_alg": "rsa", "sign_alg": "rsassa"})
        );
        assert_eq!(q.hash(), Some(HashAlg::Sha256));
    }

    #[test]
    fn integer_fields_are_integers() {
        let v = json!({"quote": "r", "hash_alg": "sha1", "enc_alg": "ecc", "sign_alg": "ecdsa",
            "ima_measurement_list": "", "ima_measurement_list_entry": 3, "boottime": 17});
        let q: QuoteResponse = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(q.ima_measurement_list_entry, Some(3));
        assert_eq!(serde_json::to_value(&q).unwrap(), v);
    }

    #[test]
    fn ukey_payload_optional() {
        let u: UkeyRequest =
            serde_json::from_value(json!({"encrypted_key": "AA==", "auth_tag": "ab"})).unwrap();
        assert_eq!(u.payload, None);
        assert!(!serde_json::to_string(&u).unwrap().contains("payload"));
    }
}
