//! Agent mTLS end to end: `vouch agent add` (the binary) to a vouch-agent that serves its API
//! over mTLS with its own self-signed certificate (registered as `mtls_cert`); the tenant and
//! the verifier both reach it pinned to that certificate with their client certificates, and
//! the payload's `autorun.sh` runs without `enable_insecure_payload` (mTLS, as rust-keylime).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenant_env;

use std::process::Command;
use std::time::{Duration, Instant};
use tenant_env::*;
use vouch_core::api::registrar::AgentId;
use vouch_verifier::{Config as VerifierConfig, Verifier};

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00042";

async fn vouch(env: &Env, verifier: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vouch"));
    cmd.args(args)
        .env("VOUCH_REGISTRAR", env.registrar_endpoint())
        .env("VOUCH_VERIFIER", verifier)
        .env("VOUCH_TLS_DIR", env.tls.path())
        .env("VOUCH_EK_CA_DIR", env.swtpm.ca_dir());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_over_agent_mtls_end_to_end() {
    let env = Env::start().await;
    let agent = env.agent_mtls(None, ID).await;
    let cert = agent.agent.mtls_cert().expect("mTLS on").to_owned();
    let record = env
        .tenant()
        .registrar_record(&AgentId::parse(ID).unwrap())
        .await
        .unwrap();
    assert_eq!(record.mtls_cert.as_deref(), Some(cert.as_str()));

    let vstate = tempfile::tempdir().unwrap();
    let verifier = Verifier::start(&VerifierConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_dir: env.tls.path().to_path_buf(),
        state_dir: vstate.path().to_path_buf(),
        quote_interval: 0.5,
        ..VerifierConfig::default()
    })
    .await
    .unwrap();
    let v = verifier.local_addr().to_string();

    let payload = tempfile::tempdir().unwrap();
    std::fs::write(
        payload.path().join("autorun.sh"),
        "#!/bin/sh\necho ran > marker\n",
    )
    .unwrap();
    std::fs::write(payload.path().join("data.txt"), "payload for the node").unwrap();
    let (ok, out, err) = vouch(
        &env,
        &v,
        &[
            "agent",
            "add",
            "--uuid",
            ID,
            "--payload",
            payload.path().to_str().unwrap(),
            "--tpm-policy",
            "{}",
        ],
    )
    .await;
    assert!(ok, "add failed:\n{out}\n{err}");
    let at = format!("agent {ID} at https://");
    for want in [
        at.as_str(),
        "identity quote verified",
        "U delivered",
        "proved it holds the bootstrap key",
        "added",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    let unzipped = agent.secure().join("unzipped");
    assert_eq!(
        wait_for_file(&unzipped.join("data.txt")).await,
        b"payload for the node"
    );
    // autorun.sh ran although enable_insecure_payload is off: the API is mTLS-protected.
    assert_eq!(wait_for_file(&unzipped.join("marker")).await, b"ran\n");

    // The verifier polls it over mTLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = vouch(&env, &v, &["agent", "status", "--uuid", ID]).await;
        assert!(ok, "{err}");
        let s: serde_json::Value = serde_json::from_str(&out).unwrap();
        if s[ID]["operational_state"] == "Get Quote"
            && s[ID]["attestation_count"].as_u64() > Some(1)
        {
            assert_eq!(s[ID]["attestation_status"], "PASS");
            break;
        }
        assert!(Instant::now() < deadline, "not attesting: {out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    verifier.shutdown().await.unwrap();
}
