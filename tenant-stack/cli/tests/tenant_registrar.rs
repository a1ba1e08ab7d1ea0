//! `vouch agent regstatus|reglist|regdelete` (the binary) over the registrar's mTLS port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenant_env;

use tenant_env::*;

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00003";

async fn vouch(env: &Env, args: &[&str]) -> (bool, String, String) {
    env.vouch("127.0.0.1:1", args).await
}

async fn vouch_with_tls(env: &Env, tls: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    env.vouch_with_tls("127.0.0.1:1", tls, args).await
}

#[tokio::test]
async fn regstatus_reglist_regdelete_over_mtls() {
    let env = Env::start().await;
    let agent = env.agent(None, ID).await;

    let (ok, out, err) = vouch(&env, &["agent", "reglist"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), ID);

    let (ok, out, err) = vouch(&env, &["agent", "regstatus", "--uuid", ID]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v[ID];
    assert_eq!(r["operational_state"], "Registered");
    assert_eq!(r["port"], agent.addr().port());
    assert_eq!(r["mtls_cert"], "disabled");
    assert!(r["aik_tpm"].as_str().unwrap().len() > 100);
    assert!(r["ekcert"].is_string());

    // A TLS directory from another CA: the CLI refuses the registrar's certificate.
    let other = tempfile::tempdir().unwrap();
    let ca = vouch_tls::Ca::create(other.path(), "other").unwrap();
    ca.issue_client("mallory").unwrap();
    let (ok, _, err) = vouch_with_tls(&env, other.path(), &["agent", "reglist"]).await;
    assert!(!ok);
    assert!(err.contains("registrar at https://"), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    // The right CA but another CA's client certificate: the registrar refuses the client.
    let mixed = tempfile::tempdir().unwrap();
    std::fs::copy(
        env.tls.path().join("cacert.crt"),
        mixed.path().join("cacert.crt"),
    )
    .unwrap();
    for f in ["client-cert.crt", "client-private.pem"] {
        std::fs::copy(other.path().join(f), mixed.path().join(f)).unwrap();
    }
    let (ok, _, err) = vouch_with_tls(&env, mixed.path(), &["agent", "reglist"]).await;
    assert!(!ok);
    assert!(err.contains("received fatal alert"), "{err}");

    let (ok, _, err) = vouch(&env, &["agent", "regdelete", "--uuid", ID]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = vouch(&env, &["agent", "regstatus", "--uuid", ID]).await;
    assert!(!ok);
    assert!(err.contains("registrar answered 404"), "{err}");
}
