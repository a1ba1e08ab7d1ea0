//! Test harness: a real swtpm + vouch-tpm for the agent side, the registrar in-process on a
//! port the OS picks, and direct reads of its SQLite database.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use vouch_core::api::enrollment::{decode_blob, ActivationKey};
use vouch_core::tpm::HashAlg;
use vouch_registrar::db::{self, AgentRow};
use vouch_registrar::{Config, Registrar};
use vouch_testkit::Swtpm;
use vouch_tpm::{Ak, AkKind, EkKind, Tcti, Tpm, TpmHandle};

/// The agent's side: a swtpm with its EK, EK certificate and an AK.
pub struct TestTpm {
    pub swtpm: Swtpm,
    pub tpm: TpmHandle,
    pub ek_tpm: Vec<u8>,
    pub ek_cert_der: Vec<u8>,
    pub ak: Ak,
}

impl TestTpm {
    pub async fn start() -> TestTpm {
        Self::with(Swtpm::start().unwrap()).await
    }

    pub async fn start_fresh() -> TestTpm {
        Self::with(Swtpm::start_fresh().unwrap()).await
    }

    async fn with(swtpm: Swtpm) -> TestTpm {
        let tpm = Tpm::open(&swtpm.tcti().parse::<Tcti>().unwrap()).unwrap();
        let ek = tpm.create_ek(EkKind::Rsa2048).await.unwrap();
        let ek_cert_der = tpm
            .read_ek_cert(EkKind::Rsa2048)
            .await
            .unwrap()
            .expect("EK cert in NV");
        let ak = tpm
            .create_ak(EkKind::Rsa2048, AkKind::Rsa2048, HashAlg::Sha256)
            .await
            .unwrap();
        TestTpm {
            swtpm,
            tpm,
            ek_tpm: ek.to_tpm2b(),
            ek_cert_der,
            ak,
        }
    }

    pub fn ek_cert_pem(&self) -> String {
        vouch_core::der::pem_encode("CERTIFICATE", &self.ek_cert_der)
    }

    /// The registration body rust-keylime sends.
    pub fn register_body(&self) -> Value {
        json!({
            "ek_tpm": B64.encode(&self.ek_tpm),
            "ekcert": self.ek_cert_pem(),
            "aik_tpm": B64.encode(self.ak.public.to_tpm2b()),
            "ip": "127.0.0.1",
            "port": 9002,
            "mtls_cert": "disabled",
        })
    }

    /// TPM2_ActivateCredential on the blob, then the auth_tag as rust-keylime computes it.
    pub async fn auth_tag(&self, agent_id: &str, blob: &str) -> String {
        let cred = decode_blob(blob).unwrap();
        let secret = self
            .tpm
            .activate_credential(&self.ak, cred.id_object(), cred.encrypted_secret())
            .await
            .unwrap();
        assert_eq!(secret.len(), 32);
        assert!(
            secret.iter().all(u8::is_ascii_alphanumeric),
            "upstream-style secret"
        );
        ActivationKey::from_secret(&secret).auth_tag(agent_id)
    }
}

/// A registrar on 127.0.0.1:0 with its own state directory.
pub struct TestRegistrar {
    pub dir: TempDir,
    pub config: Config,
    pub registrar: Option<Registrar>,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestRegistrar {
    /// Trusting the CA of `ca_dir` (a swtpm's), admin routes on the HTTP port.
    pub async fn start(ca_dir: &Path) -> TestRegistrar {
        Self::start_with(|c| c.ek_ca_dir = ca_dir.to_path_buf()).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestRegistrar {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: dir.path().join("state"),
            insecure_admin_over_http: true,
            ..Config::default()
        };
        tweak(&mut config);
        let registrar = Registrar::start(&config).await.unwrap();
        let base = format!("http://{}", registrar.http_addr());
        TestRegistrar {
            dir,
            config,
            registrar: Some(registrar),
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.registrar.take() {
            r.shutdown().await.unwrap();
        }
    }

    /// Start again on the same configuration and database (a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        let r = Registrar::start(&config).await.unwrap();
        self.base = format!("http://{}", r.http_addr());
        self.registrar = Some(r);
    }

    pub fn db_path(&self) -> PathBuf {
        self.config.db_path()
    }

    /// The stored row, read directly from SQLite.
    pub fn row(&self, id: &str) -> Option<AgentRow> {
        let conn = rusqlite::Connection::open(self.db_path()).unwrap();
        db::get_agent(&conn, id).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {text:?}"));
        assert_eq!(
            v["code"],
            status.as_u16(),
            "envelope code equals HTTP status: {v}"
        );
        assert!(
            v["status"].is_string() && v["results"].is_object(),
            "envelope shape: {v}"
        );
        (status, v)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::PUT,
            path,
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Register and activate `id` with `tpm`; returns the GET record.
    pub async fn enroll(&self, tpm: &TestTpm, id: &str) -> Value {
        let (s, v) = self
            .post(&format!("/v2.6/agents/{id}"), &tpm.register_body())
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let blob = v["results"]["blob"].as_str().unwrap().to_owned();
        let tag = tpm.auth_tag(id, &blob).await;
        let (s, v) = self
            .put(&format!("/v2.6/agents/{id}"), &json!({ "auth_tag": tag }))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = self.get(&format!("/v2.6/agents/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }
}
