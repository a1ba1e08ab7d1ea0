//! Verification cost table: `cargo bench -p vouch-core --bench verify`.
//!
//! Prints, per operation, the mean time per call and, for quote verification, the ratio to the
//! raw signature check on the same key (aws-lc-rs on a pre-parsed key over the same bytes) —
//! the target is full verification ≤ 1.5× raw. No assertion: figures are read, not gated.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches fail loudly

mod common;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair, ParsedPublicKey, RsaKeyPair};
use common::measure;
use std::hint::black_box;
use std::time::Duration;
use vouch_core::credential::make_credential;
use vouch_core::ekcert::{verify_ek_cert, EkCaStore};
use vouch_core::keys::VerifyingKey;
use vouch_core::quote::verify_quote;
use vouch_core::tpm::*;

/// A quote over sha256 PCRs 0..=23 with the given nonce, as a TPM would produce it.
fn quote_fixture(nonce: &[u8]) -> (Vec<u8>, PcrValues, PcrSelection) {
    let selection = PcrSelection::new(vec![
        BankSelection::new(HashAlg::Sha256, 0..24).expect("bank")
    ])
    .expect("selection");
    let mut pcrs = PcrValues::new();
    for i in 0..24u8 {
        pcrs.insert(HashAlg::Sha256, i, HashAlg::Sha256.digest(&[i]))
            .expect("pcr");
    }
    let pcr_digest = pcrs.digest(&selection, HashAlg::Sha256).expect("digest");
    let attest = Attest {
        qualified_signer: Name([0x00, 0x0b].iter().copied().chain([0x11; 32]).collect()),
        extra_data: nonce.to_vec(),
        clock_info: ClockInfo {
            clock: 123_456,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        },
        firmware_version: 0x2019_0101,
        attested: Attested::Quote(QuoteInfo {
            selection: selection.clone(),
            pcr_digest,
        }),
    };
    (attest.to_bytes(), pcrs, selection)
}

struct Row {
    op: String,
    mean: Duration,
    ratio: Option<f64>,
}

fn main() {
    let budget = common::budget();
    let rng = SystemRandom::new();
    let nonce = [0x5a; 20];
    let (attest, pcrs, selection) = quote_fixture(&nonce);
    let mut rows = Vec::new();

    // --- RSA-2048 AK, RSASSA-SHA256 --------------------------------------------------------
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
    let c: PublicKeyComponents<Vec<u8>> = rsa.public_key().into();
    let rsa_public = Public {
        name_alg: HashAlg::Sha256,
        attributes: ObjectAttributes::AK,
        auth_policy: vec![],
        key: PublicKey::Rsa {
            symmetric: SymDef::Null,
            scheme: Scheme::Rsassa(HashAlg::Sha256),
            key_bits: 2048,
            exponent: 0,
            modulus: c.n.clone(),
        },
    };
    let mut rsa_sig = vec![0u8; rsa.public_modulus_len()];
    rsa.sign(&sig::RSA_PKCS1_SHA256, &rng, &attest, &mut rsa_sig)
        .expect("sign");
    let raw_rsa = sig::RsaPublicKeyComponents {
        n: c.n.as_slice(),
        e: c.e.as_slice(),
    }
    .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
    .expect("parsed rsa");
    let raw = measure(budget, || {
        raw_rsa
            .verify_sig(black_box(&attest), black_box(&rsa_sig))
            .expect("raw rsa verify");
    });
    rows.push(Row {
        op: "RSA-2048 PKCS#1 signature alone (aws-lc-rs)".into(),
        mean: raw,
        ratio: None,
    });
    let ak = VerifyingKey::from_public(&rsa_public).expect("ak");
    let signature = Signature::Rsassa {
        hash: HashAlg::Sha256,
        sig: rsa_sig.clone(),
    };
    let full = measure(budget, || {
        verify_quote(
            &ak,
            black_box(&attest),
            &signature,
            &pcrs,
            &nonce,
            &selection,
        )
        .expect("quote");
    });
    rows.push(Row {
        op: "quote RSA-2048, sha256, 24 PCRs (full verification)".into(),
        mean: full,
        ratio: Some(full.as_secs_f64() / raw.as_secs_f64()),
    });
    let full_with_key = measure(budget, || {
        let ak = VerifyingKey::from_public(&rsa_public).expect("ak");
        verify_quote(
            &ak,
            black_box(&attest),
            &signature,
            &pcrs,
            &nonce,
            &selection,
        )
        .expect("quote");
    });
    rows.push(Row {
        op: "  … including AK import from TPM2B_PUBLIC".into(),
        mean: full_with_key,
        ratio: Some(full_with_key.as_secs_f64() / raw.as_secs_f64()),
    });

    // --- ECC P-256 AK, ECDSA-SHA256 --------------------------------------------------------
    let ec = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec keygen");
    let point = ec.public_key().as_ref().to_vec();
    let ecc_public = Public {
        name_alg: HashAlg::Sha256,
        attributes: ObjectAttributes::AK,
        auth_policy: vec![],
        key: PublicKey::Ecc {
            symmetric: SymDef::Null,
            scheme: Scheme::Ecdsa(HashAlg::Sha256),
            curve: EccCurve::NistP256,
            kdf: KdfScheme::Null,
            x: point[1..33].to_vec(),
            y: point[33..].to_vec(),
        },
    };
    let ec_sig = ec
        .sign(&rng, &attest)
        .expect("ecdsa sign")
        .as_ref()
        .to_vec();
    let raw_ec = ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &point).expect("parsed ec");
    let raw = measure(budget, || {
        raw_ec
            .verify_sig(black_box(&attest), black_box(&ec_sig))
            .expect("raw ecdsa verify");
    });
    rows.push(Row {
        op: "ECDSA P-256 signature alone (aws-lc-rs)".into(),
        mean: raw,
        ratio: None,
    });
    let ak = VerifyingKey::from_public(&ecc_public).expect("ak");
    let signature = Signature::Ecdsa {
        hash: HashAlg::Sha256,
        r: ec_sig[..32].to_vec(),
        s: ec_sig[32..].to_vec(),
    };
    let full = measure(budget, || {
        verify_quote(
            &ak,
            black_box(&attest),
            &signature,
            &pcrs,
            &nonce,
            &selection,
        )
        .expect("quote");
    });
    rows.push(Row {
        op: "quote ECC P-256, sha256, 24 PCRs (full verification)".into(),
        mean: full,
        ratio: Some(full.as_secs_f64() / raw.as_secs_f64()),
    });

    // --- MakeCredential --------------------------------------------------------------------
    let ak_name = rsa_public.name();
    let secret = [0x42u8; 32];
    for (label, ek) in [("RSA-2048 EK", ek_rsa()), ("ECC P-256 EK", ek_ecc())] {
        let mean = measure(budget, || {
            make_credential(&ek, &ak_name, black_box(&secret)).expect("makecredential");
        });
        rows.push(Row {
            op: format!("MakeCredential, {label}"),
            mean,
            ratio: None,
        });
    }

    // --- EK certificate chain --------------------------------------------------------------
    let (ca_der, ek_der) = ek_chain();
    let store = EkCaStore::from_certs("bench", &[&ca_der]).expect("store");
    let now = std::time::SystemTime::now();
    let mean = measure(budget, || {
        verify_ek_cert(black_box(&ek_der), &store, None, now).expect("ek cert");
    });
    rows.push(Row {
        op: "EK certificate chain check (rustls-webpki, P-256 CA)".into(),
        mean,
        ratio: None,
    });

    println!(
        "\n{:<56} {:>12} {:>12} {:>10}",
        "operation", "µs / call", "calls / s", "× raw sig"
    );
    println!("{}", "-".repeat(93));
    for r in rows {
        let us = r.mean.as_secs_f64() * 1e6;
        let ratio = r.ratio.map_or_else(String::new, |x| format!("{x:.2}"));
        println!("{:<56} {:>12.1} {:>12.0} {:>10}", r.op, us, 1e6 / us, ratio);
    }
}

/// A TCG-template RSA-2048 EK public area around a freshly generated key.
fn ek_rsa() -> Public {
    let k = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
    let c: PublicKeyComponents<Vec<u8>> = k.public_key().into();
    Public {
        name_alg: HashAlg::Sha256,
        attributes: ObjectAttributes::TCG_EK,
        auth_policy: vouch_core::tpm::public::TCG_EK_POLICY_SHA256.to_vec(),
        key: PublicKey::Rsa {
            symmetric: SymDef::AES_128_CFB,
            scheme: Scheme::Null,
            key_bits: 2048,
            exponent: 0,
            modulus: c.n,
        },
    }
}

fn ek_ecc() -> Public {
    let k = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec keygen");
    let p = k.public_key().as_ref().to_vec();
    Public {
        name_alg: HashAlg::Sha256,
        attributes: ObjectAttributes::TCG_EK,
        auth_policy: vouch_core::tpm::public::TCG_EK_POLICY_SHA256.to_vec(),
        key: PublicKey::Ecc {
            symmetric: SymDef::AES_128_CFB,
            scheme: Scheme::Null,
            curve: EccCurve::NistP256,
            kdf: KdfScheme::Null,
            x: p[1..33].to_vec(),
            y: p[33..].to_vec(),
        },
    }
}

/// A CA and an EK-style certificate it signs (critical SAN, empty subject), made with rcgen.
fn ek_chain() -> (Vec<u8>, Vec<u8>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair as RcKey,
    };
    let ca_key = RcKey::generate().expect("ca key");
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "Vouch bench EK CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let ek_key = RcKey::generate().expect("ek key");
    let mut ek = CertificateParams::default();
    ek.distinguished_name = DistinguishedName::new();
    ek.distinguished_name.push(DnType::CommonName, "bench EK");
    let ek_cert = ek.signed_by(&ek_key, &ca_cert, &ca_key).expect("ek cert");
    (ca_cert.der().to_vec(), ek_cert.der().to_vec())
}
