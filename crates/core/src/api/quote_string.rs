//! The keylime quote string: `"r" + b64(TPMS_ATTEST) + ":" + b64(TPMT_SIGNATURE) + ":" +
//! b64(PCR blob)` (docs/keylime-wire.md §4.3).
//!
//! Upstream: produced by rust-keylime `keylime/src/tpm.rs:encode_quote_string`, parsed by
//! keylime 7.14.3 `tpm/tpm_main.py:Tpm._get_quote_parameters` and `tpm/tpm_util.py:checkquote`.
//!
//! * Part 1 is the marshalled TPMS_ATTEST without its TPM2B size (what the signature covers).
//! * Part 2 is the marshalled TPMT_SIGNATURE.
//! * Part 3 is tpm2-tools' little-endian PCR dump ([`crate::tools::read_pcr_file`]) holding
//!   **one** bank, the quote's hash bank: upstream's reader loops the selection count over the
//!   signature bank's bitmap only, so a multi-bank blob breaks it.
//!
//! Vouch parses strictly: exactly three parts (upstream ignores extra ones, but no producer
//! sends them), strict padded standard base64, no zlib (API 1.0 only, which Vouch never speaks).

use crate::keys::VerifyingKey;
use crate::quote::{verify_quote, QuoteError, VerifiedQuote};
use crate::tools::{read_pcr_file, write_pcr_file};
use crate::tpm::{
    Attest, Attested, BankSelection, HashAlg, PcrError, PcrSelection, PcrValues, Signature,
    WireError,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The three parts of a quote string, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotePart {
    Attest,
    Signature,
    PcrBlob,
}

impl fmt::Display for QuotePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotePart::Attest => "part 1 (TPMS_ATTEST)",
            QuotePart::Signature => "part 2 (TPMT_SIGNATURE)",
            QuotePart::PcrBlob => "part 3 (PCR blob)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuoteStringError {
    #[error("quote string is empty")]
    Empty,
    #[error("quote string starts with {found:?}, expected the literal 'r' (API 1.0 zlib quotes are not supported)")]
    BadPrefix { found: char },
    #[error("quote string has {found} ':'-separated parts, expected 3 (attest:signature:pcrs)")]
    PartCount { found: usize },
    #[error("{part} is not strict padded standard base64: {detail}")]
    Base64 { part: QuotePart, detail: String },
    #[error("{part}: {source}")]
    Malformed { part: QuotePart, source: WireError },
    #[error("part 1 (TPMS_ATTEST) is not a quote attestation")]
    NotAQuote,
    #[error("part 3 (PCR blob) selects {found} banks; keylime needs exactly one, the quote's hash bank {expected}")]
    BankCount { found: usize, expected: HashAlg },
    #[error("part 3 (PCR blob) holds bank {found}, but the signature uses {expected}; keylime reads the PCRs of the signature's bank")]
    BankMismatch { found: HashAlg, expected: HashAlg },
    #[error("part 3 (PCR blob) selects {blob}, but the TPMS_ATTEST quotes {attest}")]
    SelectionMismatch {
        blob: PcrSelection,
        attest: PcrSelection,
    },
    #[error("PCR values for the blob: {0}")]
    Pcr(PcrError),
}

/// A decoded quote string. Holds the attestation bytes as the TPM produced them (the
/// signature covers them) and the PCR values of the quoted bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteString {
    attest: Vec<u8>,
    signature: Signature,
    selection: PcrSelection,
    pcrs: PcrValues,
}

fn b64(part: QuotePart, text: &str) -> Result<Vec<u8>, QuoteStringError> {
    STANDARD.decode(text).map_err(|e| QuoteStringError::Base64 {
        part,
        detail: e.to_string(),
    })
}

/// The selection quoted in a TPMS_ATTEST.
fn attested_selection(attest: &[u8]) -> Result<PcrSelection, QuoteStringError> {
    let parsed = Attest::from_bytes(attest).map_err(|source| QuoteStringError::Malformed {
        part: QuotePart::Attest,
        source,
    })?;
    match parsed.attested {
        Attested::Quote(info) => Ok(info.selection),
        _ => Err(QuoteStringError::NotAQuote),
    }
}

impl QuoteString {
    /// Assemble from a TPM2_Quote's output. `pcrs` must hold a value for every PCR the
    /// attestation quotes; the quoted bank must be the signature's hash bank.
    pub fn new(
        attest: Vec<u8>,
        signature: Signature,
        pcrs: &PcrValues,
    ) -> Result<Self, QuoteStringError> {
        let selection = attested_selection(&attest)?;
        Self::check_bank(&selection, signature.hash())?;
        pcrs.covers(&selection).map_err(|missing| {
            let (hash, index) = missing.iter().next().unwrap_or((signature.hash(), 0));
            QuoteStringError::Pcr(PcrError::MissingValue { hash, index })
        })?;
        Ok(Self {
            attest,
            signature,
            pcrs: pcrs.restricted_to(&selection),
            selection,
        })
    }

    fn check_bank(selection: &PcrSelection, expected: HashAlg) -> Result<(), QuoteStringError> {
        match selection.banks() {
            [one] if one.hash() == expected => Ok(()),
            [one] => Err(QuoteStringError::BankMismatch {
                found: one.hash(),
                expected,
            }),
            banks => Err(QuoteStringError::BankCount {
                found: banks.len(),
                expected,
            }),
        }
    }

    /// Parse a quote string strictly (see the module docs).
    pub fn parse(text: &str) -> Result<Self, QuoteStringError> {
        let mut chars = text.chars();
        match chars.next() {
            None => return Err(QuoteStringError::Empty),
            Some('r') => {}
            Some(found) => return Err(QuoteStringError::BadPrefix { found }),
        }
        let parts: Vec<&str> = chars.as_str().split(':').collect();
        let [attest, signature, blob] = parts[..] else {
            return Err(QuoteStringError::PartCount { found: parts.len() });
        };
        let attest = b64(QuotePart::Attest, attest)?;
        let signature =
            Signature::from_bytes(&b64(QuotePart::Signature, signature)?).map_err(|source| {
                QuoteStringError::Malformed {
                    part: QuotePart::Signature,
                    source,
                }
            })?;
        let (selection, pcrs) =
            read_pcr_file(&b64(QuotePart::PcrBlob, blob)?).map_err(|source| {
                QuoteStringError::Malformed {
                    part: QuotePart::PcrBlob,
                    source,
                }
            })?;
        Self::check_bank(&selection, signature.hash())?;
        let attested = attested_selection(&attest)?;
        if attested != selection {
            return Err(QuoteStringError::SelectionMismatch {
                blob: selection,
                attest: attested,
            });
        }
        Ok(Self {
            attest,
            signature,
            selection,
            pcrs,
        })
    }

    /// The wire string.
    pub fn encode(&self) -> Result<String, QuoteStringError> {
        let blob = write_pcr_file(&self.selection, &self.pcrs).map_err(QuoteStringError::Pcr)?;
        Ok(format!(
            "r{}:{}:{}",
            STANDARD.encode(&self.attest),
            STANDARD.encode(self.signature.to_bytes()),
            STANDARD.encode(blob)
        ))
    }

    /// Marshalled TPMS_ATTEST, exactly as signed.
    pub fn attest(&self) -> &[u8] {
        &self.attest
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The quote's hash bank (= the signature hash).
    pub fn hash_alg(&self) -> HashAlg {
        self.signature.hash()
    }

    /// The quoted PCRs (one bank).
    pub fn selection(&self) -> &PcrSelection {
        &self.selection
    }

    /// The claimed values of the quoted PCRs; proven only by [`Self::verify`].
    pub fn pcrs(&self) -> &PcrValues {
        &self.pcrs
    }

    /// Verify signature, nonce and pcrDigest against `ak`; `required` PCR indices must be
    /// quoted in the quote's bank.
    pub fn verify(
        &self,
        ak: &VerifyingKey,
        nonce: &[u8],
        required: &[u8],
    ) -> Result<VerifiedQuote, QuoteError> {
        let required = BankSelection::new(self.hash_alg(), required.iter().copied())
            .and_then(|b| PcrSelection::new(vec![b]))
            .map_err(QuoteError::PcrValues)?;
        verify_quote(
            ak,
            &self.attest,
            &self.signature,
            &self.pcrs,
            nonce,
            &required,
        )
    }
}

impl FromStr for QuoteString {
    type Err = QuoteStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::attest::{hash_name, ClockInfo, QuoteInfo};

    fn quote_parts(bank: HashAlg, indices: &[u8]) -> (Vec<u8>, Signature, PcrValues) {
        let sel = PcrSelection::new(vec![
            BankSelection::new(bank, indices.iter().copied()).unwrap()
        ])
        .unwrap();
        let mut pcrs = PcrValues::new();
        for i in indices {
            pcrs.insert(bank, *i, vec![*i; bank.digest_len()]).unwrap();
        }
        let attest = Attest {
            qualified_signer: hash_name(HashAlg::Sha256, &[7; 32]),
            extra_data: b"ABCDEFGHIJ0123456789".to_vec(),
            clock_info: ClockInfo {
                clock: 1,
                reset_count: 0,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0,
            attested: Attested::Quote(QuoteInfo {
                pcr_digest: pcrs.digest(&sel, bank).unwrap(),
                selection: sel,
            }),
        };
        let sig = Signature::Rsassa {
            hash: bank,
            sig: vec![0xAA; 256],
        };
        (attest.to_bytes(), sig, pcrs)
    }

    #[test]
    fn round_trip_and_layout() {
        let (attest, sig, pcrs) = quote_parts(HashAlg::Sha256, &[0, 16]);
        let q = QuoteString::new(attest.clone(), sig.clone(), &pcrs).unwrap();
        let s = q.encode().unwrap();
        assert!(s.starts_with('r'));
        let parts: Vec<&str> = s[1..].split(':').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(STANDARD.decode(parts[0]).unwrap(), attest);
        assert_eq!(STANDARD.decode(parts[1]).unwrap(), sig.to_bytes());
        let blob = STANDARD.decode(parts[2]).unwrap();
        // §4.3: 136 + 532·n bytes, count = 1, sha256 bank, sizeofSelect 3, PCRs 0 and 16.
        assert_eq!(blob.len(), 136 + 532);
        assert_eq!(&blob[..12], &[1, 0, 0, 0, 0x0b, 0, 3, 1, 0, 1, 0, 0]);
        assert_eq!(&blob[132..140], &[1, 0, 0, 0, 2, 0, 0, 0]);
        let back: QuoteString = s.parse().unwrap();
        assert_eq!(back, q);
        assert_eq!(back.hash_alg(), HashAlg::Sha256);
        assert_eq!(back.encode().unwrap(), s);
    }

    #[test]
    fn nine_pcrs_need_two_digest_blocks() {
        let idx: Vec<u8> = (0..8).chain([16]).collect();
        let (attest, sig, pcrs) = quote_parts(HashAlg::Sha1, &idx);
        let s = QuoteString::new(attest, sig, &pcrs)
            .unwrap()
            .encode()
            .unwrap();
        let blob = STANDARD.decode(s.rsplit(':').next().unwrap()).unwrap();
        assert_eq!(blob.len(), 136 + 2 * 532);
        assert_eq!(QuoteString::parse(&s).unwrap().pcrs().len(), 9);
    }

    #[test]
    fn precise_errors() {
        let (attest, sig, pcrs) = quote_parts(HashAlg::Sha256, &[16]);
        let good = QuoteString::new(attest.clone(), sig.clone(), &pcrs)
            .unwrap()
            .encode()
            .unwrap();
        assert_eq!(QuoteString::parse(""), Err(QuoteStringError::Empty));
        assert_eq!(
            QuoteString::parse(&good.replacen('r', "x", 1)),
            Err(QuoteStringError::BadPrefix { found: 'x' })
        );
        assert_eq!(
            QuoteString::parse(&format!("{good}:extra")),
            Err(QuoteStringError::PartCount { found: 4 })
        );
        assert_eq!(
            QuoteString::parse("rAAAA:BBBB"),
            Err(QuoteStringError::PartCount { found: 2 })
        );
        let unpadded = good.trim_end_matches('=');
        let err = QuoteString::parse(unpadded).unwrap_err();
        assert!(
            matches!(
                err,
                QuoteStringError::Base64 {
                    part: QuotePart::PcrBlob,
                    ..
                }
            ),
            "{err}"
        );
        // Truncated blob.
        let mut parts: Vec<String> = good[1..].split(':').map(str::to_string).collect();
        let mut blob = STANDARD.decode(&parts[2]).unwrap();
        blob.truncate(600);
        parts[2] = STANDARD.encode(&blob);
        let err = QuoteString::parse(&format!("r{}", parts.join(":"))).unwrap_err();
        assert!(matches!(
            err,
            QuoteStringError::Malformed {
                part: QuotePart::PcrBlob,
                ..
            }
        ));
        assert!(err.to_string().contains("part 3"), "{err}");
    }

    #[test]
    fn bank_must_be_the_signature_bank() {
        let (attest, _, pcrs) = quote_parts(HashAlg::Sha256, &[16]);
        let sha1_sig = Signature::Rsassa {
            hash: HashAlg::Sha1,
            sig: vec![1; 256],
        };
        assert_eq!(
            QuoteString::new(attest, sha1_sig, &pcrs),
            Err(QuoteStringError::BankMismatch {
                found: HashAlg::Sha256,
                expected: HashAlg::Sha1
            })
        );
    }

    #[test]
    fn blob_must_match_attested_selection() {
        let (attest16, sig, _) = quote_parts(HashAlg::Sha256, &[16]);
        let (attest_other, _, pcrs_other) = quote_parts(HashAlg::Sha256, &[0, 16]);
        let other = QuoteString::new(attest_other, sig.clone(), &pcrs_other)
            .unwrap()
            .encode()
            .unwrap();
        let blob = other.rsplit(':').next().unwrap();
        let mixed = format!(
            "r{}:{}:{blob}",
            STANDARD.encode(&attest16),
            STANDARD.encode(sig.to_bytes())
        );
        assert!(matches!(
            QuoteString::parse(&mixed),
            Err(QuoteStringError::SelectionMismatch { .. })
        ));
    }
}
