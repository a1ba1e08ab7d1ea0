//! `vouch policy runtime create|check`: policies from files and from an IMA log, loaded by
//! upstream keylime 7.14.3's own validator (the one its verifier runs on every add).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use vouch_core::ima::testlog::LogWriter;

fn vouch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(args)
        .output()
        .unwrap()
}

fn python() -> String {
    std::env::var("VOUCH_KEYLIME_PYTHON")
        .unwrap_or_else(|_| "/opt/vouch/keylime-venv/bin/python3".into())
}

#[test]
fn create_from_files_and_log_and_upstream_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("tool");
    std::fs::write(&bin, b"#!/bin/sh\necho hi\n").unwrap();
    let mut log = LogWriter::new();
    log.boot_aggregate(&[7u8; 32]);
    let bash = log.file("/usr/bin/bash", b"bash");
    let log_path = dir.path().join("ima.log");
    std::fs::write(&log_path, log.text()).unwrap();
    let out_path = dir.path().join("policy.json");

    let out = vouch(&[
        "policy",
        "runtime",
        "create",
        "--file",
        bin.to_str().unwrap(),
        "--ima-log",
        log_path.to_str().unwrap(),
        "--exclude",
        "/tmp/.*",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    let tool_digest = hex::encode(vouch_core::tpm::HashAlg::Sha256.digest(b"#!/bin/sh\necho hi\n"));
    assert_eq!(
        policy["digests"][bin.to_str().unwrap()],
        serde_json::json!([tool_digest])
    );
    assert_eq!(
        policy["digests"]["/usr/bin/bash"],
        serde_json::json!([bash.digest_hex()])
    );
    assert!(policy["digests"]["boot_aggregate"].is_array());
    assert_eq!(policy["excludes"], serde_json::json!(["/tmp/.*"]));

    let out = vouch(&["policy", "runtime", "check", out_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Upstream's validator (schema + regexes), as its verifier applies it on add.
    let script = "import sys\nfrom keylime.ima import ima\n\
                  p = open(sys.argv[1], 'rb').read()\n\
                  ima.verify_runtime_policy(p, None, verify_sig=False)\n\
                  d = ima.runtime_policy_db_contents('t', p.decode())\n\
                  print('ok', sorted(d))\n";
    let out = Command::new(python())
        .args(["-c", script, out_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upstream refused the policy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok"));
}

#[test]
fn bad_inputs_are_refused_clearly() {
    let out = vouch(&["policy", "runtime", "create"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to put in the policy"));
    let out = vouch(&["policy", "runtime", "create", "--file", "/nonexistent/x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"excludes": ["(?<=a)b"]}"#).unwrap();
    let out = vouch(&["policy", "runtime", "check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json"), "{err}");
    let garbage = dir.path().join("log");
    std::fs::write(&garbage, "10 zz ima-ng\n").unwrap();
    let out = vouch(&[
        "policy",
        "runtime",
        "create",
        "--ima-log",
        garbage.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
}
