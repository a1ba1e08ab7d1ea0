//! Parser and replay tests: every parser error names its event, field and byte offset.

// Tests vary one field of a default fixture at a time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use super::build::LogBuilder;
use super::replay::{check_event_data, verify, Replay, ReplayFailure, MEASURED_BOOT_PCRS};
use super::sample::SampleBoot;
use super::*;
use crate::tpm::alg::HashAlg;
use crate::tpm::pcr::PcrValues;
use crate::tpm::wire::WireReason;

const BANKS: [HashAlg; 3] = [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384];

fn sample_log() -> build::BuiltLog {
    SampleBoot::default().log(&BANKS).build()
}

/// Offset of the Spec ID structure's fields in any log (after the 32-byte TCG_PCR_EVENT header).
const SPEC: usize = 32;
/// Where the first TCG_PCR_EVENT2 starts in a one-bank sha256 log: 32 + 16+4+4+4+4+1.
const FIRST_SHA256: usize = 32 + 33;

fn one_event(ty: EventType, data: &[u8]) -> Vec<u8> {
    LogBuilder::new(&[HashAlg::Sha256])
        .event(4, ty, data)
        .build()
        .bytes
}

fn malformed(bytes: &[u8]) -> (usize, String, usize, WireReason) {
    match EventLog::parse(bytes).unwrap_err() {
        LogError::Malformed {
            event,
            field,
            offset,
            reason,
        } => (event, field, offset, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn parses_the_sample_boot_and_replays_to_the_builder_values() {
    let built = sample_log();
    let log = EventLog::parse(&built.bytes).unwrap();
    assert_eq!(log.len(), built.event_count);
    assert_eq!(log.banks(), BANKS.to_vec());
    assert_eq!(log.spec_id().uintn_size, 2);
    let replay = Replay::new(&log);
    assert_eq!(replay.values(), built.pcrs);
    assert_eq!(
        replay.extended().iter().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]
    );
    // Bodies the policy reads are decoded.
    let ev = &log.events()[0];
    assert_eq!(
        (ev.index, ev.pcr, ev.event_type),
        (1, 0, EventType::S_CRTM_VERSION)
    );
    assert_eq!(ev.body, EventBody::Text("edk2-stable202302".into()));
    assert!(log.events().iter().any(
        |e| matches!(&e.body, EventBody::Variable(v) if v.name == "SecureBoot" && v.data == [1])
    ));
    let shim = log
        .events()
        .iter()
        .find(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .unwrap();
    match &shim.body {
        EventBody::ImageLoad(i) => {
            assert_eq!(i.file_path().as_deref(), Some("\\EFI\\debian\\shimx64.efi"))
        }
        other => panic!("{other:?}"),
    }
    assert!(check_event_data(&log).is_empty());
    // Base64 form (what the agent sends) parses the same.
    assert_eq!(EventLog::from_base64(&built.base64()).unwrap(), log);
}

#[test]
fn replays_into_the_extends_the_builder_lists() {
    let built = sample_log();
    let mut v: std::collections::BTreeMap<(HashAlg, u8), Vec<u8>> = Default::default();
    for e in &built.extends {
        for (h, d) in &e.digests {
            let old = v
                .remove(&(*h, e.pcr))
                .unwrap_or_else(|| vec![0; h.digest_len()]);
            v.insert((*h, e.pcr), h.digest_parts(&[&old, d]));
        }
    }
    for (h, i, value) in built.pcrs.iter() {
        assert_eq!(v[&(h, i)], value, "{h}:{i}");
    }
}

#[test]
fn empty_oversized_and_bad_base64() {
    assert_eq!(EventLog::parse(&[]), Err(LogError::Empty));
    let big = vec![0u8; parse::MAX_LOG_SIZE + 1];
    assert!(matches!(
        EventLog::parse(&big),
        Err(LogError::TooLarge { .. })
    ));
    let e = EventLog::from_base64("not base64!").unwrap_err();
    assert!(e.to_string().contains("not valid base64"), "{e}");
}

#[test]
fn spec_id_event_errors() {
    let good = LogBuilder::new(&[HashAlg::Sha256]).build().bytes;
    EventLog::parse(&good).unwrap();
    let cases: Vec<(usize, &[u8], &str, &str)> = vec![
        (0, &[1], "TCG_PCR_EVENT.pcrIndex", "must be in PCR 0"),
        (4, &[4], "TCG_PCR_EVENT.eventType", "SHA-1-only"),
        (8, &[1], "TCG_PCR_EVENT.digest", "all zeros"),
        (
            SPEC,
            b"Spec ID Event02",
            "TCG_EfiSpecIDEvent.signature",
            "Spec ID Event03",
        ),
        (
            SPEC + 21,
            &[1],
            "TCG_EfiSpecIDEvent.specVersionMajor",
            "crypto-agile",
        ),
        (
            SPEC + 23,
            &[3],
            "TCG_EfiSpecIDEvent.uintnSize",
            "expected 1 or 2",
        ),
        (
            SPEC + 24,
            &[0],
            "TCG_EfiSpecIDEvent.numberOfAlgorithms",
            "expected 1 to 16",
        ),
        (
            SPEC + 24,
            &[17],
            "TCG_EfiSpecIDEvent.numberOfAlgorithms",
            "expected 1 to 16",
        ),
        (
            SPEC + 30,
            &[20],
            "TCG_EfiSpecIDEvent.digestSizes[0].digestSize",
            "which has 32",
        ),
    ];
    for (at, patch, field, why) in cases {
        let mut b = good.clone();
        b[at..at + patch.len()].copy_from_slice(patch);
        let (event, f, offset, reason) = malformed(&b);
        assert_eq!((event, f.as_str()), (0, field), "{field}");
        assert_eq!(offset, at, "{field}");
        assert!(reason.to_string().contains(why), "{field}: {reason}");
    }
    // Two algorithms, the second a repeat of the first.
    let mut b = LogBuilder::new(&[HashAlg::Sha256, HashAlg::Sha1])
        .build()
        .bytes;
    b[SPEC + 32..SPEC + 34].copy_from_slice(&HashAlg::Sha256.id().to_le_bytes());
    let (_, f, offset, reason) = malformed(&b);
    assert_eq!(
        (f.as_str(), offset),
        ("TCG_EfiSpecIDEvent.digestSizes[1].algorithmId", SPEC + 32)
    );
    assert!(reason.to_string().contains("listed twice"));
    // eventDataSize one byte longer than the structure.
    let mut b = good.clone();
    b[28] += 1;
    b.push(0);
    let (_, f, offset, reason) = malformed(&b);
    assert_eq!(
        (f.as_str(), offset, reason),
        ("TCG_EfiSpecIDEvent", b.len() - 1, WireReason::Trailing(1))
    );
    // Cut inside the header.
    let (_, f, offset, _) = malformed(&good[..30]);
    assert_eq!((f.as_str(), offset), ("TCG_PCR_EVENT.eventDataSize", 28));
    // An unknown algorithm (SM3_256) is parsed, not replayed.
    let mut b = good.clone();
    b[SPEC + 28..SPEC + 30].copy_from_slice(&0x0012u16.to_le_bytes());
    let log = EventLog::parse(&b).unwrap();
    assert_eq!(log.spec_id().algorithms[0].hash(), None);
    assert!(log.banks().is_empty());
}

#[test]
fn event2_header_errors() {
    let good = one_event(EventType::EFI_ACTION, b"x");
    EventLog::parse(&good).unwrap();
    let e = FIRST_SHA256;
    let cases: Vec<(usize, Vec<u8>, &str, usize, &str)> = vec![
        (
            e,
            32u32.to_le_bytes().to_vec(),
            "TCG_PCR_EVENT2.pcrIndex",
            e,
            "not a PCR",
        ),
        (
            e + 8,
            2u32.to_le_bytes().to_vec(),
            "TCG_PCR_EVENT2.digests.count",
            e + 8,
            "one digest per algorithm",
        ),
        (
            e + 12,
            HashAlg::Sha1.id().to_le_bytes().to_vec(),
            "TCG_PCR_EVENT2.digests[0].hashAlg",
            e + 12,
            "not in the Spec ID",
        ),
        (
            e + 46,
            (2u32 << 20).to_le_bytes().to_vec(),
            "TCG_PCR_EVENT2.eventSize",
            e + 46,
            "exceeds the maximum",
        ),
        (
            e + 46,
            2u32.to_le_bytes().to_vec(),
            "TCG_PCR_EVENT2.event",
            e + 50,
            "needs 2 bytes, 1 left",
        ),
    ];
    for (at, patch, field, offset, why) in cases {
        let mut b = good.clone();
        b[at..at + patch.len()].copy_from_slice(&patch);
        let (event, f, o, reason) = malformed(&b);
        assert_eq!((event, f.as_str(), o), (1, field, offset), "{field}");
        assert!(reason.to_string().contains(why), "{field}: {reason}");
        let msg = EventLog::parse(&b).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("event 1: {field} at byte {offset}: ")),
            "{msg}"
        );
    }
    // The same algorithm twice in one event.
    let mut b = LogBuilder::new(&[HashAlg::Sha1, HashAlg::Sha256])
        .event(0, EventType::SEPARATOR, &[0; 4])
        .build()
        .bytes;
    let first = 32 + 16 + 4 + 4 + 4 + 8 + 1;
    let second_alg = first + 12 + 2 + 20;
    b[second_alg..second_alg + 2].copy_from_slice(&HashAlg::Sha1.id().to_le_bytes());
    // sha1's size is 20, so the reader now sits inside the old sha256 digest; the duplicate is
    // caught first.
    let (_, f, o, reason) = malformed(&b);
    assert_eq!(
        (f.as_str(), o),
        ("TCG_PCR_EVENT2.digests[1].hashAlg", second_alg)
    );
    assert!(reason.to_string().contains("appears twice"));
}

#[test]
fn body_errors_name_the_event() {
    // Second event: a UEFI_VARIABLE_DATA whose name length overruns the event.
    let mut data = build::variable_data(Guid::EFI_GLOBAL_VARIABLE, "SecureBoot", &[1]);
    data[16] = 200;
    let b = LogBuilder::new(&[HashAlg::Sha256])
        .event(0, EventType::SEPARATOR, &[0; 4])
        .event(7, EventType::EFI_VARIABLE_DRIVER_CONFIG, &data)
        .build()
        .bytes;
    let log_err = EventLog::parse(&b).unwrap_err();
    assert_eq!(log_err.event(), Some(2));
    let (_, f, o, reason) = malformed(&b);
    let data_at = b.len() - data.len();
    assert_eq!(
        (f.as_str(), o),
        ("UEFI_VARIABLE_DATA.UnicodeNameLength", data_at + 16)
    );
    assert!(
        matches!(reason, WireReason::Truncated { needed: 400, .. }),
        "{reason}"
    );
    // A 3-byte separator.
    let (event, f, _, _) = malformed(&one_event(EventType::SEPARATOR, &[0; 3]));
    assert_eq!((event, f.as_str()), (1, "EV_SEPARATOR.event"));
}

#[test]
fn every_truncation_is_an_error_or_a_shorter_log() {
    let built = LogBuilder::new(&[HashAlg::Sha256])
        .s_crtm_version("1.0")
        .separators(0..=1)
        .build();
    let full = EventLog::parse(&built.bytes).unwrap();
    let ends: Vec<usize> = full
        .events()
        .iter()
        .map(|e| e.data_offset + e.data.len())
        .collect();
    for cut in 1..built.bytes.len() {
        match EventLog::parse(&built.bytes[..cut]) {
            Ok(log) => {
                // Only a cut exactly between records parses; replay then disagrees with the
                // quote of the full log.
                assert!(cut == FIRST_SHA256 || ends.contains(&cut), "cut {cut}");
                if cut < built.bytes.len() {
                    let f = Replay::new(&log).compare(&built.pcrs, 0..=1).unwrap_err();
                    assert!(matches!(f[0], ReplayFailure::Mismatch { .. }));
                }
            }
            Err(LogError::Malformed { event, offset, .. }) => {
                assert!(offset <= cut, "cut {cut}: offset {offset}");
                let expected = if cut < FIRST_SHA256 {
                    0
                } else {
                    1 + ends.iter().filter(|&&e| e <= cut).count()
                };
                assert_eq!(event, expected, "cut {cut}");
            }
            Err(other) => panic!("cut {cut}: {other}"),
        }
    }
}

#[test]
fn too_many_events_is_bounded() {
    let mut b = LogBuilder::new(&[HashAlg::Sha1]);
    for _ in 0..=parse::MAX_EVENTS {
        b.raw_event(0, EventType::NO_ACTION, &[], &[]);
    }
    assert_eq!(
        EventLog::parse(&b.build().bytes),
        Err(LogError::TooManyEvents {
            max: parse::MAX_EVENTS
        })
    );
}

#[test]
fn altered_digest_is_a_named_pcr_mismatch() {
    let built = sample_log();
    let log = EventLog::parse(&built.bytes).unwrap();
    let shim = log
        .events()
        .iter()
        .find(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .unwrap();
    // The sha256 digest follows the sha1 one: 12-byte header, 2+20, then 2.
    let at = shim.offset + 12 + 22 + 2;
    let mut bytes = built.bytes.clone();
    bytes[at] ^= 1;
    let tampered = EventLog::parse(&bytes).unwrap();
    let failures = verify(&tampered, &built.pcrs, MEASURED_BOOT_PCRS).unwrap_err();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let msg = failures[0].to_string();
    let quoted = hex::encode(built.pcrs.get(HashAlg::Sha256, 4).unwrap());
    assert!(
        msg.starts_with("PCR 4 (sha256) replayed from the event log is 0x"),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!("but the quote says 0x{quoted}")),
        "{msg}"
    );
    // The untampered log verifies.
    verify(&log, &built.pcrs, MEASURED_BOOT_PCRS).unwrap();
}

#[test]
fn altered_data_of_a_bound_event_is_caught() {
    let mut sample = SampleBoot::default();
    sample.secure_boot = false;
    let built = sample.log(&BANKS).build();
    let log = EventLog::parse(&built.bytes).unwrap();
    let sb = log
        .events()
        .iter()
        .find(|e| matches!(&e.body, EventBody::Variable(v) if v.name == "SecureBoot"))
        .unwrap();
    let mut bytes = built.bytes.clone();
    // Flip SecureBoot from 0 to 1 without touching the digests: replay still matches...
    bytes[sb.data_offset + sb.data.len() - 1] = 1;
    let tampered = EventLog::parse(&bytes).unwrap();
    assert!(Replay::new(&tampered)
        .compare(&built.pcrs, MEASURED_BOOT_PCRS)
        .is_ok());
    // ...but the data no longer hashes to the digest.
    let failures = verify(&tampered, &built.pcrs, MEASURED_BOOT_PCRS).unwrap_err();
    assert_eq!(
        failures,
        vec![ReplayFailure::DataMismatch {
            event: sb.index,
            pcr: 7,
            event_type: EventType::EFI_VARIABLE_DRIVER_CONFIG,
            hash: HashAlg::Sha1,
        }]
    );
    assert!(failures[0]
        .to_string()
        .contains("(PCR 7, EV_EFI_VARIABLE_DRIVER_CONFIG)"));
}

#[test]
fn compare_only_the_requested_pcrs_and_report_missing_banks() {
    let built = sample_log();
    let log = EventLog::parse(&built.bytes).unwrap();
    let replay = Replay::new(&log);
    let mut quoted = PcrValues::new();
    quoted.insert(HashAlg::Sha256, 4, vec![7; 32]).unwrap();
    quoted.insert(HashAlg::Sha256, 10, vec![7; 32]).unwrap();
    quoted.insert(HashAlg::Sha512, 0, vec![0; 64]).unwrap();
    let f = replay.compare(&quoted, [0]).unwrap_err();
    assert_eq!(
        f,
        vec![ReplayFailure::MissingBank {
            hash: HashAlg::Sha512,
            index: 0
        }]
    );
    assert_eq!(
        f[0].to_string(),
        "PCR 0 is quoted in the sha512 bank but the event log has no sha512 digests"
    );
    // A PCR the log never touches must still be at its reset value.
    let mut q = PcrValues::new();
    q.insert(HashAlg::Sha256, 11, vec![0; 32]).unwrap();
    replay.compare(&q, [11]).unwrap();
    q.insert(HashAlg::Sha256, 12, vec![1; 32]).unwrap();
    assert_eq!(replay.compare(&q, [11, 12]).unwrap_err().len(), 1);
}

#[test]
fn startup_locality_and_hcrtm_set_pcr0s_reset_value() {
    let built = LogBuilder::new(&[HashAlg::Sha256])
        .startup_locality(3)
        .s_crtm_version("1.0")
        .build();
    let log = EventLog::parse(&built.bytes).unwrap();
    assert_eq!(log.events()[0].body, EventBody::StartupLocality(3));
    let mut reset = vec![0u8; 32];
    reset[31] = 3;
    let s_crtm = HashAlg::Sha256.digest(&build::utf16z("1.0"));
    let expected = HashAlg::Sha256.digest_parts(&[&reset, &s_crtm]);
    assert_eq!(Replay::new(&log).get(HashAlg::Sha256, 0).unwrap(), expected);
    assert_eq!(
        built.pcrs.get(HashAlg::Sha256, 0).unwrap(),
        expected.as_slice()
    );

    let hcrtm = LogBuilder::new(&[HashAlg::Sha256])
        .measured(0, EventType::EFI_HCRTM_EVENT, b"HCRTM", b"h-crtm code")
        .build();
    let log = EventLog::parse(&hcrtm.bytes).unwrap();
    reset[31] = 4;
    let expected = HashAlg::Sha256.digest_parts(&[&reset, &HashAlg::Sha256.digest(b"h-crtm code")]);
    assert_eq!(Replay::new(&log).get(HashAlg::Sha256, 0).unwrap(), expected);
}

#[test]
fn boot_aggregates_as_upstream() {
    let built = sample_log();
    let replay = Replay::new(&EventLog::parse(&built.bytes).unwrap());
    let agg = replay.boot_aggregates(HashAlg::Sha256);
    assert_eq!(agg.len(), 2);
    let pcrs: Vec<&[u8]> = (0..8)
        .map(|i| built.pcrs.get(HashAlg::Sha256, i).unwrap())
        .collect();
    assert_eq!(agg[0], HashAlg::Sha256.digest_parts(&pcrs));
    // A log without PCRs 8 and 9 has only the 0–7 aggregate.
    let short = LogBuilder::new(&[HashAlg::Sha1]).separators(0..=7).build();
    let replay = Replay::new(&EventLog::parse(&short.bytes).unwrap());
    assert_eq!(replay.boot_aggregates(HashAlg::Sha1).len(), 1);
    assert!(replay.boot_aggregates(HashAlg::Sha256).is_empty());
}
