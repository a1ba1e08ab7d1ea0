//! Runtime integrity end to end: a vouch-agent serves an IMA log whose entries the test extends
//! into its swtpm's PCR 10 exactly as the kernel would; the verifier replays the log
//! incrementally against each quote and judges it by an upstream-format runtime policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vouch_core::ima::testlog::{LogWriter, Logged};
use vouch_core::ima::{LogImport, PolicyBuilder};
use vouch_core::tpm::HashAlg;

const GET_QUOTE: u64 = 3;
const INVALID_QUOTE: u64 = 9;
const T: Duration = Duration::from_secs(30);
/// PCR 10 only (bit 10).
const IMA_MASK_POLICY: &str = r#"{"mask": "0x400"}"#;

/// The kernel's part: append the line to the log file, extend PCR 10 of the agent's TPM.
async fn measure(a: &TestAgent, log: &Path, logged: &Logged) {
    a.agent
        .tpm()
        .pcr_extend(
            10,
            &[(HashAlg::Sha256, logged.extend_value(HashAlg::Sha256))],
        )
        .await
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(f, "{}", logged.line).unwrap();
}

async fn start_agent(
    registrar: &vouch_registrar::server::Registrar,
    uuid: &str,
) -> (TestAgent, PathBuf, tempfile::TempDir) {
    let dir = tempdir();
    let log = dir.path().join("ascii_runtime_measurements");
    let l = log.clone();
    let a = TestAgent::start_with(registrar, uuid, move |c| c.ima_ml_path = l).await;
    (a, log, dir)
}

fn policy_b64(log: &LogWriter, also: &[(&str, &[u8])]) -> String {
    let mut b = PolicyBuilder::new();
    b.add_ima_log(&log.text(), LogImport::default()).unwrap();
    for (path, content) in also {
        b.add_digest(
            path,
            &hex::encode(vouch_core::tpm::HashAlg::Sha256.digest(content)),
        )
        .unwrap();
    }
    b64(b.build(None).unwrap().to_json().as_bytes())
}

fn add_body_ima(a: &TestAgent, runtime_policy: &str, name: &str) -> Value {
    let mut body = add_body(a.port(), &a.aik_tpm, None, IMA_MASK_POLICY);
    body["runtime_policy"] = json!(runtime_policy);
    body["runtime_policy_name"] = json!(name);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ima_entries_are_replayed_incrementally_and_a_file_outside_the_policy_fails() {
    let registrar = TestRegistrar::start().await;
    let (a, log_path, _dir) = start_agent(&registrar, "ima-e2e").await;

    // Boot: boot_aggregate and two programs, measured before the tenant adds the node.
    let mut log = LogWriter::new();
    let boot = log.boot_aggregate(&[0x11; 32]);
    measure(&a, &log_path, &boot).await;
    for (p, c) in [
        ("/usr/bin/bash", &b"bash"[..]),
        ("/usr/lib/libc.so.6", b"libc"),
    ] {
        let e = log.file(p, c);
        measure(&a, &log_path, &e).await;
    }
    let policy = policy_b64(&log, &[("/usr/bin/allowed", b"allowed")]);

    let v = TestVerifier::fresh(|_| {}).await;
    let (code, resp) = v.add(&a.uuid, add_body_ima(&a, &policy, "")).await;
    assert_eq!(code, 200, "{resp}");
    let st = v
        .wait_for(&a.uuid, T, |s| {
            s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(2)
        })
        .await;
    assert_eq!(st["has_runtime_policy"], 1);
    // The policy was stored under the agent's id (upstream's rule for a nameless policy).
    let (code, names) = v.send(Method::GET, "/v2.6/allowlists/", None).await;
    assert_eq!(code, 200);
    assert_eq!(names["results"]["runtimepolicy names"], json!(["ima-e2e"]));

    // An allowed program runs: still passing.
    let ok = log.file("/usr/bin/allowed", b"allowed");
    measure(&a, &log_path, &ok).await;
    let before = v.status(&a.uuid).await.1["results"]["attestation_count"]
        .as_u64()
        .unwrap();
    v.wait_for(&a.uuid, T, |s| {
        s["attestation_count"].as_u64() >= Some(before + 2)
    })
    .await;
    assert_eq!(
        v.status(&a.uuid).await.1["results"]["operational_state"],
        GET_QUOTE
    );

    // An unknown program runs: Invalid Quote, naming it.
    let evil = log.file("/usr/bin/evil", b"rootkit");
    measure(&a, &log_path, &evil).await;
    let st = v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    assert_eq!(st["last_event_id"], "ima.runtime_policy", "{st}");
    let reason = st["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("IMA entry 4")
            && reason.contains("/usr/bin/evil is not in the runtime policy"),
        "{reason}"
    );

    // A policy in use cannot be deleted.
    let (code, body) = v
        .send(Method::DELETE, "/v2.6/allowlists/ima-e2e", None)
        .await;
    assert_eq!(code, 409, "{body}");

    // Reactivating without a fix fails again on the same entry: nothing was forgotten.
    let reactivate = format!("/v2.6/agents/{}/reactivate", a.uuid);
    let (code, body) = v.send(Method::PUT, &reactivate, None).await;
    assert_eq!(code, 200, "{body}");
    let st = v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    assert!(
        st["failure_reason"]
            .as_str()
            .unwrap()
            .contains("/usr/bin/evil is not in the runtime policy"),
        "{st}"
    );

    // The tenant decides the program is legitimate: the policy is replaced and the node
    // reactivated; the log is replayed from entry 0 against the new policy and attests again.
    let fixed = policy_b64(&log, &[("/usr/bin/allowed", b"allowed")]);
    let body = json!({"runtime_policy": fixed, "runtime_policy_key": "", "tpm_policy": "{}"});
    let (code, resp) = v
        .send(Method::PUT, "/v2.6/allowlists/ima-e2e", Some(body))
        .await;
    assert_eq!(code, 201, "{resp}");
    let (code, body) = v.send(Method::PUT, &reactivate, None).await;
    assert_eq!(code, 200, "{body}");
    let st = v
        .wait_for(&a.uuid, T, |s| {
            s["operational_state"] == GET_QUOTE && s["last_event_id"].is_null()
        })
        .await;
    assert!(st["failure_reason"].is_null(), "{st}");
    a.agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn digest_mismatch_and_a_log_that_does_not_match_pcr_10_fail() {
    let registrar = TestRegistrar::start().await;
    let v = TestVerifier::fresh(|_| {}).await;

    // (1) An allowed path with other content.
    let (a, log_path, _d1) = start_agent(&registrar, "ima-digest").await;
    let mut log = LogWriter::new();
    let boot = log.boot_aggregate(&[0x22; 32]);
    measure(&a, &log_path, &boot).await;
    let policy = policy_b64(&log, &[("/usr/bin/ls", b"the real ls")]);
    let (code, _) = v.add(&a.uuid, add_body_ima(&a, &policy, "")).await;
    assert_eq!(code, 200);
    v.wait_for(&a.uuid, T, |s| s["attestation_count"].as_u64() >= Some(1))
        .await;
    let trojan = log.file("/usr/bin/ls", b"a trojaned ls");
    measure(&a, &log_path, &trojan).await;
    let st = v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    assert_eq!(st["last_event_id"], "ima.runtime_policy", "{st}");
    assert!(
        st["failure_reason"]
            .as_str()
            .unwrap()
            .contains("/usr/bin/ls"),
        "{st}"
    );
    a.agent.shutdown().await.unwrap();

    // (2) A log line written without the PCR 10 extend (a forged log): PCR 10 mismatch.
    let (b, log_path, _d2) = start_agent(&registrar, "ima-forged").await;
    let mut log = LogWriter::new();
    let boot = log.boot_aggregate(&[0x33; 32]);
    measure(&b, &log_path, &boot).await;
    let policy = policy_b64(&log, &[("/usr/bin/ok", b"ok")]);
    let (code, _) = v.add(&b.uuid, add_body_ima(&b, &policy, "")).await;
    assert_eq!(code, 200);
    v.wait_for(&b.uuid, T, |s| s["attestation_count"].as_u64() >= Some(1))
        .await;
    let fake = log.file("/usr/bin/ok", b"not what ran");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    writeln!(f, "{}", fake.line).unwrap();
    drop(f);
    // Then a real measurement: the log now has one entry PCR 10 never saw.
    let real = log.file("/usr/bin/ok", b"ok");
    assert_ne!(fake.line, real.line);
    measure(&b, &log_path, &real).await;
    let st = v.wait_state(&b.uuid, INVALID_QUOTE, T).await;
    assert_eq!(st["last_event_id"], "ima.pcr10_mismatch", "{st}");
    b.agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlists_api_as_upstream_and_bad_policies_change_nothing() {
    let v = TestVerifier::fresh(|_| {}).await;
    let mut log = LogWriter::new();
    log.boot_aggregate(&[0x44; 32]);
    let good = policy_b64(&log, &[]);
    let body = json!({"runtime_policy": good, "runtime_policy_key": "", "tpm_policy": "{}"});

    let (code, r) = v
        .send(Method::POST, "/v2.6/allowlists/p1", Some(body.clone()))
        .await;
    assert_eq!(code, 201, "{r}");
    let (code, r) = v
        .send(Method::POST, "/v2.6/allowlists/p1", Some(body.clone()))
        .await;
    assert_eq!(code, 409, "{r}");
    assert!(
        r["status"].as_str().unwrap().contains("already exists"),
        "{r}"
    );
    let (code, r) = v.send(Method::GET, "/v2.6/allowlists/p1", None).await;
    assert_eq!(code, 200);
    assert_eq!(r["results"]["name"], "p1");
    let shown: Value =
        serde_json::from_str(r["results"]["runtime_policy"].as_str().unwrap()).unwrap();
    assert!(shown["digests"]["boot_aggregate"].is_array(), "{shown}");
    let (code, _) = v
        .send(Method::PUT, "/v2.6/allowlists/p1", Some(body.clone()))
        .await;
    assert_eq!(code, 201);
    let (code, r) = v
        .send(Method::PUT, "/v2.6/allowlists/nope", Some(body.clone()))
        .await;
    assert_eq!(code, 404, "{r}");

    // Malformed policies: refused, nothing stored or replaced.
    for (bad, why) in [
        (json!({"runtime_policy": "%%%"}), "base64"),
        (
            json!({"runtime_policy": b64(b"{\"meta\": 5}")}),
            "malformatted",
        ),
        (
            json!({"runtime_policy": b64(b"{\"excludes\": [\"(?=x)\"]}")}),
            "malformatted",
        ),
        (
            json!({"runtime_policy": good, "runtime_policy_key": "abc"}),
            "signed runtime policies",
        ),
        (json!({"nope": 1}), "runtime_policy"),
    ] {
        let (code, r) = v
            .send(Method::POST, "/v2.6/allowlists/p2", Some(bad.clone()))
            .await;
        assert_eq!(code, 400, "{bad} → {r}");
        assert!(r["status"].as_str().unwrap().contains(why), "{bad} → {r}");
        let (code, r) = v
            .send(Method::PUT, "/v2.6/allowlists/p1", Some(bad.clone()))
            .await;
        assert_eq!(code, 400, "{bad} → {r}");
    }
    let (_, r) = v.send(Method::GET, "/v2.6/allowlists/", None).await;
    assert_eq!(r["results"]["runtimepolicy names"], json!(["p1"]));
    let (_, r) = v.send(Method::GET, "/v2.6/allowlists/p1", None).await;
    assert!(r["results"]["runtime_policy"]
        .as_str()
        .unwrap()
        .contains("boot_aggregate"));

    // An agent naming a missing policy: 404, nothing stored.
    let mut add = add_body(9, "AAAA", None, IMA_MASK_POLICY);
    add["runtime_policy_name"] = json!("missing");
    let (code, r) = v.add("agent-x", add).await;
    assert!(code == 404 || code == 400, "{r}");
    let (code, _) = v.status("agent-x").await;
    assert_eq!(code, 404);

    let (code, _) = v.send(Method::DELETE, "/v2.6/allowlists/p1", None).await;
    assert_eq!(code, 204);
    let (code, _) = v.send(Method::GET, "/v2.6/allowlists/p1", None).await;
    assert_eq!(code, 404);
}
