//! The named-policy APIs (`docs/keylime-wire.md` §5), one set of handlers for both stores:
//!
//! - `/allowlists/{name}`, upstream's `AllowlistHandler`: body `{"runtime_policy": b64(JSON),
//!   "runtime_policy_key": "", "tpm_policy": …}`; GET shows `{"name", "tpm_policy": null,
//!   "runtime_policy": "<JSON text>"}`, the list is `{"runtimepolicy names": [...]}`.
//! - `/mbpolicies/{name}`, upstream's `MbpolicyHandler`: body `{"mb_policy": "<refstate JSON
//!   text>"}`; GET shows `{"name", "mb_policy": "<JSON text>"}`, the list is
//!   `{"mbpolicy names": [...]}`.
//!
//! Both: POST creates (201; 409 if the name exists), PUT replaces (201; unknown name 404 for
//! allowlists, 409 for mbpolicies, as upstream), DELETE removes (204; 409 while an agent uses
//! it), GET/DELETE of an unknown name 404. A policy is parsed and checked before it is stored;
//! a refused one is a 400 with the reason, and nothing is written.

use crate::db::{self, PolicyDelete};
use crate::error::ApiError;
use crate::mb_policy;
use crate::named_policy::{check_name, PolicyKind, PolicyRefusal};
use crate::routes::{ok, version_of, AppState, JsonBody};
use crate::runtime_policy::decode;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use vouch_core::api::envelope::Envelope;

/// What differs between the two stores.
pub trait PolicyApi: 'static {
    const KIND: PolicyKind;
    /// The URL segment after `/v{ver}/`.
    const SEGMENT: &'static str;
    /// The POST/PUT body.
    type Body: DeserializeOwned + Send + 'static;
    /// The text to store, proven usable; a refusal is a 400 with the reason.
    fn text_of(state: &AppState, body: Self::Body) -> Result<String, ApiError>;
    /// The GET body of one policy.
    fn shown(name: String, text: String) -> Value;
    /// Forget any compiled copy of policy `name` (replaced or deleted).
    fn forget(_state: &AppState, _name: &str) {}
}

/// `/allowlists`: runtime (IMA) policies.
#[derive(Debug)]
pub struct RuntimePolicies;

/// `/allowlists` POST/PUT body.
#[derive(Debug, Deserialize)]
pub struct RuntimePolicyBody {
    pub runtime_policy: String,
    #[serde(default)]
    pub runtime_policy_key: Option<String>,
    /// Accepted and ignored, as upstream stores it next to the policy but never uses it.
    #[serde(default)]
    pub tpm_policy: Option<Value>,
}

impl PolicyApi for RuntimePolicies {
    const KIND: PolicyKind = PolicyKind::Runtime;
    const SEGMENT: &'static str = "allowlists";
    type Body = RuntimePolicyBody;

    fn text_of(_state: &AppState, body: RuntimePolicyBody) -> Result<String, ApiError> {
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
        decode(&body.runtime_policy)
            .map_err(|e| ApiError::BadRequest(format!("runtime_policy: {e}")))
    }

    fn shown(name: String, text: String) -> Value {
        json!({"name": name, "tpm_policy": null, "runtime_policy": text})
    }

    fn forget(state: &AppState, name: &str) {
        state.policies.invalidate(name);
    }
}

/// `/mbpolicies`: measured-boot policies (refstates).
#[derive(Debug)]
pub struct MbPolicies;

/// `/mbpolicies` POST/PUT body, as `keylime_tenant -c addmbpolicy` sends it: `mb_policy` is
/// the refstate's JSON text (a string). Read as any JSON value to say precisely what is wrong.
#[derive(Debug, Deserialize)]
pub struct MbPolicyBody {
    #[serde(default)]
    pub mb_policy: Value,
}

impl PolicyApi for MbPolicies {
    const KIND: PolicyKind = PolicyKind::MeasuredBoot;
    const SEGMENT: &'static str = "mbpolicies";
    type Body = MbPolicyBody;

    /// Upstream stores whatever `mb_policy` holds, null included; Vouch stores only a refstate
    /// that loads with the configured engine.
    fn text_of(state: &AppState, body: MbPolicyBody) -> Result<String, ApiError> {
        let refstate = match body.mb_policy {
            Value::String(s) if !s.is_empty() => s,
            Value::Null | Value::String(_) => {
                return Err(ApiError::BadRequest(
                    "mb_policy: missing, null or empty; send the refstate's JSON text as a \
                     string ({\"mb_policy\": \"{\\\"has_secureboot\\\": true, ...}\"})"
                        .into(),
                ))
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "mb_policy: must be the refstate's JSON text as a string (as upstream's \
                     tenant sends it), not a JSON {}",
                    json_type(&other)
                )))
            }
        };
        mb_policy::check_refstate(state.mb_engine, &refstate)
            .map_err(|e| ApiError::BadRequest(format!("mb_policy: {e}")))?;
        Ok(refstate)
    }

    fn shown(name: String, text: String) -> Value {
        json!({"name": name, "mb_policy": text})
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The routes of store `P`.
pub fn routes<P: PolicyApi>() -> Router<AppState> {
    let base = format!("/{{ver}}/{}", P::SEGMENT);
    Router::new()
        .route(&base, get(list::<P>))
        .route(&format!("{base}/"), get(list::<P>))
        .route(
            &format!("{base}/{{name}}"),
            get(show::<P>)
                .post(create::<P>)
                .put(update::<P>)
                .delete(delete::<P>),
        )
}

fn name_param(p: Result<Path<(String, String)>, PathRejection>) -> Result<String, ApiError> {
    let Path((ver, name)) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    version_of(&ver)?;
    check_name(&name).map_err(ApiError::BadRequest)?;
    Ok(name)
}

/// Upstream's `echo_json_response(handler, 201)`: the status text is the reason phrase.
fn created() -> Response {
    (
        StatusCode::CREATED,
        axum::Json(Envelope {
            code: 201,
            status: "Created".into(),
            results: json!({}),
        }),
    )
        .into_response()
}

fn refused<P: PolicyApi>(name: String, refusal: PolicyRefusal) -> ApiError {
    ApiError::policy(P::KIND, name, refusal)
}

pub async fn list<P: PolicyApi>(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(ver) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    version_of(&ver)?;
    let names = state.db.call(|c| db::list_policies(c, P::KIND)).await?;
    let mut body = serde_json::Map::new();
    body.insert(P::KIND.list_key().into(), json!(names));
    Ok(ok(Value::Object(body)).into_response())
}

pub async fn show<P: PolicyApi>(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = name_param(p)?;
    let key = name.clone();
    let Some(text) = state
        .db
        .call(move |c| db::get_policy(c, P::KIND, &key))
        .await?
    else {
        return Err(refused::<P>(name, PolicyRefusal::NotFound));
    };
    Ok(ok(P::shown(name, text)).into_response())
}

pub async fn create<P: PolicyApi>(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<P::Body>, ApiError>,
) -> Result<Response, ApiError> {
    let name = name_param(p)?;
    let JsonBody(body) = body?;
    let text = P::text_of(&state, body)?;
    let key = name.clone();
    if !state
        .db
        .call(move |c| db::insert_policy(c, P::KIND, &key, &text))
        .await?
    {
        return Err(refused::<P>(name, PolicyRefusal::ExistsOnCreate));
    }
    tracing::info!(policy = %name, "{} created", P::KIND.noun());
    Ok(created())
}

pub async fn update<P: PolicyApi>(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    body: Result<JsonBody<P::Body>, ApiError>,
) -> Result<Response, ApiError> {
    let name = name_param(p)?;
    let JsonBody(body) = body?;
    let text = P::text_of(&state, body)?;
    let key = name.clone();
    if !state
        .db
        .call(move |c| db::update_policy(c, P::KIND, &key, &text))
        .await?
    {
        return Err(refused::<P>(name, PolicyRefusal::MissingOnUpdate));
    }
    P::forget(&state, &name);
    tracing::info!(policy = %name, "{} replaced", P::KIND.noun());
    Ok(created())
}

pub async fn delete<P: PolicyApi>(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = name_param(p)?;
    let key = name.clone();
    match state
        .db
        .call(move |c| db::delete_policy(c, P::KIND, &key))
        .await?
    {
        PolicyDelete::Deleted => {
            P::forget(&state, &name);
            tracing::info!(policy = %name, "{} deleted", P::KIND.noun());
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        PolicyDelete::NotFound => Err(refused::<P>(name, PolicyRefusal::NotFound)),
        PolicyDelete::InUse(agent) => Err(refused::<P>(name, PolicyRefusal::InUse { agent })),
    }
}
