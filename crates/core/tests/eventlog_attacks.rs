//! Attacks on measured boot, through the public API in the order the verifier uses it: the
//! agent's base64 log is parsed, replayed against the (already verified) quoted PCRs, and
//! evaluated against the policy. "Quoted" values are what the TPM holds: the PCRs of the boot
//! that really happened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use vouch_core::eventlog::replay::verify;
use vouch_core::eventlog::sample::SampleBoot;
use vouch_core::eventlog::{
    Check, EventBody, EventLog, EventType, LogError, MbPolicy, ReplayFailure,
};
use vouch_core::tpm::{HashAlg, PcrSelection, PcrValues};

const BANKS: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

/// The sha256 PCRs a quote over `sha256:0-9,14` would carry for this boot.
fn quote_of(boot: &SampleBoot) -> PcrValues {
    let sel: PcrSelection = "sha256:0,1,2,3,4,5,6,7,8,9,14".parse().unwrap();
    boot.log(&BANKS).build().pcrs.restricted_to(&sel)
}

fn policy_for(boot: &SampleBoot) -> MbPolicy {
    MbPolicy::load("example", Some(&boot.refstate().to_string())).unwrap()
}

/// Parse, replay against the quote, then evaluate: what the verifier does with one attestation.
fn attest(log_b64: &str, quoted: &PcrValues, policy: &MbPolicy) -> Result<(), Vec<String>> {
    let log = EventLog::from_base64(log_b64).map_err(|e| vec![e.to_string()])?;
    verify(&log, quoted, policy.pcrs_to_replay())
        .map_err(|f| f.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    policy
        .evaluate(&log)
        .map_err(|f| f.iter().map(ToString::to_string).collect())
}

#[test]
fn an_honest_boot_attests() {
    let good = SampleBoot::default();
    attest(
        &good.log(&BANKS).build().base64(),
        &quote_of(&good),
        &policy_for(&good),
    )
    .unwrap();
}

#[test]
fn a_log_claiming_the_good_kernel_while_the_tpm_measured_a_rootkit() {
    let good = SampleBoot::default();
    let mut evil = SampleBoot::default();
    evil.kernel = b"rootkit".to_vec();
    // The machine booted the rootkit; the agent sends the log of the good boot.
    let failures = attest(
        &good.log(&BANKS).build().base64(),
        &quote_of(&evil),
        &policy_for(&good),
    )
    .unwrap_err();
    let evil_pcr4 = hex::encode(quote_of(&evil).get(HashAlg::Sha256, 4).unwrap());
    assert!(
        failures.iter().any(
            |f| f.starts_with("PCR 4 (sha256) replayed from the event log is 0x")
                && f.ends_with(&format!("but the quote says 0x{evil_pcr4}"))
        ),
        "{failures:#?}"
    );
    // grub's PCR 9 measurement of the kernel file disagrees too.
    assert!(
        failures.iter().any(|f| f.starts_with("PCR 9 (sha256)")),
        "{failures:#?}"
    );
    assert_eq!(failures.len(), 2, "{failures:#?}");
}

#[test]
fn an_edited_digest_in_the_log() {
    let good = SampleBoot::default();
    let built = good.log(&BANKS).build();
    let log = EventLog::parse(&built.bytes).unwrap();
    let initrd = log
        .events()
        .iter()
        .find(|e| e.pcr == 9 && matches!(&e.body, EventBody::Text(t) if t.contains("initrd")))
        .unwrap();
    let mut bytes = built.bytes.clone();
    // Last byte of the sha256 digest, which sits just before eventSize.
    bytes[initrd.data_offset - 5] ^= 0x80;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let failures = attest(&b64, &quote_of(&good), &policy_for(&good)).unwrap_err();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(
        failures[0].starts_with("PCR 9 (sha256) replayed from the event log is 0x"),
        "{failures:#?}"
    );
}

#[test]
fn secure_boot_reported_on_although_it_was_off() {
    // Secure boot was off; the log's SecureBoot byte is edited to 1 and the digests are left
    // alone, so the replay still matches the quote.
    let mut off = SampleBoot::default();
    off.secure_boot = false;
    let built = off.log(&BANKS).build();
    let log = EventLog::parse(&built.bytes).unwrap();
    let sb = log
        .events()
        .iter()
        .find(|e| matches!(&e.body, EventBody::Variable(v) if v.name == "SecureBoot"))
        .unwrap();
    let mut bytes = built.bytes.clone();
    bytes[sb.data_offset + sb.data.len() - 1] = 1;
    let tampered = EventLog::parse(&bytes).unwrap();
    let policy = policy_for(&SampleBoot::default());
    let failures = verify(&tampered, &quote_of(&off), policy.pcrs_to_replay()).unwrap_err();
    assert_eq!(
        failures,
        vec![ReplayFailure::DataMismatch {
            event: sb.index,
            pcr: 7,
            event_type: EventType::EFI_VARIABLE_DRIVER_CONFIG,
            hash: HashAlg::Sha1,
        }]
    );
    // And the policy, evaluated on its own, refuses to read the edited variable.
    let f = policy.evaluate(&tampered).unwrap_err();
    assert!(
        f.iter()
            .any(|f| f.check == Check::EventData && f.message.contains("PCR 7")),
        "{f:#?}"
    );
    assert!(!f.iter().any(|f| f.check == Check::SecureBoot), "{f:#?}");
}

#[test]
fn a_truncated_log() {
    let good = SampleBoot::default();
    let built = good.log(&BANKS).build();
    let log = EventLog::parse(&built.bytes).unwrap();
    let policy = policy_for(&good);
    // Cut in the middle of the last event: the parser names it.
    let last = log.events().last().unwrap();
    match EventLog::parse(&built.bytes[..built.bytes.len() - 3]) {
        Err(LogError::Malformed { event, field, .. }) => {
            assert_eq!(
                (event, field.as_str()),
                (last.index, "TCG_PCR_EVENT2.event")
            );
        }
        other => panic!("{other:?}"),
    }
    // Cut cleanly before the kernel's measurements, hiding them: the replay is short.
    let kernel = log
        .events()
        .iter()
        .filter(|e| e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION)
        .nth(2)
        .unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&built.bytes[..kernel.offset]);
    let failures = attest(&b64, &quote_of(&good), &policy).unwrap_err();
    let pcrs: Vec<&str> = failures
        .iter()
        .map(|f| &f[..f.find(" (").unwrap()])
        .collect();
    assert_eq!(
        pcrs,
        vec!["PCR 4", "PCR 5", "PCR 8", "PCR 9"],
        "{failures:#?}"
    );
}

#[test]
fn secure_boot_disabled() {
    let mut off = SampleBoot::default();
    off.secure_boot = false;
    let failures = attest(
        &off.log(&BANKS).build().base64(),
        &quote_of(&off),
        &policy_for(&SampleBoot::default()),
    )
    .unwrap_err();
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("SecureBoot is 0 (disabled)")
                && f.ends_with("but the policy requires it")),
        "{failures:#?}"
    );
}

#[test]
fn a_boot_application_not_in_the_policy() {
    let good = SampleBoot::default();
    let mut b = good.log(&BANKS);
    b.boot_application("\\EFI\\BOOT\\evil.efi", b"bootkit");
    let built = b.build();
    let sel: PcrSelection = "sha256:0,1,2,3,4,5,6,7,8,9,14".parse().unwrap();
    let quoted = built.pcrs.restricted_to(&sel);
    let failures = attest(&built.base64(), &quoted, &policy_for(&good)).unwrap_err();
    let digest = hex::encode(HashAlg::Sha256.digest(b"bootkit"));
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(
        failures[0].starts_with(&format!("boot application sha256:{digest} (event ")),
        "{failures:#?}"
    );
    assert!(
        failures[0].ends_with("\\EFI\\BOOT\\evil.efi) is not allowed"),
        "{failures:#?}"
    );
}
