//! Incremental replay of the IMA log against a quoted PCR 10 (upstream:
//! keylime/ima/ima.py `_process_measurement_list`, keylime/agentstates.py `AgentAttestState`,
//! keylime/cloud_verifier_common.py `process_quote_response`).
//!
//! The verifier keeps, per agent, the PCR 10 aggregate after the entries it has accepted and
//! their count N; it asks the agent for the log from entry N (`ima_ml_entry=N`). The agent
//! answers with the index it really served (`ima_measurement_list_entry`):
//!
//! - 0: everything starts over (fresh state; learned keys and progress are dropped);
//! - N: the new entries are replayed on top of the kept aggregate;
//! - anything else: a failure (upstream fails this attestation and starts over at 0).
//!
//! Reading the log and quoting are not atomic: the log may run ahead of the quote. The quoted
//! value must equal the aggregate at some prefix of the served entries (possibly the empty
//! prefix); only that prefix is accepted and the state moves to its end, the rest is asked for
//! again next time. Every served entry is still judged against the policy, as upstream does.
//! If a previous quote lagged the log by L entries, the next one must cover at least L new
//! entries or all of them (`AgentAttestState.check_quote_progress`).

use super::entry::parse_log;
use super::error::{PcrMismatch, ReplayError, Violations};
use super::evaluate::{CheckOptions, Checker, CompiledPolicy};
use super::keyring::Keyring;
use super::template::{extend, extend_value};
use crate::tpm::{ClockInfo, HashAlg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Which boot of the TPM a state belongs to: the quote's clockInfo resetCount/restartCount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootIdentity {
    pub reset_count: u32,
    pub restart_count: u32,
}

impl From<&ClockInfo> for BootIdentity {
    fn from(c: &ClockInfo) -> Self {
        Self {
            reset_count: c.reset_count,
            restart_count: c.restart_count,
        }
    }
}

impl fmt::Display for BootIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.reset_count, self.restart_count)
    }
}

/// How far the previous quote got: entries it certified out of those received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteProgress {
    pub certified: u64,
    pub received: u64,
}

/// What the verifier keeps between attestations of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImaReplayState {
    boot: BootIdentity,
    next_entry: u64,
    /// PCR 10 per bank after `next_entry` accepted entries.
    #[serde(with = "bank_map")]
    aggregates: BTreeMap<HashAlg, Vec<u8>>,
    /// Keys learned from accepted `ima-buf` keyring entries, by keyring name.
    learned_keyrings: BTreeMap<String, Keyring>,
    quote_progress: Option<QuoteProgress>,
}

impl ImaReplayState {
    /// Nothing accepted yet.
    pub fn new(boot: BootIdentity) -> Self {
        Self {
            boot,
            next_entry: 0,
            aggregates: BTreeMap::new(),
            learned_keyrings: BTreeMap::new(),
            quote_progress: None,
        }
    }

    /// Start over (upstream `reset_ima_attestation`), e.g. after any failure.
    pub fn reset(&mut self, boot: BootIdentity) {
        *self = Self::new(boot);
    }

    pub fn boot(&self) -> BootIdentity {
        self.boot
    }

    /// The entry to ask the agent for (`ima_ml_entry`): the number of entries accepted.
    pub fn next_entry(&self) -> u64 {
        self.next_entry
    }

    /// PCR 10 of `bank` after the accepted entries, if that bank is tracked (every bank is
    /// all zeros before the first entry).
    pub fn aggregate(&self, bank: HashAlg) -> Option<Vec<u8>> {
        match self.aggregates.get(&bank) {
            Some(v) => Some(v.clone()),
            None if self.next_entry == 0 => Some(vec![0; bank.digest_len()]),
            None => None,
        }
    }

    pub fn learned_keyrings(&self) -> &BTreeMap<String, Keyring> {
        &self.learned_keyrings
    }

    pub fn quote_progress(&self) -> Option<QuoteProgress> {
        self.quote_progress
    }
}

/// One attestation's IMA evidence.
#[derive(Debug, Clone, Copy)]
pub struct ReplayInput<'a> {
    /// From the quote being verified.
    pub boot: BootIdentity,
    /// `ima_measurement_list_entry` from the agent: the index of the first line of `log`.
    pub served_from: u64,
    /// `ima_measurement_list` from the agent.
    pub log: &'a str,
    /// The bank PCR 10 was quoted from and its (verified) value.
    pub bank: HashAlg,
    pub quoted_pcr10: &'a [u8],
    /// Boot aggregates (lowercase hex) computed from the measured-boot log, also allowed
    /// for the `boot_aggregate` entry; empty when there is no such log.
    pub boot_aggregates: &'a [String],
    pub options: CheckOptions,
}

/// A successful replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// The state to keep; ask next for `state.next_entry()`.
    pub state: ImaReplayState,
    /// Entries served in this attestation.
    pub received: u64,
    /// Of those, how many the quote covers (now accepted).
    pub certified: u64,
}

/// Replay the served entries on top of `state` and judge them. On `Err`, upstream forgets
/// everything: keep `ImaReplayState::new(input.boot)` (or call `reset`).
pub fn replay(
    state: &ImaReplayState,
    input: &ReplayInput<'_>,
    policy: &CompiledPolicy,
) -> Result<ReplayOutcome, ReplayError> {
    let bank = input.bank;
    if input.quoted_pcr10.len() != bank.digest_len() {
        return Err(ReplayError::QuotedLength {
            bank,
            len: input.quoted_pcr10.len(),
            expected: bank.digest_len(),
        });
    }
    let mut base = if input.served_from == 0 {
        let mut fresh = ImaReplayState::new(input.boot);
        for alg in state.aggregates.keys() {
            fresh.aggregates.insert(*alg, vec![0; alg.digest_len()]);
        }
        fresh
    } else {
        if input.served_from != state.next_entry {
            return Err(ReplayError::EntryIndexMismatch {
                requested: state.next_entry,
                served: input.served_from,
            });
        }
        if input.boot != state.boot {
            return Err(ReplayError::BootChanged {
                stored: state.boot.to_string(),
                quoted: input.boot.to_string(),
                served: input.served_from,
            });
        }
        state.clone()
    };
    if !base.aggregates.contains_key(&bank) {
        if base.next_entry != 0 {
            return Err(ReplayError::BankNotTracked {
                bank,
                next_entry: base.next_entry,
            });
        }
        base.aggregates.insert(bank, vec![0; bank.digest_len()]);
    }

    let entries = parse_log(input.log, input.served_from).map_err(ReplayError::Parse)?;
    let received = entries.len() as u64;
    let quoted = input.quoted_pcr10;

    let mut running = base.aggregates.clone();
    let mut matched: Option<(u64, BTreeMap<HashAlg, Vec<u8>>)> =
        (running.get(&bank).map(Vec::as_slice) == Some(quoted)).then(|| (0, running.clone()));
    let mut checker = Checker::new(
        policy,
        base.learned_keyrings.clone(),
        input.boot_aggregates,
        input.options,
    );
    let mut learned = Vec::new();
    let mut violations = Vec::new();

    for (i, le) in entries.iter().enumerate() {
        let data = le.entry.event.template_data();
        for (alg, pcr) in running.iter_mut() {
            *pcr = extend(*alg, pcr, &extend_value(&le.entry, &data, *alg));
        }
        match checker.check(le.index, &le.entry, &data) {
            Ok(Some(key)) => learned.push((i as u64, key)),
            Ok(None) => {}
            Err(v) => violations.push(*v),
        }
        if matched.is_none() && running.get(&bank).map(Vec::as_slice) == Some(quoted) {
            matched = Some((i as u64 + 1, running.clone()));
        }
    }

    // A rewritten entry is the most specific diagnosis; a PCR mismatch makes every other
    // verdict moot; otherwise policy violations decide.
    if violations.iter().any(|v| v.is_template_hash_mismatch()) {
        return Err(ReplayError::Violations(Violations(violations)));
    }
    let Some((certified, aggregates)) = matched else {
        let hex_of =
            |m: &BTreeMap<HashAlg, Vec<u8>>| m.get(&bank).map(hex::encode).unwrap_or_default();
        return Err(ReplayError::PcrMismatch(PcrMismatch {
            bank,
            quoted: hex::encode(quoted),
            start_value: hex_of(&base.aggregates),
            final_value: hex_of(&running),
            first_entry: input.served_from,
            entries: received,
        }));
    };
    if !violations.is_empty() {
        return Err(ReplayError::Violations(Violations(violations)));
    }
    if let Some(prev) = base.quote_progress {
        let previous_lag = prev.received.saturating_sub(prev.certified);
        if certified != received && previous_lag > 0 && certified < previous_lag {
            return Err(ReplayError::QuoteProgress {
                previous_lag,
                certified,
            });
        }
    }

    let mut next = base;
    next.aggregates = aggregates;
    next.next_entry += certified;
    for (_, k) in learned.into_iter().filter(|(i, _)| *i < certified) {
        next.learned_keyrings
            .entry(k.keyring)
            .or_default()
            .add(k.key);
    }
    next.quote_progress = Some(QuoteProgress {
        certified,
        received,
    });
    Ok(ReplayOutcome {
        state: next,
        received,
        certified,
    })
}

/// `{"sha256": "<hex>"}` on the wire; banks and lengths checked on the way in.
mod bank_map {
    use crate::tpm::HashAlg;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<HashAlg, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k.name(), hex::encode(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<HashAlg, Vec<u8>>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                let alg = HashAlg::from_name(&k)
                    .ok_or_else(|| D::Error::custom(format!("unknown PCR bank {k:?}")))?;
                let bytes =
                    hex::decode(&v).map_err(|e| D::Error::custom(format!("{k} aggregate: {e}")))?;
                if bytes.len() != alg.digest_len() {
                    return Err(D::Error::custom(format!(
                        "{k} aggregate is {} bytes",
                        bytes.len()
                    )));
                }
                Ok((alg, bytes))
            })
            .collect()
    }
}
