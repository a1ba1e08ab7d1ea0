//! `vouch certs …`: a TLS directory for mTLS between Vouch (and upstream keylime) components,
//! laid out as upstream's `tls_dir = generate` writes `cv_ca/`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use vouch_tls::{default_server_names, Ca, CaOptions, CertFiles, SubjectName, TlsDir};

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA and one server and one client certificate, so that mTLS works out of the box.
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// Subject CN of the CA certificate.
        #[arg(long, default_value = "Vouch CA")]
        ca_name: String,
        /// DNS name or IP address for the server certificate (repeatable). Default, as upstream:
        /// localhost, 127.0.0.1, ::1 and this host's name.
        #[arg(long = "server-name", value_name = "NAME")]
        server_names: Vec<SubjectName>,
        /// Subject CN of the client certificate (the identity servers see).
        #[arg(long, default_value = "client")]
        client_name: String,
        /// Replace an existing CA and certificates.
        #[arg(long)]
        force: bool,
    },
    /// Issue (or replace) a server certificate with the directory's CA.
    IssueServer {
        #[command(flatten)]
        dir: DirArg,
        /// DNS name or IP address (repeatable); default as for `init`.
        #[arg(long = "server-name", value_name = "NAME")]
        server_names: Vec<SubjectName>,
        /// File stem: writes STEM-cert.crt, STEM-private.pem, STEM-public.pem.
        #[arg(long, default_value = "server")]
        stem: String,
    },
    /// Issue (or replace) a client certificate with the directory's CA.
    IssueClient {
        #[command(flatten)]
        dir: DirArg,
        /// Subject CN (the identity servers see).
        #[arg(long, default_value = "client")]
        client_name: String,
        /// File stem: writes STEM-cert.crt, STEM-private.pem, STEM-public.pem.
        #[arg(long, default_value = "client")]
        stem: String,
    },
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// The TLS directory (upstream keylime: `$KEYLIME_DIR/cv_ca`).
    #[arg(long, env = "VOUCH_TLS_DIR")]
    pub dir: PathBuf,
}

pub fn run(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Init {
            dir,
            ca_name,
            server_names,
            client_name,
            force,
        } => init(&dir.dir, &ca_name, server_names, &client_name, force),
        CertsCommand::IssueServer {
            dir,
            server_names,
            stem,
        } => {
            let ca = load(&dir.dir)?;
            let names = or_default(server_names);
            let files = ca.dir().cert_files(&check_stem(&stem)?);
            ca.issue(&vouch_tls::CertRequest::server(&names))
                .and_then(|issued| issued.write(&files))
                .context("issuing the server certificate")?;
            print_cert(&files, &format!("server certificate for {}", join(&names)));
            Ok(())
        }
        CertsCommand::IssueClient {
            dir,
            client_name,
            stem,
        } => {
            let ca = load(&dir.dir)?;
            let files = ca.dir().cert_files(&check_stem(&stem)?);
            ca.issue(&vouch_tls::CertRequest::client(&client_name))
                .and_then(|issued| issued.write(&files))
                .context("issuing the client certificate")?;
            print_cert(&files, &format!("client certificate CN={client_name}"));
            Ok(())
        }
    }
}

fn init(
    dir: &Path,
    ca_name: &str,
    server_names: Vec<SubjectName>,
    client_name: &str,
    force: bool,
) -> Result<()> {
    let layout = TlsDir::new(dir);
    if !force {
        // Refuse before writing anything: a half-replaced directory is worse than none.
        let (server, client) = (layout.server(), layout.client());
        for path in [
            layout.ca_cert(),
            layout.ca_key(),
            server.cert,
            server.key,
            client.cert,
            client.key,
        ] {
            if path.exists() {
                bail!(
                    "{} already exists; not replacing the TLS directory without --force",
                    path.display()
                );
            }
        }
    }
    let names = or_default(server_names);
    let options = CaOptions {
        force,
        ..CaOptions::default()
    };
    let ca = Ca::create_with(dir, ca_name, &options).context("creating the CA")?;
    let server = ca
        .issue_server(&names)
        .context("issuing the server certificate")?;
    let client = ca
        .issue_client(client_name)
        .context("issuing the client certificate")?;

    println!("CA {ca_name:?} created in {}", dir.display());
    println!("  {}  CA certificate", layout.ca_cert().display());
    println!("  {}  CA private key (0600)", layout.ca_key().display());
    println!("  {}  CA public key", layout.ca_public().display());
    print_cert(&server, &format!("server certificate for {}", join(&names)));
    print_cert(&client, &format!("client certificate CN={client_name}"));
    Ok(())
}

fn load(dir: &Path) -> Result<Ca> {
    Ca::load(dir).with_context(|| {
        format!(
            "loading the CA of {} (create one with `vouch certs init --dir {}`)",
            dir.display(),
            dir.display()
        )
    })
}

fn or_default(names: Vec<SubjectName>) -> Vec<SubjectName> {
    if names.is_empty() {
        default_server_names()
    } else {
        names
    }
}

/// A stem is a file-name prefix inside the directory, never a path.
fn check_stem(stem: &str) -> Result<String> {
    if stem.is_empty() || stem.contains('/') || stem.starts_with('.') {
        bail!("--stem {stem:?}: a plain file-name prefix like \"server\" or \"admin\"");
    }
    Ok(stem.to_owned())
}

fn join(names: &[SubjectName]) -> String {
    names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_cert(files: &CertFiles, what: &str) {
    println!("  {}  {what}", files.cert.display());
    println!("  {}  its private key (0600)", files.key.display());
    println!("  {}  its public key", files.public.display());
}
