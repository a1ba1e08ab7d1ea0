//! Every refusal the API gives, with its HTTP status and message, rendered as the keylime
//! envelope `{"code", "status", "results": {}}` (`docs/keylime-wire.md` §2).
//!
//! Where upstream has a message, ours starts with it; a precise reason follows after ": ".

use crate::db::DbError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, wrong types, missing fields, bad path parameters.
    #[error("{0}")]
    BadRequest(String),
    /// The registration was understood but its data is refused (bad keys, EK certificate…).
    #[error("Could not register agent with invalid data: {0}")]
    InvalidRegistration(String),
    /// Re-registration with a different EK / EK certificate / AK (upstream:
    /// `_check_tpm_identity_immutable`).
    #[error("Agent re-registration with different TPM identity is forbidden for security reasons: changed {}; delete agent '{agent_id}' first to enrol a new TPM", fields.join(", "))]
    IdentityChanged {
        agent_id: String,
        fields: Vec<&'static str>,
    },
    #[error("Agent with ID '{0}' not found")]
    NotFound(String),
    #[error("Agent with ID '{0}' has not been activated")]
    NotActivated(String),
    /// Wrong activation proof. Upstream also deletes the registration; Vouch keeps it (README).
    #[error("Auth tag '{tag}' for agent '{agent_id}' does not match expected value: the agent's TPM could not prove it holds both the EK and the AK; the registration is kept, unactivated")]
    AuthTagMismatch { agent_id: String, tag: String },
    #[error("API version '{0}' is not served here (this registrar serves /v2 and /v2.0 to /v2.6)")]
    UnknownVersion(String),
    #[error("No route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("Request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Admin routes on the plain-HTTP listener (upstream: 400 on its HTTP port).
    #[error("This action requires the TLS port with an admin client certificate; the HTTP port serves only /version, registration and activation")]
    AdminNeedsTls,
    #[error("Internal error: {0}")]
    Db(#[from] DbError),
    #[error("Internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::InvalidRegistration(_)
            | ApiError::AuthTagMismatch { .. }
            | ApiError::AdminNeedsTls => StatusCode::BAD_REQUEST,
            ApiError::IdentityChanged { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_)
            | ApiError::NotActivated(_)
            | ApiError::UnknownVersion(_)
            | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
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
        let e = ApiError::IdentityChanged {
            agent_id: "a".into(),
            fields: vec!["aik_tpm"],
        };
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.to_string().starts_with(
            "Agent re-registration with different TPM identity is forbidden for security reasons"
        ));
        let e = ApiError::InvalidRegistration("ek_tpm: bad".into());
        assert_eq!(
            e.to_string(),
            "Could not register agent with invalid data: ek_tpm: bad"
        );
        assert_eq!(
            ApiError::NotFound("x".into()).to_string(),
            "Agent with ID 'x' not found"
        );
    }
}
