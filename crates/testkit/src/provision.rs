//! Manufacturing a swtpm state with `swtpm_setup`: EKs, EK certificates and a platform
//! certificate signed by a CA private to that state, never the shared `/var/lib/swtpm-localca`.

use crate::error::TestkitError;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// swtpm-tools' certificate tool (a wrapper around `/usr/bin/swtpm_localca`).
const CREATE_CERTS_TOOL: &str = "/usr/share/swtpm/swtpm-localca";

/// What the CA directory written by `swtpm_localca` holds and where we publish its certificates.
const ROOT_CA_CERT: &str = "swtpm-localca-rootca-cert.pem";
const INTERMEDIATE_CA_CERT: &str = "issuercert.pem";
pub(crate) const PUBLISHED_ROOT: &str = "root-ca.pem";
pub(crate) const PUBLISHED_INTERMEDIATE: &str = "intermediate-ca.pem";

/// Directory layout of one instance (or of the template it is copied from).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
    /// `--tpmstate` directory (holds `tpm2-00.permall`).
    pub(crate) fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    /// The local CA's working directory: private keys, serial number, certificates.
    pub(crate) fn ca_state(&self) -> PathBuf {
        self.root.join("ca")
    }
    /// Only the CA certificates an EK verifier should trust (PEM).
    pub(crate) fn ca_certs(&self) -> PathBuf {
        self.root.join("ca-certs")
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.root.join("swtpm.log")
    }
}

/// Run `swtpm_setup` into `layout`, with a CA private to it.
pub(crate) fn provision(layout: &Layout) -> Result<(), TestkitError> {
    for dir in [layout.state(), layout.ca_state(), layout.ca_certs()] {
        fs::create_dir_all(&dir).map_err(|e| TestkitError::io("creating directory", &dir, e))?;
    }
    let root = layout.root();
    let setup_conf = root.join("swtpm_setup.conf");
    let localca_conf = root.join("swtpm-localca.conf");
    let localca_options = root.join("swtpm-localca.options");
    let ca = layout.ca_state();
    write(
        &setup_conf,
        &format!(
            "create_certs_tool = {CREATE_CERTS_TOOL}\n\
             create_certs_tool_config = {}\n\
             create_certs_tool_options = {}\n\
             active_pcr_banks = sha1,sha256,sha384\n",
            localca_conf.display(),
            localca_options.display()
        ),
    )?;
    write(
        &localca_conf,
        &format!(
            "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
            ca = ca.display()
        ),
    )?;
    write(
        &localca_options,
        "--platform-manufacturer Vouch\n--platform-version 2.1\n--platform-model swtpm\n",
    )?;

    let state = layout.state();
    let output = Command::new("swtpm_setup")
        .args([
            "--tpm2",
            "--createek",
            "--create-ek-cert",
            "--create-platform-cert",
            "--lock-nvram",
            "--pcr-banks",
            "sha1,sha256,sha384",
            "--overwrite",
        ])
        .arg("--tpmstate")
        .arg(&state)
        .arg("--config")
        .arg(&setup_conf)
        .output()
        .map_err(|source| TestkitError::Spawn {
            program: "swtpm_setup",
            cause: source,
        })?;
    if !output.status.success() {
        return Err(TestkitError::Provision {
            status: output.status.to_string(),
            state_dir: state,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }

    // swtpm_localca made a self-signed root and an intermediate ("swtpm-localca") that signs
    // the EK and platform certificates; a verifier needs both.
    for (from, to) in [
        (ROOT_CA_CERT, PUBLISHED_ROOT),
        (INTERMEDIATE_CA_CERT, PUBLISHED_INTERMEDIATE),
    ] {
        let src = ca.join(from);
        let dst = layout.ca_certs().join(to);
        fs::copy(&src, &dst).map_err(|e| TestkitError::io("publishing CA certificate", &src, e))?;
    }
    Ok(())
}

/// Copy a provisioned layout (state, CA, CA certificates) into an empty `to`.
pub(crate) fn copy_layout(from: &Layout, to: &Layout) -> Result<(), TestkitError> {
    for (src, dst) in [
        (from.state(), to.state()),
        (from.ca_state(), to.ca_state()),
        (from.ca_certs(), to.ca_certs()),
    ] {
        copy_flat_dir(&src, &dst)?;
    }
    Ok(())
}

fn copy_flat_dir(src: &Path, dst: &Path) -> Result<(), TestkitError> {
    fs::create_dir_all(dst).map_err(|e| TestkitError::io("creating directory", dst, e))?;
    let entries = fs::read_dir(src).map_err(|e| TestkitError::io("listing directory", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| TestkitError::io("listing directory", src, e))?;
        let path = entry.path();
        if path.is_file() {
            fs::copy(&path, dst.join(entry.file_name()))
                .map_err(|e| TestkitError::io("copying swtpm state", &path, e))?;
        }
    }
    Ok(())
}

fn write(path: &Path, contents: &str) -> Result<(), TestkitError> {
    fs::write(path, contents).map_err(|e| TestkitError::io("writing swtpm config", path, e))
}

const TEMPLATE_PREFIX: &str = "vouch-swtpm-template-";

/// The state provisioned once per process and copied for every `Swtpm::start()`.
///
/// It lives in a directory named after this process's pid: statics are never dropped, so
/// the directory outlives the process, and the next process that provisions a template
/// removes those whose process is gone.
pub(crate) fn template() -> Result<&'static Layout, TestkitError> {
    static TEMPLATE: OnceLock<Result<Layout, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            remove_stale_templates();
            let root =
                std::env::temp_dir().join(format!("{TEMPLATE_PREFIX}{}", std::process::id()));
            // A leftover from a process that had our pid: start clean.
            let _ = fs::remove_dir_all(&root);
            let layout = Layout::new(&root);
            provision(&layout)
                .map(|()| layout)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| TestkitError::Template(e.clone()))
}

fn remove_stale_templates() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(TEMPLATE_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
