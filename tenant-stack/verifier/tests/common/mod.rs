//! Test harness: vouch-registrar, real swtpms, real vouch-agents (all in process), a verifier
//! with TLS made by vouch-tls, and a tenant-side mTLS client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vouch_agent::config::AgentConfig;
use vouch_agent::RunningAgent;
use vouch_core::api::quote_string::QuoteString;
use vouch_core::tpm::HashAlg;
use vouch_registrar::server::Registrar;
use vouch_testkit::Swtpm;
use vouch_tls::{Ca, ServerNameCheck, SubjectName, TlsDir};
use vouch_verifier::{Config, Verifier};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA with a server certificate for 127.0.0.1 and a client certificate `tenant`.
pub fn make_tls(dir: &Path) -> Ca {
    let ca = Ca::create(dir, "Vouch verifier test CA").unwrap();
    let names: Vec<SubjectName> = ["127.0.0.1", "localhost"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    ca.issue_server(&names).unwrap();
    ca.issue_client("tenant").unwrap();
    ca
}

/// The tenant's HTTPS client: trusts the CA, presents the client certificate.
pub fn tenant_client(tls: &Path) -> reqwest::Client {
    let cfg = TlsDir::new(tls)
        .client_config(ServerNameCheck::Required)
        .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Verifier config for tests: fast polling, temp DB, and agent mTLS off — the test agents
/// serve plain HTTP (`mtls_cert: "disabled"`), which a verifier with `enable_agent_mtls` on
/// refuses to add (`agent_mtls.rs` turns it on).
pub fn verifier_config(tls: &Path, state: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_dir: tls.to_path_buf(),
        state_dir: state.to_path_buf(),
        quote_interval: 0.2,
        retry_interval: 0.2,
        request_timeout: 5.0,
        enable_agent_mtls: false,
        ..Config::default()
    }
}

/// A registrar that trusts the EK CA of its own swtpm (every test swtpm shares it), on a
/// temporary state directory.
pub struct TestRegistrar {
    pub registrar: Registrar,
    _swtpm: Swtpm,
    _state: tempfile::TempDir,
}

impl TestRegistrar {
    pub async fn start() -> TestRegistrar {
        let state = tempdir();
        let swtpm = Swtpm::start().unwrap();
        let registrar = start_registrar(&swtpm, state.path()).await;
        TestRegistrar {
            registrar,
            _swtpm: swtpm,
            _state: state,
        }
    }
}

impl std::ops::Deref for TestRegistrar {
    type Target = Registrar;

    fn deref(&self) -> &Registrar {
        &self.registrar
    }
}

pub async fn start_registrar(swtpm: &Swtpm, state: &Path) -> Registrar {
    Registrar::start(&vouch_registrar::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: state.to_path_buf(),
        ek_ca_dir: swtpm.ca_dir(),
        insecure_admin_over_http: true,
        ..vouch_registrar::config::Config::default()
    })
    .await
    .unwrap()
}

pub fn agent_config(swtpm: &Swtpm, registrar: &str, uuid: &str, state: &Path) -> AgentConfig {
    AgentConfig {
        uuid: uuid.into(),
        listen: "127.0.0.1:0".into(),
        registrar: registrar.into(),
        state_dir: state.to_path_buf(),
        tcti: swtpm.tcti(),
        registrar_retries: 5,
        registrar_retry_ms: 100,
        ..AgentConfig::default()
    }
}

/// One agent on its own swtpm, enrolled with `registrar`.
pub struct TestAgent {
    pub swtpm: Swtpm,
    pub agent: RunningAgent,
    pub uuid: String,
    pub aik_tpm: String,
    _state: tempfile::TempDir,
}

impl TestAgent {
    pub async fn start(registrar: &Registrar, uuid: &str) -> TestAgent {
        Self::start_with(registrar, uuid, |_| {}).await
    }

    /// [`Self::start`] with the agent config adjusted by `tune`.
    pub async fn start_with(
        registrar: &Registrar,
        uuid: &str,
        tune: impl FnOnce(&mut AgentConfig),
    ) -> TestAgent {
        let swtpm = Swtpm::start().unwrap();
        let state = tempfile::tempdir().unwrap();
        let url = format!("http://{}", registrar.http_addr());
        let mut config = agent_config(&swtpm, &url, uuid, state.path());
        tune(&mut config);
        let agent = vouch_agent::start(config).await.unwrap();
        let (code, rec) = get_json(&format!("{url}/v2.6/agents/{uuid}")).await;
        assert_eq!(code, 200, "{rec}");
        let aik_tpm = rec["results"]["aik_tpm"].as_str().unwrap().to_owned();
        TestAgent {
            swtpm,
            agent,
            uuid: uuid.into(),
            aik_tpm,
            _state: state,
        }
    }

    pub fn port(&self) -> u16 {
        self.agent.local_addr().port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.agent.local_addr())
    }

    /// Current PCR `index` (sha256), read through the agent's own integrity quote.
    pub async fn pcr(&self, index: u8) -> String {
        let mask = format!("{:#x}", 1u32 << index);
        let (code, q) = get_json(&self.url(&format!(
            "/v2.5/quotes/integrity?nonce=readpcr0123&mask={mask}&partial=0"
        )))
        .await;
        assert_eq!(code, 200, "{q}");
        let quote = QuoteString::parse(q["results"]["quote"].as_str().unwrap()).unwrap();
        hex::encode(quote.pcrs().get(HashAlg::Sha256, index).unwrap())
    }

    /// Change PCR 17 behind the agent's back: swtpm's control channel runs the
    /// _TPM_Hash_Start/Data/End sequence, which resets and extends PCR 17 (the agent holds the
    /// TPM command connection, and swtpm serves one at a time).
    pub fn change_pcr17(&self) {
        let ctrl = format!("127.0.0.1:{}", self.swtpm.port() + 1);
        let out = std::process::Command::new("swtpm_ioctl")
            .args(["--tcp", &ctrl, "-h", "tampered"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swtpm_ioctl -h: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// The add body exactly as the 7.14.3 tenant sends it (§5.1).
pub fn add_body(port: u16, aik_tpm: &str, v: Option<&str>, tpm_policy: &str) -> Value {
    json!({
        "v": v,
        "cloudagent_ip": "127.0.0.1", "cloudagent_port": port.to_string(),
        "verifier_ip": "127.0.0.1", "verifier_port": "8881",
        "tpm_policy": tpm_policy,
        "runtime_policy": "", "runtime_policy_name": "", "runtime_policy_key": "",
        "mb_policy": null, "mb_policy_name": "",
        "ima_sign_verification_keys": "", "metadata": "{}", "revocation_key": "",
        "accept_tpm_hash_algs": ["sha512", "sha384", "sha256"],
        "accept_tpm_encryption_algs": ["ecc", "rsa"],
        "accept_tpm_signing_algs": ["ecschnorr", "rsassa"],
        "ak_tpm": aik_tpm, "mtls_cert": "disabled", "supported_version": "2.5"
    })
}

/// `{"17": [value], "mask": "0x20000"}`
pub fn pcr17_policy(value: &str) -> String {
    json!({"17": [value], "mask": "0x20000"}).to_string()
}

/// A running verifier plus what a tenant needs to talk to it.
pub struct TestVerifier {
    pub verifier: Verifier,
    pub client: reqwest::Client,
    pub base: String,
    /// TLS and state directories made by [`Self::fresh`].
    _dirs: Vec<tempfile::TempDir>,
}

impl TestVerifier {
    pub async fn start(config: &Config) -> TestVerifier {
        let verifier = Verifier::start(config).await.unwrap();
        let base = format!("https://127.0.0.1:{}", verifier.local_addr().port());
        TestVerifier {
            verifier,
            client: tenant_client(&config.tls_dir),
            base,
            _dirs: Vec::new(),
        }
    }

    /// A verifier with new TLS and state directories and [`verifier_config`] (agent mTLS off)
    /// adjusted by `tune`.
    pub async fn fresh(tune: impl FnOnce(&mut Config)) -> TestVerifier {
        let tls = tempdir();
        make_tls(tls.path());
        let state = tempdir();
        let mut config = verifier_config(tls.path(), state.path());
        tune(&mut config);
        let mut v = Self::start(&config).await;
        v._dirs = vec![tls, state];
        v
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn add(&self, id: &str, body: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            &format!("/v2.6/agents/{id}"),
            Some(body),
        )
        .await
    }

    pub async fn status(&self, id: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, &format!("/v2.6/agents/{id}"), None)
            .await
    }

    /// Poll the status until `pred` holds; panics with the last status after `timeout`.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.status(id).await;
            if code == 200 && pred(&body["results"]) {
                return body["results"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "agent {id}: condition not reached in {timeout:?}; last status {code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_state(&self, id: &str, state: u64, timeout: Duration) -> Value {
        self.wait_for(id, timeout, |s| s["operational_state"] == state)
            .await
    }
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path(p: &tempfile::TempDir) -> PathBuf {
    p.path().to_path_buf()
}
