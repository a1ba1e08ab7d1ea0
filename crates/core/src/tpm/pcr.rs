//! PCR selections (TPML_PCR_SELECTION), tpm2-tools' selection syntax, and PCR values with the
//! quote's pcrDigest computation.
//!
//! Bank order is significant everywhere: TPM2_Quote hashes the selected PCRs bank by bank in
//! the order the selection lists them, so a selection is a list, never a set of banks.

use super::alg::HashAlg;
use super::wire::{Reader, WireError, WireReason, Writer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// TPM_PCR_SELECT_MAX for the PCR banks Vouch supports (32 PCRs at most per bank).
pub const MAX_SIZE_OF_SELECT: u8 = 4;
/// PC Client TPMs have 24 PCRs: a three-byte bitmap.
pub const MIN_SIZE_OF_SELECT: u8 = 3;
/// HASH_COUNT bound used by tpm2-tss (TPML_PCR_SELECTION.pcrSelections has 16 slots).
pub const MAX_BANKS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PcrError {
    #[error("PCR index {index} is out of range (0..=31)")]
    IndexOutOfRange { index: u32 },
    #[error("PCR bank {0} is listed twice")]
    DuplicateBank(HashAlg),
    #[error("{0} PCR banks selected, at most {MAX_BANKS} are allowed")]
    TooManyBanks(usize),
    #[error("bad PCR selection '{input}': {part:?} {reason}")]
    Syntax {
        input: String,
        part: String,
        reason: String,
    },
    #[error("PCR value {hash}:{index} is missing")]
    MissingValue { hash: HashAlg, index: u8 },
    #[error("PCR value {hash}:{index} is {len} bytes, a {hash} PCR is {expected}")]
    WrongLength {
        hash: HashAlg,
        index: u8,
        len: usize,
        expected: usize,
    },
}

/// One TPMS_PCR_SELECTION: a bank and the PCRs selected in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BankSelection {
    hash: HashAlg,
    /// Kept so a parsed structure marshals back byte for byte.
    size_of_select: u8,
    /// Bit n set = PCR n selected (byte n/8, bit n%8 on the wire).
    bits: u32,
}

impl BankSelection {
    /// Select `indexes` (each < 32) in bank `hash`; the bitmap is three bytes unless a PCR
    /// above 23 is selected.
    pub fn new(hash: HashAlg, indexes: impl IntoIterator<Item = u8>) -> Result<Self, PcrError> {
        let mut bits = 0u32;
        for i in indexes {
            if i >= 32 {
                return Err(PcrError::IndexOutOfRange { index: i.into() });
            }
            bits |= 1 << i;
        }
        let size_of_select = if bits >> 24 != 0 {
            MAX_SIZE_OF_SELECT
        } else {
            MIN_SIZE_OF_SELECT
        };
        Ok(Self {
            hash,
            size_of_select,
            bits,
        })
    }

    pub fn hash(&self) -> HashAlg {
        self.hash
    }

    pub fn size_of_select(&self) -> u8 {
        self.size_of_select
    }

    pub fn contains(&self, index: u8) -> bool {
        index < 32 && self.bits & (1 << index) != 0
    }

    /// Selected PCR indexes, ascending.
    pub fn indexes(&self) -> impl Iterator<Item = u8> + '_ {
        (0u8..32).filter(|&i| self.contains(i))
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    fn read(r: &mut Reader<'_>, what: &str) -> Result<Self, WireError> {
        let hash = HashAlg::read(r, &format!("{what}.hash"))?;
        let at = r.offset();
        let size_of_select = r.u8(&format!("{what}.sizeofSelect"))?;
        if !(MIN_SIZE_OF_SELECT..=MAX_SIZE_OF_SELECT).contains(&size_of_select) {
            return Err(r.error_at(
                at,
                &format!("{what}.sizeofSelect"),
                WireReason::Invalid(format!(
                    "{size_of_select} bytes, expected {MIN_SIZE_OF_SELECT} or {MAX_SIZE_OF_SELECT}"
                )),
            ));
        }
        let map = r.bytes(size_of_select.into(), &format!("{what}.pcrSelect"))?;
        let bits = map
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (8 * i));
        Ok(Self {
            hash,
            size_of_select,
            bits,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.u16(self.hash.id()).u8(self.size_of_select);
        w.bytes(&self.bits.to_le_bytes()[..self.size_of_select as usize]);
    }

    /// The bitmap bytes as they appear on the wire (`size_of_select` of them).
    pub fn bitmap(&self) -> Vec<u8> {
        self.bits.to_le_bytes()[..self.size_of_select as usize].to_vec()
    }

    /// Build from a raw bitmap of 3 or 4 bytes (as in the tpm2-tools PCR file).
    pub fn from_bitmap(hash: HashAlg, bitmap: &[u8]) -> Option<Self> {
        let size_of_select = u8::try_from(bitmap.len()).ok()?;
        if !(MIN_SIZE_OF_SELECT..=MAX_SIZE_OF_SELECT).contains(&size_of_select) {
            return None;
        }
        let bits = bitmap
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (8 * i));
        Some(Self {
            hash,
            size_of_select,
            bits,
        })
    }
}

/// TPML_PCR_SELECTION: banks in the order given, no bank twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PcrSelection {
    banks: Vec<BankSelection>,
}

impl PcrSelection {
    pub fn new(banks: Vec<BankSelection>) -> Result<Self, PcrError> {
        if banks.len() > MAX_BANKS {
            return Err(PcrError::TooManyBanks(banks.len()));
        }
        for (i, b) in banks.iter().enumerate() {
            if banks[..i].iter().any(|o| o.hash == b.hash) {
                return Err(PcrError::DuplicateBank(b.hash));
            }
        }
        Ok(Self { banks })
    }

    pub fn banks(&self) -> &[BankSelection] {
        &self.banks
    }

    /// Every selected (bank, index), banks in selection order and indexes ascending: the
    /// order in which TPM2_Quote concatenates PCR values.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u8)> + '_ {
        self.banks
            .iter()
            .flat_map(|b| b.indexes().map(move |i| (b.hash, i)))
    }

    /// Number of selected PCRs over all banks.
    pub fn count(&self) -> usize {
        self.banks
            .iter()
            .map(|b| b.bits.count_ones() as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    pub fn contains(&self, hash: HashAlg, index: u8) -> bool {
        self.banks
            .iter()
            .any(|b| b.hash == hash && b.contains(index))
    }

    /// `Ok` if every PCR in `required` is selected here; otherwise the PCRs that are not.
    pub fn covers(&self, required: &PcrSelection) -> Result<(), PcrSelection> {
        missing(required, |h, i| self.contains(h, i))
    }

    pub fn read(r: &mut Reader<'_>, what: &str) -> Result<Self, WireError> {
        let at = r.offset();
        let count = r.u32(&format!("{what}.count"))?;
        if count as usize > MAX_BANKS {
            return Err(r.error_at(
                at,
                &format!("{what}.count"),
                WireReason::TooLarge {
                    size: count as usize,
                    max: MAX_BANKS,
                },
            ));
        }
        let mut banks = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = r.offset();
            let field = format!("{what}.pcrSelections[{i}]");
            let b = BankSelection::read(r, &field)?;
            if banks.iter().any(|o: &BankSelection| o.hash == b.hash) {
                return Err(r.error_at(
                    at,
                    &format!("{field}.hash"),
                    WireReason::Invalid(format!("bank {} selected twice", b.hash)),
                ));
            }
            banks.push(b);
        }
        Ok(Self { banks })
    }

    pub fn write(&self, w: &mut Writer) {
        w.u32(self.banks.len() as u32);
        for b in &self.banks {
            b.write(w);
        }
    }

    /// Parse a TPML_PCR_SELECTION that fills `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let s = Self::read(&mut r, "TPML_PCR_SELECTION")?;
        r.finish("TPML_PCR_SELECTION")?;
        Ok(s)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_vec()
    }
}

/// The PCRs of `required` for which `present` is false, as a selection (empty → `Ok`).
fn missing(
    required: &PcrSelection,
    present: impl Fn(HashAlg, u8) -> bool,
) -> Result<(), PcrSelection> {
    let mut banks = Vec::new();
    for b in &required.banks {
        let absent: Vec<u8> = b.indexes().filter(|&i| !present(b.hash, i)).collect();
        if !absent.is_empty() {
            // Indexes come from a valid bank, so they are < 32.
            if let Ok(sel) = BankSelection::new(b.hash, absent) {
                banks.push(sel);
            }
        }
    }
    if banks.is_empty() {
        Ok(())
    } else {
        Err(PcrSelection { banks })
    }
}

/// tpm2-tools syntax: `sha1:0,1+sha256:10,16`, `sha256:all`, indexes decimal or `0x` hex.
impl FromStr for PcrSelection {
    type Err = PcrError;

    fn from_str(input: &str) -> Result<Self, PcrError> {
        let bad = |part: &str, reason: &str| PcrError::Syntax {
            input: input.to_string(),
            part: part.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad(input, "is empty"));
        }
        if input.chars().any(char::is_whitespace) {
            return Err(bad(input, "contains whitespace"));
        }
        let mut banks: Vec<BankSelection> = Vec::new();
        for bank in input.split('+') {
            let (alg, list) = bank
                .split_once(':')
                .ok_or_else(|| bad(bank, "needs the form <bank>:<pcr list>"))?;
            let hash = HashAlg::from_name(alg)
                .ok_or_else(|| bad(alg, "is not a PCR bank (sha1, sha256, sha384, sha512)"))?;
            if banks.iter().any(|b| b.hash == hash) {
                return Err(bad(alg, "is listed twice"));
            }
            let sel = if list == "all" {
                BankSelection::new(hash, 0..24)?
            } else {
                if list.is_empty() {
                    return Err(bad(bank, "selects no PCR"));
                }
                let mut idx = Vec::new();
                for item in list.split(',') {
                    let n = match item.strip_prefix("0x").or_else(|| item.strip_prefix("0X")) {
                        Some(h) if !h.is_empty() => u32::from_str_radix(h, 16),
                        Some(_) => return Err(bad(item, "is not a PCR index")),
                        None => item.parse::<u32>(),
                    }
                    .map_err(|_| bad(item, "is not a PCR index"))?;
                    let i = u8::try_from(n)
                        .ok()
                        .filter(|&i| i < 32)
                        .ok_or_else(|| bad(item, "is out of range (0..=31)"))?;
                    idx.push(i);
                }
                BankSelection::new(hash, idx)?
            };
            banks.push(sel);
        }
        PcrSelection::new(banks)
    }
}

/// Same syntax as [`FromStr`]; an empty bank prints as `sha256:` (not parseable, as in tpm2-tools).
impl fmt::Display for PcrSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, b) in self.banks.iter().enumerate() {
            if n > 0 {
                f.write_str("+")?;
            }
            write!(f, "{}:", b.hash)?;
            for (k, i) in b.indexes().enumerate() {
                if k > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{i}")?;
            }
        }
        Ok(())
    }
}

/// PCR digests by (bank, index). Every value has its bank's digest length.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrValues {
    values: BTreeMap<(HashAlg, u8), Vec<u8>>,
}

impl PcrValues {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set one PCR value; its length must be the bank's digest length.
    pub fn insert(&mut self, hash: HashAlg, index: u8, value: Vec<u8>) -> Result<(), PcrError> {
        if index >= 32 {
            return Err(PcrError::IndexOutOfRange {
                index: index.into(),
            });
        }
        if value.len() != hash.digest_len() {
            return Err(PcrError::WrongLength {
                hash,
                index,
                len: value.len(),
                expected: hash.digest_len(),
            });
        }
        self.values.insert((hash, index), value);
        Ok(())
    }

    pub fn get(&self, hash: HashAlg, index: u8) -> Option<&[u8]> {
        self.values.get(&(hash, index)).map(Vec::as_slice)
    }

    /// All values, ordered by bank then index.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u8, &[u8])> {
        self.values.iter().map(|(&(h, i), v)| (h, i, v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `Ok` if a value is present for every PCR in `required`; otherwise the missing ones.
    pub fn covers(&self, required: &PcrSelection) -> Result<(), PcrSelection> {
        missing(required, |h, i| self.values.contains_key(&(h, i)))
    }

    /// Only the values inside `selection`.
    pub fn restricted_to(&self, selection: &PcrSelection) -> PcrValues {
        let values = self
            .values
            .iter()
            .filter(|(&(h, i), _)| selection.contains(h, i))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        PcrValues { values }
    }

    /// The quote's pcrDigest: `alg` over the selected values concatenated, banks in selection
    /// order and indexes ascending (TPM 2.0 Part 3, TPM2_Quote / PCRComputeCurrentDigest).
    pub fn digest(&self, selection: &PcrSelection, alg: HashAlg) -> Result<Vec<u8>, PcrError> {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(selection.count());
        for (hash, index) in selection.iter() {
            let v = self
                .get(hash, index)
                .ok_or(PcrError::MissingValue { hash, index })?;
            if v.len() != hash.digest_len() {
                return Err(PcrError::WrongLength {
                    hash,
                    index,
                    len: v.len(),
                    expected: hash.digest_len(),
                });
            }
            parts.push(v);
        }
        Ok(alg.digest_parts(&parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tpm2_tools_syntax_and_keeps_bank_order() {
        let s: PcrSelection = "sha256:10,0x10+sha1:0,1".parse().unwrap();
        assert_eq!(s.banks()[0].hash(), HashAlg::Sha256);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![
                (HashAlg::Sha256, 10),
                (HashAlg::Sha256, 16),
                (HashAlg::Sha1, 0),
                (HashAlg::Sha1, 1)
            ]
        );
        assert_eq!(s.to_string(), "sha256:10,16+sha1:0,1");
        let all: PcrSelection = "sha384:all".parse().unwrap();
        assert_eq!(all.count(), 24);
        assert_eq!(all.banks()[0].size_of_select(), 3);
        let high: PcrSelection = "sha256:31".parse().unwrap();
        assert_eq!(high.banks()[0].size_of_select(), 4);
    }

    #[test]
    fn bad_syntax_names_the_part() {
        for (input, part) in [
            ("sha1:0,x", "x"),
            ("md5:0", "md5"),
            ("sha1:0+sha1:1", "sha1"),
            ("sha1:32", "32"),
            ("sha1", "sha1"),
            ("sha1:", "sha1:"),
            ("sha1:0x", "0x"),
        ] {
            match input.parse::<PcrSelection>() {
                Err(PcrError::Syntax { part: p, .. }) => assert_eq!(p, part, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        assert!(matches!(
            "sha1: 0".parse::<PcrSelection>(),
            Err(PcrError::Syntax { .. })
        ));
    }

    #[test]
    fn wire_round_trip_and_strictness() {
        let s: PcrSelection = "sha1:0,1+sha256:0,1,16".parse().unwrap();
        let b = s.to_bytes();
        // Same bytes as the quote tpm2_quote produced for this selection on swtpm.
        assert_eq!(hex::encode(&b), "00000002000403030000000b03030001");
        assert_eq!(PcrSelection::from_bytes(&b).unwrap(), s);
        let mut bad = b.clone();
        bad[6] = 2;
        let e = PcrSelection::from_bytes(&bad).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("TPML_PCR_SELECTION.pcrSelections[0].sizeofSelect", 6)
        );
        let mut dup = b.clone();
        dup[11] = 0x04;
        let e = PcrSelection::from_bytes(&dup).unwrap_err();
        assert_eq!(e.offset, 10);
        let e = PcrSelection::from_bytes(&[0, 0, 0, 17]).unwrap_err();
        assert_eq!(e.reason, WireReason::TooLarge { size: 17, max: 16 });
    }

    #[test]
    fn covers_and_digest() {
        let sel: PcrSelection = "sha1:0+sha256:1,2".parse().unwrap();
        let mut v = PcrValues::new();
        v.insert(HashAlg::Sha1, 0, vec![1; 20]).unwrap();
        v.insert(HashAlg::Sha256, 2, vec![3; 32]).unwrap();
        let missing = v.covers(&sel).unwrap_err();
        assert_eq!(missing.to_string(), "sha256:1");
        assert_eq!(
            v.digest(&sel, HashAlg::Sha256),
            Err(PcrError::MissingValue {
                hash: HashAlg::Sha256,
                index: 1
            })
        );
        v.insert(HashAlg::Sha256, 1, vec![2; 32]).unwrap();
        v.insert(HashAlg::Sha256, 9, vec![9; 32]).unwrap();
        v.covers(&sel).unwrap();
        let mut cat = vec![1u8; 20];
        cat.extend([2u8; 32]);
        cat.extend([3u8; 32]);
        assert_eq!(
            v.digest(&sel, HashAlg::Sha256).unwrap(),
            HashAlg::Sha256.digest(&cat)
        );
        assert_eq!(v.restricted_to(&sel).len(), 3);
        assert!(matches!(
            v.insert(HashAlg::Sha1, 3, vec![0; 32]),
            Err(PcrError::WrongLength { .. })
        ));
        let req: PcrSelection = "sha256:1,5".parse().unwrap();
        assert_eq!(sel.covers(&req).unwrap_err().to_string(), "sha256:5");
    }
}
