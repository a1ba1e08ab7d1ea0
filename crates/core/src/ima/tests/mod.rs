//! Tests across the IMA modules: every policy outcome, every attack on the log, and
//! incremental replay. Fixtures are built here with `testlog::LogWriter`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod outcomes;
mod replay;

use super::policy::RuntimePolicy;
use super::signature::signature_v2;
use super::testlog::LogWriter;
use super::{BootIdentity, CheckOptions, CompiledPolicy, ReplayInput};
use crate::tpm::HashAlg;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

pub(super) const BOOT: BootIdentity = BootIdentity {
    reset_count: 3,
    restart_count: 0,
};

/// A signing key with a self-signed certificate (as a kernel keyring would hold).
pub(super) struct SigningKey {
    pair: EcdsaKeyPair,
    pub cert_der: Vec<u8>,
    pub spki_der: Vec<u8>,
    pub keyid: u32,
}

impl SigningKey {
    pub fn new() -> Self {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ima signer".into()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &kp.serialize_der()).unwrap();
        let key = super::ImaKey::from_file_data(cert.der()).unwrap().unwrap();
        Self {
            pair,
            cert_der: cert.der().to_vec(),
            spki_der: kp.public_key_der(),
            keyid: key.keyid(),
        }
    }

    /// The `security.ima` xattr for a file with this content (sha256).
    pub fn ima_sig(&self, content: &[u8]) -> Vec<u8> {
        let sig = self.pair.sign(&SystemRandom::new(), content).unwrap();
        signature_v2(4, self.keyid, sig.as_ref())
    }

    /// The policy `verification-keys` string holding this key.
    pub fn verification_keys(&self) -> String {
        let mut ring = super::Keyring::default();
        ring.add(super::ImaKey::from_spki_der(&self.spki_der, Some(self.keyid)).unwrap());
        ring.to_policy_json()
    }
}

/// A policy allowing exactly the digests of `log`'s ima-ng/ima-sig entries.
pub(super) fn policy_allowing(log: &LogWriter) -> RuntimePolicy {
    let mut p = RuntimePolicy::empty();
    for e in log.entries() {
        if !e.entry.is_violation() {
            p.digests
                .entry(e.entry.event.path().to_string())
                .or_default()
                .push(e.digest_hex());
        }
    }
    p
}

pub(super) fn compile(p: RuntimePolicy) -> CompiledPolicy {
    CompiledPolicy::new(p).unwrap()
}

pub(super) fn input<'a>(
    log: &'a str,
    served_from: u64,
    bank: HashAlg,
    quoted: &'a [u8],
) -> ReplayInput<'a> {
    ReplayInput {
        boot: BOOT,
        served_from,
        log,
        bank,
        quoted_pcr10: quoted,
        boot_aggregates: &[],
        options: CheckOptions::default(),
    }
}

/// A typical log: boot_aggregate and a handful of files.
pub(super) fn sample_log() -> LogWriter {
    let mut log = LogWriter::new();
    log.boot_aggregate(&[0x5a; 32]);
    for (path, content) in [
        ("/usr/lib/systemd/systemd", &b"systemd"[..]),
        ("/usr/lib64/ld-linux-x86-64.so.2", b"ld.so"),
        ("/usr/lib64/libc.so.6", b"libc"),
        ("/usr/bin/bash", b"bash"),
        ("/usr/bin/ls", b"ls"),
        ("/usr/bin/cat", b"cat"),
        ("/usr/sbin/sshd", b"sshd"),
    ] {
        log.file(path, content);
    }
    log
}
