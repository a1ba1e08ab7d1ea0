//! vouch-verifier against real parts: vouch-registrar, swtpm, vouch-agent. The test acts as
//! the tenant (add body as 7.14.3's `tenant.py:do_cvadd` sends it, over mTLS).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vouch_core::api::agent::UkeyRequest;
use vouch_core::keylime::{
    auth_tag, challenge_hmac, encrypt_share_to_nk, BootstrapKey, Challenge, NodeKey,
};
use vouch_core::tpm::{ObjectAttributes, Public};
use vouch_tls::{client_config, load_roots, Identity, ServerNameCheck, TlsDir};

const GET_QUOTE: u64 = 3;
const FAILED: u64 = 7;
const INVALID_QUOTE: u64 = 9;
const TENANT_FAILED: u64 = 10;
const T: Duration = Duration::from_secs(30);

/// Post U to the agent and check that `/keys/verify` proves it derived K (so V arrived).
async fn prove_k_derived(a: &TestAgent, k: &BootstrapKey, u: &vouch_core::keylime::KeyShare) {
    let body = UkeyRequest {
        encrypted_key: encrypt_share_to_nk(a.agent.nk_pem(), u)
            .unwrap()
            .to_base64(),
        auth_tag: auth_tag(k, &a.uuid).to_hex(),
        payload: None,
    };
    let r = reqwest::Client::new()
        .post(a.url("/v2.5/keys/ukey"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c = Challenge::generate().unwrap();
    let deadline = Instant::now() + T;
    loop {
        let (code, v) = get_json(&a.url(&format!("/v2.5/keys/verify?challenge={c}"))).await;
        if code == 200 {
            assert_eq!(
                v["results"]["hmac"].as_str().unwrap(),
                challenge_hmac(k, &c).to_hex(),
                "agent derived a different K"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent never derived K: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attests_delivers_v_and_detects_pcr_change() {
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let a = TestAgent::start(&registrar, "verifier-e2e-a").await;

    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    let v = TestVerifier::start(&verifier_config(tls.path(), state.path())).await;

    // /version as upstream.
    let (code, ver) = v.send(Method::GET, "/version", None).await;
    assert_eq!(code, 200);
    assert_eq!(ver["results"]["current_version"], "2.6");

    let pcr17 = a.pcr(17).await;
    let k = BootstrapKey::generate().unwrap();
    let (u, vshare) = k.split().unwrap();
    let body = add_body(
        a.port(),
        &a.aik_tpm,
        Some(&vshare.to_base64()),
        &pcr17_policy(&pcr17),
    );
    let (code, resp) = v.add(&a.uuid, body).await;
    assert_eq!(code, 200, "{resp}");
    assert_eq!(
        resp,
        json!({"code": 200, "status": "Success", "results": {}})
    );

    let st = v
        .wait_for(&a.uuid, T, |s| {
            s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(2)
        })
        .await;
    assert_eq!(st["attestation_status"], "PASS");
    assert_eq!(st["hash_alg"], "sha256");
    assert_eq!(st["port"], a.port());
    assert!(st.get("failure_reason").is_none(), "{st}");
    prove_k_derived(&a, &k, &u).await;

    // List: upstream's list of one-element lists.
    let (code, list) = v.send(Method::GET, "/v2.6/agents/", None).await;
    assert_eq!(code, 200);
    assert_eq!(list["results"], json!({"uuids": [[a.uuid.clone()]]}));
    let (_, bulk) = v.send(Method::GET, "/v2.6/agents/?bulk=True", None).await;
    assert_eq!(bulk["results"][&a.uuid]["operational_state"], GET_QUOTE);

    // Tamper with PCR 17: the next quote must fail.
    let before = v.status(&a.uuid).await.1["results"]["attestation_count"]
        .as_u64()
        .unwrap();
    let t0 = Instant::now();
    a.change_pcr17();
    let st = v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    let latency = t0.elapsed();
    println!(
        "detection latency (PCR 17 changed -> INVALID_QUOTE visible to the tenant): {:.0} ms \
         (quote_interval {} s)",
        latency.as_secs_f64() * 1000.0,
        0.2
    );
    let reason = st["failure_reason"].as_str().unwrap();
    let now17 = a.pcr(17).await;
    assert_eq!(
        reason,
        format!("PCR 17 (sha256) is 0x{now17} but tpm_policy allows [0x{pcr17}]")
    );
    assert_eq!(st["last_event_id"], "pcr_validation.invalid_pcr_17");
    assert_eq!(st["severity_level"], 6);
    assert_eq!(st["attestation_status"], "FAIL");
    assert_eq!(st["attestation_count"].as_u64().unwrap(), before);

    // Polling stopped: the count stays.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = v.status(&a.uuid).await.1["results"].clone();
    assert_eq!(again["operational_state"], INVALID_QUOTE);
    assert_eq!(again["last_received_quote"], st["last_received_quote"]);

    // Reactivate resumes polling (and fails again on the same PCR).
    let (code, _) = v
        .send(
            Method::PUT,
            &format!("/v2.6/agents/{}/reactivate", a.uuid),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let st = v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    assert!(st["failure_reason"].as_str().unwrap().starts_with("PCR 17"));

    // Stop → TENANT_FAILED; delete → gone.
    let (code, _) = v
        .send(Method::PUT, &format!("/v2.6/agents/{}/stop", a.uuid), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        v.status(&a.uuid).await.1["results"]["operational_state"],
        TENANT_FAILED
    );
    let (code, _) = v
        .send(Method::DELETE, &format!("/v2.6/agents/{}", a.uuid), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(v.status(&a.uuid).await.0, 404);

    v.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quote_signed_by_another_agents_ak_is_refused() {
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let a = TestAgent::start(&registrar, "verifier-ak-a").await;
    let b = TestAgent::start(&registrar, "verifier-ak-b").await;
    assert_ne!(a.aik_tpm, b.aik_tpm);

    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    let v = TestVerifier::start(&verifier_config(tls.path(), state.path())).await;
    let vshare = BootstrapKey::generate().unwrap().split().unwrap().1;
    // Agent A's id and address, agent B's AK.
    let body = add_body(
        a.port(),
        &b.aik_tpm,
        Some(&vshare.to_base64()),
        "{\"mask\": \"0x0\"}",
    );
    assert_eq!(v.add(&a.uuid, body).await.0, 200);
    let st = v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    let reason = st["failure_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("quote signature does not verify with the AK registered for this agent"),
        "{reason}"
    );
    assert_eq!(st["last_event_id"], "quote_validation.invalid_signature");
    assert_eq!(st["attestation_count"], 0);
    // V was never sent: the agent cannot answer /keys/verify.
    let (code, _) = get_json(&a.url("/v2.5/keys/verify?challenge=abc123")).await;
    assert_ne!(code, 200);

    v.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
    b.agent.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}

/// A man in the middle answering for the agent: forwards to the real agent but swaps the NK
/// `pubkey` for its own, hoping to receive V encrypted to a key it holds.
async fn nk_swapping_proxy(agent: String, fake_pem: String) -> u16 {
    use axum::extract::Request;
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(move |req: Request| {
        let agent = agent.clone();
        let fake_pem = fake_pem.clone();
        async move {
            let url = format!("{agent}{}", req.uri());
            let r = reqwest::get(&url).await.unwrap();
            let code = r.status();
            let mut body: Value = r.json().await.unwrap_or(Value::Null);
            if body["results"].get("pubkey").is_some() {
                body["results"]["pubkey"] = Value::String(fake_pem);
            }
            (code, axum::Json(body)).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nk_substitution_is_refused() {
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let a = TestAgent::start(&registrar, "verifier-nk-a").await;
    let attacker = NodeKey::generate().unwrap();
    let proxy = nk_swapping_proxy(
        format!("http://{}", a.agent.local_addr()),
        attacker.public_pem().to_owned(),
    )
    .await;

    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    let v = TestVerifier::start(&verifier_config(tls.path(), state.path())).await;
    let vshare = BootstrapKey::generate().unwrap().split().unwrap().1;
    let body = add_body(
        proxy,
        &a.aik_tpm,
        Some(&vshare.to_base64()),
        "{\"mask\": \"0x0\"}",
    );
    assert_eq!(v.add(&a.uuid, body).await.0, 200);
    let st = v.wait_state(&a.uuid, INVALID_QUOTE, T).await;
    let reason = st["failure_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("PCR 16 does not bind the agent's NK (NK substitution?)"),
        "{reason}"
    );
    assert_eq!(st["last_event_id"], "pcr_validation.invalid_pcr_16");
    assert_eq!(st["attestation_count"], 0);

    v.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_change_nothing() {
    // A real enrolled agent provides a valid AK; the unrestricted AK is that AK with its
    // `restricted` attribute cleared.
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let a = TestAgent::start(&registrar, "verifier-bad-a").await;
    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    // A small body limit keeps the oversized request within the socket buffers, so the client
    // has finished writing before the server answers and closes (else: EPIPE, not a response).
    let mut config = verifier_config(tls.path(), state.path());
    config.max_body_bytes = 64 * 1024;
    let v = TestVerifier::start(&config).await;

    let mut ak = Public::from_tpm2b(&base64_decode(&a.aik_tpm)).unwrap();
    ak.attributes = ObjectAttributes(ak.attributes.0 & !ObjectAttributes::RESTRICTED);
    let unrestricted = b64(&ak.to_tpm2b());
    let good_v = BootstrapKey::generate()
        .unwrap()
        .split()
        .unwrap()
        .1
        .to_base64();
    let good = add_body(a.port(), &a.aik_tpm, Some(&good_v), "{\"mask\": \"0x0\"}");

    let with = |key: &str, value: Value| {
        let mut b = good.clone();
        b[key] = value;
        b
    };
    let without = |key: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "short V",
            with("v", json!(b64(&[1u8; 16]))),
            "Invalid agent data: v:",
        ),
        (
            "V not base64",
            with("v", json!("***")),
            "Invalid agent data: v:",
        ),
        (
            "ak_tpm garbage",
            with("ak_tpm", json!("AAAA")),
            "Invalid agent data: ak_tpm:",
        ),
        (
            "unrestricted AK",
            with("ak_tpm", json!(unrestricted)),
            "Invalid agent data: ak_tpm: not a restricted signing key",
        ),
        (
            "port wrong type",
            with("cloudagent_port", json!([9002])),
            "Malformed Request Parameter: invalid request body",
        ),
        (
            "port out of range",
            with("cloudagent_port", json!("70000")),
            "Malformed Request Parameter",
        ),
        (
            "tpm_policy object",
            with("tpm_policy", json!({"mask": "0x0"})),
            "Malformed Request Parameter: invalid request body",
        ),
        (
            "tpm_policy PCR 16",
            with("tpm_policy", json!("{\"16\": [\"00\"]}")),
            "Invalid agent data: tpm_policy: tpm_policy must not pin PCR 16",
        ),
        (
            "algs not a list",
            with("accept_tpm_hash_algs", json!("sha256")),
            "Malformed Request Parameter",
        ),
        (
            "unknown alg",
            with("accept_tpm_hash_algs", json!(["md5"])),
            "Invalid agent data: accept_tpm_hash_algs: unknown algorithm \"md5\"",
        ),
        (
            "missing ak_tpm",
            without("ak_tpm"),
            "missing field `ak_tpm`",
        ),
        (
            "runtime_policy null",
            with("runtime_policy", json!(null)),
            "Malformed Request Parameter",
        ),
        (
            "metadata not JSON",
            with("metadata", json!("nope")),
            "Invalid agent data: metadata:",
        ),
        (
            "oversized",
            with(
                "metadata",
                json!(format!("{{\"x\": \"{}\"}}", "a".repeat(100 * 1024))),
            ),
            "exceeds the limit of 65536 bytes",
        ),
    ];
    for (what, body, expect) in cases {
        let (code, resp) = v.add(&a.uuid, body).await;
        assert_eq!(code, 400, "{what}: {resp}");
        assert_eq!(resp["code"], 400, "{what}");
        let status = resp["status"].as_str().unwrap();
        assert!(status.contains(expect), "{what}: {status}");
        assert_eq!(
            v.status(&a.uuid).await.0,
            404,
            "{what}: something was stored"
        );
    }
    // Not JSON at all.
    let r = v
        .client
        .post(v.url(&format!("/v2.6/agents/{}", a.uuid)))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Bad agent id.
    let (code, resp) = v.add("bad%20id", good.clone()).await;
    assert_eq!(code, 400, "{resp}");

    // Unknown id → 404 everywhere.
    for (m, p) in [
        (Method::GET, "/v2.6/agents/nobody"),
        (Method::DELETE, "/v2.6/agents/nobody"),
        (Method::PUT, "/v2.6/agents/nobody/reactivate"),
        (Method::PUT, "/v2.6/agents/nobody/stop"),
    ] {
        let (code, resp) = v.send(m.clone(), p, None).await;
        assert_eq!(code, 404, "{m} {p}: {resp}");
        assert!(resp["status"]
            .as_str()
            .unwrap()
            .starts_with("agent id not found"));
    }
    assert_eq!(v.send(Method::GET, "/v9.9/agents/", None).await.0, 404);

    // Add twice → 409, first record unchanged.
    assert_eq!(v.add(&a.uuid, good.clone()).await.0, 200);
    let first = v.status(&a.uuid).await.1["results"].clone();
    let other = with("tpm_policy", json!("{\"mask\": \"0x1\"}"));
    let (code, resp) = v.add(&a.uuid, other).await;
    assert_eq!(code, 409, "{resp}");
    assert!(resp["status"]
        .as_str()
        .unwrap()
        .starts_with(&format!("Agent of uuid {} already exists", a.uuid)));
    let now = v.status(&a.uuid).await.1["results"].clone();
    assert_eq!(now["tpm_policy"], first["tpm_policy"]);
    assert_eq!(now["v"], first["v"]);

    v.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_requires_a_client_cert_from_our_ca() {
    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    let v = TestVerifier::start(&verifier_config(tls.path(), state.path())).await;
    assert_eq!(v.send(Method::GET, "/version", None).await.0, 200);

    let roots = || load_roots(&[TlsDir::new(tls.path()).ca_cert()]).unwrap();
    // No client certificate.
    let anon = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(roots(), None, ServerNameCheck::Required).unwrap())
        .build()
        .unwrap();
    assert!(anon.get(v.url("/version")).send().await.is_err());
    // A client certificate from another CA.
    let other = tempdir();
    make_tls(other.path());
    let files = TlsDir::new(other.path()).client();
    let id = Identity::load(&files.cert, &files.key).unwrap();
    let foreign = reqwest::Client::builder()
        .use_preconfigured_tls(
            client_config(roots(), Some(&id), ServerNameCheck::Required).unwrap(),
        )
        .build()
        .unwrap();
    assert!(foreign.get(v.url("/version")).send().await.is_err());
    // Plain HTTP is not served.
    assert!(reqwest::get(format!(
        "http://127.0.0.1:{}/version",
        v.verifier.local_addr().port()
    ))
    .await
    .map(|r| r.status() != 200)
    .unwrap_or(true));
    v.verifier.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_resumes_polling_and_keeps_failures() {
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let a = TestAgent::start(&registrar, "verifier-restart-a").await;
    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    let config = verifier_config(tls.path(), state.path());
    let v = TestVerifier::start(&config).await;

    let pcr17 = a.pcr(17).await;
    let good = add_body(a.port(), &a.aik_tpm, None, &pcr17_policy(&pcr17));
    assert_eq!(v.add("restart-good", good).await.0, 200);
    let bad = add_body(a.port(), &a.aik_tpm, None, &pcr17_policy(&"00".repeat(32)));
    assert_eq!(v.add("restart-bad", bad).await.0, 200);
    v.wait_for("restart-good", T, |s| {
        s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(2)
    })
    .await;
    let bad_before = v.wait_state("restart-bad", INVALID_QUOTE, T).await;
    v.verifier.shutdown().await.unwrap();

    // Between runs nothing polls.
    let count = |s: &Value| s["attestation_count"].as_u64().unwrap();
    let v2 = TestVerifier::start(&config).await;
    let resumed = v2.status("restart-good").await.1["results"].clone();
    let n = count(&resumed);
    let after = v2
        .wait_for("restart-good", T, |s| {
            s["operational_state"] == GET_QUOTE && count(s) >= n + 2
        })
        .await;
    assert!(count(&after) >= n + 2);
    let bad_after = v2.status("restart-bad").await.1["results"].clone();
    assert_eq!(bad_after["operational_state"], INVALID_QUOTE);
    assert_eq!(bad_after["failure_reason"], bad_before["failure_reason"]);
    assert!(bad_after["failure_reason"]
        .as_str()
        .unwrap()
        .starts_with("PCR 17 (sha256) is 0x"));
    assert_eq!(
        bad_after["last_received_quote"],
        bad_before["last_received_quote"]
    );

    v2.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v_pending_at_shutdown_is_delivered_after_restart() {
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let a = TestAgent::start(&registrar, "verifier-vpending-a").await;
    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    let config = verifier_config(tls.path(), state.path());
    let v = TestVerifier::start(&config).await;

    // Agent unreachable at first (wrong port): the add is stored, V not delivered.
    let k = BootstrapKey::generate().unwrap();
    let (u, vshare) = k.split().unwrap();
    let body = add_body(
        free_port(),
        &a.aik_tpm,
        Some(&vshare.to_base64()),
        "{\"mask\": \"0x0\"}",
    );
    assert_eq!(v.add(&a.uuid, body).await.0, 200);
    v.wait_state(&a.uuid, 4, T).await; // GET_QUOTE_RETRY
    v.verifier.shutdown().await.unwrap();

    // Point the stored record at the real agent (as if it came back on its address).
    rusqlite_update_port(&config, &a.uuid, a.port());
    let v2 = TestVerifier::start(&config).await;
    v2.wait_for(&a.uuid, T, |s| {
        s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(1)
    })
    .await;
    prove_k_derived(&a, &k, &u).await;
    v2.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}

fn rusqlite_update_port(config: &vouch_verifier::Config, id: &str, port: u16) {
    let conn = rusqlite::Connection::open(config.db_path()).unwrap();
    let n = conn
        .execute(
            "UPDATE agents SET port = ?1 WHERE agent_id = ?2",
            rusqlite::params![port, id],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_agent_fails_after_backoff_without_stalling_others() {
    let reg_state = tempdir();
    let reg_tpm = vouch_testkit::Swtpm::start().unwrap();
    let registrar = start_registrar(&reg_tpm, reg_state.path()).await;
    let a = TestAgent::start(&registrar, "verifier-healthy-a").await;
    let tls = tempdir();
    make_tls(tls.path());
    let state = tempdir();
    let config = vouch_verifier::Config {
        max_retries: 3,
        retry_interval: 1.5,
        exponential_backoff: true,
        max_concurrent_quotes: 1,
        ..verifier_config(tls.path(), state.path())
    };
    let v = TestVerifier::start(&config).await;
    let healthy = add_body(a.port(), &a.aik_tpm, None, "{\"mask\": \"0x0\"}");
    assert_eq!(v.add(&a.uuid, healthy).await.0, 200);
    v.wait_state(&a.uuid, GET_QUOTE, T).await;

    let ghost_port = free_port();
    let ghost = add_body(ghost_port, &a.aik_tpm, None, "{\"mask\": \"0x0\"}");
    let t0 = Instant::now();
    assert_eq!(v.add("ghost", ghost).await.0, 200);
    let retrying = v.wait_state("ghost", 4, T).await;
    assert!(retrying["failure_reason"]
        .as_str()
        .unwrap()
        .starts_with("retrying (1/3): agent unreachable"));
    let healthy_before = v.status(&a.uuid).await.1["results"]["attestation_count"]
        .as_u64()
        .unwrap();
    let st = v.wait_state("ghost", FAILED, T).await;
    let took = t0.elapsed();
    // Retries after 1.5 s and 1.5² = 2.25 s: at least 3.75 s in all.
    println!(
        "unreachable agent: FAILED after {:.2} s (3 attempts, backoff 1.5 s, 2.25 s)",
        took.as_secs_f64()
    );
    assert!(took >= Duration::from_millis(3700), "{took:?}");
    let reason = st["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "agent unreachable at http://127.0.0.1:{ghost_port}"
        )),
        "{reason}"
    );
    assert!(
        reason.contains("gave up after 3 attempts (max_retries = 3)"),
        "{reason}"
    );
    assert_eq!(st["last_event_id"], "agent.unreachable");
    // The healthy agent was polled all along (even with one permit).
    let healthy_after = v.status(&a.uuid).await.1["results"].clone();
    assert_eq!(healthy_after["operational_state"], GET_QUOTE);
    assert!(
        healthy_after["attestation_count"].as_u64().unwrap() >= healthy_before + 5,
        "healthy agent stalled: {healthy_before} -> {}",
        healthy_after["attestation_count"]
    );

    v.verifier.shutdown().await.unwrap();
    a.agent.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}
