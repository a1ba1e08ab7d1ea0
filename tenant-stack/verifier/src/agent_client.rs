//! Calls from the verifier to an agent (`docs/keylime-wire.md` §4.2, §4.5): integrity quote,
//! V delivery, version negotiation. Failures are classified the way upstream's poll loop
//! acts on them (§4.2 "Non-200 handling", §5.4): retry, renegotiate, or give up.
//!
//! Transport (§7, `web_util.py:generate_agent_tls_context`): an agent whose stored `mtls_cert`
//! is a PEM is called over HTTPS with a `reqwest::Client` (cached per certificate) whose only
//! root is that certificate, presenting the verifier's client certificate, server name not
//! checked (upstream `check_hostname = False`); an agent presenting any other certificate fails
//! the handshake. `"disabled"`/null, or `enable_agent_mtls = false`: plain HTTP.

use crate::db::StoredAgent;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use vouch_core::api::agent::{IntegrityQuoteQuery, QuoteResponse, RevocationNotice, VkeyRequest};
use vouch_core::api::envelope::{Empty, Envelope};
use vouch_core::api::version::{
    advertised_versions, negotiate, ApiVersion, AGENT_SUPPORTED_VERSIONS,
};
use vouch_tls::{Identity, ServerNameCheck};

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
    /// Agent mTLS failed: the agent presented a certificate other than its registered
    /// `mtls_cert`, or ours could not be set up. Not retried: it will not fix itself.
    #[error("agent mTLS to {url}: {why}")]
    Tls { url: String, why: String },
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
    /// `http://ip:port`, or `https://ip:port` with agent mTLS
    pub base: String,
    pub version: ApiVersion,
    /// The agent's registered certificate (PEM) when it is called over mTLS.
    pub mtls_cert: Option<String>,
}

/// Whether `mtls_cert` (as stored from the add body) is a certificate rather than
/// `"disabled"`/null.
pub fn is_pem_cert(mtls_cert: Option<&str>) -> bool {
    mtls_cert.is_some_and(|c| c.trim_start().starts_with("-----BEGIN CERTIFICATE-----"))
}

/// Shared HTTP client for all agents (connection pool, timeouts), plus one mTLS client per
/// agent certificate.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    timeout: Duration,
    /// The verifier's client certificate for agent mTLS; `None` = agent mTLS off.
    identity: Option<Arc<Identity>>,
    mtls: Arc<Mutex<HashMap<String, reqwest::Client>>>,
}

impl AgentClient {
    /// Plain HTTP to every agent (upstream `enable_agent_mtls = False`).
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::with_identity(timeout, None)
    }

    /// With `identity`, agents with a PEM `mtls_cert` are called over mTLS presenting it.
    pub fn with_identity(
        timeout: Duration,
        identity: Option<Identity>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            timeout,
            identity: identity.map(Arc::new),
            mtls: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The agent's base URL, without version: `https` when it is called over mTLS.
    pub fn base_url(&self, agent: &StoredAgent) -> String {
        let scheme = if self.uses_mtls(agent) {
            "https"
        } else {
            "http"
        };
        match agent.ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("{scheme}://[{ip}]:{}", agent.port),
            _ => format!("{scheme}://{}:{}", agent.ip, agent.port),
        }
    }

    fn uses_mtls(&self, agent: &StoredAgent) -> bool {
        self.identity.is_some() && is_pem_cert(agent.mtls_cert.as_deref())
    }

    /// The endpoint for `agent` at `version`.
    pub fn endpoint(&self, agent: &StoredAgent, version: ApiVersion) -> AgentEndpoint {
        AgentEndpoint {
            base: self.base_url(agent),
            version,
            mtls_cert: self
                .uses_mtls(agent)
                .then(|| agent.mtls_cert.clone())
                .flatten(),
        }
    }

    /// The client for `ep`: the shared one, or the (cached) mTLS client pinned to its cert.
    fn client_for(&self, ep: &AgentEndpoint, url: &str) -> Result<reqwest::Client, CallError> {
        let (Some(cert), Some(identity)) = (&ep.mtls_cert, &self.identity) else {
            return Ok(self.http.clone());
        };
        let mut cache = self.mtls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(cert) {
            return Ok(c.clone());
        }
        let refused = |why: String| CallError::Tls {
            url: url.to_owned(),
            why,
        };
        let roots = vouch_tls::roots_from_pem(cert, "agent mtls_cert")
            .map_err(|e| refused(format!("unusable agent mtls_cert: {e}")))?;
        let tls = vouch_tls::client_config(roots, Some(identity), ServerNameCheck::ChainOnly)
            .map_err(|e| refused(format!("agent TLS configuration: {e}")))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| refused(format!("agent TLS client: {e}")))?;
        // Agents re-register with new certificates rarely; keep the cache bounded anyway.
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(cert.clone(), client.clone());
        Ok(client)
    }

    /// `GET /version` and pick the newest version both sides speak
    /// (`cloud_verifier_tornado.py:update_agent_api_version`).
    pub async fn negotiate_version(&self, agent: &StoredAgent) -> Result<ApiVersion, CallError> {
        // The version is not used for `/version` itself.
        let ep = self.endpoint(agent, ApiVersion::new(2, 0));
        let url = format!("{}/version", ep.base);
        let http = self.client_for(&ep, &url)?;
        let results: serde_json::Value = self.send(http.get(&url), &url, None).await?;
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
        let http = self.client_for(ep, &url)?;
        self.send(http.get(&url).query(query), &url, Some(ep.version))
            .await
    }

    /// `POST /vX/keys/vkey` (§4.5).
    pub async fn post_vkey(&self, ep: &AgentEndpoint, body: &VkeyRequest) -> Result<(), CallError> {
        let url = format!("{}{}/keys/vkey", ep.base, ep.version.url_prefix());
        let http = self.client_for(ep, &url)?;
        let _: Empty = self
            .send(http.post(&url).json(body), &url, Some(ep.version))
            .await?;
        Ok(())
    }

    /// `POST /vX/notifications/revocation` (§4.7): a signed revocation notice about another
    /// agent. Any non-200 is the agent refusing it (bad signature, replay, no notifier
    /// certificate in its payload).
    pub async fn post_revocation(
        &self,
        ep: &AgentEndpoint,
        notice: &RevocationNotice,
    ) -> Result<(), CallError> {
        let url = format!(
            "{}{}/notifications/revocation",
            ep.base,
            ep.version.url_prefix()
        );
        let http = self.client_for(ep, &url)?;
        let _: serde_json::Value = self
            .send(http.post(&url).json(notice), &url, Some(ep.version))
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
            if why.contains("invalid peer certificate") {
                return CallError::Tls {
                    url: url.to_owned(),
                    why: format!("the agent's certificate is not its registered mtls_cert ({why})"),
                };
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
