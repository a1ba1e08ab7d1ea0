//! The keylime runtime policy document (upstream: keylime/ima/ima.py `RUNTIME_POLICY_SCHEMA`,
//! `EMPTY_RUNTIME_POLICY`, `deserialize_runtime_policy`; keylime/ima/types.py
//! `RuntimePolicyType`):
//!
//! ```json
//! {"meta": {"version": 1, "generator": 3, "timestamp": "..."},
//!  "release": 0,
//!  "digests": {"/usr/bin/ls": ["<hex>", ...]},
//!  "excludes": ["<python regex>", ...],
//!  "keyrings": {".ima": ["<hex>"]},
//!  "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null},
//!  "ima-buf": {"kexec-cmdline": ["<hex>"]},
//!  "verification-keys": ""}
//! ```
//!
//! Parsing enforces upstream's JSON schema (every key required, digests lowercase hex of 40 to
//! 128 characters, at least one per path, `dm_policy` null) and additionally that the
//! excludes compile and the verification keys load, which upstream only discovers (and then
//! silently ignores) while attesting. Unknown keys are ignored, as the schema allows them. A
//! DSSE envelope (`{"payload": ...}`) is unwrapped without checking its signature; verifying
//! a signed policy is the caller's job.

use super::error::PolicyError;
use super::keyring::Keyring;
use super::pyregex;
use crate::pyjson;
use crate::tpm::HashAlg;
use base64::Engine;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `RUNTIME_POLICY_CURRENT_VERSION`.
pub const RUNTIME_POLICY_VERSION: u64 = 1;

/// Path → allowed lowercase hex digests (`digests`, `keyrings` and `ima-buf`).
pub type DigestMap = BTreeMap<String, Vec<String>>;

/// `RUNTIME_POLICY_GENERATOR`: which tool wrote the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    Unknown = 0,
    EmptyAllowList = 1,
    CompatibleAllowList = 2,
    LegacyAllowList = 3,
}

impl Generator {
    fn from_int(n: i64) -> Option<Self> {
        Some(match n {
            0 => Generator::Unknown,
            1 => Generator::EmptyAllowList,
            2 => Generator::CompatibleAllowList,
            3 => Generator::LegacyAllowList,
            _ => return None,
        })
    }
}

impl Serialize for Generator {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyMeta {
    pub version: u64,
    pub generator: Generator,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaSection {
    pub ignored_keyrings: Vec<String>,
    #[serde(serialize_with = "ser_hash_alg")]
    pub log_hash_alg: HashAlg,
    /// Device-mapper policies: the 7.14 schema only allows `null`.
    pub dm_policy: (),
}

fn ser_hash_alg<S: Serializer>(h: &HashAlg, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.name())
}

/// A runtime policy document. Field order is upstream's, so serialization matches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimePolicy {
    pub meta: PolicyMeta,
    pub release: u64,
    pub digests: DigestMap,
    pub excludes: Vec<String>,
    pub keyrings: DigestMap,
    pub ima: ImaSection,
    #[serde(rename = "ima-buf")]
    pub ima_buf: DigestMap,
    #[serde(rename = "verification-keys")]
    pub verification_keys: String,
}

impl Default for RuntimePolicy {
    fn default() -> Self {
        Self::empty()
    }
}

impl RuntimePolicy {
    /// `EMPTY_RUNTIME_POLICY`: nothing allowed, sha1 template hashes.
    pub fn empty() -> Self {
        Self {
            meta: PolicyMeta {
                version: RUNTIME_POLICY_VERSION,
                generator: Generator::EmptyAllowList,
                timestamp: None,
            },
            release: 0,
            digests: DigestMap::new(),
            excludes: Vec::new(),
            keyrings: DigestMap::new(),
            ima: ImaSection {
                ignored_keyrings: Vec::new(),
                log_hash_alg: HashAlg::Sha1,
                dm_policy: (),
            },
            ima_buf: DigestMap::new(),
            verification_keys: String::new(),
        }
    }

    /// Parse and validate a policy (plain, or wrapped in a DSSE envelope).
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
        let value = unwrap_dsse(value)?;
        let policy = Self::from_value(&value)?;
        policy.validate()?;
        Ok(policy)
    }

    /// Check what the schema cannot: excludes compile, verification keys load.
    pub fn validate(&self) -> Result<(), PolicyError> {
        pyregex::compile_excludes(&self.excludes)
            .map_err(|(pattern, problem)| PolicyError::Exclude { pattern, problem })?;
        Keyring::from_policy_json(&self.verification_keys)?;
        for (section, map) in [
            ("digests", &self.digests),
            ("keyrings", &self.keyrings),
            ("ima-buf", &self.ima_buf),
        ] {
            for (path, list) in map {
                check_digest_list(
                    &format!("\"{section}\".{path:?}"),
                    list.iter().map(String::as_str),
                )?;
            }
        }
        Ok(())
    }

    /// Serialize as upstream does (`json.dumps(policy)`).
    pub fn to_json(&self) -> String {
        pyjson::to_string(self)
    }

    fn from_value(v: &Value) -> Result<Self, PolicyError> {
        let top = object(v, "the document")?;
        let meta = object(required(top, "meta", "")?, "\"meta\"")?;
        let version = required(meta, "version", "\"meta\".")?;
        let version = version.as_u64().ok_or_else(|| {
            PolicyError::schema("\"meta\".\"version\"", "must be an integer >= 0")
        })?;
        let generator = required(meta, "generator", "\"meta\".")?
            .as_i64()
            .and_then(Generator::from_int)
            .ok_or_else(|| {
                PolicyError::schema("\"meta\".\"generator\"", "must be an integer from 0 to 3")
            })?;
        let timestamp = match meta.get("timestamp") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(PolicyError::schema(
                    "\"meta\".\"timestamp\"",
                    "must be a string",
                ))
            }
        };
        let release = required(top, "release", "")?
            .as_u64()
            .ok_or_else(|| PolicyError::schema("\"release\"", "must be an integer >= 0"))?;
        let digests = digest_map(required(top, "digests", "")?, "digests")?;
        let excludes = string_list(required(top, "excludes", "")?, "\"excludes\"")?;
        let keyrings = digest_map(required(top, "keyrings", "")?, "keyrings")?;
        let ima = object(required(top, "ima", "")?, "\"ima\"")?;
        let ignored_keyrings = string_list(
            required(ima, "ignored_keyrings", "\"ima\".")?,
            "\"ima\".\"ignored_keyrings\"",
        )?;
        let log_hash_alg = required(ima, "log_hash_alg", "\"ima\".")?
            .as_str()
            .and_then(|s| HashAlg::ALL.into_iter().find(|h| h.name() == s))
            .ok_or_else(|| {
                PolicyError::schema(
                    "\"ima\".\"log_hash_alg\"",
                    "must be one of \"sha1\", \"sha256\", \"sha384\", \"sha512\"",
                )
            })?;
        if !required(ima, "dm_policy", "\"ima\".")?.is_null() {
            return Err(PolicyError::schema(
                "\"ima\".\"dm_policy\"",
                "must be null (keylime 7.14's schema allows no device-mapper policy)",
            ));
        }
        let ima_buf = digest_map(required(top, "ima-buf", "")?, "ima-buf")?;
        let verification_keys = required(top, "verification-keys", "")?
            .as_str()
            .ok_or_else(|| PolicyError::schema("\"verification-keys\"", "must be a string"))?
            .to_string();
        Ok(Self {
            meta: PolicyMeta {
                version,
                generator,
                timestamp,
            },
            release,
            digests,
            excludes,
            keyrings,
            ima: ImaSection {
                ignored_keyrings,
                log_hash_alg,
                dm_policy: (),
            },
            ima_buf,
            verification_keys,
        })
    }
}

/// Upstream `deserialize_runtime_policy`: a truthy `payload` means a DSSE envelope whose
/// payload is hex or (standard) base64 (`dsse.b64dec`).
fn unwrap_dsse(v: Value) -> Result<Value, PolicyError> {
    let payload = match v.get("payload") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Null) | Some(Value::Bool(false)) | None => return Ok(v),
        Some(Value::String(_)) => return Ok(v),
        Some(_) => return Err(PolicyError::DssePayload),
    };
    let bytes = hex::decode(&payload)
        .ok()
        .filter(|b| !b.is_empty())
        .or_else(|| {
            base64::engine::general_purpose::STANDARD
                .decode(&payload)
                .ok()
        })
        .ok_or(PolicyError::DssePayload)?;
    serde_json::from_slice(&bytes).map_err(|e| PolicyError::Json(format!("DSSE payload: {e}")))
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PolicyError> {
    v.as_object()
        .ok_or_else(|| PolicyError::schema(what, "must be a JSON object"))
}

fn required<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<&'a Value, PolicyError> {
    m.get(key)
        .ok_or_else(|| PolicyError::schema(format!("{parent}\"{key}\""), "is required but missing"))
}

fn string_list(v: &Value, at: &str) -> Result<Vec<String>, PolicyError> {
    let arr = v
        .as_array()
        .ok_or_else(|| PolicyError::schema(at, "must be an array of strings"))?;
    arr.iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| PolicyError::schema(format!("{at}[{i}]"), "must be a string"))
        })
        .collect()
}

/// The schema's `digests-object`: every value a non-empty array of `^[0-9a-f]{40,128}$`.
fn digest_map(v: &Value, section: &str) -> Result<DigestMap, PolicyError> {
    let obj = object(v, &format!("\"{section}\""))?;
    let mut out = DigestMap::new();
    for (path, list) in obj {
        let at = format!("\"{section}\".{path:?}");
        let list = string_list(list, &at)?;
        check_digest_list(&at, list.iter().map(String::as_str))?;
        out.insert(path.clone(), list);
    }
    Ok(out)
}

fn check_digest_list<'a>(at: &str, list: impl Iterator<Item = &'a str>) -> Result<(), PolicyError> {
    let mut n = 0;
    for (i, d) in list.enumerate() {
        n += 1;
        let ok = (40..=128).contains(&d.len())
            && d.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(PolicyError::schema(
                format!("{at}[{i}]"),
                format!("{d:?} is not 40 to 128 lowercase hex characters"),
            ));
        }
    }
    if n == 0 {
        return Err(PolicyError::schema(at, "must list at least one digest"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const D1: &str = "3e5e8ad9d8b4dd191413aba6166c7a975c3eab903d1fad77ecfa2d5810d6585c";

    fn doc() -> Value {
        serde_json::json!({
            "meta": {"version": 1, "generator": 3, "timestamp": "2024-05-01 10:00:00.000000"},
            "release": 0,
            "digests": {"/usr/bin/kmod": [D1]},
            "excludes": ["/tmp/.*"],
            "keyrings": {},
            "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null},
            "ima-buf": {},
            "verification-keys": "",
            "unknown-extension": 1
        })
    }

    fn parse_mutated(f: impl FnOnce(&mut Value)) -> Result<RuntimePolicy, PolicyError> {
        let mut v = doc();
        f(&mut v);
        RuntimePolicy::from_json(&v.to_string())
    }

    #[test]
    fn parses_and_round_trips() {
        let p = RuntimePolicy::from_json(&doc().to_string()).unwrap();
        assert_eq!(p.digests["/usr/bin/kmod"], vec![D1.to_string()]);
        assert_eq!(p.meta.generator, Generator::LegacyAllowList);
        let text = p.to_json();
        assert!(
            text.starts_with("{\"meta\": {\"version\": 1, \"generator\": 3, \"timestamp\": "),
            "{text}"
        );
        assert!(text.contains("\"ima\": {\"ignored_keyrings\": [], \"log_hash_alg\": \"sha1\", \"dm_policy\": null}, \"ima-buf\": {}, \"verification-keys\": \"\"}"), "{text}");
        assert_eq!(RuntimePolicy::from_json(&text).unwrap(), p);
    }

    #[test]
    fn empty_policy_matches_upstream_constant() {
        assert_eq!(
            RuntimePolicy::empty().to_json(),
            "{\"meta\": {\"version\": 1, \"generator\": 1}, \"release\": 0, \"digests\": {}, \"excludes\": [], \"keyrings\": {}, \"ima\": {\"ignored_keyrings\": [], \"log_hash_alg\": \"sha1\", \"dm_policy\": null}, \"ima-buf\": {}, \"verification-keys\": \"\"}"
        );
    }

    #[test]
    fn dsse_envelope_is_unwrapped() {
        let payload = base64::engine::general_purpose::STANDARD.encode(doc().to_string());
        let env = serde_json::json!({"payload": payload, "payloadType": "application/vnd.keylime+json", "signatures": []});
        assert!(RuntimePolicy::from_json(&env.to_string()).is_ok());
        let env = serde_json::json!({"payload": hex::encode(doc().to_string())});
        assert!(RuntimePolicy::from_json(&env.to_string()).is_ok());
        let env = serde_json::json!({"payload": "%%%"});
        assert_eq!(
            RuntimePolicy::from_json(&env.to_string()),
            Err(PolicyError::DssePayload)
        );
    }

    #[test]
    fn schema_violations_are_named() {
        type Mutation = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("digests");
                }),
                "\"digests\" is required",
            ),
            (
                Box::new(|v| {
                    v["meta"].as_object_mut().unwrap().remove("generator");
                }),
                "\"meta\".\"generator\" is required",
            ),
            (
                Box::new(|v| v["meta"]["generator"] = 9.into()),
                "from 0 to 3",
            ),
            (
                Box::new(|v| v["meta"]["version"] = (-1).into()),
                "\"meta\".\"version\"",
            ),
            (
                Box::new(|v| v["meta"]["timestamp"] = 1.into()),
                "\"meta\".\"timestamp\"",
            ),
            (Box::new(|v| v["release"] = "0".into()), "\"release\""),
            (
                Box::new(|v| v["digests"]["/a"] = serde_json::json!([])),
                "at least one digest",
            ),
            (
                Box::new(|v| v["digests"]["/a"] = serde_json::json!(["ABCDEF".repeat(8)])),
                "lowercase hex",
            ),
            (
                Box::new(|v| v["digests"]["/a"] = serde_json::json!(["ab"])),
                "lowercase hex",
            ),
            (
                Box::new(|v| v["digests"]["/a"] = "x".into()),
                "must be an array",
            ),
            (
                Box::new(|v| v["excludes"] = serde_json::json!([1])),
                "\"excludes\"[0]",
            ),
            (
                Box::new(|v| v["ima"]["log_hash_alg"] = "md5".into()),
                "log_hash_alg",
            ),
            (
                Box::new(|v| v["ima"]["dm_policy"] = serde_json::json!({})),
                "dm_policy",
            ),
            (
                Box::new(|v| {
                    v["ima"].as_object_mut().unwrap().remove("dm_policy");
                }),
                "\"ima\".\"dm_policy\" is required",
            ),
            (
                Box::new(|v| v["ima-buf"] = serde_json::json!([])),
                "\"ima-buf\" must be a JSON object",
            ),
            (
                Box::new(|v| v["verification-keys"] = serde_json::json!({})),
                "\"verification-keys\" must be a string",
            ),
            (
                Box::new(|v| v["verification-keys"] = "{\"keyids\": []}".into()),
                "pubkeys",
            ),
            (
                Box::new(|v| v["excludes"] = serde_json::json!(["/(?=x)"])),
                "look-ahead",
            ),
            (
                Box::new(|v| *v = serde_json::json!([])),
                "must be a JSON object",
            ),
        ];
        for (mutate, expect) in cases {
            let e = parse_mutated(mutate).unwrap_err().to_string();
            assert!(e.contains(expect), "{e} should mention {expect}");
        }
        assert!(matches!(
            RuntimePolicy::from_json("{"),
            Err(PolicyError::Json(_))
        ));
    }
}
