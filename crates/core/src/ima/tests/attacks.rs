//! Attacks on the IMA evidence: each must fail replay with a reason that says what happened.

use super::*;
use crate::ima::entry::{Entry, Event};
use crate::ima::testlog::Logged;
use crate::ima::{replay, ImaReplayState, ReplayError, ViolationReason};

const BANKS: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

fn run(
    log_text: &str,
    bank: HashAlg,
    quoted: &[u8],
    policy: &CompiledPolicy,
) -> Result<crate::ima::ReplayOutcome, ReplayError> {
    replay(
        &ImaReplayState::new(BOOT),
        &input(log_text, 0, bank, quoted),
        policy,
    )
}

fn text_of(entries: &[Logged]) -> String {
    entries.iter().map(|e| format!("{}\n", e.line)).collect()
}

#[test]
fn honest_log_is_accepted_in_every_bank() {
    let log = sample_log();
    let policy = compile(policy_allowing(&log));
    for bank in BANKS {
        let out = run(&log.text(), bank, &log.pcr10(bank), &policy).unwrap();
        assert_eq!(
            (out.received, out.certified, out.state.next_entry()),
            (8, 8, 8)
        );
        assert_eq!(out.state.aggregate(bank), Some(log.pcr10(bank)));
    }
}

#[test]
fn file_outside_policy() {
    let allowed = sample_log();
    let mut log = sample_log();
    log.file("/usr/bin/evil", b"evil");
    let policy = compile(policy_allowing(&allowed));
    let e = run(
        &log.text(),
        HashAlg::Sha256,
        &log.pcr10(HashAlg::Sha256),
        &policy,
    )
    .unwrap_err();
    let v = e.violations();
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].entry, v[0].path.as_str()), (8, "/usr/bin/evil"));
    assert!(
        e.to_string()
            .contains("/usr/bin/evil is not in the runtime policy"),
        "{e}"
    );
}

#[test]
fn digest_mismatch_for_an_allowed_path() {
    let allowed = sample_log();
    let mut log = LogWriter::new();
    log.boot_aggregate(&[0x5a; 32]);
    let ls = log.file("/usr/bin/ls", b"trojaned ls");
    let policy = compile(policy_allowing(&allowed));
    let e = run(
        &log.text(),
        HashAlg::Sha1,
        &log.pcr10(HashAlg::Sha1),
        &policy,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "digest sha256:{} of /usr/bin/ls is not one of the 1 allowed digests",
            ls.digest_hex()
        )),
        "{msg}"
    );
}

#[test]
fn truncated_log() {
    let log = sample_log();
    let policy = compile(policy_allowing(&log));
    for bank in BANKS {
        let quoted = log.pcr10(bank);
        // The agent hides the tail...
        let e = run(&log.text_range(0, 6), bank, &quoted, &policy).unwrap_err();
        assert!(matches!(e, ReplayError::PcrMismatch(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("PCR 10 does not match the IMA log"),
            "{e}"
        );
        assert!(
            e.to_string().contains("truncated, reordered or rewritten"),
            "{e}"
        );
        // ...or drops an entry from the middle.
        let mut entries = log.entries().to_vec();
        entries.remove(3);
        let e = run(&text_of(&entries), bank, &quoted, &policy).unwrap_err();
        assert!(matches!(e, ReplayError::PcrMismatch(_)), "{e}");
    }
}

#[test]
fn reordered_entries() {
    let log = sample_log();
    let policy = compile(policy_allowing(&log));
    let mut entries = log.entries().to_vec();
    entries.swap(2, 5);
    for bank in BANKS {
        let e = run(&text_of(&entries), bank, &log.pcr10(bank), &policy).unwrap_err();
        assert!(
            matches!(&e, ReplayError::PcrMismatch(m) if m.entries == 8 && m.bank == bank),
            "{e}"
        );
    }
}

fn rewrite(e: &Logged, to_path: &str, recompute: bool) -> Entry {
    let mut entry = e.entry.clone();
    if let Event::ImaNg { path, .. } = &mut entry.event {
        *path = to_path.into();
    }
    if recompute {
        entry.template_hash = entry.computed_template_hash();
    }
    entry
}

#[test]
fn entry_rewritten_keeping_its_template_hash() {
    // The malware /usr/bin/evil ran; its entry is rewritten to name an allowed file.
    let mut real = sample_log();
    let evil = real.file("/usr/bin/evil", b"evil");
    let mut policy = policy_allowing(&sample_log());
    policy
        .digests
        .insert("/usr/bin/fine".into(), vec![evil.digest_hex()]);
    let policy = compile(policy);
    let mut entries: Vec<Entry> = real.entries().iter().map(|l| l.entry.clone()).collect();
    entries[8] = rewrite(&evil, "/usr/bin/fine", false);
    let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
    for bank in BANKS {
        let e = run(&text, bank, &real.pcr10(bank), &policy).unwrap_err();
        assert!(
            matches!(
                e.violations().first().map(|v| &v.reason),
                Some(ViolationReason::TemplateHashMismatch { entry: 8, .. })
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("template hash of entry 8 does not match its data"),
            "{e}"
        );
    }
}

#[test]
fn entry_rewritten_with_a_recomputed_template_hash() {
    let mut real = sample_log();
    let evil = real.file("/usr/bin/evil", b"evil");
    let mut policy = policy_allowing(&sample_log());
    policy
        .digests
        .insert("/usr/bin/fine".into(), vec![evil.digest_hex()]);
    let policy = compile(policy);
    let mut entries: Vec<Entry> = real.entries().iter().map(|l| l.entry.clone()).collect();
    entries[8] = rewrite(&evil, "/usr/bin/fine", true);
    let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
    for bank in BANKS {
        let e = run(&text, bank, &real.pcr10(bank), &policy).unwrap_err();
        assert!(matches!(e, ReplayError::PcrMismatch(_)), "{e}");
    }
}

#[test]
fn pcr10_not_matching_the_log() {
    let log = sample_log();
    let policy = compile(policy_allowing(&log));
    let e = run(&log.text(), HashAlg::Sha256, &[0x42; 32], &policy).unwrap_err();
    let ReplayError::PcrMismatch(m) = &e else {
        panic!("{e}")
    };
    assert_eq!(m.quoted, "42".repeat(32));
    assert_eq!(m.final_value, hex::encode(log.pcr10(HashAlg::Sha256)));
    assert_eq!(m.start_value, "00".repeat(32));
    // A quote from the other bank's value does not match either.
    let e = run(
        &log.text(),
        HashAlg::Sha256,
        &log.pcr10(HashAlg::Sha256)[..20],
        &policy,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ReplayError::QuotedLength {
                len: 20,
                expected: 32,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn extra_entry_appended_beyond_the_quote_is_still_judged() {
    // The quote covers the honest log; an unquoted tail entry is not accepted, but a policy
    // violation in it still fails attestation, as upstream.
    let honest = sample_log();
    let mut log = sample_log();
    log.file("/usr/bin/evil", b"evil");
    let policy = compile(policy_allowing(&honest));
    let e = run(
        &log.text(),
        HashAlg::Sha1,
        &honest.pcr10(HashAlg::Sha1),
        &policy,
    )
    .unwrap_err();
    assert_eq!(e.violations()[0].path, "/usr/bin/evil");
}
