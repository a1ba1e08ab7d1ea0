//! Shared by the vouch-tls integration tests: a generated TLS directory, an axum app served
//! over `serve_tls` on a port the OS picks, and reqwest clients built from rustls configs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::routing::get;
use axum::{Extension, Router};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vouch_tls::{Ca, PeerCertificates, SubjectName};

/// `GET /whoami` answers the client certificate's CN, or `anonymous`.
pub fn app() -> Router {
    Router::new().route(
        "/whoami",
        get(|peer: Option<Extension<PeerCertificates>>| async move {
            peer.and_then(|Extension(p)| p.common_name())
                .unwrap_or_else(|| "anonymous".into())
        }),
    )
}

pub fn names(list: &[&str]) -> Vec<SubjectName> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

/// A CA in `dir` with a server certificate for 127.0.0.1/localhost and a client `client`.
pub fn tls_dir(dir: &Path) -> Ca {
    let ca = Ca::create(dir, "Vouch Test CA").unwrap();
    ca.issue_server(&names(&["127.0.0.1", "localhost"]))
        .unwrap();
    ca.issue_client("client").unwrap();
    ca
}

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub async fn start(config: Arc<rustls::ServerConfig>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(vouch_tls::serve_tls(listener, config, app(), async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/whoami", self.addr.port())
    }

    /// Signal shutdown and wait for `serve_tls` to return.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.task.take().unwrap(),
        )
        .await
        .expect("serve_tls returns after shutdown")
        .unwrap();
    }
}

pub fn client(config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET `url`; Ok(body) on 200, Err(the whole error chain as text) otherwise.
pub async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, String> {
    match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.map_err(|e| chain(&e))?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("HTTP {status}: {body}"))
            }
        }
        Err(e) => Err(chain(&e)),
    }
}

pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
