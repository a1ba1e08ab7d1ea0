//! The secure mount: where decrypted payloads live (rust-keylime `secure_mount.rs`).
//!
//! Upstream mounts a tmpfs (`mount -t tmpfs -o size=<secure_size>,mode=0700 tmpfs <dir>`) so
//! the payload and the derived key never reach a disk and vanish at power-off. We do the same
//! when running as root, lazily on the first payload, and only unmount what we mounted. When the
//! agent is not root, or `mount` fails, the directory is used as a plain 0700 directory and a
//! warning says the payload is on persistent storage.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SecureMountError {
    #[error("secure mount {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secure mount {path} is already mounted as {fs_type}, not tmpfs: unmount it or choose another secure_mount")]
    WrongFsType { path: PathBuf, fs_type: String },
}

/// How the directory ended up being backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A tmpfs this agent mounted (unmounted at shutdown).
    MountedByUs,
    /// A tmpfs that was already there (left alone at shutdown).
    ExistingTmpfs,
    /// A plain directory: not root, or `mount` failed.
    PlainDirectory,
}

/// The secure mount directory, prepared on first use.
#[derive(Debug)]
pub struct SecureMount {
    dir: PathBuf,
    size: String,
    mount_program: PathBuf,
    backing: Mutex<Option<Backing>>,
}

impl SecureMount {
    /// `size` is tmpfs's `size=` option (validated by the config: digits + k/m/g/%).
    pub fn new(dir: PathBuf, size: String) -> Self {
        Self {
            dir,
            size,
            mount_program: PathBuf::from("mount"),
            backing: Mutex::new(None),
        }
    }

    /// Tests: use another program than `mount` (e.g. `false`, to exercise the fallback).
    pub fn with_mount_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.mount_program = program.into();
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What backs the directory, once [`Self::prepare`] ran.
    pub fn backing(&self) -> Option<Backing> {
        self.backing.lock().ok().and_then(|b| *b)
    }

    /// Create the directory (0700) and mount a tmpfs on it if we are root and none is there.
    /// Blocking (runs `mount`); idempotent.
    pub fn prepare(&self) -> Result<Backing, SecureMountError> {
        let mut guard = self.backing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = *guard {
            // Someone may have unmounted it behind our back; re-check cheaply.
            if b == Backing::PlainDirectory || mounted_fs(&self.dir)?.is_some() {
                return Ok(b);
            }
        }
        let io = |source| SecureMountError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        set_mode(&self.dir, 0o700).map_err(io)?;
        let backing = match mounted_fs(&self.dir)? {
            Some(t) if t == "tmpfs" => Backing::ExistingTmpfs,
            Some(fs_type) => {
                return Err(SecureMountError::WrongFsType {
                    path: self.dir.clone(),
                    fs_type,
                })
            }
            None if !is_root() => {
                tracing::warn!(dir = %self.dir.display(), "not running as root: the secure mount is a plain directory, so decrypted payloads are kept on persistent storage");
                Backing::PlainDirectory
            }
            None => match self.mount() {
                Ok(()) => {
                    tracing::info!(dir = %self.dir.display(), size = %self.size, "mounted tmpfs for the secure mount");
                    Backing::MountedByUs
                }
                Err(detail) => {
                    tracing::warn!(dir = %self.dir.display(), "cannot mount a tmpfs ({detail}): the secure mount is a plain directory, so decrypted payloads are kept on persistent storage");
                    Backing::PlainDirectory
                }
            },
        };
        *guard = Some(backing);
        Ok(backing)
    }

    fn mount(&self) -> Result<(), String> {
        let out = Command::new(&self.mount_program)
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={},mode=0700", self.size))
            .arg("tmpfs")
            .arg(&self.dir)
            .output()
            .map_err(|e| format!("{}: {e}", self.mount_program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} exited with {}: {}",
                self.mount_program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Unmount the tmpfs if this agent mounted it (shutdown). Blocking.
    pub fn release(&self) {
        let mut guard = self.backing.lock().unwrap_or_else(|p| p.into_inner());
        if *guard != Some(Backing::MountedByUs) {
            return;
        }
        match Command::new("umount").arg(&self.dir).output() {
            Ok(out) if out.status.success() => {
                tracing::info!(dir = %self.dir.display(), "unmounted the secure mount");
                *guard = None;
            }
            Ok(out) => {
                tracing::error!(dir = %self.dir.display(), "umount failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())
            }
            Err(e) => tracing::error!(dir = %self.dir.display(), "cannot run umount: {e}"),
        }
    }
}

/// A mount we made must not outlive the agent, even one that stops without
/// [`crate::RunningAgent::wait`] (a panic, a dropped handle).
impl Drop for SecureMount {
    fn drop(&mut self) {
        self.release();
    }
}

/// File system type mounted exactly at `dir` (last mount wins), from /proc/self/mounts.
fn mounted_fs(dir: &Path) -> Result<Option<String>, SecureMountError> {
    let mounts = Path::new("/proc/self/mounts");
    let text = std::fs::read_to_string(mounts).map_err(|source| SecureMountError::Io {
        path: mounts.to_path_buf(),
        source,
    })?;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(parse_mounts(&text, &dir))
}

fn parse_mounts(text: &str, dir: &Path) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let mut f = line.split(' ');
        let (_src, target, fs_type) = (f.next()?, f.next()?, f.next()?);
        (Path::new(&unescape(target)) == dir).then(|| fs_type.to_string())
    })
}

/// /proc/self/mounts escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_the_mount_at_a_path() {
        let text = "proc /proc proc rw 0 0\ntmpfs /var/lib/a\\040b tmpfs rw 0 0\n/dev/sda1 /x ext4 rw 0 0\ntmpfs /x tmpfs rw 0 0\n";
        assert_eq!(
            parse_mounts(text, Path::new("/var/lib/a b")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(
            parse_mounts(text, Path::new("/x")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(parse_mounts(text, Path::new("/var")), None);
    }

    #[test]
    fn falls_back_to_a_plain_directory_when_mount_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let m = SecureMount::new(tmp.path().join("secure"), "1m".into())
            .with_mount_program("/bin/false");
        let b = m.prepare().unwrap();
        assert_eq!(b, Backing::PlainDirectory);
        assert!(m.dir().is_dir());
        m.release(); // nothing to unmount
        assert!(m.dir().is_dir());
    }
}
