//! What Vouch's HTTP daemons (registrar, verifier, agent) share: reading a JSON body into a typed
//! request with keylime-style messages, rendering refusals as keylime's response envelope,
//! running a handler inside an agent's span, and the process edge (logging, signals).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use std::future::Future;
use tracing::Instrument;
use vouch_core::api::envelope::Envelope;

/// Why a request body could not become the typed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the router's body limit; each daemon answers with its upstream's status.
    TooLarge,
    /// Unreadable or not the expected JSON: a complete, upstream-style message.
    Malformed(String),
}

/// Read and parse a JSON body whatever its content type (upstream's clients do not always set
/// one), within the body limit the router enforces.
pub async fn json_body<T, S>(req: Request, state: &S) -> Result<T, BodyError>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                BodyError::TooLarge
            } else {
                BodyError::Malformed(format!("Malformed Request Parameter: {}", e.body_text()))
            }
        })?;
    parse_json(&bytes)
}

/// Parse JSON bytes with keylime-style messages that say whether the JSON or its shape is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        BodyError::Malformed(match e.classify() {
            Category::Data => format!("Malformed Request Parameter: invalid request body: {e}"),
            _ => format!("Malformed Request Parameter: request body is not valid JSON: {e}"),
        })
    })
}

/// A refusal as keylime's envelope, logged at error (5xx) or warn level.
pub fn error_response(status: StatusCode, message: String) -> Response {
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), "{message}");
    } else {
        tracing::warn!(status = status.as_u16(), "{message}");
    }
    (status, Json(Envelope::error(status.as_u16(), message))).into_response()
}

/// Run a handler body inside `span` (carrying the agent id), rendering the response — and so
/// logging any refusal — inside it.
pub async fn in_span<R: IntoResponse>(
    span: tracing::Span,
    body: impl Future<Output = R>,
) -> Response {
    async move { body.await.into_response() }
        .instrument(span)
        .await
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// `listener` for `axum::serve`, with TCP_NODELAY on every accepted connection. Keylime's
/// exchanges are one small request and one small response; with Nagle's algorithm on, a response
/// written in two segments waits for the peer's delayed ACK (40 ms on Linux) before its second
/// part leaves — measured as 40 ms on most `vouch` calls before this was set.
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY: {e}");
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Req {
        n: u32,
    }

    #[test]
    fn messages_say_whether_json_or_shape_is_wrong() {
        assert_eq!(parse_json::<Req>(br#"{"n": 3}"#), Ok(Req { n: 3 }));
        let BodyError::Malformed(m) = parse_json::<Req>(b"{").unwrap_err() else {
            panic!()
        };
        assert!(
            m.starts_with("Malformed Request Parameter: request body is not valid JSON"),
            "{m}"
        );
        let BodyError::Malformed(m) = parse_json::<Req>(br#"{"n": "x"}"#).unwrap_err() else {
            panic!()
        };
        assert!(
            m.starts_with("Malformed Request Parameter: invalid request body: invalid type"),
            "{m}"
        );
    }
}
