//! The full upstream keylime 7.14.3 control plane bootstraps a vouch-agent end to end:
//! real swtpm, upstream `keylime_verifier` + `keylime_registrar` from the keylime venv
//! (docs/keylime-wire.md §8), the agent in-process, upstream `keylime_tenant -c add` with a
//! payload and a PCR 17 policy. Asserts the payload is decrypted into the secure mount and the
//! verifier keeps the agent in Get Quote; then PCR 17 is changed behind the agent's back through
//! swtpm's control channel and upstream's verifier must mark the agent INVALID_QUOTE (9) or
//! FAILED (7). Never skipped: a missing venv is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::upstream::UpstreamKeylime;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use vouch_core::api::quote_string::QuoteString;
use vouch_core::tpm::HashAlg;
use vouch_testkit::Swtpm;

const UUID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000";
const PAYLOAD: &[u8] = b"vouch bootstrap secret: delivered by keylime_tenant 7.14.3\n";
/// Data hashed into PCR 17 by the control-channel hash sequence.
const TAMPER_DATA: &str = "tampered";
/// Verifier polling period (s).
const QUOTE_INTERVAL: u32 = 1;
const TENANT_TIMEOUT: Duration = Duration::from_secs(60);

/// Blocking work (subprocesses, curl) off the async workers, which serve the agent.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Current PCR 17 (sha256) as lowercase hex, from the agent's own integrity quote (the agent
/// holds swtpm's single command connection, so tpm2-tools cannot read it meanwhile).
async fn pcr17(agent: &vouch_agent::RunningAgent) -> String {
    let (code, q) = get(&agent_url(
        agent,
        "/v2.5/quotes/integrity?nonce=readpcr17x&mask=0x20000&partial=1&ima_ml_entry=0",
    ))
    .await;
    assert_eq!(code, 200, "{q}");
    let quote = QuoteString::parse(q["results"]["quote"].as_str().unwrap()).unwrap();
    hex::encode(
        quote
            .pcrs()
            .get(HashAlg::Sha256, 17)
            .expect("PCR 17 in quote"),
    )
}

fn state_of(body: &Value) -> Option<u64> {
    body["results"]["operational_state"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tenant_bootstraps_payload_and_verifier_catches_pcr17_tamper() {
    let t_all = Instant::now();
    let swtpm = Swtpm::start().unwrap();
    let kl = blocking(|| UpstreamKeylime::start(&swtpm.ca_dir(), QUOTE_INTERVAL));
    println!(
        "upstream up: verifier {:.1?}, registrar {:.1?}",
        kl.verifier_startup, kl.registrar_startup
    );

    // The agent: enrolls with upstream's registrar, plain HTTP (mtls_cert "disabled"), payload
    // deployment allowed without mTLS.
    let state = tempfile::tempdir().unwrap();
    let mut config = agent_config(&swtpm, &kl.registrar_url(), UUID, state.path());
    config.enable_insecure_payload = true;
    let agent = vouch_agent::start(config)
        .await
        .unwrap_or_else(|e| panic!("agent start: {e}\n{}", kl.logs()));
    let agent_port = agent.local_addr().port().to_string();

    // PCR 17 at add time. A DRTM PCR: TPM2_Startup(CLEAR) sets PCRs 17-22 to all ones (TPM 2.0
    // Part 1 §17.6.2), and nothing extended it since; read it from a quote anyway, so the policy
    // pins the real value.
    let pcr17_at_add = pcr17(&agent).await;
    assert_eq!(pcr17_at_add, "ff".repeat(32), "fresh swtpm PCR 17");
    let tpm_policy = format!(r#"{{"17": ["{pcr17_at_add}"]}}"#);

    // keylime_tenant -c add: registrar lookup, identity quote + EK cert chain (require_ek_cert
    // against swtpm's CA), U + payload to the agent, add to the verifier (which sends V after
    // its first good quote), then --verify: HMAC(K, challenge) from the agent's /keys/verify.
    let payload = kl.write_file("payload.txt", PAYLOAD);
    let t_add = Instant::now();
    let add = blocking(|| {
        kl.tenant(
            &[
                "-c",
                "add",
                "-u",
                UUID,
                "-t",
                "127.0.0.1",
                "-tp",
                &agent_port,
                "-f",
                payload.to_str().unwrap(),
                "--tpm_policy",
                &tpm_policy,
                "--verify",
            ],
            TENANT_TIMEOUT,
        )
    });
    assert!(add.success(), "tenant add failed:\n{add}\n{}", kl.logs());
    let out = add.output();
    assert!(
        out.contains("validated")
            && out.contains("added to Verifier")
            && out.contains("Successful key derivation"),
        "tenant add output:\n{add}"
    );
    println!("tenant add: {:.2?}", add.elapsed);

    // The payload lands in the secure mount once V arrives.
    let decrypted = agent
        .secure_mount()
        .dir()
        .join("unzipped/decrypted_payload");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::fs::read(&decrypted).is_ok_and(|d| d == PAYLOAD) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "payload not at {} 20 s after the add (content: {:?})\n{}",
            decrypted.display(),
            std::fs::read(&decrypted).map(|d| String::from_utf8_lossy(&d).into_owned()),
            kl.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let payload_at = t_add.elapsed();
    println!("payload deployed at {}", decrypted.display());

    // Verifier: Get Quote (3) with successful attestations, policy as given.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (code, body) = blocking(|| kl.verifier_get(&format!("/v2.6/agents/{UUID}")));
        assert_eq!(code, 200, "verifier GET agent: {body}\n{}", kl.logs());
        let state = state_of(&body);
        assert!(
            matches!(state, Some(1 | 3 | 5)),
            "agent neither starting nor in Get Quote: {body}\n{}",
            kl.logs()
        );
        if state == Some(3) && body["results"]["attestation_count"].as_u64() >= Some(2) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "not in Get Quote with 2 attestations within 20 s: {body}\n{}",
            kl.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let r = &status["results"];
    assert_eq!(r["attestation_status"], "PASS", "{status}");
    assert_eq!(r["hash_alg"], "sha256", "{status}");
    let policy: Value = serde_json::from_str(r["tpm_policy"].as_str().unwrap()).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"17": [pcr17_at_add], "mask": "0x20000"})
    );
    // And the tenant's own view.
    let cv = blocking(|| kl.tenant(&["-c", "cvstatus", "-u", UUID], TENANT_TIMEOUT));
    assert!(cv.success(), "tenant cvstatus:\n{cv}");
    assert!(
        cv.output().contains(r#""operational_state": "Get Quote""#),
        "tenant cvstatus does not show Get Quote:\n{cv}"
    );

    // Tamper: _TPM_Hash_Start/Data/End on swtpm's control port (the agent keeps the command
    // connection) resets PCR 17 to zero and extends it with H(data).
    let expected = HashAlg::Sha256
        .digest_parts(&[&[0u8; 32], &HashAlg::Sha256.digest(TAMPER_DATA.as_bytes())]);
    let ctrl = format!("127.0.0.1:{}", swtpm.port() + 1);
    let t_tamper = Instant::now();
    let out = std::process::Command::new("swtpm_ioctl")
        .args(["--tcp", &ctrl, "-h", TAMPER_DATA])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swtpm_ioctl -h: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let (failed, latency) = loop {
        let (code, body) = blocking(|| kl.verifier_get(&format!("/v2.6/agents/{UUID}")));
        assert_eq!(code, 200, "verifier GET agent: {body}\n{}", kl.logs());
        if matches!(state_of(&body), Some(7 | 9)) {
            break (body, t_tamper.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "verifier did not fail the agent within 30 s of the PCR 17 change: {body}\n{}",
            kl.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "tamper detected: operational_state {} after {latency:.2?} (quote_interval {QUOTE_INTERVAL} s)",
        failed["results"]["operational_state"]
    );
    let r = &failed["results"];
    assert_eq!(r["attestation_status"], "FAIL", "{failed}");
    assert_eq!(
        r["last_event_id"], "pcr_validation.invalid_pcr_17",
        "{failed}"
    );
    // The agent reports exactly the value the hash sequence produces, and upstream saw it.
    let pcr17_now = pcr17(&agent).await;
    assert_eq!(pcr17_now, hex::encode(&expected));
    assert!(
        kl.verifier_log().contains(&pcr17_now),
        "verifier log does not mention the quoted PCR 17 {pcr17_now}:\n{}",
        kl.verifier_log()
    );
    let cv = blocking(|| kl.tenant(&["-c", "cvstatus", "-u", UUID], TENANT_TIMEOUT));
    assert!(cv.success(), "tenant cvstatus:\n{cv}");
    let out = cv.output();
    assert!(
        out.contains(r#""operational_state": "Invalid Quote""#)
            || out.contains(r#""operational_state": "Failed""#),
        "tenant cvstatus after tamper:\n{cv}"
    );

    agent.shutdown().await.unwrap();
    println!(
        "timings: tenant add {:.2?} (payload deployed {payload_at:.2?} after its start), detection {latency:.2?}, total {:.1?}",
        add.elapsed,
        t_all.elapsed()
    );
}
