//! The two TPM key derivation functions (TPM 2.0 Part 1, §11.4.10): KDFa, the SP 800-108
//! counter-mode HMAC KDF, and KDFe, the SP 800-56A concatenation KDF used after ECDH.
//!
//! Both follow the reference implementation's label rule: the label is followed by exactly one
//! 0x00 byte, so "IDENTITY" and "IDENTITY\0" derive the same bits.

use crate::tpm::HashAlg;
use aws_lc_rs::hmac;

fn hmac_alg(hash: HashAlg) -> hmac::Algorithm {
    match hash {
        HashAlg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => hmac::HMAC_SHA256,
        HashAlg::Sha384 => hmac::HMAC_SHA384,
        HashAlg::Sha512 => hmac::HMAC_SHA512,
    }
}

/// HMAC with a TPM hash algorithm over the concatenation of `parts`.
pub fn hmac(hash: HashAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac_alg(hash), key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

/// The label as the TPM feeds it to a KDF: without a trailing NUL of its own, then one 0x00.
fn label_bytes(label: &[u8]) -> Vec<u8> {
    let mut l = label.strip_suffix(&[0]).unwrap_or(label).to_vec();
    l.push(0);
    l
}

/// Keep `bits` bits of a big-endian key stream of `ceil(bits / 8)` bytes: the spec clears the
/// unused high bits of the first byte.
fn truncate(mut stream: Vec<u8>, bits: u32) -> Vec<u8> {
    stream.truncate(bits.div_ceil(8) as usize);
    if bits & 7 != 0 {
        if let Some(first) = stream.first_mut() {
            *first &= (1u8 << (bits % 8)) - 1;
        }
    }
    stream
}

/// KDFa(hashAlg, key, label, contextU, contextV, bits):
/// `HMAC(key, [i]32 || label || 0x00 || contextU || contextV || [bits]32)` for i = 1, 2, ...
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let label = label_bytes(label);
    let hkey = hmac::Key::new(hmac_alg(hash), key);
    let want = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(want + hash.digest_len());
    let mut counter: u32 = 1;
    while out.len() < want {
        let mut ctx = hmac::Context::with_key(&hkey);
        ctx.update(&counter.to_be_bytes());
        ctx.update(&label);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter = counter.wrapping_add(1);
    }
    truncate(out, bits)
}

/// KDFe(hashAlg, Z, label, partyUInfo, partyVInfo, bits):
/// `H([i]32 || Z || label || 0x00 || partyUInfo || partyVInfo)` for i = 1, 2, ...
pub fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let label = label_bytes(label);
    let want = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(want + hash.digest_len());
    let mut counter: u32 = 1;
    while out.len() < want {
        out.extend(hash.digest_parts(&[&counter.to_be_bytes(), z, &label, party_u, party_v]));
        counter = counter.wrapping_add(1);
    }
    truncate(out, bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent KDFa: the SP 800-108 formula written out with a hand-rolled HMAC
    /// (RFC 2104 over the plain digest), so the check does not share the aws-lc HMAC path.
    fn hmac_by_hand(hash: HashAlg, key: &[u8], msg: &[u8]) -> Vec<u8> {
        let block = if matches!(hash, HashAlg::Sha384 | HashAlg::Sha512) {
            128
        } else {
            64
        };
        let mut k = if key.len() > block {
            hash.digest(key)
        } else {
            key.to_vec()
        };
        k.resize(block, 0);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = hash.digest_parts(&[&ipad, msg]);
        hash.digest_parts(&[&opad, &inner])
    }

    #[test]
    fn kdfa_matches_the_formula() {
        let key = [0x11u8; 32];
        for hash in HashAlg::ALL {
            for bits in [128u32, 256, 384, 520] {
                let got = kdfa(hash, &key, b"STORAGE", b"ctxU", b"ctxV", bits);
                let mut expect = Vec::new();
                for i in 1u32..=10 {
                    let mut msg = i.to_be_bytes().to_vec();
                    msg.extend(b"STORAGE\0ctxUctxV");
                    msg.extend(bits.to_be_bytes());
                    expect.extend(hmac_by_hand(hash, &key, &msg));
                }
                expect.truncate(bits as usize / 8);
                assert_eq!(got, expect, "{hash} {bits}");
            }
        }
    }

    /// A label given with its NUL derives the same bits as one without; odd bit counts clear
    /// the high bits of the first byte. (The end-to-end check against a real TPM's
    /// ActivateCredential is what pins the exact byte layout.)
    #[test]
    fn kdfa_label_nul_and_odd_bits() {
        let key: Vec<u8> = (0u8..32).collect();
        assert_eq!(
            kdfa(HashAlg::Sha256, &key, b"TEST", b"U", b"V", 256),
            kdfa(HashAlg::Sha256, &key, b"TEST\0", b"U", b"V", 256)
        );
        let odd = kdfa(HashAlg::Sha256, &key, b"TEST", b"", b"", 12);
        assert_eq!(odd.len(), 2);
        assert_eq!(odd[0] & 0xf0, 0);
    }

    #[test]
    fn kdfe_matches_the_formula() {
        let z = [7u8; 32];
        let got = kdfe(HashAlg::Sha256, &z, b"IDENTITY", b"uuuu", b"vvvv", 512);
        let mut expect =
            HashAlg::Sha256.digest_parts(&[&1u32.to_be_bytes(), &z, b"IDENTITY\0uuuuvvvv"]);
        expect.extend(HashAlg::Sha256.digest_parts(&[
            &2u32.to_be_bytes(),
            &z,
            b"IDENTITY\0uuuuvvvv",
        ]));
        assert_eq!(got, expect);
        assert_eq!(
            kdfe(HashAlg::Sha384, &z, b"IDENTITY", b"", b"", 384).len(),
            48
        );
    }
}
