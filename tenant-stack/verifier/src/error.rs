//! Every refusal the API gives, with its HTTP status and message, rendered as the keylime
//! envelope `{"code", "status", "results": {}}` (`docs/keylime-wire.md` §2, §5).
//!
//! Where upstream has a message, ours starts with it; a precise reason follows after ": ".
//! (The `IntoResponse` rendering is the same as `vouch-registrar`'s `error.rs`.)

use crate::db::DbError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, wrong types, missing fields, oversized body.
    #[error("{0}")]
    BadRequest(String),
    /// The add body was understood but a field is refused (upstream: 400 "Exception error: …").
    #[error("Invalid agent data: {field}: {why}")]
    InvalidAgent { field: &'static str, why: String },
    /// Upstream: `"agent_id not not valid"` (sic).
    #[error("agent_id not valid: {0}")]
    BadAgentId(String),
    /// Upstream: 409 `"Agent of uuid {id} already exists"`.
    #[error("Agent of uuid {0} already exists; delete it first (its stored record is unchanged)")]
    Conflict(String),
    /// Upstream: `"agent id not found"`.
    #[error("agent id not found: no agent '{0}' on this verifier")]
    NotFound(String),
    /// Upstream answers 404 with an empty body; ours carries the envelope.
    #[error("API version '{0}' is not served here (this verifier serves /v2 and /v2.0 to /v2.6)")]
    UnknownVersion(String),
    /// Upstream: 409 "IMA policy with name {name} already exists. Please use a different name
    /// or delete the allowlist from the verifier."
    #[error("IMA policy with name {0} already exists. Please use a different name or delete the allowlist from the verifier.")]
    PolicyExists(String),
    /// Upstream: 404 "Could not find IMA policy with name {name}!"
    #[error("Could not find IMA policy with name {0}!")]
    PolicyNotFound(String),
    /// Upstream: 409 "Can't delete allowlist as it's currently in use by agent {id}".
    #[error("Can't delete allowlist as it's currently in use by agent {agent}")]
    PolicyInUse { agent: String },
    #[error("No route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("Internal error: {0}")]
    Db(#[from] DbError),
    #[error("Internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidAgent { .. } | ApiError::BadAgentId(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Conflict(_) | ApiError::PolicyExists(_) | ApiError::PolicyInUse { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::PolicyNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotFound(_) | ApiError::UnknownVersion(_) | ApiError::NoRoute { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::Db(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        vouch_service::error_response(self.status(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages_are_prefixes() {
        assert!(ApiError::Conflict("a".into())
            .to_string()
            .starts_with("Agent of uuid a already exists"));
        assert!(ApiError::NotFound("a".into())
            .to_string()
            .starts_with("agent id not found"));
        assert_eq!(
            ApiError::Conflict("a".into()).status(),
            StatusCode::CONFLICT
        );
    }
}
