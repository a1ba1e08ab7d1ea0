//! Runtime (IMA) policies: which one an added agent uses (upstream's four cases, see
//! [`PolicyChoice`]; with neither name nor policy upstream stores its empty policy under the
//! agent's id, Vouch stores nothing and judges with the empty policy if the mask has PCR 10),
//! how a policy sent to `/allowlists/{name}` is checked, and the compiled-policy cache the
//! poller uses.
//!
//! Every stored policy was parsed and compiled first (regexes, keys, schema), so a poll never
//! meets a policy it cannot apply. Signed policies (`runtime_policy_key`, DSSE) are refused
//! rather than accepted unverified.

use crate::error::ApiError;
use crate::named_policy::{check_name, PolicyChoice};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vouch_core::ima::{CompiledPolicy, Keyring, RuntimePolicy};

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
        return Err(ApiError::invalid(
            "runtime_policy_key",
            "signed runtime policies are not supported by this verifier; send the policy unsigned (\"\")",
        ));
    }
    if !tenant_keys.is_empty() {
        Keyring::from_policy_json(tenant_keys)
            .map_err(|e| ApiError::invalid("ima_sign_verification_keys", e.to_string()))?;
    }
    if !name.is_empty() {
        check_name(name).map_err(|e| ApiError::invalid("runtime_policy_name", e))?;
    }
    let json = if policy_b64.is_empty() {
        None
    } else {
        Some(decode(policy_b64).map_err(|e| ApiError::invalid("runtime_policy", e))?)
    };
    Ok(PolicyChoice::from_body(agent_id, name, json))
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
