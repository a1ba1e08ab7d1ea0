//! Deploying the decrypted payload, as rust-keylime's `payloads.rs:run_encrypted_payload`:
//! `<secure_mount>/unzipped/` is emptied and recreated, the payload is written there as
//! `decrypted_payload` and K as `derived_tci_key`, a zip payload (what `keylime_tenant --cert`
//! / `--include` builds with `zipfile`) is extracted into the same directory, then
//! `autorun.sh` runs there if the payload brought one.
//!
//! Unlike upstream (libarchive), every zip entry is checked before anything is written: an
//! absolute name, a `..` component, a backslash or a symlink refuses the whole payload
//! (zip-slip). Only the extraction directory's own `autorun.sh` is ever executed.

use crate::script::NotFinished;
use crate::secure_mount::{set_mode, SecureMount, SecureMountError};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use vouch_core::keylime::BootstrapKey;

/// rust-keylime `dec_payload_file` default.
pub const PAYLOAD_FILE: &str = "decrypted_payload";
/// rust-keylime `enc_keyname` default: K, for payload scripts that need it.
pub const KEY_FILE: &str = "derived_tci_key";
/// rust-keylime `payload_script` default.
pub const AUTORUN: &str = "autorun.sh";
/// Sub-directory of the secure mount the payload goes to (rust-keylime `setup_unzipped`).
pub const UNZIPPED: &str = "unzipped";

#[derive(Debug, Error)]
pub enum PayloadError {
    #[error("payload zip entry {name:?} escapes the extraction directory ({why}): payload refused, nothing extracted")]
    ZipSlip { name: String, why: &'static str },
    #[error("payload zip entry {name:?} is a symbolic link, which the agent does not extract: payload refused, nothing extracted")]
    Symlink { name: String },
    #[error("payload looks like a zip but cannot be read: {0}")]
    BadZip(String),
    #[error("writing the payload to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mount(#[from] SecureMountError),
}

/// Payload options from the config.
#[derive(Debug, Clone)]
pub struct PayloadOptions {
    pub extract_zip: bool,
    pub run_autorun: bool,
    /// Upstream's `enable_insecure_payload`: scripts run although the agent API has no mTLS.
    pub allow_insecure: bool,
    pub autorun_timeout: Duration,
}

/// Writes payloads into the secure mount and runs their `autorun.sh`.
#[derive(Debug, Clone)]
pub struct Deployer {
    mount: Arc<SecureMount>,
    options: PayloadOptions,
}

impl Deployer {
    pub fn new(mount: Arc<SecureMount>, options: PayloadOptions) -> Self {
        Self { mount, options }
    }

    pub fn extraction_dir(&self) -> PathBuf {
        self.mount.dir().join(UNZIPPED)
    }

    /// Write and extract (blocking work off the async workers); then start `autorun.sh` in the
    /// background, as upstream's payload worker does, and return without waiting for it.
    pub async fn deploy(&self, key: &BootstrapKey, plain: Vec<u8>) -> Result<(), PayloadError> {
        let mount = self.mount.clone();
        let dir = self.extraction_dir();
        let extract = self.options.extract_zip;
        let key = key.as_bytes().to_vec();
        let d = dir.clone();
        let has_script = tokio::task::spawn_blocking(move || {
            mount.prepare()?;
            write_out(&d, &key, &plain, extract)
        })
        .await
        .map_err(|e| PayloadError::Io {
            path: dir.clone(),
            source: std::io::Error::other(e),
        })??;
        if !has_script {
            return Ok(());
        }
        if !self.options.run_autorun {
            tracing::info!("payload has {AUTORUN}; not run (run_autorun = false)");
        } else if !self.options.allow_insecure {
            tracing::warn!("payload has {AUTORUN} but it is not run: the agent API has no mTLS, so anyone reaching it could deliver a payload; set enable_insecure_payload = true to run it anyway (rust-keylime refuses the same)");
        } else {
            let timeout = self.options.autorun_timeout;
            tokio::spawn(async move {
                if let Err(e) = run_autorun(&dir, timeout).await {
                    tracing::error!("{AUTORUN}: {e}");
                }
            });
        }
        Ok(())
    }
}

/// Recreate `dir`, write `decrypted_payload` and `derived_tci_key`, extract a zip payload.
/// Returns whether `dir/autorun.sh` is a regular file afterwards.
pub fn write_out(
    dir: &Path,
    key: &[u8],
    plain: &[u8],
    extract_zip: bool,
) -> Result<bool, PayloadError> {
    // Check a zip completely before touching the directory: a refused payload leaves nothing.
    let zip = if extract_zip && is_zip(plain) {
        Some(check_zip(plain)?)
    } else {
        None
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PayloadError::Io { path, source }
    };
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(dir)(e)),
        _ => {}
    }
    std::fs::create_dir(dir).map_err(io(dir))?;
    set_mode(dir, 0o700).map_err(io(dir))?;
    write_new(&dir.join(KEY_FILE), key, 0o600)?;
    write_new(&dir.join(PAYLOAD_FILE), plain, 0o600)?;
    tracing::info!(dir = %dir.display(), bytes = plain.len(), "payload written");
    if let Some(mut archive) = zip {
        extract(&mut archive, dir)?;
    }
    let script = dir.join(AUTORUN);
    Ok(std::fs::symlink_metadata(&script).is_ok_and(|m| m.file_type().is_file()))
}

fn is_zip(b: &[u8]) -> bool {
    b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06")
}

type Archive<'a> = zip::ZipArchive<std::io::Cursor<&'a [u8]>>;

fn check_zip(bytes: &[u8]) -> Result<Archive<'_>, PayloadError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| PayloadError::BadZip(e.to_string()))?;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| PayloadError::BadZip(e.to_string()))?;
        let name = entry.name().to_string();
        check_name(&name)?;
        if entry.is_symlink() {
            return Err(PayloadError::Symlink { name });
        }
    }
    Ok(archive)
}

/// A relative path made of normal components only.
fn check_name(name: &str) -> Result<(), PayloadError> {
    let refuse = |why| {
        Err(PayloadError::ZipSlip {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() || name.contains('\0') {
        return refuse("empty name or NUL byte");
    }
    if name.contains('\\') {
        return refuse("backslash in the name");
    }
    if name.starts_with('/') {
        return refuse("absolute path");
    }
    for c in Path::new(name).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return refuse("'..' component"),
            Component::RootDir | Component::Prefix(_) => return refuse("absolute path"),
        }
    }
    Ok(())
}

fn extract(archive: &mut Archive<'_>, dir: &Path) -> Result<(), PayloadError> {
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| PayloadError::BadZip(e.to_string()))?;
        // Checked by check_zip: relative, normal components only.
        let target = dir.join(entry.name());
        let io = |source| PayloadError::Io {
            path: target.clone(),
            source,
        };
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(io)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| PayloadError::BadZip(format!("entry {:?}: {e}", entry.name())))?;
        let exec = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        write_new(&target, &data, if exec { 0o700 } else { 0o600 })?;
    }
    tracing::info!(dir = %dir.display(), entries = archive.len(), "payload zip extracted");
    Ok(())
}

/// Create (never overwrite, never follow a link) and write a file.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), PayloadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PayloadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)
}

#[derive(Debug, Error)]
pub enum AutorunError {
    #[error("cannot start {path}: {source}")]
    Start {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} did not finish within {secs} s and was killed")]
    Timeout { path: PathBuf, secs: u64 },
}

/// Run `dir/autorun.sh` with cwd `dir`: made executable (0700) as upstream does, started
/// through `sh` so a script without `#!` works too, killed (its whole process group) after
/// `timeout`. Output and exit status are logged.
pub async fn run_autorun(dir: &Path, timeout: Duration) -> Result<(), AutorunError> {
    let path = dir.join(AUTORUN);
    let start = |source| AutorunError::Start {
        path: path.clone(),
        source,
    };
    let meta = std::fs::symlink_metadata(&path).map_err(start)?;
    if !meta.file_type().is_file() {
        return Err(start(std::io::Error::other("not a regular file")));
    }
    set_mode(&path, 0o700).map_err(start)?;
    tracing::info!(script = %path.display(), "running the payload script");
    match crate::script::run(&path, &[], dir, timeout).await {
        Ok(out) => {
            let (status, stdout, stderr) = (out.status, out.stdout, out.stderr);
            if status.success() {
                tracing::info!(script = %path.display(), %status, %stdout, %stderr, "payload script finished");
            } else {
                tracing::error!(script = %path.display(), %status, %stdout, %stderr, "payload script failed");
            }
            Ok(())
        }
        Err(NotFinished::Start(e)) => Err(start(e)),
        Err(NotFinished::TimedOut) => Err(AutorunError::Timeout {
            path,
            secs: timeout.as_secs(),
        }),
    }
}

/// Build a zip in memory (tests, and the tenant side if it wants one).
pub fn build_zip(entries: &[(&str, &[u8], u32)]) -> Result<Vec<u8>, zip::result::ZipError> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(*mode);
        w.start_file(*name, opts)?;
        w.write_all(data)?;
    }
    Ok(w.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "a/b.txt", "./a", "dir/"] {
            check_name(ok).unwrap();
        }
        for bad in ["/etc/passwd", "../x", "a/../../x", "a\\..\\x", ""] {
            assert!(
                matches!(check_name(bad), Err(PayloadError::ZipSlip { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn non_zip_is_written_as_decrypted_payload() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(UNZIPPED);
        assert!(!write_out(&dir, &[1; 32], b"plain data", true).unwrap());
        assert_eq!(
            std::fs::read(dir.join(PAYLOAD_FILE)).unwrap(),
            b"plain data"
        );
        assert_eq!(std::fs::read(dir.join(KEY_FILE)).unwrap(), [1; 32]);
        // A second delivery replaces the first.
        write_out(&dir, &[2; 32], b"again", true).unwrap();
        assert_eq!(std::fs::read(dir.join(PAYLOAD_FILE)).unwrap(), b"again");
    }

    #[test]
    fn zip_slip_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/unzipped");
        let z = build_zip(&[("ok.txt", b"1", 0o644), ("../../evil", b"2", 0o644)]).unwrap();
        let e = write_out(&dir, &[1; 32], &z, true).unwrap_err();
        assert!(e.to_string().contains("\"../../evil\""), "{e}");
        assert!(!dir.exists());
        assert!(!tmp.path().join("evil").exists());
    }

    #[tokio::test]
    async fn autorun_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(AUTORUN), "sleep 30\n").unwrap();
        let e = run_autorun(tmp.path(), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, AutorunError::Timeout { .. }), "{e}");
    }
}
