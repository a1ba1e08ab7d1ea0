//! The bootstrap key K = U xor V (paper §3.2; docs/keylime-wire.md §4.5, §4.6).
//!
//! The tenant posts U (with `auth_tag = HMAC-SHA384(K, agent_id)` and optionally the payload),
//! the verifier posts V after its first good quote; both encrypted to the node key NK with
//! RSA-OAEP-SHA1. Every U is tried with every V until the tag matches
//! ([`vouch_core::keylime::find_key`], as rust-keylime `keys_handler.rs:try_combine_keys`).
//! Once K is known the payload is decrypted and deployed into the secure mount
//! ([`crate::payload`]). Every U is also kept in TPM NV with the encrypted payload on disk
//! ([`crate::nv_share`]), so after a reboot V alone brings the payload back.

use crate::nv_share::ShareStore;
use crate::payload::{Deployer, PayloadError};
use crate::secure_mount::SecureMountError;
use std::path::PathBuf;
use thiserror::Error;
use tokio::sync::Mutex;
use vouch_core::api::agent::{UkeyRequest, VkeyRequest};
use vouch_core::keylime::{
    challenge_hmac, decrypt_payload, find_key, BootstrapKey, Challenge, EncryptedPayload,
    EncryptedShare, KeyHmac, KeyShare, KeylimeError, NodeKey, TaggedShare,
};

pub use crate::payload::PAYLOAD_FILE;

#[derive(Debug, Error)]
pub enum KeysError {
    /// upstream's exact status text (§4.6)
    #[error("Bootstrap key not yet available.")]
    NotYetAvailable,
    #[error("{0}")]
    Bad(#[from] KeylimeError),
    /// Local I/O or mount trouble (a 500): the payload itself may be fine.
    #[error("storing the decrypted payload in {path}: {source}")]
    Payload {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The payload was refused (zip-slip, unreadable zip).
    #[error("{0}")]
    BadPayload(PayloadError),
}

impl From<PayloadError> for KeysError {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::Io { path, source } => Self::Payload { path, source },
            PayloadError::Mount(m) => {
                let path = match &m {
                    SecureMountError::Io { path, .. }
                    | SecureMountError::WrongFsType { path, .. } => path.clone(),
                };
                Self::Payload {
                    path,
                    source: std::io::Error::other(m.to_string()),
                }
            }
            other => Self::BadPayload(other),
        }
    }
}

/// A U with the payload the tenant sent alongside it: a payload is only ever decrypted with
/// the K its own U yields, so a re-add (new U + payload) is not tried against the old V.
struct PendingU {
    u: TaggedShare,
    payload: Option<EncryptedPayload>,
}

#[derive(Default)]
struct Shares {
    us: Vec<PendingU>,
    vs: Vec<KeyShare>,
    key: Option<BootstrapKey>,
}

/// NK and the shares received so far.
pub struct Keys {
    nk: NodeKey,
    agent: String,
    deployer: Deployer,
    store: Option<ShareStore>,
    shares: Mutex<Shares>,
}

impl Keys {
    /// `store`: where each U is kept across reboots (`None`: not kept).
    pub fn new(nk: NodeKey, agent: String, deployer: Deployer, store: Option<ShareStore>) -> Self {
        Self {
            nk,
            agent,
            deployer,
            store,
            shares: Mutex::new(Shares::default()),
        }
    }

    /// A U (and payload) kept from before a restart: waits for V like a freshly posted one.
    pub async fn restore(&self, u: TaggedShare, payload: Option<EncryptedPayload>) {
        self.shares.lock().await.us.push(PendingU { u, payload });
    }

    pub fn nk(&self) -> &NodeKey {
        &self.nk
    }

    /// `POST /keys/ukey`.
    pub async fn add_u(&self, req: &UkeyRequest) -> Result<(), KeysError> {
        let share = self
            .nk
            .decrypt_share(&EncryptedShare::from_base64(&req.encrypted_key)?)?;
        let auth_tag = KeyHmac::from_hex(&req.auth_tag)?;
        let payload = req
            .payload
            .as_deref()
            .map(EncryptedPayload::from_base64)
            .transpose()?;
        let u = TaggedShare { share, auth_tag };
        if let Some(store) = &self.store {
            // Keeping U is a convenience for reboots: failing to must not fail the delivery.
            match store.save(&u, payload.as_ref()).await {
                Ok(()) => tracing::info!(
                    nv_index = format_args!("{:#010x}", store.index()),
                    "U stored in TPM NV"
                ),
                Err(e) => {
                    tracing::error!("U not kept across reboots: {e}")
                }
            }
        }
        let mut s = self.shares.lock().await;
        s.us.push(PendingU { u, payload });
        self.try_combine(&mut s).await
    }

    /// `POST /keys/vkey`.
    pub async fn add_v(&self, req: &VkeyRequest) -> Result<(), KeysError> {
        let share = self
            .nk
            .decrypt_share(&EncryptedShare::from_base64(&req.encrypted_key)?)?;
        let mut s = self.shares.lock().await;
        s.vs.push(share);
        self.try_combine(&mut s).await
    }

    /// The newest U that pairs with some V (newest first) gives K; its payload, if not yet
    /// deployed, is decrypted and deployed (once: a failed payload is dropped, as upstream).
    async fn try_combine(&self, s: &mut Shares) -> Result<(), KeysError> {
        let vs: Vec<KeyShare> = s.vs.iter().rev().cloned().collect();
        let agent = &self.agent;
        let Some((pending, key)) =
            s.us.iter_mut()
                .rev()
                .find_map(|p| find_key(std::slice::from_ref(&p.u), &vs, agent).map(|k| (p, k)))
        else {
            return Ok(());
        };
        if s.key.as_ref() != Some(&key) {
            tracing::info!("bootstrap key derived");
        }
        if let Some(payload) = pending.payload.take() {
            // A payload that does not authenticate under K is refused before anything is
            // written: tampered in transit or on disk.
            let plain = decrypt_payload(&key, &payload)?;
            tracing::info!(bytes = plain.len(), "payload decrypted");
            self.deployer.deploy(&key, plain).await?;
        }
        s.key = Some(key);
        Ok(())
    }

    /// `GET /keys/verify?challenge=C`: hex(HMAC-SHA384(K, C)).
    pub async fn verify(&self, challenge: &str) -> Result<KeyHmac, KeysError> {
        let challenge = Challenge::parse(challenge)?;
        let s = self.shares.lock().await;
        let key = s.key.as_ref().ok_or(KeysError::NotYetAvailable)?;
        Ok(challenge_hmac(key, &challenge))
    }
}
