//! EFI_SIGNATURE_LIST sequences (UEFI 2.x, "Signature Database"): the contents of PK, KEK,
//! db and dbx as they are measured into PCR 7.

use super::reader::LeReader;
use super::types::Guid;
use crate::tpm::wire::{WireError, WireReason};

/// One EFI_SIGNATURE_LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureList {
    pub signature_type: Guid,
    pub header: Vec<u8>,
    pub signatures: Vec<SignatureData>,
}

/// One EFI_SIGNATURE_DATA: the owner GUID and the certificate or hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignatureData {
    pub owner: Guid,
    pub data: Vec<u8>,
}

/// Parse the EFI_SIGNATURE_LIST sequence of a PK, KEK, db or dbx variable. `base` is the
/// offset of `data` in the log, for error positions.
pub fn signature_lists(data: &[u8], base: usize) -> Result<Vec<SignatureList>, WireError> {
    let mut r = LeReader::at(data, base);
    let mut lists = Vec::new();
    while r.remaining() > 0 {
        let what = format!("EFI_SIGNATURE_LIST[{}]", lists.len());
        let start = r.offset();
        let signature_type = Guid(r.array(&format!("{what}.SignatureType"))?);
        let list_size = r.u32(&format!("{what}.SignatureListSize"))? as usize;
        let header_size = r.u32(&format!("{what}.SignatureHeaderSize"))? as usize;
        let at = r.offset();
        let sig_size = r.u32(&format!("{what}.SignatureSize"))? as usize;
        let body = list_size
            .checked_sub(28)
            .and_then(|b| b.checked_sub(header_size))
            .ok_or_else(|| {
                r.error_at(
                    start + 16,
                    &format!("{what}.SignatureListSize"),
                    WireReason::Invalid(format!(
                        "{list_size} is smaller than the 28-byte list header plus the \
                         {header_size}-byte signature header"
                    )),
                )
            })?;
        if sig_size < 16 || body % sig_size != 0 {
            return Err(r.error_at(
                at,
                &format!("{what}.SignatureSize"),
                WireReason::Invalid(format!(
                    "{sig_size} does not divide the {body} bytes of signatures (each holds a \
                     16-byte owner GUID)"
                )),
            ));
        }
        let header = r
            .bytes(header_size, &format!("{what}.SignatureHeader"))?
            .to_vec();
        let mut signatures = Vec::with_capacity(body / sig_size);
        for i in 0..body / sig_size {
            let sd = format!("{what}.Signatures[{i}]");
            let owner = Guid(r.array(&format!("{sd}.SignatureOwner"))?);
            let data = r
                .bytes(sig_size - 16, &format!("{sd}.SignatureData"))?
                .to_vec();
            signatures.push(SignatureData { owner, data });
        }
        lists.push(SignatureList {
            signature_type,
            header,
            signatures,
        });
    }
    Ok(lists)
}

/// Serialize signature lists (the inverse of [`signature_lists`]), for fixtures.
pub fn encode_signature_lists(lists: &[SignatureList]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lists {
        let sig_size = l.signatures.first().map_or(16, |s| 16 + s.data.len());
        let size = 28 + l.header.len() + sig_size * l.signatures.len();
        out.extend_from_slice(l.signature_type.as_bytes());
        for v in [size, l.header.len(), sig_size] {
            out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
        }
        out.extend_from_slice(&l.header);
        for s in &l.signatures {
            out.extend_from_slice(s.owner.as_bytes());
            out.extend_from_slice(&s.data);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signature_lists_round_trip_and_reject_bad_sizes() {
        let lists = vec![
            SignatureList {
                signature_type: Guid::CERT_X509,
                header: vec![],
                signatures: vec![SignatureData {
                    owner: Guid::SHIM_LOCK,
                    data: vec![0x30, 1, 2],
                }],
            },
            SignatureList {
                signature_type: Guid::CERT_SHA256,
                header: vec![],
                signatures: vec![
                    SignatureData {
                        owner: Guid::EFI_GLOBAL_VARIABLE,
                        data: vec![1; 32],
                    },
                    SignatureData {
                        owner: Guid::EFI_GLOBAL_VARIABLE,
                        data: vec![2; 32],
                    },
                ],
            },
        ];
        let bytes = encode_signature_lists(&lists);
        assert_eq!(signature_lists(&bytes, 0).unwrap(), lists);
        assert!(signature_lists(&[], 0).unwrap().is_empty());
        let mut bad = bytes.clone();
        bad[24..28].copy_from_slice(&15u32.to_le_bytes());
        let e = signature_lists(&bad, 10).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("EFI_SIGNATURE_LIST[0].SignatureSize", 34)
        );
        let mut bad = bytes.clone();
        bad[16..20].copy_from_slice(&20u32.to_le_bytes());
        let e = signature_lists(&bad, 0).unwrap_err();
        assert_eq!(e.what, "EFI_SIGNATURE_LIST[0].SignatureListSize");
        let e = signature_lists(&bytes[..bytes.len() - 1], 0).unwrap_err();
        assert_eq!(e.what, "EFI_SIGNATURE_LIST[1].Signatures[1].SignatureData");
    }
}
