//! The PCR 16 binding of the node key NK (docs/keylime-wire.md §4.4).
//!
//! The agent resets PCR 16 and extends it with `H(pubkey)`, where `pubkey` is the exact PEM
//! text it returns in the quote's `pubkey` field (UTF-8 bytes, trailing newline included) and
//! `H` the quote's hash bank. A verifier then expects, in that bank,
//! `PCR16 == H(0x00 * H.size || H(pubkey))` — upstream `tpm/tpm_main.py:Tpm.sim_extend` and
//! `_check_data_pcr` (`config.TPM_DATA_PCR = 16`); agent side rust-keylime
//! `keylime/src/tpm.rs:pubkey_to_tpm_digest`. One extra or missing newline breaks it.

use crate::quote::VerifiedQuote;
use crate::tpm::HashAlg;
use thiserror::Error;

/// keylime's data PCR (`config.TPM_DATA_PCR`).
pub const DATA_PCR: u8 = 16;

/// What the agent extends PCR 16 with: `H(pubkey_pem)` in `bank`.
pub fn nk_digest(bank: HashAlg, pubkey_pem: &str) -> Vec<u8> {
    bank.digest(pubkey_pem.as_bytes())
}

/// The PCR 16 value after `PCR_Reset(16)` and one extend with [`nk_digest`].
pub fn expected_pcr16(bank: HashAlg, pubkey_pem: &str) -> Vec<u8> {
    let zero = vec![0u8; bank.digest_len()];
    bank.digest_parts(&[&zero, &nk_digest(bank, pubkey_pem)])
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BindingError {
    /// upstream failure event `missing_pcr_16`
    #[error("PCR {DATA_PCR} is not in the {bank} quote, but keylime requires it in every quote")]
    MissingPcr16 { bank: HashAlg },
    /// upstream failure event `invalid_pcr_16`
    #[error("PCR {DATA_PCR} ({bank}) is {found}, expected {expected} for the node key PEM the agent returned (is the PEM altered, e.g. a newline lost?)")]
    Mismatch {
        bank: HashAlg,
        expected: String,
        found: String,
    },
}

/// Check that a verified quote binds `pubkey_pem` (the `pubkey` string exactly as received).
pub fn check_nk_binding(quote: &VerifiedQuote, pubkey_pem: &str) -> Result<(), BindingError> {
    let bank = quote.hash_alg();
    let found = quote
        .pcrs()
        .get(bank, DATA_PCR)
        .ok_or(BindingError::MissingPcr16 { bank })?;
    let expected = expected_pcr16(bank, pubkey_pem);
    if found != expected.as_slice() {
        return Err(BindingError::Mismatch {
            bank,
            expected: hex::encode(expected),
            found: hex::encode(found),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_sim_extend() {
        // python3 -c 'import hashlib;h=hashlib.sha256;print(h(bytes(32)+h(b"PEM\n").digest()).hexdigest())'
        assert_eq!(
            hex::encode(expected_pcr16(HashAlg::Sha256, "PEM\n")),
            "7b61c5bff9f9ce862e9865d4a0d13bc30c2ca843705e13acf1fdb848964c0590"
        );
    }

    #[test]
    fn newline_matters_and_banks_differ() {
        let a = expected_pcr16(HashAlg::Sha256, "PEM\n");
        assert_ne!(a, expected_pcr16(HashAlg::Sha256, "PEM"));
        assert_eq!(expected_pcr16(HashAlg::Sha1, "PEM\n").len(), 20);
        assert_eq!(nk_digest(HashAlg::Sha384, "x").len(), 48);
    }
}
