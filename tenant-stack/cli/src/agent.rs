//! `vouch agent …`: the tenant commands (wire doc §6). Argument parsing and printing only; the
//! protocol is in [`crate::tenant`].

use crate::tenant::{
    AddOptions, Deleted, EkCheck, MbPolicyFile, Payload, Policies, Progress, RuntimePolicyFile,
    Tenant, TenantConfig, DEFAULT_REGISTRAR, DEFAULT_TLS_DIR, DEFAULT_VERIFIER,
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
    /// Software CA directory (`vouch ca init`), as keylime_tenant --cert: the payload is the
    /// agent's certificate package (its certificate issued if it has none), and the verifier
    /// gets the RevocationNotifier key and {"cert_serial", "subject"} to act on a failure.
    #[arg(long, value_name = "CA_DIR")]
    pub cert: Option<PathBuf>,
    /// With --cert: add this directory's top-level files to the package (keylime_tenant
    /// --include), e.g. autorun.sh, action_list and revocation actions.
    #[arg(long, value_name = "DIR")]
    pub include: Option<PathBuf>,
    /// PCR policy JSON, e.g. '{"15": ["<sha256 hex>"]}'; mask computed as upstream, then
    /// widened for --runtime-policy(-name) and --mb-policy(-name).
    #[arg(long, default_value = "{}")]
    pub tpm_policy: String,
    /// Runtime (IMA) policy JSON in upstream's format (`vouch policy runtime create`): checked
    /// here, sent base64 as `runtime_policy`; adds PCR 10 to the mask.
    #[arg(long, value_name = "FILE")]
    pub runtime_policy: Option<PathBuf>,
    /// Name the verifier stores the --runtime-policy under (default: the agent id); alone, the
    /// name of a policy already on the verifier (`/allowlists/NAME`). Adds PCR 10 to the mask.
    #[arg(long, value_name = "NAME")]
    pub runtime_policy_name: Option<String>,
    /// Measured-boot reference state (refstate) JSON for upstream's `example` policy: checked
    /// here, sent as `mb_policy`; adds PCRs 0-9 and 11-15 to the mask, which --tpm-policy may
    /// then not pin. `--mb_refstate` is upstream's older name.
    #[arg(long, value_name = "FILE", alias = "mb_refstate")]
    pub mb_policy: Option<PathBuf>,
    /// Sent as `mb_policy_name` (upstream: the name of a measured-boot policy on the
    /// verifier); adds PCRs 0-9 and 11-15 to the mask.
    #[arg(long, value_name = "NAME")]
    pub mb_policy_name: Option<String>,
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
    /// Enrol an agent: check its TPM identity, deliver U + payload, hand V and the policies
    /// (PCR, runtime, measured boot) to the verifier, check the agent derived the bootstrap key.
    Add(Box<AddArgs>),
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
    let policies = Policies::new(
        TpmPolicy::parse(&a.tpm_policy)?,
        a.runtime_policy
            .as_deref()
            .map(|p| RuntimePolicyFile::load(p, "--runtime-policy"))
            .transpose()?,
        a.runtime_policy_name.clone(),
        a.mb_policy.as_deref().map(MbPolicyFile::load).transpose()?,
        a.mb_policy_name.clone(),
    )?;
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
    let agent_id = agent_id(&a.id)?;
    // Last: --cert may issue a certificate, so only once everything else checked out.
    let payload = match (&a.payload, &a.cert, &a.include) {
        (Some(_), Some(_), _) => anyhow::bail!(
            "--payload and --cert cannot be used together: with --cert the payload is the \
             certificate package; put extra files in a directory and pass it with --include"
        ),
        (_, None, Some(_)) => anyhow::bail!(
            "--include adds files to the --cert certificate package; without --cert pass the \
             directory as --payload"
        ),
        (Some(path), None, None) => Some(Payload::from_path(path)?),
        (None, Some(ca_dir), include) => Some(Payload::from_cert_package(
            ca_dir,
            &a.id.uuid,
            include.as_deref(),
        )?),
        (None, None, _) => None,
    };
    Ok(AddOptions {
        agent_id,
        ip: a.ip.clone(),
        port: a.port,
        payload,
        policies,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn args(payload: Option<PathBuf>, cert: Option<PathBuf>, include: Option<PathBuf>) -> AddArgs {
        AddArgs {
            id: Uuid {
                uuid: "node-1".into(),
            },
            ip: None,
            port: None,
            payload,
            cert,
            include,
            tpm_policy: "{}".into(),
            runtime_policy: None,
            runtime_policy_name: None,
            mb_policy: None,
            mb_policy_name: None,
            ek_ca_dir: PathBuf::new(),
            skip_ek_cert_check: true,
            verify_timeout: 1,
            endpoints: Endpoints {
                verifier: DEFAULT_VERIFIER.into(),
                registrar: DEFAULT_REGISTRAR.into(),
                tls_dir: PathBuf::from(DEFAULT_TLS_DIR),
            },
        }
    }

    #[test]
    fn cert_excludes_payload_and_include_needs_cert() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca");
        vouch_tls::software_ca::SoftwareCa::init(&ca, "Test CA", &Default::default()).unwrap();
        let e = add_options(&args(Some(d.path().into()), Some(ca.clone()), None)).unwrap_err();
        assert!(e.to_string().contains("cannot be used together"), "{e}");
        let e = add_options(&args(None, None, Some(d.path().into()))).unwrap_err();
        assert!(e.to_string().contains("--include"), "{e}");

        let incl = d.path().join("incl");
        std::fs::create_dir(&incl).unwrap();
        std::fs::write(incl.join("autorun.sh"), "true\n").unwrap();
        let opts = add_options(&args(None, Some(ca), Some(incl))).unwrap();
        let payload = opts.payload.unwrap();
        assert!(
            payload.description.contains("autorun.sh"),
            "{}",
            payload.description
        );
        assert_eq!(payload.cert.unwrap().serial, 2);
    }

    #[test]
    fn policy_flags_parse_and_a_bad_file_stops_before_a_cert_is_issued() {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from([
            "vouch",
            "agent",
            "add",
            "-u",
            "node-1",
            "--runtime-policy",
            "rt.json",
            "--runtime-policy-name",
            "prod",
            "--mb_refstate",
            "refstate.json",
            "--mb-policy-name",
            "boot",
        ])
        .unwrap();
        let crate::Command::Agent(AgentCommand::Add(a)) = cli.command else {
            panic!("not agent add");
        };
        assert_eq!(a.runtime_policy, Some(PathBuf::from("rt.json")));
        assert_eq!(a.runtime_policy_name.as_deref(), Some("prod"));
        assert_eq!(a.mb_policy, Some(PathBuf::from("refstate.json")));
        assert_eq!(a.mb_policy_name.as_deref(), Some("boot"));

        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca");
        vouch_tls::software_ca::SoftwareCa::init(&ca, "Test CA", &Default::default()).unwrap();
        let bad = d.path().join("rt.json");
        std::fs::write(&bad, "{not json").unwrap();
        let mut a = args(None, Some(ca.clone()), None);
        a.runtime_policy = Some(bad);
        let e = add_options(&a).unwrap_err().to_string();
        assert!(e.starts_with("--runtime-policy "), "{e}");
        assert!(!ca.join("node-1-cert.crt").exists(), "nothing issued");
    }
}
