#![no_main]
//! EK certificates (PEM or DER, NV padding): verify_ek_cert and trim_der never panic.
//!
//! The store is a CA generated with rcgen at startup (no key material in the repository). A
//! fuzzed certificate almost never carries a valid signature, so an input that starts like a
//! directoryName GeneralName (0xa4) is also put, as the subjectAltName GeneralNames, into an EK
//! certificate that the CA really signs: that reaches the TCG attribute extraction that only
//! runs after the chain verified. Signing is slow, hence the gate on the first byte.
use libfuzzer_sys::fuzz_target;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa,
    KeyPair,
};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vouch_core::ekcert::{trim_der, verify_ek_cert, EkCaStore};

struct Fixture {
    store: EkCaStore,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    ek_key: KeyPair,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(vec![]).expect("CA params");
        p.distinguished_name.push(DnType::CommonName, "vouch fuzz EK CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let ca = p.self_signed(&ca_key).expect("CA certificate");
        let store = EkCaStore::from_certs("fuzz", &[ca.der().as_ref()]).expect("store");
        let ek_key = KeyPair::generate().expect("EK key");
        Fixture {
            store,
            ca,
            ca_key,
            ek_key,
        }
    })
}

/// 2030-01-01: inside the fuzz CA's validity, and fixed so a crash reproduces.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(der) = trim_der(data) {
        assert!(der.len() <= data.len());
        assert!(data[der.len()..].iter().all(|&b| b == 0));
    }
    let _ = verify_ek_cert(data, &f.store, None, now());

    // The input as the (critical) subjectAltName GeneralNames of a correctly signed EK cert.
    if data.first() == Some(&0xa4) && data.len() <= 1024 {
        let mut p = CertificateParams::new(vec![]).expect("EK params");
        p.distinguished_name = DistinguishedName::new();
        p.not_before = rcgen::date_time_ymd(2021, 1, 1);
        p.not_after = rcgen::date_time_ymd(2039, 1, 1);
        let mut san = CustomExtension::from_oid_content(&[2, 5, 29, 17], der_sequence(data));
        san.set_criticality(true);
        p.custom_extensions.push(san);
        if let Ok(cert) = p.signed_by(&f.ek_key, &f.ca, &f.ca_key) {
            let _ = verify_ek_cert(cert.der(), &f.store, None, now());
            let _ = verify_ek_cert(cert.pem().as_bytes(), &f.store, None, now());
        }
    }
});

/// DER SEQUENCE around `content` (at most 65535 bytes).
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let mut v = vec![0x30];
    match content.len() {
        n if n < 0x80 => v.push(n as u8),
        n if n < 0x100 => v.extend([0x81, n as u8]),
        n => v.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    v.extend_from_slice(content);
    v
}
