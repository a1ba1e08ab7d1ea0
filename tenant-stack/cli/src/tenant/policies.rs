//! The policies `vouch agent add` hands the verifier, as upstream's tenant builds them
//! (`keylime/cli/policies.py:process_policy`, sent by `tenant.py:do_cvadd`):
//!
//! - `tpm_policy`: the user's PCR values; its `mask` widened with PCR 10 (IMA) when a runtime
//!   policy or its name is given, and with the measured-boot PCRs 0–9, 11–15 when a
//!   measured-boot policy or its name is given (upstream's `config.MEASUREDBOOT_PCRS`).
//! - `runtime_policy`: base64 of the runtime policy file's bytes, as they are on disk;
//!   `runtime_policy_key` `""` (no signature key); `runtime_policy_name`.
//! - `mb_policy`: the refstate as `json.dumps(json.load(f))`; `mb_policy_name`.
//!
//! Every file is read and validated here, before anything is contacted: the runtime policy
//! with `vouch_core::ima` (what the verifier will compile), the refstate with the `example`
//! measured-boot policy of `vouch_core::eventlog`. `vouch policy runtime check` loads through
//! [`RuntimePolicyFile`] too.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vouch_core::api::verifier::{parse_mask, TpmPolicy, TpmPolicyError, IMA_PCR};
use vouch_core::eventlog::replay::MEASURED_BOOT_PCRS;
use vouch_core::eventlog::{MbPolicy, PolicyError as MbPolicyError};
use vouch_core::ima::{CompiledPolicy, PolicyError as ImaPolicyError, RuntimePolicy};

/// Why a policy flag was refused, naming the flag and the file.
#[derive(Debug, Error)]
pub enum PolicyFileError {
    /// `flag`: the flag, or what the file is.
    #[error("{flag} {}: cannot read it: {cause}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    /// `what`: the flag, or "runtime policy" for `vouch policy runtime check`.
    #[error("{what} {}: {cause}", path.display())]
    Runtime {
        what: &'static str,
        path: PathBuf,
        cause: ImaPolicyError,
    },
    #[error(
        "--runtime-policy {}: a signed (DSSE) runtime policy; `vouch agent add` sends runtime \
         policies unsigned (runtime_policy_key \"\") and the Vouch verifier does not verify \
         signatures: pass the unsigned policy",
        path.display()
    )]
    Signed { path: PathBuf },
    #[error("--mb-policy {}: {cause}", path.display())]
    MeasuredBoot { path: PathBuf, cause: MbPolicyError },
    #[error(
        "--tpm-policy pins PCR {pcr}, which the measured-boot policy (--mb-policy) checks \
         instead: remove it from --tpm-policy (upstream refuses this too)"
    )]
    PcrOfMeasuredBoot { pcr: u8 },
    #[error("{flag} must not be empty")]
    EmptyName { flag: &'static str },
    #[error(transparent)]
    Tpm(#[from] TpmPolicyError),
}

/// A runtime (IMA) policy file, read and compiled.
#[derive(Debug, Clone)]
pub struct RuntimePolicyFile {
    pub path: PathBuf,
    /// The file's bytes, sent as they are (upstream's `read_runtime_policy`).
    bytes: Vec<u8>,
    policy: RuntimePolicy,
    /// The document is a DSSE envelope (its `payload` holds the policy).
    signed: bool,
}

impl RuntimePolicyFile {
    /// Read, parse against upstream's schema and compile (excludes, keys) — what the verifier
    /// does with it. A DSSE envelope loads (its payload); [`Policies::new`] refuses to send it.
    /// `what` names the file in errors: the flag it came from, or "runtime policy".
    pub fn load(path: &Path, what: &'static str) -> Result<Self, PolicyFileError> {
        let text = std::fs::read_to_string(path).map_err(|cause| PolicyFileError::Read {
            flag: what,
            path: path.to_path_buf(),
            cause,
        })?;
        let invalid = |cause| PolicyFileError::Runtime {
            what,
            path: path.to_path_buf(),
            cause,
        };
        let policy = RuntimePolicy::from_json(&text).map_err(invalid)?;
        let compiled = CompiledPolicy::new(policy).map_err(invalid)?;
        // As upstream's `verify_runtime_policy`: a truthy `payload` makes it an envelope.
        let signed = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("payload").and_then(|p| p.as_str()).map(str::len))
            .is_some_and(|n| n > 0);
        Ok(Self {
            path: path.to_path_buf(),
            bytes: text.into_bytes(),
            policy: compiled.policy().clone(),
            signed,
        })
    }

    pub fn policy(&self) -> &RuntimePolicy {
        &self.policy
    }

    /// `N path(s) with digests, M exclude(s), K keyring(s)`.
    pub fn summary(&self) -> String {
        format!(
            "{} path(s) with digests, {} exclude(s), {} keyring(s)",
            self.policy.digests.len(),
            self.policy.excludes.len(),
            self.policy.keyrings.len()
        )
    }

    /// The add body's `runtime_policy`.
    pub fn to_base64(&self) -> String {
        B64.encode(&self.bytes)
    }
}

/// A measured-boot reference state (upstream's `--mb-policy` / `--mb_refstate` file).
#[derive(Debug, Clone)]
pub struct MbPolicyFile {
    pub path: PathBuf,
    /// `json.dumps(json.load(f))`: Python's layout (keys in sorted order; upstream keeps the
    /// file's order, which no reader depends on).
    json: String,
    /// `{}`: upstream's "no refstate", evaluated as accept-all.
    empty: bool,
}

impl MbPolicyFile {
    /// Read and validate as upstream's `example` policy would use it (unknown keys refused).
    pub fn load(path: &Path) -> Result<Self, PolicyFileError> {
        let text = std::fs::read_to_string(path).map_err(|cause| PolicyFileError::Read {
            flag: "--mb-policy",
            path: path.to_path_buf(),
            cause,
        })?;
        let invalid = |cause| PolicyFileError::MeasuredBoot {
            path: path.to_path_buf(),
            cause,
        };
        let loaded =
            MbPolicy::load(vouch_core::eventlog::policy::EXAMPLE, Some(&text)).map_err(invalid)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(MbPolicyError::Json(e.to_string())))?;
        Ok(Self {
            path: path.to_path_buf(),
            json: vouch_core::revocation::python_json(&value),
            empty: matches!(loaded, MbPolicy::AcceptAll),
        })
    }

    /// The add body's `mb_policy`.
    pub fn json(&self) -> &str {
        &self.json
    }
}

/// The policy fields of the verifier's add body (§5.1), exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFields {
    pub tpm_policy: String,
    pub runtime_policy: String,
    pub runtime_policy_name: String,
    pub runtime_policy_key: String,
    pub mb_policy: Option<String>,
    pub mb_policy_name: String,
}

/// What the verifier is told to check, with the PCR mask upstream derives from it.
#[derive(Debug, Clone)]
pub struct Policies {
    tpm: TpmPolicy,
    runtime: Option<RuntimePolicyFile>,
    runtime_name: Option<String>,
    mb: Option<MbPolicyFile>,
    mb_name: Option<String>,
}

impl Policies {
    /// PCR values only: no runtime or measured-boot policy.
    pub fn pcrs_only(tpm: TpmPolicy) -> Self {
        Self {
            tpm,
            runtime: None,
            runtime_name: None,
            mb: None,
            mb_name: None,
        }
    }

    /// Upstream's `process_policy`: a runtime policy or its name adds PCR 10 to the mask, a
    /// measured-boot policy or its name adds PCRs 0–9 and 11–15; the user's mask bits and PCR
    /// values stay. With a measured-boot policy file the user may not pin those PCRs
    /// (`enforce_pcrs`; PCR 10 never can be, `TpmPolicy` refuses it).
    pub fn new(
        tpm: TpmPolicy,
        runtime: Option<RuntimePolicyFile>,
        runtime_name: Option<String>,
        mb: Option<MbPolicyFile>,
        mb_name: Option<String>,
    ) -> Result<Self, PolicyFileError> {
        if let Some(f) = runtime.as_ref().filter(|f| f.signed) {
            return Err(PolicyFileError::Signed {
                path: f.path.clone(),
            });
        }
        for (flag, name) in [
            ("--runtime-policy-name", &runtime_name),
            ("--mb-policy-name", &mb_name),
        ] {
            if name.as_deref().is_some_and(str::is_empty) {
                return Err(PolicyFileError::EmptyName { flag });
            }
        }
        if mb.is_some() {
            if let Some(&pcr) = tpm.pcrs.keys().find(|p| MEASURED_BOOT_PCRS.contains(p)) {
                return Err(PolicyFileError::PcrOfMeasuredBoot { pcr });
            }
        }
        let mut bits = parse_mask(&tpm.mask)?;
        if runtime.is_some() || runtime_name.is_some() {
            bits |= 1 << IMA_PCR;
        }
        if mb.is_some() || mb_name.is_some() {
            for pcr in MEASURED_BOOT_PCRS {
                bits |= 1 << pcr;
            }
        }
        Ok(Self {
            tpm: TpmPolicy {
                mask: format!("{bits:#x}"),
                ..tpm
            },
            runtime,
            runtime_name,
            mb,
            mb_name,
        })
    }

    /// The PCR policy with the widened mask.
    pub fn tpm_policy(&self) -> &TpmPolicy {
        &self.tpm
    }

    pub fn fields(&self) -> PolicyFields {
        PolicyFields {
            tpm_policy: self.tpm.to_json(),
            runtime_policy: self
                .runtime
                .as_ref()
                .map(RuntimePolicyFile::to_base64)
                .unwrap_or_default(),
            runtime_policy_name: self.runtime_name.clone().unwrap_or_default(),
            runtime_policy_key: String::new(),
            mb_policy: self.mb.as_ref().map(|m| m.json.clone()),
            mb_policy_name: self.mb_name.clone().unwrap_or_default(),
        }
    }

    /// One line per attached policy, for progress output.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match (&self.runtime, &self.runtime_name) {
            (Some(f), name) => lines.push(format!(
                "runtime policy {} from {} ({}) attached; PCR {IMA_PCR} in the mask",
                name.as_deref()
                    .map_or_else(|| "(named after the agent)".to_owned(), |n| format!("{n:?}")),
                f.path.display(),
                f.summary()
            )),
            (None, Some(name)) => lines.push(format!(
                "runtime policy {name:?} (already on the verifier) attached; PCR {IMA_PCR} in the mask"
            )),
            (None, None) => {}
        }
        let mb_pcrs = "PCRs 0-9, 11-15 in the mask";
        match (&self.mb, &self.mb_name) {
            (Some(f), name) => lines.push(format!(
                "measured-boot policy{} from {} attached ({}); {mb_pcrs}",
                name.as_deref()
                    .map_or_else(String::new, |n| format!(" {n:?}")),
                f.path.display(),
                if f.empty {
                    "empty refstate: accepts any boot"
                } else {
                    "refstate for the example policy"
                },
            )),
            (None, Some(name)) => lines.push(format!(
                "measured-boot policy name {name:?} sent (no refstate); {mb_pcrs}"
            )),
            (None, None) => {}
        }
        if lines.is_empty() {
            lines.push("no runtime or measured-boot policy: PCR values only".to_owned());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn runtime_file(dir: &Path) -> RuntimePolicyFile {
        let mut b = vouch_core::ima::PolicyBuilder::new();
        b.add_digest("/usr/bin/bash", &"ab".repeat(32)).unwrap();
        let path = dir.join("runtime.json");
        std::fs::write(&path, b.build(None).unwrap().to_json()).unwrap();
        RuntimePolicyFile::load(&path, "--runtime-policy").unwrap()
    }

    fn mb_file(dir: &Path, text: &str) -> Result<MbPolicyFile, PolicyFileError> {
        let path = dir.join("refstate.json");
        std::fs::write(&path, text).unwrap();
        MbPolicyFile::load(&path)
    }

    #[test]
    fn masks_and_fields_as_upstream() {
        let d = tempfile::tempdir().unwrap();
        let user =
            TpmPolicy::parse(&format!(r#"{{"23": ["{ZERO}"], "mask": "0x800000"}}"#)).unwrap();

        // Nothing attached: the user's policy untouched.
        let p = Policies::pcrs_only(user.clone());
        let f = p.fields();
        assert_eq!(f.tpm_policy, user.to_json());
        assert_eq!((f.runtime_policy.as_str(), f.mb_policy), ("", None));

        // Runtime policy: PCR 10 added, the file's bytes base64, key empty.
        let rt = runtime_file(d.path());
        let p = Policies::new(user.clone(), Some(rt.clone()), None, None, None).unwrap();
        assert_eq!(p.tpm_policy().mask, "0x800400");
        assert_eq!(p.tpm_policy().pcrs, user.pcrs, "user PCR values kept");
        let f = p.fields();
        assert_eq!(
            B64.decode(&f.runtime_policy).unwrap(),
            std::fs::read(&rt.path).unwrap()
        );
        assert_eq!(f.runtime_policy_key, "");
        assert_eq!(f.runtime_policy_name, "");
        // The name alone widens the mask as well.
        let p = Policies::new(user.clone(), None, Some("prod".into()), None, None).unwrap();
        assert_eq!(p.tpm_policy().mask, "0x800400");
        assert_eq!(p.fields().runtime_policy, "");
        assert_eq!(p.fields().runtime_policy_name, "prod");

        // Measured boot: PCRs 0-9 and 11-15, the refstate in Python's json.dumps layout.
        let mb = mb_file(d.path(), "{\"has_secureboot\":false,  \"kernels\": []}").unwrap();
        assert!(!mb.empty);
        let p = Policies::new(
            user.clone(),
            Some(rt),
            Some("prod".into()),
            Some(mb),
            Some("boot".into()),
        )
        .unwrap();
        assert_eq!(p.tpm_policy().mask, "0x80ffff");
        let f = p.fields();
        assert_eq!(
            f.mb_policy.as_deref(),
            Some("{\"has_secureboot\": false, \"kernels\": []}")
        );
        assert_eq!(f.mb_policy_name, "boot");
        assert_eq!(f.runtime_policy_name, "prod");
        let tpm: serde_json::Value = serde_json::from_str(&f.tpm_policy).unwrap();
        assert_eq!(tpm["mask"], "0x80ffff");
        assert_eq!(tpm["23"], serde_json::json!([ZERO]));
        let lines = p.describe().join("\n");
        assert!(lines.contains("runtime policy \"prod\""), "{lines}");
        assert!(lines.contains("measured-boot policy \"boot\""), "{lines}");

        // The mb name alone: mask widened, no refstate sent.
        let p = Policies::new(user, None, None, None, Some("boot".into())).unwrap();
        assert_eq!(p.tpm_policy().mask, "0x80fbff");
        assert_eq!(p.fields().mb_policy, None);
    }

    #[test]
    fn refusals_name_the_flag_and_the_problem() {
        let d = tempfile::tempdir().unwrap();
        let pinned = TpmPolicy::parse(&format!(r#"{{"15": ["{ZERO}"]}}"#)).unwrap();
        let empty = mb_file(d.path(), "{}").unwrap();
        assert!(empty.empty);
        let e = Policies::new(pinned.clone(), None, None, Some(empty), None).unwrap_err();
        assert!(e.to_string().contains("pins PCR 15"), "{e}");
        // Only the refstate file reserves them (upstream's enforce_pcrs), not its name.
        Policies::new(pinned.clone(), None, None, None, Some("boot".into())).unwrap();
        let e = Policies::new(pinned, None, Some(String::new()), None, None).unwrap_err();
        assert_eq!(e.to_string(), "--runtime-policy-name must not be empty");

        let e = mb_file(d.path(), r#"{"has_secureboot": true, "kernal": []}"#).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("--mb-policy "), "{text}");
        assert!(text.contains("kernal"), "{text}");

        let bad = d.path().join("bad.json");
        std::fs::write(&bad, r#"{"meta": {"version": 1}}"#).unwrap();
        let e = RuntimePolicyFile::load(&bad, "--runtime-policy").unwrap_err();
        assert!(e.to_string().starts_with("--runtime-policy "), "{e}");

        let e = RuntimePolicyFile::load(&d.path().join("missing.json"), "--runtime-policy")
            .unwrap_err();
        assert!(e.to_string().contains("cannot read it"), "{e}");

        // A DSSE envelope around a valid policy loads, but is not sent.
        let inner = runtime_file(d.path());
        let envelope = serde_json::json!({
            "payload": B64.encode(std::fs::read(&inner.path).unwrap()),
            "payloadType": "application/vnd.keylime+json",
            "signatures": [],
        });
        let signed_path = d.path().join("signed.json");
        std::fs::write(&signed_path, envelope.to_string()).unwrap();
        let signed = RuntimePolicyFile::load(&signed_path, "--runtime-policy").unwrap();
        let e = Policies::new(
            TpmPolicy::parse("{}").unwrap(),
            Some(signed),
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("signed (DSSE)"), "{e}");
    }
}
