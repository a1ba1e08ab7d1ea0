//! `vouch agent add --runtime-policy` end to end, every part real: a vouch-agent on swtpm serves
//! an IMA log whose entries the test extends into the swtpm's PCR 10 as the kernel would; the
//! policy is made from that log by `vouch policy runtime create`; vouch-verifier replays the log
//! against each quote. `vouch agent add --mb-policy` the same way: the agent serves a UEFI event
//! log whose extends the test replays into its swtpm as firmware would. Then bad policy files:
//! each refused by the binary with a precise message before the agent or the verifier hears
//! anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tenant_env;

use reqwest::Method;
use std::io::Write;
use std::path::Path;
use tenant_env::*;
use vouch_cli::tenant::Tenant;
use vouch_core::api::registrar::AgentId;
use vouch_core::api::verifier::OperationalState;
use vouch_core::api::version::SERVER_SERVED_VERSIONS;
use vouch_core::eventlog::sample::SampleBoot;
use vouch_core::ima::testlog::{LogWriter, Logged};
use vouch_core::tpm::HashAlg;

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00006";
const BAD_ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00007";
const MB_ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00008";
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The kernel's part: extend PCR 10 of the agent's TPM, append the line to the log file.
async fn measure(agent: &TestAgent, log: &Path, logged: &Logged) {
    agent
        .agent
        .tpm()
        .pcr_extend(
            10,
            &[(HashAlg::Sha256, logged.extend_value(HashAlg::Sha256))],
        )
        .await
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(f, "{}", logged.line).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_with_runtime_policy_attests_until_a_file_outside_it_runs() {
    let env = Env::start().await;
    let ima = tempfile::tempdir().unwrap();
    let log_path = ima.path().join("ascii_runtime_measurements");
    let l = log_path.clone();
    let agent = env.agent_with(None, ID, move |c| c.ima_ml_path = l).await;
    let verifier = env.verifier().await;
    let v = verifier.endpoint();

    // Boot: boot_aggregate and two programs, measured before the tenant adds the node.
    let mut log = LogWriter::new();
    let boot = log.boot_aggregate(&[0x11; 32]);
    measure(&agent, &log_path, &boot).await;
    for (path, content) in [
        ("/usr/bin/bash", &b"bash"[..]),
        ("/usr/lib/libc.so.6", b"libc"),
    ] {
        let e = log.file(path, content);
        measure(&agent, &log_path, &e).await;
    }
    // The known-good node's log is the policy.
    let policy = ima.path().join("policy.json");
    let (ok, _, err) = env
        .vouch(
            &v,
            &[
                "policy",
                "runtime",
                "create",
                "--ima-log",
                log_path.to_str().unwrap(),
                "-o",
                policy.to_str().unwrap(),
            ],
        )
        .await;
    assert!(ok, "{err}");

    env.add_agent(
        &v,
        ID,
        &[
            "--runtime-policy",
            policy.to_str().unwrap(),
            "--runtime-policy-name",
            "cli-runtime",
        ],
        &[
            r#"tpm_policy {"mask":"0x400"}"#,
            "runtime policy \"cli-runtime\" from",
            "3 path(s) with digests",
            "PCR 10 in the mask",
            "proved it holds the bootstrap key",
        ],
    )
    .await;

    let s = env.wait_status(&v, ID, attesting).await;
    assert_eq!(s["has_runtime_policy"], 1, "{s}");
    assert_eq!(s["has_mb_refstate"], 0, "{s}");
    assert_eq!(s["attestation_status"], "PASS", "{s}");
    let tenant = Tenant::new(&env.tenant_config(&v)).unwrap();
    let id = AgentId::parse(ID).unwrap();
    let status = tenant.verifier_status(&id).await.unwrap();
    assert_eq!(status.operational_state, OperationalState::GetQuote);
    assert_eq!(status.operational_state.code(), 3);
    // Stored under the name given, as the file said.
    let prefix = tenant
        .verifier
        .negotiate(&SERVER_SERVED_VERSIONS)
        .await
        .unwrap()
        .url_prefix();
    let stored = tenant
        .verifier
        .call::<()>(
            Method::GET,
            &format!("{prefix}/allowlists/cli-runtime"),
            None,
        )
        .await
        .unwrap()
        .results;
    let stored: serde_json::Value =
        serde_json::from_str(stored["runtime_policy"].as_str().unwrap()).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
    assert_eq!(stored, file);

    // A program outside the policy runs: Invalid Quote (9), blamed on the runtime policy.
    let evil = log.file("/usr/bin/evil", b"rootkit");
    measure(&agent, &log_path, &evil).await;
    let s = env
        .wait_status(&v, ID, |s| s["operational_state"] == "Invalid Quote")
        .await;
    assert_eq!(s["last_event_id"], "ima.runtime_policy", "{s}");
    let reason = s["failure_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("/usr/bin/evil"), "{s}");
    let status = tenant.verifier_status(&id).await.unwrap();
    assert_eq!(status.operational_state.code(), 9);
    verifier.verifier.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_with_mb_policy_attests_the_boot_and_fails_an_edited_log() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let boot = SampleBoot::default();
    let built = boot.log(&[HashAlg::Sha256]).build();
    let log_path = dir.path().join("binary_bios_measurements");
    std::fs::write(&log_path, &built.bytes).unwrap();
    let l = log_path.clone();
    let agent = env
        .agent_with(None, MB_ID, move |c| c.measuredboot_ml_path = l)
        .await;
    // The firmware's part: every extend of the log, into the agent's TPM.
    for e in &built.extends {
        agent
            .agent
            .tpm()
            .pcr_extend(e.pcr, &e.digests)
            .await
            .unwrap();
    }
    let refstate = dir.path().join("refstate.json");
    std::fs::write(&refstate, boot.refstate().to_string()).unwrap();
    let verifier = env.verifier().await;
    let v = verifier.endpoint();

    env.add_agent(
        &v,
        MB_ID,
        &[
            "--mb-policy",
            refstate.to_str().unwrap(),
            "--mb-policy-name",
            "cli-boot",
        ],
        &[
            r#"tpm_policy {"mask":"0xfbff"}"#,
            "measured-boot policy \"cli-boot\" from",
            "refstate for the example policy",
            "proved it holds the bootstrap key",
        ],
    )
    .await;
    let s = env.wait_status(&v, MB_ID, attesting).await;
    assert_eq!(s["has_mb_refstate"], 1, "{s}");
    assert_eq!(s["has_runtime_policy"], 0, "{s}");
    assert_eq!(s["attestation_status"], "PASS", "{s}");

    // One byte of shim's digest edited in the log: it no longer replays to the quoted PCR 4.
    let shim = HashAlg::Sha256.digest(&boot.shim);
    let at = built
        .bytes
        .windows(shim.len())
        .position(|w| w == shim.as_slice())
        .unwrap();
    let mut edited = built.bytes.clone();
    edited[at] ^= 0x01;
    std::fs::write(&log_path, &edited).unwrap();
    let s = env
        .wait_status(&v, MB_ID, |s| s["operational_state"] == "Invalid Quote")
        .await;
    assert_eq!(s["last_event_id"], "measured_boot.invalid_pcr_4", "{s}");
    let reason = s["failure_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("PCR 4 (sha256)"), "{s}");
    verifier.verifier.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policy_files_are_refused_before_anything_is_contacted() {
    let env = Env::start().await;
    let agent = env.agent(None, BAD_ID).await;
    // The tenant reaches the agent only through this recorder.
    let proxy = Proxy::start(agent.addr(), None).await;
    let port = proxy.addr.port().to_string();
    let verifier = env.verifier().await;
    let v = verifier.endpoint();

    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let truncated = file("truncated.json", r#"{"meta": {"version": 1}, "digests": {"#);
    let bad_digest = file(
        "bad-digest.json",
        &bash_only_runtime_policy().replace(&"ab".repeat(32), "not-a-digest"),
    );
    let typo = file("refstate.json", r#"{"has_secureboot": true, "kernal": []}"#);
    let empty_refstate = file("empty.json", "{}");
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    let pin15 = format!(r#"{{"15": ["{ZERO}"]}}"#);

    let cases: [(&[&str], &str); 6] = [
        (
            &["--runtime-policy", &truncated],
            "runtime policy is not valid JSON",
        ),
        (&["--runtime-policy", &bad_digest], "not-a-digest"),
        (&["--mb-policy", &typo], "unknown field `kernal`"),
        (&["--runtime-policy", missing], "cannot read it"),
        (&["--mb_refstate", missing], "cannot read it"),
        (
            &["--tpm-policy", &pin15, "--mb-policy", &empty_refstate],
            "--tpm-policy pins PCR 15",
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec!["agent", "add", "--uuid", BAD_ID, "--ip", "127.0.0.1"];
        args.extend(["--port", &port]);
        args.extend_from_slice(flags);
        let (ok, out, err) = env.vouch(&v, &args).await;
        eprintln!("{flags:?} → {}", err.trim());
        assert!(!ok, "{flags:?} accepted:\n{out}");
        assert!(err.contains(want), "{flags:?}: no {want:?} in {err}");
        // One line, naming the flag and the file.
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        let flag = if flags[0] == "--mb_refstate" {
            "--mb-policy"
        } else {
            flags[flags.len() - 2]
        };
        assert!(err.contains(flag), "{flag} not named in {err}");
        assert!(out.is_empty(), "nothing done, nothing printed: {out}");
    }
    assert!(
        proxy.seen().is_empty(),
        "agent contacted: {:?}",
        proxy.seen()
    );
    let (ok, out, err) = env.vouch(&v, &["agent", "list"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "", "the verifier has no agent");
    verifier.verifier.shutdown().await.unwrap();
}
