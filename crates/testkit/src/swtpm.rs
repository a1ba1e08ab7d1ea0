//! A running `swtpm socket --tpm2` process on ports the OS picked.

use crate::error::TestkitError;
use crate::provision::{self, Layout};
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// NV index of the RSA-2048 EK certificate (TCG EK Credential Profile, low range).
pub const RSA_EK_CERT_NV_INDEX: u32 = 0x01c0_0002;
/// NV index of the ECC NIST P-384 EK certificate (high range): swtpm_setup's ECC EK is P-384,
/// so the low-range P-256 index 0x01c0000a stays empty.
pub const ECC_P384_EK_CERT_NV_INDEX: u32 = 0x01c0_0016;
/// NV index of the platform certificate written by `--create-platform-cert`.
pub const PLATFORM_CERT_NV_INDEX: u32 = 0x01c0_8000;

/// How long swtpm gets to open its ports.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful shutdown may take before we kill the process.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Fresh port pairs tried when swtpm fails to bind (another process took the port meanwhile).
const START_ATTEMPTS: u32 = 5;

/// A swtpm instance with its own state directory and EK CA. Dropping it kills the process
/// and deletes the directory.
#[derive(Debug)]
pub struct Swtpm {
    dir: TempDir,
    layout: Layout,
    port: u16,
    child: Option<Child>,
}

impl Swtpm {
    /// Start a swtpm whose state is a copy of a template provisioned once per process:
    /// every instance of one process has the same EK and EK CA (but its own state, so NV
    /// and PCR changes stay private). Use [`Swtpm::start_fresh`] for a distinct EK.
    pub fn start() -> Result<Swtpm, TestkitError> {
        let template = provision::template()?;
        let (dir, layout) = new_dir()?;
        provision::copy_layout(template, &layout)?;
        Self::launch(dir, layout)
    }

    /// Start a swtpm provisioned just for this instance: its own EK, EK certificates and CA
    /// (≈ 1 s more than [`Swtpm::start`]).
    pub fn start_fresh() -> Result<Swtpm, TestkitError> {
        let (dir, layout) = new_dir()?;
        provision::provision(&layout)?;
        Self::launch(dir, layout)
    }

    fn launch(dir: TempDir, layout: Layout) -> Result<Swtpm, TestkitError> {
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port_pair()?;
            match spawn(&layout, port) {
                Ok(child) => {
                    return Ok(Swtpm {
                        dir,
                        layout,
                        port,
                        child: Some(child),
                    })
                }
                Err(e) => {
                    last = format!("attempt {attempt} on port {port}: {e}");
                }
            }
        }
        Err(TestkitError::Start {
            attempts: START_ATTEMPTS,
            detail: last,
        })
    }

    /// TCTI string for tss-esapi / tpm2-tools: `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM command port; the control port is `port() + 1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// swtpm's `--tpmstate` directory.
    pub fn state_dir(&self) -> PathBuf {
        self.layout.state()
    }

    /// A directory holding only the CA certificates (PEM) an EK verifier should trust:
    /// `root-ca.pem` (self-signed "swtpm-localca-rootca") and `intermediate-ca.pem`
    /// ("swtpm-localca", signed by the root; it signs the EK and platform certificates).
    pub fn ca_dir(&self) -> PathBuf {
        self.layout.ca_certs()
    }

    /// The local CA's working directory (private keys included), for tests that want to
    /// issue certificates of their own with the same CA.
    pub fn ca_state_dir(&self) -> PathBuf {
        self.layout.ca_state()
    }

    /// Where swtpm's stderr goes.
    pub fn log_path(&self) -> PathBuf {
        self.layout.log()
    }

    /// The instance's temporary directory (deleted on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the swtpm process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stop swtpm gracefully (CMD_SHUTDOWN on the control port, so it saves its state),
    /// killing it if it does not exit in time. Stopping a stopped instance is a no-op.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let ctrl = format!("127.0.0.1:{}", self.port + 1);
        let graceful = Command::new("swtpm_ioctl")
            .args(["--tcp", &ctrl, "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if graceful {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = child.kill();
        child
            .wait()
            .map(|_| ())
            .map_err(|e| TestkitError::io("waiting for swtpm", self.layout.state(), e))
    }

    /// Emulate a reboot: stop swtpm and start it again on the same port with the same state.
    /// It starts with TPM2_Startup(CLEAR), so PCRs and transient objects are reset while
    /// NV indexes and persistent keys survive.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        // The port was ours a moment ago; retry briefly in case the kernel is slow to free it.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match spawn(&self.layout, self.port) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(TestkitError::Start {
                        attempts: 1,
                        detail: format!("restart on port {}: {e}", self.port),
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn new_dir() -> Result<(TempDir, Layout), TestkitError> {
    let dir = tempfile::Builder::new()
        .prefix("vouch-swtpm-")
        .tempdir()
        .map_err(|e| TestkitError::io("creating temp dir", std::env::temp_dir(), e))?;
    let layout = Layout::new(dir.path());
    Ok((dir, layout))
}

/// A port P such that P and P+1 were both free a moment ago.
fn free_port_pair() -> Result<u16, TestkitError> {
    const TRIES: u32 = 50;
    for _ in 0..TRIES {
        let Ok(first) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(addr) = first.local_addr() else {
            continue;
        };
        let port = addr.port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(TestkitError::NoPorts(TRIES))
}

/// Start swtpm on `port`/`port + 1` and wait until both accept connections.
fn spawn(layout: &Layout, port: u16) -> Result<Child, String> {
    let log_path = layout.log();
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let log_len = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--server"])
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .arg("--tpmstate")
        .arg(format!("dir={}", layout.state().display()))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("could not run swtpm (is the swtpm package installed?): {e}"))?;

    let deadline = Instant::now() + START_TIMEOUT;
    let addrs = [port, port + 1].map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "swtpm exited ({status}): {}",
                log_since(&log_path, log_len)
            ));
        }
        let up = addrs
            .iter()
            .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(100)).is_ok());
        // Someone else may listen on the port if our swtpm failed to bind: check it still runs.
        if up {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "swtpm exited ({status}): {}",
                    log_since(&log_path, log_len)
                ));
            }
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "swtpm did not accept connections on 127.0.0.1:{port} within {START_TIMEOUT:?}: {}",
                log_since(&log_path, log_len)
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn log_since(path: &Path, offset: u64) -> String {
    let all = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(all.len());
    let text = String::from_utf8_lossy(&all[start..]).trim().to_string();
    if text.is_empty() {
        "(no output)".to_string()
    } else {
        text
    }
}
