//! Lifecycle. [`Verifier::start`] opens the database, loads TLS, binds, starts the poller,
//! resumes every agent that was being polled, and serves until [`Verifier::shutdown`].
//!
//! The API is HTTPS only and the handshake requires a client certificate chaining to
//! `tls_dir/cacert.crt` (upstream accepts the handshake without one and answers 403, §7).

use crate::agent_client::AgentClient;
use crate::config::Config;
use crate::db::{self, DbError};
use crate::hint;
use crate::poller::{self, PollSettings};
use crate::revocation::Notifier;
use crate::routes::{self, AppState, VerifierInfo};
use crate::runtime_policy::PolicyCache;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vouch_core::api::verifier::OperationalState;
use vouch_tls::{ClientCertMode, Identity, TlsDir, TlsError};

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
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
    #[error("building the HTTP client for agents: {0}")]
    Client(reqwest::Error),
    #[error("revocation notifier: {0}")]
    Notifier(crate::revocation::NotifierError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("task {what} failed: {cause}")]
    Task {
        what: &'static str,
        cause: tokio::task::JoinError,
    },
}

/// States in which an agent is being polled (resumed at start-up).
pub fn is_polled(state: OperationalState) -> bool {
    matches!(
        state,
        OperationalState::Start
            | OperationalState::GetQuote
            | OperationalState::GetQuoteRetry
            | OperationalState::ProvideV
            | OperationalState::ProvideVRetry
    )
}

/// A running verifier.
#[derive(Debug)]
pub struct Verifier {
    addr: SocketAddr,
    hint_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    hint_server: Option<JoinHandle<()>>,
    poller: JoinHandle<()>,
}

impl Verifier {
    pub async fn start(config: &Config) -> Result<Verifier, StartError> {
        let dir = config.tls_dir.clone();
        let tls = TlsDir::new(&dir)
            .server_config(ClientCertMode::Required)
            .map_err(|cause| StartError::Tls { dir, cause })?;
        let db_path = config.db_path();
        let db = tokio::task::spawn_blocking(move || db::open(&db_path))
            .await
            .map_err(|_| StartError::Db(DbError::Closed))??;
        tracing::info!(db = %db.path().display(), "database open");
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|cause| StartError::Bind {
                    addr: config.listen,
                    cause,
                })?;
        let addr = listener.local_addr().map_err(|cause| StartError::Bind {
            addr: config.listen,
            cause,
        })?;

        let (shutdown, rx) = watch::channel(false);
        // Agent mTLS: present tls_dir's client certificate to agents with a PEM mtls_cert.
        let identity = if config.enable_agent_mtls {
            let files = TlsDir::new(&config.tls_dir).client();
            let identity =
                Identity::load(&files.cert, &files.key).map_err(|cause| StartError::Tls {
                    dir: config.tls_dir.clone(),
                    cause,
                })?;
            Some(identity)
        } else {
            None
        };
        let client = AgentClient::with_identity(config.request_timeout(), identity)
            .map_err(StartError::Client)?;
        let mb_engine = config.mb_engine().map_err(StartError::Config)?;
        let settings = PollSettings {
            mb_engine,
            quote_interval: config.quote_interval(),
            max_retries: config.max_retries,
            retry_interval: config.retry_interval,
            exponential_backoff: config.exponential_backoff,
            max_concurrent: config.max_concurrent_quotes,
            min_hint_gap: Duration::from_secs_f64(config.min_hint_gap),
        };
        let notifier =
            Notifier::new(config, client.clone(), db.clone()).map_err(StartError::Notifier)?;
        let policies = Arc::new(PolicyCache::default());
        let (poller, poller_task) = poller::start(
            db.clone(),
            client,
            settings,
            Arc::new(notifier),
            policies.clone(),
            rx.clone(),
        );

        // Resume: every agent that was being polled continues from its stored state.
        let agents = db.call(|c| db::list_agents(c)).await?;
        let mut resumed = 0usize;
        for a in agents.iter().filter(|a| is_polled(a.state)) {
            poller.schedule(&a.agent_id, a.epoch, Duration::ZERO);
            resumed += 1;
        }
        tracing::info!(
            agents = agents.len(),
            resumed,
            "agents loaded; polling resumed"
        );

        let (hint_addr, hint_server) = match config.hint_listen {
            Some(at) => {
                let l = TcpListener::bind(at)
                    .await
                    .map_err(|cause| StartError::Bind { addr: at, cause })?;
                let bound = l
                    .local_addr()
                    .map_err(|cause| StartError::Bind { addr: at, cause })?;
                let app = hint::router(hint::HintState::new(db.clone(), poller.clone()));
                let mut stop = rx.clone();
                let task = tokio::spawn(async move {
                    let served = axum::serve(vouch_service::no_delay(l), app)
                        .with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("hint listener: {e}");
                    }
                });
                tracing::info!(addr = %bound, "hint listener up (plain HTTP, NK-signed hints)");
                (Some(bound), Some(task))
            }
            None => (None, None),
        };

        let state = AppState {
            db,
            poller,
            policies,
            mb_engine,
            enable_agent_mtls: config.enable_agent_mtls,
            max_body_bytes: config.max_body_bytes,
            info: Arc::new(VerifierInfo {
                verifier_id: config.verifier_id.clone(),
                ip: addr.ip().to_string(),
                port: addr.port(),
                quote_interval: config.quote_interval(),
            }),
        };
        let app = routes::router(state);
        let mut stop = rx;
        let server = tokio::spawn(async move {
            vouch_tls::serve_tls(listener, tls, app, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        });
        tracing::info!(%addr, "verifier API up (mTLS, client certificate required)");
        Ok(Verifier {
            addr,
            hint_addr,
            hint_server,
            shutdown,
            server,
            poller: poller_task,
        })
    }

    /// The listen address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hint listener's address, if it runs.
    pub fn hint_addr(&self) -> Option<SocketAddr> {
        self.hint_addr
    }

    /// Stop accepting, stop polling (steps in flight are aborted; their last stored state
    /// stands), and wait for both.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Run until shut down from elsewhere.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.server.await.map_err(|cause| ServeError::Task {
            what: "server",
            cause,
        })?;
        if let Some(h) = self.hint_server {
            h.await.map_err(|cause| ServeError::Task {
                what: "hint listener",
                cause,
            })?;
        }
        self.poller.await.map_err(|cause| ServeError::Task {
            what: "poller",
            cause,
        })
    }

    /// A handle that triggers shutdown (e.g. from a signal handler).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}
