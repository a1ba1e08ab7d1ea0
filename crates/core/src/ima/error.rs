//! Errors of the IMA module: log syntax, runtime-policy documents, and replay outcomes.
//!
//! A parse error names the line (1-based, within the text handed in), the absolute entry index
//! and the field; a policy violation names the entry index, its path and the reason.

use crate::tpm::HashAlg;
use std::fmt;
use thiserror::Error;

/// The field of an `ascii_runtime_measurements` line a parse error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogField {
    Line,
    Pcr,
    TemplateHash,
    TemplateName,
    FileDigest,
    Path,
    Signature,
    BufferName,
    Buffer,
}

impl LogField {
    pub fn name(self) -> &'static str {
        match self {
            LogField::Line => "line",
            LogField::Pcr => "PCR index",
            LogField::TemplateHash => "template hash",
            LogField::TemplateName => "template name",
            LogField::FileDigest => "file digest",
            LogField::Path => "path",
            LogField::Signature => "signature",
            LogField::BufferName => "buffer name",
            LogField::Buffer => "buffer",
        }
    }
}

impl fmt::Display for LogField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogProblem {
    #[error("line is {len} bytes, longer than the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error(
        "missing (a {template} line has {expected} space-separated fields, this one has {got})"
    )]
    Missing {
        template: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{0:?} is not a decimal PCR index")]
    NotDecimal(String),
    #[error("{0:?} is not valid hex")]
    NotHex(String),
    #[error("is empty")]
    Empty,
    #[error(
        "is {len} bytes; a template hash is 20 (sha1), 32 (sha256), 48 (sha384) or 64 (sha512) \
         bytes"
    )]
    TemplateHashLength { len: usize },
    #[error(
        "template {0:?} is not supported (keylime 7.14 parses the ima, ima-ng, ima-sig and \
         ima-buf templates)"
    )]
    UnknownTemplate(String),
    #[error("{alg} digest is {len} bytes, a {alg} digest is {expected}")]
    DigestLength {
        alg: String,
        len: usize,
        expected: usize,
    },
    #[error("digest without an algorithm is {len} bytes: only sha1 (20) or md5 (16) may omit it")]
    UnnamedDigest { len: usize },
    #[error("{0:?} is not an IMA hash algorithm name")]
    BadAlgorithm(String),
    #[error("{0:?} has more than one ':'")]
    ExtraColon(String),
    #[error("{len} bytes is too long for the legacy 'ima' template (at most 255)")]
    LegacyNameTooLong { len: usize },
}

/// A line of the IMA log that is not a well-formed entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("IMA log line {line} (entry {entry}): {field} {problem}")]
pub struct ParseError {
    /// 1-based line number within the text that was parsed.
    pub line: usize,
    /// Absolute entry index in the kernel's log (first served index + entries before it).
    pub entry: u64,
    pub field: LogField,
    pub problem: LogProblem,
}

/// A runtime policy document that keylime 7.14 would refuse, or that Vouch cannot evaluate
/// with the same meaning.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("runtime policy is not valid JSON: {0}")]
    Json(String),
    #[error("runtime policy: {at} {problem}")]
    Schema { at: String, problem: String },
    #[error("runtime policy DSSE envelope: payload is neither hex nor base64")]
    DssePayload,
    #[error("runtime policy exclude {pattern:?}: {problem}")]
    Exclude { pattern: String, problem: String },
    #[error("runtime policy \"verification-keys\": {0}")]
    VerificationKeys(String),
    #[error("cannot read {path}: {cause}")]
    Io { path: String, cause: String },
}

impl PolicyError {
    pub(crate) fn schema(at: impl Into<String>, problem: impl Into<String>) -> Self {
        PolicyError::Schema {
            at: at.into(),
            problem: problem.into(),
        }
    }
}

/// Why an entry is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ViolationReason {
    #[error("{path} is not in the runtime policy{}", sig_note(.signature))]
    NotInPolicy {
        path: String,
        /// Why an ima-sig signature did not vouch for the file instead, when it had one.
        signature: Option<String>,
    },
    #[error(
        "digest {digest} of {path} is not one of the {allowed} allowed digests{}",
        sig_note(.signature)
    )]
    DigestNotAllowed {
        path: String,
        digest: String,
        allowed: usize,
        signature: Option<String>,
    },
    #[error("keyring {keyring} is not in the runtime policy's \"keyrings\"")]
    KeyringNotInPolicy { keyring: String },
    #[error("digest {digest} of the key added to keyring {keyring} is not one of the {allowed} allowed in \"keyrings\"")]
    KeyringDigestNotAllowed {
        keyring: String,
        digest: String,
        allowed: usize,
    },
    #[error("measured buffer {name} is not in the runtime policy's \"ima-buf\"")]
    BufferNotInPolicy { name: String },
    #[error(
        "digest {digest} of measured buffer {name} is not one of the {allowed} allowed in \
         \"ima-buf\""
    )]
    BufferDigestNotAllowed {
        name: String,
        digest: String,
        allowed: usize,
    },
    #[error("key measured into keyring {keyring} is not a supported key: {reason}")]
    UnsupportedKey { keyring: String, reason: String },
    #[error("ima-sig signature of {path} is malformed: {reason}")]
    MalformedSignature { path: String, reason: String },
    #[error(
        "template hash of entry {entry} does not match its data: the log states {stated}, the \
         data hashes to {computed} under {alg} (the entry was rewritten)"
    )]
    TemplateHashMismatch {
        entry: u64,
        alg: HashAlg,
        stated: String,
        computed: String,
    },
    #[error(
        "template hash of entry {entry} is a {stated} digest, but the runtime policy's \
         ima.log_hash_alg is {policy}"
    )]
    TemplateHashAlg {
        entry: u64,
        stated: HashAlg,
        policy: HashAlg,
    },
    #[error("entry is for PCR {pcr}; IMA measures into PCR 10")]
    WrongPcr { pcr: u32 },
    #[error(
        "entry is an IMA violation record (time-of-measure/time-of-use or open-writers; template \
         hash all zeros) and violations are configured to fail attestation"
    )]
    ViolationRecord,
}

fn sig_note(signature: &Option<String>) -> String {
    match signature {
        Some(why) => format!(" (and its IMA signature was not accepted: {why})"),
        None => String::new(),
    }
}

/// One rejected entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("IMA entry {entry} ({template} {path}): {reason}")]
pub struct Violation {
    pub entry: u64,
    pub template: &'static str,
    pub path: String,
    pub reason: ViolationReason,
}

impl Violation {
    pub fn is_template_hash_mismatch(&self) -> bool {
        matches!(self.reason, ViolationReason::TemplateHashMismatch { .. })
    }
}

/// The quoted PCR 10 is not reached by replaying the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrMismatch {
    pub bank: HashAlg,
    pub quoted: String,
    /// The accepted aggregate the replay started from.
    pub start_value: String,
    /// The aggregate after the last entry served.
    pub final_value: String,
    pub first_entry: u64,
    pub entries: u64,
}

impl fmt::Display for PcrMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PCR 10 does not match the IMA log: the quoted {} PCR 10 is {}, but neither the \
             accepted value {} nor any prefix of the {} entries served from entry {} reaches it \
             (value after the last entry: {}); the log was truncated, reordered or rewritten",
            self.bank,
            self.quoted,
            self.start_value,
            self.entries,
            self.first_entry,
            self.final_value
        )
    }
}

/// Entries that violate the runtime policy (sorted by entry index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        for (i, v) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, "; and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Why an incremental IMA replay failed. Upstream resets the agent's IMA state on every
/// failure; the caller should do the same (`ImaReplayState::reset`), so the next request asks
/// for the log from entry 0.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    #[error("{0}")]
    Parse(ParseError),
    #[error(
        "agent served the IMA log from entry {served}, but the verifier asked for entry \
         {requested} (or 0): starting over from entry 0"
    )]
    EntryIndexMismatch { requested: u64, served: u64 },
    #[error(
        "TPM boot changed (resetCount/restartCount {stored} before, {quoted} now) but the agent \
         served the IMA log from entry {served}: starting over from entry 0"
    )]
    BootChanged {
        stored: String,
        quoted: String,
        served: u64,
    },
    #[error(
        "no {bank} PCR 10 aggregate is kept for entries before {next_entry} (the PCR bank \
         changed): starting over from entry 0"
    )]
    BankNotTracked { bank: HashAlg, next_entry: u64 },
    #[error("quoted PCR 10 is {len} bytes, a {bank} PCR is {expected}")]
    QuotedLength {
        bank: HashAlg,
        len: usize,
        expected: usize,
    },
    #[error("{0}")]
    PcrMismatch(PcrMismatch),
    #[error("IMA log violates the runtime policy: {0}")]
    Violations(Violations),
    #[error(
        "PCR 10 quote did not make progress to catch up with the IMA log: the previous quote \
         lagged {previous_lag} entries behind the log and this one covers only {certified} new \
         entries"
    )]
    QuoteProgress { previous_lag: u64, certified: u64 },
}

impl ReplayError {
    /// The violations, when the failure is a policy (or template hash) verdict.
    pub fn violations(&self) -> &[Violation] {
        match self {
            ReplayError::Violations(v) => &v.0,
            _ => &[],
        }
    }
}
