//! The payload the tenant delivers with U, in upstream's formats (`tenant.py:Tenant.init_add`):
//! a file is sent as its bytes (`-f FILE`); a directory becomes a zip of its top-level regular
//! files, stored uncompressed under their base names (what `--include DIR` adds to the
//! `--cert` package: `next(os.walk(dir))[2]`, `zf.writestr(basename, data)`, `ZIP_STORED`).
//! The agent unzips it and runs `autorun.sh` if present (rust-keylime `payloads.rs`).
//!
//! With `--cert CA_DIR` the payload is the software CA's certificate package for the agent
//! (upstream `keylime_tenant --cert`, `ca_util.cmd_certpkg`): the node's certificate and key,
//! the CA certificate, the CRL and `RevocationNotifier-cert.crt`, plus the `--include` files.
//! The tenant then tells the verifier the notifier's private key (`revocation_key`, which signs
//! revocation notices) and `{"cert_serial", "subject"}` (`metadata`, which names the
//! certificate to revoke when the agent fails): [`NodeCert`].

use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vouch_tls::software_ca::{SoftwareCa, SoftwareCaError};

#[derive(Debug, Error)]
pub enum PayloadError {
    #[error("payload {}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("payload directory {}: building the zip: {cause}", path.display())]
    Zip {
        path: PathBuf,
        cause: zip::result::ZipError,
    },
    #[error("payload directory {} has no regular files at its top level", path.display())]
    EmptyDir { path: PathBuf },
    #[error("payload directory {}: file name {name:?} is not UTF-8", path.display())]
    FileName { path: PathBuf, name: String },
    #[error(
        "--cert {}: {cause} (create the CA with `vouch ca init --dir {}`)",
        dir.display(),
        dir.display()
    )]
    Ca {
        dir: PathBuf,
        cause: SoftwareCaError,
    },
    #[error("--cert {}: certificate serial {serial} does not fit the metadata's integer", dir.display())]
    Serial { dir: PathBuf, serial: String },
}

/// Payload plaintext, ready to encrypt under K.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub bytes: Vec<u8>,
    /// What it is, for progress lines: `file x (12 bytes)` / `zip of 3 files from dir/`.
    pub description: String,
    /// Set when the payload is a `--cert` package: what the verifier gets with the agent.
    pub cert: Option<NodeCert>,
}

/// The agent's certificate from a `--cert` package, as the verifier needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCert {
    pub serial: u64,
    /// RFC 4514, as upstream's `cert.subject.rfc4514_string()`.
    pub subject: String,
    /// `RevocationNotifier-private.pem`: the verifier signs revocation notices with it.
    pub revocation_key_pem: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("serial", &self.serial)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl NodeCert {
    /// The add body's `metadata`: `json.dumps({"cert_serial": N, "subject": S})`.
    pub fn metadata(&self) -> String {
        vouch_core::revocation::python_json(&serde_json::json!({
            "cert_serial": self.serial,
            "subject": self.subject,
        }))
    }
}

impl Payload {
    pub fn from_path(path: &Path) -> Result<Payload, PayloadError> {
        let io = |cause| PayloadError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Self::zip_dir(path);
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Ok(Payload {
            description: format!("file {} ({} bytes)", path.display(), bytes.len()),
            bytes,
            cert: None,
        })
    }

    /// `--cert CA_DIR [--include DIR]`: the certificate package for agent `name`, issuing its
    /// certificate (and the RevocationNotifier's) first if the CA has no valid one. Blocks
    /// (RSA key generation, the CA's file lock).
    pub fn from_cert_package(
        ca_dir: &Path,
        name: &str,
        include: Option<&Path>,
    ) -> Result<Payload, PayloadError> {
        let extra = match include {
            Some(dir) => top_level_files(dir)?,
            None => Vec::new(),
        };
        let ca_err = |cause| PayloadError::Ca {
            dir: ca_dir.to_path_buf(),
            cause,
        };
        let pkg = SoftwareCa::open(ca_dir)
            .and_then(|ca| ca.cert_package(name, &extra))
            .map_err(ca_err)?;
        let serial = pkg.serial.to_u64().ok_or_else(|| PayloadError::Serial {
            dir: ca_dir.to_path_buf(),
            serial: pkg.serial.to_string(),
        })?;
        let issued = if pkg.issued.is_empty() {
            String::new()
        } else {
            format!("; issued now: {}", pkg.issued.join(", "))
        };
        let names: Vec<&str> = extra.iter().map(|(n, _)| n.as_str()).collect();
        Ok(Payload {
            description: format!(
                "certificate package for {name} from {} (serial {serial}, {}{issued}; {} \
                 bytes){}",
                ca_dir.display(),
                pkg.subject,
                pkg.zip.len(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", names.join(", "))
                }
            ),
            bytes: pkg.zip,
            cert: Some(NodeCert {
                serial,
                subject: pkg.subject,
                revocation_key_pem: pkg.revocation_key_pem,
            }),
        })
    }

    fn zip_dir(dir: &Path) -> Result<Payload, PayloadError> {
        let files = top_level_files(dir)?;
        if files.is_empty() {
            return Err(PayloadError::EmptyDir {
                path: dir.to_path_buf(),
            });
        }
        let zerr = |cause| PayloadError::Zip {
            path: dir.to_path_buf(),
            cause,
        };
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in &files {
            // writestr keeps no Unix mode; the agent runs autorun.sh with `sh`, not exec.
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            zip.start_file(name.as_str(), options).map_err(zerr)?;
            zip.write_all(data).map_err(|cause| PayloadError::Io {
                path: dir.join(name),
                cause,
            })?;
        }
        let bytes = zip.finish().map_err(zerr)?.into_inner();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        Ok(Payload {
            description: format!(
                "zip of {} file(s) from {} ({} bytes): {}",
                names.len(),
                dir.display(),
                bytes.len(),
                names.join(", ")
            ),
            bytes,
            cert: None,
        })
    }
}

/// The top-level regular files of `dir` (following symlinks, skipping directories) by base
/// name, sorted: upstream's `next(os.walk(dir))[2]`.
fn top_level_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, PayloadError> {
    let io = |cause| PayloadError::Io {
        path: dir.to_path_buf(),
        cause,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let meta = std::fs::metadata(&path).map_err(|cause| PayloadError::Io {
            path: path.clone(),
            cause,
        })?;
        if !meta.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.file_name().and_then(|n| n.to_str()).is_none() {
            return Err(PayloadError::FileName {
                path: dir.to_path_buf(),
                name,
            });
        }
        let data = std::fs::read(&path).map_err(|cause| PayloadError::Io { path, cause })?;
        files.push((name, data));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn file_is_sent_as_is_and_dir_is_a_flat_stored_zip() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("autorun.sh"), "echo hi\n").unwrap();
        std::fs::write(d.path().join("data.txt"), "secret").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/ignored"), "x").unwrap();

        let f = Payload::from_path(&d.path().join("data.txt")).unwrap();
        assert_eq!(f.bytes, b"secret");

        let z = Payload::from_path(d.path()).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(z.bytes)).unwrap();
        let names: Vec<_> = archive.file_names().map(str::to_owned).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let mut s = String::new();
        let mut entry = archive.by_name("autorun.sh").unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        entry.read_to_string(&mut s).unwrap();
        assert_eq!(s, "echo hi\n");

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Payload::from_path(empty.path()),
            Err(PayloadError::EmptyDir { .. })
        ));
    }

    #[test]
    fn cert_package_payload_carries_what_the_verifier_needs() {
        let d = tempfile::tempdir().unwrap();
        let ca_dir = d.path().join("ca");
        SoftwareCa::init(&ca_dir, "Test CA", &Default::default()).unwrap();
        let incl = d.path().join("incl");
        std::fs::create_dir(&incl).unwrap();
        std::fs::write(incl.join("action_list"), "local_action_x\n").unwrap();

        let p = Payload::from_cert_package(&ca_dir, "node-1", Some(&incl)).unwrap();
        let cert = p.cert.clone().unwrap();
        assert_eq!(cert.serial, 2, "the first certificate issued");
        assert!(cert.subject.contains("CN=node-1"), "{}", cert.subject);
        assert!(cert.revocation_key_pem.contains("PRIVATE KEY"));
        assert_eq!(
            cert.metadata(),
            format!("{{\"cert_serial\": 2, \"subject\": \"{}\"}}", cert.subject)
        );
        assert!(!format!("{cert:?}").contains("PRIVATE"), "key not in Debug");
        let archive = zip::ZipArchive::new(std::io::Cursor::new(p.bytes)).unwrap();
        let names: Vec<_> = archive.file_names().collect();
        for n in [
            "node-1-cert.crt",
            "node-1-private.pem",
            "cacert.crt",
            "cacrl.der",
            "RevocationNotifier-cert.crt",
            "action_list",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        // Again: the same certificate, not a new one.
        let again = Payload::from_cert_package(&ca_dir, "node-1", None).unwrap();
        assert_eq!(again.cert.unwrap().serial, 2);

        let e = Payload::from_cert_package(&d.path().join("nope"), "node-1", None).unwrap_err();
        assert!(e.to_string().contains("vouch ca init"), "{e}");
    }
}
