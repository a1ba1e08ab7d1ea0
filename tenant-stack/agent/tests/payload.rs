//! Payload delivery (paper §3, docs/keylime-wire.md §4.5): U + V → K → the zip payload is
//! extracted into the secure mount and its autorun.sh runs; zip-slip, a tampered payload and a
//! wrong U are refused; after a reboot (swtpm restart, NV kept) V alone restores the payload.
//! Real swtpm, vouch-registrar in-process, the agent in-process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vouch_agent::payload::{build_zip, KEY_FILE, PAYLOAD_FILE, UNZIPPED};
use vouch_agent::secure_mount::Backing;
use vouch_agent::RunningAgent;
use vouch_core::keylime::{
    auth_tag, challenge_hmac, encrypt_payload, encrypt_share_to_nk, BootstrapKey, Challenge,
    EncryptedPayload, KeyShare,
};
use vouch_registrar::config::Config;
use vouch_registrar::server::Registrar;
use vouch_testkit::Swtpm;

struct Env {
    swtpm: Swtpm,
    registrar: Registrar,
    state: tempfile::TempDir,
    uuid: String,
}

impl Env {
    async fn new(uuid: &str) -> (Self, tempfile::TempDir) {
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
        let env = Self {
            swtpm,
            registrar,
            state: tempfile::tempdir().unwrap(),
            uuid: uuid.into(),
        };
        (env, reg_state)
    }

    fn secure(&self) -> PathBuf {
        self.state.path().join("secure")
    }

    fn unzipped(&self) -> PathBuf {
        self.secure().join(UNZIPPED)
    }

    async fn agent(&self) -> RunningAgent {
        let url = format!("http://{}", self.registrar.http_addr());
        let mut c = agent_config(&self.swtpm, &url, &self.uuid, self.state.path());
        c.secure_mount = self.secure();
        c.enable_insecure_payload = true;
        c.autorun_timeout_secs = 20;
        vouch_agent::start(c).await.unwrap()
    }
}

async fn post(
    agent: &RunningAgent,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(agent_url(agent, path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(serde_json::Value::Null))
}

async fn post_u(
    agent: &RunningAgent,
    u: &KeyShare,
    tag_key: &BootstrapKey,
    uuid: &str,
    payload: Option<&EncryptedPayload>,
) -> (u16, serde_json::Value) {
    let mut body = json!({
        "encrypted_key": encrypt_share_to_nk(agent.nk_pem(), u).unwrap().to_base64(),
        "auth_tag": auth_tag(tag_key, uuid).to_hex(),
    });
    if let Some(p) = payload {
        body["payload"] = json!(p.to_base64());
    }
    post(agent, "/v2.5/keys/ukey", body).await
}

async fn post_v(agent: &RunningAgent, v: &KeyShare) -> (u16, serde_json::Value) {
    post(
        agent,
        "/v2.5/keys/vkey",
        json!({"encrypted_key": encrypt_share_to_nk(agent.nk_pem(), v).unwrap().to_base64()}),
    )
    .await
}

async fn verify(agent: &RunningAgent) -> (u16, serde_json::Value) {
    get(&agent_url(agent, "/v2.5/keys/verify?challenge=chal0123")).await
}

fn expected_hmac(k: &BootstrapKey) -> String {
    challenge_hmac(k, &Challenge::parse("chal0123").unwrap()).to_hex()
}

fn wait_for(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = dir.to_str().unwrap();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(dir) && l.split(' ').nth(2) == Some("tmpfs"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

const AUTORUN: &[u8] = b"#!/bin/sh\necho ran > marker\npwd > cwd\necho hello from autorun\n";

fn zip_payload() -> Vec<u8> {
    build_zip(&[
        ("hello.txt", b"hello payload", 0o644),
        ("conf/app.conf", b"x=1", 0o644),
        ("autorun.sh", AUTORUN, 0o644),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_payload_is_extracted_and_autorun_runs() {
    let (env, _reg) = Env::new("vouch-agent-payload-zip").await;
    let agent = env.agent().await;
    let k = BootstrapKey::generate().unwrap();
    let (u, v) = k.split().unwrap();
    let payload = encrypt_payload(&k, &zip_payload()).unwrap();

    let (code, body) = post_u(&agent, &u, &k, &env.uuid, Some(&payload)).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = verify(&agent).await;
    assert_eq!(code, 400, "no K before V");
    let (code, body) = post_v(&agent, &v).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = verify(&agent).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"]["hmac"], expected_hmac(&k));

    let dir = env.unzipped();
    assert_eq!(
        std::fs::read(dir.join("hello.txt")).unwrap(),
        b"hello payload"
    );
    assert_eq!(std::fs::read(dir.join("conf/app.conf")).unwrap(), b"x=1");
    assert_eq!(
        std::fs::read(dir.join(PAYLOAD_FILE)).unwrap(),
        zip_payload()
    );
    assert_eq!(std::fs::read(dir.join(KEY_FILE)).unwrap(), k.as_bytes());
    assert!(wait_for(&dir.join("cwd")), "autorun.sh did not run");
    assert!(wait_for(&dir.join("marker")));
    assert_eq!(
        std::fs::read_to_string(dir.join("marker")).unwrap(),
        "ran\n"
    );
    // cwd = the extraction dir.
    let cwd = std::fs::read_to_string(dir.join("cwd")).unwrap();
    assert_eq!(
        Path::new(cwd.trim()),
        std::fs::canonicalize(&dir).unwrap().as_path()
    );

    // Root here: the secure mount is a tmpfs we mounted, and unmounted at shutdown. (The
    // fallback when mount fails is covered by secure_mount's unit test.)
    let secure = std::fs::canonicalize(env.secure()).unwrap();
    if is_root() {
        assert_eq!(agent.secure_mount().backing(), Some(Backing::MountedByUs));
        assert!(
            mounted(&secure),
            "tmpfs not mounted on {}",
            secure.display()
        );
    } else {
        assert_eq!(
            agent.secure_mount().backing(),
            Some(Backing::PlainDirectory)
        );
    }
    agent.shutdown().await.unwrap();
    assert!(!mounted(&secure), "tmpfs left mounted");
    if is_root() {
        assert!(
            !dir.join("hello.txt").exists(),
            "the tmpfs took the files with it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_slip_is_refused() {
    let (env, _reg) = Env::new("vouch-agent-payload-slip").await;
    let agent = env.agent().await;
    let k = BootstrapKey::generate().unwrap();
    let (u, v) = k.split().unwrap();
    let zip = build_zip(&[
        ("ok.txt", b"fine", 0o644),
        ("../escape.txt", b"evil", 0o644),
        ("autorun.sh", AUTORUN, 0o755),
    ])
    .unwrap();
    let payload = encrypt_payload(&k, &zip).unwrap();
    assert_eq!(
        post_u(&agent, &u, &k, &env.uuid, Some(&payload)).await.0,
        200
    );
    let (code, body) = post_v(&agent, &v).await;
    assert_eq!(code, 400, "{body}");
    let status = body["status"].as_str().unwrap();
    assert!(
        status.contains("\"../escape.txt\"") && status.contains("'..' component"),
        "{status}"
    );
    assert!(!env.unzipped().exists(), "nothing extracted");
    assert!(!env.secure().join("escape.txt").exists());
    assert!(!env.state.path().join("escape.txt").exists());

    // Absolute names too.
    let zip = build_zip(&[("/tmp/vouch-abs-escape", b"evil", 0o644)]).unwrap();
    let k2 = BootstrapKey::generate().unwrap();
    let (u2, v2) = k2.split().unwrap();
    let payload = encrypt_payload(&k2, &zip).unwrap();
    assert_eq!(
        post_u(&agent, &u2, &k2, &env.uuid, Some(&payload)).await.0,
        200
    );
    let (code, body) = post_v(&agent, &v2).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["status"].as_str().unwrap().contains("absolute path"),
        "{body}"
    );
    assert!(!Path::new("/tmp/vouch-abs-escape").exists());
    agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_is_refused() {
    let (env, _reg) = Env::new("vouch-agent-payload-tamper").await;
    let agent = env.agent().await;
    let k = BootstrapKey::generate().unwrap();
    let (u, v) = k.split().unwrap();
    let mut bytes = encrypt_payload(&k, &zip_payload()).unwrap().into_bytes();
    bytes[40] ^= 0x01; // in the ciphertext, after the 16-byte IV
    let payload = EncryptedPayload::from_bytes(bytes).unwrap();
    assert_eq!(
        post_u(&agent, &u, &k, &env.uuid, Some(&payload)).await.0,
        200
    );
    let (code, body) = post_v(&agent, &v).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["status"]
            .as_str()
            .unwrap()
            .contains("failed AES-GCM authentication"),
        "{body}"
    );
    assert!(!env.unzipped().exists(), "nothing extracted");
    agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_u_never_combines() {
    let (env, _reg) = Env::new("vouch-agent-payload-wrong-u").await;
    let agent = env.agent().await;
    let k = BootstrapKey::generate().unwrap();
    let (u, v) = k.split().unwrap();
    let other = BootstrapKey::generate().unwrap();
    let payload = encrypt_payload(&k, &zip_payload()).unwrap();
    // The auth tag is for another K: the agent cannot tell until V arrives, then no pair matches.
    assert_eq!(
        post_u(&agent, &u, &other, &env.uuid, Some(&payload))
            .await
            .0,
        200
    );
    assert_eq!(post_v(&agent, &v).await.0, 200);
    let (code, body) = verify(&agent).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["status"], "Bootstrap key not yet available.");
    assert!(!env.unzipped().exists(), "nothing extracted");
    agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reboot_v_alone_restores_the_payload() {
    let (mut env, _reg) = Env::new("vouch-agent-payload-reboot").await;
    let agent = env.agent().await;
    let k = BootstrapKey::generate().unwrap();
    let (u, v) = k.split().unwrap();
    let payload = encrypt_payload(&k, &zip_payload()).unwrap();
    assert_eq!(
        post_u(&agent, &u, &k, &env.uuid, Some(&payload)).await.0,
        200
    );
    assert_eq!(post_v(&agent, &v).await.0, 200);
    let (code, first) = verify(&agent).await;
    assert_eq!(code, 200, "{first}");
    assert!(wait_for(&env.unzipped().join("marker")));
    assert_eq!(
        std::fs::read(env.state.path().join("encrypted_payload")).unwrap(),
        payload.as_bytes()
    );

    // Reboot: agent down, TPM restarted (NV kept, PCRs and the NK gone), secure mount empty.
    agent.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(env.unzipped());
    env.swtpm.restart().unwrap();
    let agent = env.agent().await;
    let (code, _) = verify(&agent).await;
    assert_eq!(code, 400, "no K before V");
    assert!(!env.unzipped().exists());

    // The verifier re-sends V (encrypted to the new NK); no tenant involved.
    let (code, body) = post_v(&agent, &v).await;
    assert_eq!(code, 200, "{body}");
    let (code, again) = verify(&agent).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["results"]["hmac"], first["results"]["hmac"], "same K");
    assert_eq!(again["results"]["hmac"], expected_hmac(&k));
    let dir = env.unzipped();
    assert_eq!(
        std::fs::read(dir.join("hello.txt")).unwrap(),
        b"hello payload"
    );
    assert!(wait_for(&dir.join("marker")), "autorun.sh ran again");

    // A new U replaces the one in NV.
    let k2 = BootstrapKey::generate().unwrap();
    let (u2, v2) = k2.split().unwrap();
    assert_eq!(post_u(&agent, &u2, &k2, &env.uuid, None).await.0, 200);
    agent.shutdown().await.unwrap();
    assert!(!env.state.path().join("encrypted_payload").exists());
    env.swtpm.restart().unwrap();
    let agent = env.agent().await;
    assert_eq!(post_v(&agent, &v2).await.0, 200);
    let (code, body) = verify(&agent).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["results"]["hmac"], expected_hmac(&k2));
    agent.shutdown().await.unwrap();
}
