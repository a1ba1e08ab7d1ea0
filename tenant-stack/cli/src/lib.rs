//! The `vouch` command line: argument definitions and dispatch. Each command family lives in
//! its own module; `main.rs` only parses and prints the error.

pub mod agent;
pub mod ca;
pub mod certs;
pub mod input;
pub mod policy;
pub mod tenant;
pub mod tpm;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vouch",
    version,
    about = "Vouch: hardware-rooted trust for OpenStack/libvirt clouds"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// TPM tools that read and write tpm2-tools 5.x files.
    #[command(subcommand)]
    Tpm(tpm::TpmCommand),
    /// TLS directory for mTLS: a CA and server/client certificates (upstream's cv_ca layout).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Software CA for node certificates: issue, revoke, CRL, payload cert package (keylime_ca).
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Policies: create and check runtime (IMA) policies in upstream keylime's format.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Tenant: enrol agents with the verifier, query registrar and verifier (keylime tenant).
    #[command(subcommand)]
    Agent(agent::AgentCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Tpm(cmd) => tpm::run(cmd),
        Command::Certs(cmd) => certs::run(cmd),
        Command::Ca(cmd) => ca::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Agent(cmd) => agent::run(cmd),
    }
}
