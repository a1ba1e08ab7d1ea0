//! The keylime JSON response envelope: `{"code": <http status>, "status": "<text>", "results": {...}}`.
//!
//! Used by every 2.x controller response of registrar, verifier and agent
//! (`docs/keylime-wire.md` §2; upstream `web/base/controller.py:Controller.respond`,
//! `rk:keylime/src/json_wrapper.rs`). `results` is `{}` when empty, never absent.

use serde::{Deserialize, Serialize};

/// `status` text keylime uses for a 200 response.
pub const STATUS_SUCCESS: &str = "Success";

/// A response envelope carrying `results` of type `T`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Equals the HTTP status code of the response.
    pub code: u16,
    /// Free text; clients branch on `code` (and, for the agent, on the substring
    /// `"API version not supported"`).
    pub status: String,
    pub results: T,
}

/// Empty `results`: serializes as `{}`; deserializes from any JSON object (extra fields ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

impl<T> Envelope<T> {
    pub fn new(code: u16, status: impl Into<String>, results: T) -> Self {
        Self {
            code,
            status: status.into(),
            results,
        }
    }

    /// `{"code": 200, "status": "Success", "results": results}`.
    pub fn success(results: T) -> Self {
        Self::new(200, STATUS_SUCCESS, results)
    }

    /// True for a 2xx `code`.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl Envelope<Empty> {
    /// `{"code": code, "status": status, "results": {}}`.
    pub fn error(code: u16, status: impl Into<String>) -> Self {
        Self::new(code, status, Empty {})
    }

    /// `{"code": 200, "status": "Success", "results": {}}`.
    pub fn success_empty() -> Self {
        Self::success(Empty {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_has_empty_results_object() {
        let v = serde_json::to_value(Envelope::error(404, "Agent with ID 'x' not found")).unwrap();
        assert_eq!(
            v,
            json!({"code": 404, "status": "Agent with ID 'x' not found", "results": {}})
        );
    }

    #[test]
    fn success_wraps_results() {
        let v = serde_json::to_value(Envelope::success(json!({"blob": "AAAA"}))).unwrap();
        assert_eq!(
            v,
            json!({"code": 200, "status": "Success", "results": {"blob": "AAAA"}})
        );
        let e: Envelope<Empty> =
            serde_json::from_value(json!({"code": 200, "status": "OK", "results": {"x": 1}}))
                .unwrap();
        assert!(e.is_success());
    }
}
