//! `vouch policy runtime create|check`: policies from files and from an IMA log, loaded by
//! upstream keylime 7.14.3's own validator (the one its verifier runs on every add). And the
//! policy fields `vouch agent add` sends, against upstream's tenant (`process_policy`) for the
//! same arguments.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use vouch_cli::tenant::{MbPolicyFile, Policies, RuntimePolicyFile};
use vouch_core::api::verifier::TpmPolicy;
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

/// Upstream's `keylime/cli/policies.py:process_policy` for these tenant arguments: the policy
/// fields `keylime_tenant` sends, or its error output.
fn upstream_process_policy(args: &serde_json::Value) -> Result<serde_json::Value, String> {
    let script = "import json, sys\n\
                  from keylime.cli import policies\n\
                  from keylime.mba import mba\n\
                  mba.load_imports(skip_custom_policies=True)\n\
                  a = dict(tpm_policy=None, mask=None, ima_sign_verification_keys=[], \
                  allowlist=None, allowlist_name=None, ima_exclude=None, runtime_policy=None, \
                  runtime_policy_name=None, runtime_policy_sig_key=None, \
                  runtime_policy_checksum=None, mb_policy=None, mb_policy_name=None)\n\
                  a.update(json.loads(sys.argv[1]))\n\
                  t = policies.process_policy(a)\n\
                  print(json.dumps(dict(tpm_policy=t[0], mb_policy=t[1], mb_policy_name=t[2], \
                  runtime_policy_name=t[3], runtime_policy=t[5], runtime_policy_key=t[6])))\n";
    let out = Command::new(python())
        .args(["-c", script, &args.to_string()])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn agent_add_policy_fields_match_upstream_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = vouch_core::ima::PolicyBuilder::new();
    b.add_digest("/usr/bin/bash", &"ab".repeat(32)).unwrap();
    let rt = dir.path().join("runtime.json");
    std::fs::write(&rt, b.build(None).unwrap().to_json()).unwrap();
    let mb = dir.path().join("refstate.json");
    std::fs::write(&mb, "{\"has_secureboot\": false,\n \"kernels\": []}\n").unwrap();
    let (rt_s, mb_s) = (rt.to_str().unwrap(), mb.to_str().unwrap());
    let pin = |pcr: u8| format!(r#"{{"{pcr}": ["{}"]}}"#, "0".repeat(64));

    // (tpm_policy, runtime policy file, its name, refstate file, its name)
    type Case<'a> = (
        String,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        ("{}".into(), Some(rt_s), None, None, None),
        (pin(23), None, Some("prod"), None, None),
        (pin(23), Some(rt_s), Some("prod"), Some(mb_s), Some("boot")),
        (pin(15), None, None, None, Some("boot")),
        ("{}".into(), None, None, Some(mb_s), None),
        // Refused by both: a measured-boot PCR pinned next to a refstate.
        (pin(15), None, None, Some(mb_s), None),
    ];
    for (tpm, rt_file, rt_name, mb_file, mb_name) in cases {
        let args = serde_json::json!({
            "tpm_policy": tpm,
            "runtime_policy": rt_file,
            "runtime_policy_name": rt_name,
            "mb_policy": mb_file,
            "mb_policy_name": mb_name,
        });
        let upstream = upstream_process_policy(&args);
        let ours = Policies::new(
            TpmPolicy::parse(&tpm).unwrap(),
            rt_file.map(|p| RuntimePolicyFile::load(p.as_ref(), "--runtime-policy").unwrap()),
            rt_name.map(str::to_owned),
            mb_file.map(|p| MbPolicyFile::load(p.as_ref()).unwrap()),
            mb_name.map(str::to_owned),
        );
        let (upstream, ours) = match (upstream, ours) {
            (Ok(u), Ok(o)) => (u, o.fields()),
            (Err(_), Err(e)) => {
                assert!(e.to_string().contains("pins PCR 15"), "{e}");
                continue;
            }
            (u, o) => panic!("{args}: upstream {u:?}, ours {o:?}"),
        };
        let ours_tpm: serde_json::Value = serde_json::from_str(&ours.tpm_policy).unwrap();
        assert_eq!(ours_tpm, upstream["tpm_policy"], "{args}");
        assert_eq!(ours.runtime_policy, upstream["runtime_policy"], "{args}");
        assert_eq!(
            ours.runtime_policy_key, upstream["runtime_policy_key"],
            "{args}"
        );
        assert_eq!(
            ours.runtime_policy_name, upstream["runtime_policy_name"],
            "{args}"
        );
        assert_eq!(
            serde_json::json!(ours.mb_policy),
            upstream["mb_policy"],
            "{args}"
        );
        assert_eq!(ours.mb_policy_name, upstream["mb_policy_name"], "{args}");
    }
}
