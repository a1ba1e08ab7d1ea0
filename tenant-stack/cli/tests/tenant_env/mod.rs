//! Shared by the `tenant_*` tests: a real swtpm, vouch-registrar in-process with its mTLS
//! listener, vouch-agents and vouch-verifiers in-process, the `vouch` binary pointed at them,
//! and a recording proxy to play a hostile network.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use vouch_agent::config::AgentConfig;
use vouch_agent::RunningAgent;
use vouch_cli::tenant::{Tenant, TenantConfig};
use vouch_registrar::{Config, Registrar};
use vouch_testkit::Swtpm;
use vouch_tls::{default_server_names, Ca};
use vouch_verifier::{Config as VerifierConfig, Verifier};

pub struct Env {
    pub swtpm: Swtpm,
    pub tls: TempDir,
    pub reg_state: TempDir,
    pub registrar: Registrar,
}

impl Env {
    pub async fn start() -> Env {
        let swtpm = Swtpm::start().unwrap();
        let tls = tempfile::tempdir().unwrap();
        let ca = Ca::create(tls.path(), "tenant test CA").unwrap();
        ca.issue_server(&default_server_names()).unwrap();
        ca.issue_client("tenant").unwrap();
        let reg_state = tempfile::tempdir().unwrap();
        let registrar = Registrar::start(&Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: "127.0.0.1:0".parse().unwrap(),
            tls_dir: Some(tls.path().to_path_buf()),
            state_dir: reg_state.path().to_path_buf(),
            ek_ca_dir: swtpm.ca_dir(),
            ..Config::default()
        })
        .await
        .unwrap();
        Env {
            swtpm,
            tls,
            reg_state,
            registrar,
        }
    }

    pub fn registrar_endpoint(&self) -> String {
        self.registrar.tls_addr().unwrap().to_string()
    }

    pub fn tenant_config(&self, verifier: &str) -> TenantConfig {
        TenantConfig {
            registrar: self.registrar_endpoint(),
            verifier: verifier.into(),
            tls_dir: self.tls.path().to_path_buf(),
        }
    }

    pub fn tenant(&self) -> Tenant {
        Tenant::new(&self.tenant_config("127.0.0.1:1")).unwrap()
    }

    /// An in-process vouch-verifier with the env's TLS directory, quoting every 0.5 s, for
    /// agents serving plain HTTP ([`Env::agent`]): `enable_agent_mtls` off, since with it on
    /// the verifier refuses an add whose `mtls_cert` is "disabled".
    pub async fn verifier(&self) -> TestVerifier {
        self.verifier_with(false).await
    }

    /// [`Env::verifier`] with agent mTLS on, for agents from [`Env::agent_mtls`].
    pub async fn verifier_mtls(&self) -> TestVerifier {
        self.verifier_with(true).await
    }

    async fn verifier_with(&self, enable_agent_mtls: bool) -> TestVerifier {
        let state = tempfile::tempdir().unwrap();
        let verifier = Verifier::start(&VerifierConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_dir: self.tls.path().to_path_buf(),
            state_dir: state.path().to_path_buf(),
            quote_interval: 0.5,
            enable_agent_mtls,
            ..VerifierConfig::default()
        })
        .await
        .unwrap();
        TestVerifier { verifier, state }
    }

    /// Run the `vouch` binary with this env's registrar, TLS directory and EK CAs and the
    /// verifier at `verifier`: (success, stdout, stderr).
    pub async fn vouch(&self, verifier: &str, args: &[&str]) -> (bool, String, String) {
        self.vouch_with_tls(verifier, self.tls.path(), args).await
    }

    /// [`Env::vouch`] with another TLS directory. Off the test's runtime thread, since the
    /// servers it talks to run in this process.
    pub async fn vouch_with_tls(
        &self,
        verifier: &str,
        tls: &Path,
        args: &[&str],
    ) -> (bool, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vouch"));
        cmd.args(args)
            .env("VOUCH_REGISTRAR", self.registrar_endpoint())
            .env("VOUCH_VERIFIER", verifier)
            .env("VOUCH_TLS_DIR", tls)
            .env("VOUCH_EK_CA_DIR", self.swtpm.ca_dir());
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// `vouch agent add --uuid id FLAGS…`, which must succeed and print every line of `want`;
    /// returns its output.
    pub async fn add_agent(
        &self,
        verifier: &str,
        id: &str,
        flags: &[&str],
        want: &[&str],
    ) -> String {
        let mut args = vec!["agent", "add", "--uuid", id];
        args.extend_from_slice(flags);
        let (ok, out, err) = self.vouch(verifier, &args).await;
        assert!(ok, "add failed:\n{out}\n{err}");
        eprintln!("{out}");
        for w in want {
            assert!(out.contains(w), "no {w:?} in:\n{out}");
        }
        out
    }

    /// `vouch agent status` of `id` until `done` holds for it (at most 30 s); returns it.
    pub async fn wait_status(
        &self,
        verifier: &str,
        id: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out, err) = self
                .vouch(verifier, &["agent", "status", "--uuid", id])
                .await;
            assert!(ok, "{err}");
            let s: serde_json::Value = serde_json::from_str(&out).unwrap();
            if done(&s[id]) {
                return s[id].clone();
            }
            assert!(Instant::now() < deadline, "status never as expected: {out}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// An agent on `swtpm` (default: the env's), enrolled with the registrar.
    pub async fn agent(&self, swtpm: Option<&Swtpm>, uuid: &str) -> TestAgent {
        self.agent_with(swtpm, uuid, |_| {}).await
    }

    /// An agent serving mTLS: its own certificate, client certificates from the env's CA, and
    /// payload scripts allowed only because of mTLS (`enable_insecure_payload` off).
    pub async fn agent_mtls(&self, swtpm: Option<&Swtpm>, uuid: &str) -> TestAgent {
        let ca = vouch_tls::TlsDir::new(self.tls.path()).ca_cert();
        self.agent_with(swtpm, uuid, |c| {
            c.trusted_client_ca = ca;
            c.enable_insecure_payload = false;
        })
        .await
    }

    pub async fn agent_with(
        &self,
        swtpm: Option<&Swtpm>,
        uuid: &str,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> TestAgent {
        let swtpm = swtpm.unwrap_or(&self.swtpm);
        let state = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            uuid: uuid.into(),
            listen: "127.0.0.1:0".into(),
            registrar: format!("http://{}", self.registrar.http_addr()),
            state_dir: state.path().to_path_buf(),
            tcti: swtpm.tcti(),
            registrar_retries: 5,
            registrar_retry_ms: 100,
            secure_mount: state.path().join("secure"),
            enable_insecure_payload: true,
            autorun_timeout_secs: 20,
            ..AgentConfig::default()
        };
        let mut config = config;
        tweak(&mut config);
        let agent = vouch_agent::start(config).await.unwrap();
        TestAgent { agent, state }
    }
}

pub struct TestVerifier {
    pub verifier: Verifier,
    pub state: TempDir,
}

impl TestVerifier {
    /// `host:port`, for `VOUCH_VERIFIER`.
    pub fn endpoint(&self) -> String {
        self.verifier.local_addr().to_string()
    }
}

pub struct TestAgent {
    pub agent: RunningAgent,
    pub state: TempDir,
}

impl TestAgent {
    pub fn addr(&self) -> SocketAddr {
        self.agent.local_addr()
    }
    pub fn secure(&self) -> PathBuf {
        self.state.path().join("secure")
    }
}

/// A runtime policy (upstream format) allowing only `/usr/bin/bash` with digest `abab…`.
pub fn bash_only_runtime_policy() -> String {
    let mut b = vouch_core::ima::PolicyBuilder::new();
    b.add_digest("/usr/bin/bash", &"ab".repeat(32)).unwrap();
    b.build(None).unwrap().to_json()
}

/// A `vouch agent status` entry of an agent the verifier attests: Get Quote, past its first
/// quote.
pub fn attesting(s: &serde_json::Value) -> bool {
    s["operational_state"] == "Get Quote" && s["attestation_count"].as_u64() > Some(1)
}

/// Wait until `path` exists (payload deployment is asynchronous to the HTTP answer).
pub async fn wait_for_file(path: &Path) -> Vec<u8> {
    for _ in 0..100 {
        if let Ok(b) = std::fs::read(path) {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} never appeared", path.display());
}

/// A man in the middle between tenant and agent: records every request, forwards it, and
/// can replace the nonce of identity-quote requests (to replay a quote made for another one).
pub struct Proxy {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct ProxyState {
    target: SocketAddr,
    replace_nonce: Option<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr, replace_nonce: Option<&str>) -> Proxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            target,
            replace_nonce: replace_nonce.map(str::to_owned),
            seen: seen.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { addr, seen }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn forward(State(s): State<ProxyState>, req: Request) -> Response {
    let method = req.method().clone();
    let mut path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    s.seen.lock().unwrap().push(format!("{method} {path}"));
    if let Some(n) = &s.replace_nonce {
        if path.contains("/quotes/identity") {
            path = format!("{}?nonce={n}", path.split('?').next().unwrap());
        }
    }
    let body: Bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let resp = reqwest::Client::new()
        .request(method, format!("http://{}{path}", s.target))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let bytes = resp.bytes().await.unwrap();
    (code, [("content-type", "application/json")], bytes).into_response()
}
