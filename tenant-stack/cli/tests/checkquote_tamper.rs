//! Every tampered variant of a real tpm2-tools quote is refused by `vouch tpm checkquote`, each
//! with its own reason. The TPM work happens once (a shared fixture); each test mutates a copy.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches fail loudly
mod common;
use common::*;
use std::sync::OnceLock;

const NONCE: &str = "c0ffee0123";
const SEL: &str = "sha1:0,1+sha256:0,1,16";

struct Evidence {
    ak_pub: Vec<u8>,
    msg: Vec<u8>,
    sig: Vec<u8>,
    pcrs: Vec<u8>,
    other_ak_pub: Vec<u8>,
    certify_msg: Vec<u8>,
    certify_sig: Vec<u8>,
    unrestricted_pub: Vec<u8>,
    unrestricted_msg: Vec<u8>,
    unrestricted_sig: Vec<u8>,
    unrestricted_pcrs: Vec<u8>,
}

fn evidence() -> &'static Evidence {
    static E: OnceLock<Evidence> = OnceLock::new();
    E.get_or_init(|| {
        let lab = Lab::new();
        lab.make_ak("rsa", "rsa", "sha256", "rsassa");
        lab.quote(SEL, NONCE, &[]);
        // A certify attestation signed by the same AK.
        lab.tools(
            "tpm2_certify",
            &[
                "-C", "ak.ctx", "-c", "ak.ctx", "-g", "sha256", "-o", "c.msg", "-s", "c.sig",
            ],
        );
        lab.tools("tpm2_flushcontext", &["-t"]);
        // An unrestricted signing key: it could sign anything, including a forged TPMS_ATTEST.
        lab.tools("tpm2_createprimary", &["-C", "o", "-c", "prim.ctx"]);
        lab.tools("tpm2_flushcontext", &["-t"]);
        lab.tools(
            "tpm2_create",
            &[
                "-C",
                "prim.ctx",
                "-G",
                "rsa2048:rsassa:null",
                "-g",
                "sha256",
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
                "-u",
                "u.pub",
                "-r",
                "u.priv",
            ],
        );
        lab.tools("tpm2_flushcontext", &["-t"]);
        lab.tools(
            "tpm2_load",
            &[
                "-C", "prim.ctx", "-u", "u.pub", "-r", "u.priv", "-c", "u.ctx",
            ],
        );
        lab.tools("tpm2_flushcontext", &["-t"]);
        lab.tools(
            "tpm2_quote",
            &[
                "-c", "u.ctx", "-l", SEL, "-q", NONCE, "-m", "u.msg", "-s", "u.sig", "-o", "u.pcrs",
            ],
        );
        let other = Lab::new();
        other.make_ak("rsa", "rsa", "sha256", "rsassa");
        Evidence {
            ak_pub: lab.read("ak.pub"),
            msg: lab.read("q.msg"),
            sig: lab.read("q.sig"),
            pcrs: lab.read("q.pcrs"),
            other_ak_pub: other.read("ak.pub"),
            certify_msg: lab.read("c.msg"),
            certify_sig: lab.read("c.sig"),
            unrestricted_pub: lab.read("u.pub"),
            unrestricted_msg: lab.read("u.msg"),
            unrestricted_sig: lab.read("u.sig"),
            unrestricted_pcrs: lab.read("u.pcrs"),
        }
    })
}

/// Run checkquote on the given four files (no TPM needed) with a nonce and PCR list.
fn check(files: [&[u8]; 4], nonce: &str, pcr_list: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in ["ak.pub", "q.msg", "q.sig", "q.pcrs"].iter().zip(files) {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    std::process::Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args([
            "tpm",
            "checkquote",
            "--public",
            "ak.pub",
            "--message",
            "q.msg",
            "--signature",
            "q.sig",
            "--pcrs",
            "q.pcrs",
            "--qualification",
            nonce,
            "--pcr-list",
            pcr_list,
        ])
        .current_dir(dir.path())
        .output()
        .unwrap()
}

fn flip(data: &[u8], at: usize) -> Vec<u8> {
    let mut d = data.to_vec();
    d[at] ^= 0x01;
    d
}

fn truncate(data: &[u8]) -> Vec<u8> {
    data[..data.len() - 1].to_vec()
}

fn extend(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d.push(0);
    d
}

#[test]
fn untampered_evidence_is_accepted() {
    let e = evidence();
    assert_ok(&check([&e.ak_pub, &e.msg, &e.sig, &e.pcrs], NONCE, SEL));
}

// --- TPMS_ATTEST (q.msg) -----------------------------------------------------------------

#[test]
fn attest_magic_flipped() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &flip(&e.msg, 0), &e.sig, &e.pcrs], NONCE, SEL),
        "not TPM_GENERATED_VALUE",
    );
}

#[test]
fn attest_type_flipped() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &flip(&e.msg, 5), &e.sig, &e.pcrs], NONCE, SEL),
        "not a quote",
    );
}

#[test]
fn attest_clock_flipped_breaks_the_signature() {
    let e = evidence();
    // Past magic(4) type(2) signer(2+34) extraData(2+5): inside TPMS_CLOCK_INFO.clock.
    assert_rejected(
        &check([&e.ak_pub, &flip(&e.msg, 52), &e.sig, &e.pcrs], NONCE, SEL),
        "does not verify",
    );
}

#[test]
fn attest_pcr_digest_flipped() {
    let e = evidence();
    let last = e.msg.len() - 1;
    assert_rejected(
        &check(
            [&e.ak_pub, &flip(&e.msg, last), &e.sig, &e.pcrs],
            NONCE,
            SEL,
        ),
        "pcrDigest",
    );
}

#[test]
fn attest_truncated() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &truncate(&e.msg), &e.sig, &e.pcrs], NONCE, SEL),
        "truncated",
    );
}

#[test]
fn attest_extended() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &extend(&e.msg), &e.sig, &e.pcrs], NONCE, SEL),
        "trailing",
    );
}

// --- TPMT_SIGNATURE (q.sig) ----------------------------------------------------------------

#[test]
fn signature_body_flipped() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &flip(&e.sig, 100), &e.pcrs], NONCE, SEL),
        "does not verify",
    );
}

#[test]
fn signature_algorithm_flipped() {
    let e = evidence();
    // RSASSA 0x0014 → 0x0015 (RSAES is no signature scheme).
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &flip(&e.sig, 1), &e.pcrs], NONCE, SEL),
        "TPMT_SIGNATURE",
    );
}

#[test]
fn signature_hash_flipped() {
    let e = evidence();
    // sha256 0x000b → 0x000a: not a hash algorithm.
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &flip(&e.sig, 3), &e.pcrs], NONCE, SEL),
        "hash",
    );
}

#[test]
fn signature_truncated() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &truncate(&e.sig), &e.pcrs], NONCE, SEL),
        "truncated",
    );
}

#[test]
fn signature_extended() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &extend(&e.sig), &e.pcrs], NONCE, SEL),
        "trailing",
    );
}

// --- PCR file (q.pcrs) ----------------------------------------------------------------------

#[test]
fn pcr_value_altered() {
    let e = evidence();
    // First value of the first TPML_DIGEST block: offset 136 + count(4) + size(2).
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &e.sig, &flip(&e.pcrs, 142)], NONCE, SEL),
        "digest of the supplied PCR values",
    );
}

#[test]
fn pcr_file_truncated() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &e.sig, &truncate(&e.pcrs)], NONCE, SEL),
        "PCR file",
    );
}

#[test]
fn pcr_file_extended() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &e.sig, &extend(&e.pcrs)], NONCE, SEL),
        "PCR file",
    );
}

#[test]
fn pcr_file_selection_flipped() {
    let e = evidence();
    // The first bank's bitmap: PCR 0 deselected, so a quoted value is missing.
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &e.sig, &flip(&e.pcrs, 7)], NONCE, SEL),
        "PCR",
    );
}

// --- AK public area (ak.pub) -----------------------------------------------------------------

#[test]
fn ak_modulus_flipped() {
    let e = evidence();
    let last = e.ak_pub.len() - 1;
    assert_rejected(
        &check(
            [&flip(&e.ak_pub, last), &e.msg, &e.sig, &e.pcrs],
            NONCE,
            SEL,
        ),
        "does not verify",
    );
}

#[test]
fn ak_truncated() {
    let e = evidence();
    assert_rejected(
        &check([&truncate(&e.ak_pub), &e.msg, &e.sig, &e.pcrs], NONCE, SEL),
        "TPM2B_PUBLIC",
    );
}

#[test]
fn ak_extended() {
    let e = evidence();
    assert_rejected(
        &check([&extend(&e.ak_pub), &e.msg, &e.sig, &e.pcrs], NONCE, SEL),
        "trailing",
    );
}

#[test]
fn ak_restricted_bit_cleared() {
    let e = evidence();
    // objectAttributes at offset 2(size)+2(type)+2(nameAlg); restricted is bit 16 → byte 7, bit 0.
    assert_rejected(
        &check([&flip(&e.ak_pub, 7), &e.msg, &e.sig, &e.pcrs], NONCE, SEL),
        "not a restricted signing key",
    );
}

// --- Semantic attacks ----------------------------------------------------------------------

#[test]
fn wrong_nonce() {
    let e = evidence();
    assert_rejected(
        &check([&e.ak_pub, &e.msg, &e.sig, &e.pcrs], "c0ffee0124", SEL),
        "does not match the nonce",
    );
}

#[test]
fn wrong_ak() {
    let e = evidence();
    assert_rejected(
        &check([&e.other_ak_pub, &e.msg, &e.sig, &e.pcrs], NONCE, SEL),
        "does not verify",
    );
}

#[test]
fn certify_passed_as_quote() {
    let e = evidence();
    assert_rejected(
        &check(
            [&e.ak_pub, &e.certify_msg, &e.certify_sig, &e.pcrs],
            NONCE,
            SEL,
        ),
        "TPM_ST_ATTEST_CERTIFY, not a quote",
    );
}

#[test]
fn required_pcr_not_in_selection() {
    let e = evidence();
    assert_rejected(
        &check(
            [&e.ak_pub, &e.msg, &e.sig, &e.pcrs],
            NONCE,
            "sha256:0,1,16,23+sha384:0",
        ),
        "does not cover the required PCRs sha256:23+sha384:0",
    );
}

#[test]
fn quote_by_unrestricted_key() {
    let e = evidence();
    let files: [&[u8]; 4] = [
        &e.unrestricted_pub,
        &e.unrestricted_msg,
        &e.unrestricted_sig,
        &e.unrestricted_pcrs,
    ];
    assert_rejected(&check(files, NONCE, SEL), "not a restricted signing key");
}
