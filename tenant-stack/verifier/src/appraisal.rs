//! Appraising one integrity quote (`docs/keylime-wire.md` §4.2–4.4, §5.3): accepted
//! algorithms, quote structure, AK signature, nonce, required PCRs, PCR 16 = H(NK PEM),
//! `tpm_policy` values, TPM clock. The only way to a [`GoodQuote`].
//!
//! Each refusal is a [`Failure`] with an upstream-style event id (`pcr_validation.invalid_pcr_15`)
//! and a reason a person can act on.

use crate::admission::parse_ak;
use crate::db::{StoredAgent, TpmClock};
use std::collections::BTreeSet;
use std::fmt;
use vouch_core::api::agent::QuoteResponse;
use vouch_core::api::binding::{check_nk_binding, BindingError, DATA_PCR};
use vouch_core::api::quote_string::QuoteString;
use vouch_core::api::verifier::TpmPolicy;
use vouch_core::keys::VerifyingKey;
use vouch_core::quote::QuoteError;
use vouch_core::tpm::{HashAlg, PcrValues};

/// Upstream's severity label index for `emergency` (the shipped `severity_policy` maps every
/// event to it, so every failure stops polling, §5.4).
pub const SEVERITY_EMERGENCY: u32 = 6;

/// Why a quote (or the agent's answer) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `component.event`, upstream-style (`failure.py`), e.g. `pcr_validation.invalid_pcr_15`.
    pub event_id: String,
    pub reason: String,
}

impl Failure {
    pub fn new(event_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            event_id: event_id.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.event_id)
    }
}

/// A quote that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodQuote {
    /// The NK PEM the quote binds (from this response or the cached one).
    pub nk_pem: String,
    /// The response carried a `pubkey` different from the cached one (V must be re-sent).
    pub nk_changed: bool,
    pub clock: TpmClock,
    pub hash_alg: String,
    pub enc_alg: String,
    pub sign_alg: String,
    /// The quote's bank and the PCR values it signs (verified).
    pub bank: HashAlg,
    pub pcrs: PcrValues,
}

impl GoodQuote {
    /// The verified PCR `index` of the quote's bank, if quoted.
    pub fn pcr(&self, index: u8) -> Option<&[u8]> {
        self.pcrs.get(self.bank, index)
    }

    /// The indexes of the quote's bank that were quoted.
    pub fn quoted(&self) -> BTreeSet<u8> {
        self.pcrs
            .iter()
            .filter(|(h, _, _)| *h == self.bank)
            .map(|(_, i, _)| i)
            .collect()
    }
}

/// `rsa` ≡ `rsa2048`, `ecc` ≡ `ecc256` (`common/algorithms.py:is_accepted`).
fn enc_accepted(alg: &str, accepted: &[String]) -> bool {
    let norm = |a: &str| match a {
        "rsa2048" => "rsa".to_owned(),
        "ecc256" => "ecc".to_owned(),
        other => other.to_owned(),
    };
    accepted.iter().any(|a| norm(a) == norm(alg))
}

/// The PCRs every quote must cover: the policy mask plus PCR 16.
pub fn required_pcrs(policy: &TpmPolicy) -> Result<Vec<u8>, Failure> {
    let mut pcrs = policy
        .mask_pcrs()
        .map_err(|e| Failure::new("quote_validation.bad_policy", e.to_string()))?;
    if !pcrs.contains(&DATA_PCR) {
        pcrs.push(DATA_PCR);
        pcrs.sort_unstable();
    }
    Ok(pcrs)
}

/// The agent's AK as a verifying key, or the failure that makes its quotes uncheckable.
pub fn load_ak(agent: &StoredAgent) -> Result<VerifyingKey, Failure> {
    parse_ak(&agent.ak_tpm).map_err(|why| {
        Failure::new(
            "quote_validation.bad_ak",
            format!("the stored ak_tpm is unusable: {why}"),
        )
    })
}

/// Appraise `resp`, the answer to our request with `nonce`, against what is stored for `agent`
/// and its `tpm_policy` (parsed once per poll by the caller).
pub fn appraise(
    agent: &StoredAgent,
    policy: &TpmPolicy,
    ak: &VerifyingKey,
    nonce: &str,
    resp: &QuoteResponse,
) -> Result<GoodQuote, Failure> {
    let hash = HashAlg::from_name(&resp.hash_alg)
        .filter(|_| agent.accept_tpm_hash_algs.contains(&resp.hash_alg))
        .ok_or_else(|| {
            Failure::new(
                "algorithms.unaccepted_hash_alg",
                format!(
                    "quote hash_alg {:?} is not in accept_tpm_hash_algs {:?}",
                    resp.hash_alg, agent.accept_tpm_hash_algs
                ),
            )
        })?;
    if !enc_accepted(&resp.enc_alg, &agent.accept_tpm_encryption_algs) {
        return Err(Failure::new(
            "algorithms.unaccepted_enc_alg",
            format!(
                "agent enc_alg {:?} is not in accept_tpm_encryption_algs {:?}",
                resp.enc_alg, agent.accept_tpm_encryption_algs
            ),
        ));
    }
    if !agent.accept_tpm_signing_algs.contains(&resp.sign_alg) {
        return Err(Failure::new(
            "algorithms.unaccepted_sign_alg",
            format!(
                "quote sign_alg {:?} is not in accept_tpm_signing_algs {:?}",
                resp.sign_alg, agent.accept_tpm_signing_algs
            ),
        ));
    }
    let quote = QuoteString::parse(&resp.quote).map_err(|e| {
        Failure::new(
            "quote_validation.malformed_quote",
            format!("the agent's quote string is malformed: {e}"),
        )
    })?;
    if quote.hash_alg() != hash {
        return Err(Failure::new(
            "quote_validation.hash_mismatch",
            format!(
                "Quote was expected to use {hash} but used {} (the response's hash_alg and the signature disagree)",
                quote.hash_alg()
            ),
        ));
    }
    let required = required_pcrs(policy)?;
    let verified = quote
        .verify(ak, nonce.as_bytes(), &required)
        .map_err(|e| quote_failure(e, nonce))?;

    // PCR 16 binds the NK whose PEM the agent returned (partial=0) or the cached one.
    let (nk_pem, nk_changed) = match (&resp.pubkey, &agent.public_key) {
        (Some(new), cached) => (new.clone(), cached.as_deref() != Some(new.as_str())),
        (None, Some(cached)) => (cached.clone(), false),
        (None, None) => {
            return Err(Failure::new(
                "quote_validation.no_pubkey",
                "the agent sent no pubkey and none is known from an earlier quote",
            ))
        }
    };
    check_nk_binding(&verified, &nk_pem).map_err(|e| match e {
        BindingError::MissingPcr16 { .. } => {
            Failure::new("pcr_validation.missing_pcr_16", e.to_string())
        }
        BindingError::Mismatch {
            bank,
            expected,
            found,
        } => Failure::new(
            "pcr_validation.invalid_pcr_16",
            format!(
                "PCR 16 does not bind the agent's NK (NK substitution?): PCR 16 ({bank}) is 0x{found}, \
                 but H(NK PEM) extended from zero gives 0x{expected}; the node key the agent \
                 presented is not the one its TPM was bound to, so V is not sent to it"
            ),
        ),
    })?;

    for (pcr, allowed) in &policy.pcrs {
        let value = verified.pcrs().get(hash, *pcr).ok_or_else(|| {
            Failure::new(
                "pcr_validation.missing_pcrs",
                format!("tpm_policy pins PCR {pcr} but the quote does not include it"),
            )
        })?;
        let value = hex::encode(value);
        if !allowed.contains(&value) {
            let allowed: Vec<String> = allowed.iter().map(|a| format!("0x{a}")).collect();
            return Err(Failure::new(
                format!("pcr_validation.invalid_pcr_{pcr}"),
                format!(
                    "PCR {pcr} ({hash}) is 0x{value} but tpm_policy allows [{}]",
                    allowed.join(", ")
                ),
            ));
        }
    }

    let clock = TpmClock {
        clock: verified.clock(),
        reset_count: verified.reset_count(),
        restart_count: verified.restart_count(),
    };
    check_timing(agent.tpm_clock, clock, verified.safe())?;

    Ok(GoodQuote {
        nk_pem,
        nk_changed,
        clock,
        hash_alg: resp.hash_alg.clone(),
        enc_alg: resp.enc_alg.clone(),
        sign_alg: resp.sign_alg.clone(),
        bank: hash,
        pcrs: verified.pcrs().clone(),
    })
}

fn quote_failure(e: QuoteError, nonce: &str) -> Failure {
    match e {
        QuoteError::Signature(cause) => Failure::new(
            "quote_validation.invalid_signature",
            format!(
                "quote signature does not verify with the AK registered for this agent ({cause}): \
                 another TPM or agent is answering at this address, or ak_tpm is not this agent's"
            ),
        ),
        QuoteError::NonceMismatch { found, .. } => Failure::new(
            "quote_validation.nonce_mismatch",
            format!("quote nonce is not the one sent (replay?): sent {nonce:?}, the quote carries {found}"),
        ),
        QuoteError::RequiredPcrsNotQuoted { .. } => {
            Failure::new("pcr_validation.missing_pcrs", format!("{e}"))
        }
        QuoteError::AkNotRestrictedSigning(_) => {
            Failure::new("quote_validation.bad_ak", e.to_string())
        }
        other => Failure::new(
            "quote_validation.invalid_quote",
            format!("quote does not verify: {other}"),
        ),
    }
}

/// `Tpm.check_quote_timing`: counters never decrease, `safe` is set, and the clock moves
/// forward unless both counters grew (a TPM reset).
fn check_timing(prev: Option<TpmClock>, now: TpmClock, safe: bool) -> Result<(), Failure> {
    let fail = |why: String| Failure::new("quote_validation.clock", why);
    if !safe {
        return Err(fail(
            "the TPM reports its clock as not safe (clockInfo.safe = 0): it may have been rolled back".into(),
        ));
    }
    let Some(prev) = prev else { return Ok(()) };
    if now.reset_count < prev.reset_count || now.restart_count < prev.restart_count {
        return Err(fail(format!(
            "TPM reset/restart counters went backwards ({}/{} after {}/{}): replayed or foreign quote?",
            now.reset_count, now.restart_count, prev.reset_count, prev.restart_count
        )));
    }
    let rebooted = now.reset_count > prev.reset_count && now.restart_count > prev.restart_count;
    if !rebooted && now.clock <= prev.clock {
        return Err(fail(format!(
            "TPM clock did not advance ({} ms after {} ms): replayed quote?",
            now.clock, prev.clock
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(clock: u64, reset_count: u32, restart_count: u32) -> TpmClock {
        TpmClock {
            clock,
            reset_count,
            restart_count,
        }
    }

    #[test]
    fn timing_rules() {
        assert!(check_timing(None, c(5, 0, 0), true).is_ok());
        assert!(check_timing(None, c(5, 0, 0), false).is_err());
        assert!(check_timing(Some(c(5, 0, 0)), c(6, 0, 0), true).is_ok());
        assert!(check_timing(Some(c(5, 0, 0)), c(5, 0, 0), true).is_err());
        assert!(check_timing(Some(c(5, 1, 0)), c(9, 0, 0), true).is_err());
        assert!(check_timing(Some(c(5, 0, 0)), c(1, 1, 1), true).is_ok());
        assert!(check_timing(Some(c(5, 0, 0)), c(1, 1, 0), true).is_err());
    }

    #[test]
    fn enc_alg_normalisation() {
        assert!(enc_accepted("rsa2048", &["rsa".into()]));
        assert!(enc_accepted("ecc", &["ecc256".into()]));
        assert!(!enc_accepted("ecc", &["rsa".into()]));
    }

    #[test]
    fn pcr16_always_required() {
        let p = TpmPolicy::parse("{\"15\": [\"00\"], \"mask\": \"0x8000\"}").unwrap();
        assert_eq!(required_pcrs(&p).unwrap(), vec![15, 16]);
        let p = TpmPolicy::parse("{\"mask\": \"0x0\"}").unwrap();
        assert_eq!(required_pcrs(&p).unwrap(), vec![16]);
    }
}
