//! PCR reads and extends, and quotes over a PCR selection.

use crate::convert::{hash_alg, hashing};
use crate::device::Device;
use crate::error::TpmError;
use crate::keys::Ak;
use tss_esapi::handles::PcrHandle;
use tss_esapi::structures::{
    AttestInfo, Data, Digest, DigestValues, PcrSelectionList, SignatureScheme,
};
use tss_esapi::traits::Marshall;
use tss_esapi::tss2_esys::{TPML_PCR_SELECTION, TPMS_PCR_SELECTION};
use vouch_core::tpm::HashAlg;

/// A PCR selection: banks in the caller's order, each with its PCR indices (0..=23).
pub type PcrSelection = [(HashAlg, Vec<u8>)];

/// What a quote returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteOutput {
    /// Marshalled TPMS_ATTEST (the contents of the TPM2B_ATTEST): what the signature covers.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The quoted PCR values: banks in selection order, indices ascending within a bank
    /// (the order the TPM digests them in). Their digest matches the quote's pcrDigest.
    pub pcrs: Vec<(HashAlg, u8, Vec<u8>)>,
}

/// How often a quote is retried when a PCR changed between the quote and the read-back.
const QUOTE_ATTEMPTS: u32 = 3;
const PCR_COUNT: u8 = 24;

/// Check the selection and put it in TPM order: indices ascending, no duplicates.
fn normalize(selection: &PcrSelection) -> Result<Vec<(HashAlg, Vec<u8>)>, TpmError> {
    if selection.len() > 16 {
        return Err(TpmError::InvalidArgument(format!(
            "{} PCR banks selected, at most 16",
            selection.len()
        )));
    }
    let mut out: Vec<(HashAlg, Vec<u8>)> = Vec::with_capacity(selection.len());
    for (bank, indices) in selection {
        if out.iter().any(|(b, _)| b == bank) {
            return Err(TpmError::InvalidArgument(format!(
                "PCR bank {bank} selected twice"
            )));
        }
        if let Some(bad) = indices.iter().find(|i| **i >= PCR_COUNT) {
            return Err(TpmError::InvalidArgument(format!(
                "PCR index {bad} out of range 0..=23"
            )));
        }
        let mut idx = indices.clone();
        idx.sort_unstable();
        idx.dedup();
        out.push((*bank, idx));
    }
    Ok(out)
}

/// tss-esapi's builder keeps banks in a HashMap; build the TPML ourselves to keep the order.
fn selection_list(selection: &[(HashAlg, Vec<u8>)]) -> Result<PcrSelectionList, TpmError> {
    let mut tpml = TPML_PCR_SELECTION::default();
    for (i, (bank, indices)) in selection.iter().enumerate() {
        let mut bitmap = [0u8; 4];
        for idx in indices {
            bitmap[usize::from(idx / 8)] |= 1 << (idx % 8);
        }
        tpml.pcrSelections[i] = TPMS_PCR_SELECTION {
            hash: bank.id(),
            sizeofSelect: 3,
            pcrSelect: bitmap,
        };
        tpml.count += 1;
    }
    PcrSelectionList::try_from(tpml).map_err(TpmError::conversion("PCR selection"))
}

impl Device {
    /// Read the selected PCRs (any number: the TPM returns at most 8 per PCR_Read).
    pub(crate) fn pcr_read_selection(
        &mut self,
        selection: &PcrSelection,
    ) -> Result<Vec<(HashAlg, u8, Vec<u8>)>, TpmError> {
        let selection = normalize(selection)?;
        let mut out = Vec::new();
        for (bank, indices) in &selection {
            let mut remaining = indices.clone();
            while !remaining.is_empty() {
                let list = selection_list(&[(*bank, remaining.clone())])?;
                let (_, read, digests) = self
                    .ctx
                    .pcr_read(list)
                    .map_err(TpmError::command("PCR_Read"))?;
                let slots: Vec<u8> = read
                    .get_selections()
                    .iter()
                    .filter(|s| hash_alg(s.hashing_algorithm()) == Some(*bank))
                    .flat_map(|s| s.selected())
                    .filter_map(|slot| {
                        u32::from(slot)
                            .checked_ilog2()
                            .and_then(|b| u8::try_from(b).ok())
                    })
                    .collect();
                if slots.is_empty() || slots.len() != digests.value().len() {
                    return Err(TpmError::Command {
                        command: "PCR_Read",
                        code: None,
                        detail: format!(
                            "bank {bank} returned {} values for {} PCRs (is the bank active?)",
                            digests.value().len(),
                            slots.len()
                        ),
                    });
                }
                for (idx, value) in slots.iter().zip(digests.value()) {
                    out.push((*bank, *idx, value.value().to_vec()));
                }
                remaining.retain(|i| !slots.contains(i));
            }
        }
        Ok(out)
    }

    pub(crate) fn pcr_extend(
        &mut self,
        index: u8,
        digests: &[(HashAlg, Vec<u8>)],
    ) -> Result<(), TpmError> {
        if index >= PCR_COUNT {
            return Err(TpmError::InvalidArgument(format!(
                "PCR index {index} out of range 0..=23"
            )));
        }
        let handle =
            PcrHandle::try_from(u32::from(index)).map_err(TpmError::conversion("PCR handle"))?;
        let mut values = DigestValues::new();
        for (bank, digest) in digests {
            if digest.len() != bank.digest_len() {
                return Err(TpmError::InvalidArgument(format!(
                    "{} bytes is not a {bank} digest ({} bytes)",
                    digest.len(),
                    bank.digest_len()
                )));
            }
            let d = Digest::try_from(digest.clone()).map_err(TpmError::conversion("digest"))?;
            values.set(hashing(*bank), d);
        }
        self.with_password(|ctx| ctx.pcr_extend(handle, values))
            .map_err(TpmError::command("PCR_Extend"))
    }

    /// PCR_Reset: only PCRs the platform lets the current locality reset (16 and 23 at
    /// locality 0 on a PC-client TPM) succeed; others fail with TPM_RC_LOCALITY.
    pub(crate) fn pcr_reset(&mut self, index: u8) -> Result<(), TpmError> {
        if index >= PCR_COUNT {
            return Err(TpmError::InvalidArgument(format!(
                "PCR index {index} out of range 0..=23"
            )));
        }
        let handle =
            PcrHandle::try_from(u32::from(index)).map_err(TpmError::conversion("PCR handle"))?;
        self.with_password(|ctx| ctx.pcr_reset(handle))
            .map_err(TpmError::command("PCR_Reset"))
    }

    /// Quote, then read the PCRs back and check them against the quote's pcrDigest; retry if
    /// a PCR was extended in between, so the returned values are exactly the quoted ones.
    pub(crate) fn quote(
        &mut self,
        ak: &Ak,
        nonce: &[u8],
        selection: &PcrSelection,
    ) -> Result<QuoteOutput, TpmError> {
        let selection = normalize(selection)?;
        let hash = ak.sign_hash().ok_or_else(|| {
            TpmError::InvalidArgument("the AK has no signing scheme with a hash".into())
        })?;
        let nonce = Data::try_from(nonce.to_vec()).map_err(|_| {
            TpmError::InvalidArgument(format!("nonce of {} bytes is longer than 64", nonce.len()))
        })?;
        let list = selection_list(&selection)?;
        let handle = self.ak_handle(ak)?;
        for _ in 0..QUOTE_ATTEMPTS {
            let (attest, signature) = self
                .with_password(|ctx| {
                    ctx.quote(handle, nonce.clone(), SignatureScheme::Null, list.clone())
                })
                .map_err(TpmError::command("Quote"))?;
            let AttestInfo::Quote { info } = attest.attested() else {
                return Err(TpmError::Command {
                    command: "Quote",
                    code: None,
                    detail: "the TPM returned an attestation that is not a quote".into(),
                });
            };
            let quoted_digest = info.pcr_digest().value().to_vec();
            let pcrs = self.pcr_read_selection(&selection)?;
            let parts: Vec<&[u8]> = pcrs.iter().map(|(_, _, v)| v.as_slice()).collect();
            if hash.digest_parts(&parts) != quoted_digest {
                tracing::debug!(tcti = %self.tcti, "PCRs changed during a quote; retrying");
                continue;
            }
            return Ok(QuoteOutput {
                attest: attest
                    .marshall()
                    .map_err(TpmError::conversion("TPMS_ATTEST"))?,
                signature: signature
                    .marshall()
                    .map_err(TpmError::conversion("TPMT_SIGNATURE"))?,
                pcrs,
            });
        }
        Err(TpmError::PcrsChanged {
            attempts: QUOTE_ATTEMPTS,
        })
    }
}
