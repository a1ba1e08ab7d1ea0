//! Runtime (IMA) policies: which one an added agent uses, the named-policy store behind
//! upstream's `/allowlists/{name}` API, and the compiled-policy cache the poller uses.
//!
//! Upstream's rules for the add body (`cloud_verifier_tornado.py:AgentsHandler.post`):
//! - no name, no policy: no runtime policy (upstream stores its empty policy under the agent's
//!   id; Vouch stores nothing and judges with the empty policy if the mask has PCR 10);
//! - name, no policy: the stored policy of that name (404 if there is none);
//! - no name, policy: stored under the agent's id;
//! - name and policy: stored under the name (409 if the name exists).
//!
//! Every stored policy was parsed and compiled first (regexes, keys, schema), so a poll never
//! meets a policy it cannot apply. Signed policies (`runtime_policy_key`, DSSE) are refused
//! rather than accepted unverified.

use crate::db::{self, DbError};
use crate::error::ApiError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vouch_core::ima::{CompiledPolicy, Keyring, RuntimePolicy};

/// Which runtime policy an added agent gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChoice {
    None,
    Existing(String),
    New { name: String, json: String },
}

impl PolicyChoice {
    /// The name the agent row records.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::None => None,
            Self::Existing(n) | Self::New { name: n, .. } => Some(n),
        }
    }
}

fn invalid(field: &'static str, why: impl Into<String>) -> ApiError {
    ApiError::InvalidAgent {
        field,
        why: why.into(),
    }
}

/// A policy name: what upstream's URLs and the tenant accept.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "policy name {name:?} must be 1-255 characters of A-Z a-z 0-9 - _ ."
        ))
    }
}

/// base64 of a runtime policy JSON (the wire form) → the JSON text, proven usable.
pub fn decode(b64: &str) -> Result<String, String> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    compile(&text)?;
    Ok(text)
}

/// Parse and compile a runtime policy JSON text.
pub fn compile(json: &str) -> Result<CompiledPolicy, String> {
    CompiledPolicy::from_json(json).map_err(|e| format!("Runtime policy is malformatted: {e}"))
}

/// The runtime-policy part of an add body.
pub fn choose(
    agent_id: &str,
    name: &str,
    policy_b64: &str,
    policy_key: &str,
    tenant_keys: &str,
) -> Result<PolicyChoice, ApiError> {
    if !policy_key.is_empty() {
        return Err(invalid(
            "runtime_policy_key",
            "signed runtime policies are not supported by this verifier; send the policy unsigned (\"\")",
        ));
    }
    if !tenant_keys.is_empty() {
        Keyring::from_policy_json(tenant_keys)
            .map_err(|e| invalid("ima_sign_verification_keys", e.to_string()))?;
    }
    if !name.is_empty() {
        check_name(name).map_err(|e| invalid("runtime_policy_name", e))?;
    }
    let json = if policy_b64.is_empty() {
        None
    } else {
        Some(decode(policy_b64).map_err(|e| invalid("runtime_policy", e))?)
    };
    Ok(match (name.is_empty(), json) {
        (true, None) => PolicyChoice::None,
        (false, None) => PolicyChoice::Existing(name.to_owned()),
        (true, Some(json)) => PolicyChoice::New {
            name: agent_id.to_owned(),
            json,
        },
        (false, Some(json)) => PolicyChoice::New {
            name: name.to_owned(),
            json,
        },
    })
}

/// Outcome of storing an agent with its policy choice (one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    AgentExists,
    PolicyExists(String),
    PolicyMissing(String),
}

/// Insert `agent` and, if new, its policy, atomically.
pub fn insert_with_policy(
    conn: &mut Connection,
    agent: &db::StoredAgent,
    choice: &PolicyChoice,
) -> Result<AddOutcome, DbError> {
    let tx = conn.transaction()?;
    match choice {
        PolicyChoice::None => {}
        PolicyChoice::Existing(name) => {
            if db::get_runtime_policy(&tx, name)?.is_none() {
                return Ok(AddOutcome::PolicyMissing(name.clone()));
            }
        }
        PolicyChoice::New { name, json } => {
            if !db::insert_runtime_policy(&tx, name, json)? {
                return Ok(AddOutcome::PolicyExists(name.clone()));
            }
        }
    }
    if !db::insert_agent(&tx, agent)? {
        return Ok(AddOutcome::AgentExists);
    }
    tx.commit()?;
    Ok(AddOutcome::Added)
}

/// Compiled policies, shared by every agent using the same one. Filled on first use; the
/// `/allowlists` routes drop an entry when they replace or delete its policy, so a poll never
/// re-reads or re-compares the policy text (megabytes for a distribution-wide policy).
/// Keyed by policy name, plus the tenant keyring text for the agents that carry one.
#[derive(Debug, Default)]
pub struct PolicyCache {
    compiled: Mutex<HashMap<(String, String), Arc<CompiledPolicy>>>,
}

impl PolicyCache {
    /// The cached policy `name` (with `tenant_keys`, "" for none), if compiled already.
    pub fn cached(&self, name: &str, tenant_keys: &str) -> Option<Arc<CompiledPolicy>> {
        let key = (name.to_owned(), tenant_keys.to_owned());
        self.compiled.lock().ok()?.get(&key).cloned()
    }

    /// Compile `json` as policy `name` with `tenant_keys` and cache it.
    pub fn load(
        &self,
        name: &str,
        json: &str,
        tenant_keys: &str,
    ) -> Result<Arc<CompiledPolicy>, String> {
        let mut compiled = compile(json)?;
        if !tenant_keys.is_empty() {
            let keys = Keyring::from_policy_json(tenant_keys)
                .map_err(|e| format!("ima_sign_verification_keys: {e}"))?;
            compiled = compiled.with_tenant_keys(keys);
        }
        let compiled = Arc::new(compiled);
        if let Ok(mut m) = self.compiled.lock() {
            m.insert((name.to_owned(), tenant_keys.to_owned()), compiled.clone());
        }
        Ok(compiled)
    }

    /// Forget policy `name` (replaced or deleted).
    pub fn invalidate(&self, name: &str) {
        if let Ok(mut m) = self.compiled.lock() {
            m.retain(|(n, _), _| n != name);
        }
    }

    /// Upstream's empty policy (only `boot_aggregate` passes), for agents without a runtime
    /// policy whose mask still has PCR 10. Cached under the name "", which no stored policy
    /// can have.
    pub fn empty(&self, tenant_keys: &str) -> Result<Arc<CompiledPolicy>, String> {
        match self.cached("", tenant_keys) {
            Some(p) => Ok(p),
            None => self.load("", &RuntimePolicy::empty().to_json(), tenant_keys),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn choices_follow_upstream() {
        let policy = RuntimePolicy::empty().to_json();
        assert_eq!(choose("a", "", "", "", "").unwrap(), PolicyChoice::None);
        assert_eq!(
            choose("a", "p1", "", "", "").unwrap(),
            PolicyChoice::Existing("p1".into())
        );
        assert_eq!(
            choose("a", "", &b64(&policy), "", "").unwrap(),
            PolicyChoice::New {
                name: "a".into(),
                json: policy.clone()
            }
        );
        assert!(matches!(
            choose("a", "p1", &b64(&policy), "", "").unwrap(),
            PolicyChoice::New { name, .. } if name == "p1"
        ));
    }

    #[test]
    fn bad_policies_are_refused_with_the_field() {
        let e = choose("a", "", "!!", "", "").unwrap_err().to_string();
        assert!(e.contains("runtime_policy") && e.contains("base64"), "{e}");
        let e = choose("a", "", &b64("{\"digests\": 1}"), "", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("malformatted"), "{e}");
        let e = choose("a", "bad/name", "", "", "").unwrap_err().to_string();
        assert!(e.contains("runtime_policy_name"), "{e}");
        let e = choose("a", "", "", "c2ln", "").unwrap_err().to_string();
        assert!(e.contains("signed runtime policies"), "{e}");
        let e = choose("a", "", "", "", "not json").unwrap_err().to_string();
        assert!(e.contains("ima_sign_verification_keys"), "{e}");
    }
}
