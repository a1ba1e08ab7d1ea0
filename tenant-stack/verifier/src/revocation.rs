//! Revocation (paper §3.4): what the verifier does when an agent fails attestation, as
//! upstream's `cloud_verifier_tornado.py:notify_error` and `revocation_notifier.py`.
//!
//! [`Notifier::on_failure`] is called by the poller once FAILED or INVALID_QUOTE is stored. It
//! returns at once; a spawned task then
//!
//! 1. builds upstream's message (`prepare_error`: type `revocation`, ip, agent_id, port,
//!    tpm_policy, meta_data, event_time, event_id, severity_label `emergency`, context
//!    `{"message": reason}`, plus Vouch's `notice_id` / `issued_at`, see
//!    [`vouch_core::revocation`]) and signs it with the agent's `revocation_key` (the tenant's
//!    `--cert` RevocationNotifier key); without one the signature is `""`, as upstream sends it
//!    (agents refuse such notices);
//! 2. `"webhook"` in `enabled_revocation_notifications` and `webhook_url` set: POSTs the notice
//!    (`{"msg", "signature"}`) there, `max_retries` attempts with the poller's backoff
//!    (`retry_interval[**n]`), `request_timeout` each; any 2xx is success;
//! 3. `"agent"`: POSTs it to every *other* agent in this verifier's database
//!    (`/v{ver}/notifications/revocation`, over mTLS where the agent registered a certificate),
//!    all at once, each bounded by `request_timeout`;
//! 4. `revocation_ca_dir` set and the agent's metadata holds `cert_serial`: revokes that
//!    certificate in the software CA, which re-issues the CRL (`cacrl.der`, `cacrl.pem`).
//!
//! The three deliveries run concurrently, so a webhook that is down delays neither the agents'
//! notices nor the CRL, and nothing here ever waits inside the poller. Every outcome is logged
//! with the failed agent's id as span field `agent_id`.

use crate::agent_client::{AgentClient, CallError};
use crate::config::Config;
use crate::db::{self, Db, StoredAgent};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use tracing::Instrument;
use vouch_core::revocation::{
    python_json, sign_message, RevocationError, RevocationEvent, RevocationMessage,
    RevocationNotice, RevocationSigningKey,
};
use vouch_tls::software_ca::{RevokeTarget, Serial, SoftwareCa, SoftwareCaError};

/// Upstream's `severity_label` for every failure the poller records (`SEVERITY_EMERGENCY`).
pub const SEVERITY_LABEL: &str = "emergency";

#[derive(Debug, Error)]
pub enum NotifierError {
    #[error("building the revocation message: {0}")]
    Message(RevocationError),
    #[error("building the HTTP client for the revocation webhook: {0}")]
    Client(reqwest::Error),
    #[error(
        "agent {agent_id}'s revocation_key: {cause}; the notice is sent unsigned, which agents \
         refuse"
    )]
    Key {
        agent_id: String,
        cause: RevocationError,
    },
    #[error("webhook {url}: {why}")]
    Webhook { url: String, why: String },
    #[error("listing the agents to notify: {0}")]
    Db(db::DbError),
    #[error(
        "agent {agent_id}'s meta_data has no usable cert_serial ({why}); no certificate revoked"
    )]
    NoSerial { agent_id: String, why: String },
    #[error("revoking certificate {serial} in the software CA {}: {cause}", dir.display())]
    Ca {
        dir: PathBuf,
        serial: Serial,
        cause: Box<SoftwareCaError>,
    },
    #[error("revoking certificate {serial} in the software CA {}: task failed: {why}", dir.display())]
    CaTask {
        dir: PathBuf,
        serial: Serial,
        why: String,
    },
}

/// Webhook delivery settings (`[revocations]` and the `[verifier]` retry keys upstream).
#[derive(Debug, Clone)]
struct Webhook {
    url: String,
    http: reqwest::Client,
    max_retries: u32,
    retry_interval: f64,
    exponential_backoff: bool,
}

impl Webhook {
    /// The poller's back-off (`poller::retry_time`).
    fn retry_delay(&self, n: u32) -> Duration {
        crate::poller::retry_time(self.retry_interval, self.exponential_backoff, n)
    }
}

/// What one notice did; [`Notifier::notify`] returns it (tests, logs).
#[derive(Debug, Default)]
pub struct NotifyReport {
    /// The notice as sent.
    pub notice: Option<RevocationNotice>,
    /// `Some(Ok(attempts))` when the webhook took it; `None` when no webhook is configured.
    pub webhook: Option<Result<u32, String>>,
    /// Each other agent and whether it accepted the notice.
    pub agents: Vec<(String, Result<(), String>)>,
    /// The revoked serial, or why nothing was revoked; `None` when no CA is configured.
    pub revoked: Option<Result<Serial, String>>,
}

/// Sends revocation notices and revokes certificates; see the module docs.
#[derive(Debug, Clone)]
pub struct Notifier {
    db: Db,
    client: AgentClient,
    webhook: Option<Webhook>,
    notify_agents: bool,
    ca_dir: Option<PathBuf>,
    timeout: Duration,
}

impl Notifier {
    /// From the verifier's config, its agent client (same TLS as the polls) and database.
    pub fn new(config: &Config, client: AgentClient, db: Db) -> Result<Notifier, NotifierError> {
        let enabled = |n: &str| {
            config
                .enabled_revocation_notifications
                .iter()
                .any(|e| e == n)
        };
        let timeout = config.request_timeout();
        let webhook = if enabled("webhook") && !config.webhook_url.is_empty() {
            let http = reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .map_err(NotifierError::Client)?;
            Some(Webhook {
                url: config.webhook_url.clone(),
                http,
                max_retries: config.max_retries.max(1),
                retry_interval: config.retry_interval,
                exponential_backoff: config.exponential_backoff,
            })
        } else {
            None
        };
        let ca_dir = (!config.revocation_ca_dir.as_os_str().is_empty())
            .then(|| config.revocation_ca_dir.clone());
        Ok(Notifier {
            db,
            client,
            webhook,
            notify_agents: enabled("agent"),
            ca_dir,
            timeout,
        })
    }

    /// Whether a failure leads to anything at all.
    pub fn is_active(&self) -> bool {
        self.webhook.is_some() || self.notify_agents || self.ca_dir.is_some()
    }

    /// `agent` was just stored as FAILED or INVALID_QUOTE: notify and revoke in a spawned task
    /// (never blocks the caller).
    pub fn on_failure(&self, agent: &StoredAgent, event_id: &str, reason: &str) {
        if !self.is_active() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                agent_id = %agent.agent_id,
                "no async runtime: revocation notice for this failure not sent"
            );
            return;
        };
        let this = self.clone();
        let (agent, event_id, reason) = (agent.clone(), event_id.to_owned(), reason.to_owned());
        let span = tracing::info_span!("revocation", agent_id = %agent.agent_id);
        rt.spawn(
            async move {
                this.notify(&agent, &event_id, &reason).await;
            }
            .instrument(span),
        );
    }

    /// Everything [`Self::on_failure`] does, awaited (see the module docs).
    pub async fn notify(&self, agent: &StoredAgent, event_id: &str, reason: &str) -> NotifyReport {
        let notice = match build_notice(agent, event_id, reason) {
            Ok((notice, None)) => notice,
            Ok((notice, Some(key_problem))) => {
                tracing::error!("{key_problem}");
                notice
            }
            Err(e) => {
                tracing::error!("{e}; no revocation notice sent");
                return NotifyReport::default();
            }
        };
        if agent.revocation_key.trim().is_empty() {
            tracing::warn!(
                "agent has no revocation_key (added without a --cert package): the notice is \
                 unsigned and agents will refuse it"
            );
        }
        let webhook = async {
            match &self.webhook {
                Some(w) => Some(post_webhook(w, &notice).await),
                None => None,
            }
        };
        let agents = async {
            if self.notify_agents {
                self.notify_agents(agent, &notice).await
            } else {
                Vec::new()
            }
        };
        let revoke = async {
            match &self.ca_dir {
                Some(dir) => Some(revoke_cert(dir, agent).await),
                None => None,
            }
        };
        let (webhook, agents, revoked) = tokio::join!(webhook, agents, revoke);
        let webhook = webhook.map(|r| {
            r.map_err(|e| {
                tracing::error!("revocation webhook: {e}");
                e.to_string()
            })
        });
        if let Some(Ok(attempts)) = &webhook {
            tracing::info!(attempts, "revocation notice delivered to the webhook");
        }
        let revoked = revoked.map(|r| match r {
            Ok(serial) => Ok(serial),
            Err(e) => {
                tracing::error!("{e}");
                Err(e.to_string())
            }
        });
        NotifyReport {
            notice: Some(notice),
            webhook,
            agents,
            revoked,
        }
    }

    /// POST the notice to every other stored agent, concurrently, each within the timeout.
    async fn notify_agents(
        &self,
        failed: &StoredAgent,
        notice: &RevocationNotice,
    ) -> Vec<(String, Result<(), String>)> {
        let others = match self.db.call(|c| db::list_agents(c)).await {
            Ok(all) => all
                .into_iter()
                .filter(|a| a.agent_id != failed.agent_id)
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!("{}", NotifierError::Db(e));
                return Vec::new();
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for other in others {
            let (client, notice, timeout) = (self.client.clone(), notice.clone(), self.timeout);
            tasks.spawn(async move {
                // Negotiation and delivery together stay within one request timeout (plus one
                // for the negotiation when the version is not stored yet).
                let sent = tokio::time::timeout(
                    timeout.saturating_mul(2),
                    send_to_agent(&client, &other, &notice),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "no answer within {:.3} s",
                        timeout.saturating_mul(2).as_secs_f64()
                    ))
                });
                (other.agent_id, sent)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((id, Ok(()))) => {
                    tracing::info!(notified = %id, "revocation notice accepted by agent");
                    results.push((id, Ok(())));
                }
                Ok((id, Err(e))) => {
                    tracing::warn!(notified = %id, "revocation notice not accepted: {e}");
                    results.push((id, Err(e)));
                }
                Err(e) => tracing::error!("revocation notice task failed: {e}"),
            }
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        results
    }
}

/// The notice, signed when the agent has a usable `revocation_key`; a key that does not load
/// or sign leaves it unsigned and is reported next to it. `Err` only when no message could be
/// made at all (the random notice id failed).
fn build_notice(
    agent: &StoredAgent,
    event_id: &str,
    reason: &str,
) -> Result<(RevocationNotice, Option<NotifierError>), NotifierError> {
    let message = RevocationMessage::revocation(
        &agent.agent_id,
        &agent.ip,
        agent.port,
        Value::String(agent.tpm_policy.clone()),
        Value::String(agent.meta_data.clone()),
    )
    .map_err(NotifierError::Message)?
    .with_event(RevocationEvent {
        event_id: event_id.to_owned(),
        severity_label: SEVERITY_LABEL.to_owned(),
        context: python_json(&json!({ "message": reason })),
    });
    let unsigned = RevocationNotice {
        msg: message.to_json(),
        signature: String::new(),
    };
    if agent.revocation_key.trim().is_empty() {
        return Ok((unsigned, None));
    }
    match RevocationSigningKey::from_pem(&agent.revocation_key)
        .and_then(|key| sign_message(&message, &key))
    {
        Ok(signed) => Ok((signed, None)),
        Err(cause) => Ok((
            unsigned,
            Some(NotifierError::Key {
                agent_id: agent.agent_id.clone(),
                cause,
            }),
        )),
    }
}

async fn send_to_agent(
    client: &AgentClient,
    agent: &StoredAgent,
    notice: &RevocationNotice,
) -> Result<(), String> {
    let version = match agent
        .supported_version
        .as_deref()
        .and_then(|v| v.parse().ok())
    {
        Some(v) => v,
        None => client
            .negotiate_version(agent)
            .await
            .map_err(|e: CallError| e.to_string())?,
    };
    let endpoint = client.endpoint(agent, version);
    client
        .post_revocation(&endpoint, notice)
        .await
        .map_err(|e| e.to_string())
}

/// Up to `max_retries` attempts; `Ok(attempts)` on a 2xx.
async fn post_webhook(w: &Webhook, notice: &RevocationNotice) -> Result<u32, NotifierError> {
    let mut last = String::new();
    for attempt in 1..=w.max_retries {
        match w.http.post(&w.url).json(notice).send().await {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => {
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why = format!("{why}: {s}");
                    src = s.source();
                }
                last = why;
            }
        }
        if attempt < w.max_retries {
            let delay = w.retry_delay(attempt);
            tracing::warn!(
                "revocation webhook {}: attempt {attempt}/{} failed ({last}); trying again in \
                 {:.3} s",
                w.url,
                w.max_retries,
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
    }
    Err(NotifierError::Webhook {
        url: w.url.clone(),
        why: format!("gave up after {} attempt(s): {last}", w.max_retries),
    })
}

/// `cert_serial` from the tenant's metadata (an integer, or a decimal string).
pub fn cert_serial(meta_data: &str) -> Result<Serial, String> {
    let v: Value =
        serde_json::from_str(meta_data).map_err(|e| format!("meta_data is not JSON: {e}"))?;
    match v.get("cert_serial") {
        None | Some(Value::Null) => Err("no cert_serial (agent added without --cert)".into()),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Serial::from_u64)
            .ok_or_else(|| format!("cert_serial {n} is not a non-negative integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(Serial::from_u64)
            .map_err(|_| format!("cert_serial {s:?} is not an integer")),
        Some(other) => Err(format!("cert_serial {other} is not an integer")),
    }
}

async fn revoke_cert(dir: &std::path::Path, agent: &StoredAgent) -> Result<Serial, NotifierError> {
    let serial = cert_serial(&agent.meta_data).map_err(|why| NotifierError::NoSerial {
        agent_id: agent.agent_id.clone(),
        why,
    })?;
    let (d, s) = (dir.to_path_buf(), serial.clone());
    let revoked =
        tokio::task::spawn_blocking(move || SoftwareCa::open(&d)?.revoke(&RevokeTarget::Serial(s)))
            .await
            .map_err(|e| NotifierError::CaTask {
                dir: dir.to_path_buf(),
                serial: serial.clone(),
                why: e.to_string(),
            })?
            .map_err(|cause| NotifierError::Ca {
                dir: dir.to_path_buf(),
                serial: serial.clone(),
                cause: Box::new(cause),
            })?;
    tracing::info!(
        serial = %revoked.entry.serial,
        subject = %revoked.entry.subject,
        newly_revoked = revoked.newly_revoked,
        crl_number = revoked.crl.number,
        "node certificate revoked; CRL re-issued"
    );
    Ok(serial)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn cert_serial_from_upstream_metadata() {
        assert_eq!(
            cert_serial(r#"{"cert_serial": 7, "subject": "CN=a,O=Vouch"}"#),
            Ok(Serial::from_u64(7))
        );
        assert_eq!(
            cert_serial(r#"{"cert_serial": "12"}"#),
            Ok(Serial::from_u64(12))
        );
        assert!(cert_serial("{}").unwrap_err().contains("--cert"));
        assert!(cert_serial(r#"{"cert_serial": -1}"#).is_err());
        assert!(cert_serial("not json").is_err());
    }

    #[test]
    fn webhook_backoff_is_the_pollers() {
        let w = Webhook {
            url: String::new(),
            http: reqwest::Client::new(),
            max_retries: 5,
            retry_interval: 2.0,
            exponential_backoff: true,
        };
        assert_eq!(w.retry_delay(1), Duration::from_secs(2));
        assert_eq!(w.retry_delay(3), Duration::from_secs(8));
        let w = Webhook {
            retry_interval: 0.2,
            ..w
        };
        assert_eq!(w.retry_delay(3), Duration::from_secs_f64(0.2));
    }
}
