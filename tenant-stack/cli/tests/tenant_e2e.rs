//! End to end with every part real: `vouch agent add` (the binary) → vouch-registrar (mTLS) →
//! vouch-agent on swtpm → vouch-verifier (mTLS), which polls the agent and sends V; the
//! tenant's key check passes; `vouch agent status|list|reactivate|delete` then talk to the verifier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenant_env;

use std::process::Command;
use std::time::{Duration, Instant};
use tenant_env::*;
use vouch_verifier::{Config as VerifierConfig, Verifier};

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00004";

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
async fn add_then_verifier_attests_and_status_shows_it() {
    let env = Env::start().await;
    let agent = env.agent(None, ID).await;
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

    let payload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(payload.path(), "payload for the node").unwrap();
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
    eprintln!("{out}");
    for want in [
        "identity quote verified",
        "U delivered",
        "verifier",
        "proved it holds the bootstrap key",
        "added",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert_eq!(
        wait_for_file(&agent.secure().join("unzipped").join("decrypted_payload")).await,
        b"payload for the node"
    );

    // The verifier keeps attesting it.
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
    let (ok, out, _) = vouch(&env, &v, &["agent", "list"]).await;
    assert!(ok);
    assert_eq!(out.trim(), ID);
    let (ok, _, err) = vouch(&env, &v, &["agent", "reactivate", "--uuid", ID]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = vouch(&env, &v, &["agent", "delete", "--uuid", ID]).await;
    assert!(ok, "{err}");
    assert!(out.contains("deleted"), "{out}");
    let (ok, _, err) = vouch(&env, &v, &["agent", "status", "--uuid", ID]).await;
    assert!(!ok);
    assert!(err.contains("verifier answered 404"), "{err}");
    verifier.shutdown().await.unwrap();
}
