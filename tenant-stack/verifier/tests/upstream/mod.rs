//! Harness for driving upstream keylime 7.14.3's `keylime_tenant` (a subprocess) against Vouch:
//! vouch-registrar (HTTP + mTLS listeners), vouch-verifier and a vouch-agent on a real swtpm,
//! all in this test process, sharing one Vouch TLS directory in upstream's `cv_ca` layout.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vouch_agent::RunningAgent;
use vouch_core::api::quote_string::QuoteString;
use vouch_core::tpm::HashAlg;
use vouch_registrar::server::Registrar;
use vouch_testkit::Swtpm;

use crate::common::{agent_config, get_json, make_tls, tenant_client, verifier_config};

pub const DEFAULT_PYTHON: &str = "/opt/vouch/keylime-venv/bin/python3";

/// Upper bound for one `keylime_tenant` run (it normally takes 2–5 s).
pub const TENANT_TIMEOUT: Duration = Duration::from_secs(90);

/// `keylime_tenant` next to `$VOUCH_KEYLIME_PYTHON` (default the keylime 7.14.3 venv). Panics
/// with a clear message if it is missing — this test is never skipped.
pub fn keylime_tenant() -> PathBuf {
    let python = PathBuf::from(
        std::env::var("VOUCH_KEYLIME_PYTHON").unwrap_or_else(|_| DEFAULT_PYTHON.into()),
    );
    let tenant = python.with_file_name("keylime_tenant");
    assert!(
        tenant.exists(),
        "upstream keylime_tenant {} does not exist: install keylime 7.14.3 into \
         /opt/vouch/keylime-venv (ci/test.sh, docs/keylime-wire.md §8.1) or point \
         VOUCH_KEYLIME_PYTHON at the python3 of a venv that has it",
        tenant.display()
    );
    tenant
}

/// The result of one `keylime_tenant` run.
pub struct TenantRun {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl TenantRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout + stderr (upstream logs its results through `logging`, i.e. to stderr).
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Everything needed to diagnose a failure, for panic messages.
    pub fn describe(&self) -> String {
        format!(
            "keylime_tenant {}\nexit: {:?} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }

    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.success(),
            "upstream tenant failed:\n{}",
            self.describe()
        );
        self
    }
}

/// `$KEYLIME_DIR` with a `tenant.conf` for upstream's tenant.
pub struct KeylimeDir {
    dir: tempfile::TempDir,
}

impl KeylimeDir {
    /// tenant.conf per docs/keylime-wire.md §8.3, pointed at Vouch:
    /// * `tls_dir` = the Vouch TLS directory (absolute path); `client_cert`/`client_key =
    ///   default` load its `client-cert.crt`/`client-private.pem`, and `trusted_server_ca =
    ///   ['cacert.crt']` (a list, resolved inside `tls_dir`; `default` would look in
    ///   `$KEYLIME_DIR/cv_ca`) trusts its CA;
    /// * `registrar_port` = vouch-registrar's **TLS** port (the tenant only uses that one);
    /// * `enable_agent_mtls = False` (the agent registers `mtls_cert: "disabled"`);
    /// * `require_ek_cert = True`, `tpm_cert_store` = the swtpm CA directory (upstream reads
    ///   its `*.pem`: root-ca.pem, intermediate-ca.pem; the EK cert is issued by the latter).
    pub fn new(tls_dir: &Path, registrar_tls_port: u16, verifier_port: u16, ek_ca: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "[tenant]\n\
             version = 2.6\n\
             verifier_ip = 127.0.0.1\n\
             verifier_port = {verifier_port}\n\
             registrar_ip = 127.0.0.1\n\
             registrar_port = {registrar_tls_port}\n\
             tls_dir = {tls}\n\
             enable_agent_mtls = False\n\
             client_key = default\n\
             client_key_password =\n\
             client_cert = default\n\
             trusted_server_ca = ['cacert.crt']\n\
             tpm_cert_store = {ek_ca}\n\
             max_payload_size = 1048576\n\
             accept_tpm_hash_algs = ['sha512', 'sha384', 'sha256']\n\
             accept_tpm_encryption_algs = ['ecc', 'rsa']\n\
             accept_tpm_signing_algs = ['ecschnorr', 'rsassa']\n\
             exponential_backoff = False\n\
             max_retries = 5\n\
             retry_interval = 1\n\
             request_timeout = 20\n\
             require_ek_cert = True\n\
             ek_check_script =\n\
             mb_refstate =\n",
            tls = tls_dir.display(),
            ek_ca = ek_ca.display(),
        );
        std::fs::write(dir.path().join("tenant.conf"), conf).unwrap();
        KeylimeDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn tenant_conf(&self) -> PathBuf {
        self.dir.path().join("tenant.conf")
    }

    /// Run `keylime_tenant args…` on a blocking thread (the servers live on this test's
    /// runtime), killed after [`TENANT_TIMEOUT`].
    pub async fn tenant(&self, args: &[&str]) -> TenantRun {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let root = self.dir.path().to_path_buf();
        let conf = self.tenant_conf();
        tokio::task::spawn_blocking(move || run_tenant(&root, &conf, args))
            .await
            .unwrap()
    }
}

fn run_tenant(root: &Path, conf: &Path, args: Vec<String>) -> TenantRun {
    let start = Instant::now();
    let mut cmd = Command::new(keylime_tenant());
    cmd.args(&args)
        .env("KEYLIME_DIR", root)
        .env("KEYLIME_TENANT_CONFIG", conf)
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Nothing from the caller's environment may reconfigure the tenant.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KEYLIME_") && k != "KEYLIME_DIR" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("spawn keylime_tenant");
    // Drain the pipes on their own threads so a chatty tenant cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = start + TENANT_TIMEOUT;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap();
    let mut stderr = err_t.join().unwrap();
    if timed_out {
        stderr.push_str(&format!(
            "\n[test harness: killed after {TENANT_TIMEOUT:?}]"
        ));
    }
    TenantRun {
        args,
        code: if timed_out { None } else { status.code() },
        stdout,
        stderr,
        elapsed: start.elapsed(),
    }
}

/// Everything upstream's tenant talks to, in process.
pub struct Stack {
    pub registrar: Registrar,
    pub verifier: crate::common::TestVerifier,
    pub agent: RunningAgent,
    pub uuid: String,
    pub agent_swtpm: Swtpm,
    pub tls: tempfile::TempDir,
    pub keylime: KeylimeDir,
    pub registrar_admin: reqwest::Client,
    pub registrar_base: String,
    pub secure_mount: PathBuf,
    _states: Vec<tempfile::TempDir>,
}

impl Stack {
    pub async fn start(uuid: &str) -> Stack {
        // One Vouch TLS dir (vouch_tls::Ca): cacert.crt, server-* (127.0.0.1, localhost),
        // client-* — upstream's cv_ca layout. Registrar, verifier and tenant all use it.
        let tls = tempfile::tempdir().unwrap();
        make_tls(tls.path());

        let agent_swtpm = Swtpm::start().unwrap();
        let reg_state = tempfile::tempdir().unwrap();
        let registrar = Registrar::start(&vouch_registrar::config::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: "127.0.0.1:0".parse().unwrap(),
            tls_dir: Some(tls.path().to_path_buf()),
            state_dir: reg_state.path().to_path_buf(),
            ek_ca_dir: agent_swtpm.ca_dir(),
            insecure_admin_over_http: false,
            ..vouch_registrar::config::Config::default()
        })
        .await
        .unwrap();
        let registrar_tls = registrar.tls_addr().expect("registrar TLS listener");
        let registrar_base = format!("https://127.0.0.1:{}", registrar_tls.port());

        // Upstream's tenant passes the registrar's `mtls_cert` on as it is (`tenant.py`
        // `do_cvadd`, whatever its own `enable_agent_mtls`): "disabled" for this plain-HTTP
        // agent, which a verifier with agent mTLS on refuses, as upstream's does.
        let ver_state = tempfile::tempdir().unwrap();
        let ver_config = vouch_verifier::Config {
            enable_agent_mtls: false,
            ..verifier_config(tls.path(), ver_state.path())
        };
        let verifier = crate::common::TestVerifier::start(&ver_config).await;

        let agent_state = tempfile::tempdir().unwrap();
        let secure_mount = agent_state.path().join("secure");
        let mut c = agent_config(
            &agent_swtpm,
            &format!("http://{}", registrar.http_addr()),
            uuid,
            agent_state.path(),
        );
        c.secure_mount = secure_mount.clone();
        c.enable_insecure_payload = true;
        c.autorun_timeout_secs = 20;
        let agent = vouch_agent::start(c).await.unwrap();

        let keylime = KeylimeDir::new(
            tls.path(),
            registrar_tls.port(),
            verifier.verifier.local_addr().port(),
            &agent_swtpm.ca_dir(),
        );
        let registrar_admin = tenant_client(tls.path());
        Stack {
            registrar,
            verifier,
            agent,
            uuid: uuid.into(),
            agent_swtpm,
            tls,
            keylime,
            registrar_admin,
            registrar_base,
            secure_mount,
            _states: vec![reg_state, ver_state, agent_state],
        }
    }

    /// Another `$KEYLIME_DIR` for the same servers whose tenant trusts `ek_ca` for EK
    /// certificates.
    pub fn keylime_with_ek_store(&self, ek_ca: &Path) -> KeylimeDir {
        KeylimeDir::new(
            self.tls.path(),
            self.registrar.tls_addr().unwrap().port(),
            self.verifier.verifier.local_addr().port(),
            ek_ca,
        )
    }

    pub fn agent_port(&self) -> u16 {
        self.agent.local_addr().port()
    }

    /// Current PCR `index` (sha256), read through the agent's own integrity quote.
    pub async fn pcr(&self, index: u8) -> String {
        let mask = format!("{:#x}", 1u32 << index);
        let url = format!(
            "http://{}/v2.5/quotes/integrity?nonce=readpcr0123&mask={mask}&partial=0",
            self.agent.local_addr()
        );
        let (code, q) = get_json(&url).await;
        assert_eq!(code, 200, "{q}");
        let quote = QuoteString::parse(q["results"]["quote"].as_str().unwrap()).unwrap();
        hex::encode(quote.pcrs().get(HashAlg::Sha256, index).unwrap())
    }

    /// GET on vouch-registrar's mTLS port as an admin (status, body).
    pub async fn registrar_get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .registrar_admin
            .get(format!("{}{path}", self.registrar_base))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Wait (bounded) for a file to appear; its contents.
pub async fn wait_for_file(path: &Path, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            return Some(bytes);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
