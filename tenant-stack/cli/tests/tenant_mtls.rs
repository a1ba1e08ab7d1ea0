//! Agent mTLS end to end: `vouch agent add` (the binary) to a vouch-agent that serves its API
//! over mTLS with its own self-signed certificate (registered as `mtls_cert`); the tenant and
//! the verifier both reach it pinned to that certificate with their client certificates, and
//! the payload's `autorun.sh` runs without `enable_insecure_payload` (mTLS, as rust-keylime).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenant_env;

use tenant_env::*;
use vouch_core::api::registrar::AgentId;

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00042";

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

    let verifier = env.verifier_mtls().await;
    let v = verifier.endpoint();

    let payload = tempfile::tempdir().unwrap();
    std::fs::write(
        payload.path().join("autorun.sh"),
        "#!/bin/sh\necho ran > marker\n",
    )
    .unwrap();
    std::fs::write(payload.path().join("data.txt"), "payload for the node").unwrap();
    let at = format!("agent {ID} at https://");
    env.add_agent(
        &v,
        ID,
        &[
            "--payload",
            payload.path().to_str().unwrap(),
            "--tpm-policy",
            "{}",
        ],
        &[
            at.as_str(),
            "identity quote verified",
            "U delivered",
            "proved it holds the bootstrap key",
            "added",
        ],
    )
    .await;
    let unzipped = agent.secure().join("unzipped");
    assert_eq!(
        wait_for_file(&unzipped.join("data.txt")).await,
        b"payload for the node"
    );
    // autorun.sh ran although enable_insecure_payload is off: the API is mTLS-protected.
    assert_eq!(wait_for_file(&unzipped.join("marker")).await, b"ran\n");

    // The verifier polls it over mTLS.
    let s = env.wait_status(&v, ID, attesting).await;
    assert_eq!(s["attestation_status"], "PASS");
    verifier.verifier.shutdown().await.unwrap();
}
