//! Measured-boot policies (upstream's `mb_policy`, a refstate): the engine that reads them
//! (`measured_boot_policy_name`), which one an added agent uses (upstream's four cases, see
//! [`PolicyChoice`]), and how a refstate sent to the add body or `/mbpolicies/{name}` is
//! checked before it is stored.
//!
//! The refstate is stored as the tenant's JSON text; it is proven to load with the configured
//! engine first (`vouch_core::eventlog::MbPolicy::load`), so a poll never meets a refstate it
//! cannot apply unless the engine was changed in the configuration since.

use crate::error::ApiError;
use crate::named_policy::{check_name, PolicyChoice};
use std::collections::BTreeSet;
use vouch_core::eventlog::policy::{ACCEPT_ALL, EXAMPLE, REJECT_ALL};
use vouch_core::eventlog::replay::MEASURED_BOOT_PCRS;
use vouch_core::eventlog::MbPolicy;

/// The policy engine every measured-boot refstate is read with (`measured_boot_policy_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Engine(&'static str);

impl Engine {
    /// Engines Vouch knows, as upstream's registry names them.
    pub const NAMES: [&'static str; 3] = [EXAMPLE, ACCEPT_ALL, REJECT_ALL];

    /// `example`: the only engine that reads a refstate. Upstream defaults to `accept-all`,
    /// which checks that the log replays to the quote but never reads the refstate, so a
    /// tenant's policy would silently enforce nothing.
    pub const DEFAULT: Engine = Engine(EXAMPLE);

    pub fn from_name(name: &str) -> Option<Engine> {
        Self::NAMES.into_iter().find(|n| *n == name).map(Engine)
    }

    pub fn name(self) -> &'static str {
        self.0
    }

    /// Load `refstate` (the stored JSON text) with this engine.
    pub fn load(self, refstate: &str) -> Result<MbPolicy, String> {
        // Upstream's `policy_is_valid`: any refstate must at least be JSON, whatever the engine.
        serde_json::from_str::<serde_json::Value>(refstate)
            .map_err(|e| format!("not JSON: {e}"))?;
        MbPolicy::load(self.0, Some(refstate)).map_err(|e| e.to_string())
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Whether a stored refstate asks for any checking: upstream skips measured boot entirely
/// for a refstate that is JSON-falsy (`{}`, `null`, `""`, `[]`, `0`, `false`).
pub fn is_active(refstate: &str) -> bool {
    use serde_json::Value;
    match serde_json::from_str::<Value>(refstate) {
        Ok(Value::Null) => false,
        Ok(Value::Bool(b)) => b,
        Ok(Value::String(s)) => !s.is_empty(),
        Ok(Value::Array(a)) => !a.is_empty(),
        Ok(Value::Object(o)) => !o.is_empty(),
        Ok(Value::Number(n)) => n.as_f64() != Some(0.0),
        // Not JSON: upstream then fails the quote (`invalid_mb_policy`); so does `Engine::load`.
        Err(_) => true,
    }
}

/// The PCRs whose quoted values the log must replay to, given the PCRs `present` (in the mask,
/// or in the quote): upstream's `mb_pcrs_to_check(policy) & pcrs_in_quote`. Refused when the
/// policy reads a PCR that is not present (upstream: `measured_boot.missing_pcrs`), or when no
/// measured-boot PCR is present at all (upstream then checks nothing and passes; Vouch
/// refuses, since nothing of the boot would be verified).
pub fn pcrs_to_check(policy: &MbPolicy, present: &BTreeSet<u8>) -> Result<BTreeSet<u8>, String> {
    let missing: Vec<String> = policy
        .relevant_pcrs()
        .difference(present)
        .map(u8::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the measured boot policy ({}) reads PCRs {} but they are not in the quote mask \
             (upstream's tenant adds PCRs 0-9 and 11-15 to the mask with a measured boot policy)",
            policy.name(),
            missing.join(", ")
        ));
    }
    let checked: BTreeSet<u8> = policy
        .pcrs_to_replay()
        .intersection(present)
        .copied()
        .collect();
    if checked.is_empty() {
        return Err(format!(
            "no measured boot PCR ({}) is in the quote mask, so the event log could not be \
             checked against the quote",
            MEASURED_BOOT_PCRS.map(|p| p.to_string()).join(", ")
        ));
    }
    Ok(checked)
}

/// A refstate about to be stored, loaded with `engine`; the error says why it is refused.
pub fn check_refstate(engine: Engine, refstate: &str) -> Result<MbPolicy, String> {
    engine.load(refstate).map_err(|e| {
        format!(
            "measured boot policy (refstate) for engine {:?} is refused: {e}",
            engine.name()
        )
    })
}

/// The measured-boot part of an add body. `mask` is the `tpm_policy` mask's PCRs; a new
/// refstate that asks for checking must be checkable with it.
pub fn choose(
    agent_id: &str,
    name: &str,
    refstate: Option<&str>,
    engine: Engine,
    mask: &[u8],
) -> Result<PolicyChoice, ApiError> {
    if !name.is_empty() {
        check_name(name).map_err(|e| ApiError::invalid("mb_policy_name", e))?;
    }
    // The tenant sends null for none; "" is taken as none too (upstream would store it).
    let refstate = refstate.filter(|r| !r.is_empty());
    if let Some(r) = refstate {
        let policy = check_refstate(engine, r).map_err(|e| ApiError::invalid("mb_policy", e))?;
        if is_active(r) {
            let present = mask.iter().copied().collect();
            pcrs_to_check(&policy, &present)
                .map_err(|e| ApiError::invalid("tpm_policy", format!("mask: {e}")))?;
        }
    }
    Ok(PolicyChoice::from_body(
        agent_id,
        name,
        refstate.map(str::to_owned),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use vouch_core::eventlog::sample::SampleBoot;

    const MASK: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];

    #[test]
    fn engines_by_name() {
        assert_eq!(Engine::default().name(), "example");
        assert!(Engine::from_name("accept-all").is_some());
        assert!(Engine::from_name("").is_none());
        assert!(Engine::from_name("Example").is_none());
    }

    #[test]
    fn activity_as_upstream() {
        for inactive in ["{}", "null", "\"\"", "[]", "0", "false", " { } "] {
            assert!(!is_active(inactive), "{inactive}");
        }
        for active in ["{\"has_secureboot\": true}", "[1]", "1", "not json"] {
            assert!(is_active(active), "{active}");
        }
    }

    #[test]
    fn refstates_are_checked_before_storing() {
        let e = Engine::default();
        let good = SampleBoot::default().refstate().to_string();
        let c = choose("a", "", Some(&good), e, &MASK).unwrap();
        assert_eq!(c.name(), Some("a"));
        assert_eq!(choose("a", "", None, e, &MASK).unwrap(), PolicyChoice::None);
        assert_eq!(
            choose("a", "", Some(""), e, &MASK).unwrap(),
            PolicyChoice::None
        );

        let err = |name: &str, r: &str, mask: &[u8]| {
            choose("a", name, Some(r), e, mask).unwrap_err().to_string()
        };
        let m = err("", "{\"has_secureboot\": tru", &MASK);
        assert!(m.contains("mb_policy") && m.contains("not JSON"), "{m}");
        let m = err("", "{\"kernelz\": []}", &MASK);
        assert!(m.contains("mb_policy") && m.contains("kernelz"), "{m}");
        let m = err("bad name", &good, &MASK);
        assert!(m.contains("mb_policy_name"), "{m}");
        let m = err("", &good, &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(m.contains("tpm_policy") && m.contains("8, 9, 14"), "{m}");
        // `{}` asks for nothing, so any mask will do.
        assert!(choose("a", "", Some("{}"), e, &[]).is_ok());
        // accept-all does not read the refstate, but it must be JSON.
        let all = Engine::from_name("accept-all").unwrap();
        assert!(choose("a", "", Some("{\"anything\": 1}"), all, &MASK).is_ok());
        assert!(choose("a", "", Some("nope"), all, &MASK).is_err());
        let m = choose("a", "", Some("{\"x\": 1}"), all, &[16])
            .unwrap_err()
            .to_string();
        assert!(m.contains("no measured boot PCR"), "{m}");
    }
}
