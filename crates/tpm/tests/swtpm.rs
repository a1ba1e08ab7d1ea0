//! vouch-tpm against a real swtpm (vouch-testkit). Timings go to stderr (`--nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use std::process::Command;
use std::time::Instant;
use vouch_core::tpm::{HashAlg, PublicKey};
use vouch_testkit::Swtpm;
use vouch_tpm::{Ak, AkKind, EkKind, NvAccess, Tcti, Tpm, TpmHandle};

fn open(swtpm: &Swtpm) -> TpmHandle {
    Tpm::open(&swtpm.tcti().parse::<Tcti>().unwrap()).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Verify a quote's TPMT_SIGNATURE over the attest bytes with the AK's public key.
fn verify_signature(ak: &Ak, attest: &[u8], sig: &[u8]) {
    let alg = u16::from_be_bytes([sig[0], sig[1]]);
    let hash = u16::from_be_bytes([sig[2], sig[3]]);
    assert_eq!(hash, HashAlg::Sha256.id());
    let field = |at: usize| {
        let n = usize::from(u16::from_be_bytes([sig[at], sig[at + 1]]));
        (&sig[at + 2..at + 2 + n], at + 2 + n)
    };
    match &ak.public.key {
        PublicKey::Rsa {
            modulus, exponent, ..
        } => {
            assert_eq!(alg, 0x0014, "RSASSA");
            let (s, end) = field(4);
            assert_eq!(end, sig.len());
            let e = PublicKey::rsa_exponent(*exponent).to_be_bytes();
            let e: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
            RsaPublicKeyComponents {
                n: modulus.as_slice(),
                e: e.as_slice(),
            }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, attest, s)
            .expect("RSA quote signature verifies");
        }
        PublicKey::Ecc { x, y, .. } => {
            assert_eq!(alg, 0x0018, "ECDSA");
            let (r, next) = field(4);
            let (s, end) = field(next);
            assert_eq!(end, sig.len());
            let pad = |v: &[u8]| {
                let mut out = vec![0u8; 32 - v.len()];
                out.extend_from_slice(v);
                out
            };
            let mut point = vec![4u8];
            point.extend(pad(x));
            point.extend(pad(y));
            let mut rs = pad(r);
            rs.extend(pad(s));
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(attest, &rs)
                .expect("ECDSA quote signature verifies");
        }
    }
}

#[tokio::test]
async fn ek_certificates() {
    let swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm);

    let ek = tpm.create_ek(EkKind::Rsa2048).await.unwrap();
    assert_eq!(ek.describe(), "RSA-2048");
    let cert = tpm
        .read_ek_cert(EkKind::Rsa2048)
        .await
        .unwrap()
        .expect("RSA EK cert");
    assert_eq!(cert[0], 0x30);
    assert!(cert.len() > 500, "{} bytes", cert.len());
    let PublicKey::Rsa { modulus, .. } = &ek.key else {
        panic!("not RSA")
    };
    assert!(
        contains(&cert, modulus),
        "RSA EK cert is for the template EK"
    );

    // swtpm_setup certifies a P-384 EK (high range), not a P-256 one.
    let p256 = tpm.create_ek(EkKind::EccP256).await.unwrap();
    assert_eq!(p256.describe(), "ECC NIST P-256");
    assert_eq!(tpm.read_ek_cert(EkKind::EccP256).await.unwrap(), None);
    let p384 = tpm.create_ek(EkKind::EccP384).await.unwrap();
    let cert = tpm
        .read_ek_cert(EkKind::EccP384)
        .await
        .unwrap()
        .expect("P-384 EK cert");
    let PublicKey::Ecc { x, .. } = &p384.key else {
        panic!("not ECC")
    };
    assert!(
        contains(&cert, x),
        "P-384 EK cert is for the H-3 template EK"
    );

    // Deterministic templates: the same key again.
    assert_eq!(tpm.create_ek(EkKind::Rsa2048).await.unwrap(), ek);
}

async fn ak_and_quote(kind: AkKind, parent: EkKind, label: &str) {
    let swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm);
    tpm.create_ek(parent).await.unwrap();

    let t = Instant::now();
    let ak = tpm.create_ak(parent, kind, HashAlg::Sha256).await.unwrap();
    eprintln!("{label}: create_ak {:?}", t.elapsed());
    assert!(ak.public.attributes.restricted() && ak.public.attributes.sign());
    assert_eq!(ak.name, ak.public.name());

    let nonce = b"vouch-nonce-0123456789";
    let selection = [
        (HashAlg::Sha1, (0..24).collect::<Vec<u8>>()),
        (HashAlg::Sha256, vec![16, 0, 10, 1]),
    ];
    let q = tpm.quote(&ak, nonce, &selection).await.unwrap();
    assert_eq!(
        &q.attest[..4],
        &[0xff, 0x54, 0x43, 0x47],
        "TPM_GENERATED_VALUE"
    );
    assert!(contains(&q.attest, nonce));
    assert_eq!(q.pcrs.len(), 28);
    assert_eq!(q.pcrs[0].0, HashAlg::Sha1);
    let sha256: Vec<u8> = q.pcrs[24..]
        .iter()
        .map(|(b, i, _)| {
            assert_eq!(*b, HashAlg::Sha256);
            *i
        })
        .collect();
    assert_eq!(sha256, [0, 1, 10, 16]);
    verify_signature(&ak, &q.attest, &q.signature);

    let rounds = 50;
    let t = Instant::now();
    for _ in 0..rounds {
        tpm.quote(
            &ak,
            nonce,
            &[(HashAlg::Sha256, vec![0, 1, 2, 3, 4, 5, 6, 7, 10])],
        )
        .await
        .unwrap();
    }
    eprintln!(
        "{label}: quote (9 sha256 PCRs, incl. PCR read-back) {:?} each",
        t.elapsed() / rounds
    );

    // A second AK evicts the resident one; the first reloads from its blobs.
    let other = tpm
        .create_ak(parent, AkKind::EccP256, HashAlg::Sha256)
        .await
        .unwrap();
    tpm.quote(&other, b"x", &[(HashAlg::Sha256, vec![0])])
        .await
        .unwrap();
    let t = Instant::now();
    let q = tpm
        .quote(&ak, b"y", &[(HashAlg::Sha256, vec![0])])
        .await
        .unwrap();
    eprintln!("{label}: quote after reloading the AK {:?}", t.elapsed());
    verify_signature(&ak, &q.attest, &q.signature);
}

#[tokio::test]
async fn rsa_ak_quote() {
    ak_and_quote(AkKind::Rsa2048, EkKind::Rsa2048, "RSA AK").await;
}

#[tokio::test]
async fn ecc_ak_quote() {
    ak_and_quote(AkKind::EccP256, EkKind::Rsa2048, "ECC AK").await;
}

#[tokio::test]
async fn ak_under_ecc_eks() {
    let swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm);
    for parent in [EkKind::EccP256, EkKind::EccP384] {
        let ak = tpm
            .create_ak(parent, AkKind::EccP256, HashAlg::Sha256)
            .await
            .unwrap();
        let q = tpm
            .quote(&ak, b"n", &[(HashAlg::Sha384, vec![0, 23])])
            .await
            .unwrap();
        verify_signature(&ak, &q.attest, &q.signature);
    }
}

/// `tpm2_makecredential -T none` output: u32 0xBADCC0DE, u32 1, TPM2B_ID_OBJECT,
/// TPM2B_ENCRYPTED_SECRET. Returns the two TPM2B contents.
fn make_credential(
    dir: &std::path::Path,
    ek: &vouch_core::tpm::Public,
    name: &[u8],
    secret: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    std::fs::write(dir.join("ek.pub"), ek.to_tpm2b()).unwrap();
    std::fs::write(dir.join("secret"), secret).unwrap();
    let out = Command::new("tpm2_makecredential")
        .current_dir(dir)
        .args([
            "-T", "none", "-e", "ek.pub", "-s", "secret", "-o", "cred.out", "-n",
        ])
        .arg(hex::encode(name))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = std::fs::read(dir.join("cred.out")).unwrap();
    assert_eq!(&b[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    let n = usize::from(u16::from_be_bytes([b[8], b[9]]));
    let id = b[10..10 + n].to_vec();
    let m = usize::from(u16::from_be_bytes([b[10 + n], b[11 + n]]));
    let enc = b[12 + n..12 + n + m].to_vec();
    assert_eq!(12 + n + m, b.len());
    (id, enc)
}

#[tokio::test]
async fn activate_credential_from_tpm2_makecredential() {
    let swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm);
    let ek = tpm.create_ek(EkKind::Rsa2048).await.unwrap();
    let ak = tpm
        .create_ak(EkKind::Rsa2048, AkKind::Rsa2048, HashAlg::Sha256)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = b"0123456789abcdef0123456789abcdef";
    let (id, enc) = make_credential(dir.path(), &ek, ak.name.as_bytes(), secret);
    let t = Instant::now();
    let got = tpm.activate_credential(&ak, &id, &enc).await.unwrap();
    eprintln!("activate_credential {:?}", t.elapsed());
    assert_eq!(got, secret);

    // A credential for another name fails with a TPM error, and the TPM keeps working.
    let mut other_name = vec![0x00, 0x0b];
    other_name.extend([7u8; 32]);
    let (id, enc) = make_credential(dir.path(), &ek, &other_name, secret);
    let err = tpm.activate_credential(&ak, &id, &enc).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("TPM command ActivateCredential failed: TPM_RC_"),
        "{msg}"
    );
    eprintln!("wrong credential: {msg}");
    let (id, enc) = make_credential(dir.path(), &ek, ak.name.as_bytes(), b"again");
    assert_eq!(
        tpm.activate_credential(&ak, &id, &enc).await.unwrap(),
        b"again"
    );
}

#[tokio::test]
async fn nv_define_write_read_undefine() {
    let swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm);
    let index = 0x0150_0010;
    for access in [NvAccess::Owner, NvAccess::Index] {
        assert_eq!(tpm.nv_read(index).await.unwrap(), None);
        tpm.nv_define(index, 32, access).await.unwrap();
        let share = [0x5au8; 32];
        tpm.nv_write(index, &share).await.unwrap();
        assert_eq!(tpm.nv_read(index).await.unwrap().unwrap(), share);
        let err = tpm.nv_define(index, 32, access).await.unwrap_err();
        assert!(err.to_string().contains("TPM_RC_NV_DEFINED"), "{err}");
        tpm.nv_undefine(index).await.unwrap();
    }
    let err = tpm.nv_write(index, &[1]).await.unwrap_err();
    assert!(err.to_string().contains("not defined"), "{err}");
}

#[tokio::test]
async fn pcr_extend_then_read() {
    let swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm);
    let before = tpm.pcr_read_one(HashAlg::Sha256, 16).await.unwrap();
    assert_eq!(before, vec![0u8; 32]);
    let d256 = HashAlg::Sha256.digest(b"event");
    let d1 = HashAlg::Sha1.digest(b"event");
    tpm.pcr_extend(
        16,
        &[(HashAlg::Sha256, d256.clone()), (HashAlg::Sha1, d1.clone())],
    )
    .await
    .unwrap();
    let after = tpm
        .pcr_read(&[(HashAlg::Sha256, vec![16]), (HashAlg::Sha1, vec![16])])
        .await
        .unwrap();
    assert_eq!(
        after[0],
        (
            HashAlg::Sha256,
            16,
            HashAlg::Sha256.digest_parts(&[&before, &d256])
        )
    );
    assert_eq!(
        after[1],
        (
            HashAlg::Sha1,
            16,
            HashAlg::Sha1.digest_parts(&[&[0u8; 20], &d1])
        )
    );
    let err = tpm
        .pcr_extend(16, &[(HashAlg::Sha256, vec![1, 2, 3])])
        .await
        .unwrap_err();
    assert!(matches!(err, vouch_tpm::TpmError::InvalidArgument(_)));
}

#[tokio::test]
async fn pcr_reset_resettable_and_not() {
    let swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm);
    let d = HashAlg::Sha256.digest(b"nk");
    tpm.pcr_extend(16, &[(HashAlg::Sha256, d.clone())])
        .await
        .unwrap();
    assert_ne!(
        tpm.pcr_read_one(HashAlg::Sha256, 16).await.unwrap(),
        vec![0u8; 32]
    );
    tpm.pcr_reset(16).await.unwrap();
    // Every bank is reset.
    assert_eq!(
        tpm.pcr_read_one(HashAlg::Sha256, 16).await.unwrap(),
        vec![0u8; 32]
    );
    assert_eq!(
        tpm.pcr_read_one(HashAlg::Sha1, 16).await.unwrap(),
        vec![0u8; 20]
    );
    // Reset then one extend: the value keylime expects for PCR 16.
    tpm.pcr_extend(16, &[(HashAlg::Sha256, d.clone())])
        .await
        .unwrap();
    assert_eq!(
        tpm.pcr_read_one(HashAlg::Sha256, 16).await.unwrap(),
        HashAlg::Sha256.digest_parts(&[&[0u8; 32], &d])
    );
    // PCR 0 is not resettable at locality 0.
    let err = tpm.pcr_reset(0).await.unwrap_err();
    assert!(err.to_string().contains("PCR_Reset"), "{err}");
    let err = tpm.pcr_reset(24).await.unwrap_err();
    assert!(matches!(err, vouch_tpm::TpmError::InvalidArgument(_)));
}

#[test]
fn blocking_api_and_clones_across_threads() {
    let swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm).blocking();
    let ak = tpm
        .create_ak(EkKind::Rsa2048, AkKind::EccP256, HashAlg::Sha256)
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (tpm, ak) = (tpm.clone(), ak.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let q = tpm.quote(&ak, &[i], &[(HashAlg::Sha256, vec![0])]).unwrap();
                    assert!(contains(&q.attest, &[i]));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn connection_errors_name_the_tcti() {
    let err = Tpm::open(&"swtpm:host=127.0.0.1,port=1".parse::<Tcti>().unwrap()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("swtpm:host=127.0.0.1,port=1"), "{msg}");
    eprintln!("connect error: {msg}");
}

#[tokio::test]
async fn survives_a_reboot() {
    let mut swtpm = Swtpm::start().unwrap();
    let tpm = open(&swtpm);
    let ak = tpm
        .create_ak(EkKind::Rsa2048, AkKind::EccP256, HashAlg::Sha256)
        .await
        .unwrap();
    tpm.pcr_extend(16, &[(HashAlg::Sha256, vec![1; 32])])
        .await
        .unwrap();
    drop(tpm);
    swtpm.restart().unwrap();
    let tpm = open(&swtpm);
    assert_eq!(
        tpm.pcr_read_one(HashAlg::Sha256, 16).await.unwrap(),
        vec![0; 32]
    );
    let q = tpm
        .quote(&ak, b"after reboot", &[(HashAlg::Sha256, vec![16])])
        .await
        .unwrap();
    verify_signature(&ak, &q.attest, &q.signature);
}
