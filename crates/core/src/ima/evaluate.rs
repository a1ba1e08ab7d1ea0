//! Judging one entry against a runtime policy, as upstream's validators do
//! (keylime/ima/ast.py `Entry.invalid`; keylime/ima/ima.py `_validate_ima_ng`,
//! `_validate_ima_sig`, `_validate_ima_buf`):
//!
//! 1. the entry must be for PCR 10;
//! 2. a violation record (all-zero template hash) skips every other check; it is accepted
//!    unless configured otherwise (upstream's `ignore_tomtou_errors`, see `CheckOptions`);
//! 3. the stated template hash must be the data hashed with `ima.log_hash_alg`;
//! 4. `ima`/`ima-ng`: an excluded path passes, else the path must be in `digests` with the
//!    file digest's hex among its values (the digest's algorithm is not compared, as upstream);
//!    `boot_aggregate` additionally accepts the aggregates computed from the boot event log;
//! 5. `ima-sig`: an excluded path passes, a signature verifying with a key of the policy's
//!    `verification-keys` or of a keyring learned from the log passes, else as `ima-ng`;
//! 6. `ima-buf`: a buffer that is a key (certificate or public key) measured into a keyring
//!    passes when the keyring is in `ima.ignored_keyrings` (or that list has `*`), else it
//!    must be listed in `keyrings` and is then learned for later `ima-sig` entries; any other
//!    buffer must be listed in `ima-buf`. Excludes apply to both.

use super::digest::FileDigest;
use super::entry::{Entry, Event, IMA_PCR};
use super::error::{PolicyError, Violation, ViolationReason};
use super::key::ImaKey;
use super::keyring::Keyring;
use super::policy::{DigestMap, RuntimePolicy};
use super::pyregex;
use super::signature::{check_signature_header, verify_signature};
use crate::tpm::HashAlg;
use regex::Regex;
use std::collections::BTreeMap;

/// A validated policy ready to judge entries.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    policy: RuntimePolicy,
    excludes: Option<Regex>,
    tenant_keys: Keyring,
}

impl CompiledPolicy {
    pub fn new(policy: RuntimePolicy) -> Result<Self, PolicyError> {
        policy.validate()?;
        let excludes = pyregex::compile_excludes(&policy.excludes)
            .map_err(|(pattern, problem)| PolicyError::Exclude { pattern, problem })?;
        let tenant_keys = Keyring::from_policy_json(&policy.verification_keys)?;
        Ok(Self {
            policy,
            excludes,
            tenant_keys,
        })
    }

    /// Parse, validate and compile a policy document.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        Self::new(RuntimePolicy::from_json(text)?)
    }

    pub fn policy(&self) -> &RuntimePolicy {
        &self.policy
    }

    pub fn log_hash_alg(&self) -> HashAlg {
        self.policy.ima.log_hash_alg
    }

    /// Whether a path matches the excludes (Python `re.match` semantics).
    pub fn is_excluded(&self, path: &str) -> bool {
        self.excludes.as_ref().is_some_and(|r| r.is_match(path))
    }

    pub fn tenant_keys(&self) -> &Keyring {
        &self.tenant_keys
    }

    /// Replace the policy's `verification-keys` with an agent's (deprecated upstream
    /// `ima_sign_verification_keys`, which takes precedence when set).
    pub fn with_tenant_keys(mut self, keys: Keyring) -> Self {
        self.tenant_keys = keys;
        self
    }
}

/// Knobs upstream reads from its verifier configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Fail attestation on IMA violation records. Upstream's `[verifier] ignore_tomtou_errors`
    /// is inverted by a bug in ast.py: `ignore_tomtou_errors = True` is what makes them fail,
    /// and the shipped default (`False`) accepts them; `false` here is that default.
    pub fail_on_violation_records: bool,
}

/// Judges entries in order, learning keys from `ima-buf` keyring entries as it goes.
#[derive(Debug)]
pub struct Checker<'a> {
    policy: &'a CompiledPolicy,
    learned: BTreeMap<String, Keyring>,
    boot_aggregates: &'a [String],
    options: CheckOptions,
}

/// A key an accepted entry adds to a keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedKey {
    pub keyring: String,
    pub key: ImaKey,
}

enum Section {
    Digests,
    Keyrings,
    ImaBuf,
}

impl<'a> Checker<'a> {
    /// `learned`: keys learned from entries accepted before; `boot_aggregates`: lowercase hex
    /// boot aggregates computed from the measured-boot log (any bank), also allowed for the
    /// `boot_aggregate` entry.
    pub fn new(
        policy: &'a CompiledPolicy,
        learned: BTreeMap<String, Keyring>,
        boot_aggregates: &'a [String],
        options: CheckOptions,
    ) -> Self {
        Self {
            policy,
            learned,
            boot_aggregates,
            options,
        }
    }

    pub fn learned(&self) -> &BTreeMap<String, Keyring> {
        &self.learned
    }

    /// Judge entry `index`; `template_data` is `entry.event.template_data()` (passed in so a
    /// replay hashes it only once). A key learned from the entry is added at once and returned.
    pub fn check(
        &mut self,
        index: u64,
        entry: &Entry,
        template_data: &[u8],
    ) -> Result<Option<LearnedKey>, Box<Violation>> {
        let violation = |reason| {
            Box::new(Violation {
                entry: index,
                template: entry.event.template().name(),
                path: entry.event.path().to_string(),
                reason,
            })
        };
        self.check_reason(index, entry, template_data)
            .map_err(violation)
    }

    fn check_reason(
        &mut self,
        index: u64,
        entry: &Entry,
        template_data: &[u8],
    ) -> Result<Option<LearnedKey>, ViolationReason> {
        if entry.pcr != IMA_PCR {
            return Err(ViolationReason::WrongPcr { pcr: entry.pcr });
        }
        let policy_alg = self.policy.log_hash_alg();
        let stated_alg = entry.template_hash_alg();
        if stated_alg != policy_alg {
            return Err(ViolationReason::TemplateHashAlg {
                entry: index,
                stated: stated_alg,
                policy: policy_alg,
            });
        }
        if entry.is_violation() {
            return if self.options.fail_on_violation_records {
                Err(ViolationReason::ViolationRecord)
            } else {
                Ok(None)
            };
        }
        let computed = policy_alg.digest(template_data);
        if computed != entry.template_hash {
            return Err(ViolationReason::TemplateHashMismatch {
                entry: index,
                alg: policy_alg,
                stated: hex::encode(&entry.template_hash),
                computed: hex::encode(computed),
            });
        }
        match &entry.event {
            Event::Ima { digest, path } | Event::ImaNg { digest, path } => self
                .allowed(Section::Digests, path, digest, None)
                .map(|()| None),
            Event::ImaSig {
                digest,
                path,
                signature,
            } => self.check_sig(path, digest, signature).map(|()| None),
            Event::ImaBuf { digest, name, data } => self.check_buf(name, digest, data),
        }
    }

    fn check_sig(
        &self,
        path: &str,
        digest: &FileDigest,
        signature: &[u8],
    ) -> Result<(), ViolationReason> {
        if signature.is_empty() {
            return self.allowed(Section::Digests, path, digest, None);
        }
        check_signature_header(signature).map_err(|e| ViolationReason::MalformedSignature {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        if self.policy.is_excluded(path) {
            return Ok(());
        }
        let mut rings: Vec<&Keyring> = vec![&self.policy.tenant_keys];
        rings.extend(self.learned.values());
        match verify_signature(&rings, signature, digest) {
            Ok(()) => Ok(()),
            Err(why) => self.allowed(Section::Digests, path, digest, Some(why.to_string())),
        }
    }

    fn check_buf(
        &mut self,
        name: &str,
        digest: &FileDigest,
        data: &[u8],
    ) -> Result<Option<LearnedKey>, ViolationReason> {
        let key = ImaKey::from_file_data(data).map_err(|e| ViolationReason::UnsupportedKey {
            keyring: name.to_string(),
            reason: e.to_string(),
        })?;
        let Some(key) = key else {
            return self
                .allowed(Section::ImaBuf, name, digest, None)
                .map(|()| None);
        };
        let ignored = &self.policy.policy.ima.ignored_keyrings;
        if ignored.iter().any(|k| k == "*" || k == name) {
            return Ok(None);
        }
        self.allowed(Section::Keyrings, name, digest, None)?;
        self.learned
            .entry(name.to_string())
            .or_default()
            .add(key.clone());
        Ok(Some(LearnedKey {
            keyring: name.to_string(),
            key,
        }))
    }

    /// Upstream `_validate_ima_ng` for one section of the policy.
    fn allowed(
        &self,
        section: Section,
        path: &str,
        digest: &FileDigest,
        signature: Option<String>,
    ) -> Result<(), ViolationReason> {
        if self.policy.is_excluded(path) {
            return Ok(());
        }
        let p = &self.policy.policy;
        let map: &DigestMap = match section {
            Section::Digests => &p.digests,
            Section::Keyrings => &p.keyrings,
            Section::ImaBuf => &p.ima_buf,
        };
        let extra: &[String] = match section {
            Section::Digests if path == "boot_aggregate" => self.boot_aggregates,
            _ => &[],
        };
        let listed = map.get(path);
        if listed.is_none() && extra.is_empty() {
            return Err(match section {
                Section::Digests => ViolationReason::NotInPolicy {
                    path: path.to_string(),
                    signature,
                },
                Section::Keyrings => ViolationReason::KeyringNotInPolicy {
                    keyring: path.to_string(),
                },
                Section::ImaBuf => ViolationReason::BufferNotInPolicy {
                    name: path.to_string(),
                },
            });
        }
        let hex = digest.hex();
        let allowed = listed.into_iter().flatten().chain(extra);
        if allowed.clone().any(|d| *d == hex) {
            return Ok(());
        }
        let count = allowed.count();
        Err(match section {
            Section::Digests => ViolationReason::DigestNotAllowed {
                path: path.to_string(),
                digest: digest.to_string(),
                allowed: count,
                signature,
            },
            Section::Keyrings => ViolationReason::KeyringDigestNotAllowed {
                keyring: path.to_string(),
                digest: digest.to_string(),
                allowed: count,
            },
            Section::ImaBuf => ViolationReason::BufferDigestNotAllowed {
                name: path.to_string(),
                digest: digest.to_string(),
                allowed: count,
            },
        })
    }
}
