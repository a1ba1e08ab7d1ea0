//! Event-driven detection: a vouch-agent watching its PCRs sends NK-signed hints; the verifier
//! quotes at once. And the hint listener refuses forged, replayed, stale and malformed hints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vouch_core::api::hint::{Hint, HintReason};
use vouch_core::keylime::NodeKey;

const GET_QUOTE: u64 = 3;
const INVALID_QUOTE: u64 = 9;

/// Forwards hints to the verifier and keeps a copy of each (what an eavesdropper on the
/// agent's network would capture).
#[derive(Clone)]
struct Tap {
    to: String,
    seen: Arc<Mutex<Vec<Bytes>>>,
}

async fn tap(State(t): State<Tap>, body: Bytes) -> (axum::http::StatusCode, String) {
    t.seen.lock().unwrap().push(body.clone());
    let r = reqwest::Client::new()
        .post(&t.to)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = axum::http::StatusCode::from_u16(r.status().as_u16()).unwrap();
    (code, r.text().await.unwrap())
}

async fn start_tap(verifier_hints: SocketAddr) -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let t = Tap {
        to: format!("http://{verifier_hints}/v1/hint"),
        seen: seen.clone(),
    };
    let app = axum::Router::new()
        .route("/v1/hint", post(tap))
        .with_state(t);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn post_hint(addr: SocketAddr, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/hint"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Polls every 600 s, with the hint listener on.
fn hints_only(c: &mut vouch_verifier::Config) {
    c.quote_interval = 600.0;
    c.hint_listen = Some("127.0.0.1:0".parse().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pcr_change_is_detected_by_hint_long_before_the_next_poll() {
    let registrar = TestRegistrar::start().await;
    // A poll interval far beyond the test's patience: only a hint can detect the change.
    let v = TestVerifier::fresh(hints_only).await;
    let hints = v.verifier.hint_addr().unwrap();
    let (tap_url, captured) = start_tap(hints).await;

    let a = TestAgent::start_with(&registrar, "hint-pcr", |c| {
        c.verifier_hint_url = tap_url.clone();
        c.hint_pcr_poll_ms = 20;
    })
    .await;
    // PCR 15, extended through the agent's own TPM connection: swtpm serves one connection at
    // a time, and swtpm_ioctl's PCR 17 sequence racing the watcher's PCR reads can stall the
    // agent's connection (a harness artefact, not something a kernel extend does).
    let pcr15 = a.pcr(15).await;
    let policy = serde_json::json!({"15": [pcr15], "mask": "0x8000"}).to_string();
    let (code, resp) = v
        .add(&a.uuid, add_body(a.port(), &a.aik_tpm, None, &policy))
        .await;
    assert_eq!(code, 200, "{resp}");
    v.wait_for(&a.uuid, Duration::from_secs(30), |s| {
        s["operational_state"] == GET_QUOTE && s["attestation_count"] == 1
    })
    .await;

    let t0 = Instant::now();
    a.agent
        .tpm()
        .pcr_extend(
            15,
            &[(
                vouch_core::tpm::HashAlg::Sha256,
                vouch_core::tpm::HashAlg::Sha256.digest(b"tampered"),
            )],
        )
        .await
        .unwrap();
    let st = v
        .wait_state(&a.uuid, INVALID_QUOTE, Duration::from_secs(20))
        .await;
    eprintln!(
        "PCR 15 change → Invalid Quote via hint: {} ms (quote_interval 600 s)",
        t0.elapsed().as_millis()
    );
    assert_eq!(st["last_event_id"], "pcr_validation.invalid_pcr_15", "{st}");
    let sent = captured.lock().unwrap().clone();
    assert!(!sent.is_empty(), "the agent sent a hint");
    let first: Value = serde_json::from_slice(&sent[0]).unwrap();
    assert_eq!(first["reason"], "pcr");
    assert_eq!(first["agent_id"], "hint-pcr");

    // A captured hint replayed: refused, and the stored state is untouched.
    let before = v.status(&a.uuid).await.1;
    let (code, body) = post_hint(hints, sent[0].to_vec()).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["status"].as_str().unwrap().contains("replayed"),
        "{body}"
    );
    assert_eq!(v.status(&a.uuid).await.1, before);
    a.agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_stale_unknown_and_malformed_hints_are_refused() {
    let registrar = TestRegistrar::start().await;
    let v = TestVerifier::fresh(hints_only).await;
    let hints = v.verifier.hint_addr().unwrap();
    let a = TestAgent::start(&registrar, "hint-forged").await;
    let pcr17 = a.pcr(17).await;
    let (code, _) = v
        .add(
            &a.uuid,
            add_body(a.port(), &a.aik_tpm, None, &pcr17_policy(&pcr17)),
        )
        .await;
    assert_eq!(code, 200);
    v.wait_for(&a.uuid, Duration::from_secs(30), |s| {
        s["attestation_count"] == 1
    })
    .await;
    let before = v.status(&a.uuid).await.1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;

    // Signed with a key that is not the agent's NK.
    let mallory = NodeKey::generate().unwrap();
    let forged = Hint::sign(&mallory, &a.uuid, now, HintReason::Ima).unwrap();
    let (code, body) = post_hint(hints, serde_json::to_vec(&forged).unwrap()).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["status"].as_str().unwrap().contains("does not verify"),
        "{body}"
    );
    // An agent this verifier does not attest.
    let stranger = Hint::sign(&mallory, "nobody", now, HintReason::Ima).unwrap();
    let (code, body) = post_hint(hints, serde_json::to_vec(&stranger).unwrap()).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["status"].as_str().unwrap().contains("not attested"),
        "{body}"
    );
    // Stale: refused before the signature is even looked at.
    let old = Hint::sign(&mallory, &a.uuid, now - 3_600_000_000, HintReason::Pcr).unwrap();
    let (code, body) = post_hint(hints, serde_json::to_vec(&old).unwrap()).await;
    assert_eq!(code, 409, "{body}");
    // Malformed, unknown fields, oversized.
    let (code, body) = post_hint(hints, b"{\"agent_id\": 1}".to_vec()).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["status"]
            .as_str()
            .unwrap()
            .starts_with("malformed hint"),
        "{body}"
    );
    let (code, _) = post_hint(hints, vec![b' '; 10_000]).await;
    assert_eq!(code, 400);

    // None of it moved the agent: same state, no extra quote (the interval is 600 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(v.status(&a.uuid).await.1, before);
    a.agent.shutdown().await.unwrap();
}
