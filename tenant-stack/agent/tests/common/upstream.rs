//! The whole upstream keylime 7.14.3 control plane as a test peer (docs/keylime-wire.md §8):
//! `keylime_verifier` (started first, `tls_dir = generate`: it creates the CA, server and
//! client certificates in `$KEYLIME_DIR/cv_ca`), `keylime_registrar` reusing that CA
//! (`tls_dir = default`), and `keylime_tenant` runs with a `tenant.conf` using the same client
//! certificate. SQLite and everything else in one temp dir, OS-picked ports, each daemon in its
//! own process group (their parents ignore SIGTERM, §8.4), killed by group on drop.
//! Agent mTLS is off on tenant and verifier (§7): the vouch agent registers
//! `mtls_cert: "disabled"` and serves plain HTTP.

use super::{free_port, keylime_python};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a daemon gets to answer `/version` (cold verifier start ≈ 6 s on 2 busy cores:
/// 31 alembic migrations + CA generation, §8.4).
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(90);

/// One upstream daemon in its own process group, with its log file.
pub struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, bin: &Path, dir: &Path) -> Self {
        assert!(bin.exists(), "{} missing", bin.display());
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = keylime_env(Command::new(bin), dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Self { name, child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll `url` (curl `-k`) until it answers 200; panics with the log if the daemon exits or
    /// the deadline passes.
    fn wait_ready(&mut self, url: &str) -> Duration {
        let start = Instant::now();
        loop {
            let out = Command::new("curl")
                .args([
                    "-sk",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                ])
                .arg(url)
                .output()
                .unwrap();
            if out.stdout == b"200" {
                return start.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before answering {url}:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                start.elapsed() < DAEMON_START_TIMEOUT,
                "{} did not answer {url} within {DAEMON_START_TIMEOUT:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_group(&mut self.child, Duration::from_secs(3));
    }
}

/// SIGTERM to the child's process group, then SIGKILL to the group (workers and the
/// multiprocessing manager share it) after `grace` or once the leader exited.
fn kill_group(child: &mut Child, grace: Duration) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-TERM", "--", &group])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// The `KEYLIME_*` environment that makes every upstream component read only our files
/// (§8.2: an existing `KEYLIME_<C>_CONFIG` file is the only config read).
fn keylime_env(mut cmd: Command, dir: &Path) -> Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("KEYLIME_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("KEYLIME_DIR", dir)
        .env("KEYLIME_VERIFIER_CONFIG", dir.join("verifier.conf"))
        .env("KEYLIME_REGISTRAR_CONFIG", dir.join("registrar.conf"))
        .env("KEYLIME_TENANT_CONFIG", dir.join("tenant.conf"))
        .env("KEYLIME_CA_CONFIG", dir.join("ca.conf"))
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(dir);
    cmd
}

/// A finished (or timed-out) `keylime_tenant` run.
pub struct TenantRun {
    pub args: Vec<String>,
    /// `None` when it was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl TenantRun {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Everything it printed (its logger writes to stderr, results included).
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for TenantRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "keylime_tenant {:?}: {} after {:.1?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.status
                .map_or_else(|| "killed at timeout".to_string(), |s| s.to_string()),
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Upstream verifier + registrar running, tenant available.
pub struct UpstreamKeylime {
    // Daemons first: they are dropped (killed) before the directory is deleted.
    verifier: Daemon,
    registrar: Daemon,
    bin: PathBuf,
    pub verifier_port: u16,
    pub registrar_port: u16,
    pub registrar_tls_port: u16,
    /// Time until each daemon first answered `/version`.
    pub verifier_startup: Duration,
    pub registrar_startup: Duration,
    pub dir: tempfile::TempDir,
}

impl UpstreamKeylime {
    /// Write the configs (§8.3) and start verifier then registrar. `ek_ca_dir` is the tenant's
    /// `tpm_cert_store` (directory of PEM CAs the EK certificate must chain to;
    /// `require_ek_cert = True`). `quote_interval` is the verifier's polling period in seconds.
    pub fn start(ek_ca_dir: &Path, quote_interval: u32) -> Self {
        let python = keylime_python();
        let bin = python.parent().unwrap().to_path_buf();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (verifier_port, registrar_port, registrar_tls_port, zmq_port) =
            (free_port(), free_port(), free_port(), free_port());
        write_configs(
            d,
            verifier_port,
            registrar_port,
            registrar_tls_port,
            zmq_port,
            quote_interval,
            ek_ca_dir,
        );
        let mut verifier = Daemon::spawn("keylime_verifier", &bin.join("keylime_verifier"), d);
        let verifier_startup =
            verifier.wait_ready(&format!("https://127.0.0.1:{verifier_port}/version"));
        for f in ["cacert.crt", "client-cert.crt", "client-private.pem"] {
            assert!(
                d.join("cv_ca").join(f).exists(),
                "verifier did not generate cv_ca/{f}:\n{}",
                verifier.log()
            );
        }
        let mut registrar = Daemon::spawn("keylime_registrar", &bin.join("keylime_registrar"), d);
        let registrar_startup =
            registrar.wait_ready(&format!("http://127.0.0.1:{registrar_port}/version"));
        Self {
            verifier,
            registrar,
            bin,
            verifier_port,
            registrar_port,
            registrar_tls_port,
            verifier_startup,
            registrar_startup,
            dir,
        }
    }

    /// The registrar's plain-HTTP URL (agents register there).
    pub fn registrar_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registrar_port)
    }

    /// Both daemon logs, for panic messages.
    pub fn logs(&self) -> String {
        format!(
            "=== keylime_verifier log\n{}\n=== keylime_registrar log\n{}",
            self.verifier.log(),
            self.registrar.log()
        )
    }

    pub fn verifier_log(&self) -> String {
        self.verifier.log()
    }

    /// Write a file into the working directory (payloads, policies).
    pub fn write_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Run `keylime_tenant <args>` (own process group, killed at `timeout`).
    pub fn tenant(&self, args: &[&str], timeout: Duration) -> TenantRun {
        let d = self.dir.path();
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let (out_path, err_path) = (
            d.join(format!("tenant-{n}.out")),
            d.join(format!("tenant-{n}.err")),
        );
        let start = Instant::now();
        let mut child = keylime_env(Command::new(self.bin.join("keylime_tenant")), d)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > timeout {
                kill_group(&mut child, Duration::from_millis(500));
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        TenantRun {
            args: args.iter().map(|s| s.to_string()).collect(),
            status,
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
            elapsed: start.elapsed(),
        }
    }

    /// Admin `GET` on the verifier with the generated client certificate:
    /// (HTTP code, JSON body or Null).
    pub fn verifier_get(&self, path: &str) -> (u16, serde_json::Value) {
        let ca = self.dir.path().join("cv_ca");
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(ca.join("cacert.crt"))
            .arg("--cert")
            .arg(ca.join("client-cert.crt"))
            .arg("--key")
            .arg(ca.join("client-private.pem"))
            .arg(format!("https://127.0.0.1:{}{path}", self.verifier_port))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }
}

fn write_configs(
    d: &Path,
    verifier_port: u16,
    registrar_port: u16,
    registrar_tls_port: u16,
    zmq_port: u16,
    quote_interval: u32,
    ek_ca_dir: &Path,
) {
    let write = |name: &str, text: String| std::fs::write(d.join(name), text).unwrap();
    write(
        "verifier.conf",
        format!(
            r#"[verifier]
version = 2.6
uuid = default
ip = 127.0.0.1
port = {verifier_port}
registrar_ip = 127.0.0.1
registrar_port = {registrar_tls_port}
mode = pull
enable_agent_mtls = False
tls_dir = generate
server_key = default
server_key_password =
server_cert = default
trusted_client_ca = default
client_key = default
client_key_password =
client_cert = default
trusted_server_ca = default
database_url = sqlite
database_pool_sz_ovfl = 5,10
auto_migrate_db = True
num_workers = 1
max_workers = 1
exponential_backoff = True
retry_interval = 2
max_retries = 5
quote_interval = {quote_interval}
request_timeout = 60.0
max_upload_size = 104857600
measured_boot_ml_files = []
measured_boot_imports = []
measured_boot_policy_name = accept-all
measured_boot_evaluate = once
severity_labels = ["info", "notice", "warning", "error", "critical", "alert", "emergency"]
severity_policy = [{{"event_id": ".*", "severity_label": "emergency"}}]
ignore_tomtou_errors = False
durable_attestation_import =
persistent_store_url =
transparency_log_url =
time_stamp_authority_url =
time_stamp_authority_certs_path =
persistent_store_format = json
persistent_store_encoding =
transparency_log_sign_algo = sha256
signed_attributes =
require_allow_list_signatures = False

[revocations]
enabled_revocation_notifications = []
zmq_ip = 127.0.0.1
zmq_port = {zmq_port}
webhook_url =
"#
        ),
    );
    write(
        "registrar.conf",
        format!(
            r#"[registrar]
version = 2.6
ip = 127.0.0.1
port = {registrar_port}
tls_port = {registrar_tls_port}
tls_dir = default
server_key = default
server_key_password =
server_cert = default
trusted_client_ca = default
database_url = sqlite
database_pool_sz_ovfl = 5,10
auto_migrate_db = True
max_workers = 1
max_upload_size = 104857600
durable_attestation_import =
tpm_identity = default
malformed_cert_action = warn
"#
        ),
    );
    write(
        "ca.conf",
        r#"[ca]
version = 2.6
password = default
cert_country = US
cert_ca_name = Keylime Test CA
cert_state = MA
cert_locality = Lexington
cert_organization = MITLL
cert_org_unit = 53
cert_ca_lifetime = 3650
cert_lifetime = 365
cert_bits = 2048
cert_crl_dist = http://localhost:38080/crl
"#
        .into(),
    );
    write(
        "tenant.conf",
        format!(
            r#"[tenant]
version = 2.6
verifier_ip = 127.0.0.1
verifier_port = {verifier_port}
registrar_ip = 127.0.0.1
registrar_port = {registrar_tls_port}
tls_dir = default
enable_agent_mtls = False
client_key = default
client_key_password =
client_cert = default
trusted_server_ca = default
tpm_cert_store = {}
max_payload_size = 1048576
accept_tpm_hash_algs = ['sha512', 'sha384', 'sha256']
accept_tpm_encryption_algs = ['ecc', 'rsa']
accept_tpm_signing_algs = ['ecschnorr', 'rsassa']
exponential_backoff = True
max_retries = 5
retry_interval = 2
request_timeout = 60
require_ek_cert = True
ek_check_script =
mb_refstate =
"#,
            ek_ca_dir.display()
        ),
    );
}
