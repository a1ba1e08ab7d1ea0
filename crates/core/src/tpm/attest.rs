//! TPMS_ATTEST: the structure a TPM signs in TPM2_Quote and TPM2_Certify.
//!
//! Only quote and certify attestations are decoded; the other TPM_ST_ATTEST_* types are named
//! in errors so a caller who passes, say, a TPM2_GetTime attestation learns what it passed.

use super::alg::HashAlg;
use super::pcr::PcrSelection;
use super::public::{Name, MAX_DIGEST_BYTES};
use super::wire::{Reader, WireError, WireReason, Writer};

/// TPM_GENERATED_VALUE: "\xffTCG", present only in structures the TPM itself built.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;

pub const TPM_ST_ATTEST_NV: u16 = 0x8014;
pub const TPM_ST_ATTEST_COMMAND_AUDIT: u16 = 0x8015;
pub const TPM_ST_ATTEST_SESSION_AUDIT: u16 = 0x8016;
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
pub const TPM_ST_ATTEST_TIME: u16 = 0x8019;
pub const TPM_ST_ATTEST_CREATION: u16 = 0x801A;
pub const TPM_ST_ATTEST_NV_DIGEST: u16 = 0x801C;

/// sizeof(TPMU_NAME): a TPMT_HA with the largest digest.
pub const MAX_NAME_BYTES: usize = 2 + MAX_DIGEST_BYTES;
/// TPM2B_DATA holds at most sizeof(TPMT_HA).
pub const MAX_DATA_BYTES: usize = 64;

/// Name of a TPM_ST_ATTEST_* tag, if it is one.
pub fn attest_type_name(tag: u16) -> Option<&'static str> {
    Some(match tag {
        TPM_ST_ATTEST_NV => "TPM_ST_ATTEST_NV",
        TPM_ST_ATTEST_COMMAND_AUDIT => "TPM_ST_ATTEST_COMMAND_AUDIT",
        TPM_ST_ATTEST_SESSION_AUDIT => "TPM_ST_ATTEST_SESSION_AUDIT",
        TPM_ST_ATTEST_CERTIFY => "TPM_ST_ATTEST_CERTIFY",
        TPM_ST_ATTEST_QUOTE => "TPM_ST_ATTEST_QUOTE",
        TPM_ST_ATTEST_TIME => "TPM_ST_ATTEST_TIME",
        TPM_ST_ATTEST_CREATION => "TPM_ST_ATTEST_CREATION",
        TPM_ST_ATTEST_NV_DIGEST => "TPM_ST_ATTEST_NV_DIGEST",
        _ => return None,
    })
}

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// TPMS_QUOTE_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuoteInfo {
    pub selection: PcrSelection,
    pub pcr_digest: Vec<u8>,
}

/// TPMS_CERTIFY_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertifyInfo {
    pub name: Name,
    pub qualified_name: Name,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attested {
    Quote(QuoteInfo),
    Certify(CertifyInfo),
}

impl Attested {
    pub fn tag(&self) -> u16 {
        match self {
            Attested::Quote(_) => TPM_ST_ATTEST_QUOTE,
            Attested::Certify(_) => TPM_ST_ATTEST_CERTIFY,
        }
    }
}

/// TPMS_ATTEST of a quote or certify. The magic is not stored: parsing fails without it and
/// marshalling always writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attest {
    pub qualified_signer: Name,
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub attested: Attested,
}

/// A TPM2B_NAME: empty, a 4-byte handle (permanent objects), or hashAlg + digest.
fn read_name(r: &mut Reader<'_>, what: &str) -> Result<Name, WireError> {
    let at = r.offset() + 2;
    let b = r.sized(MAX_NAME_BYTES, what)?;
    if b.is_empty() || b.len() == 4 {
        return Ok(Name(b.to_vec()));
    }
    Name::from_bytes(b)
        .map_err(|e| r.error_at(at + e.offset, &format!("{what}.{}", e.what), e.reason))
}

impl Attest {
    /// Parse a TPMS_ATTEST that fills `bytes` exactly (`tpm2_quote -m` output).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let a = Self::read(&mut r)?;
        r.finish("TPMS_ATTEST")?;
        Ok(a)
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let at = r.offset();
        let magic = r.u32("TPMS_ATTEST.magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(r.error_at(
                at,
                "TPMS_ATTEST.magic",
                WireReason::Invalid(format!(
                    "0x{magic:08x} is not TPM_GENERATED_VALUE (0xff544347)"
                )),
            ));
        }
        let at = r.offset();
        let tag = r.u16("TPMS_ATTEST.type")?;
        if tag != TPM_ST_ATTEST_QUOTE && tag != TPM_ST_ATTEST_CERTIFY {
            let reason = match attest_type_name(tag) {
                Some(name) => WireReason::Invalid(format!("{name} attestations are not supported")),
                None => WireReason::Unknown(tag.into()),
            };
            return Err(r.error_at(at, "TPMS_ATTEST.type", reason));
        }
        let qualified_signer = read_name(r, "TPMS_ATTEST.qualifiedSigner")?;
        let extra_data = r.sized(MAX_DATA_BYTES, "TPMS_ATTEST.extraData")?.to_vec();
        let clock = r.u64("TPMS_ATTEST.clockInfo.clock")?;
        let reset_count = r.u32("TPMS_ATTEST.clockInfo.resetCount")?;
        let restart_count = r.u32("TPMS_ATTEST.clockInfo.restartCount")?;
        let at = r.offset();
        let safe = match r.u8("TPMS_ATTEST.clockInfo.safe")? {
            0 => false,
            1 => true,
            v => {
                return Err(r.error_at(
                    at,
                    "TPMS_ATTEST.clockInfo.safe",
                    WireReason::Invalid(format!("TPMI_YES_NO is {v}, must be 0 or 1")),
                ))
            }
        };
        let firmware_version = r.u64("TPMS_ATTEST.firmwareVersion")?;
        let attested = if tag == TPM_ST_ATTEST_QUOTE {
            let selection = PcrSelection::read(r, "TPMS_ATTEST.attested.quote.pcrSelect")?;
            let pcr_digest = r
                .sized(MAX_DIGEST_BYTES, "TPMS_ATTEST.attested.quote.pcrDigest")?
                .to_vec();
            Attested::Quote(QuoteInfo {
                selection,
                pcr_digest,
            })
        } else {
            let name = read_name(r, "TPMS_ATTEST.attested.certify.name")?;
            let qualified_name = read_name(r, "TPMS_ATTEST.attested.certify.qualifiedName")?;
            Attested::Certify(CertifyInfo {
                name,
                qualified_name,
            })
        };
        Ok(Attest {
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            attested,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.u32(TPM_GENERATED_VALUE).u16(self.attested.tag());
        w.sized(&self.qualified_signer.0).sized(&self.extra_data);
        let c = &self.clock_info;
        w.u64(c.clock)
            .u32(c.reset_count)
            .u32(c.restart_count)
            .u8(u8::from(c.safe));
        w.u64(self.firmware_version);
        match &self.attested {
            Attested::Quote(q) => {
                q.selection.write(w);
                w.sized(&q.pcr_digest);
            }
            Attested::Certify(c) => {
                w.sized(&c.name.0).sized(&c.qualified_name.0);
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_vec()
    }

    /// The quote payload, if this is a quote.
    pub fn quote(&self) -> Option<&QuoteInfo> {
        match &self.attested {
            Attested::Quote(q) => Some(q),
            Attested::Certify(_) => None,
        }
    }
}

/// Convenience for tests and tools: the Name of a hash-named object.
pub fn hash_name(alg: HashAlg, digest: &[u8]) -> Name {
    let mut n = alg.id().to_be_bytes().to_vec();
    n.extend_from_slice(digest);
    Name(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_quote() -> Attest {
        Attest {
            qualified_signer: hash_name(HashAlg::Sha256, &[0x11; 32]),
            extra_data: vec![0x0b, 0xad, 0xc0, 0xde],
            clock_info: ClockInfo {
                clock: 17672,
                reset_count: 2,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 3636160023101920,
            attested: Attested::Quote(QuoteInfo {
                selection: "sha1:0,1+sha256:0,1,16".parse().unwrap(),
                pcr_digest: vec![0xf0; 32],
            }),
        }
    }

    #[test]
    fn round_trip_quote_and_certify() {
        let q = sample_quote();
        let b = q.to_bytes();
        assert_eq!(
            b.len(),
            123,
            "same size as tpm2_quote's message for this selection"
        );
        assert_eq!(Attest::from_bytes(&b).unwrap(), q);
        let c = Attest {
            attested: Attested::Certify(CertifyInfo {
                name: hash_name(HashAlg::Sha256, &[1; 32]),
                qualified_name: Name(vec![0x40, 0, 0, 1]),
            }),
            ..q
        };
        assert_eq!(Attest::from_bytes(&c.to_bytes()).unwrap(), c);
    }

    #[test]
    fn strict_errors_name_field_and_offset() {
        let b = sample_quote().to_bytes();
        let mut m = b.clone();
        m[0] = 0;
        let e = Attest::from_bytes(&m).unwrap_err();
        assert_eq!((e.what.as_str(), e.offset), ("TPMS_ATTEST.magic", 0));
        let mut t = b.clone();
        t[5] = 0x19;
        let e = Attest::from_bytes(&t).unwrap_err();
        assert_eq!((e.what.as_str(), e.offset), ("TPMS_ATTEST.type", 4));
        assert!(e.to_string().contains("TPM_ST_ATTEST_TIME"), "{e}");
        t[5] = 0x1b;
        assert_eq!(
            Attest::from_bytes(&t).unwrap_err().reason,
            WireReason::Unknown(0x801b)
        );
        // qualifiedSigner with a sha256 alg but a 31-byte digest.
        let mut n = b.clone();
        n[7] = 33;
        let e = Attest::from_bytes(&n).unwrap_err();
        assert_eq!(e.what, "TPMS_ATTEST.qualifiedSigner.TPM2B_NAME.digest");
        // safe is at 6 + 36 + 6 + 16 = 64.
        let mut s = b.clone();
        assert_eq!(s[64], 1);
        s[64] = 2;
        let e = Attest::from_bytes(&s).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("TPMS_ATTEST.clockInfo.safe", 64)
        );
        // extraData larger than 64 bytes.
        let mut x = b.clone();
        x[42] = 0;
        x[43] = 65;
        let e = Attest::from_bytes(&x).unwrap_err();
        assert_eq!((e.what.as_str(), e.offset), ("TPMS_ATTEST.extraData", 42));
        let mut tr = b.clone();
        tr.push(0);
        assert_eq!(
            Attest::from_bytes(&tr).unwrap_err().reason,
            WireReason::Trailing(1)
        );
        let e = Attest::from_bytes(&b[..b.len() - 1]).unwrap_err();
        assert_eq!(e.what, "TPMS_ATTEST.attested.quote.pcrDigest");
    }
}
