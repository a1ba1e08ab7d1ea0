//! End to end with every part real: `vouch agent add` (the binary) → vouch-registrar (mTLS) →
//! vouch-agent on swtpm → vouch-verifier (mTLS), which polls the agent and sends V; the
//! tenant's key check passes; `vouch agent status|list|reactivate|delete` then talk to the
//! verifier. Also `--cert`: the agent unpacks the software CA's certificate package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenant_env;

use tenant_env::*;

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00004";
const CERT_ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00005";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_then_verifier_attests_and_status_shows_it() {
    let env = Env::start().await;
    let agent = env.agent(None, ID).await;
    let verifier = env.verifier().await;
    let v = verifier.endpoint();

    let payload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(payload.path(), "payload for the node").unwrap();
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
            "identity quote verified",
            "U delivered",
            "verifier",
            "no runtime or measured-boot policy",
            "proved it holds the bootstrap key",
            "added",
        ],
    )
    .await;
    assert_eq!(
        wait_for_file(&agent.secure().join("unzipped").join("decrypted_payload")).await,
        b"payload for the node"
    );

    // The verifier keeps attesting it.
    let s = env.wait_status(&v, ID, attesting).await;
    assert_eq!(s["attestation_status"], "PASS");
    let (ok, out, _) = env.vouch(&v, &["agent", "list"]).await;
    assert!(ok);
    assert_eq!(out.trim(), ID);
    let (ok, _, err) = env.vouch(&v, &["agent", "reactivate", "--uuid", ID]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = env.vouch(&v, &["agent", "delete", "--uuid", ID]).await;
    assert!(ok, "{err}");
    assert!(out.contains("deleted"), "{out}");
    let (ok, _, err) = env.vouch(&v, &["agent", "status", "--uuid", ID]).await;
    assert!(!ok);
    assert!(err.contains("verifier answered 404"), "{err}");
    verifier.verifier.shutdown().await.unwrap();
}

/// Upstream's `keylime_tenant --cert CA_DIR --include DIR`: `vouch ca init` makes the CA, `add`
/// issues the node's certificate and delivers the package; the agent unpacks it (and runs the
/// included `autorun.sh`), and the verifier holds the certificate's serial and subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_with_cert_delivers_the_certificate_package() {
    let env = Env::start().await;
    let agent = env.agent(None, CERT_ID).await;
    let verifier = env.verifier().await;
    let v = verifier.endpoint();

    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let ca_arg = ca.to_str().unwrap();
    let (ok, _, err) = env.vouch(&v, &["ca", "init", "--dir", ca_arg]).await;
    assert!(ok, "{err}");
    let include = tmp.path().join("include");
    std::fs::create_dir(&include).unwrap();
    std::fs::write(include.join("action_list"), "local_action_update_crl\n").unwrap();
    std::fs::write(
        include.join("autorun.sh"),
        "#!/bin/sh\necho ran > autorun.out\n",
    )
    .unwrap();

    env.add_agent(
        &v,
        CERT_ID,
        &["--cert", ca_arg, "--include", include.to_str().unwrap()],
        &[
            "certificate package for",
            "with action_list, autorun.sh",
            "RevocationNotifier key",
            "proved it holds the bootstrap key",
        ],
    )
    .await;

    // The agent unpacked exactly what `vouch ca pkg` puts in a package, plus --include.
    let unzipped = agent.secure().join("unzipped");
    assert_eq!(wait_for_file(&unzipped.join("autorun.out")).await, b"ran\n");
    let node_cert = format!("{CERT_ID}-cert.crt");
    let node_key = format!("{CERT_ID}-private.pem");
    let node_pub = format!("{CERT_ID}-public.pem");
    for (name, from) in [
        (node_cert.as_str(), ca.join(&node_cert)),
        (node_key.as_str(), ca.join(&node_key)),
        (node_pub.as_str(), ca.join(&node_pub)),
        ("cacert.crt", ca.join("cacert.crt")),
        ("cacrl.der", ca.join("cacrl.der")),
        ("cacrl.pem", ca.join("cacrl.pem")),
        (
            "RevocationNotifier-cert.crt",
            ca.join("RevocationNotifier-cert.crt"),
        ),
        ("action_list", include.join("action_list")),
        ("autorun.sh", include.join("autorun.sh")),
    ] {
        assert_eq!(
            std::fs::read(unzipped.join(name)).unwrap(),
            std::fs::read(&from).unwrap(),
            "{name}"
        );
    }
    assert!(
        !unzipped.join("RevocationNotifier-private.pem").exists(),
        "the notifier's key goes to the verifier only"
    );

    // The verifier holds what it revokes on a failure, and attests the agent.
    let s = env.wait_status(&v, CERT_ID, attesting).await;
    let meta: serde_json::Value = serde_json::from_str(s["meta_data"].as_str().unwrap()).unwrap();
    assert_eq!(meta["cert_serial"], 2, "{meta}");
    assert!(
        meta["subject"]
            .as_str()
            .unwrap()
            .contains(&format!("CN={CERT_ID}")),
        "{meta}"
    );
    verifier.verifier.shutdown().await.unwrap();
}
