//! `vouch agent …`: the tenant commands (wire doc §6). Argument parsing and printing only; the
//! protocol is in [`crate::tenant`].

use crate::tenant::{
    AddOptions, Deleted, EkCheck, Payload, Progress, Tenant, TenantConfig, DEFAULT_REGISTRAR,
    DEFAULT_TLS_DIR, DEFAULT_VERIFIER,
};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use vouch_core::api::registrar::AgentId;
use vouch_core::api::verifier::{OperationalState, TpmPolicy};
use vouch_core::ekcert::EkCaStore;

/// Where the registrar and verifier are, and our client certificate.
#[derive(Debug, Clone, Args)]
pub struct Endpoints {
    /// Verifier `host:port` (or `https://…`).
    #[arg(long, env = "VOUCH_VERIFIER", default_value = DEFAULT_VERIFIER)]
    pub verifier: String,
    /// Registrar's mTLS listener `host:port` (or `https://…`).
    #[arg(long, env = "VOUCH_REGISTRAR", default_value = DEFAULT_REGISTRAR)]
    pub registrar: String,
    /// TLS directory (`vouch certs init`): `cacert.crt`, `client-cert.crt`, `client-private.pem`.
    #[arg(long, env = "VOUCH_TLS_DIR", default_value = DEFAULT_TLS_DIR)]
    pub tls_dir: PathBuf,
}

impl Endpoints {
    fn tenant(&self) -> anyhow::Result<Tenant> {
        Ok(Tenant::new(&TenantConfig {
            registrar: self.registrar.clone(),
            verifier: self.verifier.clone(),
            tls_dir: self.tls_dir.clone(),
        })?)
    }
}

#[derive(Debug, Clone, Args)]
pub struct Uuid {
    /// Agent id (`[\w.-]`, at most 80 characters).
    #[arg(long, short = 'u')]
    pub uuid: String,
}

#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub id: Uuid,
    /// Agent IP; default: the one it registered.
    #[arg(long, short = 't')]
    pub ip: Option<String>,
    /// Agent port; default: the one it registered.
    #[arg(long)]
    pub port: Option<u16>,
    /// Payload: a file (sent as is) or a directory (its files zipped; `autorun.sh` runs on the agent).
    #[arg(long, short = 'f')]
    pub payload: Option<PathBuf>,
    /// PCR policy JSON, e.g. '{"15": ["<sha256 hex>"]}'; mask computed as upstream.
    #[arg(long, default_value = "{}")]
    pub tpm_policy: String,
    /// CA certificates the agent's EK certificate must chain to.
    #[arg(long, env = "VOUCH_EK_CA_DIR", default_value = "/etc/vouch/ek-ca")]
    pub ek_ca_dir: PathBuf,
    /// Don't check the EK certificate (trust the registrar's check).
    #[arg(long)]
    pub skip_ek_cert_check: bool,
    /// Give up the key-delivery check after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub verify_timeout: u64,
    #[command(flatten)]
    pub endpoints: Endpoints,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Enrol an agent: check its TPM identity, deliver U + payload, hand V to the verifier,
    /// check the agent derived the bootstrap key.
    Add(AddArgs),
    /// The verifier's status of an agent.
    Status(WithId),
    /// Agents the verifier attests.
    List(WithEndpoints),
    /// Remove an agent from the verifier.
    Delete(WithId),
    /// Restart attestation of an agent on the verifier (after a failure).
    Reactivate(WithId),
    /// The registrar's record of an agent.
    Regstatus(WithId),
    /// Agents the registrar knows.
    Reglist(WithEndpoints),
    /// Remove an agent from the registrar.
    Regdelete(WithId),
}

#[derive(Debug, Clone, Args)]
pub struct WithId {
    #[command(flatten)]
    pub id: Uuid,
    #[command(flatten)]
    pub endpoints: Endpoints,
}

#[derive(Debug, Clone, Args)]
pub struct WithEndpoints {
    #[command(flatten)]
    pub endpoints: Endpoints,
}

pub fn run(cmd: AgentCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(cmd))
}

fn agent_id(u: &Uuid) -> anyhow::Result<AgentId> {
    Ok(AgentId::parse(&u.uuid)?)
}

pub async fn run_async(cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::Add(a) => {
            let tenant = a.endpoints.tenant()?;
            let opts = add_options(&a)?;
            tenant.add(&opts, &mut Progress::stdout()).await?;
        }
        AgentCommand::Status(w) => {
            let id = agent_id(&w.id)?;
            let mut v = w.endpoints.tenant()?.verifier_status_raw(&id).await?;
            name_state(&mut v);
            print_json(&serde_json::json!({ id.as_str(): v }))?;
        }
        AgentCommand::List(w) => {
            for id in w.endpoints.tenant()?.verifier_list().await? {
                println!("{id}");
            }
        }
        AgentCommand::Delete(w) => {
            let id = agent_id(&w.id)?;
            let how = w
                .endpoints
                .tenant()?
                .verifier_delete(&id, Duration::from_secs(30))
                .await?;
            match how {
                Deleted::Now => println!("agent {id} deleted from the verifier"),
                Deleted::AfterTermination => {
                    println!("agent {id} deleted from the verifier (after its polling stopped)")
                }
            }
        }
        AgentCommand::Reactivate(w) => {
            let id = agent_id(&w.id)?;
            w.endpoints.tenant()?.verifier_reactivate(&id).await?;
            println!("agent {id} reactivated on the verifier");
        }
        AgentCommand::Regstatus(w) => {
            let id = agent_id(&w.id)?;
            let record = w.endpoints.tenant()?.registrar_record(&id).await?;
            let mut v = serde_json::to_value(&record)?;
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "operational_state".into(),
                    OperationalState::Registered.display_name().into(),
                );
            }
            print_json(&serde_json::json!({ id.as_str(): v }))?;
        }
        AgentCommand::Reglist(w) => {
            for id in w.endpoints.tenant()?.registrar_list().await? {
                println!("{id}");
            }
        }
        AgentCommand::Regdelete(w) => {
            let id = agent_id(&w.id)?;
            w.endpoints.tenant()?.registrar_delete(&id).await?;
            println!("agent {id} deleted from the registrar");
        }
    }
    Ok(())
}

/// Parse and load everything `add` needs before any network call.
pub fn add_options(a: &AddArgs) -> anyhow::Result<AddOptions> {
    let tpm_policy = TpmPolicy::parse(&a.tpm_policy)?;
    let payload = a.payload.as_deref().map(Payload::from_path).transpose()?;
    let ek_check = if a.skip_ek_cert_check {
        EkCheck::Skip
    } else {
        EkCheck::Store(EkCaStore::from_dir(&a.ek_ca_dir).map_err(|cause| {
            crate::tenant::TenantError::EkCaStore {
                dir: a.ek_ca_dir.display().to_string(),
                cause,
            }
        })?)
    };
    Ok(AddOptions {
        agent_id: agent_id(&a.id)?,
        ip: a.ip.clone(),
        port: a.port,
        payload,
        tpm_policy,
        ek_check,
        verify_timeout: Duration::from_secs(a.verify_timeout),
    })
}

/// `operational_state: 3` → `"Get Quote"`, as the upstream tenant prints it.
fn name_state(v: &mut serde_json::Value) {
    if let Some(state) = v
        .get("operational_state")
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u8::try_from(c).ok())
        .and_then(OperationalState::from_code)
    {
        v["operational_state"] = state.display_name().into();
    }
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
