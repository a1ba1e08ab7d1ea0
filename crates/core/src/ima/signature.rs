//! `ima-sig` signatures: `struct signature_v2_hdr` and verification against keyrings
//! (upstream keylime/ima/file_signatures.py `ImaKeyrings.integrity_digsig_verify`,
//! `_asymmetric_verify`; keylime/ima/ast.py `Signature`).

use super::digest::FileDigest;
use super::key::KeyKind;
use super::keyring::Keyring;
use thiserror::Error;

/// `EVM_IMA_XATTR_DIGSIG` and `EVM_XATTR_PORTABLE_DIGSIG`: the signature types IMA verifies.
const XATTR_DIGSIG: u8 = 3;
const XATTR_PORTABLE_DIGSIG: u8 = 5;
/// `struct signature_v2_hdr`: type, version, hash_algo, keyid (BE u32), sig_size (BE u16).
const SIG_HEADER_LEN: usize = 9;

/// Why an `ima-sig` signature did not verify (upstream only logs these; Vouch puts them in the
/// violation so the operator sees why the digest list was consulted).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SigError {
    #[error("signature is {len} bytes, shorter than its 9-byte header")]
    TooShort { len: usize },
    #[error("signature header announces {announced} bytes but {actual} follow")]
    SizeMismatch { announced: usize, actual: usize },
    #[error("signature type {0} is not an IMA digital signature (3 or 5)")]
    WrongType(u8),
    #[error("signature version {0} is not 2")]
    WrongVersion(u8),
    #[error("signature hash algorithm {0} is unknown")]
    UnknownHash(u8),
    #[error("signature is over a {sig} digest but the file digest is {file}")]
    HashMismatch { sig: &'static str, file: String },
    #[error("no key with id 0x{keyid:08x} in any keyring")]
    NoKey { keyid: u32 },
    #[error("{hash} signatures by {key:?} keys are not supported")]
    UnsupportedCombination { hash: String, key: KeyKind },
    #[error("signature does not verify with key 0x{keyid:08x}")]
    BadSignature { keyid: u32 },
}

/// Upstream's `ast.Signature` check: a header whose size field matches the bytes that follow.
/// A log line failing it makes upstream's template hash mismatch, so it is a violation.
pub fn check_signature_header(sig: &[u8]) -> Result<(), SigError> {
    if sig.len() < SIG_HEADER_LEN {
        return Err(SigError::TooShort { len: sig.len() });
    }
    let announced = usize::from(u16::from_be_bytes([sig[7], sig[8]]));
    let actual = sig.len() - SIG_HEADER_LEN;
    if announced != actual {
        return Err(SigError::SizeMismatch { announced, actual });
    }
    Ok(())
}

/// Linux `enum hash_algo` values IMA signatures name, with the digest name the log uses.
fn sig_hash_name(id: u8) -> Option<&'static str> {
    Some(match id {
        1 => "md5",
        2 => "sha1",
        4 => "sha256",
        5 => "sha384",
        6 => "sha512",
        7 => "sha224",
        18 => "streebog256",
        19 => "streebog512",
        _ => return None,
    })
}

/// Verify an `ima-sig` signature over `digest` with whichever keyring holds its keyid
/// (upstream `ImaKeyrings.integrity_digsig_verify`). Every key with that id is tried.
pub fn verify_signature(
    keyrings: &[&Keyring],
    sig: &[u8],
    digest: &FileDigest,
) -> Result<(), SigError> {
    check_signature_header(sig)?;
    if sig[0] != XATTR_DIGSIG && sig[0] != XATTR_PORTABLE_DIGSIG {
        return Err(SigError::WrongType(sig[0]));
    }
    if sig[1] != 2 {
        return Err(SigError::WrongVersion(sig[1]));
    }
    let hash = sig_hash_name(sig[2]).ok_or(SigError::UnknownHash(sig[2]))?;
    if digest.alg() != hash {
        return Err(SigError::HashMismatch {
            sig: hash,
            file: digest.alg().to_string(),
        });
    }
    let keyid = u32::from_be_bytes([sig[3], sig[4], sig[5], sig[6]]);
    let mut last = SigError::NoKey { keyid };
    for key in keyrings.iter().filter_map(|r| r.get(keyid)) {
        match key.verify_prehashed(hash, digest.bytes(), &sig[SIG_HEADER_LEN..]) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Build an IMA v2 signature (`struct signature_v2_hdr` + signature) — for tests and tooling.
pub fn signature_v2(hash_algo_id: u8, keyid: u32, sig: &[u8]) -> Vec<u8> {
    let mut out = vec![XATTR_DIGSIG, 2, hash_algo_id];
    out.extend_from_slice(&keyid.to_be_bytes());
    let size = u16::try_from(sig.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(sig);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ima::key::tests::ec_key;
    use crate::ima::key::ImaKey;
    use aws_lc_rs::digest;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};

    #[test]
    fn ecdsa_and_rsa_signatures_verify() {
        let content = b"#!/bin/sh\necho hi\n";
        let file = FileDigest::new(
            "sha256",
            digest::digest(&digest::SHA256, content).as_ref().to_vec(),
        );
        let rng = SystemRandom::new();

        let (kp, spki) = ec_key();
        let key = ImaKey::from_spki_der(&spki, None).unwrap();
        let raw = kp.sign(&rng, content).unwrap();
        let sig = signature_v2(4, key.keyid(), raw.as_ref());
        let mut ring = Keyring::default();
        ring.add(key.clone());
        verify_signature(&[&ring], &sig, &file).unwrap();

        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa_spki = rsa.public_key().as_der().unwrap().as_ref().to_vec();
        let rkey = ImaKey::from_spki_der(&rsa_spki, None).unwrap();
        let mut rsig = vec![0u8; rsa.public_modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, content, &mut rsig)
            .unwrap();
        let sig2 = signature_v2(4, rkey.keyid(), &rsig);
        assert_eq!(
            verify_signature(&[&ring], &sig2, &file),
            Err(SigError::NoKey {
                keyid: rkey.keyid()
            })
        );
        let mut ring2 = Keyring::default();
        ring2.add(rkey.clone());
        verify_signature(&[&ring, &ring2], &sig2, &file).unwrap();

        // Wrong digest, wrong alg, broken headers.
        let other = FileDigest::new("sha256", vec![0; 32]);
        assert_eq!(
            verify_signature(&[&ring], &sig, &other),
            Err(SigError::BadSignature { keyid: key.keyid() })
        );
        let sha1 = FileDigest::new("sha1", vec![0; 20]);
        assert!(matches!(
            verify_signature(&[&ring], &sig, &sha1),
            Err(SigError::HashMismatch { .. })
        ));
        assert_eq!(
            verify_signature(&[&ring], &sig[..5], &file),
            Err(SigError::TooShort { len: 5 })
        );
        assert!(matches!(
            verify_signature(&[&ring], &sig[..sig.len() - 1], &file),
            Err(SigError::SizeMismatch { .. })
        ));
        let mut t = sig.clone();
        t[0] = 1;
        assert_eq!(
            verify_signature(&[&ring], &t, &file),
            Err(SigError::WrongType(1))
        );
        let mut t = sig.clone();
        t[1] = 1;
        assert_eq!(
            verify_signature(&[&ring], &t, &file),
            Err(SigError::WrongVersion(1))
        );
        let mut t = sig;
        t[2] = 99;
        assert_eq!(
            verify_signature(&[&ring], &t, &file),
            Err(SigError::UnknownHash(99))
        );
    }
}
