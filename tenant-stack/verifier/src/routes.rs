//! HTTP routes (`docs/keylime-wire.md` §5) and their handlers. Every response, errors
//! included, is the keylime envelope; axum's plain-text rejections are mapped to it.

use crate::admission;
use crate::db::{self, Db, StoredAgent};
use crate::error::ApiError;
use crate::mb_policy::Engine;
use crate::named_policy::{self, AddOutcome, PolicyKind, PolicyRefusal};
use crate::policy_routes::{self, MbPolicies, RuntimePolicies};
use crate::poller::Poller;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use vouch_core::api::envelope::{Empty, Envelope};
use vouch_core::api::registrar::AgentId;
use vouch_core::api::verifier::{
    AddAgentRequest, AgentList, AgentStatus, BulkStatus, OperationalState,
};
use vouch_core::api::version::{ApiVersion, ServerVersionInfo, SERVER_SERVED_VERSIONS};

/// What status bodies report about this verifier.
#[derive(Debug, Clone)]
pub struct VerifierInfo {
    pub verifier_id: String,
    pub ip: String,
    pub port: u16,
    pub quote_interval: Duration,
}

/// Shared by all handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub poller: Poller,
    /// Compiled runtime policies, shared with the poller; dropped here when replaced/deleted.
    pub policies: Arc<crate::runtime_policy::PolicyCache>,
    /// Reads measured-boot refstates (`measured_boot_policy_name`).
    pub mb_engine: Engine,
    /// `enable_agent_mtls`: adds must carry the agent's PEM `mtls_cert` (`admission.rs`).
    pub enable_agent_mtls: bool,
    pub max_body_bytes: usize,
    pub info: Arc<VerifierInfo>,
}

pub(crate) type ApiResult<T> = Result<Json<Envelope<T>>, ApiError>;

pub(crate) fn ok<T>(results: T) -> ApiResult<T> {
    Ok(Json(Envelope::success(results)))
}

use vouch_service::{in_span, BodyError};

/// A JSON body: any content type, size-limited, parse errors as envelope 400 (upstream's
/// tornado also answers 400 to an oversized body). Same as `vouch-registrar`'s extractor
/// except for that status.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        vouch_service::json_body(req, state)
            .await
            .map(JsonBody)
            .map_err(|e| match e {
                BodyError::TooLarge => ApiError::BadRequest(format!(
                    "Malformed Request Parameter: request body exceeds the limit of {} bytes",
                    state.max_body_bytes
                )),
                BodyError::Malformed(m) => ApiError::BadRequest(m),
            })
    }
}

pub(crate) fn version_of(segment: &str) -> Result<ApiVersion, ApiError> {
    ApiVersion::from_url_segment(segment, &SERVER_SERVED_VERSIONS)
        .ok_or_else(|| ApiError::UnknownVersion(segment.to_owned()))
}

fn path_params(
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(ApiVersion, AgentId), ApiError> {
    let Path((ver, id)) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let ver = version_of(&ver)?;
    let id = AgentId::parse(&id).map_err(|e| ApiError::BadAgentId(e.to_string()))?;
    Ok((ver, id))
}

/// The finished router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/versions", get(version))
        .route("/{ver}/agents", get(list))
        .route("/{ver}/agents/", get(list))
        .route("/{ver}/agents/{id}", get(status).post(add).delete(delete))
        .route("/{ver}/agents/{id}/", get(status).post(add).delete(delete))
        .route("/{ver}/agents/{id}/reactivate", put(reactivate))
        .route("/{ver}/agents/{id}/stop", put(stop))
        .merge(policy_routes::routes::<RuntimePolicies>())
        .merge(policy_routes::routes::<MbPolicies>())
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn version() -> Json<Envelope<ServerVersionInfo>> {
    Json(Envelope::success(ServerVersionInfo::upstream()))
}

/// The status body of `process_get_status` (§5.2) plus `failure_reason`.
pub fn status_of(a: &StoredAgent, info: &VerifierInfo) -> AgentStatus {
    AgentStatus {
        operational_state: a.state,
        v: a.v.clone(),
        ip: a.ip.clone(),
        port: a.port,
        tpm_policy: a.tpm_policy.clone(),
        meta_data: a.meta_data.clone(),
        // Upstream: 1 when the agent's mb policy row holds a refstate (not null); Vouch stores
        // a row only for a refstate, so any mb policy name means one.
        has_mb_refstate: u8::from(a.mb_policy_name.is_some()),
        has_runtime_policy: u8::from(a.runtime_policy_name.is_some()),
        accept_tpm_hash_algs: a.accept_tpm_hash_algs.clone(),
        accept_tpm_encryption_algs: a.accept_tpm_encryption_algs.clone(),
        accept_tpm_signing_algs: a.accept_tpm_signing_algs.clone(),
        hash_alg: a.hash_alg.clone(),
        enc_alg: a.enc_alg.clone(),
        sign_alg: a.sign_alg.clone(),
        verifier_id: info.verifier_id.clone(),
        verifier_ip: info.ip.clone(),
        verifier_port: info.port,
        severity_level: a.severity_level,
        last_event_id: a.last_event_id.clone(),
        attestation_count: a.attestation_count,
        last_received_quote: a.last_received_quote,
        last_successful_attestation: a.last_successful_attestation,
        attestation_status: a.state.attestation_status(),
        attestation_period: Some(format!("{}s", info.quote_interval.as_secs_f64())),
        maximum_attestation_interval: None,
        failure_reason: a.failure_reason.clone(),
    }
}

async fn add(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<AddAgentRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let (_, id) = path_params(p)?;
    let span = tracing::info_span!("add", agent_id = %id);
    Ok(in_span(span, async move {
        let JsonBody(req) = body?;
        let admitted = admission::admit(&id, req, state.mb_engine, state.enable_agent_mtls)?;
        let agent = admitted.agent.clone();
        let outcome = state
            .db
            .call(move |c| {
                named_policy::insert_with_policies(
                    c,
                    &admitted.agent,
                    &[
                        (PolicyKind::Runtime, &admitted.runtime),
                        (PolicyKind::MeasuredBoot, &admitted.mb),
                    ],
                )
            })
            .await?;
        match outcome {
            AddOutcome::Added => {}
            AddOutcome::AgentExists => return Err(ApiError::Conflict(id.to_string())),
            AddOutcome::PolicyExists(kind, name) => {
                let by_agent_id = name == id.as_str();
                let refusal = PolicyRefusal::ExistsOnAdd { by_agent_id };
                return Err(ApiError::policy(kind, name, refusal));
            }
            AddOutcome::PolicyMissing(kind, name) => {
                return Err(ApiError::policy(kind, name, PolicyRefusal::MissingOnAdd))
            }
        }
        tracing::info!(ip = %agent.ip, port = agent.port, "agent added; polling starts");
        state
            .poller
            .schedule(&agent.agent_id, agent.epoch, Duration::ZERO);
        ok(Empty {})
    })
    .await)
}

async fn load(state: &AppState, id: &AgentId) -> Result<StoredAgent, ApiError> {
    let key = id.as_str().to_owned();
    state
        .db
        .call(move |c| db::get_agent(c, &key))
        .await?
        .ok_or_else(|| ApiError::NotFound(id.to_string()))
}

async fn status(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (_, id) = path_params(p)?;
    let span = tracing::debug_span!("status", agent_id = %id);
    Ok(in_span(span, async move {
        let agent = load(&state, &id).await?;
        ok(status_of(&agent, &state.info))
    })
    .await)
}

async fn list(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Path(ver) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    version_of(&ver)?;
    // `?verifier=<id>` filters by verifier (all ours, or none).
    let ours = q
        .get("verifier")
        .is_none_or(|v| *v == state.info.verifier_id);
    let bulk = q
        .get("bulk")
        .is_some_and(|b| matches!(b.as_str(), "True" | "true" | "1"));
    if bulk {
        let agents = if ours {
            state.db.call(|c| db::list_agents(c)).await?
        } else {
            Vec::new()
        };
        let body: BulkStatus = agents
            .iter()
            .map(|a| (a.agent_id.clone(), status_of(a, &state.info)))
            .collect();
        return Ok(Json(Envelope::success(body)).into_response());
    }
    let ids = if ours {
        state.db.call(|c| db::list_agent_ids(c)).await?
    } else {
        Vec::new()
    };
    Ok(Json(Envelope::success(AgentList::from_ids(ids))).into_response())
}

async fn delete(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (_, id) = path_params(p)?;
    let span = tracing::info_span!("delete", agent_id = %id);
    let result = async move {
        let agent = load(&state, &id).await?;
        let key = id.as_str().to_owned();
        // Deleting the row also ends its polling: a step in flight finds no row and stops.
        if !state.db.call(move |c| db::delete_agent(c, &key)).await? {
            return Err(ApiError::NotFound(id.to_string()));
        }
        tracing::info!(state = %agent.state, "agent deleted");
        // Upstream answers 202 for agents being polled (deleted by the poll loop later) and
        // 200 otherwise; the row is gone in both cases here, so the tenant's follow-up GET
        // sees 404 at once.
        let code = if agent.state.deletable_now() {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        let status = if code == StatusCode::OK {
            "Success"
        } else {
            "Accepted"
        };
        Ok((code, Json(Envelope::new(code.as_u16(), status, Empty {}))).into_response())
    }
    .instrument(span)
    .await;
    Ok(result.unwrap_or_else(|e: ApiError| e.into_response()))
}

async fn tenant_action(
    state: AppState,
    p: Result<Path<(String, String)>, PathRejection>,
    target: OperationalState,
) -> Result<Response, ApiError> {
    let (_, id) = path_params(p)?;
    let span = tracing::info_span!("tenant_action", agent_id = %id, action = target.constant());
    Ok(in_span(span, async move {
        let key = id.as_str().to_owned();
        let reactivate = target == OperationalState::Start;
        let agent = state
            .db
            .call(move |c| db::set_state_by_tenant(c, &key, target, reactivate))
            .await?
            .ok_or_else(|| ApiError::NotFound(id.to_string()))?;
        if reactivate {
            tracing::info!("reactivated; polling restarts");
            state
                .poller
                .schedule(&agent.agent_id, agent.epoch, Duration::ZERO);
        } else {
            tracing::info!("stopped by the tenant");
        }
        ok(Empty {})
    })
    .await)
}

async fn reactivate(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    tenant_action(state, p, OperationalState::Start).await
}

async fn stop(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    tenant_action(state, p, OperationalState::TenantFailed).await
}
