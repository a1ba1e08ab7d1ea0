//! Quotes as keylime wants them: one bank (the AK's hash), PCR 16 always included and holding
//! the node-key binding (docs/keylime-wire.md §4.1–§4.4).

use std::fmt;
use thiserror::Error;
use tokio::sync::Mutex;
use vouch_core::api::binding::{expected_pcr16, nk_digest, DATA_PCR};
use vouch_core::api::quote_string::{QuoteString, QuoteStringError};
use vouch_core::tpm::{HashAlg, PcrValues, Signature};
use vouch_tpm::{Ak, TpmError, TpmHandle};

/// TPM2B_DATA holds at most 64 bytes of qualifying data (rust-keylime `MAX_NONCE_SIZE`).
pub const MAX_NONCE_LEN: usize = 64;
/// A PC-client TPM has PCRs 0..=23.
const PCR_COUNT: u32 = 24;

/// A quote nonce from the query string: 1..=64 ASCII alphanumerics (upstream sends 20,
/// `random_password(20)`). Its ASCII bytes are the quote's qualifying data (§4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

/// A bad query parameter; the message goes into the 400 envelope's `status`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct BadParam(pub String);

impl Nonce {
    pub fn parse(raw: Option<&str>) -> Result<Self, BadParam> {
        let s = raw.ok_or_else(|| BadParam("Missing query parameter: nonce".into()))?;
        if s.is_empty() {
            return Err(BadParam("Query parameter nonce is empty".into()));
        }
        if s.len() > MAX_NONCE_LEN {
            return Err(BadParam(format!(
                "Nonce is too long (max size {MAX_NONCE_LEN}): {} characters",
                s.len()
            )));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BadParam(
                "Parameters should be strictly alphanumeric: nonce".into(),
            ));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The verifier's PCR mask (`hex()` of the bitmap, `0x` optional, as rust-keylime parses it),
/// restricted to PCRs 0..=23.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcrMask(u32);

impl PcrMask {
    pub fn parse(raw: Option<&str>) -> Result<Self, BadParam> {
        let s = raw.ok_or_else(|| BadParam("Missing query parameter: mask".into()))?;
        let hex = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadParam(format!(
                "Invalid mask {s:?}: expected a hexadecimal PCR bitmap such as 0x408000"
            )));
        }
        let bits =
            u32::from_str_radix(hex, 16).map_err(|_| BadParam(format!("Invalid mask {s:?}")))?;
        if bits >> PCR_COUNT != 0 {
            return Err(BadParam(format!(
                "Invalid mask {s:?}: selects PCRs above 23"
            )));
        }
        Ok(Self(bits))
    }

    /// Only PCR 16 (identity quotes).
    pub fn identity() -> Self {
        Self(0)
    }

    /// Whether the verifier asked for PCR `pcr`.
    pub fn includes(self, pcr: u8) -> bool {
        u32::from(pcr) < PCR_COUNT && self.0 & (1 << pcr) != 0
    }

    /// The selected PCRs plus PCR 16, ascending.
    pub fn indices(self) -> Vec<u8> {
        let bits = self.0 | (1 << DATA_PCR);
        (0u8..24).filter(|i| bits & (1 << i) != 0).collect()
    }
}

#[derive(Debug, Error)]
pub enum QuoteFailure {
    #[error("TPM: {0}")]
    Tpm(#[from] TpmError),
    #[error("the TPM returned a signature Vouch cannot encode: {0}")]
    Signature(String),
    #[error("encoding the quote string: {0}")]
    Encode(#[from] QuoteStringError),
    #[error("PCR {DATA_PCR} does not hold the node-key binding even after re-binding it (something else extends PCR {DATA_PCR}?)")]
    BindingLost,
}

/// Makes quotes; owns the PCR 16 binding.
pub struct Quoter {
    tpm: TpmHandle,
    ak: Ak,
    bank: HashAlg,
    nk_pem: String,
    expected_pcr16: Vec<u8>,
    /// Serialises re-binding with quoting, so a concurrent request never quotes a PCR 16
    /// halfway through reset + extend.
    lock: Mutex<()>,
}

impl Quoter {
    pub fn new(tpm: TpmHandle, ak: Ak, bank: HashAlg, nk_pem: String) -> Self {
        let expected_pcr16 = expected_pcr16(bank, &nk_pem);
        Self {
            tpm,
            ak,
            bank,
            nk_pem,
            expected_pcr16,
            lock: Mutex::new(()),
        }
    }

    pub fn bank(&self) -> HashAlg {
        self.bank
    }

    /// The PEM text bound into PCR 16 — returned verbatim as `pubkey`.
    pub fn nk_pem(&self) -> &str {
        &self.nk_pem
    }

    /// PCR_Reset(16), PCR_Extend(16, H(pem)) in the quote bank, as upstream's agent does.
    pub async fn bind(&self) -> Result<(), TpmError> {
        let _g = self.lock.lock().await;
        self.bind_locked().await
    }

    async fn bind_locked(&self) -> Result<(), TpmError> {
        self.tpm.pcr_reset(DATA_PCR).await?;
        self.tpm
            .pcr_extend(DATA_PCR, &[(self.bank, nk_digest(self.bank, &self.nk_pem))])
            .await
    }

    /// Quote `mask` + PCR 16 with `nonce`. If PCR 16 no longer holds the binding (a TPM
    /// restart reset it, or someone extended it) it is re-bound and the quote retried once.
    pub async fn quote(&self, nonce: &Nonce, mask: PcrMask) -> Result<QuoteString, QuoteFailure> {
        let _g = self.lock.lock().await;
        let selection = [(self.bank, mask.indices())];
        for attempt in 0..2 {
            let out = self
                .tpm
                .quote(&self.ak, nonce.as_bytes(), &selection)
                .await?;
            let pcr16 = out
                .pcrs
                .iter()
                .find(|(b, i, _)| *b == self.bank && *i == DATA_PCR)
                .map(|(_, _, v)| v.as_slice());
            if pcr16 != Some(self.expected_pcr16.as_slice()) {
                tracing::warn!(attempt, "PCR 16 lost the node-key binding; re-binding");
                self.bind_locked().await?;
                continue;
            }
            let signature = Signature::from_bytes(&out.signature)
                .map_err(|e| QuoteFailure::Signature(e.to_string()))?;
            let mut values = PcrValues::new();
            for (bank, index, value) in out.pcrs {
                values
                    .insert(bank, index, value)
                    .map_err(|e| QuoteFailure::Signature(e.to_string()))?;
            }
            return Ok(QuoteString::new(out.attest, signature, &values)?);
        }
        Err(QuoteFailure::BindingLost)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nonce_rules() {
        assert!(Nonce::parse(Some("ABCDEFGHIJ0123456789")).is_ok());
        assert!(Nonce::parse(Some(&"a".repeat(64))).is_ok());
        let e = Nonce::parse(Some(&"a".repeat(65))).unwrap_err();
        assert!(e.0.contains("too long"), "{e}");
        assert!(Nonce::parse(None).unwrap_err().0.contains("Missing"));
        assert!(Nonce::parse(Some("")).is_err());
        assert!(Nonce::parse(Some("abc-def"))
            .unwrap_err()
            .0
            .contains("alphanumeric"));
        assert!(Nonce::parse(Some("abcé")).is_err());
    }

    #[test]
    fn mask_rules() {
        assert_eq!(PcrMask::parse(Some("0x0")).unwrap().indices(), vec![16]);
        assert_eq!(
            PcrMask::parse(Some("0x408000")).unwrap().indices(),
            vec![15, 16, 22]
        );
        assert_eq!(
            PcrMask::parse(Some("401")).unwrap().indices(),
            vec![0, 10, 16]
        );
        assert_eq!(PcrMask::parse(Some("0x10000")).unwrap().indices(), vec![16]);
        assert_eq!(PcrMask::identity().indices(), vec![16]);
        for bad in ["", "0x", "zz", "0x1000000", "-1", "0x123456789", "1 "] {
            assert!(PcrMask::parse(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(PcrMask::parse(None).unwrap_err().0.contains("mask"));
    }
}
