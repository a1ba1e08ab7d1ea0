//! Revocation end to end (paper §3.4): vouch-registrar, swtpm-backed vouch-agents, a software
//! CA, the verifier and a local webhook receiver. Agents get a `--cert`-style payload (the
//! CA's certificate package with an `action_list`); when one fails attestation the verifier
//! signs a notice with the RevocationNotifier key, delivers it to the webhook (retried) and to
//! the other agents, whose action runs, and revokes the failed node's certificate in the CRL.
//! Replayed and forged notices are refused; a dead webhook delays nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vouch_core::api::agent::UkeyRequest;
use vouch_core::keylime::{auth_tag, encrypt_payload, encrypt_share_to_nk, BootstrapKey};
use vouch_core::revocation::{parse_notice, verify_notice, RevocationNotice};
use vouch_registrar::server::Registrar;
use vouch_tls::software_ca::{CertPackage, SoftwareCa, REVOCATION_NOTIFIER};

const GET_QUOTE: u64 = 3;
const INVALID_QUOTE: u64 = 9;
const T: Duration = Duration::from_secs(30);
/// The payload's revocation action: copies the notice's JSON message next to the test.
const ACTION: &str = "write_marker";

/// Records every body; answers 503 to the first `fail_first` requests.
#[derive(Clone)]
struct Webhook {
    bodies: Arc<Mutex<Vec<(u16, Bytes)>>>,
    fail_first: usize,
}

async fn webhook(State(w): State<Webhook>, body: Bytes) -> StatusCode {
    let mut bodies = w.bodies.lock().unwrap();
    let code = if bodies.len() < w.fail_first {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    bodies.push((code.as_u16(), body));
    code
}

async fn start_webhook(fail_first: usize) -> (String, Arc<Mutex<Vec<(u16, Bytes)>>>) {
    let w = Webhook {
        bodies: Arc::new(Mutex::new(Vec::new())),
        fail_first,
    };
    let bodies = w.bodies.clone();
    let app = axum::Router::new()
        .route("/revocation", post(webhook))
        .with_state(w);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}/revocation"), bodies)
}

/// An agent whose payload may run revocation actions (no mTLS here, so that needs
/// `enable_insecure_payload`, as `autorun.sh` does), with no installed actions.
async fn start_agent(registrar: &Registrar, uuid: &str, scratch: &Path) -> TestAgent {
    let actions_dir = scratch.join("no-installed-actions");
    TestAgent::start_with(registrar, uuid, |c| {
        c.enable_insecure_payload = true;
        c.revocation_actions_dir = actions_dir;
    })
    .await
}

fn marker(scratch: &Path, uuid: &str) -> PathBuf {
    scratch.join(format!("{uuid}.revocation.json"))
}

/// The certificate package for `a` (as `vouch agent add --cert CA --include DIR` builds it),
/// with an action_list naming a script that copies the notice message to `marker`.
fn package(ca: &SoftwareCa, a: &TestAgent, scratch: &Path) -> CertPackage {
    let script = format!(
        "#!/bin/sh\ncp \"$1\" '{}'\n",
        marker(scratch, &a.uuid).display()
    );
    ca.cert_package(
        &a.uuid,
        &[
            ("action_list".into(), format!("{ACTION}\n").into_bytes()),
            (ACTION.into(), script.into_bytes()),
        ],
    )
    .unwrap()
}

/// Tenant: U and the encrypted package to the agent, V with `revocation_key` and `metadata`
/// to the verifier (what `tenant.py --cert` sends).
async fn add_with_cert(v: &TestVerifier, a: &TestAgent, pkg: &CertPackage) {
    let k = BootstrapKey::generate().unwrap();
    let (u, vshare) = k.split().unwrap();
    let body = UkeyRequest {
        encrypted_key: encrypt_share_to_nk(a.agent.nk_pem(), &u)
            .unwrap()
            .to_base64(),
        auth_tag: auth_tag(&k, &a.uuid).to_hex(),
        payload: Some(encrypt_payload(&k, &pkg.zip).unwrap().to_base64()),
    };
    let r = reqwest::Client::new()
        .post(a.url("/v2.5/keys/ukey"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let pcr17 = a.pcr(17).await;
    let mut add = add_body(
        a.port(),
        &a.aik_tpm,
        Some(&vshare.to_base64()),
        &pcr17_policy(&pcr17),
    );
    add["revocation_key"] = pkg.revocation_key_pem.clone().into();
    add["metadata"] = json!({"cert_serial": pkg.serial.to_u64().unwrap(), "subject": pkg.subject})
        .to_string()
        .into();
    let (code, resp) = v.add(&a.uuid, add).await;
    assert_eq!(code, 200, "{resp}");
}

/// Wait until V reached the agent and the package is extracted.
async fn wait_deployed(v: &TestVerifier, a: &TestAgent) {
    v.wait_for(&a.uuid, T, |s| {
        s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(1)
    })
    .await;
    let cert = a
        .agent
        .secure_mount()
        .dir()
        .join("unzipped")
        .join(format!("{REVOCATION_NOTIFIER}-cert.crt"));
    wait_until(T, "the payload to be extracted", || cert.exists()).await;
}

async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_notice(a: &TestAgent, body: &[u8]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(a.url("/v2.5/notifications/revocation"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn attestations(status: &Value) -> u64 {
    status["results"]["attestation_count"].as_u64().unwrap()
}

/// `openssl crl` of the CA's DER CRL, as text.
fn crl_text(ca_dir: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(ca_dir.join("cacrl.der"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl crl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_agent_is_revoked_everywhere() {
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let scratch = tempdir();
    let ca_dir = scratch.path().join("ca");
    let ca = SoftwareCa::init(&ca_dir, "Vouch node CA", &Default::default()).unwrap();
    let (hook_url, hook) = start_webhook(1).await;

    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    let config = vouch_verifier::Config {
        enabled_revocation_notifications: vec!["agent".into(), "webhook".into()],
        webhook_url: hook_url,
        revocation_ca_dir: ca_dir.clone(),
        ..verifier_config(tls.path(), state.path())
    };
    let v = TestVerifier::start(&config).await;

    let a = start_agent(&registrar, "revocation-a", scratch.path()).await;
    let b = start_agent(&registrar, "revocation-b", scratch.path()).await;
    let (pkg_a, pkg_b) = (
        package(&ca, &a, scratch.path()),
        package(&ca, &b, scratch.path()),
    );
    add_with_cert(&v, &a, &pkg_a).await;
    add_with_cert(&v, &b, &pkg_b).await;
    wait_deployed(&v, &a).await;
    wait_deployed(&v, &b).await;
    let listed = |serial: &vouch_tls::software_ca::Serial| {
        crl_text(&ca_dir).contains(&format!("Serial Number: {}", serial.to_hex()))
    };
    assert!(!listed(&pkg_a.serial), "nothing revoked yet");

    a.change_pcr17();
    let st = v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    assert_eq!(st["last_event_id"], "pcr_validation.invalid_pcr_17", "{st}");

    // The webhook: refused once (503), then the same notice again, signed by the notifier.
    wait_until(T, "the webhook retry", || {
        hook.lock().unwrap().iter().any(|(code, _)| *code == 200)
    })
    .await;
    let received = hook.lock().unwrap().clone();
    assert_eq!(received[0].0, 503);
    assert_eq!(received[1].0, 200);
    assert_eq!(
        received[0].1, received[1].1,
        "the retry resends the same notice"
    );
    let notice: RevocationNotice = parse_notice(&received[1].1).unwrap();
    let notifier_cert =
        std::fs::read_to_string(ca_dir.join(format!("{REVOCATION_NOTIFIER}-cert.crt"))).unwrap();
    let verified = verify_notice(&notice, &notifier_cert).unwrap();
    let m = verified.message();
    assert_eq!(m.kind, "revocation");
    assert_eq!(m.agent_id, a.uuid);
    assert_eq!(m.port, a.port());
    let event = m.event.clone().unwrap();
    assert_eq!(event.event_id, "pcr_validation.invalid_pcr_17");
    assert_eq!(event.severity_label, "emergency");
    let context: Value = serde_json::from_str(&event.context).unwrap();
    assert!(
        context["message"].as_str().unwrap().contains("17"),
        "{context}"
    );
    let meta: Value = serde_json::from_str(m.meta_data.as_str().unwrap()).unwrap();
    assert_eq!(meta["cert_serial"], pkg_a.serial.to_u64().unwrap());

    // B ran its payload's action with the signed message; A (the failed one) got nothing.
    let b_marker = marker(scratch.path(), &b.uuid);
    wait_until(T, "B's revocation action", || b_marker.exists()).await;
    let written = std::fs::read_to_string(&b_marker).unwrap();
    assert_eq!(written, notice.msg, "the action got the message as signed");
    let written: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(written["agent_id"], a.uuid.as_str());
    assert!(!marker(scratch.path(), &a.uuid).exists());

    // The CRL lists A's certificate, not B's (openssl prints serials in hex).
    wait_until(T, "the CRL", || listed(&pkg_a.serial)).await;
    assert!(!listed(&pkg_b.serial), "{}", crl_text(&ca_dir));
    assert!(ca
        .entries()
        .unwrap()
        .iter()
        .any(|e| e.serial == pkg_a.serial && e.is_revoked()));

    // The same notice again: refused as a replay, nothing runs.
    std::fs::remove_file(&b_marker).unwrap();
    let (code, body) = post_notice(&b, &received[1].1).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["status"]
            .as_str()
            .unwrap()
            .contains("already acted on"),
        "{body}"
    );
    // A flipped signature byte: refused, nothing runs.
    let mut sig = STANDARD.decode(&notice.signature).unwrap();
    sig[10] ^= 0x01;
    let forged = json!({"msg": notice.msg, "signature": STANDARD.encode(sig)});
    let (code, body) = post_notice(&b, forged.to_string().as_bytes()).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["status"].as_str().unwrap().contains("does not verify"),
        "{body}"
    );
    // An unsigned notice (what a verifier without revocation_key sends): refused.
    let unsigned = json!({"msg": notice.msg, "signature": ""});
    let (code, body) = post_notice(&b, unsigned.to_string().as_bytes()).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["status"].as_str().unwrap().contains("unsigned"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!b_marker.exists(), "a refused notice ran an action");

    // B attests on.
    let before = attestations(&v.status(&b.uuid).await.1);
    v.wait_for(&b.uuid, T, |s| {
        s["attestation_count"].as_u64() > Some(before) && s["operational_state"] == GET_QUOTE
    })
    .await;
    a.agent.shutdown().await.unwrap();
    b.agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_webhook_delays_neither_polling_nor_the_other_agents() {
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let scratch = tempdir();
    let ca_dir = scratch.path().join("ca");
    let ca = SoftwareCa::init(&ca_dir, "Vouch node CA", &Default::default()).unwrap();

    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    // Nothing listens on the webhook's port, and its retries back off for 2+4+8+16 s.
    let config = vouch_verifier::Config {
        webhook_url: format!("http://127.0.0.1:{}/revocation", free_port()),
        revocation_ca_dir: ca_dir.clone(),
        retry_interval: 2.0,
        exponential_backoff: true,
        max_retries: 5,
        ..verifier_config(tls.path(), state.path())
    };
    let v = TestVerifier::start(&config).await;

    let a = start_agent(&registrar, "dead-hook-a", scratch.path()).await;
    let b = start_agent(&registrar, "dead-hook-b", scratch.path()).await;
    let (pkg_a, pkg_b) = (
        package(&ca, &a, scratch.path()),
        package(&ca, &b, scratch.path()),
    );
    add_with_cert(&v, &a, &pkg_a).await;
    add_with_cert(&v, &b, &pkg_b).await;
    wait_deployed(&v, &a).await;
    wait_deployed(&v, &b).await;

    a.change_pcr17();
    v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    let t0 = Instant::now();
    let before = attestations(&v.status(&b.uuid).await.1);

    // B's action and the CRL do not wait for the webhook's retries (30 s in all)...
    let b_marker = marker(scratch.path(), &b.uuid);
    wait_until(Duration::from_secs(10), "B's revocation action", || {
        b_marker.exists()
    })
    .await;
    wait_until(Duration::from_secs(10), "the CRL", || {
        crl_text(&ca_dir).contains(&format!("Serial Number: {}", pkg_a.serial.to_hex()))
    })
    .await;
    // ...and B keeps being polled every quote_interval (0.2 s) meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = v.status(&b.uuid).await.1;
    let after = attestations(&st);
    assert_eq!(st["results"]["operational_state"], GET_QUOTE, "{st}");
    assert!(
        after >= before + 3,
        "B attested {} time(s) in {:?} while the webhook was being retried",
        after - before,
        t0.elapsed()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "all of this happened within the webhook's back-off"
    );
    a.agent.shutdown().await.unwrap();
    b.agent.shutdown().await.unwrap();
}
