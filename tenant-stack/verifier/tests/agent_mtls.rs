//! Agent mTLS (docs/keylime-wire.md §7): vouch-agents with their own self-signed certificates,
//! requiring client certificates from the test CA; the verifier polls them over HTTPS pinned to
//! the registered `mtls_cert`, and refuses an agent presenting another certificate. With
//! `enable_agent_mtls` on (here; the harness turns it off), adds without a PEM `mtls_cert` are
//! refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::Duration;
use vouch_agent::RunningAgent;
use vouch_registrar::server::Registrar;
use vouch_testkit::Swtpm;
use vouch_tls::{Ca, Identity, ServerNameCheck, TlsDir};

const GET_QUOTE: u64 = 3;
const FAILED: u64 = 7;
const T: Duration = Duration::from_secs(30);

/// [`verifier_config`] with agent mTLS on (the default, turned off by the harness).
fn mtls_verifier_config(tls: &std::path::Path, state: &std::path::Path) -> vouch_verifier::Config {
    vouch_verifier::Config {
        enable_agent_mtls: true,
        ..verifier_config(tls, state)
    }
}

struct MtlsAgent {
    _swtpm: Swtpm,
    agent: RunningAgent,
    aik_tpm: String,
    cert: String,
    _state: tempfile::TempDir,
}

async fn mtls_agent(registrar: &Registrar, uuid: &str, tls: &std::path::Path) -> MtlsAgent {
    let swtpm = Swtpm::start().unwrap();
    let state = tempdir();
    let url = format!("http://{}", registrar.http_addr());
    let mut config = agent_config(&swtpm, &url, uuid, state.path());
    config.trusted_client_ca = TlsDir::new(tls).ca_cert();
    let agent = vouch_agent::start(config).await.unwrap();
    let cert = agent.mtls_cert().expect("mTLS on").to_owned();
    let (code, rec) = get_json(&format!("{url}/v2.6/agents/{uuid}")).await;
    assert_eq!(code, 200, "{rec}");
    // Enrollment registered the agent's own certificate.
    assert_eq!(rec["results"]["mtls_cert"].as_str(), Some(cert.as_str()));
    MtlsAgent {
        _swtpm: swtpm,
        agent,
        aik_tpm: rec["results"]["aik_tpm"].as_str().unwrap().to_owned(),
        cert,
        _state: state,
    }
}

/// A client trusting only `cert` (as verifier and tenant do), presenting `identity` if any.
fn pinned_client(cert: &str, identity: Option<&Identity>) -> reqwest::Client {
    let roots = vouch_tls::roots_from_pem(cert, "mtls_cert").unwrap();
    let tls = vouch_tls::client_config(roots, identity, ServerNameCheck::ChainOnly).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out = format!("{out}: {s}");
        src = s.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_polls_mtls_agent_and_refuses_a_swapped_certificate() {
    let reg_tpm = Swtpm::start().unwrap();
    let reg_state = tempdir();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let tls = tempdir();
    make_tls(tls.path());
    let a = mtls_agent(&registrar, "mtls-agent-a", tls.path()).await;
    let b = mtls_agent(&registrar, "mtls-agent-b", tls.path()).await;
    assert_ne!(a.cert, b.cert);
    assert!(a.cert.starts_with("-----BEGIN CERTIFICATE-----"));
    let a_url = format!("https://{}/version", a.agent.local_addr());

    // The agent's API: the CA's client certificate gets in ...
    let dir = TlsDir::new(tls.path());
    let client = dir.client();
    let ours = Identity::load(&client.cert, &client.key).unwrap();
    let r = pinned_client(&a.cert, Some(&ours))
        .get(&a_url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // ... a client without a certificate does not ...
    let e = pinned_client(&a.cert, None)
        .get(&a_url)
        .send()
        .await
        .unwrap_err();
    eprintln!("no client cert: {}", chain(&e));
    // ... nor one whose certificate another CA issued ...
    let foreign_dir = tempdir();
    let foreign = Ca::create(foreign_dir.path(), "foreign CA").unwrap();
    let files = foreign.issue_client("intruder").unwrap();
    let intruder = Identity::load(&files.cert, &files.key).unwrap();
    let e = pinned_client(&a.cert, Some(&intruder))
        .get(&a_url)
        .send()
        .await
        .unwrap_err();
    eprintln!("foreign client cert: {}", chain(&e));
    // ... and a client pinned to B's certificate refuses A.
    let e = pinned_client(&b.cert, Some(&ours))
        .get(&a_url)
        .send()
        .await
        .unwrap_err();
    assert!(
        chain(&e).contains("invalid peer certificate"),
        "{}",
        chain(&e)
    );
    // Upstream's own client context (`web_util.generate_tls_context`, as
    // `generate_agent_tls_context` builds it: the registered cert as an extra CA, our client
    // cert) accepts the agent's non-CA self-signed certificate.
    upstream_get_version(&a.cert, tls.path(), &a_url);
    // Plain HTTP to an mTLS agent gets nowhere either.
    assert!(
        reqwest::get(format!("http://{}/version", a.agent.local_addr()))
            .await
            .is_err()
    );

    let state = tempdir();
    let v = TestVerifier::start(&mtls_verifier_config(tls.path(), state.path())).await;
    // A, with its own certificate: polled over mTLS.
    let mut body = add_body(
        a.agent.local_addr().port(),
        &a.aik_tpm,
        None,
        "{\"mask\": \"0x0\"}",
    );
    body["mtls_cert"] = a.cert.clone().into();
    assert_eq!(v.add("mtls-agent-a", body).await.0, 200);
    v.wait_for("mtls-agent-a", T, |s| {
        s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(2)
    })
    .await;
    // B's address, but A's certificate stored as its mtls_cert: B's handshake fails.
    let mut body = add_body(
        b.agent.local_addr().port(),
        &b.aik_tpm,
        None,
        "{\"mask\": \"0x0\"}",
    );
    body["mtls_cert"] = a.cert.clone().into();
    assert_eq!(v.add("mtls-agent-b", body).await.0, 200);
    let st = v.wait_state("mtls-agent-b", FAILED, T).await;
    assert_eq!(st["last_event_id"], "agent.mtls");
    let reason = st["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("the agent's certificate is not its registered mtls_cert"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "https://127.0.0.1:{}",
            b.agent.local_addr().port()
        )),
        "{reason}"
    );
    // A is unaffected.
    assert_eq!(
        v.status("mtls-agent-a").await.1["results"]["operational_state"],
        GET_QUOTE
    );

    v.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
    b.agent.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}

/// As upstream: with `enable_agent_mtls` on, an add whose `mtls_cert` is absent/null or
/// "disabled" is refused (400 "mTLS certificate for agent is required!") and nothing is stored,
/// instead of the agent being polled over plain HTTP; the same agent with its certificate is
/// added and attested over mTLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_mtls_on_refuses_an_add_without_mtls_cert() {
    let registrar = TestRegistrar::start().await;
    let tls = tempdir();
    make_tls(tls.path());
    let a = mtls_agent(&registrar, "mtls-agent-c", tls.path()).await;
    let state = tempdir();
    let v = TestVerifier::start(&mtls_verifier_config(tls.path(), state.path())).await;
    let body = add_body(
        a.agent.local_addr().port(),
        &a.aik_tpm,
        None,
        "{\"mask\": \"0x0\"}",
    );

    let mut absent = body.clone();
    absent.as_object_mut().unwrap().remove("mtls_cert");
    for (what, refused) in [("absent", absent), ("\"disabled\"", body.clone())] {
        let (code, r) = v.add("mtls-agent-c", refused).await;
        assert_eq!(code, 400, "mtls_cert {what}: {r}");
        let msg = r["status"].as_str().unwrap();
        assert!(
            msg.starts_with("mTLS certificate for agent is required!"),
            "{msg}"
        );
        assert!(
            msg.contains("or set enable_agent_mtls = false on the verifier"),
            "{msg}"
        );
        // Nothing stored.
        assert_eq!(v.status("mtls-agent-c").await.0, 404, "mtls_cert {what}");
        let (code, list) = v.send(reqwest::Method::GET, "/v2.6/agents/", None).await;
        assert_eq!(code, 200);
        assert_eq!(list["results"]["uuids"], serde_json::json!([]), "{list}");
    }

    let mut with_cert = body;
    with_cert["mtls_cert"] = a.cert.clone().into();
    let (code, r) = v.add("mtls-agent-c", with_cert).await;
    assert_eq!(code, 200, "{r}");
    v.wait_for("mtls-agent-c", T, |s| {
        s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(1)
    })
    .await;

    v.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
}

const UPSTREAM_CLIENT: &str = r#"
import sys, os, tempfile, urllib.request
from keylime import web_util
cert_pem, tls, url = sys.argv[1], sys.argv[2], sys.argv[3]
d = tempfile.mkdtemp()
agent_crt = os.path.join(d, "agent.crt")
open(agent_crt, "w").write(cert_pem)
ctx = web_util.generate_tls_context(
    os.path.join(tls, "client-cert.crt"), os.path.join(tls, "client-private.pem"),
    [os.path.join(tls, "cacert.crt"), agent_crt], is_client=True)
print(urllib.request.urlopen(url, context=ctx, timeout=10).read().decode())
"#;

fn upstream_get_version(cert: &str, tls: &std::path::Path, url: &str) {
    let python = std::env::var("VOUCH_KEYLIME_PYTHON")
        .unwrap_or_else(|_| "/opt/vouch/keylime-venv/bin/python3".into());
    let out = std::process::Command::new(python)
        .args(["-c", UPSTREAM_CLIENT, cert, tls.to_str().unwrap(), url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("supported_version"),
        "upstream client: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
