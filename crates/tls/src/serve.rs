//! Serving an axum `Router` over TLS: one task per connection, handshake and connection errors
//! logged and never fatal, graceful shutdown on a future.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// A client that opens a TCP connection and never finishes the handshake gets this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The certificate chain the client presented, verified by the server config's client
/// verifier; put into the extensions of every request on that connection (absent when the
/// client sent none, possible with `ClientAuth::Optional`). Handlers take it with
/// `Option<axum::Extension<PeerCertificates>>`.
#[derive(Debug, Clone)]
pub struct PeerCertificates(Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificates {
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.0
    }

    pub fn end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }

    /// The client's subject CN: upstream's identity of an admin client.
    pub fn common_name(&self) -> Option<String> {
        self.end_entity().and_then(crate::pem::common_name)
    }
}

/// Serve `router` over TLS on `listener` until `shutdown` completes; then stop accepting, ask
/// every open connection to finish its in-flight request and close, and return once they have.
/// Requests carry [`PeerCertificates`] (if any) and `ConnectInfo<SocketAddr>`.
pub async fn serve_tls<F>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: Router,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let acceptor = TlsAcceptor::from(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Small request/response exchanges: no Nagle delay (see vouch_service::no_delay).
                    if let Err(e) = tcp.set_nodelay(true) {
                        debug!(%peer, "could not set TCP_NODELAY: {e}");
                    }
                    connections.spawn(connection(
                        acceptor.clone(),
                        tcp,
                        peer,
                        router.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "accepting a TCP connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                log_task_end(finished);
            }
        }
    }
    drop(listener);
    // Receivers see `true` even if they start waiting after this send.
    let _ = stop_tx.send(true);
    while let Some(finished) = connections.join_next().await {
        log_task_end(finished);
    }
}

fn log_task_end(finished: Result<(), tokio::task::JoinError>) {
    if let Err(e) = finished {
        warn!(error = %e, "connection task ended abnormally");
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut stop_handshake = stop.clone();
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        outcome = handshake => match outcome {
            Ok(Ok(tls)) => tls,
            // Refused client certificates end here; say why, it is what an operator looks for.
            Ok(Err(e)) => {
                info!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                info!(%peer, "TLS handshake timed out");
                return;
            }
        },
        // Shutting down: a half-open handshake has no request to finish.
        _ = stop_handshake.wait_for(|stopping| *stopping) => return,
    };
    let certs = tls.get_ref().1.peer_certificates().map(|chain| {
        PeerCertificates(Arc::new(
            chain.iter().map(|c| c.clone().into_owned()).collect(),
        ))
    });
    let client = certs.as_ref().and_then(PeerCertificates::common_name);
    debug!(%peer, client = client.as_deref().unwrap_or("-"), "TLS connection");

    let service = router.map_request(move |mut request: Request<Incoming>| {
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(peer));
        if let Some(certs) = &certs {
            extensions.insert(certs.clone());
        }
        request
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let stopping = async move {
        // Err = the server is gone, which also means stop.
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}
