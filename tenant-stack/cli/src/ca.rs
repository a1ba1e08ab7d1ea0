//! `vouch ca …`: the software CA for node certificates (upstream `keylime_ca -c
//! init|create|pkg|revoke`), kept in a directory laid out as upstream's (see
//! `vouch_tls::software_ca`).

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use vouch_tls::software_ca::{
    IndexEntry, RevokeTarget, Serial, SoftwareCa, CRL_DER, CRL_PEM, REVOCATION_NOTIFIER,
};
use vouch_tls::CaOptions;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the CA: cacert.crt, ca-private.pem, an empty index and an empty CRL.
    Init {
        #[command(flatten)]
        dir: CaDirArg,
        /// Subject CN of the CA certificate.
        #[arg(long, default_value = "Vouch CA")]
        ca_name: String,
        /// Replace an existing CA (the index starts over; issued files stay).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate and key for NAME: NAME-cert.crt, NAME-private.pem, NAME-public.pem.
    Issue {
        #[command(flatten)]
        dir: CaDirArg,
        /// Certificate name: the subject CN and the file stem (e.g. the agent UUID).
        #[arg(long)]
        name: String,
    },
    /// Revoke a certificate by name or serial and rewrite the CRL (cacrl.der, cacrl.pem).
    #[command(group(ArgGroup::new("which").required(true).args(["name", "serial"])))]
    Revoke {
        #[command(flatten)]
        dir: CaDirArg,
        /// The newest certificate issued for this name.
        #[arg(long)]
        name: Option<String>,
        /// Serial number: decimal, 0x-prefixed hex, or colon-separated hex as OpenSSL prints.
        #[arg(long)]
        serial: Option<Serial>,
    },
    /// Show the CRL; with --refresh write a new one first (next CRL number, new validity).
    Crl {
        #[command(flatten)]
        dir: CaDirArg,
        #[arg(long)]
        refresh: bool,
    },
    /// List the certificates this CA issued.
    List {
        #[command(flatten)]
        dir: CaDirArg,
    },
    /// Write the payload certificate package for NAME (what `keylime_tenant --cert` delivers):
    /// NAME's certificate and key, cacert.crt, the CRL and RevocationNotifier-cert.crt. Issues
    /// NAME's and the RevocationNotifier certificate first if they have none.
    Pkg {
        #[command(flatten)]
        dir: CaDirArg,
        #[arg(long)]
        name: String,
        /// Where to write the zip (0600: it holds NAME's private key).
        #[arg(long)]
        out: PathBuf,
        /// Add the top-level regular files of this directory (upstream `--include`), e.g. an
        /// `action_list` and the revocation action scripts it names.
        #[arg(long, value_name = "DIR")]
        include: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct CaDirArg {
    /// The CA directory (upstream keylime: `$KEYLIME_DIR/ca`).
    #[arg(long, env = "VOUCH_CA_DIR")]
    pub dir: PathBuf,
}

pub fn run(cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Init {
            dir,
            ca_name,
            force,
        } => {
            let options = CaOptions {
                force,
                ..CaOptions::default()
            };
            let ca = SoftwareCa::init(&dir.dir, &ca_name, &options)
                .with_context(|| format!("creating the CA in {}", dir.dir.display()))?;
            let root = ca.dir().root();
            println!("CA {ca_name:?} created in {}", root.display());
            println!("  {}  CA certificate", ca.dir().ca_cert().display());
            println!("  {}  CA private key (0600)", ca.dir().ca_key().display());
            println!(
                "  {}  empty CRL (also {CRL_PEM})",
                root.join(CRL_DER).display()
            );
            Ok(())
        }
        CaCommand::Issue { dir, name } => {
            let ca = open(&dir.dir)?;
            let entry = ca
                .issue(&name)
                .with_context(|| format!("issuing a certificate for {name:?}"))?;
            let files = ca.dir().cert_files(&name);
            println!(
                "issued {name} (serial {}, valid until {})",
                entry.serial,
                date(entry.not_after)
            );
            println!("  {}", files.cert.display());
            println!("  {}  private key (0600)", files.key.display());
            println!("  {}", files.public.display());
            Ok(())
        }
        CaCommand::Revoke { dir, name, serial } => {
            let ca = open(&dir.dir)?;
            let target = match (name, serial) {
                (Some(name), None) => RevokeTarget::Name(name),
                (None, Some(serial)) => RevokeTarget::Serial(serial),
                // clap's group makes exactly one present.
                _ => bail!("pass exactly one of --name and --serial"),
            };
            let r = ca.revoke(&target).context("revoking")?;
            println!(
                "{} {} (serial {}); CRL number {} lists {} revoked certificate(s)",
                if r.newly_revoked {
                    "revoked"
                } else {
                    "already revoked:"
                },
                r.entry.name,
                r.entry.serial,
                r.crl.number,
                r.crl.revoked.len()
            );
            println!("  {}", ca.dir().root().join(CRL_PEM).display());
            Ok(())
        }
        CaCommand::Crl { dir, refresh } => {
            let ca = open(&dir.dir)?;
            let crl = match ca.crl().context("reading the CRL")? {
                Some(crl) if !refresh => crl,
                _ => ca.write_crl().context("writing the CRL")?,
            };
            println!("CRL number {}", crl.number);
            println!("  this update  {}", date(crl.this_update));
            println!("  next update  {}", date(crl.next_update));
            if crl.revoked.is_empty() {
                println!("  no revoked certificates");
            }
            for serial in &crl.revoked {
                println!("  revoked      serial {serial}");
            }
            println!("  {}", ca.dir().root().join(CRL_PEM).display());
            Ok(())
        }
        CaCommand::List { dir } => {
            let ca = open(&dir.dir)?;
            let entries = ca.entries().context("reading index.txt")?;
            print_entries(&entries);
            Ok(())
        }
        CaCommand::Pkg {
            dir,
            name,
            out,
            include,
        } => {
            let ca = open(&dir.dir)?;
            let extra = match &include {
                Some(d) => include_files(d)?,
                None => Vec::new(),
            };
            let pkg = ca
                .cert_package(&name, &extra)
                .with_context(|| format!("building the certificate package for {name:?}"))?;
            write_private(&out, &pkg.zip)?;
            for issued in &pkg.issued {
                println!("issued {issued}");
            }
            println!(
                "certificate package for {name} (serial {}, subject {}) written to {} \
                 ({} bytes, {} extra file(s))",
                pkg.serial,
                pkg.subject,
                out.display(),
                pkg.zip.len(),
                extra.len()
            );
            println!(
                "  revocation key for the verifier: {}",
                ca.dir().cert_files(REVOCATION_NOTIFIER).key.display()
            );
            Ok(())
        }
    }
}

fn open(dir: &Path) -> Result<SoftwareCa> {
    SoftwareCa::open(dir).with_context(|| {
        format!(
            "opening the CA in {} (create one with `vouch ca init --dir {}`)",
            dir.display(),
            dir.display()
        )
    })
}

fn print_entries(entries: &[IndexEntry]) {
    if entries.is_empty() {
        println!("no certificates issued");
        return;
    }
    println!(
        "{:<8} {:<8} {:<20} {:<20} NAME",
        "SERIAL", "STATUS", "NOT AFTER", "REVOKED"
    );
    for e in entries {
        println!(
            "{:<8} {:<8} {:<20} {:<20} {}",
            e.serial.to_string(),
            if e.is_revoked() { "revoked" } else { "valid" },
            date(e.not_after),
            e.revoked_at.map(date).unwrap_or_else(|| "-".into()),
            e.name
        );
    }
}

/// Top-level regular files of `dir` by base name, sorted (upstream: `next(os.walk(dir))[2]`).
fn include_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading --include {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading --include {}", dir.display()))?
            .path();
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if !meta.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: file name is not UTF-8", path.display()))?
            .to_owned();
        let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        files.push((name, data));
    }
    files.sort();
    Ok(files)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// `2026-11-23 17:05:01Z`.
fn date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = vouch_core::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
