//! Every verdict a policy can give on an entry (upstream's `_validate_*` functions).

use super::*;
use crate::ima::entry::{Entry, Event};
use crate::ima::FileDigest;
use crate::ima::{check_log, Checker, Violation, ViolationReason};

fn verdicts(
    policy: &CompiledPolicy,
    log: &LogWriter,
    boot_aggregates: &[String],
    options: CheckOptions,
) -> Vec<Violation> {
    check_log(policy, &log.text(), boot_aggregates, options).unwrap()
}

fn only(policy: &CompiledPolicy, log: &LogWriter) -> Option<ViolationReason> {
    let mut v = verdicts(policy, log, &[], CheckOptions::default());
    assert!(v.len() <= 1, "{v:?}");
    v.pop().map(|v| v.reason)
}

#[test]
fn ima_ng_in_policy_is_accepted() {
    let log = sample_log();
    assert_eq!(only(&compile(policy_allowing(&log)), &log), None);
}

#[test]
fn ima_ng_outside_policy() {
    let mut log = LogWriter::new();
    log.file("/usr/bin/evil", b"evil");
    let r = only(&compile(RuntimePolicy::empty()), &log).unwrap();
    assert_eq!(r.to_string(), "/usr/bin/evil is not in the runtime policy");
}

#[test]
fn ima_ng_digest_not_allowed() {
    let mut allowed = LogWriter::new();
    allowed.file("/usr/bin/ls", b"ls v1");
    let mut log = LogWriter::new();
    let ls = log.file("/usr/bin/ls", b"ls v2");
    let r = only(&compile(policy_allowing(&allowed)), &log).unwrap();
    assert_eq!(
        r.to_string(),
        format!(
            "digest sha256:{} of /usr/bin/ls is not one of the 1 allowed digests",
            ls.digest_hex()
        )
    );
}

#[test]
fn excluded_paths_pass_whatever_their_digest() {
    let mut log = LogWriter::new();
    log.file("/tmp/build/x", b"x");
    log.signed_file("/tmp/signed", b"y", &[3, 2, 4, 0, 0, 0, 1, 0, 1, 0xff]);
    let mut p = RuntimePolicy::empty();
    p.excludes = vec!["/tmp/.*".into()];
    assert_eq!(only(&compile(p), &log), None);
}

#[test]
fn boot_aggregate_from_policy_or_from_the_boot_log() {
    let mut log = LogWriter::new();
    let ba = log.boot_aggregate(&[9; 32]);
    let empty = compile(RuntimePolicy::empty());
    assert_eq!(
        only(&empty, &log),
        Some(ViolationReason::NotInPolicy {
            path: "boot_aggregate".into(),
            signature: None
        })
    );
    assert!(verdicts(&empty, &log, &[ba.digest_hex()], CheckOptions::default()).is_empty());
    let v = verdicts(&empty, &log, &["ab".repeat(32)], CheckOptions::default());
    assert!(
        matches!(
            &v[0].reason,
            ViolationReason::DigestNotAllowed { allowed: 1, .. }
        ),
        "{v:?}"
    );
    assert_eq!(only(&compile(policy_allowing(&log)), &log), None);
}

#[test]
fn ima_sig_with_a_trusted_signature_needs_no_digest() {
    let key = SigningKey::new();
    let mut log = LogWriter::new();
    log.signed_file("/usr/bin/signed", b"content", &key.ima_sig(b"content"));
    let mut p = RuntimePolicy::empty();
    p.verification_keys = key.verification_keys();
    assert_eq!(only(&compile(p), &log), None);
}

#[test]
fn ima_sig_that_does_not_verify_falls_back_to_digests() {
    let key = SigningKey::new();
    let mut log = LogWriter::new();
    // Signature made for other content: it does not verify.
    log.signed_file("/usr/bin/signed", b"content", &key.ima_sig(b"other"));
    let mut p = RuntimePolicy::empty();
    p.verification_keys = key.verification_keys();
    let r = only(&compile(p.clone()), &log).unwrap();
    assert!(
        matches!(&r, ViolationReason::NotInPolicy { signature: Some(why), .. } if why.contains("does not verify")),
        "{r}"
    );
    assert!(
        r.to_string().contains("its IMA signature was not accepted"),
        "{r}"
    );
    // Unknown key: same fallback, reason names the keyid.
    let r = only(&compile(RuntimePolicy::empty()), &log).unwrap();
    assert!(
        r.to_string()
            .contains(&format!("no key with id 0x{:08x}", key.keyid)),
        "{r}"
    );
    // Allowed by digest instead.
    p.digests = policy_allowing(&log).digests;
    assert_eq!(only(&compile(p), &log), None);
}

#[test]
fn ima_sig_without_signature_is_judged_by_digest() {
    let mut log = LogWriter::new();
    log.signed_file("/usr/bin/unsigned", b"u", &[]);
    assert_eq!(only(&compile(policy_allowing(&log)), &log), None);
    assert!(matches!(
        only(&compile(RuntimePolicy::empty()), &log),
        Some(ViolationReason::NotInPolicy {
            signature: None,
            ..
        })
    ));
}

#[test]
fn ima_sig_with_a_malformed_signature_is_rejected() {
    let mut log = LogWriter::new();
    log.signed_file("/usr/bin/x", b"x", &[3, 2, 4, 0, 0, 0, 1, 0, 9, 0xff]);
    let r = only(&compile(policy_allowing(&log)), &log).unwrap();
    assert!(
        matches!(&r, ViolationReason::MalformedSignature { .. }),
        "{r}"
    );
}

#[test]
fn keys_learned_from_a_keyring_entry_verify_later_signatures() {
    let key = SigningKey::new();
    let mut log = LogWriter::new();
    let kr = log.buffer(".ima", &key.cert_der);
    log.signed_file("/usr/bin/signed", b"content", &key.ima_sig(b"content"));
    let mut p = RuntimePolicy::empty();
    p.keyrings.insert(".ima".into(), vec![kr.digest_hex()]);
    let policy = compile(p);
    assert_eq!(only(&policy, &log), None);

    // The checker reports what it learned.
    let mut checker = Checker::new(&policy, Default::default(), &[], CheckOptions::default());
    let e = &log.entries()[0].entry;
    let learned = checker
        .check(0, e, &e.event.template_data())
        .unwrap()
        .unwrap();
    assert_eq!(
        (learned.keyring.as_str(), learned.key.keyid()),
        (".ima", key.keyid)
    );
}

#[test]
fn keyring_entries_outside_policy() {
    let key = SigningKey::new();
    let mut log = LogWriter::new();
    log.buffer(".ima", &key.cert_der);
    assert_eq!(
        only(&compile(RuntimePolicy::empty()), &log),
        Some(ViolationReason::KeyringNotInPolicy {
            keyring: ".ima".into()
        })
    );
    let mut p = RuntimePolicy::empty();
    p.keyrings.insert(".ima".into(), vec!["ab".repeat(32)]);
    assert!(matches!(
        only(&compile(p), &log),
        Some(ViolationReason::KeyringDigestNotAllowed { .. })
    ));
}

#[test]
fn ignored_keyrings_pass_but_teach_no_key() {
    let key = SigningKey::new();
    for ignored in [".ima", "*"] {
        let mut log = LogWriter::new();
        log.buffer(".ima", &key.cert_der);
        let mut p = RuntimePolicy::empty();
        p.ima.ignored_keyrings = vec![ignored.into()];
        assert_eq!(only(&compile(p.clone()), &log), None);
        log.signed_file("/usr/bin/signed", b"c", &key.ima_sig(b"c"));
        assert!(matches!(
            only(&compile(p), &log),
            Some(ViolationReason::NotInPolicy {
                signature: Some(_),
                ..
            })
        ));
    }
}

#[test]
fn other_buffers_use_the_ima_buf_section() {
    let mut log = LogWriter::new();
    let b = log.buffer("kexec-cmdline", b"root=/dev/vda1 ro");
    assert_eq!(
        only(&compile(RuntimePolicy::empty()), &log),
        Some(ViolationReason::BufferNotInPolicy {
            name: "kexec-cmdline".into()
        })
    );
    let mut p = RuntimePolicy::empty();
    p.ima_buf
        .insert("kexec-cmdline".into(), vec!["cd".repeat(32)]);
    assert!(matches!(
        only(&compile(p.clone()), &log),
        Some(ViolationReason::BufferDigestNotAllowed { allowed: 1, .. })
    ));
    p.ima_buf
        .insert("kexec-cmdline".into(), vec![b.digest_hex()]);
    assert_eq!(only(&compile(p), &log), None);
}

#[test]
fn unsupported_keys_in_keyrings_are_rejected() {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ed".into()])
        .unwrap()
        .self_signed(&ed)
        .unwrap();
    let mut log = LogWriter::new();
    log.buffer(".ima", cert.der());
    assert!(matches!(
        only(&compile(RuntimePolicy::empty()), &log),
        Some(ViolationReason::UnsupportedKey { .. })
    ));
}

#[test]
fn entries_for_another_pcr_are_rejected() {
    let mut log = LogWriter::new();
    let mut e = log.file("/usr/bin/ls", b"ls").entry;
    let policy = compile(policy_allowing(&log));
    e.pcr = 11;
    let mut bad = LogWriter::new();
    bad.push_entry(e);
    assert_eq!(
        only(&policy, &bad),
        Some(ViolationReason::WrongPcr { pcr: 11 })
    );
}

#[test]
fn violation_records_pass_unless_configured_to_fail() {
    let mut log = LogWriter::new();
    log.violation("/var/log/messages");
    let policy = compile(RuntimePolicy::empty());
    assert_eq!(only(&policy, &log), None);
    let v = verdicts(
        &policy,
        &log,
        &[],
        CheckOptions {
            fail_on_violation_records: true,
        },
    );
    assert_eq!(v[0].reason, ViolationReason::ViolationRecord);
}

#[test]
fn template_hash_algorithm_must_be_the_policys() {
    let mut log = LogWriter::with_algorithms(HashAlg::Sha256, HashAlg::Sha256);
    log.file("/usr/bin/ls", b"ls");
    let mut p = policy_allowing(&log);
    assert!(matches!(
        only(&compile(p.clone()), &log),
        Some(ViolationReason::TemplateHashAlg {
            stated: HashAlg::Sha256,
            policy: HashAlg::Sha1,
            ..
        })
    ));
    p.ima.log_hash_alg = HashAlg::Sha256;
    assert_eq!(only(&compile(p), &log), None);
}

#[test]
fn legacy_ima_template_uses_digests() {
    let mut log = LogWriter::new();
    log.push(Event::Ima {
        digest: FileDigest::new("sha1", vec![0x42; 20]),
        path: "/init".into(),
    });
    assert!(matches!(
        only(&compile(RuntimePolicy::empty()), &log),
        Some(ViolationReason::NotInPolicy { .. })
    ));
    let mut p = RuntimePolicy::empty();
    p.digests.insert("/init".into(), vec!["42".repeat(20)]);
    assert_eq!(only(&compile(p), &log), None);
}

#[test]
fn rewritten_data_is_caught_by_the_template_hash() {
    let mut log = LogWriter::new();
    let mut e: Entry = log.file("/usr/bin/ls", b"ls").entry;
    let policy = compile(policy_allowing(&log));
    if let Event::ImaNg { path, .. } = &mut e.event {
        *path = "/usr/bin/ls2".into();
    }
    let mut bad = LogWriter::new();
    bad.push_entry(e);
    let r = only(&policy, &bad).unwrap();
    assert!(
        r.to_string()
            .starts_with("template hash of entry 0 does not match its data"),
        "{r}"
    );
}

#[test]
fn check_log_lists_every_violation_in_order() {
    let mut log = sample_log();
    log.file("/usr/bin/evil", b"1");
    log.file("/usr/bin/worse", b"2");
    let mut p = policy_allowing(&sample_log());
    p.digests.remove("/usr/bin/ls");
    let v = verdicts(&compile(p), &log, &[], CheckOptions::default());
    let paths: Vec<_> = v.iter().map(|v| (v.entry, v.path.as_str())).collect();
    assert_eq!(
        paths,
        vec![
            (5, "/usr/bin/ls"),
            (8, "/usr/bin/evil"),
            (9, "/usr/bin/worse")
        ]
    );
    assert_eq!(
        v[1].to_string(),
        "IMA entry 8 (ima-ng /usr/bin/evil): /usr/bin/evil is not in the runtime policy"
    );
}
