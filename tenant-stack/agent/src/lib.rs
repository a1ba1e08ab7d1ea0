//! vouch-agent: the node agent of the keylime protocol (paper §3.2), wire-compatible with
//! rust-keylime for upstream keylime 7.14.3's registrar, tenant and verifier.
//!
//! Start-up ([`start`]): open the TPM, create the EK and read its certificate, reload or create
//! the AK (state dir), generate the node key NK and bind `H(NK PEM)` into PCR 16, bind the
//! listener, enroll with the registrar, then serve the agent API.

pub mod api;
pub mod config;
pub mod enrollment;
pub mod identity;
pub mod keys;
pub mod measurements;
pub mod mtls;
pub mod nv_share;
pub mod payload;
pub mod quote;
pub mod revocation;
pub mod script;
pub mod secure_mount;
pub mod state;
pub mod watch;

use crate::api::AppState;
use crate::config::{AgentConfig, ConfigError};
use crate::enrollment::{Contact, EnrollError, Registrar};
use crate::identity::{IdentityError, TpmIdentity};
use crate::keys::Keys;
use crate::nv_share::ShareStore;
use crate::payload::{Deployer, PayloadOptions};
use crate::quote::Quoter;
use crate::secure_mount::SecureMount;
use crate::state::{StateDir, StateError};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;
use vouch_core::api::version::ApiVersion;
use vouch_core::keylime::{KeylimeError, NodeKey};
use vouch_tpm::{Tcti, Tpm, TpmError, TpmHandle};

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("TPM: {0}")]
    Tpm(#[from] TpmError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("node key: {0}")]
    NodeKey(#[from] KeylimeError),
    #[error("binding the node key into PCR 16: {0}")]
    Bind(TpmError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("enrollment: {0}")]
    Enroll(#[from] EnrollError),
    #[error(transparent)]
    Mtls(#[from] mtls::MtlsError),
    #[error("agent mTLS: {0}")]
    Tls(#[from] vouch_tls::TlsError),
    #[error("agent API server: {0}")]
    Serve(std::io::Error),
}

/// A running agent: enrolled and serving.
pub struct RunningAgent {
    addr: SocketAddr,
    identity: TpmIdentity,
    registrar_version: ApiVersion,
    nk_pem: String,
    mtls_cert: Option<String>,
    secure_mount: Arc<SecureMount>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), std::io::Error>>,
    /// Stops the hint watcher (if one runs) when dropped or set.
    watch_stop: tokio::sync::watch::Sender<bool>,
    tpm: TpmHandle,
}

impl RunningAgent {
    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// EK, AK and their kinds.
    pub fn identity(&self) -> &TpmIdentity {
        &self.identity
    }

    /// The registrar API version enrollment used.
    pub fn registrar_version(&self) -> ApiVersion {
        self.registrar_version
    }

    /// The NK public key PEM (the quotes' `pubkey`).
    pub fn nk_pem(&self) -> &str {
        &self.nk_pem
    }

    /// The agent's own certificate (PEM, as registered as `mtls_cert`) when it serves mTLS.
    pub fn mtls_cert(&self) -> Option<&str> {
        self.mtls_cert.as_deref()
    }

    /// Stop serving (in-flight requests finish) and wait for the server; the TPM context
    /// closes when the last handle goes.
    pub async fn shutdown(mut self) -> Result<(), AgentError> {
        let _ = self.watch_stop.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// The agent's TPM connection (swtpm serves one at a time): for an embedding process that
    /// must measure into the same TPM, e.g. a test playing the kernel's IMA.
    pub fn tpm(&self) -> &TpmHandle {
        &self.tpm
    }

    /// The secure mount payloads are deployed to.
    pub fn secure_mount(&self) -> &SecureMount {
        &self.secure_mount
    }

    /// Serve until the server stops (shutdown or error), then unmount the secure mount if this
    /// agent mounted it.
    pub async fn wait(self) -> Result<(), AgentError> {
        let result = match self.server.await {
            Ok(r) => r.map_err(AgentError::Serve),
            Err(e) => Err(AgentError::Serve(std::io::Error::other(e))),
        };
        let mount = self.secure_mount.clone();
        let _ = tokio::task::spawn_blocking(move || mount.release()).await;
        result
    }

    /// Ask the server to stop; [`Self::wait`] returns afterwards.
    pub fn stop_handle(&mut self) -> Option<oneshot::Sender<()>> {
        self.shutdown.take()
    }
}

fn open_tpm(config: &AgentConfig) -> Result<TpmHandle, TpmError> {
    if config.tcti.is_empty() {
        Tpm::open_from_env()
    } else {
        Tpm::open(&config.tcti.parse::<Tcti>()?)
    }
}

/// Bring the agent up (see the crate docs). Logs carry the agent ID as span field `agent`.
pub async fn start(config: AgentConfig) -> Result<RunningAgent, AgentError> {
    let span = tracing::info_span!("agent", agent = %config.uuid);
    start_inner(config, span.clone()).instrument(span).await
}

async fn start_inner(config: AgentConfig, span: tracing::Span) -> Result<RunningAgent, AgentError> {
    let listen = config.listen_addr()?;
    let state = StateDir::open(&config.state_dir)?;
    // tss-esapi connects synchronously; keep it off the async workers.
    let tpm = {
        let c = config.clone();
        tokio::task::spawn_blocking(move || open_tpm(&c))
            .await
            .map_err(|e| AgentError::Tpm(TpmError::InvalidArgument(e.to_string())))??
    };
    tracing::info!(tcti = %tpm.tcti(), "TPM opened");
    let identity = identity::load_or_create(
        &tpm,
        &state,
        config.ek_kind()?,
        config.ak_kind()?,
        config.hash()?,
    )
    .await?;

    // RSA key generation takes ~100 ms: off the async workers too.
    let nk = tokio::task::spawn_blocking(NodeKey::generate)
        .await
        .map_err(|e| AgentError::Serve(std::io::Error::other(e)))??;
    let nk_pem = nk.public_pem().to_string();
    let quoter = Quoter::new(
        tpm.clone(),
        identity.ak.clone(),
        identity.hash,
        nk_pem.clone(),
    );
    quoter.bind().await.map_err(AgentError::Bind)?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| AgentError::Listen {
        addr: listen,
        source,
    })?;
    let contact = Contact {
        ip: if config.contact_ip.is_empty() {
            addr.ip().to_string()
        } else {
            config.contact_ip.clone()
        },
        port: if config.contact_port == 0 {
            addr.port()
        } else {
            config.contact_port
        },
    };
    let registrar = Registrar {
        url: config.registrar_url()?,
        retries: config.registrar_retries,
        first_delay: config.retry_delay(),
    };
    // Agent mTLS (§7): own self-signed certificate, client certificates from trusted_client_ca.
    let tls = if config.agent_mtls() {
        let (cert_path, key_path) = config.mtls_files();
        let (uuid, ip) = (config.uuid.clone(), contact.ip.parse().ok());
        let cert = tokio::task::spawn_blocking(move || {
            mtls::load_or_create(&cert_path, &key_path, &uuid, ip)
        })
        .await
        .map_err(|e| AgentError::Serve(std::io::Error::other(e)))??;
        let roots = vouch_tls::load_roots(&[&config.trusted_client_ca])?;
        let server =
            vouch_tls::server_config(&cert.identity, vouch_tls::ClientAuth::Required(roots))?;
        Some((cert.pem, server))
    } else {
        None
    };
    let registrar_version = enrollment::enroll(
        &tpm,
        &identity,
        &config.uuid,
        &contact,
        &registrar,
        tls.as_ref().map(|(pem, _)| pem.as_str()),
    )
    .await?;

    let secure_mount = Arc::new(SecureMount::new(
        config.secure_mount_dir(),
        config.secure_size.clone(),
    ));
    let deployer = Deployer::new(
        secure_mount.clone(),
        PayloadOptions {
            extract_zip: config.extract_payload_zip,
            run_autorun: config.run_autorun,
            // With mTLS only holders of a trusted client certificate can deliver (rust-keylime).
            allow_insecure: config.enable_insecure_payload || tls.is_some(),
            autorun_timeout: std::time::Duration::from_secs(config.autorun_timeout_secs.max(1)),
        },
    );
    let store =
        (config.nv_index != 0).then(|| ShareStore::new(tpm.clone(), config.nv_index, state.path()));
    let keys = Keys::new(nk, config.uuid.clone(), deployer, store.clone());
    if let Some(store) = &store {
        // A U kept from before a reboot: V alone now restores K and the payload.
        match store.load().await {
            Ok(Some((u, payload))) => {
                tracing::info!(
                    nv_index = format_args!("{:#010x}", store.index()),
                    with_payload = payload.is_some(),
                    "loaded U kept in TPM NV; waiting for V"
                );
                keys.restore(u, payload).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("no U restored: {e}"),
        }
    }

    let app = AppState {
        agent_id: config.uuid.clone(),
        quoter,
        keys,
        enc_alg: identity.enc_alg(),
        sign_alg: identity.sign_alg(),
        ak_handle: 0,
        ima_log: measurements::ImaLog::new(&config.ima_ml_path),
        event_log: config.measuredboot_ml_path.clone(),
        revocation: api::RevocationSetup {
            config: config.revocation(),
            unzipped_dir: config.unzipped_dir(),
            seen_store: config.revocation_seen_store(),
        },
    };
    let app = Arc::new(app);
    let (watch_stop, watch_rx) = tokio::sync::watch::channel(false);
    if !config.verifier_hint_url.is_empty() {
        let settings = watch::WatchSettings {
            verifier: config.verifier_hint_url.clone(),
            agent_id: config.uuid.clone(),
            ima_log: config.ima_ml_path.clone(),
            ima_every: std::time::Duration::from_millis(config.hint_ima_poll_ms),
            pcr_every: std::time::Duration::from_millis(config.hint_pcr_poll_ms),
            bank: config.hash()?,
        };
        watch::start(settings, app.clone(), tpm.clone(), watch_rx)
            .map_err(|e| AgentError::Serve(std::io::Error::other(e)))?;
    }
    let router = api::router(app);
    let (tx, rx) = oneshot::channel::<()>();
    let stop = async move {
        let _ = rx.await;
    };
    let (mtls_cert, server) = match tls {
        Some((pem, server_config)) => (
            Some(pem),
            tokio::spawn(
                async move {
                    vouch_tls::serve_tls(listener, server_config, router, stop).await;
                    Ok(())
                }
                .instrument(span),
            ),
        ),
        None => (
            None,
            tokio::spawn(
                async move {
                    axum::serve(vouch_service::no_delay(listener), router)
                        .with_graceful_shutdown(stop)
                        .await
                }
                .instrument(span),
            ),
        ),
    };
    tracing::info!(%addr, mtls = mtls_cert.is_some(), "agent API listening");
    Ok(RunningAgent {
        addr,
        identity,
        registrar_version,
        nk_pem,
        mtls_cert,
        secure_mount,
        shutdown: Some(tx),
        server,
        watch_stop,
        tpm,
    })
}
