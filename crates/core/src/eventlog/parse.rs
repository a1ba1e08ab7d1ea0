//! The crypto-agile (TCG2) event log: a SHA-1-format TCG_PCR_EVENT carrying the Spec ID event,
//! then TCG_PCR_EVENT2 records whose digests follow the Spec ID's algorithm table.

use super::body::{self, EventBody};
use super::error::LogError;
use super::reader::LeReader;
use super::types::EventType;
use crate::tpm::alg::HashAlg;
use crate::tpm::pcr::MAX_BANKS;
use crate::tpm::wire::{WireError, WireReason};
use base64::Engine;

/// Largest log accepted. Real logs are tens of kilobytes; a dbx update or many boot entries
/// stay far below this.
pub const MAX_LOG_SIZE: usize = 16 << 20;
/// Largest `eventSize` accepted (a full dbx is about 15 KiB).
pub const MAX_EVENT_DATA: usize = 1 << 20;
/// Most TCG_PCR_EVENT2 records accepted.
pub const MAX_EVENTS: usize = 100_000;
/// Largest digest in a TPMU_HA.
const MAX_DIGEST_SIZE: u16 = 64;
/// Highest PCR index a TPM 2.0 can have.
const MAX_PCR: u32 = 31;

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// One row of the Spec ID event's algorithm table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSize {
    pub alg_id: u16,
    pub digest_size: u16,
}

impl AlgorithmSize {
    /// `None` for algorithms Vouch does not hash (SM3_256, ...): they are parsed, not replayed.
    pub fn hash(&self) -> Option<HashAlg> {
        HashAlg::from_id(self.alg_id)
    }
}

/// TCG_EfiSpecIdEvent (Spec ID Event03).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecId {
    pub platform_class: u32,
    pub spec_version_minor: u8,
    pub spec_version_major: u8,
    pub spec_errata: u8,
    /// 1: UINTN is 32 bits, 2: 64 bits.
    pub uintn_size: u8,
    pub algorithms: Vec<AlgorithmSize>,
    pub vendor_info: Vec<u8>,
}

/// One TPMT_HA of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    pub alg_id: u16,
    pub digest: Vec<u8>,
}

impl EventDigest {
    pub fn hash(&self) -> Option<HashAlg> {
        HashAlg::from_id(self.alg_id)
    }
}

/// One TCG_PCR_EVENT2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// tpm2_eventlog's `EventNum`: 1 for the first record after the Spec ID event.
    pub index: usize,
    /// Byte offset of the record in the log.
    pub offset: usize,
    /// Byte offset of the event data in the log.
    pub data_offset: usize,
    pub pcr: u8,
    pub event_type: EventType,
    /// One per algorithm of the Spec ID table, in the order the firmware wrote them.
    pub digests: Vec<EventDigest>,
    pub data: Vec<u8>,
    pub body: EventBody,
}

impl Event {
    pub fn digest(&self, hash: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg_id == hash.id())
            .map(|d| d.digest.as_slice())
    }

    /// "event 12 (PCR 7, EV_EFI_VARIABLE_DRIVER_CONFIG)".
    pub fn describe(&self) -> String {
        format!(
            "event {} (PCR {}, {})",
            self.index, self.pcr, self.event_type
        )
    }
}

/// A parsed crypto-agile event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    spec_id: SpecId,
    events: Vec<Event>,
}

impl EventLog {
    /// Parse a binary log (`/sys/kernel/security/tpm0/binary_bios_measurements`).
    pub fn parse(bytes: &[u8]) -> Result<Self, LogError> {
        if bytes.is_empty() {
            return Err(LogError::Empty);
        }
        if bytes.len() > MAX_LOG_SIZE {
            return Err(LogError::TooLarge {
                size: bytes.len(),
                max: MAX_LOG_SIZE,
            });
        }
        let mut r = LeReader::new(bytes);
        let spec_id = read_spec_id_event(&mut r).map_err(|e| LogError::at(0, e))?;
        let mut events = Vec::new();
        while r.remaining() > 0 {
            let index = events.len() + 1;
            if events.len() == MAX_EVENTS {
                return Err(LogError::TooManyEvents { max: MAX_EVENTS });
            }
            let event = read_event2(&mut r, index, &spec_id).map_err(|e| LogError::at(index, e))?;
            events.push(event);
        }
        Ok(Self { spec_id, events })
    }

    /// Parse the agent's `mb_measurement_list` (standard base64 of the binary log).
    pub fn from_base64(b64: &str) -> Result<Self, LogError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|cause| LogError::Base64 { cause })?;
        Self::parse(&bytes)
    }

    pub fn spec_id(&self) -> &SpecId {
        &self.spec_id
    }

    /// The TCG_PCR_EVENT2 records (the Spec ID event is [`EventLog::spec_id`]).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Number of events as tpm2_eventlog counts them (Spec ID event included).
    pub fn len(&self) -> usize {
        self.events.len() + 1
    }

    /// Never true: a parsed log has at least its Spec ID event.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The PCR banks the log can be replayed into, in Spec ID order.
    pub fn banks(&self) -> Vec<HashAlg> {
        self.spec_id
            .algorithms
            .iter()
            .filter_map(AlgorithmSize::hash)
            .collect()
    }
}

fn invalid(r: &LeReader<'_>, at: usize, what: &str, why: String) -> WireError {
    r.error_at(at, what, WireReason::Invalid(why))
}

fn read_spec_id_event(r: &mut LeReader<'_>) -> Result<SpecId, WireError> {
    let at = r.offset();
    let pcr = r.u32("TCG_PCR_EVENT.pcrIndex")?;
    if pcr != 0 {
        return Err(invalid(
            r,
            at,
            "TCG_PCR_EVENT.pcrIndex",
            format!("the Spec ID event must be in PCR 0, not {pcr}"),
        ));
    }
    let at = r.offset();
    let ty = EventType(r.u32("TCG_PCR_EVENT.eventType")?);
    if ty != EventType::NO_ACTION {
        return Err(invalid(r, at, "TCG_PCR_EVENT.eventType", format!(
            "{ty}: the first event of a crypto-agile log is the EV_NO_ACTION Spec ID event (SHA-1-only \
             TPM 1.2 logs are not supported)"
        )));
    }
    let at = r.offset();
    if r.bytes(20, "TCG_PCR_EVENT.digest")?.iter().any(|&b| b != 0) {
        return Err(invalid(
            r,
            at,
            "TCG_PCR_EVENT.digest",
            "the Spec ID event digest must be all zeros".into(),
        ));
    }
    let at = r.offset();
    let size = r.u32("TCG_PCR_EVENT.eventDataSize")? as usize;
    if size > MAX_EVENT_DATA {
        return Err(r.error_at(
            at,
            "TCG_PCR_EVENT.eventDataSize",
            WireReason::TooLarge {
                size,
                max: MAX_EVENT_DATA,
            },
        ));
    }
    let base = r.offset();
    let mut s = LeReader::at(r.bytes(size, "TCG_PCR_EVENT.event")?, base);
    let spec = read_spec_id(&mut s)?;
    s.finish("TCG_EfiSpecIDEvent")?;
    Ok(spec)
}

fn read_spec_id(s: &mut LeReader<'_>) -> Result<SpecId, WireError> {
    let at = s.offset();
    if s.bytes(16, "TCG_EfiSpecIDEvent.signature")? != SPEC_ID_SIGNATURE {
        return Err(invalid(
            s,
            at,
            "TCG_EfiSpecIDEvent.signature",
            "is not \"Spec ID Event03\"".into(),
        ));
    }
    let platform_class = s.u32("TCG_EfiSpecIDEvent.platformClass")?;
    let spec_version_minor = s.u8("TCG_EfiSpecIDEvent.specVersionMinor")?;
    let at = s.offset();
    let spec_version_major = s.u8("TCG_EfiSpecIDEvent.specVersionMajor")?;
    if spec_version_major != 2 {
        return Err(invalid(
            s,
            at,
            "TCG_EfiSpecIDEvent.specVersionMajor",
            format!("{spec_version_major}, a crypto-agile log has 2"),
        ));
    }
    let spec_errata = s.u8("TCG_EfiSpecIDEvent.specErrata")?;
    let at = s.offset();
    let uintn_size = s.u8("TCG_EfiSpecIDEvent.uintnSize")?;
    if !(1..=2).contains(&uintn_size) {
        return Err(invalid(
            s,
            at,
            "TCG_EfiSpecIDEvent.uintnSize",
            format!("{uintn_size}, expected 1 or 2"),
        ));
    }
    let at = s.offset();
    let n = s.u32("TCG_EfiSpecIDEvent.numberOfAlgorithms")? as usize;
    if n == 0 || n > MAX_BANKS {
        return Err(invalid(
            s,
            at,
            "TCG_EfiSpecIDEvent.numberOfAlgorithms",
            format!("{n}, expected 1 to {MAX_BANKS}"),
        ));
    }
    let mut algorithms: Vec<AlgorithmSize> = Vec::with_capacity(n);
    for i in 0..n {
        let field = format!("TCG_EfiSpecIDEvent.digestSizes[{i}]");
        let at = s.offset();
        let alg_id = s.u16(&format!("{field}.algorithmId"))?;
        if algorithms.iter().any(|a| a.alg_id == alg_id) {
            return Err(invalid(
                s,
                at,
                &format!("{field}.algorithmId"),
                format!("algorithm 0x{alg_id:04x} is listed twice"),
            ));
        }
        let at = s.offset();
        let digest_size = s.u16(&format!("{field}.digestSize"))?;
        let expected = HashAlg::from_id(alg_id).map(|h| h.digest_len());
        let ok = match expected {
            Some(len) => usize::from(digest_size) == len,
            None => (1..=MAX_DIGEST_SIZE).contains(&digest_size),
        };
        if !ok {
            return Err(invalid(
                s,
                at,
                &format!("{field}.digestSize"),
                format!(
                    "{digest_size} bytes for algorithm 0x{alg_id:04x}{}",
                    expected
                        .map(|l| format!(", which has {l}"))
                        .unwrap_or_default()
                ),
            ));
        }
        algorithms.push(AlgorithmSize {
            alg_id,
            digest_size,
        });
    }
    let vsize = s.u8("TCG_EfiSpecIDEvent.vendorInfoSize")?;
    let vendor_info = s
        .bytes(vsize.into(), "TCG_EfiSpecIDEvent.vendorInfo")?
        .to_vec();
    Ok(SpecId {
        platform_class,
        spec_version_minor,
        spec_version_major,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}

fn read_event2(r: &mut LeReader<'_>, index: usize, spec: &SpecId) -> Result<Event, WireError> {
    let offset = r.offset();
    let pcr = r.u32("TCG_PCR_EVENT2.pcrIndex")?;
    if pcr > MAX_PCR {
        return Err(invalid(
            r,
            offset,
            "TCG_PCR_EVENT2.pcrIndex",
            format!("{pcr} is not a PCR (0..=31)"),
        ));
    }
    let event_type = EventType(r.u32("TCG_PCR_EVENT2.eventType")?);
    let at = r.offset();
    let count = r.u32("TCG_PCR_EVENT2.digests.count")? as usize;
    if count != spec.algorithms.len() {
        return Err(invalid(r, at, "TCG_PCR_EVENT2.digests.count", format!(
            "{count} digests, but the Spec ID event lists {} algorithms and every event must carry one \
             digest per algorithm",
            spec.algorithms.len()
        )));
    }
    let mut digests: Vec<EventDigest> = Vec::with_capacity(count);
    for i in 0..count {
        let field = format!("TCG_PCR_EVENT2.digests[{i}]");
        let at = r.offset();
        let alg_id = r.u16(&format!("{field}.hashAlg"))?;
        let size = spec
            .algorithms
            .iter()
            .find(|a| a.alg_id == alg_id)
            .map(|a| a.digest_size)
            .ok_or_else(|| {
                invalid(
                    r,
                    at,
                    &format!("{field}.hashAlg"),
                    format!("algorithm 0x{alg_id:04x} is not in the Spec ID event"),
                )
            })?;
        if digests.iter().any(|d| d.alg_id == alg_id) {
            return Err(invalid(
                r,
                at,
                &format!("{field}.hashAlg"),
                format!("algorithm 0x{alg_id:04x} appears twice"),
            ));
        }
        let digest = r.bytes(size.into(), &format!("{field}.digest"))?.to_vec();
        digests.push(EventDigest { alg_id, digest });
    }
    let at = r.offset();
    let size = r.u32("TCG_PCR_EVENT2.eventSize")? as usize;
    if size > MAX_EVENT_DATA {
        return Err(r.error_at(
            at,
            "TCG_PCR_EVENT2.eventSize",
            WireReason::TooLarge {
                size,
                max: MAX_EVENT_DATA,
            },
        ));
    }
    let data_offset = r.offset();
    let data = r.bytes(size, "TCG_PCR_EVENT2.event")?;
    let body = body::decode(event_type, pcr as u8, data, data_offset)?;
    Ok(Event {
        index,
        offset,
        data_offset,
        pcr: pcr as u8,
        event_type,
        digests,
        data: data.to_vec(),
        body,
    })
}
