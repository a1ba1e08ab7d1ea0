//! Linux IMA: the runtime measurement log, keylime runtime policies, and incremental replay
//! of the log against a quoted PCR 10 — wire-compatible with keylime 7.14.
//!
//! - [`entry`]: parse `ascii_runtime_measurements` lines (`ima`, `ima-ng`, `ima-sig`,
//!   `ima-buf`); errors name the line, entry and field.
//! - [`template`]: the template data the kernel hashes, template hashes, PCR extend values.
//! - [`policy`]: the runtime policy JSON document, parsed against upstream's schema.
//! - [`evaluate`]: judging entries against a compiled policy, as upstream's validators.
//! - [`key`], [`keyring`], [`signature`]: IMA signature keys, keyrings, `ima-sig` verification.
//! - [`replay`]: the verifier's per-agent state and the incremental replay.
//! - [`create`]: building policies from files and logs (tenant CLI).
//! - [`testlog`]: writing kernel-format logs for tests that extend a real TPM.
//!
//! See README.md next to this file for the format decisions and where Vouch deliberately
//! differs from upstream.

pub mod create;
pub mod digest;
pub mod entry;
pub mod error;
pub mod evaluate;
pub mod key;
pub mod keyring;
pub mod policy;
pub mod pyregex;
pub mod replay;
pub mod signature;
pub mod template;
pub mod testlog;

#[cfg(test)]
mod tests;

pub use create::{CreateError, LogImport, PolicyBuilder};
pub use digest::FileDigest;
pub use entry::{
    parse_log, slice_from_entry, Entry, Event, LogEntry, Template, IMA_PCR, MAX_LINE_LEN,
};
pub use error::{
    LogField, LogProblem, ParseError, PcrMismatch, PolicyError, ReplayError, Violation,
    ViolationReason, Violations,
};
pub use evaluate::{CheckOptions, Checker, CompiledPolicy};
pub use key::ImaKey;
pub use keyring::Keyring;
pub use policy::{RuntimePolicy, RUNTIME_POLICY_VERSION};
pub use replay::{replay, BootIdentity, ImaReplayState, QuoteProgress, ReplayInput, ReplayOutcome};

/// Judge a whole log against a policy without any PCR (a tenant-side dry run): every
/// violation, in order. Parse errors stop the check.
pub fn check_log(
    policy: &CompiledPolicy,
    log: &str,
    boot_aggregates: &[String],
    options: CheckOptions,
) -> Result<Vec<Violation>, ParseError> {
    let mut checker = Checker::new(policy, Default::default(), boot_aggregates, options);
    let mut out = Vec::new();
    for le in parse_log(log, 0)? {
        let data = le.entry.event.template_data();
        if let Err(v) = checker.check(le.index, &le.entry, &data) {
            out.push(*v);
        }
    }
    Ok(out)
}
