//! tpm2_quote (tpm2-tools 5.4 on a real swtpm) → `vouch tpm checkquote`, for RSA, RSA-PSS and
//! ECC AKs over sha1/sha256/sha384 banks; and `vouch tpm quote` → tpm2_checkquote.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches fail loudly
mod common;
use common::*;

const NONCE: &str = "0badc0de5eed";

fn check(lab: &Lab, public: &str, pcr_list: &str) -> std::process::Output {
    lab.vouch(&[
        "tpm",
        "checkquote",
        "--public",
        public,
        "--message",
        "q.msg",
        "--signature",
        "q.sig",
        "--pcrs",
        "q.pcrs",
        "--qualification",
        NONCE,
        "--pcr-list",
        pcr_list,
    ])
}

fn accepts(ak_alg: &str, hash: &str, scheme: &str, quote_extra: &[&str]) {
    let lab = Lab::new();
    lab.make_ak("rsa", ak_alg, hash, scheme);
    let sel = "sha1:0,1,2+sha256:0,1,16,23+sha384:0,7";
    lab.quote(sel, NONCE, quote_extra);
    for public in ["ak.pub", "ak.pem"] {
        let out = check(&lab, public, sel);
        assert_ok(&out);
        let text = stdout(&out);
        assert!(text.contains("verified: quote signed by"), "{text}");
        for bank in ["sha1:", "sha256:", "sha384:"] {
            assert!(text.contains(bank), "{bank} missing in {text}");
        }
        if public == "ak.pem" {
            assert!(
                stderr(&out).contains("were not checked"),
                "PEM keys carry no TPM attributes"
            );
        }
    }
    // The printed PCR values are the TPM's: compare one against tpm2_pcrread.
    let pcr = lab.tools("tpm2_pcrread", &["sha256:16"]);
    let want = String::from_utf8_lossy(&pcr.stdout)
        .split("0x")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert!(stdout(&check(&lab, "ak.pub", sel)).contains(&format!("16 : 0x{want}")));
}

#[test]
fn rsassa_sha256_quote_is_accepted() {
    accepts("rsa", "sha256", "rsassa", &[]);
}

#[test]
fn rsapss_quote_is_accepted() {
    // tpm2_checkquote rejects these (it verifies every RSA signature as PKCS#1 v1.5).
    accepts("rsa", "sha256", "rsapss", &["--scheme", "rsapss"]);
}

#[test]
fn rsassa_sha384_quote_is_accepted() {
    accepts("rsa", "sha384", "rsassa", &["-g", "sha384"]);
}

#[test]
fn ecdsa_p256_quote_is_accepted() {
    accepts("ecc", "sha256", "ecdsa", &[]);
}

#[test]
fn tpm2_checkquote_rejects_the_rsapss_quote_vouch_accepts() {
    // Documents the upstream tool's bug that the issue calls out, on the same files.
    let lab = Lab::new();
    lab.make_ak("rsa", "rsa", "sha256", "rsapss");
    lab.quote("sha256:0,1", NONCE, &["--scheme", "rsapss"]);
    assert_ok(&check(&lab, "ak.pub", "sha256:0,1"));
    let theirs = lab.tools_raw(
        "tpm2_checkquote",
        &[
            "-u", "ak.pem", "-m", "q.msg", "-s", "q.sig", "-f", "q.pcrs", "-g", "sha256", "-q",
            NONCE,
        ],
    );
    assert!(
        !theirs.status.success(),
        "tpm2_checkquote now accepts RSA-PSS: update this note"
    );
}

#[test]
fn vouch_quote_is_accepted_by_tpm2_checkquote() {
    let lab = Lab::new();
    assert_ok(&lab.vouch(&["tpm", "ek", "--public", "ek.pub"]));
    assert_ok(&lab.vouch(&[
        "tpm",
        "createak",
        "--public",
        "ak.pub",
        "--private",
        "ak.priv",
        "--name",
        "ak.name",
    ]));
    let sel = "sha1:0,1+sha256:0,1,2,3,16";
    assert_ok(&lab.vouch(&[
        "tpm",
        "quote",
        "--ak-public",
        "ak.pub",
        "--ak-private",
        "ak.priv",
        "--pcr-list",
        sel,
        "--qualification",
        NONCE,
        "--message",
        "q.msg",
        "--signature",
        "q.sig",
        "--pcrs",
        "q.pcrs",
    ]));
    // tpm2_checkquote wants the key as PEM.
    let shown = lab.vouch(&[
        "tpm",
        "readpublic",
        "--public",
        "ak.pub",
        "--format",
        "pem",
        "--output",
        "ak.pem",
    ]);
    assert_ok(&shown);
    assert!(
        stdout(&shown).contains("restricted: true, sign: true"),
        "{}",
        stdout(&shown)
    );
    lab.tools(
        "tpm2_checkquote",
        &[
            "-u", "ak.pem", "-m", "q.msg", "-s", "q.sig", "-f", "q.pcrs", "-g", "sha256", "-q",
            NONCE,
        ],
    );
    // And by vouch itself, with the AK's attributes checked.
    let out = check(&lab, "ak.pub", sel);
    assert_ok(&out);
    // The Name vouch wrote is the TPM's Name of the AK public area it wrote.
    let name = lab.read("ak.name");
    assert_eq!(
        name,
        vouch_core::tpm::Public::from_tpm2b(&lab.read("ak.pub"))
            .unwrap()
            .name()
            .0
    );
}
