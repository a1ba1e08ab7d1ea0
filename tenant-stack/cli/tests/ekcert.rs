//! `vouch tpm ek` reads the EK and its certificate from a real swtpm; `vouch tpm
//! verify-ek-cert` accepts it against the swtpm's own CA and refuses it against another CA, a
//! self-signed certificate, and a certificate for a different key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly
mod common;
use common::*;

fn ca_dir(lab: &Lab) -> String {
    lab.tpm.ca_dir().display().to_string()
}

#[test]
fn swtpm_rsa_and_p384_ek_certificates_verify() {
    let lab = Lab::new();
    for alg in ["rsa", "ecc-p384"] {
        let (public, cert) = (format!("ek-{alg}.pub"), format!("ek-{alg}.der"));
        assert_ok(&lab.vouch(&[
            "tpm",
            "ek",
            "--algorithm",
            alg,
            "--public",
            &public,
            "--cert",
            &cert,
        ]));
        let out = lab.vouch(&[
            "tpm",
            "verify-ek-cert",
            "--cert",
            &cert,
            "--ca-dir",
            &ca_dir(&lab),
            "--ek-public",
            &public,
        ]);
        assert_ok(&out);
        let text = stdout(&out);
        assert!(text.contains("EK certificate OK"), "{text}");
        assert!(
            text.contains("model swtpm"),
            "TCG SAN attributes extracted: {text}"
        );
        assert!(text.contains("matches the EK public area"), "{text}");
    }
    // The RSA certificate's key is not the P-384 EK.
    let out = lab.vouch(&[
        "tpm",
        "verify-ek-cert",
        "--cert",
        "ek-rsa.der",
        "--ca-dir",
        &ca_dir(&lab),
        "--ek-public",
        "ek-ecc-p384.pub",
    ]);
    assert_rejected(&out, "key type");
}

#[test]
fn no_certificate_for_p256_ek_is_a_clear_error() {
    let lab = Lab::new();
    let out = lab.vouch(&[
        "tpm",
        "ek",
        "--algorithm",
        "ecc",
        "--public",
        "ek.pub",
        "--cert",
        "ek.der",
    ]);
    assert_rejected(&out, "no EK certificate");
}

#[test]
fn certificate_from_another_tpm_vendor_ca_is_refused() {
    let lab = Lab::new();
    assert_ok(&lab.vouch(&["tpm", "ek", "--public", "ek.pub", "--cert", "ek.der"]));
    // A different swtpm has a different private CA.
    let other = vouch_testkit::Swtpm::start_fresh().unwrap();
    let out = lab.vouch(&[
        "tpm",
        "verify-ek-cert",
        "--cert",
        "ek.der",
        "--ca-dir",
        &other.ca_dir().display().to_string(),
    ]);
    assert_rejected(&out, "does not chain to any CA");
}

#[test]
fn self_signed_ek_certificate_is_refused() {
    let lab = Lab::new();
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "self.pem",
            "-days",
            "30",
            "-subj",
            "/CN=forged EK",
        ])
        .current_dir(lab.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    let out = lab.vouch(&[
        "tpm",
        "verify-ek-cert",
        "--cert",
        "self.pem",
        "--ca-dir",
        &ca_dir(&lab),
    ]);
    assert_rejected(&out, "self-signed");
}

#[test]
fn garbage_and_missing_inputs_are_clear_errors() {
    let lab = Lab::new();
    lab.write("junk.der", b"\x30\x03\x02\x01");
    assert_rejected(
        &lab.vouch(&[
            "tpm",
            "verify-ek-cert",
            "--cert",
            "junk.der",
            "--ca-dir",
            &ca_dir(&lab),
        ]),
        "junk.der",
    );
    assert_rejected(
        &lab.vouch(&[
            "tpm",
            "verify-ek-cert",
            "--cert",
            "nope.der",
            "--ca-dir",
            &ca_dir(&lab),
        ]),
        "cannot read",
    );
    assert_ok(&lab.vouch(&["tpm", "ek", "--public", "ek.pub", "--cert", "ek.der"]));
    let empty = tempfile::tempdir().unwrap();
    assert_rejected(
        &lab.vouch(&[
            "tpm",
            "verify-ek-cert",
            "--cert",
            "ek.der",
            "--ca-dir",
            &empty.path().display().to_string(),
        ]),
        "no usable CA",
    );
}
