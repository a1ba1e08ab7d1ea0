//! tpm2-tools 5.4 file formats that are not TPM wire structures.
//!
//! `tpm2_quote -m` writes a marshalled TPMS_ATTEST ([`crate::tpm::Attest::from_bytes`]) and
//! `-s` a marshalled TPMT_SIGNATURE ([`crate::tpm::Signature::from_bytes`]); only the PCR file
//! (`tpm2_quote -o`, `tpm2_pcrread -o`) is special: a raw little-endian dump of C structures,
//! checked against files written by tpm2-tools 5.4 on x86-64:
//!
//! ```text
//! 0     u32  TPML_PCR_SELECTION.count (<= 16)
//! 4     16 x TPMS_PCR_SELECTION, 8 bytes each:
//!            u16 hash, u8 sizeofSelect, u8 pcrSelect[4], u8 C padding
//! 132   u32  number n of TPML_DIGEST blocks
//! 136   n x TPML_DIGEST, 532 bytes each:
//!            u32 count (<= 8), 8 x TPM2B_DIGEST { u16 size, u8 buffer[64] }
//! ```
//!
//! That is the `serialized` format, `tpm2_quote`'s default. `tpm2_pcrread -o` defaults to the
//! `values` format instead (digests only, concatenated; see [`read_pcr_values`]) and writes the
//! layout above only with `-F serialized`.
//!
//! Digest blocks are the successive TPM2_PCR_Read responses, so they do not line up with
//! banks (20 values over sha1+sha256 come as 8 / 8 / 4): values are assigned in selection order.

use crate::tpm::pcr::{
    BankSelection, PcrError, PcrSelection, PcrValues, MAX_BANKS, MAX_SIZE_OF_SELECT,
};
use crate::tpm::wire::{Reader, WireError, WireReason};
use crate::tpm::HashAlg;

const SELECTION_SLOT: usize = 8;
const HEADER: usize = 4 + MAX_BANKS * SELECTION_SLOT + 4;
/// TPML_DIGEST holds at most 8 digests.
const DIGESTS_PER_BLOCK: usize = 8;
const DIGEST_SLOT: usize = 2 + 64;
const BLOCK: usize = 4 + DIGESTS_PER_BLOCK * DIGEST_SLOT;

fn le_u16(r: &mut Reader<'_>, what: &str) -> Result<u16, WireError> {
    let b = r.bytes(2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn le_u32(r: &mut Reader<'_>, what: &str) -> Result<u32, WireError> {
    let b = r.bytes(4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parse a tpm2-tools PCR file into the selection it was read for and the values.
pub fn read_pcr_file(bytes: &[u8]) -> Result<(PcrSelection, PcrValues), WireError> {
    let mut r = Reader::new(bytes);
    let at = r.offset();
    let count = le_u32(&mut r, "pcrs.selection.count")? as usize;
    if count > MAX_BANKS {
        return Err(r.error_at(
            at,
            "pcrs.selection.count",
            WireReason::TooLarge {
                size: count,
                max: MAX_BANKS,
            },
        ));
    }
    let mut banks: Vec<BankSelection> = Vec::with_capacity(count);
    for i in 0..MAX_BANKS {
        let slot = r.bytes(SELECTION_SLOT, "pcrs.selection.pcrSelections")?;
        if i >= count {
            continue; // unused slots are whatever the C array held
        }
        let at = 4 + i * SELECTION_SLOT;
        let what = format!("pcrs.selection.pcrSelections[{i}]");
        let id = u16::from_le_bytes([slot[0], slot[1]]);
        let hash = HashAlg::from_id(id).ok_or_else(|| {
            r.error_at(at, &format!("{what}.hash"), WireReason::Unknown(id.into()))
        })?;
        let size = slot[2];
        let bitmap = &slot[3..3 + MAX_SIZE_OF_SELECT as usize];
        let sel = BankSelection::from_bitmap(hash, bitmap.get(..size as usize).unwrap_or_default())
            .ok_or_else(|| {
                r.error_at(
                    at + 2,
                    &format!("{what}.sizeofSelect"),
                    WireReason::Invalid(format!("{size} bytes, expected 3 or 4")),
                )
            })?;
        if bitmap[size as usize..].iter().any(|&b| b != 0) {
            return Err(r.error_at(
                at + 3 + size as usize,
                &format!("{what}.pcrSelect"),
                WireReason::Invalid("PCRs selected beyond sizeofSelect".into()),
            ));
        }
        if banks.iter().any(|b| b.hash() == hash) {
            return Err(r.error_at(
                at,
                &format!("{what}.hash"),
                WireReason::Invalid(format!("bank {hash} listed twice")),
            ));
        }
        banks.push(sel);
    }
    let selection = PcrSelection::new(banks)
        .map_err(|e| r.error_at(0, "pcrs.selection", WireReason::Invalid(e.to_string())))?;

    let at = r.offset();
    let blocks = le_u32(&mut r, "pcrs.count")? as usize;
    let expected = blocks
        .checked_mul(BLOCK)
        .and_then(|b| b.checked_add(HEADER));
    if expected != Some(bytes.len()) {
        return Err(r.error_at(
            at,
            "pcrs.count",
            WireReason::Invalid(format!(
                "{blocks} digest blocks need {HEADER} + {blocks} x {BLOCK} bytes, the file has {}",
                bytes.len()
            )),
        ));
    }
    let wanted: Vec<(HashAlg, u8)> = selection.iter().collect();
    let mut next = wanted.iter();
    let mut values = PcrValues::new();
    for b in 0..blocks {
        let at = r.offset();
        let what = format!("pcrs.values[{b}]");
        let n = le_u32(&mut r, &format!("{what}.count"))? as usize;
        if n > DIGESTS_PER_BLOCK {
            return Err(r.error_at(
                at,
                &format!("{what}.count"),
                WireReason::TooLarge {
                    size: n,
                    max: DIGESTS_PER_BLOCK,
                },
            ));
        }
        for d in 0..DIGESTS_PER_BLOCK {
            let at = r.offset();
            let field = format!("{what}.digests[{d}]");
            let size = le_u16(&mut r, &format!("{field}.size"))? as usize;
            let buf = r.bytes(64, &format!("{field}.buffer"))?;
            if d >= n {
                continue;
            }
            let Some(&(hash, index)) = next.next() else {
                return Err(r.error_at(
                    at,
                    &field,
                    WireReason::Invalid(format!(
                        "more values than the {} selected PCRs",
                        wanted.len()
                    )),
                ));
            };
            if size != hash.digest_len() {
                return Err(r.error_at(
                    at,
                    &format!("{field}.size"),
                    WireReason::Invalid(format!(
                        "{size} bytes for PCR {hash}:{index}, expected {}",
                        hash.digest_len()
                    )),
                ));
            }
            values
                .insert(hash, index, buf[..size].to_vec())
                .map_err(|e| r.error_at(at, &field, WireReason::Invalid(e.to_string())))?;
        }
    }
    if let Some(&(hash, index)) = next.next() {
        return Err(r.error(
            "pcrs.values",
            WireReason::Invalid(format!(
                "{} values for {} selected PCRs: none for {hash}:{index}",
                values.len(),
                wanted.len()
            )),
        ));
    }
    r.finish("pcrs")?;
    Ok((selection, values))
}

/// Write `selection` and its values in the same layout, eight values per block as tpm2-tools
/// does. Fails if a selected value is missing.
pub fn write_pcr_file(selection: &PcrSelection, values: &PcrValues) -> Result<Vec<u8>, PcrError> {
    let mut flat = Vec::with_capacity(selection.count());
    for (hash, index) in selection.iter() {
        flat.push(
            values
                .get(hash, index)
                .ok_or(PcrError::MissingValue { hash, index })?,
        );
    }
    let blocks = flat.chunks(DIGESTS_PER_BLOCK).count();
    let mut out = Vec::with_capacity(HEADER + blocks * BLOCK);
    out.extend((selection.banks().len() as u32).to_le_bytes());
    for i in 0..MAX_BANKS {
        let mut slot = [0u8; SELECTION_SLOT];
        if let Some(b) = selection.banks().get(i) {
            slot[..2].copy_from_slice(&b.hash().id().to_le_bytes());
            slot[2] = b.size_of_select();
            let map = b.bitmap();
            slot[3..3 + map.len()].copy_from_slice(&map);
        }
        out.extend(slot);
    }
    out.extend((blocks as u32).to_le_bytes());
    for chunk in flat.chunks(DIGESTS_PER_BLOCK) {
        out.extend((chunk.len() as u32).to_le_bytes());
        for d in 0..DIGESTS_PER_BLOCK {
            let mut slot = [0u8; DIGEST_SLOT];
            if let Some(v) = chunk.get(d) {
                slot[..2].copy_from_slice(&(v.len() as u16).to_le_bytes());
                slot[2..2 + v.len()].copy_from_slice(v);
            }
            out.extend(slot);
        }
    }
    Ok(out)
}

/// Parse the `values` format (`tpm2_pcrread -o` default, `tpm2_quote -F values`): the digests
/// of `selection` concatenated in selection order, nothing else. The file does not say which
/// PCRs it holds, so the caller supplies the selection it asked for.
pub fn read_pcr_values(bytes: &[u8], selection: &PcrSelection) -> Result<PcrValues, WireError> {
    let mut r = Reader::new(bytes);
    let mut values = PcrValues::new();
    for (hash, index) in selection.iter() {
        let v = r.bytes(hash.digest_len(), &format!("pcr values.{hash}:{index}"))?;
        values
            .insert(hash, index, v.to_vec())
            .map_err(|e| r.error("pcr values", WireReason::Invalid(e.to_string())))?;
    }
    r.finish("pcr values")?;
    Ok(values)
}

/// Write the `values` format.
pub fn write_pcr_values(selection: &PcrSelection, values: &PcrValues) -> Result<Vec<u8>, PcrError> {
    let mut out = Vec::new();
    for (hash, index) in selection.iter() {
        out.extend_from_slice(
            values
                .get(hash, index)
                .ok_or(PcrError::MissingValue { hash, index })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (PcrSelection, PcrValues) {
        let sel: PcrSelection = "sha1:0,1,2,3,4,5,6,7,8,9+sha256:0,1,2,3,4,5,6,7,8,16"
            .parse()
            .unwrap();
        let mut v = PcrValues::new();
        for (h, i) in sel.iter() {
            v.insert(h, i, vec![i + h.digest_len() as u8; h.digest_len()])
                .unwrap();
        }
        (sel, v)
    }

    #[test]
    fn round_trip_splits_eight_per_block() {
        let (sel, v) = sample();
        let b = write_pcr_file(&sel, &v).unwrap();
        assert_eq!(b.len(), 136 + 3 * 532);
        // 20 values: blocks of 8 / 8 / 4, the second block mixing sha1 and sha256.
        assert_eq!(&b[132..140], &[3, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(&b[136 + 2 * 532..136 + 2 * 532 + 4], &[4, 0, 0, 0]);
        // Selection slot 0: sha1, sizeofSelect 3, bitmap ff 03 00 00, pad.
        assert_eq!(&b[4..12], &[0x04, 0x00, 0x03, 0xff, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(read_pcr_file(&b).unwrap(), (sel.clone(), v.clone()));
        let raw = write_pcr_values(&sel, &v).unwrap();
        assert_eq!(raw.len(), 10 * 20 + 10 * 32);
        assert_eq!(read_pcr_values(&raw, &sel).unwrap(), v);
        let e = read_pcr_values(&raw[..raw.len() - 1], &sel).unwrap_err();
        assert_eq!((e.what.as_str(), e.offset), ("pcr values.sha256:16", 488));
    }

    #[test]
    fn strictness_names_offsets() {
        let (sel, v) = sample();
        let b = write_pcr_file(&sel, &v).unwrap();
        let e = read_pcr_file(&b[..b.len() - 1]).unwrap_err();
        assert_eq!((e.what.as_str(), e.offset), ("pcrs.count", 132));
        let mut x = b.clone();
        x[6] = 5;
        let e = read_pcr_file(&x).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("pcrs.selection.pcrSelections[0].sizeofSelect", 6)
        );
        let mut x = b.clone();
        x[12] = 0x99;
        let e = read_pcr_file(&x).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("pcrs.selection.pcrSelections[1].hash", 12)
        );
        let mut x = b.clone();
        x[140] = 32; // first sha1 value claims 32 bytes
        let e = read_pcr_file(&x).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("pcrs.values[0].digests[0].size", 140)
        );
        let mut x = b.clone();
        x[136 + 2 * 532] = 3; // last block one value short
        let e = read_pcr_file(&x).unwrap_err();
        assert!(e.to_string().contains("none for sha256:16"), "{e}");
        let mut x = b.clone();
        x[136 + 2 * 532] = 9;
        assert!(matches!(
            read_pcr_file(&x).unwrap_err().reason,
            WireReason::TooLarge { size: 9, max: 8 }
        ));
        let mut x = b.clone();
        x[6] = 3;
        x[10] = 1; // a fourth bitmap byte set while sizeofSelect is 3
        assert_eq!(read_pcr_file(&x).unwrap_err().offset, 10);
        let mut missing = PcrValues::new();
        missing.insert(HashAlg::Sha1, 0, vec![0; 20]).unwrap();
        assert!(matches!(
            write_pcr_file(&sel, &missing),
            Err(PcrError::MissingValue { .. })
        ));
    }
}
