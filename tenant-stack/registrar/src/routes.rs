//! HTTP routes (`docs/keylime-wire.md` §3) and their handlers. Every response, errors
//! included, is the keylime envelope; axum's plain-text rejections are mapped to it.
//!
//! Two route sets: [`agent_routes`] (version, register, activate — upstream's "insecure ok"
//! routes) and [`admin_routes`] (list, show, delete — upstream requires mTLS with an admin
//! client certificate). A listener gets a router built from one or both (see `server.rs`).

use crate::db::{self, Db};
use crate::error::ApiError;
use crate::registration::{self, Policy};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::SystemTime;
use vouch_core::api::envelope::{Empty, Envelope};
use vouch_core::api::registrar::{
    ActivateRequest, AgentId, AgentList, AgentRecord, RegisterRequest, RegisterResponse,
};
use vouch_core::api::version::{ApiVersion, ServerVersionInfo, SERVER_SERVED_VERSIONS};

/// Shared by all listeners.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub policy: Arc<Policy>,
    pub max_body_bytes: usize,
}

type ApiResult<T> = Result<Json<Envelope<T>>, ApiError>;

fn ok<T>(results: T) -> ApiResult<T> {
    Ok(Json(Envelope::success(results)))
}

use vouch_service::{in_span, BodyError};

/// A JSON body: any content type, size-limited, parse errors as envelope 400 / 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        vouch_service::json_body(req, state)
            .await
            .map(JsonBody)
            .map_err(|e| match e {
                BodyError::TooLarge => ApiError::PayloadTooLarge {
                    limit: state.max_body_bytes,
                },
                BodyError::Malformed(m) => ApiError::BadRequest(m),
            })
    }
}

/// `/{version}/agents/{agent_id}` path parameters, checked.
fn version_of(segment: &str) -> Result<ApiVersion, ApiError> {
    ApiVersion::from_url_segment(segment, &SERVER_SERVED_VERSIONS)
        .ok_or_else(|| ApiError::UnknownVersion(segment.to_owned()))
}

fn path_params(
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(ApiVersion, AgentId), ApiError> {
    let Path((ver, id)) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let ver = version_of(&ver)?;
    let id = AgentId::parse(&id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((ver, id))
}

fn version_param(p: Result<Path<String>, PathRejection>) -> Result<ApiVersion, ApiError> {
    let Path(ver) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    version_of(&ver)
}

/// `/version`, registration and activation: what agents use, on every listener.
pub fn agent_routes() -> Router<AppState> {
    Router::new()
        .route("/version", get(version))
        .route("/{ver}/agents", post(register_body_id))
        .route("/{ver}/agents/", post(register_body_id))
        .route("/{ver}/agents/{id}", post(register).put(activate))
        .route("/{ver}/agents/{id}/", post(register).put(activate))
        .route("/{ver}/agents/{id}/activate", post(activate).put(activate))
}

/// List, show, delete: admin only (mTLS upstream).
pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/{ver}/agents", get(list))
        .route("/{ver}/agents/", get(list))
        .route("/{ver}/agents/{id}", get(show).delete(delete))
        .route("/{ver}/agents/{id}/", get(show).delete(delete))
}

/// Admin paths on a listener that must not serve them: 400, as upstream's HTTP port does.
pub fn admin_refused_routes() -> Router<AppState> {
    async fn refuse() -> ApiError {
        ApiError::AdminNeedsTls
    }
    Router::new()
        .route("/{ver}/agents", get(refuse))
        .route("/{ver}/agents/", get(refuse))
        .route("/{ver}/agents/{id}", get(refuse).delete(refuse))
        .route("/{ver}/agents/{id}/", get(refuse).delete(refuse))
}

/// The finished router for one listener.
pub fn router(state: AppState, admin: bool) -> Router {
    let admin_part = if admin {
        admin_routes()
    } else {
        admin_refused_routes()
    };
    agent_routes()
        .merge(admin_part)
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

async fn register(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<Response, ApiError> {
    let (_, id) = path_params(p)?;
    if let Some(body_id) = &req.agent_id {
        if body_id != id.as_str() {
            return Err(ApiError::BadRequest(format!(
                "agent_id '{body_id}' in the body differs from '{id}' in the path"
            )));
        }
    }
    Ok(do_register(state, id, req).await)
}

async fn register_body_id(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<Response, ApiError> {
    version_param(p)?;
    let id = req.agent_id.as_deref().ok_or_else(|| {
        ApiError::BadRequest("agent_id is required in the body of POST /agents".into())
    })?;
    let id = AgentId::parse(id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(do_register(state, id, req).await)
}

async fn do_register(state: AppState, id: AgentId, req: RegisterRequest) -> Response {
    let span = tracing::info_span!("register", agent_id = %id);
    in_span(span, async move {
        let policy = state.policy.clone();
        // Certificate and key checks plus MakeCredential: CPU work off the async workers.
        let submission = tokio::task::spawn_blocking(move || {
            registration::check_submission(&policy, id, req, SystemTime::now())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("registration task: {e}")))??;
        let policy = state.policy.clone();
        let blob = state
            .db
            .call(move |c| registration::commit_registration(c, &policy, submission))
            .await?;
        ok(RegisterResponse { blob })
    })
    .await
}

async fn activate(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    JsonBody(req): JsonBody<ActivateRequest>,
) -> Result<Response, ApiError> {
    let (_, id) = path_params(p)?;
    let span = tracing::info_span!("activate", agent_id = %id);
    Ok(in_span(span, async move {
        state
            .db
            .call(move |c| registration::activate(c, &id, &req.auth_tag))
            .await?;
        ok(Empty {})
    })
    .await)
}

async fn show(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (_, id) = path_params(p)?;
    let span = tracing::info_span!("show", agent_id = %id);
    Ok(in_span(span, async move {
        ok::<AgentRecord>(state.db.call(move |c| registration::show(c, &id)).await?)
    })
    .await)
}

async fn delete(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (_, id) = path_params(p)?;
    let span = tracing::info_span!("delete", agent_id = %id);
    Ok(in_span(span, async move {
        let key = id.as_str().to_owned();
        if !state.db.call(move |c| db::delete_agent(c, &key)).await? {
            return Err(ApiError::NotFound(id.to_string()));
        }
        tracing::info!("agent deleted");
        ok(Empty {})
    })
    .await)
}

async fn list(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<AgentList> {
    version_param(p)?;
    let uuids = state.db.call(|c| db::list_agent_ids(c)).await?;
    ok(AgentList { uuids })
}
