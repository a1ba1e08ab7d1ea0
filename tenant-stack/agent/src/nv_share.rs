//! U kept across reboots (paper §3: after a reboot only the verifier's V is needed).
//!
//! When the tenant posts U, the agent stores U and its auth tag in a TPM NV index and the
//! still-encrypted payload in `<state_dir>/encrypted_payload` (the file name keylime's Python
//! agent used). At start-up both are loaded back, so when the verifier posts V after its first
//! good quote the agent derives K and redeploys the payload without the tenant.
//!
//! What is in NV, and why that is safe: U is one half of a one-time-pad split of K (K = U xor V,
//! V uniformly random), so U alone says nothing about K; the auth tag HMAC-SHA384(K, agent_id)
//! only lets the agent recognise the right V. The payload file is AES-GCM under K. V comes only
//! from the verifier, after a quote that passed its policy, so a node that boots into a bad
//! state never gets its payload back. The index is owner-authorized (OWNERREAD|OWNERWRITE).
//!
//! Record (82 bytes): `01 || len(U) || U zero-padded to 32 || auth_tag(48)`.

use std::path::{Path, PathBuf};
use thiserror::Error;
use vouch_core::keylime::{EncryptedPayload, KeyHmac, KeyShare, TaggedShare};
use vouch_tpm::{NvAccess, TpmError, TpmHandle};

/// Default NV index for U (owner range 0x015xxxxx, next to rust-keylime's 0x01400000s).
pub const DEFAULT_NV_INDEX: u32 = 0x0150_0016;
const FORMAT: u8 = 1;
const MAX_SHARE: usize = 32;
const TAG_LEN: usize = 48;
/// Size of the NV index.
pub const RECORD_LEN: usize = 2 + MAX_SHARE + TAG_LEN;
/// The encrypted payload next to the AK in the state dir.
pub const ENCRYPTED_PAYLOAD_FILE: &str = "encrypted_payload";

#[derive(Debug, Error)]
pub enum NvShareError {
    #[error("TPM NV index {index:#010x}: {source}")]
    Tpm { index: u32, source: TpmError },
    #[error("NV index {index:#010x} holds {len} bytes, not a {RECORD_LEN}-byte vouch U record: it belongs to something else; set nv_index to a free index (or 0 to disable)")]
    Foreign { index: u32, len: usize },
    #[error("NV index {index:#010x} does not hold a valid U record: {detail}")]
    Corrupt { index: u32, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// U + auth tag → the NV record.
pub fn encode(u: &TaggedShare) -> Vec<u8> {
    let share = u.share.as_bytes();
    let mut rec = vec![0u8; RECORD_LEN];
    rec[0] = FORMAT;
    // KeyShare is 16 or 32 bytes.
    rec[1] = share.len().min(MAX_SHARE) as u8;
    let n = share.len().min(MAX_SHARE);
    rec[2..2 + n].copy_from_slice(&share[..n]);
    rec[2 + MAX_SHARE..].copy_from_slice(u.auth_tag.as_bytes());
    rec
}

/// The NV record → U + auth tag.
pub fn decode(rec: &[u8]) -> Result<TaggedShare, String> {
    if rec.len() != RECORD_LEN {
        return Err(format!("{} bytes, expected {RECORD_LEN}", rec.len()));
    }
    if rec[0] != FORMAT {
        return Err(format!(
            "format byte {:#04x}, expected {FORMAT:#04x}",
            rec[0]
        ));
    }
    let n = usize::from(rec[1]);
    if n > MAX_SHARE {
        return Err(format!("share length {n}"));
    }
    let share = KeyShare::from_bytes(&rec[2..2 + n]).map_err(|e| e.to_string())?;
    let auth_tag =
        KeyHmac::from_hex(&hex::encode(&rec[2 + MAX_SHARE..])).map_err(|e| e.to_string())?;
    Ok(TaggedShare { share, auth_tag })
}

/// Where U and the encrypted payload survive a reboot.
#[derive(Clone)]
pub struct ShareStore {
    tpm: TpmHandle,
    index: u32,
    payload_path: PathBuf,
}

impl ShareStore {
    pub fn new(tpm: TpmHandle, index: u32, state_dir: &Path) -> Self {
        Self {
            tpm,
            index,
            payload_path: state_dir.join(ENCRYPTED_PAYLOAD_FILE),
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    fn tpm_err(&self) -> impl Fn(TpmError) -> NvShareError + '_ {
        move |source| NvShareError::Tpm {
            index: self.index,
            source,
        }
    }

    /// Store U (overwriting the previous one) and the payload that goes with it (or remove the
    /// stored payload when this U came without one). The payload goes first: a crash in between
    /// leaves a payload the old U cannot decrypt, which is reported, never misused.
    pub async fn save(
        &self,
        u: &TaggedShare,
        payload: Option<&EncryptedPayload>,
    ) -> Result<(), NvShareError> {
        let io = |source| NvShareError::Io {
            path: self.payload_path.clone(),
            source,
        };
        match payload {
            Some(p) => {
                let tmp = self.payload_path.with_extension("tmp");
                tokio::fs::write(&tmp, p.as_bytes())
                    .await
                    .map_err(|source| NvShareError::Io {
                        path: tmp.clone(),
                        source,
                    })?;
                tokio::fs::rename(&tmp, &self.payload_path)
                    .await
                    .map_err(io)?;
            }
            None => match tokio::fs::remove_file(&self.payload_path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            },
        }
        match self.tpm.nv_read(self.index).await {
            Ok(None) => {
                self.tpm
                    .nv_define(self.index, RECORD_LEN as u16, NvAccess::Owner)
                    .await
                    .map_err(self.tpm_err())?;
            }
            Ok(Some(d)) if d.len() != RECORD_LEN => {
                return Err(NvShareError::Foreign {
                    index: self.index,
                    len: d.len(),
                })
            }
            // Defined and ours, or defined but never written (NV_Read refuses that): write.
            Ok(Some(_)) | Err(_) => {}
        }
        self.tpm
            .nv_write(self.index, &encode(u))
            .await
            .map_err(self.tpm_err())
    }

    /// The stored U and payload; `None` if the index is not defined.
    pub async fn load(
        &self,
    ) -> Result<Option<(TaggedShare, Option<EncryptedPayload>)>, NvShareError> {
        let Some(rec) = self.tpm.nv_read(self.index).await.map_err(self.tpm_err())? else {
            return Ok(None);
        };
        if rec.len() != RECORD_LEN {
            return Err(NvShareError::Foreign {
                index: self.index,
                len: rec.len(),
            });
        }
        let u = decode(&rec).map_err(|detail| NvShareError::Corrupt {
            index: self.index,
            detail,
        })?;
        let payload = match tokio::fs::read(&self.payload_path).await {
            Ok(b) => Some(
                EncryptedPayload::from_bytes(b).map_err(|e| NvShareError::Io {
                    path: self.payload_path.clone(),
                    source: std::io::Error::other(e),
                })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(NvShareError::Io {
                    path: self.payload_path.clone(),
                    source,
                })
            }
        };
        Ok(Some((u, payload)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vouch_core::keylime::{auth_tag, BootstrapKey};

    #[test]
    fn record_round_trips() {
        let k = BootstrapKey::generate().unwrap();
        let (u, _) = k.split().unwrap();
        let t = TaggedShare {
            share: u.clone(),
            auth_tag: auth_tag(&k, "a"),
        };
        let rec = encode(&t);
        assert_eq!(rec.len(), RECORD_LEN);
        let back = decode(&rec).unwrap();
        assert_eq!(back.share, u);
        assert_eq!(back.auth_tag.as_bytes(), t.auth_tag.as_bytes());
        assert!(decode(&rec[1..]).is_err());
        let mut bad = rec.clone();
        bad[0] = 0xff;
        assert!(decode(&bad).is_err());
    }
}
