//! Measured-boot policies: upstream keylime's registry (`accept-all`, `reject-all`, `example`)
//! with the `example` policy driven by a [`RefState`].
//!
//! Evaluation assumes the log already replayed to the quote ([`super::replay::verify`]); it
//! re-checks the data-to-digest binding of the events whose data it reads (PCR 7 variables,
//! separators) so that it is sound on its own. Unlike upstream, which stops at the first
//! problem, it reports every failure it finds.

mod boot;
pub mod refstate;
mod secureboot;

pub use refstate::{CmdlineRegex, DigestSet, Kernel, KeyRef, RefState, ScrtmAndBios, Sha256Hex};

use super::error::PolicyError;
use super::parse::EventLog;
use super::replay::MEASURED_BOOT_PCRS;
use std::collections::BTreeSet;
use std::fmt;

/// Upstream's default `measured_boot_policy_name`.
pub const ACCEPT_ALL: &str = "accept-all";
pub const REJECT_ALL: &str = "reject-all";
/// Upstream's refstate-driven policy (`keylime.mba.elchecking.example`).
pub const EXAMPLE: &str = "example";

/// PCRs upstream's example policy reads (`Example.relevant_pcr_indices`).
pub const EXAMPLE_PCRS: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];

/// A loaded measured-boot policy.
#[derive(Debug, Clone)]
pub enum MbPolicy {
    AcceptAll,
    RejectAll,
    RefState(Box<RefState>),
}

/// What a failed check was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    RejectAll,
    /// An event the policy reads does not hash to its digest.
    EventData,
    SecureBoot,
    /// PK, KEK, db, dbx, vendor_db.
    KeyDatabase,
    ScrtmAndBios,
    Separator,
    MokList,
    BootApplications,
    Kernel,
    Initrd,
    KernelCmdline,
}

/// One reason a log does not satisfy the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFailure {
    pub check: Check,
    /// tpm2_eventlog's `EventNum` of the event concerned, if one is.
    pub event: Option<usize>,
    pub message: String,
}

impl PolicyFailure {
    pub(crate) fn new(check: Check, event: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            check,
            event,
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `None`, `""`, `"null"` and `"{}"`: upstream evaluates nothing for these.
fn is_no_refstate(refstate: Option<&str>) -> bool {
    match refstate.map(str::trim) {
        None | Some("") | Some("null") => true,
        Some(s) => RefState::is_empty_object(s),
    }
}

impl MbPolicy {
    /// Load the way upstream's verifier combines its `measured_boot_policy_name` with the
    /// agent's `mb_policy` (refstate). An empty name means `accept-all`. A refstate given to
    /// `accept-all` must still be JSON (upstream's `policy_is_valid`), but is not evaluated.
    pub fn load(name: &str, refstate: Option<&str>) -> Result<Self, PolicyError> {
        match name {
            "" | ACCEPT_ALL => {
                if !is_no_refstate(refstate) {
                    if let Some(s) = refstate {
                        serde_json::from_str::<serde_json::Value>(s)
                            .map_err(|e| PolicyError::Json(e.to_string()))?;
                    }
                }
                Ok(MbPolicy::AcceptAll)
            }
            REJECT_ALL => Ok(MbPolicy::RejectAll),
            EXAMPLE => Self::from_refstate(refstate),
            other => Err(PolicyError::UnknownName(other.to_string())),
        }
    }

    /// The `example` policy for this refstate; no refstate (or `{}`) accepts everything.
    pub fn from_refstate(refstate: Option<&str>) -> Result<Self, PolicyError> {
        match refstate {
            Some(s) if !is_no_refstate(refstate) => {
                Ok(MbPolicy::RefState(Box::new(RefState::from_json(s)?)))
            }
            _ => Ok(MbPolicy::AcceptAll),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            MbPolicy::AcceptAll => ACCEPT_ALL,
            MbPolicy::RejectAll => REJECT_ALL,
            MbPolicy::RefState(_) => EXAMPLE,
        }
    }

    /// PCRs the policy reads; empty for accept-all and reject-all (`get_relevant_pcrs`).
    pub fn relevant_pcrs(&self) -> BTreeSet<u8> {
        match self {
            MbPolicy::RefState(_) => EXAMPLE_PCRS.into_iter().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// PCRs whose quoted values the log must replay to (upstream's `mb_pcrs_to_check`):
    /// the measured-boot PCRs, narrowed to the policy's relevant ones if it has any.
    pub fn pcrs_to_replay(&self) -> BTreeSet<u8> {
        let relevant = self.relevant_pcrs();
        MEASURED_BOOT_PCRS
            .into_iter()
            .filter(|p| relevant.is_empty() || relevant.contains(p))
            .collect()
    }

    /// Check the log against the policy.
    pub fn evaluate(&self, log: &EventLog) -> Result<(), Vec<PolicyFailure>> {
        let failures = match self {
            MbPolicy::AcceptAll => Vec::new(),
            MbPolicy::RejectAll => vec![PolicyFailure::new(
                Check::RejectAll,
                None,
                "the measured boot policy is reject-all",
            )],
            MbPolicy::RefState(rs) => {
                let mut out = Vec::new();
                secureboot::check(rs, log, &mut out);
                boot::check(rs, log, &mut out);
                out
            }
        };
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }
}

#[cfg(test)]
mod tests;
