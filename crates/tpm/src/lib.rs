//! TPM device layer over tss-esapi: one owner thread per TPM context, async and blocking APIs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vouch_tpm::TpmError> {
//! use vouch_core::tpm::HashAlg;
//! use vouch_tpm::{AkKind, EkKind, Tcti, Tpm};
//! let tpm = Tpm::open(&"swtpm:host=127.0.0.1,port=2321".parse::<Tcti>()?)?;
//! let ek = tpm.create_ek(EkKind::Rsa2048).await?;
//! let ek_cert = tpm.read_ek_cert(EkKind::Rsa2048).await?;
//! let ak = tpm.create_ak(EkKind::Rsa2048, AkKind::Rsa2048, HashAlg::Sha256).await?;
//! let quote = tpm.quote(&ak, b"nonce", &[(HashAlg::Sha256, vec![0, 1, 16])]).await?;
//! # Ok(()) }
//! ```
//!
//! Sessions: empty passwords everywhere (HMAC sessions cost 3–5× per command on swtpm);
//! PolicySecret(endorsement) sessions where the low-range EK templates demand them.
//! Object slots: see `device.rs` — EKs live as saved contexts, one AK stays resident.

mod convert;
mod device;
mod error;
mod handle;
mod keys;
mod nv;
mod pcr;
mod tcti;

pub use error::TpmError;
pub use handle::{BlockingTpm, Tpm, TpmHandle};
pub use keys::{Ak, AkKind, EkKind};
pub use nv::NvAccess;
pub use pcr::QuoteOutput;
pub use tcti::{Tcti, TCTI_ENV_VARS};
