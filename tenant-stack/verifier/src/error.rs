//! Every refusal the API gives, with its HTTP status and message, rendered as the keylime
//! envelope `{"code", "status", "results": {}}` (`docs/keylime-wire.md` §2, §5).
//!
//! Where upstream has a message, ours starts with it; a precise reason follows after ": ".
//! (The `IntoResponse` rendering is the same as `vouch-registrar`'s `error.rs`.)

use crate::db::DbError;
use crate::named_policy::{PolicyKind, PolicyRefusal};
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
    /// Upstream: 400 "mTLS certificate for agent is required!" (`enable_agent_mtls` on, the add
    /// body's `mtls_cert` null or "disabled"); what to do follows.
    #[error("mTLS certificate for agent is required! {0}")]
    MtlsCertRequired(String),
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
    /// A named-policy refusal (`/allowlists`, `/mbpolicies`, or the add body), in upstream's
    /// wording for that store and case (`named_policy.rs`).
    #[error("{}", .refusal.message(*.kind, .name))]
    Policy {
        kind: PolicyKind,
        name: String,
        refusal: PolicyRefusal,
    },
    #[error("No route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("Internal error: {0}")]
    Db(#[from] DbError),
    #[error("Internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A refused field of the add body.
    pub fn invalid(field: &'static str, why: impl Into<String>) -> Self {
        ApiError::InvalidAgent {
            field,
            why: why.into(),
        }
    }

    pub fn policy(kind: PolicyKind, name: impl Into<String>, refusal: PolicyRefusal) -> Self {
        ApiError::Policy {
            kind,
            name: name.into(),
            refusal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::InvalidAgent { .. }
            | ApiError::MtlsCertRequired(_)
            | ApiError::BadAgentId(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Policy { kind, refusal, .. } => refusal.status(*kind),
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
        let e = ApiError::MtlsCertRequired("x".into());
        assert!(e
            .to_string()
            .starts_with("mTLS certificate for agent is required!"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
