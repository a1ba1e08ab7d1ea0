//! Moving structures between tss-esapi and vouch-core through their TPM wire encoding.

use crate::error::TpmError;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::structures::{Private, Public as TssPublic};
use tss_esapi::traits::{Marshall, UnMarshall};
use vouch_core::tpm::{HashAlg, Public};

pub(crate) fn hashing(alg: HashAlg) -> HashingAlgorithm {
    match alg {
        HashAlg::Sha1 => HashingAlgorithm::Sha1,
        HashAlg::Sha256 => HashingAlgorithm::Sha256,
        HashAlg::Sha384 => HashingAlgorithm::Sha384,
        HashAlg::Sha512 => HashingAlgorithm::Sha512,
    }
}

pub(crate) fn hash_alg(alg: HashingAlgorithm) -> Option<HashAlg> {
    match alg {
        HashingAlgorithm::Sha1 => Some(HashAlg::Sha1),
        HashingAlgorithm::Sha256 => Some(HashAlg::Sha256),
        HashingAlgorithm::Sha384 => Some(HashAlg::Sha384),
        HashingAlgorithm::Sha512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

pub(crate) fn public_from_tss(p: &TssPublic) -> Result<Public, TpmError> {
    let tpmt = p
        .marshall()
        .map_err(TpmError::conversion("TPMT_PUBLIC from tss-esapi"))?;
    Public::from_tpmt(&tpmt).map_err(|e| TpmError::Conversion {
        what: "TPMT_PUBLIC returned by the TPM",
        detail: e.to_string(),
    })
}

pub(crate) fn public_to_tss(p: &Public) -> Result<TssPublic, TpmError> {
    TssPublic::unmarshall(&p.to_tpmt()).map_err(TpmError::conversion("TPMT_PUBLIC to tss-esapi"))
}

/// TPM2B_PRIVATE as tpm2-tools writes it: u16 size, then the blob.
pub(crate) fn private_to_tpm2b(p: &Private) -> Vec<u8> {
    let v = p.value();
    let mut out = Vec::with_capacity(v.len() + 2);
    // A TPM2B_PRIVATE is at most a few hundred bytes; the TPM produced it.
    out.extend_from_slice(&u16::try_from(v.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(v);
    out
}

pub(crate) fn private_from_tpm2b(bytes: &[u8]) -> Result<Private, TpmError> {
    let bad = |detail: String| TpmError::Conversion {
        what: "TPM2B_PRIVATE",
        detail,
    };
    if bytes.len() < 2 {
        return Err(bad(format!("{} bytes is too short", bytes.len())));
    }
    let size = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    if size != bytes.len() - 2 {
        return Err(bad(format!(
            "size field says {size}, {} bytes follow",
            bytes.len() - 2
        )));
    }
    Private::try_from(bytes[2..].to_vec()).map_err(TpmError::conversion("TPM2B_PRIVATE"))
}
