//! Shared test harness: upstream keylime 7.14.3 registrar as a peer (docs/keylime-wire.md §8),
//! upstream's Python quote check, an agent on a real swtpm.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod upstream;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vouch_agent::config::AgentConfig;
use vouch_agent::RunningAgent;
use vouch_testkit::Swtpm;

pub const DEFAULT_PYTHON: &str = "/opt/vouch/keylime-venv/bin/python3";

/// The keylime venv's interpreter (`VOUCH_KEYLIME_PYTHON`); panics with a clear message if
/// missing — these tests are never skipped.
pub fn keylime_python() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("VOUCH_KEYLIME_PYTHON").unwrap_or_else(|_| DEFAULT_PYTHON.into()),
    );
    assert!(
        p.exists(),
        "upstream keylime's Python {} does not exist: install keylime 7.14.3 there (see docs/keylime-wire.md §8.1) or set VOUCH_KEYLIME_PYTHON",
        p.display()
    );
    let ok = Command::new(&p)
        .args(["-c", "import keylime.tpm.tpm_main, keylime.cmd.registrar"])
        .stderr(Stdio::piped())
        .output()
        .expect("run python");
    assert!(
        ok.status.success(),
        "{} cannot import keylime (missing runtime deps? docs/keylime-wire.md §8.1): {}",
        p.display(),
        String::from_utf8_lossy(&ok.stderr)
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// TLS material for the registrar's HTTPS port and an admin client (rcgen; the registrar's own
/// `tls_dir = generate` trusts the *verifier's* CA for clients, §8, so we bring our own).
struct Pki;

impl Pki {
    fn write(dir: &Path) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Vouch agent test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf = |cn: &str, sans: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf("127.0.0.1", vec!["127.0.0.1".into()]);
        let (client, client_key) = leaf("admin", vec![]);
        for (name, text) in [
            ("cacert.crt", ca_cert.pem()),
            ("server-cert.crt", server),
            ("server-private.pem", server_key),
            ("client-cert.crt", client),
            ("client-private.pem", client_key),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
}

/// keylime_registrar 7.14.3 in its own process group; stopped (group SIGTERM, then SIGKILL)
/// on drop, as its parent ignores SIGTERM (§8.4).
pub struct UpstreamRegistrar {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: u16,
    child: Child,
}

impl UpstreamRegistrar {
    pub fn start() -> Self {
        let python = keylime_python();
        let bin = python.with_file_name("keylime_registrar");
        assert!(bin.exists(), "{} missing", bin.display());
        let dir = tempfile::tempdir().unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let tls = dir.path().join("tls");
        Pki::write(&tls);
        std::fs::write(
            dir.path().join("registrar.conf"),
            format!(
                "[registrar]\nversion = 2.6\nip = 127.0.0.1\nport = {port}\ntls_port = {tls_port}\n\
                 tls_dir = {}\nserver_key = server-private.pem\nserver_key_password =\n\
                 server_cert = server-cert.crt\ntrusted_client_ca = [\"cacert.crt\"]\n\
                 database_url = sqlite\ndatabase_pool_sz_ovfl = 5,10\nauto_migrate_db = True\n\
                 max_workers = 1\nmax_upload_size = 104857600\ndurable_attestation_import =\n\
                 tpm_identity = default\nmalformed_cert_action = warn\n",
                tls.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registrar.log")).unwrap();
        let child = Command::new(&bin)
            .env("KEYLIME_DIR", dir.path())
            .env(
                "KEYLIME_REGISTRAR_CONFIG",
                dir.path().join("registrar.conf"),
            )
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut r = Self {
            dir,
            port,
            tls_port,
            child,
        };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://127.0.0.1:{}/version", self.port))
                .output()
                .unwrap();
            if out.stdout == b"200" {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("keylime_registrar exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "keylime_registrar not up after 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registrar.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Admin `GET` on the TLS port with the client certificate: (HTTP code, JSON body or Null).
    pub fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        let tls = self.dir.path().join("tls");
        let out = Command::new("curl")
            .arg("-s")
            .args(["-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(tls.join("cacert.crt"))
            .arg("--cert")
            .arg(tls.join("client-cert.crt"))
            .arg("--key")
            .arg(tls.join("client-private.pem"))
            .arg(format!("https://127.0.0.1:{}{path}", self.tls_port))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.parse().unwrap(),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for UpstreamRegistrar {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Workers and the multiprocessing manager share the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Agent config for a test: swtpm, any free port, a temp state dir.
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

pub fn agent_url(agent: &RunningAgent, path: &str) -> String {
    format!("http://{}{path}", agent.local_addr())
}

/// GET → (code, JSON).
pub async fn get(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Upstream's `Tpm.check_quote` on a quote (tests/upstream_check_quote.py).
pub fn upstream_check_quote(
    agent_id: &str,
    nonce: &str,
    quote: &serde_json::Value,
    aik_tpm: &[u8],
    tpm_policy: serde_json::Value,
) -> (bool, serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream_check_quote.py");
    let input = serde_json::json!({
        "agent_id": agent_id,
        "nonce": nonce,
        "quote": quote["quote"],
        "pubkey": quote["pubkey"],
        "aik_tpm": STANDARD.encode(aik_tpm),
        "hash_alg": quote["hash_alg"],
        "tpm_policy": tpm_policy,
    });
    let mut child = Command::new(keylime_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "upstream check crashed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), result)
}
