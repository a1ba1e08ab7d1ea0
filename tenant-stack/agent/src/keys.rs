//! The bootstrap key K = U xor V (paper §3.2; docs/keylime-wire.md §4.5, §4.6).
//!
//! The tenant posts U (with `auth_tag = HMAC-SHA384(K, agent_id)` and optionally the payload),
//! the verifier posts V after its first good quote; both encrypted to the node key NK with
//! RSA-OAEP-SHA1. Every U is tried with every V until the tag matches
//! ([`vouch_core::keylime::find_key`], as rust-keylime `keys_handler.rs:try_combine_keys`).
//! Once K is known the payload is decrypted into `<state_dir>/payload/decrypted_payload`
//! (rust-keylime's file name).

use std::path::PathBuf;
use thiserror::Error;
use tokio::sync::Mutex;
use vouch_core::api::agent::{UkeyRequest, VkeyRequest};
use vouch_core::keylime::{
    challenge_hmac, decrypt_payload, find_key, BootstrapKey, Challenge, EncryptedPayload,
    EncryptedShare, KeyHmac, KeyShare, KeylimeError, NodeKey, TaggedShare,
};

/// rust-keylime's name for the decrypted payload file.
pub const PAYLOAD_FILE: &str = "decrypted_payload";

#[derive(Debug, Error)]
pub enum KeysError {
    /// upstream's exact status text (§4.6)
    #[error("Bootstrap key not yet available.")]
    NotYetAvailable,
    #[error("{0}")]
    Bad(#[from] KeylimeError),
    #[error("storing the decrypted payload in {path}: {source}")]
    Payload {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Default)]
struct Shares {
    us: Vec<TaggedShare>,
    vs: Vec<KeyShare>,
    payload: Option<EncryptedPayload>,
    key: Option<BootstrapKey>,
}

/// NK and the shares received so far.
pub struct Keys {
    nk: NodeKey,
    agent: String,
    payload_dir: PathBuf,
    shares: Mutex<Shares>,
}

impl Keys {
    pub fn new(nk: NodeKey, agent: String, payload_dir: PathBuf) -> Self {
        Self {
            nk,
            agent,
            payload_dir,
            shares: Mutex::new(Shares::default()),
        }
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
        let mut s = self.shares.lock().await;
        s.us.push(TaggedShare { share, auth_tag });
        if payload.is_some() {
            s.payload = payload;
        }
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

    async fn try_combine(&self, s: &mut Shares) -> Result<(), KeysError> {
        let Some(key) = find_key(&s.us, &s.vs, &self.agent) else {
            return Ok(());
        };
        if s.key.as_ref() != Some(&key) {
            tracing::info!("bootstrap key derived");
        }
        if let Some(payload) = s.payload.take() {
            let plain = decrypt_payload(&key, &payload)?;
            let path = self.payload_dir.join(PAYLOAD_FILE);
            let io = |source| KeysError::Payload {
                path: path.clone(),
                source,
            };
            tokio::fs::create_dir_all(&self.payload_dir)
                .await
                .map_err(io)?;
            tokio::fs::write(&path, &plain).await.map_err(io)?;
            tracing::info!(path = %path.display(), bytes = plain.len(), "payload decrypted");
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
