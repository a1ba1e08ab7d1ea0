//! JSON-over-HTTP(S) to keylime services: every answer is the `{"code","status","results"}`
//! envelope (wire doc §2); errors keep the service's name, the URL and its `status` text.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;
use vouch_core::api::version::{advertised_versions, negotiate, ApiVersion};

/// How long one request may take (connect + answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("{service} at {url} is unreachable: {cause}")]
    Unreachable {
        service: &'static str,
        url: String,
        cause: String,
    },
    #[error("{service} answered {code} to {method} {url}: {message}")]
    Status {
        service: &'static str,
        method: Method,
        url: String,
        code: u16,
        message: String,
    },
    #[error("{service}'s answer to {method} {url} is not what keylime sends: {why}")]
    Body {
        service: &'static str,
        method: Method,
        url: String,
        why: String,
    },
    #[error("{service} at {url} supports none of the API versions we speak ({ours}); it offers {theirs}")]
    NoCommonVersion {
        service: &'static str,
        url: String,
        ours: String,
        theirs: String,
    },
}

impl HttpError {
    /// The HTTP status, when the service answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            HttpError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// An answer: HTTP status, the envelope's `status` text and its `results`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub status: String,
    pub results: serde_json::Value,
}

/// One keylime service (`registrar`, `verifier`, `agent X`) at a base URL.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: &'static str,
    pub base: String,
    client: reqwest::Client,
}

/// `host:port` → `{default_scheme}://host:port`; a full URL is kept (without a trailing `/`).
pub fn base_url(endpoint: &str, default_scheme: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.contains("://") {
        e.to_owned()
    } else {
        format!("{default_scheme}://{e}")
    }
}

impl Service {
    pub fn new(name: &'static str, base: String, client: reqwest::Client) -> Self {
        Self { name, base, client }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send and read the envelope, whatever the status.
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Reply, HttpError> {
        let url = self.url(path);
        let mut req = self
            .client
            .request(method.clone(), &url)
            .timeout(REQUEST_TIMEOUT);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| HttpError::Unreachable {
            service: self.name,
            url: url.clone(),
            cause: error_chain(&e),
        })?;
        let code = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| HttpError::Unreachable {
            service: self.name,
            url: url.clone(),
            cause: error_chain(&e),
        })?;
        // Framework errors upstream have empty bodies (§2); keep the status code then.
        let v: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| HttpError::Body {
                service: self.name,
                method: method.clone(),
                url: url.clone(),
                why: format!("HTTP {code}, body is not JSON ({e}): {:.200}", text),
            })?
        };
        Ok(Reply {
            code,
            status: v
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_owned(),
            results: v.get("results").cloned().unwrap_or(serde_json::Value::Null),
        })
    }

    /// Send; a non-2xx answer is an error carrying the service's message.
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Reply, HttpError> {
        let reply = self.send(method.clone(), path, body).await?;
        if !(200..300).contains(&reply.code) {
            return Err(self.status_error(method, path, &reply));
        }
        Ok(reply)
    }

    /// `call` and decode `results` as `T`.
    pub async fn call_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, HttpError> {
        let reply = self.call(method.clone(), path, body).await?;
        self.decode(method, path, reply.results)
    }

    pub fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        results: serde_json::Value,
    ) -> Result<T, HttpError> {
        serde_json::from_value(results).map_err(|e| HttpError::Body {
            service: self.name,
            method,
            url: self.url(path),
            why: format!("results: {e}"),
        })
    }

    pub fn status_error(&self, method: Method, path: &str, reply: &Reply) -> HttpError {
        HttpError::Status {
            service: self.name,
            method,
            url: self.url(path),
            code: reply.code,
            message: if reply.status.is_empty() {
                "(no message)".into()
            } else {
                reply.status.clone()
            },
        }
    }

    /// `GET /version` and pick the highest version both sides speak (`api_version.py`).
    pub async fn negotiate(&self, ours: &[ApiVersion]) -> Result<ApiVersion, HttpError> {
        let reply = self.call::<()>(Method::GET, "/version", None).await?;
        let theirs = advertised_versions(&reply.results);
        negotiate(ours, &theirs).ok_or_else(|| HttpError::NoCommonVersion {
            service: self.name,
            url: self.url("/version"),
            ours: join(ours),
            theirs: join(&theirs),
        })
    }
}

fn join(v: &[ApiVersion]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// reqwest's error with its sources ("error sending request: … : connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}
