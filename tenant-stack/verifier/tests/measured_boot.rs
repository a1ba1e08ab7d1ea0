//! Measured boot end to end: a vouch-agent serves a UEFI event log (`SampleBoot`, a shim +
//! grub + Linux boot) whose extends the test replays into the agent's own swtpm, as firmware
//! would; the verifier replays the log against every quote and checks it against an
//! upstream-format refstate (`mb_policy`), with the `/mbpolicies` API as upstream's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use vouch_core::eventlog::build::BuiltLog;
use vouch_core::eventlog::sample::SampleBoot;
use vouch_core::ima::testlog::LogWriter;
use vouch_core::ima::PolicyBuilder;
use vouch_core::tpm::HashAlg;
use vouch_registrar::server::Registrar;

const GET_QUOTE: u64 = 3;
const INVALID_QUOTE: u64 = 9;
const T: Duration = Duration::from_secs(30);
/// PCRs 0-9 and 11-15: what upstream's tenant adds to the mask with a measured boot policy
/// (`cli/policies.py`, `config.MEASUREDBOOT_PCRS`).
const MB_MASK: &str = "0xfbff";

/// An agent on a swtpm that "booted" `SampleBoot::default()`: every extend of the log is in
/// its PCRs. With `serve_log`, the log is at the agent's `measuredboot_ml_path`.
struct Booted {
    a: TestAgent,
    log_path: PathBuf,
    built: BuiltLog,
    _dir: tempfile::TempDir,
}

async fn boot(registrar: &Registrar, uuid: &str, serve_log: bool) -> Booted {
    boot_with(registrar, uuid, serve_log, |_| {}).await
}

/// [`boot`] with the agent config adjusted by `tune`.
async fn boot_with(
    registrar: &Registrar,
    uuid: &str,
    serve_log: bool,
    tune: impl FnOnce(&mut vouch_agent::config::AgentConfig),
) -> Booted {
    let dir = tempdir();
    let log_path = dir.path().join("binary_bios_measurements");
    let built = SampleBoot::default().log(&[HashAlg::Sha256]).build();
    if serve_log {
        std::fs::write(&log_path, &built.bytes).unwrap();
    }
    let l = log_path.clone();
    let a = TestAgent::start_with(registrar, uuid, move |c| {
        c.measuredboot_ml_path = l;
        tune(c);
    })
    .await;
    for e in &built.extends {
        a.agent.tpm().pcr_extend(e.pcr, &e.digests).await.unwrap();
    }
    Booted {
        a,
        log_path,
        built,
        _dir: dir,
    }
}

/// The sample boot with another kernel.
fn other_kernel() -> SampleBoot {
    SampleBoot {
        kernel: b"vmlinuz-6.2.0".to_vec(),
        ..SampleBoot::default()
    }
}

fn refstate(s: &SampleBoot) -> String {
    s.refstate().to_string()
}

/// The add body with a measured boot policy (`mb_policy` the refstate JSON text, as the tenant
/// sends it) and the upstream tenant's mask.
fn add_body_mb(a: &TestAgent, mb_policy: Option<&str>, name: &str) -> Value {
    let mut body = add_body(a.port(), &a.aik_tpm, None, &mask_policy(MB_MASK));
    body["mb_policy"] = json!(mb_policy);
    body["mb_policy_name"] = json!(name);
    body
}

fn mask_policy(mask: &str) -> String {
    json!({ "mask": mask }).to_string()
}

async fn start_env() -> (TestRegistrar, TestVerifier) {
    (
        TestRegistrar::start().await,
        TestVerifier::fresh(|_| {}).await,
    )
}

async fn mb_names(v: &TestVerifier) -> Value {
    let (code, r) = v.send(Method::GET, "/v2.6/mbpolicies/", None).await;
    assert_eq!(code, 200, "{r}");
    r["results"]["mbpolicy names"].clone()
}

async fn mb_shown(v: &TestVerifier, name: &str) -> (u16, Value) {
    v.send(Method::GET, &format!("/v2.6/mbpolicies/{name}"), None)
        .await
}

/// Wait for INVALID_QUOTE; the status must name `event` and its reason start with `starts`
/// and contain each of `contains`. Returns the status.
async fn invalid_quote(
    v: &TestVerifier,
    uuid: &str,
    event: &str,
    starts: &str,
    contains: &[&str],
) -> Value {
    let st = v.wait_state(uuid, INVALID_QUOTE, T).await;
    assert_eq!(st["last_event_id"], event, "{st}");
    let reason = st["failure_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with(starts), "{st}");
    for c in contains {
        assert!(reason.contains(c), "want {c:?} in {st}");
    }
    assert_eq!(st["severity_level"], 6, "{st}");
    assert_eq!(st["has_mb_refstate"], 1, "{st}");
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_boot_attests_bad_adds_store_nothing_and_an_edited_log_fails() {
    let (registrar, v) = start_env().await;
    let b = boot(&registrar, "mb-good", true).await;
    let a = &b.a;
    let good = refstate(&SampleBoot::default());

    // (f) Refused add bodies: 400/404/409 naming the cause; neither agent nor policy stored.
    let (code, r) = v
        .send(
            Method::POST,
            "/v2.6/mbpolicies/taken",
            Some(json!({ "mb_policy": good })),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let mut no_pcr14 = add_body_mb(a, Some(&good), "");
    no_pcr14["tpm_policy"] = json!(mask_policy("0x3ff"));
    let cases = [
        (
            add_body_mb(a, Some("{\"has_secureboot\": true,"), ""),
            400,
            "Invalid agent data: mb_policy: measured boot policy (refstate) for engine \"example\" is refused: not JSON",
        ),
        (
            add_body_mb(a, Some("{\"has_secureboot\": true, \"kernelz\": []}"), ""),
            400,
            "kernelz",
        ),
        (
            add_body_mb(a, Some("{\"kernels\": [{\"shim_authcode_sha256\": \"0x12\"}]}"), ""),
            400,
            "Invalid agent data: mb_policy: ",
        ),
        (no_pcr14, 400, "Invalid agent data: tpm_policy: mask: the measured boot policy (example) reads PCRs 14"),
        (
            add_body_mb(a, None, "missing"),
            404,
            "Could not find mb_policy with name missing!",
        ),
        (
            add_body_mb(a, Some(&good), "taken"),
            409,
            "mb_policy with name taken already exists. Please use a different name",
        ),
        (add_body_mb(a, Some(&good), "bad/name"), 400, "mb_policy_name"),
    ];
    for (body, want, msg) in cases {
        let (code, r) = v.add(&a.uuid, body.clone()).await;
        assert_eq!(code, want, "{r}");
        let status = r["status"].as_str().unwrap();
        assert!(status.contains(msg), "want {msg:?} in {status:?}");
        assert_eq!(v.status(&a.uuid).await.0, 404, "agent stored after {r}");
        assert_eq!(mb_names(&v).await, json!(["taken"]), "after {r}");
    }

    // (a) No name, a refstate: stored under the agent's id; the boot attests.
    let (code, r) = v.add(&a.uuid, add_body_mb(a, Some(&good), "")).await;
    assert_eq!(code, 200, "{r}");
    let st = v
        .wait_for(&a.uuid, T, |s| {
            s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(3)
        })
        .await;
    assert_eq!(st["has_mb_refstate"], 1, "{st}");
    assert_eq!(st["has_runtime_policy"], 0, "{st}");
    assert_eq!(st["last_event_id"], Value::Null, "{st}");
    assert_eq!(mb_names(&v).await, json!(["mb-good", "taken"]));
    let (code, shown) = mb_shown(&v, "mb-good").await;
    assert_eq!(code, 200);
    assert_eq!(
        shown["results"],
        json!({"name": "mb-good", "mb_policy": good})
    );

    // (b) One digest byte of the log edited (shim's, in PCR 4): the log no longer replays to
    // the quote.
    let shim = HashAlg::Sha256.digest(&SampleBoot::default().shim);
    let at = b
        .built
        .bytes
        .windows(shim.len())
        .position(|w| w == shim.as_slice())
        .unwrap();
    let mut edited = b.built.bytes.clone();
    edited[at] ^= 0x01;
    std::fs::write(&b.log_path, &edited).unwrap();
    let st = invalid_quote(
        &v,
        &a.uuid,
        "measured_boot.invalid_pcr_4",
        "the boot event log does not match the quote: PCR 4 (sha256) replayed from the event log is 0x",
        &["but the quote says 0x"],
    )
    .await;
    // Stored state otherwise intact: policy, mask, refstate flag.
    assert_eq!(st["tpm_policy"], mask_policy(MB_MASK));
    assert_eq!(
        mb_shown(&v, "mb-good").await.1["results"]["mb_policy"],
        good
    );
    let (code, r) = v
        .send(Method::DELETE, "/v2.6/mbpolicies/mb-good", None)
        .await;
    assert_eq!(code, 409, "{r}");
    assert_eq!(
        r["status"],
        "Can't delete mb_policy as it's currently in use by agent mb-good"
    );
    b.a.agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refstates_that_disallow_the_boot_fail_naming_the_check() {
    let (registrar, v) = start_env().await;

    // (c) Name and refstate: a refstate for another kernel.
    let b = boot(&registrar, "mb-kernel", true).await;
    let other = other_kernel();
    let (code, r) = v
        .add(
            &b.a.uuid,
            add_body_mb(&b.a, Some(&refstate(&other)), "other-kernel"),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    let st = invalid_quote(
        &v,
        &b.a.uuid,
        "measured_boot.policy_example",
        "Boot attestation failed (measured boot policy example): boot application sha256:",
        &["(event ", "/boot/vmlinuz-6.1.0) is not allowed"],
    )
    .await;
    assert_eq!(st["attestation_count"], 0, "{st}");
    assert_eq!(mb_names(&v).await, json!(["other-kernel"]));

    // Name only: a stored refstate that wants secure boot off.
    let c = boot(&registrar, "mb-sb", true).await;
    let sb_off = SampleBoot {
        secure_boot: false,
        ..SampleBoot::default()
    };
    let (code, r) = v
        .send(
            Method::POST,
            "/v2.6/mbpolicies/sb-off",
            Some(json!({ "mb_policy": refstate(&sb_off) })),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let (code, r) = v.add(&c.a.uuid, add_body_mb(&c.a, None, "sb-off")).await;
    assert_eq!(code, 200, "{r}");
    invalid_quote(
        &v,
        &c.a.uuid,
        "measured_boot.policy_example",
        "Boot attestation failed (measured boot policy example): ",
        &[
            "SecureBoot is 1 (enabled) (event ",
            "but the policy has has_secureboot: false",
        ],
    )
    .await;
    let (code, _) = v
        .send(Method::DELETE, "/v2.6/mbpolicies/sb-off", None)
        .await;
    assert_eq!(code, 409);

    // Deleting the agent frees its policy.
    let (code, _) = v
        .send(Method::DELETE, &format!("/v2.6/agents/{}", c.a.uuid), None)
        .await;
    assert_eq!(code, 200);
    let (code, _) = v
        .send(Method::DELETE, "/v2.6/mbpolicies/sb-off", None)
        .await;
    assert_eq!(code, 204);
    assert_eq!(mb_names(&v).await, json!(["other-kernel"]));
    b.a.agent.shutdown().await.unwrap();
    c.a.agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_measured_boot_policy_without_a_log_fails() {
    let (registrar, v) = start_env().await;
    // (d) The PCRs were extended, but the agent has no event log to serve.
    let b = boot(&registrar, "mb-nolog", false).await;
    let good = refstate(&SampleBoot::default());
    let (code, r) = v.add(&b.a.uuid, add_body_mb(&b.a, Some(&good), "")).await;
    assert_eq!(code, 200, "{r}");
    invalid_quote(
        &v,
        &b.a.uuid,
        "pcr_validation.unused_pcr_0",
        "Measured Boot PCR 0 in policy, but no measurement list provided: the agent sent no mb_measurement_list",
        &["PCRs 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14 cannot be checked"],
    )
    .await;
    assert_eq!(
        mb_shown(&v, "mb-nolog").await.1["results"]["mb_policy"],
        good
    );

    // Once the log is there, reactivating attests.
    std::fs::write(&b.log_path, &b.built.bytes).unwrap();
    let (code, _) = v
        .send(
            Method::PUT,
            &format!("/v2.6/agents/{}/reactivate", b.a.uuid),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let st = v
        .wait_for(&b.a.uuid, T, |s| {
            s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(st["last_event_id"], Value::Null, "{st}");
    b.a.agent.shutdown().await.unwrap();
}

/// An agent that booted the sample and whose IMA log starts with the kernel's boot_aggregate
/// (sha256 over PCRs 0-9, as the firmware left them) followed by bash, added with a runtime
/// policy that lists bash but no boot_aggregate and, with `with_mb`, the sample's refstate.
async fn add_ima_and_mb(
    registrar: &Registrar,
    v: &TestVerifier,
    uuid: &str,
    with_mb: bool,
) -> (Booted, tempfile::TempDir) {
    let dir = tempdir();
    let ima_path = dir.path().join("ascii_runtime_measurements");
    let l = ima_path.clone();
    let b = boot_with(registrar, uuid, true, move |c| c.ima_ml_path = l).await;
    let pcrs: Vec<&[u8]> = (0..10)
        .map(|i| b.built.pcrs.get(HashAlg::Sha256, i).unwrap())
        .collect();
    let aggregate = HashAlg::Sha256.digest_parts(&pcrs);
    let mut log = LogWriter::new();
    let entries = [
        log.boot_aggregate(&aggregate),
        log.file("/usr/bin/bash", b"bash"),
    ];
    let mut f = std::fs::File::create(&ima_path).unwrap();
    for e in &entries {
        b.a.agent
            .tpm()
            .pcr_extend(10, &[(HashAlg::Sha256, e.extend_value(HashAlg::Sha256))])
            .await
            .unwrap();
        writeln!(f, "{}", e.line).unwrap();
    }
    drop(f);
    let mut p = PolicyBuilder::new();
    p.add_digest(
        "/usr/bin/bash",
        &hex::encode(HashAlg::Sha256.digest(b"bash")),
    )
    .unwrap();
    let runtime = b64(p.build(None).unwrap().to_json().as_bytes());
    // PCRs 0-15: measured boot's and IMA's.
    let mut body = add_body(b.a.port(), &b.a.aik_tpm, None, &mask_policy("0xffff"));
    body["runtime_policy"] = json!(runtime);
    if with_mb {
        body["mb_policy"] = json!(refstate(&SampleBoot::default()));
    }
    let (code, r) = v.add(&b.a.uuid, body).await;
    assert_eq!(code, 200, "{r}");
    (b, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_log_vouches_for_imas_boot_aggregate() {
    let (registrar, v) = start_env().await;
    // Only the event log, replayed to the quote, can vouch for the boot_aggregate entry.
    let (with, _d1) = add_ima_and_mb(&registrar, &v, "mb-ima", true).await;
    let st = v
        .wait_for(&with.a.uuid, T, |s| {
            s["operational_state"] == GET_QUOTE && s["attestation_count"].as_u64() >= Some(2)
                || s["operational_state"] == INVALID_QUOTE
        })
        .await;
    assert_eq!(st["operational_state"], GET_QUOTE, "{st}");
    assert_eq!(st["has_mb_refstate"], 1);
    assert_eq!(st["has_runtime_policy"], 1);

    // Control: the same node without a measured boot policy.
    let (without, _d2) = add_ima_and_mb(&registrar, &v, "ima-only", false).await;
    let st = v.wait_state(&without.a.uuid, INVALID_QUOTE, T).await;
    assert_eq!(st["last_event_id"], "ima.runtime_policy", "{st}");
    let reason = st["failure_reason"].as_str().unwrap();
    assert!(reason.contains("boot_aggregate"), "{st}");
    assert_eq!(st["has_mb_refstate"], 0);
    with.a.agent.shutdown().await.unwrap();
    without.a.agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpolicies_api_as_upstream_and_bad_refstates_change_nothing() {
    let v = TestVerifier::fresh(|_| {}).await;
    let good = refstate(&SampleBoot::default());
    let other = refstate(&other_kernel());
    let body = |r: &str| Some(json!({ "mb_policy": r }));
    // `method /mbpolicies/{name}` answers `code` and, if given, the envelope status `status`.
    let call = |method: Method, name: &str, body: Option<Value>, code: u16, status: &str| {
        let (v, path, status) = (&v, format!("/v2.6/mbpolicies/{name}"), status.to_owned());
        async move {
            let (got, r) = v.send(method.clone(), &path, body).await;
            assert_eq!(got, code, "{method} {path} → {r}");
            if !status.is_empty() {
                assert_eq!(r["status"], status, "{method} {path} → {r}");
            }
            r
        }
    };

    let r = call(Method::POST, "p1", body(&good), 201, "Created").await;
    assert_eq!(r, json!({"code": 201, "status": "Created", "results": {}}));
    let exists = "Measured boot policy with name p1 already exists";
    call(Method::POST, "p1", body(&other), 409, exists).await;
    let r = call(Method::GET, "p1", None, 200, "Success").await;
    assert_eq!(r["results"], json!({"name": "p1", "mb_policy": good}));
    // `{}` (check nothing) is a valid refstate, as upstream.
    call(Method::POST, "empty", body("{}"), 201, "").await;
    assert_eq!(mb_names(&v).await, json!(["empty", "p1"]));

    call(Method::PUT, "p1", body(&other), 201, "").await;
    assert_eq!(mb_shown(&v, "p1").await.1["results"]["mb_policy"], other);
    // Upstream answers 409 (not 404) to a PUT of an unknown name.
    let missing = "Measured boot policy with name nope does not already exist";
    call(Method::PUT, "nope", body(&good), 409, missing).await;
    let not_found = "Measured boot policy nope not found";
    call(Method::GET, "nope", None, 404, not_found).await;

    // Malformed bodies and refstates: 400 naming the cause; nothing stored or replaced.
    let bad: [(Value, &str); 7] = [
        (json!({"mb_policy": "{\"has_secureboot\": tru"}), "mb_policy: measured boot policy (refstate) for engine \"example\" is refused: not JSON"),
        (json!({"mb_policy": "{\"kernelz\": []}"}), "kernelz"),
        (json!({"mb_policy": "{\"has_secureboot\": \"yes\"}"}), "expected a boolean at line 1 column 24"),
        (json!({"mb_policy": "{\"dbx\": [{\"SignatureOwner\": \"nope\", \"SignatureData\": \"0x00\"}]}"}), "\"nope\" is not a GUID"),
        (json!({ "mb_policy": null }), "mb_policy: missing, null or empty"),
        (json!({}), "mb_policy: missing, null or empty"),
        (json!({ "mb_policy": {"has_secureboot": true} }), "mb_policy: must be the refstate's JSON text as a string (as upstream's tenant sends it), not a JSON object"),
    ];
    for (b, why) in &bad {
        for (method, path) in [
            (Method::POST, "/v2.6/mbpolicies/p2"),
            (Method::PUT, "/v2.6/mbpolicies/p1"),
        ] {
            let (code, r) = v.send(method.clone(), path, Some(b.clone())).await;
            assert_eq!(code, 400, "{method} {b} → {r}");
            let status = r["status"].as_str().unwrap();
            assert!(
                status.contains(why),
                "{method} {b}: want {why:?} in {status:?}"
            );
        }
    }
    assert_eq!(mb_names(&v).await, json!(["empty", "p1"]));
    assert_eq!(mb_shown(&v, "p1").await.1["results"]["mb_policy"], other);

    call(Method::POST, "a%2Fb", body(&good), 400, "").await;
    call(Method::DELETE, "nope", None, 404, not_found).await;
    call(Method::DELETE, "p1", None, 204, "").await;
    assert_eq!(mb_shown(&v, "p1").await.0, 404);
    assert_eq!(mb_names(&v).await, json!(["empty"]));
    // The runtime-policy store is separate.
    let (_, r) = v.send(Method::GET, "/v2.6/allowlists/", None).await;
    assert_eq!(r["results"]["runtimepolicy names"], json!([]));
}
