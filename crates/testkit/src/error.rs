use std::path::PathBuf;

/// Why a swtpm instance could not be provisioned, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("{what} ({path}): {cause}")]
    Io {
        what: &'static str,
        path: PathBuf,

        cause: std::io::Error,
    },
    #[error("could not run {program} (is the swtpm / swtpm-tools package installed?): {cause}")]
    Spawn {
        program: &'static str,

        cause: std::io::Error,
    },
    #[error("swtpm_setup failed ({status}) provisioning {state_dir}:\n{output}")]
    Provision {
        status: String,
        state_dir: PathBuf,
        output: String,
    },
    #[error("provisioning the shared swtpm template failed earlier in this process: {0}")]
    Template(String),
    #[error("swtpm did not start after {attempts} attempt(s); last error: {detail}")]
    Start { attempts: u32, detail: String },
    #[error("no free pair of TCP ports (P, P+1) on 127.0.0.1 after {0} tries")]
    NoPorts(u32),
    #[error("swtpm is not running (call start/restart first)")]
    NotRunning,
}

impl TestkitError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TestkitError::Io {
            what,
            path: path.into(),
            cause: source,
        }
    }
}
