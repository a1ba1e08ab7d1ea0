//! The measured-boot part of appraising a quote (upstream `tpm_main.py:check_pcrs` and
//! `mba`): the UEFI event log the agent served (`mb_measurement_list`) must parse, replay to
//! the quoted PCRs, and satisfy the agent's refstate.
//!
//! Runs for agents whose measured-boot policy asks for checking ([`crate::mb_policy::is_active`]),
//! after [`crate::appraisal::appraise`] accepted the quote, and **on every quote**: upstream's
//! default `measured_boot_evaluate = once` evaluates the refstate only at the first quote, so
//! a node rebooted into another kernel keeps attesting as long as its log replays. The whole
//! check costs ~0.1 ms per quote on the 30-event sample boot (`cargo bench -p vouch-core
//! --bench eventlog`). The log is parsed afresh each time (it changes only across reboots,
//! which the replay against the quote detects).
//!
//! Event ids and wording are upstream's where upstream has the case:
//! `pcr_validation.unused_pcr_N` (no log), `measured_boot.parser.*` (log refused),
//! `measured_boot.invalid_pcr_N` (replay differs), `measured_boot.missing_pcrs`,
//! `measured_boot.policy_<engine>` (refstate not satisfied), `pcr_validation.invalid_mb_policy`.

use crate::appraisal::{Failure, GoodQuote};
use crate::db::{self, Db, DbError, StoredAgent};
use crate::mb_policy::{is_active, pcrs_to_check, Engine};
use crate::named_policy::PolicyKind;
use vouch_core::api::agent::QuoteResponse;
use vouch_core::eventlog::{replay, EventLog, LogError, MbPolicy, PolicyFailure, ReplayFailure};

/// The agent's measured-boot policy loaded with `engine`; `Ok(None)` when the agent has none,
/// or its refstate asks for nothing (upstream's `{}`).
pub async fn policy_for(
    db: &Db,
    engine: Engine,
    agent: &StoredAgent,
) -> Result<Result<Option<MbPolicy>, Failure>, DbError> {
    let Some(name) = agent.mb_policy_name.clone() else {
        return Ok(Ok(None));
    };
    let key = name.clone();
    let stored = db
        .call(move |c| db::get_policy(c, PolicyKind::MeasuredBoot, &key))
        .await?;
    let invalid = |why: String| {
        Failure::new(
            "pcr_validation.invalid_mb_policy",
            format!("Invalid measured boot policy {name:?}: {why}"),
        )
    };
    let Some(refstate) = stored else {
        return Ok(Err(invalid("it was deleted from the verifier".into())));
    };
    if !is_active(&refstate) {
        return Ok(Ok(None));
    }
    Ok(engine.load(&refstate).map(Some).map_err(|e| {
        invalid(format!(
            "it does not load with measured_boot_policy_name {:?} (was the engine changed \
             since it was stored?): {e}",
            engine.name()
        ))
    }))
}

/// Check the event log of `resp` against `good` (a quote that passed every other check) and
/// `policy`. `Ok`: the log's IMA boot aggregates in the quote's bank (lowercase hex), which a
/// log that replayed to the quote vouches for.
pub fn check(
    policy: &MbPolicy,
    good: &GoodQuote,
    resp: &QuoteResponse,
) -> Result<Vec<String>, Failure> {
    let checked = pcrs_to_check(policy, &good.quoted()).map_err(|e| {
        Failure::new(
            "measured_boot.missing_pcrs",
            format!("PCRs are missing in quote: {e}"),
        )
    })?;
    let Some(b64) = resp
        .mb_measurement_list
        .as_deref()
        .filter(|l| !l.is_empty())
    else {
        let first = checked.first().copied().unwrap_or_default();
        let all: Vec<String> = checked.iter().map(u8::to_string).collect();
        return Err(Failure::new(
            format!("pcr_validation.unused_pcr_{first}"),
            format!(
                "Measured Boot PCR {first} in policy, but no measurement list provided: the \
                 agent sent no mb_measurement_list (no UEFI event log at its \
                 measuredboot_ml_path), so PCRs {} cannot be checked",
                all.join(", ")
            ),
        ));
    };
    let log = EventLog::from_base64(b64).map_err(|e| parse_failure(&e))?;
    let replay = replay::verify(&log, &good.pcrs, checked).map_err(|f| replay_failure(&f))?;
    policy
        .evaluate(&log)
        .map_err(|f| policy_failure(policy, &f))?;
    Ok(replay
        .boot_aggregates(good.bank)
        .iter()
        .map(hex::encode)
        .collect())
}

fn parse_failure(e: &LogError) -> Failure {
    match e {
        LogError::Base64 { .. } => Failure::new(
            "measured_boot.parser.log.base64decode",
            format!("Measured boot log could not be decoded: {e}"),
        ),
        // Upstream's id for a log its parser (tpm2_eventlog) refuses.
        _ => Failure::new(
            "measured_boot.parser.tpm2_eventlog.error",
            format!("the measured boot event log (mb_measurement_list) does not parse: {e}"),
        ),
    }
}

fn replay_failure(failures: &[ReplayFailure]) -> Failure {
    let event = match failures.first() {
        Some(ReplayFailure::Mismatch { index, .. }) => format!("measured_boot.invalid_pcr_{index}"),
        // The log lies about what was extended into `pcr`.
        Some(ReplayFailure::DataMismatch { pcr, .. }) => format!("measured_boot.invalid_pcr_{pcr}"),
        // Upstream: the parsed log has no PCR values for the quote's bank.
        Some(ReplayFailure::MissingBank { .. }) | None => {
            "measured_boot.parser.invalid_pcrs_hashes".to_string()
        }
    };
    let sentences: Vec<String> = failures.iter().map(ToString::to_string).collect();
    Failure::new(
        event,
        format!(
            "the boot event log does not match the quote: {}",
            sentences.join("; ")
        ),
    )
}

fn policy_failure(policy: &MbPolicy, failures: &[PolicyFailure]) -> Failure {
    let sentences: Vec<String> = failures.iter().map(ToString::to_string).collect();
    Failure::new(
        format!("measured_boot.policy_{}", policy.name()),
        format!(
            "Boot attestation failed (measured boot policy {}): {}",
            policy.name(),
            sentences.join("; ")
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::db::TpmClock;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use vouch_core::eventlog::sample::SampleBoot;
    use vouch_core::tpm::{HashAlg, PcrValues};

    const MASK: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];

    /// A quote of `MASK` whose values are `pcrs` (zero where the log extends nothing).
    fn quote_of(pcrs: &PcrValues) -> GoodQuote {
        let mut values = PcrValues::new();
        for i in MASK {
            let v = pcrs
                .get(HashAlg::Sha256, i)
                .map(<[u8]>::to_vec)
                .unwrap_or_else(|| vec![0; 32]);
            values.insert(HashAlg::Sha256, i, v).unwrap();
        }
        GoodQuote {
            nk_pem: String::new(),
            nk_changed: false,
            clock: TpmClock {
                clock: 1,
                reset_count: 0,
                restart_count: 0,
            },
            hash_alg: "sha256".into(),
            enc_alg: "rsa".into(),
            sign_alg: "rsassa".into(),
            bank: HashAlg::Sha256,
            pcrs: values,
        }
    }

    fn resp(log: Option<String>) -> QuoteResponse {
        QuoteResponse {
            quote: String::new(),
            hash_alg: "sha256".into(),
            enc_alg: "rsa".into(),
            sign_alg: "rsassa".into(),
            pubkey: None,
            ima_measurement_list: None,
            ima_measurement_list_entry: None,
            mb_measurement_list: log,
            boottime: None,
        }
    }

    fn policy(s: &SampleBoot) -> MbPolicy {
        Engine::default().load(&s.refstate().to_string()).unwrap()
    }

    #[test]
    fn a_good_boot_passes_and_yields_boot_aggregates() {
        let s = SampleBoot::default();
        let built = s.log(&[HashAlg::Sha256]).build();
        let aggs = check(
            &policy(&s),
            &quote_of(&built.pcrs),
            &resp(Some(built.base64())),
        )
        .unwrap();
        assert_eq!(aggs.len(), 2, "PCRs 0-7 and 0-9 are all extended");
        assert!(aggs.iter().all(|a| a.len() == 64));
    }

    #[test]
    fn each_failure_has_its_upstream_event_id() {
        let s = SampleBoot::default();
        let built = s.log(&[HashAlg::Sha256]).build();
        let good = quote_of(&built.pcrs);
        let p = policy(&s);

        let f = check(&p, &good, &resp(None)).unwrap_err();
        assert_eq!(f.event_id, "pcr_validation.unused_pcr_0");
        assert!(f
            .reason
            .starts_with("Measured Boot PCR 0 in policy, but no measurement list provided"));

        let f = check(&p, &good, &resp(Some("%%%".into()))).unwrap_err();
        assert_eq!(f.event_id, "measured_boot.parser.log.base64decode", "{f}");

        let truncated = &built.bytes[..built.bytes.len() - 3];
        let f = check(&p, &good, &resp(Some(STANDARD.encode(truncated)))).unwrap_err();
        assert_eq!(
            f.event_id, "measured_boot.parser.tpm2_eventlog.error",
            "{f}"
        );
        assert!(
            f.reason.contains("event ") && f.reason.contains("at byte"),
            "{f}"
        );

        // PCR 4 differs from what the log replays to.
        let mut other = good.clone();
        other.pcrs.insert(HashAlg::Sha256, 4, vec![7; 32]).unwrap();
        let f = check(&p, &other, &resp(Some(built.base64()))).unwrap_err();
        assert_eq!(f.event_id, "measured_boot.invalid_pcr_4");
        assert!(
            f.reason
                .contains("PCR 4 (sha256) replayed from the event log is 0x"),
            "{f}"
        );

        // A refstate for another kernel.
        let k = SampleBoot {
            kernel: b"vmlinuz-6.2.0".to_vec(),
            ..SampleBoot::default()
        };
        let f = check(&policy(&k), &good, &resp(Some(built.base64()))).unwrap_err();
        assert_eq!(f.event_id, "measured_boot.policy_example");
        assert!(
            f.reason.contains("/boot/vmlinuz-6.1.0) is not allowed"),
            "{f}"
        );

        // The mask lacks PCR 14, which the example policy reads.
        let mut no14 = good.clone();
        no14.pcrs = PcrValues::new();
        for (h, i, v) in good.pcrs.iter().filter(|(_, i, _)| *i != 14) {
            no14.pcrs.insert(h, i, v.to_vec()).unwrap();
        }
        let f = check(&p, &no14, &resp(Some(built.base64()))).unwrap_err();
        assert_eq!(f.event_id, "measured_boot.missing_pcrs");
        assert!(f.reason.contains("reads PCRs 14"), "{f}");
    }
}
