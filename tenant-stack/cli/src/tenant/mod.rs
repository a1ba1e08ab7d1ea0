//! The keylime tenant (wire doc §6): reads agents from the registrar, checks their TPM
//! identity, delivers the bootstrap key share U and the payload to the agent, hands V and the
//! policies (PCR, runtime, measured boot) to the verifier, and proves the agent got the key. Also the registrar and verifier
//! admin calls (`status`, `list`, `delete`, `reactivate`, `regstatus`, `reglist`).
//!
//! Registrar and verifier are reached over mTLS with the TLS directory's client certificate
//! (`client-cert.crt`, §7); agents over mTLS pinned to the `mtls_cert` they registered
//! (plain HTTP for agents that registered `"disabled"`).

pub mod add;
pub mod error;
pub mod http;
pub mod payload;
pub mod policies;
pub mod progress;

pub use add::{AddOptions, Delivered, EkCheck};
pub use error::TenantError;
pub use payload::{NodeCert, Payload};
pub use policies::{MbPolicyFile, Policies, PolicyFields, PolicyFileError, RuntimePolicyFile};
pub use progress::Progress;

use http::{base_url, Service};
use reqwest::Method;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vouch_core::api::envelope::Empty;
use vouch_core::api::registrar::{AgentId, AgentList as RegistrarList, AgentRecord};
use vouch_core::api::verifier::MTLS_CERT_DISABLED;
use vouch_core::api::verifier::{AgentList as VerifierList, AgentStatus};
use vouch_core::api::version::SERVER_SERVED_VERSIONS;
use vouch_tls::{Identity, ServerNameCheck, TlsDir};

/// Upstream's ports: registrar TLS 8891, verifier 8881.
pub const DEFAULT_REGISTRAR: &str = "127.0.0.1:8891";
pub const DEFAULT_VERIFIER: &str = "127.0.0.1:8881";
pub const DEFAULT_TLS_DIR: &str = "/var/lib/vouch/tls";

/// Where the services are and the TLS directory holding our client certificate.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// Registrar's mTLS listener, `host:port` or `https://…`.
    pub registrar: String,
    /// Verifier, `host:port` or `https://…`.
    pub verifier: String,
    pub tls_dir: PathBuf,
}

/// A tenant: mTLS clients for registrar and verifier, a plain client for agents.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub registrar: Service,
    pub verifier: Service,
    agent_client: reqwest::Client,
    /// The tenant's client certificate, presented to agents over mTLS.
    identity: Identity,
}

/// Result of a verifier `DELETE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// 200: removed at once.
    Now,
    /// 202, then gone within the wait.
    AfterTermination,
}

impl Tenant {
    pub fn new(config: &TenantConfig) -> Result<Tenant, TenantError> {
        let tls_err = |cause: String| TenantError::Tls {
            dir: config.tls_dir.display().to_string(),
            cause,
        };
        // Server names are checked (upstream does not, §7): `vouch certs init` puts localhost,
        // 127.0.0.1, ::1 and the host name in the server certificate.
        let dir = TlsDir::new(&config.tls_dir);
        let tls = dir
            .client_config(ServerNameCheck::Required)
            .map_err(|e| tls_err(e.to_string()))?;
        let client = dir.client();
        let identity =
            Identity::load(&client.cert, &client.key).map_err(|e| tls_err(e.to_string()))?;
        let mtls = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| tls_err(e.to_string()))?;
        let agent_client = reqwest::Client::builder()
            .build()
            .map_err(|e| tls_err(e.to_string()))?;
        Ok(Tenant {
            registrar: Service::new(
                "registrar",
                base_url(&config.registrar, "https"),
                mtls.clone(),
            ),
            verifier: Service::new("verifier", base_url(&config.verifier, "https"), mtls),
            agent_client,
            identity,
        })
    }

    /// The agent API at `ip:port`: plain HTTP when the agent registered `mtls_cert`
    /// `"disabled"` (or nothing), else HTTPS trusting only that certificate (server name not
    /// checked, as upstream's `tenant.py:init_add`) and presenting the tenant's client
    /// certificate.
    pub fn agent_service(
        &self,
        agent: &str,
        ip: &str,
        port: u16,
        mtls_cert: Option<&str>,
    ) -> Result<Service, TenantError> {
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_owned()
        };
        let pem = match mtls_cert {
            None | Some(MTLS_CERT_DISABLED) => {
                return Ok(Service::new(
                    "agent",
                    format!("http://{host}:{port}"),
                    self.agent_client.clone(),
                ))
            }
            Some(pem) => pem,
        };
        let bad = |cause: String| TenantError::AgentMtls {
            agent: agent.to_owned(),
            cause,
        };
        let roots = vouch_tls::roots_from_pem(pem, "mtls_cert").map_err(|e| bad(e.to_string()))?;
        let tls = vouch_tls::client_config(roots, Some(&self.identity), ServerNameCheck::ChainOnly)
            .map_err(|e| bad(e.to_string()))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Service::new(
            "agent",
            format!("https://{host}:{port}"),
            client,
        ))
    }

    async fn prefix(service: &Service) -> Result<String, TenantError> {
        Ok(service
            .negotiate(&SERVER_SERVED_VERSIONS)
            .await?
            .url_prefix())
    }

    // ---- registrar (§3.3) ----

    pub async fn registrar_record(&self, id: &AgentId) -> Result<AgentRecord, TenantError> {
        let p = Self::prefix(&self.registrar).await?;
        Ok(self
            .registrar
            .call_json::<AgentRecord, ()>(Method::GET, &format!("{p}/agents/{id}"), None)
            .await?)
    }

    pub async fn registrar_list(&self) -> Result<Vec<String>, TenantError> {
        let p = Self::prefix(&self.registrar).await?;
        let list: RegistrarList = self
            .registrar
            .call_json::<_, ()>(Method::GET, &format!("{p}/agents/"), None)
            .await?;
        Ok(list.uuids)
    }

    pub async fn registrar_delete(&self, id: &AgentId) -> Result<(), TenantError> {
        let p = Self::prefix(&self.registrar).await?;
        self.registrar
            .call::<()>(Method::DELETE, &format!("{p}/agents/{id}"), None)
            .await?;
        Ok(())
    }

    // ---- verifier (§5) ----

    pub async fn verifier_status(&self, id: &AgentId) -> Result<AgentStatus, TenantError> {
        let p = Self::prefix(&self.verifier).await?;
        Ok(self
            .verifier
            .call_json::<AgentStatus, ()>(Method::GET, &format!("{p}/agents/{id}"), None)
            .await?)
    }

    /// The status as the verifier sent it (every field, unknown ones included).
    pub async fn verifier_status_raw(
        &self,
        id: &AgentId,
    ) -> Result<serde_json::Value, TenantError> {
        let p = Self::prefix(&self.verifier).await?;
        Ok(self
            .verifier
            .call::<()>(Method::GET, &format!("{p}/agents/{id}"), None)
            .await?
            .results)
    }

    pub async fn verifier_list(&self) -> Result<Vec<String>, TenantError> {
        let p = Self::prefix(&self.verifier).await?;
        let list: VerifierList = self
            .verifier
            .call_json::<_, ()>(Method::GET, &format!("{p}/agents/"), None)
            .await?;
        Ok(list.ids().map(str::to_owned).collect())
    }

    /// `DELETE`; on 202 poll `GET` until 404, as `tenant.py:do_cvdelete` (at most `wait`).
    pub async fn verifier_delete(
        &self,
        id: &AgentId,
        wait: Duration,
    ) -> Result<Deleted, TenantError> {
        let p = Self::prefix(&self.verifier).await?;
        let path = format!("{p}/agents/{id}");
        let reply = self
            .verifier
            .call::<()>(Method::DELETE, &path, None)
            .await?;
        if reply.code != 202 {
            return Ok(Deleted::Now);
        }
        let deadline = Instant::now() + wait;
        loop {
            let r = self.verifier.send::<()>(Method::GET, &path, None).await?;
            if r.code == 404 {
                return Ok(Deleted::AfterTermination);
            }
            if Instant::now() >= deadline {
                return Err(TenantError::Http(self.verifier.status_error(
                    Method::GET,
                    &path,
                    &http::Reply {
                        status: format!(
                            "agent still present {} s after DELETE answered 202 (last: {} {})",
                            wait.as_secs(),
                            r.code,
                            r.status
                        ),
                        ..r
                    },
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn verifier_reactivate(&self, id: &AgentId) -> Result<(), TenantError> {
        let p = Self::prefix(&self.verifier).await?;
        self.verifier
            .call::<Empty>(Method::PUT, &format!("{p}/agents/{id}/reactivate"), None)
            .await?;
        Ok(())
    }

    pub async fn verifier_stop(&self, id: &AgentId) -> Result<(), TenantError> {
        let p = Self::prefix(&self.verifier).await?;
        self.verifier
            .call::<Empty>(Method::PUT, &format!("{p}/agents/{id}/stop"), None)
            .await?;
        Ok(())
    }
}
