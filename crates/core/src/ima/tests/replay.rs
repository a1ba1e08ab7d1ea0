//! Incremental replay: agreeing with one-shot replay, lag between log and quote, restarts.

use super::*;
use crate::ima::{replay, ImaReplayState, QuoteProgress, ReplayError};

#[test]
fn three_increments_equal_one_shot() {
    let key = SigningKey::new();
    let mut log = sample_log();
    let kr = log.buffer(".ima", &key.cert_der);
    log.signed_file("/usr/bin/signed", b"signed", &key.ima_sig(b"signed"));
    log.violation("/var/log/wtmp");
    log.file("/usr/bin/vim", b"vim");
    log.signed_file("/usr/bin/signed2", b"s2", &key.ima_sig(b"s2"));
    log.buffer("kexec-cmdline", b"root=/dev/vda1");
    let mut p = policy_allowing(&sample_log());
    p.digests
        .insert("/usr/bin/vim".into(), vec![log.entries()[11].digest_hex()]);
    p.keyrings.insert(".ima".into(), vec![kr.digest_hex()]);
    p.ima_buf
        .insert("kexec-cmdline".into(), vec![log.entries()[13].digest_hex()]);
    let policy = compile(p);

    for bank in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384] {
        let one_shot = replay(
            &ImaReplayState::new(BOOT),
            &input(&log.text(), 0, bank, &log.pcr10(bank)),
            &policy,
        )
        .unwrap();
        assert_eq!(one_shot.state.next_entry(), log.len() as u64);

        let mut state = ImaReplayState::new(BOOT);
        // The signed file at 9 needs the key learned at 8 in the earlier call.
        for (from, to) in [(0, 9), (9, 12), (12, log.len())] {
            let text = log.text_range(from, to);
            let quoted = log.pcr10_after(to, bank);
            assert_eq!(state.next_entry(), from as u64);
            let out = replay(&state, &input(&text, from as u64, bank, &quoted), &policy).unwrap();
            assert_eq!(
                (out.received, out.certified),
                ((to - from) as u64, (to - from) as u64)
            );
            state = out.state;
        }
        assert_eq!(state.aggregate(bank), one_shot.state.aggregate(bank));
        assert_eq!(state.next_entry(), one_shot.state.next_entry());
        assert_eq!(state.learned_keyrings(), one_shot.state.learned_keyrings());
        assert_eq!(
            state.learned_keyrings()[".ima"].keys()[0].keyid(),
            key.keyid
        );
    }
}

#[test]
fn log_ahead_of_the_quote_accepts_the_quoted_prefix() {
    let log = sample_log();
    let policy = compile(policy_allowing(&log));
    let bank = HashAlg::Sha256;
    // The quote was taken after 5 entries; the log read afterwards has 8.
    let out = replay(
        &ImaReplayState::new(BOOT),
        &input(&log.text(), 0, bank, &log.pcr10_after(5, bank)),
        &policy,
    )
    .unwrap();
    assert_eq!(
        (out.received, out.certified, out.state.next_entry()),
        (8, 5, 5)
    );
    assert_eq!(out.state.aggregate(bank), Some(log.pcr10_after(5, bank)));
    assert_eq!(
        out.state.quote_progress(),
        Some(QuoteProgress {
            certified: 5,
            received: 8
        })
    );
    // Next time the agent serves from 5; the quote has caught up.
    let out = replay(
        &out.state,
        &input(&log.text_from(5), 5, bank, &log.pcr10(bank)),
        &policy,
    )
    .unwrap();
    assert_eq!(
        (out.received, out.certified, out.state.next_entry()),
        (3, 3, 8)
    );
    // Nothing new: an empty log matches at the empty prefix.
    let out = replay(&out.state, &input("", 8, bank, &log.pcr10(bank)), &policy).unwrap();
    assert_eq!(
        (out.received, out.certified, out.state.next_entry()),
        (0, 0, 8)
    );
}

#[test]
fn a_quote_that_never_catches_up_fails() {
    let mut log = sample_log();
    for i in 0..6 {
        log.file(&format!("/usr/bin/t{i}"), b"t");
    }
    let policy = compile(policy_allowing(&log));
    let bank = HashAlg::Sha1;
    // First: quote after 4 of 8 entries (lag 4).
    let first = log.text_range(0, 8);
    let out = replay(
        &ImaReplayState::new(BOOT),
        &input(&first, 0, bank, &log.pcr10_after(4, bank)),
        &policy,
    )
    .unwrap();
    // Second: from 4, the quote covers only 2 of the lagging 4 while the log grew.
    let second = log.text_range(4, 12);
    let e = replay(
        &out.state,
        &input(&second, 4, bank, &log.pcr10_after(6, bank)),
        &policy,
    )
    .unwrap_err();
    assert_eq!(
        e,
        ReplayError::QuoteProgress {
            previous_lag: 4,
            certified: 2
        }
    );
    assert!(e.to_string().contains("did not make progress"), "{e}");
}

#[test]
fn served_index_must_be_the_requested_one_or_zero() {
    let log = sample_log();
    let policy = compile(policy_allowing(&log));
    let bank = HashAlg::Sha256;
    let out = replay(
        &ImaReplayState::new(BOOT),
        &input(&log.text_range(0, 4), 0, bank, &log.pcr10_after(4, bank)),
        &policy,
    )
    .unwrap();
    let e = replay(
        &out.state,
        &input(&log.text_from(5), 5, bank, &log.pcr10(bank)),
        &policy,
    )
    .unwrap_err();
    assert_eq!(
        e,
        ReplayError::EntryIndexMismatch {
            requested: 4,
            served: 5
        }
    );
    // The agent restarted and serves everything from 0: a fresh replay.
    let out2 = replay(
        &out.state,
        &input(&log.text(), 0, bank, &log.pcr10(bank)),
        &policy,
    )
    .unwrap();
    assert_eq!(out2.state.next_entry(), 8);
    // Same boot required to continue.
    let (tail, pcr) = (log.text_from(4), log.pcr10(bank));
    let mut other = input(&tail, 4, bank, &pcr);
    other.boot = BootIdentity {
        reset_count: 4,
        restart_count: 0,
    };
    let e = replay(&out.state, &other, &policy).unwrap_err();
    assert!(matches!(e, ReplayError::BootChanged { .. }), "{e}");
    // After a reboot the log starts at 0 and the new boot identity is kept.
    let rebooted = ReplayInput {
        served_from: 0,
        log: "",
        quoted_pcr10: &[0; 32],
        ..other
    };
    let out3 = replay(&out.state, &rebooted, &policy).unwrap();
    assert_eq!(
        (out3.state.boot(), out3.state.next_entry()),
        (other.boot, 0)
    );
}

#[test]
fn switching_banks_mid_log_restarts() {
    let log = sample_log();
    let policy = compile(policy_allowing(&log));
    let out = replay(
        &ImaReplayState::new(BOOT),
        &input(
            &log.text_range(0, 4),
            0,
            HashAlg::Sha1,
            &log.pcr10_after(4, HashAlg::Sha1),
        ),
        &policy,
    )
    .unwrap();
    let e = replay(
        &out.state,
        &input(
            &log.text_from(4),
            4,
            HashAlg::Sha256,
            &log.pcr10(HashAlg::Sha256),
        ),
        &policy,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ReplayError::BankNotTracked {
                bank: HashAlg::Sha256,
                next_entry: 4
            }
        ),
        "{e}"
    );
    // From 0, both banks are tracked from then on.
    let out = replay(
        &out.state,
        &input(
            &log.text_range(0, 4),
            0,
            HashAlg::Sha256,
            &log.pcr10_after(4, HashAlg::Sha256),
        ),
        &policy,
    )
    .unwrap();
    assert_eq!(
        out.state.aggregate(HashAlg::Sha1),
        Some(log.pcr10_after(4, HashAlg::Sha1))
    );
    let out = replay(
        &out.state,
        &input(
            &log.text_from(4),
            4,
            HashAlg::Sha1,
            &log.pcr10(HashAlg::Sha1),
        ),
        &policy,
    )
    .unwrap();
    assert_eq!(
        out.state.aggregate(HashAlg::Sha256),
        Some(log.pcr10(HashAlg::Sha256))
    );
}

#[test]
fn keys_from_unquoted_entries_are_not_kept() {
    let key = SigningKey::new();
    let mut log = sample_log();
    let kr = log.buffer(".ima", &key.cert_der);
    let mut p = policy_allowing(&sample_log());
    p.keyrings.insert(".ima".into(), vec![kr.digest_hex()]);
    let policy = compile(p);
    let bank = HashAlg::Sha256;
    let out = replay(
        &ImaReplayState::new(BOOT),
        &input(&log.text(), 0, bank, &log.pcr10_after(8, bank)),
        &policy,
    )
    .unwrap();
    assert_eq!(out.certified, 8);
    assert!(out.state.learned_keyrings().is_empty());
    let out = replay(
        &out.state,
        &input(&log.text_from(8), 8, bank, &log.pcr10(bank)),
        &policy,
    )
    .unwrap();
    assert_eq!(out.state.learned_keyrings()[".ima"].keys().len(), 1);
}

#[test]
fn parse_errors_name_the_line_and_entry() {
    let log = sample_log();
    let policy = compile(policy_allowing(&log));
    let text = format!("{}10 zz ima-ng x /y\n", log.text_range(4, 6));
    let state = replay(
        &ImaReplayState::new(BOOT),
        &input(
            &log.text_range(0, 4),
            0,
            HashAlg::Sha1,
            &log.pcr10_after(4, HashAlg::Sha1),
        ),
        &policy,
    )
    .unwrap()
    .state;
    let e = replay(
        &state,
        &input(&text, 4, HashAlg::Sha1, &log.pcr10(HashAlg::Sha1)),
        &policy,
    )
    .unwrap_err();
    let ReplayError::Parse(p) = &e else {
        panic!("{e}")
    };
    assert_eq!((p.line, p.entry), (3, 6));
    assert!(
        e.to_string()
            .starts_with("IMA log line 3 (entry 6): template hash"),
        "{e}"
    );
}

#[test]
fn state_round_trips_through_json() {
    let key = SigningKey::new();
    let mut log = sample_log();
    let kr = log.buffer(".ima", &key.cert_der);
    let mut p = policy_allowing(&sample_log());
    p.keyrings.insert(".ima".into(), vec![kr.digest_hex()]);
    let policy = compile(p);
    let out = replay(
        &ImaReplayState::new(BOOT),
        &input(&log.text(), 0, HashAlg::Sha256, &log.pcr10(HashAlg::Sha256)),
        &policy,
    )
    .unwrap();
    let json = serde_json::to_string(&out.state).unwrap();
    assert!(json.contains("\"sha256\":\""), "{json}");
    let back: ImaReplayState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, out.state);
    let bad = json.replace("\"sha256\"", "\"md5\"");
    assert!(serde_json::from_str::<ImaReplayState>(&bad).is_err());
}
