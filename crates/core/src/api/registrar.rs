//! Registrar REST API 2.x bodies, field names exactly as upstream 7.14.3
//! (`docs/keylime-wire.md` §3; `models/registrar/registrar_agent.py:RegistrarAgent.update`,
//! `render`; `web/registrar/agents_controller.py`).

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use thiserror::Error;

/// Longest agent id the registrar stores (`agent_id VARCHAR(80)`).
pub const AGENT_ID_MAX_LEN: usize = 80;

/// An agent id: 1–80 characters matching `[\w.-]` (the verifier's
/// `common/validators.py:valid_agent_id`, Unicode `\w` like Python's `re`). Upstream's registrar
/// itself accepts any string; refusing ids the verifier would refuse anyway surfaces the
/// problem at enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AgentId(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AgentIdError {
    #[error("agent id is empty")]
    Empty,
    #[error("agent id is {len} characters long; at most {AGENT_ID_MAX_LEN} are allowed")]
    TooLong { len: usize },
    #[error("agent id {id:?} contains {ch:?}; only letters, digits, '_', '.' and '-' are allowed")]
    BadChar { id: String, ch: char },
}

impl AgentId {
    pub fn parse(text: &str) -> Result<Self, AgentIdError> {
        if text.is_empty() {
            return Err(AgentIdError::Empty);
        }
        let len = text.chars().count();
        if len > AGENT_ID_MAX_LEN {
            return Err(AgentIdError::TooLong { len });
        }
        if let Some(ch) = text
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(AgentIdError::BadChar {
                id: text.to_owned(),
                ch,
            });
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AgentId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `Some(None)` for an explicit JSON `null`, `None` (with `#[serde(default)]`) when absent:
/// upstream treats the two differently (an explicit `null` clears a field; absent keeps it).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `POST /v2.x/agents/{agent_id}` (and `POST /v2.x/agents` with `agent_id` inside).
///
/// Nullable fields are `Option<Option<_>>`: outer `None` = absent (keep the stored value),
/// `Some(None)` = explicit `null`. Unknown fields are ignored, as upstream does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Only in the `POST /agents` form; with `POST /agents/{id}` it must be absent or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// base64 TPM2B_PUBLIC of the EK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_tpm: Option<String>,
    /// EK certificate: PEM (possibly a chain, first = EK cert) or base64 DER.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ekcert: Option<Option<String>>,
    /// base64 TPM2B_PUBLIC of the AK. Required.
    pub aik_tpm: String,
    /// Agent's mTLS server certificate (PEM) or `"disabled"`. Send it: `null` makes the
    /// upstream tenant use API 1.0 with the agent (wire doc §9.1).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub mtls_cert: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<Option<u16>>,
    /// IAK / IDevID identity (accepted on the wire; not used by Vouch's registrar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iak_tpm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iak_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iak_attest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iak_sign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idevid_tpm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idevid_cert: Option<String>,
}

/// `results` of a successful registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// base64 tpm2-tools credential file (see [`super::enrollment`]).
    pub blob: String,
}

/// Body of `PUT /v2.x/agents/{agent_id}` (activate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    /// Lowercase hex HMAC-SHA384 (see [`super::enrollment::ActivationKey::auth_tag`]).
    pub auth_tag: String,
}

/// `results` of `GET /v2.x/agents/{agent_id}` (`RegistrarAgent.render`). All keys are always
/// present; nullable ones as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    /// base64 TPM2B_PUBLIC.
    pub ek_tpm: Option<String>,
    /// base64 DER (not PEM), or null.
    pub ekcert: Option<String>,
    /// base64 TPM2B_PUBLIC.
    pub aik_tpm: String,
    /// PEM, `"disabled"`, or null.
    pub mtls_cert: Option<String>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub regcount: u32,
}

/// `results` of `GET /v2.x/agents/`: every registered id, active or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    pub uuids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_and_null_differ() {
        let r: RegisterRequest =
            serde_json::from_value(json!({"aik_tpm": "AA==", "ekcert": null, "port": 9002}))
                .unwrap();
        assert_eq!(r.ekcert, Some(None));
        assert_eq!(r.mtls_cert, None);
        assert_eq!(r.port, Some(Some(9002)));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(
            back,
            json!({"aik_tpm": "AA==", "ekcert": null, "port": 9002})
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_are_precise() {
        let e = serde_json::from_value::<RegisterRequest>(json!({"ek_tpm": "AA=="})).unwrap_err();
        assert_eq!(e.to_string(), "missing field `aik_tpm`");
        let e = serde_json::from_value::<RegisterRequest>(json!({"aik_tpm": 5})).unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid type: integer `5`, expected a string"),
            "{e}"
        );
        let e = serde_json::from_value::<RegisterRequest>(json!({"aik_tpm": "A", "port": "x"}))
            .unwrap_err();
        assert!(e.to_string().contains("expected u16"), "{e}");
        // unknown fields are ignored, as upstream does
        serde_json::from_value::<RegisterRequest>(json!({"aik_tpm": "A", "future": 1})).unwrap();
    }

    #[test]
    fn record_renders_nulls() {
        let r = AgentRecord {
            agent_id: "a".into(),
            ek_tpm: Some("E".into()),
            ekcert: None,
            aik_tpm: "K".into(),
            mtls_cert: Some("disabled".into()),
            ip: None,
            port: Some(9002),
            regcount: 1,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"agent_id": "a", "ek_tpm": "E", "ekcert": null, "aik_tpm": "K",
                   "mtls_cert": "disabled", "ip": null, "port": 9002, "regcount": 1})
        );
    }

    #[test]
    fn agent_ids() {
        assert!(AgentId::parse("d432fbb3-d2f1-4a97-9ef7-75bd81c00000").is_ok());
        assert!(AgentId::parse("node_1.example").is_ok());
        assert_eq!(AgentId::parse(""), Err(AgentIdError::Empty));
        assert!(matches!(
            AgentId::parse("a/b"),
            Err(AgentIdError::BadChar { ch: '/', .. })
        ));
        assert!(matches!(
            AgentId::parse(&"a".repeat(81)),
            Err(AgentIdError::TooLong { len: 81 })
        ));
        assert!(serde_json::from_value::<AgentId>(json!("a b")).is_err());
    }
}
