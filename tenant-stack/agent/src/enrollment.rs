//! Enrollment with the registrar (docs/keylime-wire.md §3.1, §3.2), as rust-keylime does it
//! (`rk:keylime/src/registrar_client.rs`): `GET /version`, `POST /v{ver}/agents/{id}` with EK,
//! EK certificate and AK, `TPM2_ActivateCredential` on the returned blob, then
//! `PUT /v{ver}/agents/{id}` with `auth_tag = hex(HMAC-SHA384(b64(secret), id))`.
//!
//! Each request is retried with exponential backoff while the registrar is unreachable or
//! answers 5xx; a 4xx ends enrollment with the registrar's message.

use crate::identity::TpmIdentity;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;
use vouch_core::api::enrollment::{decode_blob, ActivationKey, EnrollmentError};
use vouch_core::api::registrar::{ActivateRequest, RegisterRequest, RegisterResponse};
use vouch_core::api::version::{
    advertised_versions, negotiate, ApiVersion, SERVER_SERVED_VERSIONS,
};
use vouch_core::der::pem_encode;
use vouch_tpm::{TpmError, TpmHandle};

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Version used when the registrar's `/version` cannot be read (7.14.3's current).
const FALLBACK_VERSION: ApiVersion = ApiVersion::new(2, 6);

#[derive(Debug, Error)]
pub enum EnrollError {
    #[error("registrar {url} unreachable after {attempts} attempts: {last}")]
    Unreachable {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("registrar refused {step} of agent {agent}: HTTP {code}: {message}")]
    Refused {
        step: &'static str,
        agent: String,
        code: u16,
        message: String,
    },
    #[error("registrar's {step} response is not what keylime sends: {detail}")]
    BadResponse { step: &'static str, detail: String },
    #[error("registration blob: {0}")]
    Blob(#[from] EnrollmentError),
    #[error("ActivateCredential on the registrar's blob failed (was it made for this TPM's EK and AK?): {0}")]
    Activate(TpmError),
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Where and how to enroll.
#[derive(Debug, Clone)]
pub struct Registrar {
    /// `http://host:port`, no trailing slash.
    pub url: String,
    /// Attempts per request (0 = forever).
    pub retries: u32,
    pub first_delay: Duration,
}

/// What the registrar records as the agent's contact address.
#[derive(Debug, Clone)]
pub struct Contact {
    pub ip: String,
    pub port: u16,
}

enum Failure {
    /// Worth retrying: connection error or 5xx.
    Transient(String),
    Fatal(EnrollError),
}

struct Client {
    http: reqwest::Client,
    registrar: Registrar,
    agent: String,
}

impl Client {
    async fn once<B: Serialize, T: DeserializeOwned>(
        &self,
        step: &'static str,
        method: reqwest::Method,
        url: &str,
        body: Option<&B>,
    ) -> Result<T, Failure> {
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("{url}: {e}")))?;
        let code = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Transient(format!("{url}: reading the response: {e}")))?;
        let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        if !(200..300).contains(&code) {
            let message = json
                .as_ref()
                .and_then(|j| j.get("status"))
                .and_then(|s| s.as_str())
                .map_or_else(
                    || {
                        if text.is_empty() {
                            "(empty body)".to_string()
                        } else {
                            text.chars().take(300).collect()
                        }
                    },
                    str::to_string,
                );
            if code >= 500 {
                return Err(Failure::Transient(format!("{url}: HTTP {code}: {message}")));
            }
            return Err(Failure::Fatal(EnrollError::Refused {
                step,
                agent: self.agent.clone(),
                code,
                message,
            }));
        }
        let results = json
            .and_then(|mut j| j.get_mut("results").map(serde_json::Value::take))
            .ok_or_else(|| {
                Failure::Fatal(EnrollError::BadResponse {
                    step,
                    detail: format!("no JSON envelope with `results`: {:.300}", text),
                })
            })?;
        serde_json::from_value(results).map_err(|e| {
            Failure::Fatal(EnrollError::BadResponse {
                step,
                detail: e.to_string(),
            })
        })
    }

    /// [`Self::once`] with backoff on transient failures.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        step: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, EnrollError> {
        let url = format!("{}{path}", self.registrar.url);
        let mut delay = self.registrar.first_delay;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.once(step, method.clone(), &url, body).await {
                Ok(t) => return Ok(t),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(last)) => {
                    if self.registrar.retries != 0 && attempt >= self.registrar.retries {
                        return Err(EnrollError::Unreachable {
                            url,
                            attempts: attempt,
                            last,
                        });
                    }
                    tracing::warn!(step, attempt, "registrar: {last}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The API version to talk to the registrar: its `current_version` if we serve it, else the
/// newest common 2.x version (rust-keylime `registrar_client.rs:register_agent`).
fn pick_version(results: &serde_json::Value) -> Option<ApiVersion> {
    let current = results
        .get("current_version")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<ApiVersion>().ok());
    if let Some(c) = current.filter(|c| SERVER_SERVED_VERSIONS.contains(c)) {
        return Some(c);
    }
    negotiate(&SERVER_SERVED_VERSIONS, &advertised_versions(results))
}

/// Register and activate `identity` as `agent`. Returns the API version used.
pub async fn enroll(
    tpm: &TpmHandle,
    identity: &TpmIdentity,
    agent: &str,
    contact: &Contact,
    registrar: &Registrar,
    mtls_cert: Option<&str>,
) -> Result<ApiVersion, EnrollError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| EnrollError::Client(e.to_string()))?;
    let client = Client {
        http,
        registrar: registrar.clone(),
        agent: agent.to_string(),
    };

    let version = match client
        .call::<(), serde_json::Value>("version query", reqwest::Method::GET, "/version", None)
        .await
    {
        Ok(results) => pick_version(&results).ok_or_else(|| EnrollError::BadResponse {
            step: "version query",
            detail: format!("no API 2.x version in common with {results}"),
        })?,
        // An old registrar without /version: rust-keylime falls back to its default.
        Err(EnrollError::Refused { code: 404, .. }) => FALLBACK_VERSION,
        Err(e) => return Err(e),
    };
    let prefix = format!("{}/agents/{agent}", version.url_prefix());
    tracing::info!(%version, url = %registrar.url, "registering");

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let request = RegisterRequest {
        ek_tpm: Some(STANDARD.encode(identity.ek.to_tpm2b())),
        ekcert: Some(
            identity
                .ek_cert
                .as_ref()
                .map(|der| pem_encode("CERTIFICATE", der)),
        ),
        aik_tpm: STANDARD.encode(identity.ak.public.to_tpm2b()),
        // Never null: null makes the upstream tenant talk API 1.0 to the agent (§9.1).
        // The agent's own certificate with agent mTLS, else "disabled".
        mtls_cert: Some(Some(mtls_cert.unwrap_or("disabled").into())),
        ip: Some(Some(contact.ip.clone())),
        port: Some(Some(contact.port)),
        ..RegisterRequest::default()
    };
    let registered: RegisterResponse = client
        .call(
            "registration",
            reqwest::Method::POST,
            &prefix,
            Some(&request),
        )
        .await?;

    let credential = decode_blob(&registered.blob)?;
    let secret = tpm
        .activate_credential(
            &identity.ak,
            credential.id_object(),
            credential.encrypted_secret(),
        )
        .await
        .map_err(EnrollError::Activate)?;
    let auth_tag = ActivationKey::from_secret(&secret).auth_tag(agent);
    let _: serde_json::Value = client
        .call(
            "activation",
            reqwest::Method::PUT,
            &prefix,
            Some(&ActivateRequest { auth_tag }),
        )
        .await?;
    tracing::info!(%version, "registered and activated");
    Ok(version)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn version_choice() {
        let upstream = json!({"current_version": "2.6",
            "supported_versions": ["1.0","2.0","2.1","2.2","2.3","2.4","2.5","2.6","3.0"]});
        assert_eq!(pick_version(&upstream), Some(ApiVersion::new(2, 6)));
        let newer = json!({"current_version": "3.0", "supported_versions": ["2.6", "3.0"]});
        assert_eq!(pick_version(&newer), Some(ApiVersion::new(2, 6)));
        assert_eq!(pick_version(&json!({"current_version": "3.0"})), None);
    }
}
