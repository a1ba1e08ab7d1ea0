//! Calls from the verifier to an agent (`docs/keylime-wire.md` §4.2, §4.5): integrity quote,
//! V delivery, version negotiation. Failures are classified the way upstream's poll loop
//! acts on them (§4.2 "Non-200 handling", §5.4): retry, renegotiate, or give up.
//!
//! Transport: plain HTTP, as upstream with `enable_agent_mtls = False` (agents registered with
//! `mtls_cert: "disabled"`). Agent mTLS slots in at [`AgentClient::endpoint`]: build (and
//! cache per agent) a `reqwest::Client` whose only root is the agent's registered `mtls_cert`
//! (`vouch_tls::client_config(roots, Some(verifier client identity), ServerNameCheck::ChainOnly)`)
//! and use `https://` — see the README.

use crate::db::StoredAgent;
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::time::Duration;
use thiserror::Error;
use vouch_core::api::agent::{IntegrityQuoteQuery, QuoteResponse, VkeyRequest};
use vouch_core::api::envelope::{Empty, Envelope};
use vouch_core::api::version::{
    advertised_versions, negotiate, ApiVersion, AGENT_SUPPORTED_VERSIONS,
};

/// What went wrong talking to an agent, by what the poll loop does about it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    /// Connection refused/reset, timeout, or HTTP 408/500/503/599: retry with backoff.
    #[error("agent unreachable at {url}: {why}")]
    Unreachable { url: String, why: String },
    /// 400 whose status contains "API version not supported": renegotiate.
    #[error("agent at {url} does not support API {version}: {status}")]
    VersionUnsupported {
        url: String,
        version: ApiVersion,
        status: String,
    },
    /// Any other non-200: upstream marks the agent FAILED.
    #[error("agent at {url} answered HTTP {code}: {status}")]
    Refused {
        url: String,
        code: u16,
        status: String,
    },
    /// 200 but not the expected body.
    #[error("agent at {url} sent an unreadable response: {why}")]
    BadResponse { url: String, why: String },
}

impl CallError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Unreachable { .. })
    }
}

/// Where and how to reach one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    /// `http://ip:port`
    pub base: String,
    pub version: ApiVersion,
}

/// Shared HTTP client for all agents (connection pool, timeouts).
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
}

impl AgentClient {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { http })
    }

    /// The agent's base URL, without version. (Agent mTLS: switch to `https` here.)
    pub fn base_url(agent: &StoredAgent) -> String {
        match agent.ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("http://[{ip}]:{}", agent.port),
            _ => format!("http://{}:{}", agent.ip, agent.port),
        }
    }

    /// The endpoint for `agent` at `version`.
    pub fn endpoint(agent: &StoredAgent, version: ApiVersion) -> AgentEndpoint {
        AgentEndpoint {
            base: Self::base_url(agent),
            version,
        }
    }

    /// `GET /version` and pick the newest version both sides speak
    /// (`cloud_verifier_tornado.py:update_agent_api_version`).
    pub async fn negotiate_version(&self, base: &str) -> Result<ApiVersion, CallError> {
        let url = format!("{base}/version");
        let results: serde_json::Value = self.send(self.http.get(&url), &url, None).await?;
        let theirs = advertised_versions(&results);
        negotiate(&AGENT_SUPPORTED_VERSIONS, &theirs).ok_or_else(|| CallError::Refused {
            url,
            code: 200,
            status: format!(
                "no common API version: agent offers {theirs:?}, verifier speaks {:?}",
                AGENT_SUPPORTED_VERSIONS
            ),
        })
    }

    /// `GET /vX/quotes/integrity?nonce&mask&partial&ima_ml_entry` (§4.2).
    pub async fn integrity_quote(
        &self,
        ep: &AgentEndpoint,
        query: &IntegrityQuoteQuery,
    ) -> Result<QuoteResponse, CallError> {
        let url = format!("{}{}/quotes/integrity", ep.base, ep.version.url_prefix());
        self.send(self.http.get(&url).query(query), &url, Some(ep.version))
            .await
    }

    /// `POST /vX/keys/vkey` (§4.5).
    pub async fn post_vkey(&self, ep: &AgentEndpoint, body: &VkeyRequest) -> Result<(), CallError> {
        let url = format!("{}{}/keys/vkey", ep.base, ep.version.url_prefix());
        let _: Empty = self
            .send(self.http.post(&url).json(body), &url, Some(ep.version))
            .await?;
        Ok(())
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        version: Option<ApiVersion>,
    ) -> Result<T, CallError> {
        let unreachable = |why: String| CallError::Unreachable {
            url: url.to_owned(),
            why,
        };
        let resp = req.send().await.map_err(|e| {
            // reqwest's Display hides the cause ("error sending request"); show the chain.
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why = format!("{why}: {s}");
                src = s.source();
            }
            unreachable(why)
        })?;
        let code = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| unreachable(format!("reading the response: {e}")))?;
        if code != 200 {
            let status = serde_json::from_str::<Envelope<serde_json::Value>>(&text)
                .map(|e| e.status)
                .unwrap_or_else(|_| text.chars().take(200).collect());
            return Err(match (code, version) {
                (408 | 500 | 502 | 503 | 504 | 599, _) => {
                    unreachable(format!("HTTP {code}: {status}"))
                }
                (400, Some(version)) if status.contains("API version not supported") => {
                    CallError::VersionUnsupported {
                        url: url.to_owned(),
                        version,
                        status,
                    }
                }
                _ => CallError::Refused {
                    url: url.to_owned(),
                    code,
                    status,
                },
            });
        }
        serde_json::from_str::<Envelope<T>>(&text)
            .map(|e| e.results)
            .map_err(|e| CallError::BadResponse {
                url: url.to_owned(),
                why: e.to_string(),
            })
    }
}
