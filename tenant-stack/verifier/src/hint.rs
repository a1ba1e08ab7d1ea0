//! The hint listener: agents' signed "attest me now" (`vouch_core::api::hint`) moves their
//! next quote to now. Plain HTTP on its own address (`hint_listen`): the main API requires the
//! tenant's client certificate, which agents do not have; a hint authenticates itself.
//!
//! Last accepted counters live in memory: after a restart the clock window
//! (`MAX_SKEW_SECS`) is what refuses old hints.

use crate::db::{self, Db};
use crate::poller::Poller;
use crate::server::is_polled;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use vouch_core::api::hint::{Hint, HintError, HINT_PATH};

/// A hint is ~500 bytes; anything much larger is not one.
const MAX_HINT_BYTES: usize = 4096;

#[derive(Clone)]
pub struct HintState {
    pub db: Db,
    pub poller: Poller,
    last: Arc<Mutex<HashMap<String, u64>>>,
}

impl HintState {
    pub fn new(db: Db, poller: Poller) -> Self {
        Self {
            db,
            poller,
            last: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

pub fn router(state: HintState) -> Router {
    Router::new()
        .route(HINT_PATH, post(hint))
        .fallback(|| async {
            reply(
                StatusCode::NOT_FOUND,
                "not found; hints go to POST /v1/hint",
            )
        })
        .with_state(state)
}

fn reply(code: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"code": code.as_u16(), "status": message.into(), "results": {}});
    (code, axum::Json(body)).into_response()
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn hint(State(s): State<HintState>, body: Bytes) -> Response {
    if body.len() > MAX_HINT_BYTES {
        return reply(
            StatusCode::BAD_REQUEST,
            format!(
                "hint body is {} bytes; at most {MAX_HINT_BYTES}",
                body.len()
            ),
        );
    }
    let hint: Hint = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("malformed hint: {e}")),
    };
    let id = hint.agent_id.clone();
    let agent = match s.db.call(move |c| db::get_agent(c, &id)).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return reply(
                StatusCode::FORBIDDEN,
                format!("agent {} is not attested by this verifier", hint.agent_id),
            )
        }
        Err(e) => {
            tracing::error!("hint: {e}");
            return reply(StatusCode::INTERNAL_SERVER_ERROR, "database error");
        }
    };
    let Some(nk) = agent.public_key.as_deref() else {
        return reply(
            StatusCode::FORBIDDEN,
            format!(
                "no NK on record for agent {} yet (before its first good quote)",
                hint.agent_id
            ),
        );
    };
    let last = s
        .last
        .lock()
        .ok()
        .and_then(|m| m.get(&hint.agent_id).copied())
        .unwrap_or(0);
    if let Err(e) = hint.verify(nk, last, now_micros()) {
        let code = match e {
            HintError::Replayed { .. } | HintError::Stale { .. } => StatusCode::CONFLICT,
            HintError::SignatureEncoding => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        tracing::warn!(agent_id = %hint.agent_id, "hint refused: {e}");
        return reply(code, e.to_string());
    }
    if let Ok(mut m) = s.last.lock() {
        let entry = m.entry(hint.agent_id.clone()).or_insert(0);
        if hint.counter <= *entry {
            // Lost a race with a concurrent copy of the same hint.
            return reply(StatusCode::CONFLICT, "hint replayed");
        }
        *entry = hint.counter;
    }
    if !is_polled(agent.state) {
        return reply(
            StatusCode::ACCEPTED,
            format!(
                "agent {} is in state {}; not polling it, nothing to do",
                hint.agent_id, agent.state
            ),
        );
    }
    tracing::debug!(agent_id = %hint.agent_id, reason = hint.reason.as_str(), "hint accepted; quoting now");
    s.poller.hint(&hint.agent_id);
    reply(StatusCode::ACCEPTED, "Success")
}
