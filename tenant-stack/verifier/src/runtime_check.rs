//! The IMA part of appraising a quote (paper §3.3): replay the entries the agent served on top
//! of what was accepted before, check them against the runtime policy, keep the new state.
//!
//! Runs only when the agent's `tpm_policy` mask has PCR 10 (as upstream: the tenant sets that
//! bit whenever it sends a runtime policy). Per poll only the new entries are parsed and
//! judged (`ima_ml_entry`); the per-agent state is a few hundred bytes (running PCR 10 per
//! bank, entry count, learned keys), kept in the agent's row.

use crate::appraisal::{Failure, GoodQuote};
use crate::db::{self, Db, DbError, StoredAgent};
use crate::named_policy::PolicyKind;
use crate::runtime_policy::PolicyCache;
use std::sync::Arc;
use vouch_core::api::agent::QuoteResponse;
use vouch_core::api::verifier::{TpmPolicy, IMA_PCR};
use vouch_core::ima::{
    replay, BootIdentity, CheckOptions, CompiledPolicy, ImaReplayState, ReplayError, ReplayInput,
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

/// The compiled runtime policy judging `agent`: from the cache, else read once and compiled.
pub async fn policy_for(
    db: &Db,
    cache: &PolicyCache,
    agent: &StoredAgent,
) -> Result<Result<Arc<CompiledPolicy>, Failure>, DbError> {
    let keys = agent.ima_sign_verification_keys.as_str();
    let Some(name) = agent.runtime_policy_name.clone() else {
        return Ok(cache.empty(keys).map_err(|e| failure("bad_policy", e)));
    };
    if let Some(p) = cache.cached(&name, keys) {
        return Ok(Ok(p));
    }
    let key = name.clone();
    let Some(json) = db
        .call(move |c| db::get_policy(c, PolicyKind::Runtime, &key))
        .await?
    else {
        return Ok(Err(failure(
            "bad_policy",
            format!("runtime policy {name:?} was deleted from the verifier"),
        )));
    };
    Ok(cache
        .load(&name, &json, keys)
        .map_err(|e| failure("bad_policy", e)))
}

fn failure(event: &str, reason: impl Into<String>) -> Failure {
    Failure::new(format!("ima.{event}"), reason)
}

/// Judge the IMA evidence of a quote that passed every other check, on top of `state` (what
/// was accepted before) with the agent's compiled `policy`. `boot_aggregates` (lowercase hex)
/// are also allowed for the `boot_aggregate` entry: those of a measured-boot log that
/// replayed to this quote (`mb_check.rs`), or none.
pub fn check(
    state: &ImaReplayState,
    policy: &CompiledPolicy,
    good: &GoodQuote,
    resp: &QuoteResponse,
    boot_aggregates: &[String],
) -> ImaVerdict {
    let boot = BootIdentity {
        reset_count: good.clock.reset_count,
        restart_count: good.clock.restart_count,
    };
    let fresh = ImaReplayState::new(boot);
    let Some(pcr10) = good.pcr(IMA_PCR) else {
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
    let input = ReplayInput {
        boot,
        served_from: resp.ima_measurement_list_entry.unwrap_or(0),
        log,
        bank: good.bank,
        quoted_pcr10: pcr10,
        boot_aggregates,
        options: CheckOptions::default(),
    };
    match replay(state, &input, policy) {
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
