//! `vouch policy runtime create`: write a runtime (IMA) policy in upstream keylime's format
//! (the JSON `keylime-policy create runtime` writes), from files on disk and/or an IMA log, to
//! hand to `keylime_tenant --runtime-policy`, `vouch agent add` or the verifier's
//! `/allowlists/{name}`.

use crate::tenant::RuntimePolicyFile;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use vouch_core::ima::{LogImport, PolicyBuilder, RuntimePolicy};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Runtime (IMA) policies.
    #[command(subcommand)]
    Runtime(RuntimeCommand),
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Create a runtime policy from files and/or an IMA log.
    Create(CreateArgs),
    /// Check a runtime policy file: parse, compile (regexes, keys), print a summary.
    Check {
        /// The policy JSON.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Allow these files with their current sha256 digest (repeatable; directories are not
    /// walked — list the files, e.g. with `find /usr/bin -type f`).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Paths of --file are below this root (an image mounted elsewhere); the policy gets the
    /// path relative to it.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Allow every ima-ng / ima-sig entry of this IMA log (e.g. a known-good node's
    /// /sys/kernel/security/ima/ascii_runtime_measurements).
    #[arg(long = "ima-log", value_name = "FILE")]
    pub ima_log: Option<PathBuf>,
    /// Also take keyring entries (ima-buf) of the log into `keyrings`.
    #[arg(long)]
    pub keyrings: bool,
    /// Also take other ima-buf entries of the log into `ima-buf`.
    #[arg(long = "ima-buf")]
    pub ima_buf: bool,
    /// Exclude paths matching this regex (repeatable; upstream's `excludes`).
    #[arg(long = "exclude", value_name = "REGEX")]
    pub excludes: Vec<String>,
    /// Start from this existing policy.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Runtime(RuntimeCommand::Create(args)) => create(args),
        PolicyCommand::Runtime(RuntimeCommand::Check { file }) => check(&file),
    }
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    if args.files.is_empty() && args.ima_log.is_none() && args.base.is_none() {
        bail!("nothing to put in the policy: give --file, --ima-log or --base");
    }
    let mut b = match &args.base {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the base policy {}", p.display()))?;
            let base = RuntimePolicy::from_json(&text)
                .with_context(|| format!("base policy {}", p.display()))?;
            PolicyBuilder::from_base(base)?
        }
        None => PolicyBuilder::new(),
    };
    if !args.files.is_empty() {
        let n = b.add_files(&args.files, args.root.as_deref())?;
        eprintln!("[vouch] {n} file(s) hashed");
    }
    if let Some(p) = &args.ima_log {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading the IMA log {}", p.display()))?;
        let n = b.add_ima_log(
            &text,
            LogImport {
                keyrings: args.keyrings,
                ima_buf: args.ima_buf,
            },
        )?;
        eprintln!("[vouch] {n} digest(s) taken from {}", p.display());
    }
    for e in &args.excludes {
        b.add_exclude(e)?;
    }
    let json = b.build(None)?.to_json();
    // Prove it loads before handing it out.
    vouch_core::ima::CompiledPolicy::from_json(&json).context("the policy just built")?;
    match &args.output {
        Some(p) => {
            std::fs::write(p, format!("{json}\n"))
                .with_context(|| format!("writing {}", p.display()))?;
            eprintln!("[vouch] runtime policy written to {}", p.display());
        }
        None => println!("{json}"),
    }
    Ok(())
}

/// The same loading `vouch agent add --runtime-policy` does.
fn check(file: &Path) -> anyhow::Result<()> {
    let policy = RuntimePolicyFile::load(file, "runtime policy")?;
    println!("{}: ok — {}", file.display(), policy.summary());
    Ok(())
}
