//! "Attest me now": the agent's hint to its verifier that its measured state changed (a Vouch
//! extension; upstream keylime only polls).
//!
//! A hint carries no evidence. It only moves the verifier's next quote of that agent earlier;
//! the quote (fresh nonce, AK signature, PCR 16 = H(NK), policy) decides as always. So the
//! only harm a forged or replayed hint could do is make the verifier quote more often; these
//! checks bound that:
//! - **Signed with the NK**, the key a verified quote bound into PCR 16 and the verifier
//!   stored; a hint for an agent whose NK the verifier does not know yet is refused. The signed
//!   bytes start with a fixed domain tag, so they can never be mistaken for anything else the
//!   NK touches (it only decrypts OAEP shares otherwise).
//! - **Counter**: microseconds since the epoch at sending. The verifier refuses a counter not
//!   above the last one it accepted from that agent (a replay) and one more than
//!   [`MAX_SKEW_SECS`] away from its own clock (a hint captured before a verifier restart).
//! - The verifier rate-limits hint-triggered quotes per agent (`min_hint_gap`).
//!
//! Wire: `POST /v1/hint` with JSON `{"agent_id", "counter", "reason", "signature"}` (base64
//! RSA-PSS-SHA256 over [`Hint::signed_bytes`]); answers 202 (accepted), 400 (malformed),
//! 403 (bad signature, unknown agent or NK), 409 (replay or stale).

use crate::keylime::{NodeKey, NodePublicKey};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Path of the hint endpoint on the verifier's hint listener.
pub const HINT_PATH: &str = "/v1/hint";
/// Counters further than this from the verifier's clock are refused.
pub const MAX_SKEW_SECS: u64 = 300;
/// Longest accepted `reason`.
pub const MAX_REASON_LEN: usize = 64;
const DOMAIN: &str = "vouch-attest-hint-v1";

/// What changed on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HintReason {
    /// New IMA log entries.
    Ima,
    /// A PCR value changed.
    Pcr,
}

impl HintReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ima => "ima",
            Self::Pcr => "pcr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hint {
    pub agent_id: String,
    pub counter: u64,
    pub reason: HintReason,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HintError {
    #[error("signing the hint with the NK failed")]
    Sign,
    #[error("the hint's signature is not base64")]
    SignatureEncoding,
    #[error("the NK on record for agent {0} is not a usable RSA key: {1}")]
    BadKey(String, String),
    #[error("the hint's signature does not verify with the NK on record for agent {0}")]
    BadSignature(String),
    #[error("hint counter {counter} is not above the last accepted one ({last}): replayed")]
    Replayed { counter: u64, last: u64 },
    #[error("hint counter {counter} is more than {MAX_SKEW_SECS} s from the verifier's clock ({now_micros} µs)")]
    Stale { counter: u64, now_micros: u64 },
}

impl Hint {
    /// The bytes the signature covers.
    pub fn signed_bytes(agent_id: &str, counter: u64, reason: HintReason) -> Vec<u8> {
        format!("{DOMAIN}\n{agent_id}\n{counter}\n{}", reason.as_str()).into_bytes()
    }

    /// A hint signed with the agent's NK.
    pub fn sign(
        nk: &NodeKey,
        agent_id: &str,
        counter: u64,
        reason: HintReason,
    ) -> Result<Self, HintError> {
        let sig = nk
            .sign_pss_sha256(&Self::signed_bytes(agent_id, counter, reason))
            .map_err(|_| HintError::Sign)?;
        Ok(Self {
            agent_id: agent_id.to_owned(),
            counter,
            reason,
            signature: STANDARD.encode(sig),
        })
    }

    /// Verify the signature with the NK PEM on record, the counter against the last accepted
    /// one (`last`, 0 if none) and the clock (`now_micros`).
    pub fn verify(&self, nk_pem: &str, last: u64, now_micros: u64) -> Result<(), HintError> {
        let skew = MAX_SKEW_SECS * 1_000_000;
        if self.counter.abs_diff(now_micros) > skew {
            return Err(HintError::Stale {
                counter: self.counter,
                now_micros,
            });
        }
        let nk = NodePublicKey::from_pem(nk_pem)
            .map_err(|e| HintError::BadKey(self.agent_id.clone(), e.to_string()))?;
        let sig = STANDARD
            .decode(&self.signature)
            .map_err(|_| HintError::SignatureEncoding)?;
        let bytes = Self::signed_bytes(&self.agent_id, self.counter, self.reason);
        if !nk.verify_pss_sha256(&bytes, &sig) {
            return Err(HintError::BadSignature(self.agent_id.clone()));
        }
        // After the signature: an unauthenticated sender learns nothing from the answer.
        if self.counter <= last {
            return Err(HintError::Replayed {
                counter: self.counter,
                last,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NOW: u64 = 1_790_000_000_000_000;

    #[test]
    fn a_signed_hint_verifies_once() {
        let nk = NodeKey::generate().unwrap();
        let h = Hint::sign(&nk, "node-1", NOW, HintReason::Ima).unwrap();
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains("\"reason\":\"ima\""), "{json}");
        let back: Hint = serde_json::from_str(&json).unwrap();
        back.verify(nk.public_pem(), 0, NOW).unwrap();
        assert_eq!(
            back.verify(nk.public_pem(), NOW, NOW).unwrap_err(),
            HintError::Replayed {
                counter: NOW,
                last: NOW
            }
        );
    }

    #[test]
    fn forged_and_stale_hints_are_refused() {
        let nk = NodeKey::generate().unwrap();
        let other = NodeKey::generate().unwrap();
        let h = Hint::sign(&other, "node-1", NOW, HintReason::Pcr).unwrap();
        assert_eq!(
            h.verify(nk.public_pem(), 0, NOW).unwrap_err(),
            HintError::BadSignature("node-1".into())
        );
        // Signed for another agent, relabelled.
        let mut h = Hint::sign(&nk, "node-2", NOW, HintReason::Pcr).unwrap();
        h.agent_id = "node-1".into();
        assert!(matches!(
            h.verify(nk.public_pem(), 0, NOW),
            Err(HintError::BadSignature(_))
        ));
        // Reason changed after signing.
        let mut h = Hint::sign(&nk, "node-1", NOW, HintReason::Pcr).unwrap();
        h.reason = HintReason::Ima;
        assert!(h.verify(nk.public_pem(), 0, NOW).is_err());
        // Old.
        let h = Hint::sign(&nk, "node-1", NOW - 301_000_000, HintReason::Pcr).unwrap();
        assert!(matches!(
            h.verify(nk.public_pem(), 0, NOW),
            Err(HintError::Stale { .. })
        ));
        // Unknown fields and bad base64.
        assert!(serde_json::from_str::<Hint>(
            r#"{"agent_id":"a","counter":1,"reason":"ima","signature":"","x":1}"#
        )
        .is_err());
        let mut h = Hint::sign(&nk, "node-1", NOW, HintReason::Pcr).unwrap();
        h.signature = "!!".into();
        assert_eq!(
            h.verify(nk.public_pem(), 0, NOW).unwrap_err(),
            HintError::SignatureEncoding
        );
    }
}
