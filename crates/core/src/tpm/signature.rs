//! TPMT_SIGNATURE for the schemes an attestation key can use: RSASSA, RSAPSS and ECDSA.
//!
//! Anything else (NULL, ECDAA, ECSCHNORR, SM2, HMAC) is refused at parse time: a quote carrying
//! such a signature cannot be verified by Vouch, and saying so at the parser gives the most
//! precise message.

use super::alg::*;
use super::public::{Scheme, MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES};
use super::wire::{Reader, WireError, WireReason, Writer};

/// A parsed TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Signature {
    Rsassa {
        hash: HashAlg,
        sig: Vec<u8>,
    },
    Rsapss {
        hash: HashAlg,
        sig: Vec<u8>,
    },
    /// r and s as the TPM sent them (big-endian, possibly shorter than the curve size).
    Ecdsa {
        hash: HashAlg,
        r: Vec<u8>,
        s: Vec<u8>,
    },
}

/// Name of a signature-scheme algorithm ID that Vouch recognises but does not verify.
fn unsupported_name(alg: u16) -> Option<&'static str> {
    Some(match alg {
        TPM_ALG_NULL => "TPM_ALG_NULL (unsigned)",
        TPM_ALG_HMAC => "TPM_ALG_HMAC",
        TPM_ALG_ECDAA => "TPM_ALG_ECDAA",
        TPM_ALG_ECSCHNORR => "TPM_ALG_ECSCHNORR",
        TPM_ALG_SM2 => "TPM_ALG_SM2",
        _ => return None,
    })
}

impl Signature {
    /// Parse a TPMT_SIGNATURE that fills `bytes` exactly (`tpm2_quote -s` output).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let s = Self::read(&mut r)?;
        r.finish("TPMT_SIGNATURE")?;
        Ok(s)
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let at = r.offset();
        let alg = r.u16("TPMT_SIGNATURE.sigAlg")?;
        match alg {
            TPM_ALG_RSASSA | TPM_ALG_RSAPSS => {
                let what = if alg == TPM_ALG_RSASSA { "rsassa" } else { "rsapss" };
                let hash = HashAlg::read(r, &format!("TPMT_SIGNATURE.signature.{what}.hash"))?;
                let sig = r.sized(MAX_RSA_KEY_BYTES, &format!("TPMT_SIGNATURE.signature.{what}.sig"))?.to_vec();
                Ok(if alg == TPM_ALG_RSASSA { Signature::Rsassa { hash, sig } } else { Signature::Rsapss { hash, sig } })
            }
            TPM_ALG_ECDSA => {
                let hash = HashAlg::read(r, "TPMT_SIGNATURE.signature.ecdsa.hash")?;
                let r_ = r.sized(MAX_ECC_KEY_BYTES, "TPMT_SIGNATURE.signature.ecdsa.signatureR")?.to_vec();
                let s = r.sized(MAX_ECC_KEY_BYTES, "TPMT_SIGNATURE.signature.ecdsa.signatureS")?.to_vec();
                Ok(Signature::Ecdsa { hash, r: r_, s })
            }
            other => Err(r.error_at(
                at,
                "TPMT_SIGNATURE.sigAlg",
                match unsupported_name(other) {
                    Some(name) => WireReason::Invalid(format!(
                        "signature algorithm {name} is not supported (only RSASSA, RSAPSS and ECDSA)"
                    )),
                    None => WireReason::Unknown(other.into()),
                },
            )),
        }
    }

    pub fn write(&self, w: &mut Writer) {
        match self {
            Signature::Rsassa { hash, sig } => {
                w.u16(TPM_ALG_RSASSA).u16(hash.id()).sized(sig);
            }
            Signature::Rsapss { hash, sig } => {
                w.u16(TPM_ALG_RSAPSS).u16(hash.id()).sized(sig);
            }
            Signature::Ecdsa { hash, r, s } => {
                w.u16(TPM_ALG_ECDSA).u16(hash.id()).sized(r).sized(s);
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_vec()
    }

    /// The hash the TPM signed with; TPM2_Quote also computes pcrDigest with it.
    pub fn hash(&self) -> HashAlg {
        match self {
            Signature::Rsassa { hash, .. }
            | Signature::Rsapss { hash, .. }
            | Signature::Ecdsa { hash, .. } => *hash,
        }
    }

    /// The signing scheme (algorithm + hash) in the same terms as a key's scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            Signature::Rsassa { hash, .. } => Scheme::Rsassa(*hash),
            Signature::Rsapss { hash, .. } => Scheme::Rsapss(*hash),
            Signature::Ecdsa { hash, .. } => Scheme::Ecdsa(*hash),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            Signature::Rsassa {
                hash: HashAlg::Sha256,
                sig: vec![7; 256],
            },
            Signature::Rsapss {
                hash: HashAlg::Sha384,
                sig: vec![8; 384],
            },
            Signature::Ecdsa {
                hash: HashAlg::Sha256,
                r: vec![1; 31],
                s: vec![2; 32],
            },
        ] {
            assert_eq!(Signature::from_bytes(&s.to_bytes()).unwrap(), s);
        }
    }

    #[test]
    fn rejects_unsupported_and_malformed() {
        let e = Signature::from_bytes(&[0x00, 0x10]).unwrap_err();
        assert_eq!((e.what.as_str(), e.offset), ("TPMT_SIGNATURE.sigAlg", 0));
        assert!(e.to_string().contains("TPM_ALG_NULL"), "{e}");
        let e = Signature::from_bytes(&[0x00, 0x1c, 0x00, 0x0b]).unwrap_err();
        assert!(e.to_string().contains("ECSCHNORR"), "{e}");
        let e = Signature::from_bytes(&[0x12, 0x34]).unwrap_err();
        assert_eq!(e.reason, WireReason::Unknown(0x1234));
        // ECDSA with an oversize r.
        let e = Signature::from_bytes(&[0x00, 0x18, 0x00, 0x0b, 0x00, 0x81]).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("TPMT_SIGNATURE.signature.ecdsa.signatureR", 4)
        );
        let mut b = Signature::Rsassa {
            hash: HashAlg::Sha1,
            sig: vec![1; 4],
        }
        .to_bytes();
        b.push(0);
        assert_eq!(
            Signature::from_bytes(&b).unwrap_err().reason,
            WireReason::Trailing(1)
        );
        let e = Signature::from_bytes(&[0x00, 0x14, 0x00, 0x10]).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("TPMT_SIGNATURE.signature.rsassa.hash", 2)
        );
    }
}
