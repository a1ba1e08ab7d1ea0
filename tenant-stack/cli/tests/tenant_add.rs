//! `vouch agent add` against real parts: vouch-registrar (mTLS), vouch-agent on swtpm. The
//! verifier's part (V to the agent) is played by the test where no verifier runs. Attacks:
//! an agent with another AK, a replayed quote, an EK certificate that does not chain — each
//! refused before anything reaches the agent. And the verifier's add body with runtime and
//! measured-boot policies (the measured-boot part is not yet accepted by vouch-verifier).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenant_env;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::time::Duration;
use tenant_env::*;
use vouch_cli::tenant::{
    AddOptions, EkCheck, MbPolicyFile, Payload, Policies, Progress, RuntimePolicyFile, TenantError,
};
use vouch_core::api::registrar::AgentId;
use vouch_core::api::verifier::{AddAgentRequest, TpmPolicy};
use vouch_core::ekcert::EkCaStore;
use vouch_core::keylime::encrypt_share_to_nk;
use vouch_testkit::Swtpm;

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00001";
const OTHER: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00002";

fn options(env: &Env, id: &str, ip: Option<String>, port: Option<u16>) -> AddOptions {
    AddOptions {
        agent_id: AgentId::parse(id).unwrap(),
        ip,
        port,
        payload: None,
        policies: Policies::pcrs_only(TpmPolicy::parse("{}").unwrap()),
        ek_check: EkCheck::Store(EkCaStore::from_dir(env.swtpm.ca_dir()).unwrap()),
        verify_timeout: Duration::from_secs(20),
    }
}

fn ukeys(seen: &[String]) -> Vec<&String> {
    seen.iter().filter(|r| r.contains("/keys/")).collect()
}

#[tokio::test]
async fn add_delivers_u_and_payload_then_v_and_verify_passes() {
    let env = Env::start().await;
    let agent = env.agent(None, ID).await;
    let tenant = env.tenant();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "the secret payload").unwrap();
    std::fs::write(dir.path().join("autorun.sh"), "echo ran > autorun.out\n").unwrap();
    let mut opts = options(&env, ID, None, None);
    opts.payload = Some(Payload::from_path(dir.path()).unwrap());

    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let mut progress = Progress::new(move |l| sink.lock().unwrap().push(l.to_owned()));
    let d = tenant.deliver_to_agent(&opts, &mut progress).await.unwrap();
    assert_eq!(d.nk_pem, agent.agent.nk_pem());
    assert_eq!(d.port, agent.addr().port(), "address from the registrar");

    // Without V the agent cannot answer the challenge: the loop times out, naming why.
    let e = tenant
        .verify_key(&d, Duration::from_secs(1), &mut progress)
        .await
        .unwrap_err();
    assert!(matches!(e, TenantError::VerifyTimeout { .. }), "{e}");
    assert!(e.to_string().contains("400"), "{e}");

    // The verifier's part: V encrypted to the NK, POST /keys/vkey.
    let enc = encrypt_share_to_nk(&d.nk_pem, &d.v).unwrap();
    let r = reqwest::Client::new()
        .post(format!(
            "{}{}/keys/vkey",
            d.agent.base,
            d.agent_version.url_prefix()
        ))
        .json(&serde_json::json!({ "encrypted_key": enc.to_base64() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    tenant
        .verify_key(&d, Duration::from_secs(20), &mut progress)
        .await
        .unwrap();

    // The agent decrypted and unpacked the payload, and ran autorun.sh.
    let unzipped = agent.secure().join("unzipped");
    assert_eq!(
        wait_for_file(&unzipped.join("data.txt")).await,
        b"the secret payload"
    );
    assert_eq!(wait_for_file(&unzipped.join("autorun.out")).await, b"ran\n");

    let lines = lines.lock().unwrap().clone();
    for want in [
        "registrar",
        "EK certificate chains",
        "identity quote verified",
        "U delivered",
        "proved it holds the bootstrap key",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "no progress line with {want:?}: {lines:#?}"
        );
    }
    assert!(lines
        .iter()
        .all(|l| l.starts_with('[') && l.contains("s] ")));
}

#[tokio::test]
async fn quote_from_an_agent_with_another_ak_is_refused_and_nothing_is_sent() {
    let env = Env::start().await;
    let _genuine = env.agent(None, ID).await;
    let other_tpm = Swtpm::start().unwrap();
    let impostor = env.agent(Some(&other_tpm), OTHER).await;
    let proxy = Proxy::start(impostor.addr(), None).await;

    // The tenant is pointed (e.g. by a spoofed address) at the impostor for ID.
    let opts = options(&env, ID, Some("127.0.0.1".into()), Some(proxy.addr.port()));
    let e = env
        .tenant()
        .deliver_to_agent(&opts, &mut Progress::log())
        .await
        .unwrap_err();
    assert!(matches!(e, TenantError::QuoteWrongAk { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "agent {ID}'s quote is signed by a key other than the AK the registrar holds for it"
        )),
        "{e}"
    );
    let seen = proxy.seen();
    assert!(
        seen.iter().any(|r| r.contains("/quotes/identity")),
        "{seen:?}"
    );
    assert!(
        ukeys(&seen).is_empty(),
        "nothing but the quote request: {seen:?}"
    );
}

#[tokio::test]
async fn replayed_quote_for_another_nonce_is_refused() {
    let env = Env::start().await;
    let agent = env.agent(None, ID).await;
    let proxy = Proxy::start(agent.addr(), Some("replayedNonce0123456")).await;
    let opts = options(&env, ID, Some("127.0.0.1".into()), Some(proxy.addr.port()));
    let e = env
        .tenant()
        .deliver_to_agent(&opts, &mut Progress::log())
        .await
        .unwrap_err();
    assert!(matches!(e, TenantError::QuoteReplay { .. }), "{e}");
    assert!(e.to_string().contains("replayedNonce0123456"), "{e}");
    assert!(ukeys(&proxy.seen()).is_empty(), "{:?}", proxy.seen());
}

#[tokio::test]
async fn ek_certificate_not_chaining_is_refused_before_contacting_the_agent() {
    let env = Env::start().await;
    let agent = env.agent(None, ID).await;
    let proxy = Proxy::start(agent.addr(), None).await;
    let unrelated = tempfile::tempdir().unwrap();
    vouch_tls::Ca::create(unrelated.path(), "unrelated CA").unwrap();
    std::fs::remove_file(unrelated.path().join("ca-private.pem")).unwrap();

    let mut opts = options(&env, ID, Some("127.0.0.1".into()), Some(proxy.addr.port()));
    opts.ek_check = EkCheck::Store(EkCaStore::from_dir(unrelated.path()).unwrap());
    let e = env
        .tenant()
        .deliver_to_agent(&opts, &mut Progress::log())
        .await
        .unwrap_err();
    assert!(matches!(e, TenantError::EkCert { .. }), "{e}");
    assert!(e.to_string().contains("does not chain"), "{e}");
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
}

#[tokio::test]
async fn unknown_agent_names_the_registrar_answer() {
    let env = Env::start().await;
    let e = env
        .tenant()
        .deliver_to_agent(&options(&env, "nobody", None, None), &mut Progress::log())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("registrar answered 404"), "{text}");
    assert!(text.contains("nobody"), "{text}");
}

#[tokio::test]
async fn verifier_body_carries_the_runtime_and_measured_boot_policies() {
    let env = Env::start().await;
    let _agent = env.agent(None, ID).await;
    let tenant = env.tenant();

    let dir = tempfile::tempdir().unwrap();
    let rt_path = dir.path().join("runtime.json");
    std::fs::write(&rt_path, bash_only_runtime_policy()).unwrap();
    let mb_path = dir.path().join("refstate.json");
    std::fs::write(
        &mb_path,
        "{\n  \"kernels\": [],\n  \"has_secureboot\": false\n}\n",
    )
    .unwrap();
    let mut opts = options(&env, ID, None, None);
    opts.policies = Policies::new(
        TpmPolicy::parse(r#"{"mask": "0x800000"}"#).unwrap(),
        Some(RuntimePolicyFile::load(&rt_path, "--runtime-policy").unwrap()),
        Some("prod".into()),
        Some(MbPolicyFile::load(&mb_path).unwrap()),
        Some("boot".into()),
    )
    .unwrap();

    let d = tenant
        .deliver_to_agent(&opts, &mut Progress::log())
        .await
        .unwrap();
    let body = serde_json::to_value(tenant.verifier_request(&d, &opts.policies)).unwrap();
    assert_eq!(body["tpm_policy"], r#"{"mask":"0x80ffff"}"#);
    assert_eq!(
        B64.decode(body["runtime_policy"].as_str().unwrap())
            .unwrap(),
        std::fs::read(&rt_path).unwrap(),
        "the file's bytes, base64"
    );
    assert_eq!(body["runtime_policy_name"], "prod");
    assert_eq!(body["runtime_policy_key"], "");
    assert_eq!(
        body["mb_policy"], r#"{"has_secureboot": false, "kernels": []}"#,
        "json.dumps of the refstate"
    );
    assert_eq!(body["mb_policy_name"], "boot");
    assert_eq!(body["ak_tpm"], d.record.aik_tpm);
    // The verifier's own type reads it back.
    let back: AddAgentRequest = serde_json::from_value(body).unwrap();
    assert_eq!(back.v, Some(d.v.to_base64()));
}
