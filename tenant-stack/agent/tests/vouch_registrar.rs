//! vouch-agent enrolls with vouch-registrar: registration with the swtpm's EK certificate
//! checked against its CA, MakeCredential blob opened by the agent's TPM, activation; the
//! registrar's record then carries the agent's keys, and its quotes verify against that AK.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use vouch_core::api::binding::check_nk_binding;
use vouch_core::api::quote_string::QuoteString;
use vouch_core::keys::VerifyingKey;
use vouch_core::tpm::Public;
use vouch_registrar::config::Config;
use vouch_registrar::server::Registrar;
use vouch_testkit::Swtpm;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolls_with_vouch_registrar() {
    let swtpm = Swtpm::start().unwrap();
    let reg_state = tempfile::tempdir().unwrap();
    let registrar = Registrar::start(&Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: reg_state.path().to_path_buf(),
        ek_ca_dir: swtpm.ca_dir(),
        insecure_admin_over_http: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}", registrar.http_addr());

    let state = tempfile::tempdir().unwrap();
    let uuid = "vouch-agent-vouch-registrar-1";
    let agent = vouch_agent::start(agent_config(&swtpm, &url, uuid, state.path()))
        .await
        .unwrap();

    // Active: GET answers 200 only for activated agents.
    let (code, body) = get(&format!("{url}/v2.6/agents/{uuid}")).await;
    assert_eq!(code, 200, "{body}");
    let rec = &body["results"];
    let aik_tpm = STANDARD.decode(rec["aik_tpm"].as_str().unwrap()).unwrap();
    assert_eq!(aik_tpm, agent.identity().ak.public.to_tpm2b());
    assert_eq!(
        STANDARD.decode(rec["ek_tpm"].as_str().unwrap()).unwrap(),
        agent.identity().ek.to_tpm2b()
    );
    assert_eq!(rec["port"], agent.local_addr().port());

    // The agent's identity quote verifies against the AK the registrar vouches for.
    let nonce = "vouchregistrar0123";
    let (code, q) = get(&agent_url(
        &agent,
        &format!("/v2.5/quotes/identity?nonce={nonce}"),
    ))
    .await;
    assert_eq!(code, 200, "{q}");
    let ak = VerifyingKey::from_public(&Public::from_tpm2b(&aik_tpm).unwrap()).unwrap();
    let quote = QuoteString::parse(q["results"]["quote"].as_str().unwrap()).unwrap();
    let verified = quote.verify(&ak, nonce.as_bytes(), &[16]).unwrap();
    check_nk_binding(&verified, q["results"]["pubkey"].as_str().unwrap()).unwrap();

    // A restarted agent keeps its AK: re-registration with the same keys is accepted.
    agent.shutdown().await.unwrap();
    let again = vouch_agent::start(agent_config(&swtpm, &url, uuid, state.path()))
        .await
        .unwrap();
    assert!(!again.identity().ak_created);
    let (code, body) = get(&format!("{url}/v2.6/agents/{uuid}")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"]["regcount"], 2);
    again.shutdown().await.unwrap();
    registrar.shutdown().await.unwrap();
}
