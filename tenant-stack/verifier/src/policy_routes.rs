//! `/allowlists/{name}`: named runtime (IMA) policies, as upstream's `AllowlistHandler`
//! (`docs/keylime-wire.md` §5): POST creates (201, 409 if the name exists), PUT replaces
//! (201, 404 if missing), GET shows one (`name`, `tpm_policy`, `runtime_policy` = the JSON
//! text) or lists names (`{"runtimepolicy names": [...]}`), DELETE removes (204; 409 while an
//! agent uses it). Bodies: `{"runtime_policy": b64(JSON), "runtime_policy_key": "",
//! "tpm_policy": …}`. A policy is parsed and compiled before it is stored.

use crate::db::{self, PolicyDelete};
use crate::error::ApiError;
use crate::routes::{ok, version_of, AppState, JsonBody};
use crate::runtime_policy::{check_name, decode};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vouch_core::api::envelope::Envelope;

/// POST/PUT body.
#[derive(Debug, Deserialize)]
pub struct PolicyBody {
    pub runtime_policy: String,
    #[serde(default)]
    pub runtime_policy_key: Option<String>,
    /// Accepted and ignored, as upstream stores it next to the policy but never uses it.
    #[serde(default)]
    pub tpm_policy: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct PolicyShown {
    pub name: String,
    pub tpm_policy: Option<String>,
    pub runtime_policy: String,
}

#[derive(Debug, Serialize)]
pub struct PolicyNames {
    #[serde(rename = "runtimepolicy names")]
    pub names: Vec<String>,
}

fn name_param(p: Result<Path<(String, String)>, PathRejection>) -> Result<String, ApiError> {
    let Path((ver, name)) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    version_of(&ver)?;
    check_name(&name).map_err(ApiError::BadRequest)?;
    Ok(name)
}

fn policy_of(body: PolicyBody) -> Result<String, ApiError> {
    if body
        .runtime_policy_key
        .as_deref()
        .is_some_and(|k| !k.is_empty())
    {
        return Err(ApiError::BadRequest(
            "signed runtime policies are not supported by this verifier; send runtime_policy_key \"\""
                .into(),
        ));
    }
    decode(&body.runtime_policy).map_err(|e| ApiError::BadRequest(format!("runtime_policy: {e}")))
}

fn created() -> Response {
    (
        StatusCode::CREATED,
        axum::Json(Envelope {
            code: 201,
            status: "Success".into(),
            results: serde_json::json!({}),
        }),
    )
        .into_response()
}

pub async fn list(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(ver) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    version_of(&ver)?;
    let names = state.db.call(|c| db::list_runtime_policies(c)).await?;
    Ok(ok(PolicyNames { names }).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = name_param(p)?;
    let key = name.clone();
    let policy = state
        .db
        .call(move |c| db::get_runtime_policy(c, &key))
        .await?
        .ok_or_else(|| ApiError::PolicyNotFound(name.clone()))?;
    Ok(ok(PolicyShown {
        name,
        tpm_policy: None,
        runtime_policy: policy,
    })
    .into_response())
}

pub async fn create(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<PolicyBody>, ApiError>,
) -> Result<Response, ApiError> {
    let name = name_param(p)?;
    let JsonBody(body) = body?;
    let json = policy_of(body)?;
    let key = name.clone();
    if !state
        .db
        .call(move |c| db::insert_runtime_policy(c, &key, &json))
        .await?
    {
        return Err(ApiError::PolicyExists(name));
    }
    tracing::info!(policy = %name, "runtime policy created");
    Ok(created())
}

pub async fn update(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<PolicyBody>, ApiError>,
) -> Result<Response, ApiError> {
    let name = name_param(p)?;
    let JsonBody(body) = body?;
    let json = policy_of(body)?;
    let key = name.clone();
    if !state
        .db
        .call(move |c| db::update_runtime_policy(c, &key, &json))
        .await?
    {
        return Err(ApiError::PolicyNotFound(name));
    }
    state.policies.invalidate(&name);
    tracing::info!(policy = %name, "runtime policy replaced");
    Ok(created())
}

pub async fn delete(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = name_param(p)?;
    let key = name.clone();
    match state
        .db
        .call(move |c| db::delete_runtime_policy(c, &key))
        .await?
    {
        PolicyDelete::Deleted => {
            state.policies.invalidate(&name);
            tracing::info!(policy = %name, "runtime policy deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        PolicyDelete::NotFound => Err(ApiError::PolicyNotFound(name)),
        PolicyDelete::InUse(agent) => Err(ApiError::PolicyInUse { agent }),
    }
}
