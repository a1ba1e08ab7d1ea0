//! `vouch tpm makecredential` (software, no TPM) → ActivateCredential on a real swtpm:
//! tpm2_activatecredential for RSA and ECC P-256 EKs, and vouch's own device layer
//! (`vouch tpm activatecredential`) for RSA, P-256 and P-384 EKs. A credential made for another
//! key's Name is refused by the TPM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly
mod common;
use common::*;

/// tpm2-tools' ActivateCredential with the EK policy session (PolicySecret(endorsement)).
fn tpm2_activate(lab: &Lab, cred: &str, out: &str) -> std::process::Output {
    lab.tools("tpm2_flushcontext", &["-t"]);
    lab.tools(
        "tpm2_startauthsession",
        &["--policy-session", "-S", "s.ctx"],
    );
    lab.tools("tpm2_policysecret", &["-S", "s.ctx", "-c", "e"]);
    let res = lab.tools_raw(
        "tpm2_activatecredential",
        &[
            "-c",
            "ak.ctx",
            "-C",
            "ek.ctx",
            "-i",
            cred,
            "-o",
            out,
            "-P",
            "session:s.ctx",
        ],
    );
    lab.tools("tpm2_flushcontext", &["s.ctx"]);
    lab.tools("tpm2_flushcontext", &["-t"]);
    res
}

fn makecredential(lab: &Lab, name_arg: &str, secret: &[u8]) {
    lab.write("secret", secret);
    assert_ok(&lab.vouch(&[
        "tpm",
        "makecredential",
        "--ek-public",
        "ek.pub",
        "--name",
        name_arg,
        "--secret",
        "secret",
        "--output",
        "cred.out",
    ]));
}

fn tpm2_tools_activate(ek_alg: &str, ak_alg: &str, scheme: &str) {
    let lab = Lab::new();
    lab.make_ak(ek_alg, ak_alg, "sha256", scheme);
    let secret = b"vouch enrollment secret 32 bytes";
    // The Name as the binary file tpm2_createak -n wrote...
    makecredential(&lab, "ak.name", secret);
    let out = tpm2_activate(&lab, "cred.out", "recovered");
    assert!(
        out.status.success(),
        "tpm2_activatecredential: {}",
        stderr(&out)
    );
    assert_eq!(lab.read("recovered"), secret);
    // ...and as hex on the command line.
    let hex_name = hex::encode(lab.read("ak.name"));
    makecredential(&lab, &hex_name, b"second secret");
    assert!(tpm2_activate(&lab, "cred.out", "recovered2")
        .status
        .success());
    assert_eq!(lab.read("recovered2"), b"second secret");
}

#[test]
fn rsa_ek_secret_recovered_by_tpm2_activatecredential() {
    tpm2_tools_activate("rsa", "rsa", "rsassa");
}

#[test]
fn ecc_p256_ek_secret_recovered_by_tpm2_activatecredential() {
    tpm2_tools_activate("ecc", "ecc", "ecdsa");
}

#[test]
fn credential_for_another_name_is_refused_by_the_tpm() {
    let lab = Lab::new();
    lab.make_ak("rsa", "rsa", "sha256", "rsassa");
    let mut name = lab.read("ak.name");
    let last = name.len() - 1;
    name[last] ^= 1;
    makecredential(&lab, &hex::encode(&name), b"not for you");
    let out = tpm2_activate(&lab, "cred.out", "recovered");
    assert!(
        !out.status.success(),
        "a credential bound to another Name must not activate"
    );
    assert!(!lab.path("recovered").exists() || lab.read("recovered") != b"not for you");
}

/// EK and AK made by vouch's device layer; the credential opened by it too.
fn vouch_activate(ek: &str) {
    let lab = Lab::new();
    assert_ok(&lab.vouch(&["tpm", "ek", "--algorithm", ek, "--public", "ek.pub"]));
    assert_ok(&lab.vouch(&[
        "tpm",
        "createak",
        "--ek",
        ek,
        "--algorithm",
        "ecc",
        "--public",
        "ak.pub",
        "--private",
        "ak.priv",
        "--name",
        "ak.name",
    ]));
    let secret = b"0123456789abcdef";
    makecredential(&lab, "ak.name", secret);
    let args = [
        "tpm",
        "activatecredential",
        "--ek",
        ek,
        "--ak-public",
        "ak.pub",
        "--ak-private",
        "ak.priv",
        "--credential",
        "cred.out",
        "--output",
        "recovered",
    ];
    assert_ok(&lab.vouch(&args));
    assert_eq!(lab.read("recovered"), secret);
    // The same credential for a tampered Name fails inside the TPM (TPM_RC_INTEGRITY).
    let mut name = lab.read("ak.name");
    name[5] ^= 0x80;
    makecredential(&lab, &hex::encode(&name), secret);
    assert_rejected(&lab.vouch(&args), "ActivateCredential");
}

#[test]
fn rsa_ek_secret_recovered_by_vouch() {
    vouch_activate("rsa");
}

#[test]
fn ecc_p256_ek_secret_recovered_by_vouch() {
    vouch_activate("ecc");
}

#[test]
fn ecc_p384_ek_secret_recovered_by_vouch() {
    vouch_activate("ecc-p384");
}

#[test]
fn makecredential_refuses_bad_input() {
    let lab = Lab::new();
    lab.make_ak("rsa", "rsa", "sha256", "rsassa");
    // A signing key is no EK: MakeCredential needs a restricted decryption key.
    lab.write("secret", b"s");
    let out = lab.vouch(&[
        "tpm",
        "makecredential",
        "--ek-public",
        "ak.pub",
        "--name",
        "ak.name",
        "--secret",
        "secret",
        "--output",
        "cred.out",
    ]);
    assert_rejected(&out, "restricted decryption key");
    // A secret longer than the EK name algorithm's digest.
    lab.write("secret", &[7u8; 33]);
    let out = lab.vouch(&[
        "tpm",
        "makecredential",
        "--ek-public",
        "ek.pub",
        "--name",
        "ak.name",
        "--secret",
        "secret",
        "--output",
        "cred.out",
    ]);
    assert_rejected(&out, "secret");
    // A Name whose digest length does not match its algorithm.
    lab.write("secret", b"s");
    let out = lab.vouch(&[
        "tpm",
        "makecredential",
        "--ek-public",
        "ek.pub",
        "--name",
        "000b0102",
        "--secret",
        "secret",
        "--output",
        "cred.out",
    ]);
    assert_rejected(&out, "TPM2B_NAME");
    assert!(!lab.path("cred.out").exists(), "nothing written on refusal");
}
