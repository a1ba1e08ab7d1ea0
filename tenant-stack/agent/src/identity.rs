//! The TPM identity the agent enrolls: EK (+ certificate) and an AK that survives restarts.

use crate::state::{check_matches, StateDir, StateError, StoredAk};
use thiserror::Error;
use vouch_core::tpm::{HashAlg, Public};
use vouch_tpm::{Ak, AkKind, EkKind, TpmError, TpmHandle};

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("creating the {kind:?} EK: {source}")]
    Ek { kind: EkKind, source: TpmError },
    #[error("reading the {kind:?} EK certificate from NV: {source}")]
    EkCert { kind: EkKind, source: TpmError },
    #[error("creating the AK: {0}")]
    CreateAk(TpmError),
    #[error("the AK stored in {dir} does not load on this TPM ({source}); it was made by another TPM or the TPM was cleared. Delete {dir}/ak.json and the agent's registrar record to enroll a new AK")]
    ForeignAk { dir: String, source: TpmError },
    #[error("{detail}. Change the config back, or delete {dir}/ak.json and the agent's registrar record to enroll a new AK")]
    AkMismatch { dir: String, detail: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// EK, EK certificate and AK of this agent.
#[derive(Debug, Clone)]
pub struct TpmIdentity {
    pub ek_kind: EkKind,
    pub ek: Public,
    /// DER; `None` if the TPM has no certificate for this EK (sent as `ekcert: null`).
    pub ek_cert: Option<Vec<u8>>,
    pub ak: Ak,
    pub ak_kind: AkKind,
    pub hash: HashAlg,
    /// Whether the AK was created now (false: reloaded from the state dir).
    pub ak_created: bool,
}

impl TpmIdentity {
    /// `enc_alg` as the quote responses report it (the EK family; `rsa`≡`rsa2048` upstream).
    pub fn enc_alg(&self) -> &'static str {
        match self.ek_kind {
            EkKind::Rsa2048 => "rsa",
            EkKind::EccP256 | EkKind::EccP384 => "ecc",
        }
    }

    /// `sign_alg`: the AK's scheme (RSASSA or ECDSA, the two keylime accepts for quotes).
    pub fn sign_alg(&self) -> &'static str {
        match self.ak_kind {
            AkKind::Rsa2048 => "rsassa",
            AkKind::EccP256 => "ecdsa",
        }
    }
}

/// Create the EK, read its certificate, and reload the stored AK or create (and store) one.
pub async fn load_or_create(
    tpm: &TpmHandle,
    state: &StateDir,
    ek_kind: EkKind,
    ak_kind: AkKind,
    hash: HashAlg,
) -> Result<TpmIdentity, IdentityError> {
    let ek = tpm
        .create_ek(ek_kind)
        .await
        .map_err(|source| IdentityError::Ek {
            kind: ek_kind,
            source,
        })?;
    let ek_cert = tpm
        .read_ek_cert(ek_kind)
        .await
        .map_err(|source| IdentityError::EkCert {
            kind: ek_kind,
            source,
        })?;
    if ek_cert.is_none() {
        tracing::warn!(?ek_kind, "the TPM has no EK certificate for this EK; registering with ekcert null (a tenant with require_ek_cert will refuse the agent)");
    }
    let dir = state.path().display().to_string();
    let (ak, ak_created) = match state.load_ak()? {
        Some(stored) => {
            check_matches(&stored, ek_kind, ak_kind, hash).map_err(|detail| {
                IdentityError::AkMismatch {
                    dir: dir.clone(),
                    detail,
                }
            })?;
            tpm.load_ak(&stored.ak)
                .await
                .map_err(|source| IdentityError::ForeignAk { dir, source })?;
            tracing::info!("reloaded the AK from the state dir");
            (stored.ak, false)
        }
        None => {
            let ak = tpm
                .create_ak(ek_kind, ak_kind, hash)
                .await
                .map_err(IdentityError::CreateAk)?;
            state.save_ak(&StoredAk {
                ak: ak.clone(),
                kind: ak_kind,
                hash,
            })?;
            tracing::info!("created a new AK and stored it in the state dir");
            (ak, true)
        }
    };
    Ok(TpmIdentity {
        ek_kind,
        ek,
        ek_cert,
        ak,
        ak_kind,
        hash,
        ak_created,
    })
}
