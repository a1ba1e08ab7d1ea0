//! Upstream keylime 7.14.3's own `keylime_tenant` (a subprocess, unchanged) against Vouch:
//! vouch-registrar (HTTP for the agent, mTLS for the tenant), vouch-verifier and a vouch-agent
//! on a real swtpm, all in this process; one Vouch TLS directory (`vouch_tls::Ca`, upstream's
//! `cv_ca` file names) serves as the tenant's `tls_dir`. The tenant checks the EK certificate
//! against the swtpm CA (`require_ek_cert = True`, `tpm_cert_store` = swtpm's CA directory).
//!
//! Covered: `-c regstatus`, `-c add` (payload `-f`, `--tpm_policy`, `--verify`) → exit 0, the
//! payload lands in the agent's secure mount, the verifier attests the agent (Get Quote, count
//! growing, the tenant's policy stored); `-c status`, `-c reglist`, `-c cvlist`; `-c delete`
//! → gone from the verifier, still on the registrar; bad input: `add` of an unknown uuid, `add`
//! with a `tpm_cert_store` the EK certificate does not chain to, and a second `add` of the same
//! uuid all fail clearly (exit 1, upstream's message) with Vouch's state unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod upstream;

use serde_json::Value;
use std::time::{Duration, Instant};
use upstream::{wait_for_file, Stack, TenantRun};
use vouch_agent::payload::{PAYLOAD_FILE, UNZIPPED};

const GET_QUOTE: u64 = 3;
const T: Duration = Duration::from_secs(30);

fn parse_status(v: &Value) -> &Value {
    &v["results"]
}

/// The verifier's own view (mTLS REST, as a tenant would).
async fn verifier_status(s: &Stack, uuid: &str) -> (u16, Value) {
    s.verifier.status(uuid).await
}

async fn verifier_list(s: &Stack) -> Value {
    let (code, list) = s
        .verifier
        .send(reqwest::Method::GET, "/v2.6/agents/", None)
        .await;
    assert_eq!(code, 200, "{list}");
    list["results"]["uuids"].clone()
}

async fn registrar_list(s: &Stack) -> Value {
    let (code, list) = s.registrar_get("/v2.6/agents/").await;
    assert_eq!(code, 200, "{list}");
    list["results"]["uuids"].clone()
}

fn assert_failed_with(run: &TenantRun, needle: &str) {
    assert!(
        run.code.is_some() && !run.success(),
        "upstream tenant was expected to fail:\n{}",
        run.describe()
    );
    assert!(
        run.output().contains(needle),
        "upstream tenant failed without saying {needle:?}:\n{}",
        run.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_tenant_add_status_delete_against_vouch() {
    let t0 = Instant::now();
    let uuid = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000";
    let s = Stack::start(uuid).await;
    let port = s.agent_port().to_string();
    println!("stack up in {:.1?}", t0.elapsed());
    let mut timings: Vec<(String, Duration)> = Vec::new();
    let mut note = |run: &TenantRun, what: &str| timings.push((what.to_owned(), run.elapsed));

    // -c regstatus: the tenant reads the record over the registrar's mTLS port.
    let run = s.keylime.tenant(&["-c", "regstatus", "-u", uuid]).await;
    note(&run, "regstatus");
    run.assert_ok();
    assert!(
        run.output().contains("Registered") && run.output().contains("aik_tpm"),
        "regstatus did not print the registrar record:\n{}",
        run.describe()
    );

    // Bad input: an unknown uuid. Upstream refuses before touching the verifier.
    let before_reg = registrar_list(&s).await;
    let unknown = "00000000-0000-4000-8000-00000000dead";
    let run = s
        .keylime
        .tenant(&["-c", "add", "-u", unknown, "-t", "127.0.0.1", "-tp", &port])
        .await;
    note(&run, "add unknown uuid");
    assert_failed_with(&run, unknown);
    assert_eq!(verifier_list(&s).await, serde_json::json!([]));
    assert_eq!(registrar_list(&s).await, before_reg);
    let (code, _) = verifier_status(&s, unknown).await;
    assert_eq!(code, 404);

    // Bad input: the EK certificate does not chain to the tenant's tpm_cert_store (here an
    // empty one) → upstream refuses after the quote check, before posting U or adding.
    let no_ca = tempfile::tempdir().unwrap();
    let strict = s.keylime_with_ek_store(no_ca.path());
    let run = strict
        .tenant(&["-c", "add", "-u", uuid, "-t", "127.0.0.1", "-tp", &port])
        .await;
    note(&run, "add, EK CA not trusted");
    assert_failed_with(&run, "Invalid EK certificate");
    assert_eq!(verifier_list(&s).await, serde_json::json!([]));
    assert_eq!(registrar_list(&s).await, before_reg);

    // -c add with a payload, a PCR 17 policy and --verify (the tenant then proves the agent
    // derived K from U + V, i.e. the verifier delivered V after a good quote).
    let pcr17 = s.pcr(17).await;
    let policy = serde_json::json!({ "17": [pcr17] }).to_string();
    let payload = format!("secret for {uuid} from upstream's tenant\n");
    let payload_path = s.keylime.path().join("payload.txt");
    std::fs::write(&payload_path, &payload).unwrap();
    let add_args = [
        "-c",
        "add",
        "-u",
        uuid,
        "-t",
        "127.0.0.1",
        "-tp",
        &port,
        "-f",
        payload_path.to_str().unwrap(),
        "--tpm_policy",
        &policy,
        "--verify",
    ];
    let run = s.keylime.tenant(&add_args).await;
    note(&run, "add");
    run.assert_ok();
    for needle in ["validated", "Successful key derivation"] {
        assert!(
            run.output().contains(needle),
            "add did not log {needle:?}:\n{}",
            run.describe()
        );
    }

    // The payload is in the agent's secure mount, decrypted with K = U xor V.
    let deployed = s.secure_mount.join(UNZIPPED).join(PAYLOAD_FILE);
    let got = wait_for_file(&deployed, T).await.unwrap_or_else(|| {
        panic!(
            "payload never appeared at {} after the tenant's add:\n{}",
            deployed.display(),
            run.describe()
        )
    });
    assert_eq!(String::from_utf8_lossy(&got), payload);

    // Vouch's verifier attests the agent with the tenant's policy.
    let st = s
        .verifier
        .wait_for(uuid, T, |st| {
            st["operational_state"] == GET_QUOTE && st["attestation_count"].as_u64() >= Some(2)
        })
        .await;
    assert_eq!(st["attestation_status"], "PASS", "{st}");
    assert!(st.get("failure_reason").is_none(), "{st}");
    assert_eq!(st["port"].to_string().trim_matches('"'), port, "{st}");
    let stored: Value = serde_json::from_str(st["tpm_policy"].as_str().unwrap()).unwrap();
    assert_eq!(stored["17"], serde_json::json!([pcr17]), "{st}");
    assert_eq!(stored["mask"], "0x20000", "{st}");
    assert_eq!(verifier_list(&s).await, serde_json::json!([[uuid]]));

    // Bad input: adding the same uuid again fails (verifier 409) and changes nothing.
    let run = s.keylime.tenant(&add_args).await;
    note(&run, "add again (conflict)");
    assert_failed_with(&run, "responded indicating a conflict");
    let (code, again) = verifier_status(&s, uuid).await;
    assert_eq!(code, 200, "{again}");
    let again = parse_status(&again);
    assert_eq!(again["operational_state"], GET_QUOTE, "{again}");
    assert_eq!(again["tpm_policy"], st["tpm_policy"]);
    assert_eq!(again["v"], st["v"], "the first add's V must be kept");
    assert!(again["attestation_count"].as_u64() >= st["attestation_count"].as_u64());

    // -c status = regstatus + cvstatus.
    let run = s.keylime.tenant(&["-c", "status", "-u", uuid]).await;
    note(&run, "status");
    run.assert_ok();
    assert!(
        run.output().contains("Get Quote")
            && run.output().contains("\"attestation_status\": \"PASS\""),
        "status did not report the agent as attested:\n{}",
        run.describe()
    );

    // -c reglist / -c cvlist.
    let run = s.keylime.tenant(&["-c", "reglist"]).await;
    note(&run, "reglist");
    run.assert_ok();
    assert!(run.output().contains(uuid), "{}", run.describe());
    let run = s.keylime.tenant(&["-c", "cvlist"]).await;
    note(&run, "cvlist");
    run.assert_ok();
    assert!(run.output().contains(uuid), "{}", run.describe());

    // -c delete: gone from the verifier (and no longer polled), still on the registrar.
    let run = s.keylime.tenant(&["-c", "delete", "-u", uuid]).await;
    note(&run, "delete");
    run.assert_ok();
    let (code, body) = verifier_status(&s, uuid).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(verifier_list(&s).await, serde_json::json!([]));
    let (code, rec) = s.registrar_get(&format!("/v2.6/agents/{uuid}")).await;
    assert_eq!(code, 200, "{rec}");

    // After the delete, cvstatus reports the agent as absent (exit 1, upstream's wording).
    let run = s.keylime.tenant(&["-c", "cvstatus", "-u", uuid]).await;
    note(&run, "cvstatus after delete");
    assert_failed_with(&run, "does not exist on");

    println!("upstream tenant runs:");
    for (what, d) in &timings {
        println!("  {what:<24} {d:.1?}");
    }
    println!("total {:.1?}", t0.elapsed());
}
