//! TPM algorithm identifiers (TPM 2.0 Part 2, TPM_ALG_ID) and the hashes Vouch supports.

use super::wire::{Reader, WireError, WireReason, Writer};
use aws_lc_rs::digest;
use std::fmt;

pub const TPM_ALG_RSA: u16 = 0x0001;
pub const TPM_ALG_SHA1: u16 = 0x0004;
pub const TPM_ALG_HMAC: u16 = 0x0005;
pub const TPM_ALG_AES: u16 = 0x0006;
pub const TPM_ALG_KEYEDHASH: u16 = 0x0008;
pub const TPM_ALG_XOR: u16 = 0x000A;
pub const TPM_ALG_SHA256: u16 = 0x000B;
pub const TPM_ALG_SHA384: u16 = 0x000C;
pub const TPM_ALG_SHA512: u16 = 0x000D;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_RSASSA: u16 = 0x0014;
pub const TPM_ALG_RSAES: u16 = 0x0015;
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
pub const TPM_ALG_OAEP: u16 = 0x0017;
pub const TPM_ALG_ECDSA: u16 = 0x0018;
pub const TPM_ALG_ECDH: u16 = 0x0019;
pub const TPM_ALG_ECDAA: u16 = 0x001A;
pub const TPM_ALG_SM2: u16 = 0x001B;
pub const TPM_ALG_ECSCHNORR: u16 = 0x001C;
pub const TPM_ALG_KDF1_SP800_56A: u16 = 0x0020;
pub const TPM_ALG_KDF2: u16 = 0x0021;
pub const TPM_ALG_KDF1_SP800_108: u16 = 0x0022;
pub const TPM_ALG_ECC: u16 = 0x0023;
pub const TPM_ALG_SYMCIPHER: u16 = 0x0025;
pub const TPM_ALG_CFB: u16 = 0x0043;

/// A hash algorithm usable for PCR banks, names, signatures and KDFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub const ALL: [HashAlg; 4] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    pub fn id(self) -> u16 {
        match self {
            HashAlg::Sha1 => TPM_ALG_SHA1,
            HashAlg::Sha256 => TPM_ALG_SHA256,
            HashAlg::Sha384 => TPM_ALG_SHA384,
            HashAlg::Sha512 => TPM_ALG_SHA512,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.id() == id)
    }

    /// tpm2-tools / keylime spelling: `sha1`, `sha256`, ...
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|h| h.name().eq_ignore_ascii_case(s))
    }

    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    pub(crate) fn ring_alg(self) -> &'static digest::Algorithm {
        match self {
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &digest::SHA256,
            HashAlg::Sha384 => &digest::SHA384,
            HashAlg::Sha512 => &digest::SHA512,
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.ring_alg(), data).as_ref().to_vec()
    }

    /// Digest of several parts without concatenating them first.
    pub fn digest_parts(self, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = digest::Context::new(self.ring_alg());
        for p in parts {
            ctx.update(p);
        }
        ctx.finish().as_ref().to_vec()
    }

    /// Read a TPMI_ALG_HASH (NULL not allowed).
    pub fn read(r: &mut Reader<'_>, what: &str) -> Result<Self, WireError> {
        let at = r.offset();
        let id = r.u16(what)?;
        HashAlg::from_id(id).ok_or_else(|| r.error_at(at, what, WireReason::Unknown(id.into())))
    }

    pub fn write(self, w: &mut Writer) {
        w.u16(self.id());
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
