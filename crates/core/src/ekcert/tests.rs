//! EK certificate checks against a CA hierarchy generated here with rcgen.

use super::*;
use crate::tpm::{EccCurve, HashAlg, ObjectAttributes, PublicKey, Scheme, SymDef};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use std::time::{Duration, UNIX_EPOCH};

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn root(cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

fn intermediate(cn: &str, parent: &Ca) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ca {
        cert: p.signed_by(&key, &parent.cert, &parent.key).unwrap(),
        key,
    }
}

/// An RSA public key rcgen can put in a certificate it does not hold the private key of.
struct RsaPub(Vec<u8>);
impl PublicKeyData for RsaPub {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    assert!(content.len() < 0x80);
    let mut v = vec![tag, content.len() as u8];
    v.extend_from_slice(content);
    v
}

/// subjectAltName = directoryName { tpmManufacturer, tpmModel, tpmVersion }, as TPM vendors
/// write it (one RDN per attribute).
fn tcg_san() -> CustomExtension {
    let mut rdns = Vec::new();
    for (last, value) in [(1u8, "id:49465800"), (2, "SLB9670"), (3, "id:00070055")] {
        let mut atv = der_tlv(0x06, &[0x67, 0x81, 0x05, 0x02, last]);
        atv.extend(der_tlv(0x0c, value.as_bytes()));
        rdns.extend(der_tlv(0x31, &der_tlv(0x30, &atv)));
    }
    let general_names = der_tlv(0x30, &der_tlv(0xa4, &der_tlv(0x30, &rdns)));
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 17], general_names);
    ext.set_criticality(true);
    ext
}

fn ek_params(eku: Option<ExtendedKeyUsagePurpose>) -> CertificateParams {
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.serial_number = Some(SerialNumber::from(vec![0x01, 0x02, 0x03]));
    p.custom_extensions.push(tcg_san());
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    p.extended_key_usages = eku.into_iter().collect();
    p
}

fn tcg_eku() -> Option<ExtendedKeyUsagePurpose> {
    Some(ExtendedKeyUsagePurpose::Other(vec![2, 23, 133, 8, 1]))
}

fn rsa_ek_public(modulus: Vec<u8>) -> Public {
    Public {
        name_alg: HashAlg::Sha256,
        attributes: ObjectAttributes(ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT),
        auth_policy: vec![],
        key: PublicKey::Rsa {
            symmetric: SymDef::AES_128_CFB,
            scheme: Scheme::Null,
            key_bits: 2048,
            exponent: 0,
            modulus,
        },
    }
}

fn ecc_ek_public(point: &[u8]) -> Public {
    Public {
        name_alg: HashAlg::Sha256,
        attributes: ObjectAttributes(ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT),
        auth_policy: vec![],
        key: PublicKey::Ecc {
            symmetric: SymDef::AES_128_CFB,
            scheme: Scheme::Null,
            curve: EccCurve::NistP256,
            kdf: crate::tpm::KdfScheme::Null,
            x: point[1..33].to_vec(),
            y: point[33..].to_vec(),
        },
    }
}

fn modulus(seed: u8) -> Vec<u8> {
    let mut m = vec![seed; 256];
    m[0] = 0xc3;
    m[255] = 0x01;
    m
}

fn rsa_ek_cert(issuer: &Ca, m: &[u8], eku: Option<ExtendedKeyUsagePurpose>) -> Vec<u8> {
    let key = RsaPub(crate::der::rsa_public_key(m, 65537));
    ek_params(eku)
        .signed_by(&key, &issuer.cert, &issuer.key)
        .unwrap()
        .der()
        .to_vec()
}

fn at(year: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((year - 1970) * 365 * 86400 + 30 * 86400)
}

/// root → intermediate → EK certificate, the store holding both CA certificates.
fn hierarchy() -> (tempfile::TempDir, EkCaStore, Ca) {
    let r = root("Vouch Test EK Root");
    let i = intermediate("Vouch Test EK Intermediate", &r);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), r.cert.pem()).unwrap();
    std::fs::write(dir.path().join("intermediate.DER"), i.cert.der()).unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a cert").unwrap();
    let store = EkCaStore::from_dir(dir.path()).unwrap();
    (dir, store, i)
}

#[test]
fn accepts_a_good_chain_and_extracts_tcg_attributes() {
    let (_dir, store, i) = hierarchy();
    let roles: Vec<CaRole> = store.entries().iter().map(|e| e.role).collect();
    assert_eq!(roles, vec![CaRole::Intermediate, CaRole::Root]);
    assert_eq!(store.skipped().len(), 1);
    let cert = rsa_ek_cert(&i, &modulus(1), tcg_eku());
    let v = verify_ek_cert(&cert, &store, Some(&rsa_ek_public(modulus(1))), at(2030)).unwrap();
    assert_eq!(v.tpm_manufacturer(), Some("id:49465800"));
    assert_eq!(v.tpm_model(), Some("SLB9670"));
    assert_eq!(v.tpm_version(), Some("id:00070055"));
    assert_eq!(v.chain_len(), 3);
    assert_eq!(v.anchor(), "CN=Vouch Test EK Root");
    assert_eq!(v.id().serial, "010203");
    assert!(v.key_matched());
    assert_eq!(v.der(), cert.as_slice());

    // No EKU at all is fine too (many vendors omit it).
    let cert = rsa_ek_cert(&i, &modulus(1), None);
    verify_ek_cert(&cert, &store, None, at(2030)).unwrap();
}

#[test]
fn accepts_pem_and_nv_padding_rejects_other_trailing_bytes() {
    let (_dir, store, i) = hierarchy();
    let cert = rsa_ek_cert(&i, &modulus(1), tcg_eku());
    let pem = crate::der::pem_encode("CERTIFICATE", &cert);
    verify_ek_cert(pem.as_bytes(), &store, None, at(2030)).unwrap();
    let mut padded = cert.clone();
    padded.extend([0u8; 300]);
    assert_eq!(
        verify_ek_cert(&padded, &store, None, at(2030))
            .unwrap()
            .der(),
        cert.as_slice()
    );
    let mut junk = cert.clone();
    junk.extend([0, 0, 7]);
    let e = verify_ek_cert(&junk, &store, None, at(2030)).unwrap_err();
    assert!(matches!(e, EkCertError::Trailing { extra: 3 }), "{e}");
    let e = verify_ek_cert(&cert[..cert.len() - 1], &store, None, at(2030)).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn rejects_wrong_ca_expired_and_self_signed() {
    let (_dir, store, i) = hierarchy();
    let cert = rsa_ek_cert(&i, &modulus(1), tcg_eku());

    let other = root("Some Other CA");
    let other_store =
        EkCaStore::from_certs("/etc/vouch/ek-ca", &[other.cert.der().as_ref()]).unwrap();
    let e = verify_ek_cert(&cert, &other_store, None, at(2030)).unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::Chain {
                reason: ChainFailure::UnknownIssuer,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "EK certificate (issuer CN=Vouch Test EK Intermediate, subject (empty), serial 0x010203) does not chain \
         to any CA in /etc/vouch/ek-ca: no CA in the store issued it"
    );

    let e = verify_ek_cert(&cert, &store, None, at(2045)).unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::Chain {
                reason: ChainFailure::Expired { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("expired"), "{e}");
    let e = verify_ek_cert(&cert, &store, None, at(2015)).unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::Chain {
                reason: ChainFailure::NotValidYet { .. },
                ..
            }
        ),
        "{e}"
    );

    let key = KeyPair::generate().unwrap();
    let mut p = ek_params(tcg_eku());
    p.distinguished_name.push(DnType::CommonName, "self");
    let selfsigned = p.self_signed(&key).unwrap();
    let e = verify_ek_cert(selfsigned.der(), &store, None, at(2030)).unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::Chain {
                reason: ChainFailure::SelfSigned,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rejects_a_foreign_extended_key_usage() {
    let (_dir, store, i) = hierarchy();
    let cert = rsa_ek_cert(&i, &modulus(1), Some(ExtendedKeyUsagePurpose::ServerAuth));
    let e = verify_ek_cert(&cert, &store, None, at(2030)).unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::Chain {
                reason: ChainFailure::WrongExtendedKeyUsage,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn key_must_match_the_ek() {
    let (_dir, store, i) = hierarchy();
    let cert = rsa_ek_cert(&i, &modulus(1), tcg_eku());
    let e = verify_ek_cert(&cert, &store, Some(&rsa_ek_public(modulus(2))), at(2030)).unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::KeyMismatch {
                what: "RSA modulus",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("serial 0x010203"), "{e}");
    let mut odd_exponent = rsa_ek_public(modulus(1));
    if let PublicKey::Rsa { exponent, .. } = &mut odd_exponent.key {
        *exponent = 3;
    }
    let e = verify_ek_cert(&cert, &store, Some(&odd_exponent), at(2030)).unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::KeyMismatch {
                what: "RSA exponent",
                ..
            }
        ),
        "{e}"
    );

    let ek_key = KeyPair::generate().unwrap();
    let ecc_cert = ek_params(tcg_eku())
        .signed_by(&ek_key, &i.cert, &i.key)
        .unwrap();
    let point = ek_key.public_key_raw();
    verify_ek_cert(
        ecc_cert.der(),
        &store,
        Some(&ecc_ek_public(point)),
        at(2030),
    )
    .unwrap();
    let mut moved = point.to_vec();
    moved[64] ^= 1;
    let e = verify_ek_cert(
        ecc_cert.der(),
        &store,
        Some(&ecc_ek_public(&moved)),
        at(2030),
    )
    .unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::KeyMismatch {
                what: "ECC point",
                ..
            }
        ),
        "{e}"
    );
    let e = verify_ek_cert(
        ecc_cert.der(),
        &store,
        Some(&rsa_ek_public(modulus(1))),
        at(2030),
    )
    .unwrap_err();
    assert!(
        matches!(
            &e,
            EkCertError::KeyMismatch {
                what: "key type",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn store_trusts_an_orphan_intermediate_and_rejects_empty_dirs() {
    let r = root("Vouch Test EK Root");
    let i = intermediate("Vendor EK CA 007", &r);
    let dir = tempfile::tempdir().unwrap();
    // Two certificates in one PEM file, one of them unrelated.
    let other = root("Unrelated Root");
    std::fs::write(
        dir.path().join("bundle.crt"),
        format!("{}{}", i.cert.pem(), other.cert.pem()),
    )
    .unwrap();
    let store = EkCaStore::from_dir(dir.path()).unwrap();
    let roles: Vec<CaRole> = store.entries().iter().map(|e| e.role).collect();
    assert_eq!(roles, vec![CaRole::OrphanIntermediate, CaRole::Root]);
    let cert = rsa_ek_cert(&i, &modulus(1), tcg_eku());
    assert_eq!(
        verify_ek_cert(&cert, &store, None, at(2030))
            .unwrap()
            .chain_len(),
        2
    );

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(
        empty.path().join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = EkCaStore::from_dir(empty.path()).unwrap_err();
    assert!(matches!(e, EkCertError::NoCerts { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("key.pem: no certificate in the file"),
        "{e}"
    );
    let e = EkCaStore::from_dir(empty.path().join("missing")).unwrap_err();
    assert!(matches!(e, EkCertError::Io { .. }), "{e}");
}
