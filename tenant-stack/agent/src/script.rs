//! Running a script the agent was given (the payload's `autorun.sh`, revocation actions): through
//! `sh`, so that a script without `#!` runs too; in its own process group, which is killed whole
//! after a timeout (children included); output captured, and kept to [`MAX_OUTPUT`] per stream
//! for logs.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// Output kept per stream (the rest is cut, marked `…(truncated)`).
pub const MAX_OUTPUT: usize = 16 * 1024;

/// A script that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Why a script did not run to its end.
#[derive(Debug)]
pub enum NotFinished {
    /// `sh` could not be started.
    Start(std::io::Error),
    /// Still running at the timeout; its process group was killed.
    TimedOut,
}

/// Run `script args…` with cwd `dir`, stdin empty, for at most `timeout`.
pub async fn run(
    script: &Path,
    args: &[&OsStr],
    dir: &Path,
    timeout: Duration,
) -> Result<Finished, NotFinished> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("\"$0\" \"$@\"")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(NotFinished::Start)?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Finished {
            status: out.status,
            stdout: excerpt(&out.stdout),
            stderr: excerpt(&out.stderr),
        }),
        Ok(Err(e)) => Err(NotFinished::Start(e)),
        Err(_) => {
            if let Some(pid) = pid {
                // Its children share the process group.
                let _ = tokio::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .status()
                    .await;
            }
            Err(NotFinished::TimedOut)
        }
    }
}

fn excerpt(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(MAX_OUTPUT)]).into_owned();
    if b.len() > MAX_OUTPUT {
        s.push_str("…(truncated)");
    }
    s
}
