//! The polling loop (`docs/keylime-wire.md` §5.4, upstream `cloud_verifier_tornado.py:process_agent`).
//!
//! One scheduler task owns a time-ordered queue (`BinaryHeap` of `(due, agent, epoch)`); when
//! an entry is due it spawns one short *step* for that agent, which waits for a permit of a
//! semaphore bounding concurrent agent requests, runs one turn of the state machine (get a
//! quote / deliver V / retry), persists the outcome, and hands the next due time back to the
//! scheduler. No task exists for an agent between its polls, and each agent has at most one
//! entry in flight: entries are only created by add/reactivate/start-up (new epoch) and by the
//! step that consumed the previous one. Entries of an old epoch (after stop, reactivate or
//! delete) are dropped when their step finds the stored epoch moved on.
//!
//! State machine (codes from `common/states.py`):
//! - START / GET_QUOTE / GET_QUOTE_RETRY: request a quote (`partial=0` unless the NK is known
//!   and the agent is in GET_QUOTE). Good → PROVIDE_V if a V is still to be delivered (first
//!   good quote, or the NK changed), else GET_QUOTE and poll again after `quote_interval`.
//!   Bad → INVALID_QUOTE (9), polling stops. Unreachable → GET_QUOTE_RETRY (4), retry after
//!   `retry_interval[**n]`; after `max_retries` attempts → FAILED (7). Other HTTP errors → FAILED.
//! - PROVIDE_V / PROVIDE_V_RETRY: encrypt V to the NK, `POST /keys/vkey`; the same retry rules.

use crate::agent_client::{AgentClient, CallError};
use crate::appraisal::{appraise, load_ak, Failure, GoodQuote, SEVERITY_EMERGENCY};
use crate::db::{self, Db, DbError, StoredAgent};
use crate::mb_check;
use crate::mb_policy::Engine;
use crate::runtime_check::{self, ImaVerdict};
use crate::runtime_policy::PolicyCache;
use crate::scheduler::{self, Scheduler};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;
use vouch_core::api::agent::{IntegrityQuoteQuery, QuoteResponse, VkeyRequest};
use vouch_core::api::verifier::{OperationalState, TpmPolicy};
use vouch_core::api::version::ApiVersion;
use vouch_core::ima::ImaReplayState;
use vouch_core::keylime::{encrypt_share_to_nk, Challenge, KeyShare};
use vouch_core::keys::VerifyingKey;

/// How the loop runs (from [`crate::Config`]).
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Reads every measured-boot refstate (`measured_boot_policy_name`).
    pub mb_engine: Engine,
    pub quote_interval: Duration,
    pub max_retries: u32,
    pub retry_interval: f64,
    pub exponential_backoff: bool,
    pub max_concurrent: usize,
    /// Least time between two hint-triggered polls of one agent.
    pub min_hint_gap: Duration,
}

impl PollSettings {
    fn retry_delay(&self, n: u32) -> Duration {
        retry_time(self.retry_interval, self.exponential_backoff, n)
    }
}

/// Upstream's `common/retry.py:retry_time`: the wait before retry `n` — `interval ** n` with
/// exponential back-off (when `interval` > 1), else `interval`; at most a day. Polls and
/// webhook deliveries back off alike.
pub(crate) fn retry_time(interval: f64, exponential: bool, n: u32) -> Duration {
    let secs = if exponential && interval > 1.0 {
        interval.powi(i32::try_from(n).unwrap_or(i32::MAX))
    } else {
        interval
    };
    Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))
}

/// Handle to the scheduler (see `scheduler.rs`): queue an agent's next step, or hint it.
pub type Poller = Scheduler;

struct Ctx {
    db: Db,
    client: AgentClient,
    settings: PollSettings,
    permits: Arc<Semaphore>,
    /// Revocation notices and certificate revocation when an agent fails (`revocation.rs`).
    notifier: Arc<crate::revocation::Notifier>,
    /// Each agent's AK, imported once: decoding, parsing and key import would otherwise be
    /// repeated on every quote. Keyed by agent id and checked against the stored `ak_tpm` text,
    /// so an agent deleted and re-added with another AK never meets a stale key. The lock is
    /// held only for a map lookup or insert, never across an await.
    aks: Mutex<HashMap<String, (String, Arc<VerifyingKey>)>>,
    /// Compiled runtime policies, shared with the `/allowlists` routes (which invalidate).
    policies: Arc<PolicyCache>,
}

impl Ctx {
    fn ak(&self, agent: &StoredAgent) -> Result<Arc<VerifyingKey>, Failure> {
        let cached = |aks: &HashMap<String, (String, Arc<VerifyingKey>)>| {
            aks.get(&agent.agent_id)
                .filter(|(text, _)| *text == agent.ak_tpm)
                .map(|(_, key)| key.clone())
        };
        if let Some(key) = self.aks.lock().ok().and_then(|aks| cached(&aks)) {
            return Ok(key);
        }
        let key = Arc::new(load_ak(agent)?);
        if let Ok(mut aks) = self.aks.lock() {
            aks.insert(agent.agent_id.clone(), (agent.ak_tpm.clone(), key.clone()));
        }
        Ok(key)
    }
}

/// Start the polling loop; it stops when `shutdown` becomes true (steps in flight are aborted —
/// every step persists atomically, so a restart resumes from the last stored state).
pub fn start(
    db: Db,
    client: AgentClient,
    settings: PollSettings,
    notifier: Arc<crate::revocation::Notifier>,
    policies: Arc<PolicyCache>,
    shutdown: watch::Receiver<bool>,
) -> (Poller, JoinHandle<()>) {
    let min_hint_gap = settings.min_hint_gap;
    let permits = Arc::new(Semaphore::new(settings.max_concurrent));
    let ctx = Arc::new(Ctx {
        db,
        client,
        permits,
        settings,
        notifier,
        aks: Mutex::new(HashMap::new()),
        policies,
    });
    scheduler::start(
        move |id: String, epoch: i64| {
            let ctx = ctx.clone();
            async move {
                let Ok(_permit) = ctx.permits.clone().acquire_owned().await else {
                    return None;
                };
                let span = tracing::info_span!("poll", agent_id = %id);
                match step(&ctx, &id, epoch).instrument(span.clone()).await {
                    Ok(next) => next,
                    Err(e) => {
                        // The database failed: keep the agent in the loop.
                        span.in_scope(|| tracing::error!("{e}; retrying in 5 s"));
                        Some(Duration::from_secs(5))
                    }
                }
            }
        },
        min_hint_gap,
        shutdown,
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Persist `agent` (if its epoch is current); `Some(next)` only when the write landed.
async fn save(
    ctx: &Ctx,
    agent: StoredAgent,
    next: Option<Duration>,
) -> Result<Option<Duration>, DbError> {
    let state = agent.state;
    let saved = ctx.db.call(move |c| db::save_progress(c, &agent)).await?;
    if !saved {
        tracing::debug!("agent deleted or changed by the tenant meanwhile; dropping this step");
        return Ok(None);
    }
    tracing::debug!(state = %state, "state stored");
    Ok(next)
}

/// One turn of the state machine for `agent_id`. `Ok(Some(d))`: run again after `d`.
async fn step(ctx: &Ctx, agent_id: &str, epoch: i64) -> Result<Option<Duration>, DbError> {
    let id = agent_id.to_owned();
    let Some(agent) = ctx.db.call(move |c| db::get_agent(c, &id)).await? else {
        // Deleted: its polling ends here, and so does its cached AK.
        if let Ok(mut aks) = ctx.aks.lock() {
            aks.remove(agent_id);
        }
        return Ok(None);
    };
    if agent.epoch != epoch {
        return Ok(None);
    }
    match agent.state {
        OperationalState::ProvideV | OperationalState::ProvideVRetry => provide_v(ctx, agent).await,
        OperationalState::Start | OperationalState::GetQuote | OperationalState::GetQuoteRetry => {
            get_quote(ctx, agent).await
        }
        _ => Ok(None),
    }
}

/// The agent API version to use: the stored one, else negotiated via `/version` (and stored).
async fn agent_version(ctx: &Ctx, agent: &mut StoredAgent) -> Result<ApiVersion, CallError> {
    if let Some(v) = agent
        .supported_version
        .as_deref()
        .and_then(|v| v.parse().ok())
    {
        return Ok(v);
    }
    let v = ctx.client.negotiate_version(agent).await?;
    tracing::info!(version = %v, "negotiated agent API version");
    agent.supported_version = Some(v.to_string());
    Ok(v)
}

async fn get_quote(ctx: &Ctx, mut agent: StoredAgent) -> Result<Option<Duration>, DbError> {
    let policy = match TpmPolicy::parse(&agent.tpm_policy) {
        Ok(p) => p,
        Err(e) => {
            let f = Failure::new("quote_validation.bad_policy", e.to_string());
            return fail(ctx, agent, OperationalState::Failed, f).await;
        }
    };
    let version = match agent_version(ctx, &mut agent).await {
        Ok(v) => v,
        Err(e) => return call_failed(ctx, agent, OperationalState::GetQuoteRetry, e).await,
    };
    let nonce = match Challenge::generate() {
        Ok(c) => c.as_str().to_owned(),
        Err(e) => {
            let f = Failure::new("internal.random", e.to_string());
            return fail(ctx, agent, OperationalState::Failed, f).await;
        }
    };
    let ima_state = runtime_check::stored_state(&agent);
    // partial=1 only on periodic polls with a known NK (§4.2).
    let partial = agent.public_key.is_some() && agent.state == OperationalState::GetQuote;
    let query = IntegrityQuoteQuery {
        nonce: nonce.clone(),
        mask: policy.mask.clone(),
        partial: if partial { "1" } else { "0" }.into(),
        ima_ml_entry: Some(ima_state.next_entry().to_string()),
    };
    let endpoint = ctx.client.endpoint(&agent, version);
    let resp = match ctx.client.integrity_quote(&endpoint, &query).await {
        Ok(r) => r,
        Err(e) => return call_failed(ctx, agent, OperationalState::GetQuoteRetry, e).await,
    };
    agent.last_received_quote = unix_now();
    let judged = judge(ctx, &mut agent, &policy, &ima_state, &nonce, &resp).await?;
    let good = match judged {
        Judged::Good(good) => good,
        Judged::Invalid(f) => return fail(ctx, agent, OperationalState::InvalidQuote, f).await,
        Judged::Unjudgeable(f) => return fail(ctx, agent, OperationalState::Failed, f).await,
        Judged::StartOver => return save(ctx, agent, Some(Duration::ZERO)).await,
    };
    agent.attestation_count += 1;
    agent.last_successful_attestation = agent.last_received_quote;
    agent.public_key = Some(good.nk_pem);
    agent.hash_alg = good.hash_alg;
    agent.enc_alg = good.enc_alg;
    agent.sign_alg = good.sign_alg;
    agent.tpm_clock = Some(good.clock);
    agent.retry_count = 0;
    agent.severity_level = None;
    agent.last_event_id = None;
    agent.failure_reason = None;
    if good.nk_changed && agent.v_delivered {
        tracing::warn!("the agent's NK changed; V will be delivered again");
        agent.v_delivered = false;
    }
    if agent.v.is_some() && !agent.v_delivered {
        agent.state = OperationalState::ProvideV;
        tracing::info!(count = agent.attestation_count, "quote good; delivering V");
        // Persist PROVIDE_V first: a restart before delivery resumes here.
        if save(ctx, agent.clone(), Some(Duration::ZERO))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        return provide_v(ctx, agent).await;
    }
    if agent.state != OperationalState::GetQuote {
        tracing::info!(count = agent.attestation_count, "quote good; attesting");
    } else {
        tracing::debug!(count = agent.attestation_count, "quote good");
    }
    agent.state = OperationalState::GetQuote;
    let next = ctx.settings.quote_interval;
    save(ctx, agent, Some(next)).await
}

/// What appraising one quote response came to.
enum Judged {
    Good(GoodQuote),
    /// The quote or its evidence is bad: INVALID_QUOTE.
    Invalid(Failure),
    /// The verifier cannot judge it (a stored policy it cannot apply): FAILED.
    Unjudgeable(Failure),
    /// IMA starts over from entry 0 (a new boot or bank): store the state, poll again now.
    StartOver,
}

/// Appraise `resp` (the answer to `nonce`): the quote itself, then the measured-boot log,
/// then IMA on top of `ima_state` (what was accepted before). Measured boot goes first
/// because a log that replays to the quote also vouches for IMA's `boot_aggregate`.
/// Updates `agent.ima_state`.
async fn judge(
    ctx: &Ctx,
    agent: &mut StoredAgent,
    policy: &TpmPolicy,
    ima_state: &ImaReplayState,
    nonce: &str,
    resp: &QuoteResponse,
) -> Result<Judged, DbError> {
    let good = match ctx
        .ak(agent)
        .and_then(|ak| appraise(agent, policy, &ak, nonce, resp))
    {
        Ok(good) => good,
        Err(f) => return Ok(Judged::Invalid(f)),
    };
    let boot_aggregates = match mb_check::policy_for(&ctx.db, ctx.settings.mb_engine, agent).await?
    {
        Err(f) => return Ok(Judged::Unjudgeable(f)),
        Ok(None) => Vec::new(),
        Ok(Some(mb)) => match mb_check::check(&mb, &good, resp) {
            Ok(aggregates) => aggregates,
            Err(f) => return Ok(Judged::Invalid(f)),
        },
    };
    if !runtime_check::checks_ima(policy) {
        return Ok(Judged::Good(good));
    }
    let compiled = match runtime_check::policy_for(&ctx.db, &ctx.policies, agent).await? {
        Ok(p) => p,
        Err(f) => return Ok(Judged::Unjudgeable(f)),
    };
    Ok(
        match runtime_check::check(ima_state, &compiled, &good, resp, &boot_aggregates) {
            ImaVerdict::Accepted {
                state,
                received,
                certified,
            } => {
                tracing::debug!(
                    received,
                    certified,
                    next = state.next_entry(),
                    "IMA entries accepted"
                );
                agent.ima_state = serde_json::to_string(&state).ok();
                Judged::Good(good)
            }
            ImaVerdict::StartOver(state, why) => {
                tracing::info!("{why}");
                agent.ima_state = serde_json::to_string(&state).ok();
                Judged::StartOver
            }
            ImaVerdict::Failed(f, state) => {
                agent.ima_state = serde_json::to_string(&state).ok();
                Judged::Invalid(f)
            }
        },
    )
}

async fn provide_v(ctx: &Ctx, mut agent: StoredAgent) -> Result<Option<Duration>, DbError> {
    let (Some(v), Some(nk)) = (agent.v.clone(), agent.public_key.clone()) else {
        // Nothing to send, or no NK yet: back to quoting (partial=0 fetches the NK).
        agent.state = OperationalState::GetQuote;
        agent.v_delivered = agent.v.is_none();
        return save(ctx, agent, Some(Duration::ZERO)).await;
    };
    let encrypted = KeyShare::from_base64(&v).and_then(|share| encrypt_share_to_nk(&nk, &share));
    let encrypted = match encrypted {
        Ok(e) => e,
        Err(e) => {
            let f = Failure::new(
                "provide_v.encrypt",
                format!("cannot encrypt V to the agent's NK: {e}"),
            );
            return fail(ctx, agent, OperationalState::Failed, f).await;
        }
    };
    let version = match agent_version(ctx, &mut agent).await {
        Ok(v) => v,
        Err(e) => return call_failed(ctx, agent, OperationalState::ProvideVRetry, e).await,
    };
    let body = VkeyRequest {
        encrypted_key: encrypted.to_base64(),
    };
    let endpoint = ctx.client.endpoint(&agent, version);
    match ctx.client.post_vkey(&endpoint, &body).await {
        Ok(()) => {
            tracing::info!("V delivered; attesting");
            agent.v_delivered = true;
            agent.state = OperationalState::GetQuote;
            agent.retry_count = 0;
            agent.failure_reason = None;
            let next = ctx.settings.quote_interval;
            save(ctx, agent, Some(next)).await
        }
        Err(e) => call_failed(ctx, agent, OperationalState::ProvideVRetry, e).await,
    }
}

/// An agent request failed: retry (with backoff, up to `max_retries` attempts), renegotiate
/// the version, or give up (FAILED).
async fn call_failed(
    ctx: &Ctx,
    mut agent: StoredAgent,
    retry_state: OperationalState,
    e: CallError,
) -> Result<Option<Duration>, DbError> {
    match &e {
        CallError::VersionUnsupported { .. } if agent.retry_count < ctx.settings.max_retries => {
            tracing::warn!("{e}; renegotiating");
            agent.supported_version = None;
            agent.retry_count += 1;
            save(ctx, agent, Some(Duration::ZERO)).await
        }
        CallError::Unreachable { .. } => {
            agent.retry_count += 1;
            let n = agent.retry_count;
            let max = ctx.settings.max_retries;
            if n >= max {
                let f = Failure::new(
                    "agent.unreachable",
                    format!("{e}; gave up after {n} attempts (max_retries = {max}); reactivate once the agent is back"),
                );
                return fail(ctx, agent, OperationalState::Failed, f).await;
            }
            let delay = ctx.settings.retry_delay(n);
            tracing::warn!(
                "{e}: attempt {n}/{max}, trying again in {:.3} s",
                delay.as_secs_f64()
            );
            agent.state = retry_state;
            agent.failure_reason = Some(format!("retrying ({n}/{max}): {e}"));
            save(ctx, agent, Some(delay)).await
        }
        CallError::Tls { .. } => {
            let f = Failure::new("agent.mtls", e.to_string());
            fail(ctx, agent, OperationalState::Failed, f).await
        }
        _ => {
            let f = Failure::new("agent.request_failed", e.to_string());
            fail(ctx, agent, OperationalState::Failed, f).await
        }
    }
}

/// Stop polling with `state` and the failure recorded.
async fn fail(
    ctx: &Ctx,
    mut agent: StoredAgent,
    state: OperationalState,
    f: Failure,
) -> Result<Option<Duration>, DbError> {
    tracing::warn!(event = %f.event_id, state = %state, "attestation failed: {}", f.reason);
    agent.state = state;
    agent.severity_level = Some(SEVERITY_EMERGENCY);
    agent.last_event_id = Some(f.event_id);
    agent.failure_reason = Some(f.reason);
    let revoke = matches!(
        state,
        OperationalState::Failed | OperationalState::InvalidQuote
    );
    if !revoke {
        return save(ctx, agent, None).await.map(|_| None);
    }
    // Notify only once the failure is stored (not when the tenant deleted or changed the agent
    // meanwhile); `on_failure` spawns and returns at once.
    if save(ctx, agent.clone(), Some(Duration::ZERO))
        .await?
        .is_some()
    {
        let (event_id, reason) = (
            agent.last_event_id.as_deref().unwrap_or_default(),
            agent.failure_reason.as_deref().unwrap_or_default(),
        );
        ctx.notifier.on_failure(&agent, event_id, reason);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_as_upstream_retry_time() {
        let s = PollSettings {
            quote_interval: Duration::from_secs(2),
            max_retries: 5,
            retry_interval: 2.0,
            exponential_backoff: true,
            max_concurrent: 1,
            min_hint_gap: Duration::ZERO,
            mb_engine: Engine::default(),
        };
        assert_eq!(s.retry_delay(1), Duration::from_secs(2));
        assert_eq!(s.retry_delay(4), Duration::from_secs(16));
        let s = PollSettings {
            retry_interval: 0.2,
            ..s
        };
        assert_eq!(s.retry_delay(4), Duration::from_secs_f64(0.2));
    }
}
