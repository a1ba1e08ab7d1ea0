//! vouch-agent against upstream keylime 7.14.3: enrollment with the real `keylime_registrar`,
//! quotes checked by Vouch and by upstream's own `Tpm.check_quote`, AK kept across a restart,
//! bad query parameters refused. Real swtpm, real daemons, ports the OS picks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use serde_json::json;
use vouch_core::api::binding::{check_nk_binding, expected_pcr16};
use vouch_core::api::quote_string::QuoteString;
use vouch_core::keys::VerifyingKey;
use vouch_core::tpm::{HashAlg, Public};
use vouch_testkit::Swtpm;

const NONCE: &str = "ABCDEFGHIJ0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolls_with_upstream_registrar_and_serves_checked_quotes() {
    let swtpm = Swtpm::start().unwrap();
    let registrar = tokio::task::spawn_blocking(UpstreamRegistrar::start)
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let uuid = "vouch-agent-upstream-1";
    let config = agent_config(&swtpm, &registrar.url(), uuid, state.path());

    let agent = vouch_agent::start(config.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistrar log:\n{}", registrar.log()));
    assert!(agent.identity().ak_created);
    assert_eq!(agent.registrar_version().to_string(), "2.6");

    // Upstream says: active (GET 404s "has not been activated" otherwise, §3.3).
    let (code, body) = registrar.admin_get(&format!("/v2.6/agents/{uuid}"));
    assert_eq!(code, 200, "{body}\n{}", registrar.log());
    let rec = &body["results"];
    let aik_tpm = STANDARD.decode(rec["aik_tpm"].as_str().unwrap()).unwrap();
    assert_eq!(aik_tpm, agent.identity().ak.public.to_tpm2b());
    assert_eq!(
        STANDARD.decode(rec["ek_tpm"].as_str().unwrap()).unwrap(),
        agent.identity().ek.to_tpm2b()
    );
    assert_eq!(
        STANDARD.decode(rec["ekcert"].as_str().unwrap()).unwrap(),
        agent.identity().ek_cert.clone().unwrap(),
        "ekcert sent as PEM, stored as DER"
    );
    assert_eq!(rec["mtls_cert"], "disabled");
    assert_eq!(rec["ip"], "127.0.0.1");
    assert_eq!(rec["port"], agent.local_addr().port());
    assert_eq!(rec["regcount"], 1);

    // /version as rust-keylime.
    let (code, v) = get(&agent_url(&agent, "/version")).await;
    assert_eq!(code, 200);
    assert_eq!(v["results"]["supported_version"], "2.5");

    // Identity quote: parsed, verified against the registrar's AK, PCR 16 binding.
    let ak = VerifyingKey::from_public(&Public::from_tpm2b(&aik_tpm).unwrap()).unwrap();
    let (code, q) = get(&agent_url(
        &agent,
        &format!("/v2.5/quotes/identity?nonce={NONCE}"),
    ))
    .await;
    assert_eq!(code, 200, "{q}");
    let r = &q["results"];
    assert_eq!(
        (&r["hash_alg"], &r["enc_alg"], &r["sign_alg"]),
        (&json!("sha256"), &json!("rsa"), &json!("rsassa"))
    );
    let pem = r["pubkey"].as_str().unwrap();
    assert_eq!(pem, agent.nk_pem());
    let parsed = QuoteString::parse(r["quote"].as_str().unwrap()).unwrap();
    assert_eq!(parsed.selection().to_string(), "sha256:16");
    let verified = parsed.verify(&ak, NONCE.as_bytes(), &[16]).unwrap();
    check_nk_binding(&verified, pem).unwrap();
    assert!(check_nk_binding(&verified, pem.trim_end()).is_err());
    let (ok, res) = upstream_check_quote(uuid, NONCE, r, &aik_tpm, json!({}));
    assert!(
        ok,
        "upstream Tpm.check_quote rejected the identity quote: {res}"
    );
    assert_eq!(
        res["pcrs"]["16"],
        hex::encode(expected_pcr16(HashAlg::Sha256, pem))
    );
    // Upstream notices a wrong NK (the binding is really checked).
    let mut other = r.clone();
    other["pubkey"] = json!(pem.replace("\n-----END", "\n\n-----END"));
    let (ok, res) = upstream_check_quote(uuid, NONCE, &other, &aik_tpm, json!({}));
    assert!(!ok, "{res}");
    assert!(res.to_string().contains("invalid_pcr_16"), "{res}");

    // Integrity quote, as the verifier asks for it (§4.2).
    let (code, q) = get(&agent_url(
        &agent,
        &format!("/v2.5/quotes/integrity?nonce={NONCE}&mask=0x408000&partial=0&ima_ml_entry=0"),
    ))
    .await;
    assert_eq!(code, 200, "{q}");
    let r = &q["results"];
    assert!(r.get("ima_measurement_list").is_none(), "no IMA log yet");
    let parsed = QuoteString::parse(r["quote"].as_str().unwrap()).unwrap();
    assert_eq!(parsed.selection().to_string(), "sha256:15,16,22");
    let verified = parsed.verify(&ak, NONCE.as_bytes(), &[15, 16, 22]).unwrap();
    check_nk_binding(&verified, r["pubkey"].as_str().unwrap()).unwrap();
    let policy = json!({"15": ["0000000000000000000000000000000000000000000000000000000000000000"],
                        "mask": "0x408000"});
    let (ok, res) = upstream_check_quote(uuid, NONCE, r, &aik_tpm, policy);
    assert!(ok, "upstream rejected the integrity quote: {res}");
    // partial=1: no pubkey.
    let (code, q) = get(&agent_url(
        &agent,
        &format!("/v2.5/quotes/integrity?nonce={NONCE}&mask=0x0&partial=1&ima_ml_entry=0"),
    ))
    .await;
    assert_eq!(code, 200);
    assert!(q["results"].get("pubkey").is_none());

    agent.shutdown().await.unwrap();

    // Restart: same AK from the state dir, accepted by upstream's identity lock (§3.1).
    let agent = vouch_agent::start(config)
        .await
        .unwrap_or_else(|e| panic!("{e}\nregistrar log:\n{}", registrar.log()));
    assert!(!agent.identity().ak_created);
    let (code, body) = registrar.admin_get(&format!("/v2.6/agents/{uuid}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"]["regcount"], 2);
    assert_eq!(
        STANDARD
            .decode(body["results"]["aik_tpm"].as_str().unwrap())
            .unwrap(),
        aik_tpm
    );
    let (code, q) = get(&agent_url(
        &agent,
        &format!("/v2.1/quotes/identity?nonce={NONCE}"),
    ))
    .await;
    assert_eq!(code, 200, "{q}");
    let (ok, res) = upstream_check_quote(uuid, NONCE, &q["results"], &aik_tpm, json!({}));
    assert!(ok, "after restart: {res}");
    agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_get_400_envelopes() {
    let swtpm = Swtpm::start().unwrap();
    let registrar = tokio::task::spawn_blocking(UpstreamRegistrar::start)
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = agent_config(
        &swtpm,
        &registrar.url(),
        "vouch-agent-bad-input",
        state.path(),
    );
    let agent = vouch_agent::start(config).await.unwrap();

    let long = "a".repeat(65);
    let cases = [
        ("/v2.5/quotes/identity", "Missing query parameter: nonce"),
        ("/v2.5/quotes/identity?nonce=", "empty"),
        (
            &format!("/v2.5/quotes/identity?nonce={long}") as &str,
            "too long",
        ),
        ("/v2.5/quotes/identity?nonce=abc%2Bdef", "alphanumeric"),
        (
            "/v2.5/quotes/integrity?nonce=abc&partial=0",
            "Missing query parameter: mask",
        ),
        (
            "/v2.5/quotes/integrity?nonce=abc&mask=0xZZ&partial=0",
            "Invalid mask",
        ),
        (
            "/v2.5/quotes/integrity?nonce=abc&mask=0x1000000&partial=0",
            "above 23",
        ),
        (
            "/v2.5/quotes/integrity?nonce=abc&mask=0x1&partial=2",
            "partial",
        ),
        ("/v2.5/quotes/integrity?nonce=abc&mask=0x1", "partial"),
        (
            "/v2.5/quotes/integrity?nonce=abc&mask=0x1&partial=1&ima_ml_entry=x",
            "ima_ml_entry",
        ),
        (
            "/v9.9/quotes/identity?nonce=abc",
            "API version not supported",
        ),
        ("/v2.5/keys/verify", "challenge"),
        (
            "/v2.5/keys/verify?challenge=abc",
            "Bootstrap key not yet available.",
        ),
    ];
    for (path, needle) in cases {
        let (code, body) = get(&agent_url(&agent, path)).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(body["code"], 400, "{path}: {body}");
        assert_eq!(body["results"], json!({}), "{path}: {body}");
        let status = body["status"].as_str().unwrap();
        assert!(
            status.contains(needle),
            "{path}: {status:?} lacks {needle:?}"
        );
    }
    // 64 characters is the TPM's limit and is accepted.
    let (code, _) = get(&agent_url(
        &agent,
        &format!("/v2.5/quotes/identity?nonce={}", "b".repeat(64)),
    ))
    .await;
    assert_eq!(code, 200);
    let (code, body) = get(&agent_url(&agent, "/v2.5/agent/info")).await;
    assert_eq!(code, 200);
    assert_eq!(body["results"]["agent_uuid"], "vouch-agent-bad-input");
    assert_eq!(body["results"]["tpm_enc_alg"], "rsa2048");
    let (code, _) = get(&agent_url(&agent, "/v2.1/agent/info")).await;
    assert_eq!(code, 404);
    let (code, body) = get(&agent_url(&agent, "/v2.5/keys/pubkey")).await;
    assert_eq!(code, 200);
    assert_eq!(body["results"]["pubkey"], agent.nk_pem());

    // U and V (§4.5, §4.6): the agent derives K, decrypts the payload, answers /keys/verify.
    use vouch_core::keylime::{
        auth_tag, challenge_hmac, encrypt_payload, encrypt_share_to_nk, BootstrapKey, Challenge,
    };
    let k = BootstrapKey::generate().unwrap();
    let (u, v) = k.split().unwrap();
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client.post(agent_url(&agent, path)).json(&body).send()
    };
    let r = post(
        "/v2.5/keys/ukey",
        json!({"encrypted_key": encrypt_share_to_nk(agent.nk_pem(), &u).unwrap().to_base64(),
               "auth_tag": auth_tag(&k, "vouch-agent-bad-input").to_hex(),
               "payload": encrypt_payload(&k, b"secret user-data").unwrap().to_base64()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = post("/v2.5/keys/vkey", json!({"encrypted_key": "AAAA"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "garbage V refused");
    let r = post(
        "/v2.5/keys/vkey",
        json!({"encrypted_key": encrypt_share_to_nk(agent.nk_pem(), &v).unwrap().to_base64()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (code, body) = get(&agent_url(&agent, "/v2.5/keys/verify?challenge=abc123")).await;
    assert_eq!(code, 200, "{body}");
    let expected = challenge_hmac(&k, &Challenge::parse("abc123").unwrap()).to_hex();
    assert_eq!(body["results"]["hmac"], expected);
    assert_eq!(
        std::fs::read(
            agent
                .secure_mount()
                .dir()
                .join("unzipped/decrypted_payload")
        )
        .unwrap(),
        b"secret user-data"
    );
    agent.shutdown().await.unwrap();
}
