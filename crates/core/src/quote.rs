//! Quote verification: the only way to obtain a [`VerifiedQuote`].
//!
//! Checks run cheapest-first so garbage is refused before any cryptography, but nothing read
//! from the attestation reaches the result unless the AK's signature over it verified.

use crate::keys::{SignatureError, VerifyingKey};
use crate::tpm::attest::{attest_type_name, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE};
use crate::tpm::{
    Attest, Attested, ClockInfo, HashAlg, Name, ObjectAttributes, PcrError, PcrSelection,
    PcrValues, Signature, WireError,
};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuoteError {
    #[error("AK is not a restricted signing key (objectAttributes 0x{:08x}: {})", .0.0, missing_bits(*.0))]
    AkNotRestrictedSigning(ObjectAttributes),
    #[error("quote signature: {0}")]
    Signature(SignatureError),
    #[error("attestation magic is 0x{found:08x}, not TPM_GENERATED_VALUE 0xff544347: not produced by a TPM")]
    BadMagic { found: u32 },
    #[error("attestation is {found}, not a quote (TPM_ST_ATTEST_QUOTE)")]
    NotAQuote { found: String },
    #[error("malformed attestation: {0}")]
    Malformed(WireError),
    #[error("quote qualifyingData {found} does not match the nonce {expected}")]
    NonceMismatch { expected: String, found: String },
    #[error("quote does not cover the required PCRs {missing} (it covers {quoted})")]
    RequiredPcrsNotQuoted {
        missing: PcrSelection,
        quoted: PcrSelection,
    },
    #[error("no values supplied for quoted PCRs {missing}")]
    PcrValuesMissing { missing: PcrSelection },
    #[error("supplied PCR values: {0}")]
    PcrValues(PcrError),
    #[error(
        "{alg} digest of the supplied PCR values is {computed}, the quote's pcrDigest is {quoted}"
    )]
    PcrDigestMismatch {
        alg: HashAlg,
        computed: String,
        quoted: String,
    },
}

fn missing_bits(a: ObjectAttributes) -> &'static str {
    match (a.restricted(), a.sign()) {
        (false, false) => "neither restricted nor sign",
        (false, true) => "sign but not restricted, so it could sign a forged TPMS_ATTEST",
        (true, false) => "restricted but not sign",
        (true, true) => "restricted sign",
    }
}

/// A quote whose signature, nonce, PCR selection and PCR digest all checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    clock_info: ClockInfo,
    firmware_version: u64,
    selection: PcrSelection,
    pcrs: PcrValues,
    qualified_signer: Name,
    nonce: Vec<u8>,
    hash: HashAlg,
    ak_attributes_checked: bool,
}

impl VerifiedQuote {
    /// TPM clock in milliseconds.
    pub fn clock(&self) -> u64 {
        self.clock_info.clock
    }
    pub fn reset_count(&self) -> u32 {
        self.clock_info.reset_count
    }
    pub fn restart_count(&self) -> u32 {
        self.clock_info.restart_count
    }
    /// Whether the TPM's clock has not gone backwards since it was last saved.
    pub fn safe(&self) -> bool {
        self.clock_info.safe
    }
    pub fn firmware_version(&self) -> u64 {
        self.firmware_version
    }
    /// The PCRs the TPM quoted, in its bank order.
    pub fn selection(&self) -> &PcrSelection {
        &self.selection
    }
    /// The quoted PCR values (only those in [`Self::selection`]), proven by pcrDigest.
    pub fn pcrs(&self) -> &PcrValues {
        &self.pcrs
    }
    pub fn qualified_signer(&self) -> &Name {
        &self.qualified_signer
    }
    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }
    /// Hash of the signature and of pcrDigest.
    pub fn hash_alg(&self) -> HashAlg {
        self.hash
    }
    /// False when the AK came from SPKI / PEM: nothing proved it is a restricted TPM key, so
    /// a caller should warn that the quote may have been forged by whoever holds that key.
    pub fn ak_attributes_checked(&self) -> bool {
        self.ak_attributes_checked
    }
}

/// Verify a TPM2_Quote: `attest` is the TPMS_ATTEST (`tpm2_quote -m`), `signature` the
/// TPMT_SIGNATURE over it, `pcrs` the claimed PCR values, `nonce` the qualifying data the
/// verifier sent, `required` the PCRs policy needs.
pub fn verify_quote(
    ak: &VerifyingKey,
    attest: &[u8],
    signature: &Signature,
    pcrs: &PcrValues,
    nonce: &[u8],
    required: &PcrSelection,
) -> Result<VerifiedQuote, QuoteError> {
    // An unrestricted signing key signs any digest, including one of a forged TPMS_ATTEST
    // that merely starts with TPM_GENERATED_VALUE.
    let ak_attributes_checked = match ak.attributes() {
        Some(a) if a.restricted() && a.sign() => true,
        Some(a) => return Err(QuoteError::AkNotRestrictedSigning(a)),
        None => false,
    };
    ak.check_scheme(signature).map_err(QuoteError::Signature)?;

    if attest.len() >= 6 {
        let magic = u32::from_be_bytes([attest[0], attest[1], attest[2], attest[3]]);
        if magic != TPM_GENERATED_VALUE {
            return Err(QuoteError::BadMagic { found: magic });
        }
        let tag = u16::from_be_bytes([attest[4], attest[5]]);
        if tag != TPM_ST_ATTEST_QUOTE {
            let found = attest_type_name(tag)
                .map_or_else(|| format!("unknown type 0x{tag:04x}"), str::to_string);
            return Err(QuoteError::NotAQuote { found });
        }
    }
    let parsed = Attest::from_bytes(attest).map_err(QuoteError::Malformed)?;
    let Attested::Quote(info) = &parsed.attested else {
        // Unreachable after the tag check above, but a certify must never pass as a quote.
        return Err(QuoteError::NotAQuote {
            found: "TPM_ST_ATTEST_CERTIFY".into(),
        });
    };

    if parsed.extra_data != nonce {
        return Err(QuoteError::NonceMismatch {
            expected: hex::encode(nonce),
            found: hex::encode(&parsed.extra_data),
        });
    }
    info.selection
        .covers(required)
        .map_err(|missing| QuoteError::RequiredPcrsNotQuoted {
            missing,
            quoted: info.selection.clone(),
        })?;
    pcrs.covers(&info.selection)
        .map_err(|missing| QuoteError::PcrValuesMissing { missing })?;
    // TPM2_Quote hashes the PCRs with the signing scheme's hash.
    let hash = signature.hash();
    let computed = pcrs
        .digest(&info.selection, hash)
        .map_err(QuoteError::PcrValues)?;
    if computed != info.pcr_digest {
        return Err(QuoteError::PcrDigestMismatch {
            alg: hash,
            computed: hex::encode(computed),
            quoted: hex::encode(&info.pcr_digest),
        });
    }

    // Last, being the most expensive; everything above only rejected, nothing was trusted.
    ak.verify(attest, signature)
        .map_err(QuoteError::Signature)?;

    Ok(VerifiedQuote {
        clock_info: parsed.clock_info,
        firmware_version: parsed.firmware_version,
        pcrs: pcrs.restricted_to(&info.selection),
        selection: info.selection.clone(),
        qualified_signer: parsed.qualified_signer.clone(),
        nonce: nonce.to_vec(),
        hash,
        ak_attributes_checked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_keys::*;
    use crate::tpm::attest::{hash_name, CertifyInfo, QuoteInfo};
    use crate::tpm::{EccCurve, ObjectAttributes as A, Scheme};

    const NONCE: &[u8] = &[0x0b, 0xad, 0xc0, 0xde];

    struct Fixture {
        ak: VerifyingKey,
        attest: Attest,
        pcrs: PcrValues,
        required: PcrSelection,
    }

    fn pcr_values() -> PcrValues {
        let mut v = PcrValues::new();
        for i in 0..24u8 {
            v.insert(HashAlg::Sha1, i, vec![i; 20]).unwrap();
            v.insert(HashAlg::Sha256, i, vec![i ^ 0x80; 32]).unwrap();
        }
        v
    }

    fn fixture(hash: HashAlg) -> Fixture {
        let selection: PcrSelection = "sha256:0,1,16+sha1:0,1".parse().unwrap();
        let pcrs = pcr_values();
        let attest = Attest {
            qualified_signer: hash_name(HashAlg::Sha256, &[0x42; 32]),
            extra_data: NONCE.to_vec(),
            clock_info: ClockInfo {
                clock: 1234,
                reset_count: 3,
                restart_count: 1,
                safe: true,
            },
            firmware_version: 0x2020_0000,
            attested: Attested::Quote(QuoteInfo {
                pcr_digest: pcrs.digest(&selection, hash).unwrap(),
                selection,
            }),
        };
        let ak = VerifyingKey::from_public(&rsa_public(Scheme::Rsassa(hash), AK_ATTRS)).unwrap();
        Fixture {
            ak,
            attest,
            pcrs,
            required: "sha256:0,16".parse().unwrap(),
        }
    }

    fn run(f: &Fixture, attest: &[u8], sig: &Signature) -> Result<VerifiedQuote, QuoteError> {
        verify_quote(&f.ak, attest, sig, &f.pcrs, NONCE, &f.required)
    }

    fn signed(f: &Fixture) -> (Vec<u8>, Signature) {
        let b = f.attest.to_bytes();
        let s = sign_rsa(&b, false, HashAlg::Sha256);
        (b, s)
    }

    #[test]
    fn a_good_quote_verifies_and_exposes_only_quoted_pcrs() {
        let f = fixture(HashAlg::Sha256);
        let (b, s) = signed(&f);
        let q = run(&f, &b, &s).unwrap();
        assert_eq!(
            (q.clock(), q.reset_count(), q.restart_count(), q.safe()),
            (1234, 3, 1, true)
        );
        assert_eq!(q.firmware_version(), 0x2020_0000);
        assert_eq!(q.nonce(), NONCE);
        assert_eq!(q.pcrs().len(), 5);
        assert_eq!(
            q.pcrs().get(HashAlg::Sha256, 16),
            Some(&[16u8 ^ 0x80; 32][..])
        );
        assert_eq!(q.pcrs().get(HashAlg::Sha256, 2), None);
        assert_eq!(q.selection().to_string(), "sha256:0,1,16+sha1:0,1");
        assert_eq!(
            q.qualified_signer(),
            &hash_name(HashAlg::Sha256, &[0x42; 32])
        );
        assert!(q.ak_attributes_checked());
    }

    #[test]
    fn ecdsa_and_pem_aks() {
        let mut f = fixture(HashAlg::Sha384);
        f.ak = VerifyingKey::from_public(&ecc_public(
            EccCurve::NistP384,
            Scheme::Ecdsa(HashAlg::Sha384),
            AK_ATTRS,
        ))
        .unwrap();
        let b = f.attest.to_bytes();
        let s = sign_ecdsa(EccCurve::NistP384, &b);
        assert!(run(&f, &b, &s).unwrap().ak_attributes_checked());
        f.ak = VerifyingKey::from_pem(&f.ak.to_pem()).unwrap();
        let q = run(&f, &b, &s).unwrap();
        assert!(!q.ak_attributes_checked());
        assert_eq!(q.hash_alg(), HashAlg::Sha384);
    }

    #[test]
    fn tamper_unrestricted_or_non_signing_ak() {
        let mut f = fixture(HashAlg::Sha256);
        let (b, s) = signed(&f);
        for attrs in [AK_ATTRS & !A::RESTRICTED, AK_ATTRS & !A::SIGN | A::DECRYPT] {
            f.ak = VerifyingKey::from_public(&rsa_public(Scheme::Rsassa(HashAlg::Sha256), attrs))
                .unwrap();
            let e = run(&f, &b, &s).unwrap_err();
            assert!(
                matches!(e, QuoteError::AkNotRestrictedSigning(a) if a.0 == attrs),
                "{e}"
            );
        }
    }

    #[test]
    fn tamper_signature_scheme() {
        let f = fixture(HashAlg::Sha256);
        let (b, _) = signed(&f);
        let e = run(&f, &b, &sign_rsa(&b, true, HashAlg::Sha256)).unwrap_err();
        assert!(
            matches!(
                e,
                QuoteError::Signature(SignatureError::SchemeNotAllowed { .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn tamper_magic() {
        let f = fixture(HashAlg::Sha256);
        let (mut b, s) = signed(&f);
        b[0] = 0xfe;
        assert_eq!(
            run(&f, &b, &s).unwrap_err(),
            QuoteError::BadMagic { found: 0xfe544347 }
        );
    }

    #[test]
    fn tamper_certify_passed_as_quote() {
        let f = fixture(HashAlg::Sha256);
        let certify = Attest {
            attested: Attested::Certify(CertifyInfo {
                name: hash_name(HashAlg::Sha256, &[1; 32]),
                qualified_name: hash_name(HashAlg::Sha256, &[2; 32]),
            }),
            ..f.attest.clone()
        };
        let b = certify.to_bytes();
        let s = sign_rsa(&b, false, HashAlg::Sha256);
        assert_eq!(
            run(&f, &b, &s).unwrap_err(),
            QuoteError::NotAQuote {
                found: "TPM_ST_ATTEST_CERTIFY".into()
            }
        );
    }

    #[test]
    fn tamper_malformed() {
        let f = fixture(HashAlg::Sha256);
        let (mut b, _) = signed(&f);
        b.push(0);
        let s = sign_rsa(&b, false, HashAlg::Sha256);
        assert!(
            matches!(run(&f, &b, &s).unwrap_err(), QuoteError::Malformed(e) if e.what == "TPMS_ATTEST")
        );
        assert!(matches!(
            run(&f, &[0xff], &s).unwrap_err(),
            QuoteError::Malformed(_)
        ));
    }

    #[test]
    fn tamper_nonce() {
        let f = fixture(HashAlg::Sha256);
        let (b, s) = signed(&f);
        let e = verify_quote(
            &f.ak,
            &b,
            &s,
            &f.pcrs,
            &[0x0b, 0xad, 0xc0, 0xdf],
            &f.required,
        )
        .unwrap_err();
        assert_eq!(
            e,
            QuoteError::NonceMismatch {
                expected: "0badc0df".into(),
                found: "0badc0de".into()
            }
        );
    }

    #[test]
    fn tamper_required_pcr_not_quoted() {
        let mut f = fixture(HashAlg::Sha256);
        f.required = "sha256:0,17+sha384:0".parse().unwrap();
        let (b, s) = signed(&f);
        match run(&f, &b, &s).unwrap_err() {
            QuoteError::RequiredPcrsNotQuoted { missing, .. } => {
                assert_eq!(missing.to_string(), "sha256:17+sha384:0")
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn tamper_pcr_value_missing() {
        let mut f = fixture(HashAlg::Sha256);
        let (b, s) = signed(&f);
        let mut v = PcrValues::new();
        for (h, i, d) in f
            .pcrs
            .iter()
            .filter(|(h, i, _)| !(*h == HashAlg::Sha1 && *i == 1))
        {
            v.insert(h, i, d.to_vec()).unwrap();
        }
        f.pcrs = v;
        match run(&f, &b, &s).unwrap_err() {
            QuoteError::PcrValuesMissing { missing } => assert_eq!(missing.to_string(), "sha1:1"),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn tamper_pcr_value_changed() {
        let mut f = fixture(HashAlg::Sha256);
        let (b, s) = signed(&f);
        f.pcrs.insert(HashAlg::Sha256, 16, vec![0; 32]).unwrap();
        assert!(matches!(
            run(&f, &b, &s).unwrap_err(),
            QuoteError::PcrDigestMismatch {
                alg: HashAlg::Sha256,
                ..
            }
        ));
        // A value outside the quote's selection is irrelevant.
        let mut f = fixture(HashAlg::Sha256);
        f.pcrs.insert(HashAlg::Sha256, 5, vec![0; 32]).unwrap();
        run(&f, &b, &s).unwrap();
    }

    #[test]
    fn tamper_signed_bytes() {
        let f = fixture(HashAlg::Sha256);
        let (mut b, s) = signed(&f);
        b[50] ^= 1; // clock: parses, passes every cheap check, only the signature catches it
        let e = run(&f, &b, &s).unwrap_err();
        assert!(
            matches!(
                e,
                QuoteError::Signature(SignatureError::Invalid { kind: "RSA", .. })
            ),
            "{e}"
        );
        let (b, mut s) = signed(&f);
        if let Signature::Rsassa { sig, .. } = &mut s {
            sig[10] ^= 1;
        }
        assert!(matches!(
            run(&f, &b, &s).unwrap_err(),
            QuoteError::Signature(SignatureError::Invalid { .. })
        ));
    }
}
