//! The agent REST API 2.x (docs/keylime-wire.md §4), plain HTTP for now.
//!
//! Routes (`{v}` = `v2.1` … `v2.5`, or `v2` = 2.5, as rust-keylime serves):
//! `GET /version`, `GET /{v}/quotes/identity`, `GET /{v}/quotes/integrity`,
//! `GET /{v}/keys/pubkey`, `GET /{v}/agent/info` (2.2+), `POST /{v}/keys/ukey`,
//! `POST /{v}/keys/vkey`, `GET /{v}/keys/verify`, `POST /{v}/notifications/revocation`.
//! Every answer is the
//! `{"code","status","results"}` envelope; a bad query parameter is a 400 whose `status` says
//! which. An unknown `vX.Y` gets 400 `"API version not supported: vX.Y"`, the text upstream's
//! verifier looks for before renegotiating (§1).

use crate::keys::{Keys, KeysError};
use crate::quote::{BadParam, Nonce, PcrMask, Quoter};
use crate::revocation::{accept_notice, run_actions, RevocationConfig, RevocationError};
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;
use vouch_core::api::agent::{
    AgentInfo, PubkeyResponse, QuoteResponse, UkeyRequest, VerifyResponse, VkeyRequest,
};
use vouch_core::api::envelope::Envelope;
use vouch_core::api::version::{AgentVersionInfo, ApiVersion, AGENT_SUPPORTED_VERSIONS};

/// Everything the handlers share.
pub struct AppState {
    pub agent_id: String,
    pub quoter: Quoter,
    pub keys: Keys,
    pub enc_alg: &'static str,
    pub sign_alg: &'static str,
    /// TPM handle of the AK as `/agent/info` reports it (informational; the AK is loaded on
    /// demand, so this is the persistent-handle placeholder rust-keylime reports when unset).
    pub ak_handle: u32,
    /// The IMA log integrity quotes carry.
    pub ima_log: crate::measurements::ImaLog,
    /// The UEFI event log file integrity quotes with PCR 0 carry.
    pub event_log: std::path::PathBuf,
    /// How revocation notices are checked and acted on.
    pub revocation: RevocationSetup,
}

/// What `POST /notifications/revocation` needs (see `revocation.rs`).
#[derive(Debug, Clone)]
pub struct RevocationSetup {
    pub config: RevocationConfig,
    /// `<secure_mount>/unzipped`: the payload's notifier certificate, `action_list` and actions.
    pub unzipped_dir: std::path::PathBuf,
    /// The replay record (`<state_dir>/revocation-seen.json`); its directory is the actions'
    /// working directory.
    pub seen_store: std::path::PathBuf,
}

type Shared = Arc<AppState>;

impl crate::watch::Signer for AppState {
    fn nk(&self) -> &vouch_core::keylime::NodeKey {
        self.keys.nk()
    }
}
type Query2 = Result<Query<HashMap<String, String>>, QueryRejection>;

/// An error answer: HTTP status + envelope with `results: {}`.
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<BadParam> for ApiError {
    fn from(e: BadParam) -> Self {
        Self::bad(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.code.is_server_error() {
            tracing::error!(code = self.code.as_u16(), "{}", self.message);
        } else {
            tracing::info!(code = self.code.as_u16(), "{}", self.message);
        }
        (
            self.code,
            Json(Envelope::error(self.code.as_u16(), self.message)),
        )
            .into_response()
    }
}

fn ok<T: Serialize>(results: T) -> Response {
    Json(Envelope::success(results)).into_response()
}

/// Resolve the `{v}` path segment.
fn version(segment: &str) -> Result<ApiVersion, ApiError> {
    ApiVersion::from_url_segment(segment, &AGENT_SUPPORTED_VERSIONS)
        .ok_or_else(|| ApiError::bad(format!("API version not supported: {segment}")))
}

fn params(q: Query2) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::bad(format!("Malformed query string: {e}")))
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/version", get(get_version))
        .route("/{v}/quotes/identity", get(identity_quote))
        .route("/{v}/quotes/integrity", get(integrity_quote))
        .route("/{v}/keys/pubkey", get(pubkey))
        .route("/{v}/keys/ukey", post(ukey))
        .route("/{v}/keys/vkey", post(vkey))
        .route("/{v}/keys/verify", get(verify))
        .route("/{v}/agent/info", get(info))
        .route("/{v}/notifications/revocation", post(revocation))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError {
        code: StatusCode::NOT_FOUND,
        message: "Not Found".into(),
    }
}

async fn get_version() -> Response {
    ok(AgentVersionInfo::vouch_agent())
}

async fn identity_quote(
    State(s): State<Shared>,
    Path(v): Path<String>,
    q: Query2,
) -> Result<Response, ApiError> {
    version(&v)?;
    let p = params(q)?;
    let nonce = Nonce::parse(p.get("nonce").map(String::as_str))?;
    Ok(ok(quote(&s, &nonce, PcrMask::identity(), true).await?))
}

async fn integrity_quote(
    State(s): State<Shared>,
    Path(v): Path<String>,
    q: Query2,
) -> Result<Response, ApiError> {
    version(&v)?;
    let p = params(q)?;
    let nonce = Nonce::parse(p.get("nonce").map(String::as_str))?;
    let mask = PcrMask::parse(p.get("mask").map(String::as_str))?;
    let with_pubkey = match p.get("partial").map(String::as_str) {
        Some("0") => true,
        Some("1") => false,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "Invalid partial {other:?}: expected 0 or 1"
            )))
        }
        None => return Err(ApiError::bad("Missing query parameter: partial")),
    };
    let ima_ml_entry = match p.get("ima_ml_entry") {
        Some(e) => e.parse::<u64>().map_err(|_| {
            ApiError::bad(format!(
                "Invalid ima_ml_entry {e:?}: expected a non-negative integer"
            ))
        })?,
        None => 0,
    };
    let mut response = quote(&s, &nonce, mask, with_pubkey).await?;
    // Read after the quote: the logs then hold at least what the quoted PCRs cover.
    let shared = s.clone();
    let include_event_log = mask.includes(0);
    let (ima, event_log) = tokio::task::spawn_blocking(move || {
        let ima = shared.ima_log.read_from(ima_ml_entry);
        let event_log = include_event_log
            .then(|| crate::measurements::read_event_log(&shared.event_log))
            .transpose();
        (ima, event_log)
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the measurement logs: {e}")))?;
    let ima = ima.map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(slice) = ima {
        response.ima_measurement_list = Some(slice.text);
        response.ima_measurement_list_entry = Some(slice.first_entry);
        response.boottime = Some(crate::measurements::boottime());
    }
    response.mb_measurement_list = event_log
        .map_err(|e| ApiError::internal(e.to_string()))?
        .flatten();
    Ok(ok(response))
}

/// Without an IMA log (none on this kernel) the response has no `ima_measurement_list` /
/// `ima_measurement_list_entry`, exactly like rust-keylime when IMA is unavailable; a verifier
/// whose policy puts PCR 10 in the mask then fails the quote (`unused_pcr_10`), as upstream.
async fn quote(
    s: &AppState,
    nonce: &Nonce,
    mask: PcrMask,
    with_pubkey: bool,
) -> Result<QuoteResponse, ApiError> {
    let q = s
        .quoter
        .quote(nonce, mask)
        .await
        .map_err(|e| ApiError::internal(format!("Unable to retrieve quote: {e}")))?;
    let quote = q
        .encode()
        .map_err(|e| ApiError::internal(format!("Unable to encode quote: {e}")))?;
    Ok(QuoteResponse {
        quote,
        hash_alg: s.quoter.bank().name().into(),
        enc_alg: s.enc_alg.into(),
        sign_alg: s.sign_alg.into(),
        pubkey: with_pubkey.then(|| s.quoter.nk_pem().to_string()),
        ima_measurement_list: None,
        ima_measurement_list_entry: None,
        mb_measurement_list: None,
        boottime: None,
    })
}

async fn pubkey(State(s): State<Shared>, Path(v): Path<String>) -> Result<Response, ApiError> {
    version(&v)?;
    Ok(ok(PubkeyResponse {
        pubkey: s.quoter.nk_pem().to_string(),
    }))
}

async fn info(State(s): State<Shared>, Path(v): Path<String>) -> Result<Response, ApiError> {
    let v = version(&v)?;
    if v < ApiVersion::new(2, 2) {
        return Err(not_found().await);
    }
    // From 2.5 rust-keylime names the key size too (`agent_handler.rs:info`).
    let enc = match (s.enc_alg, v >= ApiVersion::new(2, 5)) {
        ("rsa", true) => "rsa2048",
        ("ecc", true) => "ecc256",
        (other, _) => other,
    };
    Ok(ok(AgentInfo {
        agent_uuid: s.agent_id.clone(),
        tpm_hash_alg: s.quoter.bank().name().into(),
        tpm_enc_alg: enc.into(),
        tpm_sign_alg: s.sign_alg.into(),
        ak_handle: s.ak_handle,
    }))
}

fn keys_error(e: KeysError) -> ApiError {
    match e {
        KeysError::Payload { .. } => ApiError::internal(e.to_string()),
        other => ApiError::bad(other.to_string()),
    }
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::bad(format!("Malformed request body: {}", e.body_text())))
}

async fn ukey(
    State(s): State<Shared>,
    Path(v): Path<String>,
    b: Result<Json<UkeyRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    version(&v)?;
    s.keys.add_u(&body(b)?).await.map_err(keys_error)?;
    Ok(ok(vouch_core::api::envelope::Empty {}))
}

async fn vkey(
    State(s): State<Shared>,
    Path(v): Path<String>,
    b: Result<Json<VkeyRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    version(&v)?;
    s.keys.add_v(&body(b)?).await.map_err(keys_error)?;
    Ok(ok(vouch_core::api::envelope::Empty {}))
}

async fn verify(
    State(s): State<Shared>,
    Path(v): Path<String>,
    q: Query2,
) -> Result<Response, ApiError> {
    version(&v)?;
    let p = params(q)?;
    let challenge = p
        .get("challenge")
        .ok_or_else(|| ApiError::bad("Missing query parameter: challenge"))?;
    let hmac = s.keys.verify(challenge).await.map_err(keys_error)?;
    Ok(ok(VerifyResponse {
        hmac: hmac.to_hex(),
    }))
}

/// Verify the notice and record it as seen, answer, then run the actions in the background
/// (rust-keylime answers once the notice verified, too). Refusals are 400 with the reason;
/// a replay record or certificate file that cannot be read is the agent's fault: 500.
async fn revocation(
    State(s): State<Shared>,
    Path(v): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    version(&v)?;
    let r = &s.revocation;
    let accepted = accept_notice(&body, &r.unzipped_dir, &r.config, &r.seen_store)
        .await
        .map_err(|e| match e {
            RevocationError::SeenStore { .. } | RevocationError::Certificate { .. } => {
                ApiError::internal(format!("Revocation notice not processed: {e}"))
            }
            e => ApiError::bad(format!("Revocation notice refused: {e}")),
        })?;
    let setup = r.clone();
    let revoked = accepted.notice().message().agent_id.clone();
    let span = tracing::info_span!("revocation", revoked_agent = %revoked);
    tokio::spawn(
        async move {
            let work_dir = setup.seen_store.parent().map_or_else(
                || std::path::PathBuf::from("."),
                std::path::Path::to_path_buf,
            );
            let outcomes =
                run_actions(&accepted, &setup.unzipped_dir, &setup.config, &work_dir).await;
            let failed = outcomes.iter().filter(|o| !o.succeeded()).count();
            tracing::info!(
                actions = outcomes.len(),
                failed,
                "revocation actions finished"
            );
        }
        .instrument(span),
    );
    Ok(ok(vouch_core::api::envelope::Empty {}))
}
