//! Replaying the log into PCRs and holding the result against a verified quote.
//!
//! The quote signs PCR values; the log is only trusted as far as it replays to them. An event
//! whose digest was changed shows up here as "PCR n replayed from the event log is X but the
//! quote says Y". An event whose *data* was changed but whose digest was left alone replays
//! fine, so for the event types whose digest is, by specification, the hash of their data and
//! whose data a policy reads, [`check_event_data`] re-hashes the data.

use super::body::EventBody;
use super::parse::{Event, EventLog};
use super::types::EventType;
use crate::tpm::alg::HashAlg;
use crate::tpm::pcr::PcrValues;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// PCRs keylime compares with the log (`config.MEASUREDBOOT_PCRS`): 0–15 without IMA's 10.
pub const MEASURED_BOOT_PCRS: [u8; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15];

/// Event types whose digests must equal the hash of their data (PC Client PFP) and whose data
/// a policy reads.
pub const DATA_BOUND_EVENTS: [EventType; 3] = [
    EventType::SEPARATOR,
    EventType::EFI_ACTION,
    EventType::EFI_VARIABLE_DRIVER_CONFIG,
];

/// PCR values computed from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    banks: Vec<HashAlg>,
    values: BTreeMap<(HashAlg, u8), Vec<u8>>,
    /// PCRs at least one event extended (tpm2_eventlog's `pcrs:` lists only these).
    extended: BTreeSet<u8>,
}

/// Why a log does not vouch for a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayFailure {
    Mismatch {
        hash: HashAlg,
        index: u8,
        replayed: Vec<u8>,
        quoted: Vec<u8>,
    },
    /// The quote has a bank the log carries no digests for.
    MissingBank { hash: HashAlg, index: u8 },
    /// A data-bound event whose data does not hash to its digest.
    DataMismatch {
        event: usize,
        pcr: u8,
        event_type: EventType,
        hash: HashAlg,
    },
}

impl fmt::Display for ReplayFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayFailure::Mismatch {
                hash,
                index,
                replayed,
                quoted,
            } => write!(
                f,
                "PCR {index} ({hash}) replayed from the event log is 0x{} but the quote says 0x{}",
                hex::encode(replayed),
                hex::encode(quoted)
            ),
            ReplayFailure::MissingBank { hash, index } => write!(
                f,
                "PCR {index} is quoted in the {hash} bank but the event log has no {hash} digests"
            ),
            ReplayFailure::DataMismatch {
                event,
                pcr,
                event_type,
                hash,
            } => write!(
                f,
                "event {event} (PCR {pcr}, {event_type}): its data does not hash to its {hash} \
                 digest, so the data was changed after it was measured"
            ),
        }
    }
}

impl Replay {
    /// Extend every event's digests, bank by bank, starting from the reset values (zeros;
    /// PCR 0 ends in the startup locality, or 4 after an H-CRTM event, as tpm2-tools does).
    /// EV_NO_ACTION events are not extended.
    pub fn new(log: &EventLog) -> Self {
        let banks = log.banks();
        let mut values = BTreeMap::new();
        let mut extended = BTreeSet::new();
        for ev in log.events() {
            let start = match (&ev.body, ev.event_type) {
                (EventBody::StartupLocality(l), _) => Some(*l),
                (_, EventType::EFI_HCRTM_EVENT) if ev.pcr == 0 => Some(4),
                _ => None,
            };
            if let Some(last) = start {
                if !extended.contains(&0) {
                    for &h in &banks {
                        let mut v = vec![0u8; h.digest_len()];
                        if let Some(b) = v.last_mut() {
                            *b = last;
                        }
                        values.insert((h, 0), v);
                    }
                }
            }
            if ev.event_type == EventType::NO_ACTION {
                continue;
            }
            extended.insert(ev.pcr);
            for &h in &banks {
                if let Some(d) = ev.digest(h) {
                    let old = values
                        .remove(&(h, ev.pcr))
                        .unwrap_or_else(|| vec![0u8; h.digest_len()]);
                    values.insert((h, ev.pcr), h.digest_parts(&[&old, d]));
                }
            }
        }
        Self {
            banks,
            values,
            extended,
        }
    }

    pub fn banks(&self) -> &[HashAlg] {
        &self.banks
    }

    /// PCRs some event extended.
    pub fn extended(&self) -> &BTreeSet<u8> {
        &self.extended
    }

    /// The value PCR `index` of bank `hash` has after the log; `None` if the log has no such
    /// bank. PCRs the log never extends have their reset value.
    pub fn get(&self, hash: HashAlg, index: u8) -> Option<Vec<u8>> {
        if !self.banks.contains(&hash) {
            return None;
        }
        Some(
            self.values
                .get(&(hash, index))
                .cloned()
                .unwrap_or_else(|| vec![0u8; hash.digest_len()]),
        )
    }

    /// The extended PCRs of every bank.
    pub fn values(&self) -> PcrValues {
        let mut out = PcrValues::new();
        for &h in &self.banks {
            for &i in &self.extended {
                if let Some(v) = self.get(h, i) {
                    // Lengths come from `h`, so insert cannot fail.
                    let _ = out.insert(h, i, v);
                }
            }
        }
        out
    }

    /// Compare with verified quoted values, for the PCRs in `pcrs` that the quote has
    /// (upstream compares `mb_pcrs_to_check & pcrs_in_quote`).
    pub fn compare(
        &self,
        quoted: &PcrValues,
        pcrs: impl IntoIterator<Item = u8>,
    ) -> Result<(), Vec<ReplayFailure>> {
        let wanted: BTreeSet<u8> = pcrs.into_iter().collect();
        let mut failures = Vec::new();
        for (hash, index, q) in quoted.iter() {
            if !wanted.contains(&index) {
                continue;
            }
            match self.get(hash, index) {
                None => failures.push(ReplayFailure::MissingBank { hash, index }),
                Some(r) if r != q => failures.push(ReplayFailure::Mismatch {
                    hash,
                    index,
                    replayed: r,
                    quoted: q.to_vec(),
                }),
                Some(_) => {}
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }

    /// IMA boot aggregates as upstream's parser computes them (`__add_boot_aggregate`): the
    /// bank's hash over PCRs 0–7, then over PCRs 0–9, each only if the log extended all of
    /// those PCRs.
    pub fn boot_aggregates(&self, hash: HashAlg) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if !self.banks.contains(&hash) {
            return out;
        }
        for max in [8u8, 10] {
            let parts: Option<Vec<Vec<u8>>> = (0..max)
                .map(|i| {
                    self.extended
                        .contains(&i)
                        .then(|| self.get(hash, i))
                        .flatten()
                })
                .collect();
            if let Some(parts) = parts {
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                out.push(hash.digest_parts(&refs));
            }
        }
        out
    }
}

/// Data-bound events ([`DATA_BOUND_EVENTS`]) whose data does not hash to their digests.
pub fn check_event_data(log: &EventLog) -> Vec<ReplayFailure> {
    log.events()
        .iter()
        .filter(|e| DATA_BOUND_EVENTS.contains(&e.event_type))
        .filter_map(data_mismatch)
        .collect()
}

/// The first bank in which `ev`'s data does not hash to its digest.
pub(crate) fn data_mismatch(ev: &Event) -> Option<ReplayFailure> {
    ev.digests.iter().find_map(|d| {
        let h = d.hash()?;
        (h.digest(&ev.data) != d.digest).then_some(ReplayFailure::DataMismatch {
            event: ev.index,
            pcr: ev.pcr,
            event_type: ev.event_type,
            hash: h,
        })
    })
}

/// Replay, check data-bound events, and compare with the quote: everything that decides
/// whether the log can be believed. `pcrs` as in [`Replay::compare`].
pub fn verify(
    log: &EventLog,
    quoted: &PcrValues,
    pcrs: impl IntoIterator<Item = u8>,
) -> Result<Replay, Vec<ReplayFailure>> {
    let replay = Replay::new(log);
    let mut failures = check_event_data(log);
    if let Err(f) = replay.compare(quoted, pcrs) {
        failures.extend(f);
    }
    if failures.is_empty() {
        Ok(replay)
    } else {
        Err(failures)
    }
}
