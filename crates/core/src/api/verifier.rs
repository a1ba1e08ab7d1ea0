//! Verifier REST API 2.x bodies, field names exactly as upstream keylime 7.14.3
//! (`docs/keylime-wire.md` §5; `cloud_verifier_tornado.py:AgentsHandler`,
//! `cloud_verifier_common.py:process_get_status`, `common/states.py`, `tenant.py:Tenant.do_cvadd`).
//!
//! All are the `results` of an [`crate::api::envelope::Envelope`].

use crate::api::version::ApiVersion;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

/// keylime's data PCR (NK binding) — never allowed in a tenant `tpm_policy` (§4.4, §5.3).
pub const DATA_PCR: u8 = 16;
/// keylime's IMA PCR — never allowed in a tenant `tpm_policy` (§5.3).
pub const IMA_PCR: u8 = 10;
/// Highest PCR index keylime accepts in a policy (`tpm_util.readPolicy`: 0–23).
pub const MAX_PCR: u8 = 23;

/// `operational_state` of a verifier agent (`common/states.py`; §5.2). Serialized as the
/// upstream integer code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OperationalState {
    Registered = 0,
    Start = 1,
    Saved = 2,
    GetQuote = 3,
    GetQuoteRetry = 4,
    ProvideV = 5,
    ProvideVRetry = 6,
    Failed = 7,
    Terminated = 8,
    InvalidQuote = 9,
    TenantFailed = 10,
}

impl OperationalState {
    pub const ALL: [OperationalState; 11] = [
        Self::Registered,
        Self::Start,
        Self::Saved,
        Self::GetQuote,
        Self::GetQuoteRetry,
        Self::ProvideV,
        Self::ProvideVRetry,
        Self::Failed,
        Self::Terminated,
        Self::InvalidQuote,
        Self::TenantFailed,
    ];

    /// The upstream integer code.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The upstream constant name (`GET_QUOTE`).
    pub fn constant(self) -> &'static str {
        match self {
            Self::Registered => "REGISTERED",
            Self::Start => "START",
            Self::Saved => "SAVED",
            Self::GetQuote => "GET_QUOTE",
            Self::GetQuoteRetry => "GET_QUOTE_RETRY",
            Self::ProvideV => "PROVIDE_V",
            Self::ProvideVRetry => "PROVIDE_V_RETRY",
            Self::Failed => "FAILED",
            Self::Terminated => "TERMINATED",
            Self::InvalidQuote => "INVALID_QUOTE",
            Self::TenantFailed => "TENANT_FAILED",
        }
    }

    /// The display name the upstream tenant prints (`states.py:STR_MAPPINGS`).
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Registered => "Registered",
            Self::Start => "Start",
            Self::Saved => "Saved",
            Self::GetQuote => "Get Quote",
            Self::GetQuoteRetry => "Get Quote (retry)",
            Self::ProvideV => "Provide V",
            Self::ProvideVRetry => "Provide V (retry)",
            Self::Failed => "Failed",
            Self::Terminated => "Terminated",
            Self::InvalidQuote => "Invalid Quote",
            Self::TenantFailed => "Tenant Quote Failed",
        }
    }

    /// `attestation_status` in pull mode: `PASS` for 3–6 (even before the first good quote),
    /// `FAIL` for 7, 9, 10, else `PENDING` (§5.2, §9.9).
    pub fn attestation_status(self) -> AttestationStatus {
        match self {
            Self::GetQuote | Self::GetQuoteRetry | Self::ProvideV | Self::ProvideVRetry => {
                AttestationStatus::Pass
            }
            Self::Failed | Self::InvalidQuote | Self::TenantFailed => AttestationStatus::Fail,
            _ => AttestationStatus::Pending,
        }
    }

    /// States `DELETE` removes at once (200); others answer 202 and are marked TERMINATED (§5).
    pub fn deletable_now(self) -> bool {
        matches!(
            self,
            Self::Saved | Self::Failed | Self::TenantFailed | Self::InvalidQuote
        )
    }
}

impl fmt::Display for OperationalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.constant(), self.code())
    }
}

impl Serialize for OperationalState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for OperationalState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = u8::deserialize(d)?;
        Self::from_code(code).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown operational_state code {code} (0–10)"))
        })
    }
}

/// `attestation_status` of the status body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AttestationStatus {
    Pass,
    Fail,
    Pending,
}

/// A TCP port that upstream accepts as a JSON string or integer (`int(json_body["cloudagent_port"])`).
/// Serialized as a string, as `tenant.py:do_cvadd` sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortField(pub u16);

impl Serialize for PortField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PortField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        let err = |what: String| {
            serde::de::Error::custom(format!("{what} is not a port number (1–65535)"))
        };
        let n: u64 = match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a port number (integer or string)"))?
        {
            Raw::Int(n) => n,
            Raw::Str(s) => s.trim().parse().map_err(|_| err(format!("{s:?}")))?,
        };
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(PortField(p)),
            _ => Err(err(n.to_string())),
        }
    }
}

/// Deserialize an `Option` whose key must be present (may be `null`): upstream reads these with
/// `json_body["key"]` (KeyError → 400) yet accepts `null`.
fn required_nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Body of `POST /v2.x/agents/{agent_id}` exactly as `tenant.py:Tenant.do_cvadd` sends it (§5.1).
///
/// Keys upstream reads with `json_body[...]` are required here too; `v`, `mtls_cert`,
/// `supported_version` and the `verifier_*`/`runtime_policy*` keys are optional. Unknown keys
/// are ignored, as upstream does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddAgentRequest {
    /// base64 of the 32-byte V share, or `null` when the tenant has no payload (then the
    /// verifier skips `POST /keys/vkey`).
    #[serde(default)]
    pub v: Option<String>,
    pub cloudagent_ip: String,
    pub cloudagent_port: PortField,
    /// Sent by the tenant but ignored by the verifier (it reports its own address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_port: Option<PortField>,
    /// A JSON *string* of [`TpmPolicy`] (`{"15": ["…"], "mask": "0x8000"}`).
    pub tpm_policy: String,
    /// b64 of the runtime-policy JSON, or `""` (must not be `null`).
    #[serde(default)]
    pub runtime_policy: String,
    #[serde(default)]
    pub runtime_policy_name: String,
    #[serde(default)]
    pub runtime_policy_key: String,
    /// Measured-boot policy JSON, or `null`.
    #[serde(deserialize_with = "required_nullable")]
    pub mb_policy: Option<String>,
    pub mb_policy_name: String,
    pub ima_sign_verification_keys: String,
    /// A JSON *string* (`"{}"`).
    pub metadata: String,
    /// PEM private key in `--cert` CA mode, else `""`.
    pub revocation_key: String,
    pub accept_tpm_hash_algs: Vec<String>,
    pub accept_tpm_encryption_algs: Vec<String>,
    pub accept_tpm_signing_algs: Vec<String>,
    /// base64 TPM2B_PUBLIC of the AK, copied from the registrar's `aik_tpm`.
    pub ak_tpm: String,
    /// The agent's mTLS certificate PEM, `"disabled"`, or `null` (copied from the registrar).
    #[serde(default)]
    pub mtls_cert: Option<String>,
    /// The agent API version the tenant negotiated (e.g. `"2.5"`); absent → 2.6 upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_version: Option<ApiVersion>,
}

/// The value of `mtls_cert` meaning "agent serves plain HTTP".
pub const MTLS_CERT_DISABLED: &str = "disabled";

/// `results` of `GET /v2.x/agents/{agent_id}` (`process_get_status`, §5.2), plus Vouch's
/// `failure_reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub operational_state: OperationalState,
    pub v: Option<String>,
    pub ip: String,
    pub port: u16,
    /// JSON string, as stored.
    pub tpm_policy: String,
    /// JSON string, as stored.
    pub meta_data: String,
    /// 0/1.
    pub has_mb_refstate: u8,
    /// 0/1.
    pub has_runtime_policy: u8,
    pub accept_tpm_hash_algs: Vec<String>,
    pub accept_tpm_encryption_algs: Vec<String>,
    pub accept_tpm_signing_algs: Vec<String>,
    /// Of the last good quote; `""` before.
    pub hash_alg: String,
    pub enc_alg: String,
    pub sign_alg: String,
    pub verifier_id: String,
    pub verifier_ip: String,
    pub verifier_port: u16,
    /// Index into the severity labels (`info` … `emergency` = 6) of the last failure, or null.
    pub severity_level: Option<u32>,
    /// e.g. `"pcr_validation.invalid_pcr_15"`, or null.
    pub last_event_id: Option<String>,
    pub attestation_count: u64,
    /// Unix seconds; 0 = never.
    pub last_received_quote: u64,
    /// Unix seconds; 0 = never.
    pub last_successful_attestation: u64,
    pub attestation_status: AttestationStatus,
    /// e.g. `"2s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_attestation_interval: Option<String>,
    /// Vouch extension (upstream only logs it): why the agent is not attesting, in words a
    /// person can act on. Absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// `results` of `GET /v2.x/agents/`: `{"uuids": [["id1"], ["id2"]]}` — a list of one-element
/// lists, as upstream returns it (§5, §9.8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    pub uuids: Vec<[String; 1]>,
}

impl AgentList {
    pub fn from_ids<I: IntoIterator<Item = String>>(ids: I) -> Self {
        Self {
            uuids: ids.into_iter().map(|id| [id]).collect(),
        }
    }

    /// The ids, flattened.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.uuids.iter().map(|[id]| id.as_str())
    }
}

/// `results` of `GET /v2.x/agents/?bulk=True`: id → status.
pub type BulkStatus = BTreeMap<String, AgentStatus>;

/// A parsed `tpm_policy` (§5.3): PCR index → accepted lowercase hex digests, and the `mask`
/// string sent verbatim to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TpmPolicy {
    pub pcrs: BTreeMap<u8, Vec<String>>,
    /// e.g. `0x8000` (`hex()` form: lowercase, `0x` prefix, no padding).
    pub mask: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TpmPolicyError {
    #[error("tpm_policy is not a JSON object: {0}")]
    NotJson(String),
    #[error("tpm_policy key {0:?} is neither \"mask\" nor a PCR number 0–{MAX_PCR}")]
    BadKey(String),
    #[error(
        "tpm_policy must not pin PCR {0}: keylime reserves it (16 = node key binding, 10 = IMA)"
    )]
    ReservedPcr(u8),
    #[error("tpm_policy PCR {pcr}: {value:?} is not a hex digest")]
    BadDigest { pcr: u8, value: String },
    #[error("tpm_policy PCR {pcr}: expected a hex string or a list of them")]
    BadValue { pcr: u8 },
    #[error(
        "tpm_policy mask {0:?} is not a hex number like \"0x8000\" selecting PCRs 0–{MAX_PCR}"
    )]
    BadMask(String),
    #[error("tpm_policy pins PCR {0} but its mask {1} does not select it")]
    PcrNotInMask(u8, String),
}

impl TpmPolicy {
    /// Build from PCR → digests, computing `mask` as upstream does (`hex(OR of 1<<pcr)`).
    /// Digests are lower-cased. Reserved PCRs (10, 16) are refused, as `tpm_util.readPolicy`.
    pub fn from_pcrs(pcrs: BTreeMap<u8, Vec<String>>) -> Result<Self, TpmPolicyError> {
        let mut bits = 0u32;
        let mut out = BTreeMap::new();
        for (pcr, values) in pcrs {
            if pcr > MAX_PCR {
                return Err(TpmPolicyError::BadKey(pcr.to_string()));
            }
            if pcr == DATA_PCR || pcr == IMA_PCR {
                return Err(TpmPolicyError::ReservedPcr(pcr));
            }
            let values = values
                .into_iter()
                .map(|v| check_digest(pcr, &v))
                .collect::<Result<Vec<_>, _>>()?;
            bits |= 1 << pcr;
            out.insert(pcr, values);
        }
        Ok(Self {
            pcrs: out,
            mask: format!("{bits:#x}"),
        })
    }

    /// Parse the JSON string stored in / sent as `tpm_policy`. Refuses reserved PCRs (10, 16),
    /// bad digests, and PCRs pinned but not selected by `mask`. A missing mask is computed.
    pub fn parse(text: &str) -> Result<Self, TpmPolicyError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| TpmPolicyError::NotJson(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| TpmPolicyError::NotJson(format!("got {value}")))?;
        let mut pcrs = BTreeMap::new();
        let mut mask = None;
        for (k, v) in obj {
            if k == "mask" {
                let m = v
                    .as_str()
                    .ok_or_else(|| TpmPolicyError::BadMask(v.to_string()))?;
                mask = Some(m.to_owned());
                continue;
            }
            let pcr: u8 = k
                .parse()
                .ok()
                .filter(|p| *p <= MAX_PCR && k.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| TpmPolicyError::BadKey(k.clone()))?;
            let values = match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .ok_or(TpmPolicyError::BadValue { pcr })
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(TpmPolicyError::BadValue { pcr }),
            };
            pcrs.insert(pcr, values);
        }
        let mut policy = Self::from_pcrs(pcrs)?;
        if let Some(m) = mask {
            let bits = parse_mask(&m)?;
            if let Some(p) = policy.pcrs.keys().find(|p| bits & (1 << **p) == 0) {
                return Err(TpmPolicyError::PcrNotInMask(*p, m));
            }
            policy.mask = m;
        }
        Ok(policy)
    }

    /// The PCR indexes selected by `mask` (ascending). PCR 16 is always added by the agent.
    pub fn mask_pcrs(&self) -> Result<Vec<u8>, TpmPolicyError> {
        let bits = parse_mask(&self.mask)?;
        Ok((0..=MAX_PCR).filter(|p| bits & (1 << p) != 0).collect())
    }

    /// The JSON string form (`{"15": ["…"], "mask": "0x8000"}`), as the tenant sends it.
    pub fn to_json(&self) -> String {
        let mut obj = serde_json::Map::new();
        for (pcr, values) in &self.pcrs {
            obj.insert(pcr.to_string(), serde_json::json!(values));
        }
        obj.insert("mask".into(), serde_json::Value::String(self.mask.clone()));
        serde_json::Value::Object(obj).to_string()
    }
}

fn check_digest(pcr: u8, value: &str) -> Result<String, TpmPolicyError> {
    let ok = !value.is_empty()
        && value.len().is_multiple_of(2)
        && value.len() <= 128
        && value.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(TpmPolicyError::BadDigest {
            pcr,
            value: value.to_owned(),
        })
    }
}

/// Parse a `mask` (`0x…` hex, as `int(mask, 0)`/rust-keylime do) into a PCR bitmap.
pub fn parse_mask(mask: &str) -> Result<u32, TpmPolicyError> {
    let bad = || TpmPolicyError::BadMask(mask.to_owned());
    let hex = mask
        .strip_prefix("0x")
        .or_else(|| mask.strip_prefix("0X"))
        .ok_or_else(bad)?;
    let bits = u32::from_str_radix(hex, 16).map_err(|_| bad())?;
    if bits >> (MAX_PCR + 1) != 0 {
        return Err(bad());
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_roundtrip_as_codes() {
        for s in OperationalState::ALL {
            let v = serde_json::to_value(s).unwrap();
            assert_eq!(v, json!(s.code()));
            assert_eq!(serde_json::from_value::<OperationalState>(v).unwrap(), s);
        }
        assert_eq!(OperationalState::GetQuote.code(), 3);
        assert_eq!(OperationalState::InvalidQuote.code(), 9);
        assert_eq!(
            OperationalState::TenantFailed.display_name(),
            "Tenant Quote Failed"
        );
        assert!(serde_json::from_value::<OperationalState>(json!(11)).is_err());
        assert_eq!(
            OperationalState::Start.attestation_status(),
            AttestationStatus::Pending
        );
        assert_eq!(
            serde_json::to_value(AttestationStatus::Pass).unwrap(),
            json!("PASS")
        );
    }

    fn upstream_body() -> serde_json::Value {
        json!({
         "v": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
         "cloudagent_ip": "127.0.0.1", "cloudagent_port": "9002",
         "verifier_ip": "127.0.0.1", "verifier_port": "18881",
         "tpm_policy": "{\"mask\": \"0x0\"}",
         "runtime_policy": "", "runtime_policy_name": "", "runtime_policy_key": "",
         "mb_policy": null, "mb_policy_name": "",
         "ima_sign_verification_keys": "", "metadata": "{}", "revocation_key": "",
         "accept_tpm_hash_algs": ["sha512","sha384","sha256"],
         "accept_tpm_encryption_algs": ["ecc","rsa"],
         "accept_tpm_signing_algs": ["ecschnorr","rsassa"],
         "ak_tpm": "AAAA", "mtls_cert": "disabled", "supported_version": "2.5"
        })
    }

    #[test]
    fn add_body_as_upstream_tenant_sends_it() {
        let body: AddAgentRequest = serde_json::from_value(upstream_body()).unwrap();
        assert_eq!(body.cloudagent_port, PortField(9002));
        assert_eq!(body.supported_version, Some(ApiVersion::new(2, 5)));
        assert_eq!(serde_json::to_value(&body).unwrap(), upstream_body());
        let mut int_port = upstream_body();
        int_port["cloudagent_port"] = json!(9002);
        assert!(serde_json::from_value::<AddAgentRequest>(int_port).is_ok());
    }

    #[test]
    fn add_body_required_keys() {
        for key in [
            "tpm_policy",
            "mb_policy",
            "ak_tpm",
            "cloudagent_ip",
            "metadata",
        ] {
            let mut b = upstream_body();
            b.as_object_mut().unwrap().remove(key);
            let e = serde_json::from_value::<AddAgentRequest>(b).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
        let mut b = upstream_body();
        b["runtime_policy"] = json!(null);
        assert!(serde_json::from_value::<AddAgentRequest>(b).is_err());
        let mut b = upstream_body();
        b["cloudagent_port"] = json!("99999");
        assert!(serde_json::from_value::<AddAgentRequest>(b).is_err());
    }

    #[test]
    fn list_shape_is_list_of_singletons() {
        let l = AgentList::from_ids(["a".to_string(), "b".to_string()]);
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            json!({"uuids": [["a"], ["b"]]})
        );
        assert_eq!(l.ids().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn tpm_policy_upstream_form() {
        let zero = "00".repeat(32);
        let p = TpmPolicy::parse(&format!("{{\"15\": \"{}\"}}", zero.to_uppercase())).unwrap();
        assert_eq!(p.mask, "0x8000");
        assert_eq!(p.pcrs[&15], vec![zero.clone()]);
        assert_eq!(p.mask_pcrs().unwrap(), vec![15]);
        let again = TpmPolicy::parse(&p.to_json()).unwrap();
        assert_eq!(again, p);
        assert_eq!(TpmPolicy::parse("{\"mask\": \"0x0\"}").unwrap().mask, "0x0");
        assert_eq!(
            TpmPolicy::parse(&format!("{{\"16\": [\"{zero}\"]}}")),
            Err(TpmPolicyError::ReservedPcr(16))
        );
        assert!(matches!(
            TpmPolicy::parse(&format!("{{\"15\": [\"{zero}\"], \"mask\": \"0x1\"}}")),
            Err(TpmPolicyError::PcrNotInMask(15, _))
        ));
        assert!(TpmPolicy::parse("{\"mask\": \"408000\"}").is_err());
        assert!(TpmPolicy::parse("[]").is_err());
        assert!(TpmPolicy::parse("{\"15\": [\"xyz\"]}").is_err());
        assert_eq!(parse_mask("0x408000").unwrap(), 0x408000);
    }
}
