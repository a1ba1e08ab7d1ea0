//! The registrar against a real swtpm: enrollment end to end, the attacks it must refuse (each
//! leaves the stored record as it was, except where upstream semantics say otherwise), and
//! persistence across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::{TestRegistrar, TestTpm};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use vouch_tpm::EkKind;

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000";

fn agent_path(id: &str) -> String {
    format!("/v2.6/agents/{id}")
}

fn status_text(v: &Value) -> &str {
    v["status"].as_str().unwrap()
}

#[tokio::test]
async fn enrollment_end_to_end_with_swtpm() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;

    let (s, v) = reg.get("/version").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["results"]["current_version"], "2.6");

    // Registered but not active: GET says so, list shows it.
    let (s, v) = reg.post(&agent_path(ID), &tpm.register_body()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let blob = v["results"]["blob"].as_str().unwrap().to_owned();
    assert_eq!(
        &B64.decode(&blob).unwrap()[..8],
        &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]
    );
    let (s, v) = reg.get(&agent_path(ID)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        status_text(&v),
        format!("Agent with ID '{ID}' has not been activated")
    );
    let (_, v) = reg.get("/v2.6/agents/").await;
    assert_eq!(v["results"]["uuids"], json!([ID]));

    // The TPM opens the credential; the auth_tag activates the agent.
    let tag = tpm.auth_tag(ID, &blob).await;
    let (s, v) = reg.put(&agent_path(ID), &json!({ "auth_tag": tag })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"code": 200, "status": "Success", "results": {}}));

    let (s, v) = reg.get(&agent_path(ID)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = &v["results"];
    assert_eq!(r["agent_id"], ID);
    assert_eq!(r["ek_tpm"], B64.encode(&tpm.ek_tpm));
    assert_eq!(
        r["ekcert"],
        B64.encode(&tpm.ek_cert_der),
        "ekcert is returned as base64 DER"
    );
    assert_eq!(r["aik_tpm"], B64.encode(tpm.ak.public.to_tpm2b()));
    assert_eq!(r["mtls_cert"], "disabled");
    assert_eq!(r["ip"], "127.0.0.1");
    assert_eq!(r["port"], 9002);
    assert_eq!(r["regcount"], 1);
    assert!(reg.row(ID).unwrap().active);

    // Same keys again (agent restart): new blob, inactive, regcount 2; then active again.
    let (s, v) = reg.post(&agent_path(ID), &tpm.register_body()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let row = reg.row(ID).unwrap();
    assert!(!row.active);
    assert_eq!(row.regcount, 2);
    let blob = v["results"]["blob"].as_str().unwrap().to_owned();
    let tag = tpm.auth_tag(ID, &blob).await;
    // The documented activate path and a minor-version alias work as well.
    let (s, v) = reg
        .put(
            &format!("/v2.1/agents/{ID}/activate"),
            &json!({ "auth_tag": tag }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = reg.get(&format!("/v2/agents/{ID}/")).await;
    assert_eq!(v["results"]["regcount"], 2);

    // DELETE, then it is gone.
    let (s, v) = reg.delete(&agent_path(ID)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(reg.row(ID).is_none());
    let (s, _) = reg.get(&agent_path(ID)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn restart_keeps_records() {
    let tpm = TestTpm::start().await;
    let mut reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;
    let before = reg.enroll(&tpm, ID).await;
    reg.restart().await;
    let (s, after) = reg.get(&agent_path(ID)).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(before, after);
    // And it still accepts work: a pending registration survives a restart too.
    let (s, v) = reg.post(&agent_path(ID), &tpm.register_body()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let blob = v["results"]["blob"].as_str().unwrap().to_owned();
    reg.restart().await;
    let tag = tpm.auth_tag(ID, &blob).await;
    let (s, v) = reg.put(&agent_path(ID), &json!({ "auth_tag": tag })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    reg.stop().await;
}

/// Register must fail with 400 and `reason` in the message, storing nothing.
async fn assert_refused(reg: &TestRegistrar, body: &Value, reason: &str) {
    let (s, v) = reg.post(&agent_path(ID), body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let msg = status_text(&v);
    assert!(
        msg.starts_with("Could not register agent with invalid data: "),
        "{msg}"
    );
    assert!(msg.contains(reason), "expected {reason:?} in: {msg}");
    assert!(reg.row(ID).is_none(), "nothing stored");
    eprintln!("refused as expected: {msg}");
}

#[tokio::test]
async fn self_signed_ek_certificate_is_refused() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;
    let fake = rcgen::generate_simple_self_signed(vec!["tpm.example".into()]).unwrap();
    let mut body = tpm.register_body();
    body["ekcert"] = json!(fake.cert.pem());
    assert_refused(&reg, &body, "the certificate is self-signed").await;
}

#[tokio::test]
async fn ek_certificate_from_another_ca_is_refused() {
    let trusted = TestTpm::start().await;
    let other = TestTpm::start_fresh().await; // its own EK, EK cert and CA
    let reg = TestRegistrar::start(&trusted.swtpm.ca_dir()).await;
    // Both swtpm CAs are named "swtpm-localca": webpki finds the namesake and reports
    // "bad signature"; either way the chain fails.
    assert_refused(&reg, &other.register_body(), "does not chain to any CA in").await;
    // The same TPM is fine with its own CA trusted.
    let reg2 = TestRegistrar::start(&other.swtpm.ca_dir()).await;
    reg2.enroll(&other, ID).await;
}

#[tokio::test]
async fn ek_certificate_for_a_different_key_is_refused() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;
    // Same CA, same TPM, but the certificate of its ECC P-384 EK.
    let ecc_cert = tpm
        .tpm
        .read_ek_cert(EkKind::EccP384)
        .await
        .unwrap()
        .unwrap();
    let mut body = tpm.register_body();
    body["ekcert"] = json!(vouch_core::der::pem_encode("CERTIFICATE", &ecc_cert));
    assert_refused(&reg, &body, "certifies a different key than the TPM's EK").await;
    // Base64 DER input is accepted like PEM (upstream accepts both).
    let mut body = tpm.register_body();
    body["ekcert"] = json!(B64.encode(&tpm.ek_cert_der));
    let (s, v) = reg.post(&agent_path(ID), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn missing_ek_certificate_and_non_restricted_keys_are_refused() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;
    let mut body = tpm.register_body();
    body.as_object_mut().unwrap().remove("ekcert");
    assert_refused(&reg, &body, "ekcert is required").await;
    // The EK offered as AK: not a signing key.
    let mut body = tpm.register_body();
    body["aik_tpm"] = json!(B64.encode(&tpm.ek_tpm));
    assert_refused(
        &reg,
        &body,
        "aik_tpm (RSA-2048) is not a restricted signing key",
    )
    .await;
    let mut body = tpm.register_body();
    body["ek_tpm"] = json!("not base64 or hex");
    assert_refused(&reg, &body, "ek_tpm is neither valid base64 nor hex").await;
}

#[tokio::test]
async fn without_required_ek_cert_registration_works_but_key_must_match() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start_with(|c| {
        c.require_ek_cert = false;
        c.ek_ca_dir = "/nonexistent".into();
    })
    .await;
    // A certificate from nowhere is accepted (no chain check) only if it is for this EK.
    let ecc_cert = tpm
        .tpm
        .read_ek_cert(EkKind::EccP384)
        .await
        .unwrap()
        .unwrap();
    let mut body = tpm.register_body();
    body["ekcert"] = json!(vouch_core::der::pem_encode("CERTIFICATE", &ecc_cert));
    assert_refused(&reg, &body, "certifies a different public key than ek_tpm").await;
    let mut body = tpm.register_body();
    body["ekcert"] = Value::Null;
    let (s, v) = reg.post(&agent_path(ID), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let blob = v["results"]["blob"].as_str().unwrap().to_owned();
    let tag = tpm.auth_tag(ID, &blob).await;
    let (s, v) = reg.put(&agent_path(ID), &json!({ "auth_tag": tag })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = reg.get(&agent_path(ID)).await;
    assert_eq!(v["results"]["ekcert"], Value::Null);
}

#[tokio::test]
async fn wrong_auth_tag_is_refused_and_the_registration_kept() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;
    let (s, v) = reg.post(&agent_path(ID), &tpm.register_body()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let row_before = reg.row(ID).unwrap();
    let blob = v["results"]["blob"].as_str().unwrap().to_owned();
    let good = tpm.auth_tag(ID, &blob).await;
    // Upper-case hex of the right tag is still wrong: upstream compares strings.
    let wrong = good.to_uppercase();
    let (s, v) = reg
        .put(&agent_path(ID), &json!({ "auth_tag": wrong }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        status_text(&v),
        format!("Auth tag '{wrong}' for agent '{ID}' does not match expected value: the agent's TPM could not prove it holds both the EK and the AK; the registration is kept, unactivated")
    );
    // Nothing changed (upstream would have deleted the agent): the right tag still activates.
    assert_eq!(reg.row(ID).unwrap(), row_before);
    let (s, v) = reg.put(&agent_path(ID), &json!({ "auth_tag": good })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn reregistration_with_a_different_ak_is_refused() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;
    let before = reg.enroll(&tpm, ID).await;
    let row_before = reg.row(ID).unwrap();

    let other_ak = tpm
        .tpm
        .create_ak(
            EkKind::Rsa2048,
            vouch_tpm::AkKind::Rsa2048,
            vouch_core::tpm::HashAlg::Sha256,
        )
        .await
        .unwrap();
    let mut body = tpm.register_body();
    body["aik_tpm"] = json!(B64.encode(other_ak.public.to_tpm2b()));
    let (s, v) = reg.post(&agent_path(ID), &body).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        status_text(&v),
        format!("Agent re-registration with different TPM identity is forbidden for security reasons: changed aik_tpm; delete agent '{ID}' first to enrol a new TPM")
    );
    let (_, after) = reg.get(&agent_path(ID)).await;
    assert_eq!(before, after);
    assert_eq!(
        reg.row(ID).unwrap(),
        row_before,
        "row untouched (key, active, regcount)"
    );

    // With allow_reregistration_with_new_keys the same request replaces the keys.
    let reg2 = TestRegistrar::start_with(|c| {
        c.ek_ca_dir = tpm.swtpm.ca_dir();
        c.allow_reregistration_with_new_keys = true;
    })
    .await;
    reg2.enroll(&tpm, ID).await;
    let (s, v) = reg2.post(&agent_path(ID), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let row = reg2.row(ID).unwrap();
    assert_eq!(row.aik_tpm, B64.encode(other_ak.public.to_tpm2b()));
    assert!(!row.active);
    assert_eq!(row.regcount, 2);
}

#[tokio::test]
async fn malformed_json_is_refused_and_changes_nothing() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;
    let before = reg.enroll(&tpm, ID).await;
    let row_before = reg.row(ID).unwrap();
    for (path, method) in [
        (agent_path(ID), Method::POST),
        (agent_path(ID), Method::PUT),
    ] {
        let (s, v) = reg
            .send(method, &path, Some(b"{\"aik_tpm\": ".to_vec()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let msg = status_text(&v);
        assert!(
            msg.starts_with(
                "Malformed Request Parameter: request body is not valid JSON: EOF while parsing"
            ),
            "{msg}"
        );
    }
    assert_eq!(reg.get(&agent_path(ID)).await.1, before);
    assert_eq!(reg.row(ID).unwrap(), row_before);
}

#[tokio::test]
async fn wrong_json_types_are_refused_and_change_nothing() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start(&tpm.swtpm.ca_dir()).await;
    let before = reg.enroll(&tpm, ID).await;
    let row_before = reg.row(ID).unwrap();

    let mut body = tpm.register_body();
    body["port"] = json!("9002");
    let (s, v) = reg.post(&agent_path(ID), &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        status_text(&v).starts_with("Malformed Request Parameter: invalid request body: invalid type: string \"9002\", expected u16"),
        "{v}"
    );
    let (s, v) = reg.post(&agent_path(ID), &json!({ "ek_tpm": 1 })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        status_text(&v).contains("invalid type: integer `1`, expected a string"),
        "{v}"
    );
    let (s, v) = reg.put(&agent_path(ID), &json!({ "auth_tag": 5 })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        status_text(&v).contains("invalid type: integer `5`, expected a string"),
        "{v}"
    );
    let (s, v) = reg.put(&agent_path(ID), &json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(status_text(&v).contains("missing field `auth_tag`"), "{v}");

    assert_eq!(reg.get(&agent_path(ID)).await.1, before);
    assert_eq!(reg.row(ID).unwrap(), row_before);
}

#[tokio::test]
async fn oversized_body_is_refused_with_413() {
    let tpm = TestTpm::start().await;
    let reg = TestRegistrar::start_with(|c| {
        c.ek_ca_dir = tpm.swtpm.ca_dir();
        c.max_body_bytes = 64 * 1024;
    })
    .await;
    let before = reg.enroll(&tpm, ID).await;
    let row_before = reg.row(ID).unwrap();
    let mut body = tpm.register_body();
    body["ip"] = json!("x".repeat(100 * 1024));
    let (s, v) = reg.post(&agent_path(ID), &body).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(
        status_text(&v),
        "Request body exceeds the limit of 65536 bytes"
    );
    assert_eq!(reg.get(&agent_path(ID)).await.1, before);
    assert_eq!(reg.row(ID).unwrap(), row_before);
}

#[tokio::test]
async fn unknown_agents_versions_and_routes() {
    let reg = TestRegistrar::start_with(|c| c.require_ek_cert = false).await;
    let nobody = "00000000-0000-0000-0000-000000000000";
    let want = format!("Agent with ID '{nobody}' not found");
    let (s, v) = reg.get(&agent_path(nobody)).await;
    assert_eq!((s, status_text(&v)), (StatusCode::NOT_FOUND, want.as_str()));
    let tag = "0".repeat(96);
    let (s, v) = reg
        .put(&agent_path(nobody), &json!({ "auth_tag": tag }))
        .await;
    assert_eq!((s, status_text(&v)), (StatusCode::NOT_FOUND, want.as_str()));
    let (s, v) = reg.delete(&agent_path(nobody)).await;
    assert_eq!((s, status_text(&v)), (StatusCode::NOT_FOUND, want.as_str()));
    assert!(reg.row(nobody).is_none());

    let (s, v) = reg.get("/v9.9/agents/").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        status_text(&v).starts_with("API version 'v9.9' is not served here"),
        "{v}"
    );
    let (s, v) = reg.get("/nothing/here/at/all").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = reg.get("/v2.6/agents/a%20b").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(status_text(&v).contains("contains ' '"), "{v}");
    // The v3-style form under v2: the id must then be in the body.
    let (s, v) = reg
        .post("/v2.6/agents", &json!({ "aik_tpm": "AA==" }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        status_text(&v),
        "agent_id is required in the body of POST /agents"
    );
    let (s, v) = reg
        .post(
            &agent_path(ID),
            &json!({ "agent_id": "other", "aik_tpm": "AA==" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(status_text(&v).contains("differs from"), "{v}");
}

#[tokio::test]
async fn admin_routes_need_tls_by_default() {
    let reg = TestRegistrar::start_with(|c| {
        c.require_ek_cert = false;
        c.insecure_admin_over_http = false;
    })
    .await;
    for (method, path) in [
        (Method::GET, "/v2.6/agents/".to_owned()),
        (Method::GET, agent_path(ID)),
        (Method::DELETE, agent_path(ID)),
    ] {
        let (s, v) = reg.send(method, &path, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            status_text(&v).starts_with("This action requires the TLS port"),
            "{v}"
        );
    }
    // /version and registration stay available.
    assert_eq!(reg.get("/version").await.0, StatusCode::OK);
}
