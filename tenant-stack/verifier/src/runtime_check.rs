//! The IMA part of appraising a quote (paper §3.3): replay the entries the agent served on top
//! of what was accepted before, check them against the runtime policy, keep the new state.
//!
//! Runs only when the agent's `tpm_policy` mask has PCR 10 (as upstream: the tenant sets that
//! bit whenever it sends a runtime policy). Per poll only the new entries are parsed and
//! judged (`ima_ml_entry`); the per-agent state is a few hundred bytes (running PCR 10 per
//! bank, entry count, learned keys), kept in the agent's row.

use crate::appraisal::{Failure, GoodQuote};
use crate::db::StoredAgent;
use crate::runtime_policy::PolicyCache;
use vouch_core::api::agent::QuoteResponse;
use vouch_core::api::verifier::{TpmPolicy, IMA_PCR};
use vouch_core::ima::{
    replay, BootIdentity, CheckOptions, CompiledPolicy, ImaReplayState, Keyring, ReplayError,
    ReplayInput,
};

/// What to do after the IMA check.
#[derive(Debug)]
pub enum ImaVerdict {
    /// Entries accepted; store this state.
    Accepted {
        state: ImaReplayState,
        received: u64,
        certified: u64,
    },
    /// The TPM rebooted or the bank changed: nothing wrong, but start over from entry 0 now.
    StartOver(ImaReplayState, String),
    Failed(Failure, ImaReplayState),
}

/// Whether this agent's quotes are checked against its IMA log.
pub fn checks_ima(policy: &TpmPolicy) -> bool {
    policy
        .mask_pcrs()
        .map(|pcrs| pcrs.contains(&IMA_PCR))
        .unwrap_or(false)
}

/// The stored state, or a fresh one (also when the stored JSON is unreadable: starting over
/// is always safe, it only costs one full replay).
pub fn stored_state(agent: &StoredAgent) -> ImaReplayState {
    agent
        .ima_state
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| ImaReplayState::new(BootIdentity::default()))
}

fn failure(event: &str, reason: impl Into<String>) -> Failure {
    Failure::new(format!("ima.{event}"), reason)
}

/// Judge the IMA evidence of a quote that passed every other check.
pub fn check(
    agent: &StoredAgent,
    policy_json: Option<&str>,
    cache: &PolicyCache,
    good: &GoodQuote,
    resp: &QuoteResponse,
) -> ImaVerdict {
    let boot = BootIdentity {
        reset_count: good.clock.reset_count,
        restart_count: good.clock.restart_count,
    };
    let fresh = ImaReplayState::new(boot);
    let Some(pcr10) = good.pcr10.as_deref() else {
        return ImaVerdict::Failed(
            Failure::new(
                "pcr_validation.missing_pcrs",
                "the mask asks for PCR 10 (IMA) but the quote does not include it",
            ),
            fresh,
        );
    };
    let Some(log) = resp.ima_measurement_list.as_deref() else {
        return ImaVerdict::Failed(
            Failure::new(
                "pcr_validation.unused_pcr_10",
                "IMA PCR in policy, but no measurement list provided (the agent has no IMA log)",
            ),
            fresh,
        );
    };
    let compiled = match policy_json {
        Some(json) => cache.get(agent.runtime_policy_name.as_deref().unwrap_or(""), json),
        None => cache.empty(),
    };
    let compiled: std::sync::Arc<CompiledPolicy> = match compiled {
        Ok(c) => c,
        Err(e) => return ImaVerdict::Failed(failure("bad_policy", e), fresh),
    };
    let compiled = if agent.ima_sign_verification_keys.is_empty() {
        compiled
    } else {
        match Keyring::from_policy_json(&agent.ima_sign_verification_keys) {
            Ok(k) => std::sync::Arc::new((*compiled).clone().with_tenant_keys(k)),
            Err(e) => {
                return ImaVerdict::Failed(
                    failure("bad_policy", format!("ima_sign_verification_keys: {e}")),
                    fresh,
                )
            }
        }
    };
    let state = stored_state(agent);
    let input = ReplayInput {
        boot,
        served_from: resp.ima_measurement_list_entry.unwrap_or(0),
        log,
        bank: good.bank,
        quoted_pcr10: pcr10,
        boot_aggregates: &[],
        options: CheckOptions::default(),
    };
    match replay(&state, &input, &compiled) {
        Ok(out) => ImaVerdict::Accepted {
            state: out.state,
            received: out.received,
            certified: out.certified,
        },
        Err(e @ (ReplayError::BootChanged { .. } | ReplayError::BankNotTracked { .. })) => {
            ImaVerdict::StartOver(fresh, e.to_string())
        }
        Err(e) => {
            let event = match &e {
                ReplayError::Parse(_) => "invalid_log",
                ReplayError::EntryIndexMismatch { .. } => "invalid_ima_entry_nb",
                ReplayError::QuotedLength { .. } | ReplayError::PcrMismatch(_) => "pcr10_mismatch",
                ReplayError::Violations(_) => "runtime_policy",
                ReplayError::QuoteProgress { .. } => "quote_progress",
                ReplayError::BootChanged { .. } | ReplayError::BankNotTracked { .. } => {
                    "start_over"
                }
            };
            ImaVerdict::Failed(failure(event, e.to_string()), fresh)
        }
    }
}
