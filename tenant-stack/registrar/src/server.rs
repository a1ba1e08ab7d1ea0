//! Listeners and lifecycle. [`Registrar::start`] opens the database, loads the EK CA store,
//! binds every listener and serves until [`Registrar::shutdown`].
//!
//! Listeners share one [`AppState`]; each gets its own router from `routes::router`:
//! - plain HTTP (`listen`): version, register, activate; admin routes answer 400 unless
//!   `insecure_admin_over_http` (upstream's "insecure ok" routes, wire doc §3);
//! - mTLS (`tls_listen`, when `tls_dir` is set): every route. The handshake requires a client
//!   certificate chaining to `tls_dir/cacert.crt`, so every request on it is an admin's
//!   (upstream accepts the handshake without one and answers 403 on admin routes, §7).

use crate::config::Config;
use crate::db::{self, DbError};
use crate::registration::Policy;
use crate::routes::{self, AppState};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vouch_core::ekcert::{EkCaStore, EkCertError};
use vouch_tls::{ClientCertMode, TlsDir, TlsError};

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("ek_ca_dir: {0} (set ek_ca_dir to a directory of EK CA certificates, or require_ek_cert = false to accept unverified EKs)")]
    EkCa(EkCertError),
    #[error("tls_dir {}: {cause} (create it with `vouch certs init --dir {}`)", dir.display(), dir.display())]
    Tls {
        dir: std::path::PathBuf,
        cause: TlsError,
    },
    #[error("binding {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("serving {addr}: {cause}")]
    Io {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("listener task for {addr} failed: {cause}")]
    Task {
        addr: SocketAddr,
        cause: tokio::task::JoinError,
    },
}

/// A running registrar.
#[derive(Debug)]
pub struct Registrar {
    http_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    listeners: Vec<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
}

impl Registrar {
    /// Open the state, bind, and start serving in background tasks.
    pub async fn start(config: &Config) -> Result<Registrar, StartError> {
        let ek_ca = if config.require_ek_cert {
            let store = EkCaStore::from_dir(&config.ek_ca_dir).map_err(StartError::EkCa)?;
            for (path, why) in store.skipped() {
                tracing::warn!(file = %path.display(), "ek_ca_dir: skipped: {why}");
            }
            tracing::info!(dir = %config.ek_ca_dir.display(), cas = store.entries().len(), "EK CA store loaded");
            Some(store)
        } else {
            tracing::warn!(
                "require_ek_cert = false: EK certificates are NOT verified against any CA"
            );
            None
        };
        if config.insecure_admin_over_http {
            tracing::warn!(listen = %config.listen, "insecure_admin_over_http = true: anyone reaching this port can list and delete agents");
        }
        let db_path = config.db_path();
        let db = tokio::task::spawn_blocking(move || db::open(&db_path))
            .await
            .map_err(|_| StartError::Db(DbError::Closed))??;
        tracing::info!(db = %db.path().display(), "database open");
        let state = AppState {
            db,
            policy: Arc::new(Policy {
                ek_ca,
                allow_reregistration_with_new_keys: config.allow_reregistration_with_new_keys,
            }),
            max_body_bytes: config.max_body_bytes,
        };

        // Load the TLS files before binding anything, so a bad tls_dir fails start-up cleanly.
        let tls_config = match &config.tls_dir {
            Some(dir) => Some(
                TlsDir::new(dir)
                    .server_config(ClientCertMode::Required)
                    .map_err(|cause| StartError::Tls {
                        dir: dir.clone(),
                        cause,
                    })?,
            ),
            None => {
                tracing::warn!("tls_dir not set: no mTLS listener; the admin API (list, show, delete) is unreachable");
                None
            }
        };

        let (shutdown, watch_rx) = watch::channel(false);
        let http = bind(config.listen).await?;
        let tls = match tls_config {
            Some(c) => Some((bind(config.tls_listen).await?, c)),
            None => None,
        };
        let http_addr = local_addr(&http, config.listen)?;
        let app = routes::router(state.clone(), config.insecure_admin_over_http);
        let mut rx = watch_rx.clone();
        let task = tokio::spawn(async move {
            axum::serve(vouch_service::no_delay(http), app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(addr = %http_addr, "HTTP listener up");
        let mut listeners = vec![(http_addr, task)];

        let mut tls_addr = None;
        if let Some((listener, tls_config)) = tls {
            let addr = local_addr(&listener, config.tls_listen)?;
            let app = routes::router(state, true);
            let mut rx = watch_rx.clone();
            let task = tokio::spawn(async move {
                vouch_tls::serve_tls(listener, tls_config, app, async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
                Ok(())
            });
            tracing::info!(%addr, "mTLS listener up (client certificate required)");
            listeners.push((addr, task));
            tls_addr = Some(addr);
        }
        Ok(Registrar {
            http_addr,
            tls_addr,
            shutdown,
            listeners,
        })
    }

    /// Address of the plain-HTTP listener (the real port when configured with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Address of the mTLS listener, if `tls_dir` is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Stop accepting, finish in-flight requests, and wait for every listener.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Serve until a listener fails (or until shut down from elsewhere).
    pub async fn wait(self) -> Result<(), ServeError> {
        for (addr, task) in self.listeners {
            task.await
                .map_err(|cause| ServeError::Task { addr, cause })?
                .map_err(|cause| ServeError::Io { addr, cause })?;
        }
        Ok(())
    }

    /// A handle that triggers shutdown (e.g. from a signal handler).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|cause| StartError::Bind { addr, cause })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|cause| StartError::Bind { addr, cause })
}
