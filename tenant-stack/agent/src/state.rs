//! The agent's state directory: the AK it registered, kept so a restart presents the same AK.
//!
//! Why: upstream's registrar refuses a re-registration of the same agent ID with a different
//! `aik_tpm` (403, `_check_tpm_identity_immutable`, docs/keylime-wire.md §3.1), and a tenant or
//! verifier holding the old AK would reject every quote. The AK private blob is wrapped by the
//! TPM under the EK (its parent), so it is useless on any other TPM; the file is still written
//! 0600.
//!
//! `ak.json`: `{"format": 1, "parent": "rsa2048", "kind": "rsa2048", "hash": "sha256",
//! "public": b64(TPM2B_PUBLIC), "private": b64(TPM2B_PRIVATE)}`.

use crate::config::{ak_name, ek_name, parse_ak, parse_ek};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;
use vouch_core::tpm::{HashAlg, Public};
use vouch_tpm::{Ak, AkKind, EkKind};

const AK_FILE: &str = "ak.json";
const FORMAT: u32 = 1;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("state dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {detail} (delete it to create a new AK; the registrar record of this agent must then be deleted too)")]
    Corrupt { path: PathBuf, detail: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct AkFile {
    format: u32,
    parent: String,
    kind: String,
    hash: String,
    public: String,
    private: String,
}

/// A stored AK with the parameters it was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAk {
    pub ak: Ak,
    pub kind: AkKind,
    pub hash: HashAlg,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Create the directory (0700) if needed.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn ak_path(&self) -> PathBuf {
        self.dir.join(AK_FILE)
    }

    /// The stored AK, or `None` if there is none yet.
    pub fn load_ak(&self) -> Result<Option<StoredAk>, StateError> {
        let path = self.ak_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let corrupt = |detail: String| StateError::Corrupt {
            path: path.clone(),
            detail,
        };
        let f: AkFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if f.format != FORMAT {
            return Err(corrupt(format!(
                "format {} (this agent writes {FORMAT})",
                f.format
            )));
        }
        let parent =
            parse_ek(&f.parent).ok_or_else(|| corrupt(format!("parent {:?}", f.parent)))?;
        let kind = parse_ak(&f.kind).ok_or_else(|| corrupt(format!("kind {:?}", f.kind)))?;
        let hash =
            HashAlg::from_name(&f.hash).ok_or_else(|| corrupt(format!("hash {:?}", f.hash)))?;
        let public = STANDARD
            .decode(&f.public)
            .map_err(|e| corrupt(format!("public: {e}")))
            .and_then(|b| Public::from_tpm2b(&b).map_err(|e| corrupt(format!("public: {e}"))))?;
        let private = STANDARD
            .decode(&f.private)
            .map_err(|e| corrupt(format!("private: {e}")))?;
        Ok(Some(StoredAk {
            ak: Ak {
                name: public.name(),
                public,
                private,
                parent,
            },
            kind,
            hash,
        }))
    }

    /// Write the AK atomically (temp file + rename), mode 0600.
    pub fn save_ak(&self, stored: &StoredAk) -> Result<(), StateError> {
        let f = AkFile {
            format: FORMAT,
            parent: ek_name(stored.ak.parent).into(),
            kind: ak_name(stored.kind).into(),
            hash: stored.hash.name().into(),
            public: STANDARD.encode(stored.ak.public.to_tpm2b()),
            private: STANDARD.encode(&stored.ak.private),
        };
        let path = self.ak_path();
        let tmp = self.dir.join(format!("{AK_FILE}.tmp"));
        let io = |source| StateError::Io {
            path: tmp.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&f).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_private(&tmp, text.as_bytes()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|source| StateError::Io { path, source })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The parameters a stored AK must have for this configuration.
pub fn check_matches(
    stored: &StoredAk,
    parent: EkKind,
    kind: AkKind,
    hash: HashAlg,
) -> Result<(), String> {
    let want = (ek_name(parent), ak_name(kind), hash.name());
    let have = (
        ek_name(stored.ak.parent),
        ak_name(stored.kind),
        stored.hash.name(),
    );
    if want == have {
        Ok(())
    } else {
        Err(format!(
            "the stored AK is ek={} ak={} hash={}, the config asks for ek={} ak={} hash={}",
            have.0, have.1, have.2, want.0, want.1, want.2
        ))
    }
}
