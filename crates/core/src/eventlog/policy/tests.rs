//! Policy loading and every evaluation outcome, on logs from [`SampleBoot`].

// Tests vary one field of a default fixture at a time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use super::super::build::LogBuilder;
use super::super::parse::EventLog;
use super::super::sample::{SampleBoot, SAMPLE_OWNER};
use super::super::siglist::{SignatureData, SignatureList};
use super::super::types::{EventType, Guid};
use super::*;
use crate::tpm::alg::HashAlg;
use serde_json::{json, Value};

const BANKS: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

fn log_of(s: &SampleBoot) -> EventLog {
    EventLog::parse(&s.log(&BANKS).build().bytes).unwrap()
}

fn policy(v: &Value) -> MbPolicy {
    MbPolicy::load(EXAMPLE, Some(&v.to_string())).unwrap()
}

/// Evaluate `log` against `refstate`; the failure messages.
fn failures(refstate: &Value, log: &EventLog) -> Vec<PolicyFailure> {
    match policy(refstate).evaluate(log) {
        Ok(()) => vec![],
        Err(f) => f,
    }
}

fn only(f: Vec<PolicyFailure>, check: Check) -> String {
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].check, check, "{f:#?}");
    f[0].message.clone()
}

fn sha(d: &[u8]) -> String {
    hex::encode(HashAlg::Sha256.digest(d))
}

#[test]
fn the_sample_passes_its_own_refstate() {
    let s = SampleBoot::default();
    policy(&s.refstate()).evaluate(&log_of(&s)).unwrap();
    let mut nosb = SampleBoot::default();
    nosb.secure_boot = false;
    policy(&nosb.refstate()).evaluate(&log_of(&nosb)).unwrap();
    // sha256-only and sha384 logs too.
    let log = EventLog::parse(&s.log(&[HashAlg::Sha256, HashAlg::Sha384]).build().bytes).unwrap();
    policy(&s.refstate()).evaluate(&log).unwrap();
}

#[test]
fn names_and_empty_refstates_as_upstream() {
    let log = log_of(&SampleBoot::default());
    for (name, refstate) in [
        ("accept-all", None),
        ("", Some("{\"anything\": 1}")),
        ("example", None),
        ("example", Some("{}")),
        ("example", Some("null")),
        ("example", Some(" ")),
    ] {
        let p = MbPolicy::load(name, refstate).unwrap();
        assert!(matches!(p, MbPolicy::AcceptAll), "{name} {refstate:?}");
        p.evaluate(&log).unwrap();
        assert!(p.relevant_pcrs().is_empty());
        assert_eq!(p.pcrs_to_replay().len(), 15);
    }
    let reject = MbPolicy::load("reject-all", None).unwrap();
    let f = reject.evaluate(&log).unwrap_err();
    assert_eq!(
        only(f, Check::RejectAll),
        "the measured boot policy is reject-all"
    );
    assert!(
        matches!(MbPolicy::load("strict", None), Err(PolicyError::UnknownName(n)) if n == "strict")
    );
    assert!(matches!(
        MbPolicy::load("accept-all", Some("{")),
        Err(PolicyError::Json(_))
    ));
    let p = policy(&SampleBoot::default().refstate());
    assert_eq!(p.name(), "example");
    assert_eq!(
        p.pcrs_to_replay().into_iter().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]
    );
}

#[test]
fn unknown_keys_and_bad_values_are_rejected_when_loading() {
    let base = SampleBoot::default().refstate();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"has_secureboot": true, "kernal": []}),
            "unknown field `kernal`",
        ),
        (
            json!({"scrtm_and_bios": [{"scrtm": {"sha256": "0x00"}, "platform_firmware": [], "bios": 1}]}),
            "unknown field `bios`",
        ),
        (
            json!({"pk": [{"SignatureOwner": SAMPLE_OWNER.to_string(), "SignatureData": "0x00", "x": 1}]}),
            "unknown field `x`",
        ),
        (
            json!({"pk": [{"SignatureOwner": "not-a-guid", "SignatureData": "0x00"}]}),
            "is not a GUID",
        ),
        (
            json!({"pk": [{"SignatureOwner": SAMPLE_OWNER.to_string(), "SignatureData": "00"}]}),
            "does not start with 0x",
        ),
        (
            json!({"mokdig": [{"sha256": "0x1234"}]}),
            "sha256 digest \"0x1234\" is 2 bytes, a sha256 digest is 32",
        ),
        (
            json!({"mokdig": [{"md5": "0x1234"}]}),
            "\"md5\" is not a hash algorithm",
        ),
        (json!({"mokdig": [{}]}), "at least one algorithm"),
        (
            json!({"mokdig": [{"sha1": "0xzz"}]}),
            "not 0x followed by hex",
        ),
        (
            json!({"kernels": [{"shim_authcode_sha256": "0x00", "grub_authcode_sha256": "0x00"}]}),
            "is 1 bytes, a sha256 digest is 32",
        ),
        (json!({"has_secureboot": "yes"}), "invalid type"),
    ];
    for (v, why) in cases {
        let e = MbPolicy::load(EXAMPLE, Some(&v.to_string())).unwrap_err();
        assert!(e.to_string().contains(why), "{v}: {e}");
    }
    let mut no_kernel = base.clone();
    no_kernel["kernels"][0]
        .as_object_mut()
        .unwrap()
        .remove("kernel_authcode_sha256");
    let e = MbPolicy::load(EXAMPLE, Some(&no_kernel.to_string())).unwrap_err();
    assert!(
        matches!(&e, PolicyError::Invalid { path, .. } if path == "kernels[0]"),
        "{e}"
    );
    let mut bad_re = base;
    bad_re["kernels"][0]["kernel_cmdline"] = json!("(?=lookahead)");
    let e = MbPolicy::load(EXAMPLE, Some(&bad_re.to_string())).unwrap_err();
    assert!(
        e.to_string().contains("not a usable regular expression"),
        "{e}"
    );
}

#[test]
fn an_upstream_style_refstate_loads() {
    // Shape of `keylime-policy create measured-boot` output, with the GUID case and vendor_db
    // it writes.
    let v = json!({
        "has_secureboot": true,
        "scrtm_and_bios": [{"scrtm": {"sha256": format!("0x{}", "ab".repeat(32))}, "platform_firmware": [{"sha256": format!("0x{}", "cd".repeat(32))}]}],
        "pk": [{"SignatureOwner": "77FA9ABD-0359-4D32-BD60-28F4E78F784B", "SignatureData": "0x3082"}],
        "kek": [], "db": [], "dbx": [], "vendor_db": [], "mokdig": [], "mokxdig": [],
        "kernels": [{
            "shim_authcode_sha256": format!("0x{}", "01".repeat(32)),
            "grub_authcode_sha256": format!("0x{}", "02".repeat(32)),
            "kernel_authcode_sha256": format!("0x{}", "03".repeat(32)),
            "initrd_plain_sha256": format!("0x{}", "04".repeat(32)),
            "kernel_cmdline": "BOOT_IMAGE=\\(hd0,gpt2\\)/vmlinuz\\-5\\.14\\.0\\ root=/dev/mapper/rhel\\-root\\ ro"
        }]
    });
    match policy(&v) {
        MbPolicy::RefState(rs) => {
            assert_eq!(rs.pk.as_ref().unwrap()[0].owner, SAMPLE_OWNER);
            let re = rs.kernels.as_ref().unwrap()[0]
                .kernel_cmdline
                .clone()
                .unwrap();
            assert!(re.matches("kernel_cmdline: BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0 root=/dev/mapper/rhel-root ro"));
            assert!(!re.matches("kernel_cmdline: BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0 root=/dev/mapper/rhel-root ro init=/bin/sh"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn secure_boot_disabled_missing_or_twice() {
    let refstate = SampleBoot::default().refstate();
    let mut off = SampleBoot::default();
    off.secure_boot = false;
    let log = log_of(&off);
    let f = failures(&refstate, &log);
    // SecureBoot off, and without shim's verification the kernel is not in PCR 4.
    let sb: Vec<_> = f.iter().filter(|f| f.check == Check::SecureBoot).collect();
    assert_eq!(sb.len(), 1, "{f:#?}");
    assert!(
        sb[0].message.starts_with("SecureBoot is 0 (disabled)"),
        "{}",
        sb[0].message
    );
    assert!(sb[0].message.ends_with("but the policy requires it"));

    // A log with no SecureBoot measurement at all.
    let mut b = LogBuilder::new(&BANKS);
    b.separators(0..=7);
    let log = EventLog::parse(&b.build().bytes).unwrap();
    let f = failures(&json!({"has_secureboot": true}), &log);
    assert!(
        only(f, Check::SecureBoot).starts_with("the log has no SecureBoot measurement in PCR 7")
    );

    // Measured twice.
    let mut b = LogBuilder::new(&BANKS);
    b.secure_boot(true).secure_boot(true);
    let log = EventLog::parse(&b.build().bytes).unwrap();
    let m = only(
        failures(
            &json!({})
                .as_object()
                .map(|_| json!({"has_secureboot": true}))
                .unwrap(),
            &log,
        ),
        Check::SecureBoot,
    );
    assert!(m.contains("measured 2 times in PCR 7 (events 1, 2)"), "{m}");

    // has_secureboot false with secure boot on (upstream expects it off).
    let log = log_of(&SampleBoot::default());
    let m = only(
        failures(&json!({"has_secureboot": false}), &log),
        Check::SecureBoot,
    );
    assert!(m.starts_with("SecureBoot is 1 (enabled)"), "{m}");

    // A two-byte value.
    let mut b = LogBuilder::new(&BANKS);
    b.variable(
        7,
        EventType::EFI_VARIABLE_DRIVER_CONFIG,
        Guid::EFI_GLOBAL_VARIABLE,
        "SecureBoot",
        &[1, 0],
    );
    let log = EventLog::parse(&b.build().bytes).unwrap();
    assert!(only(
        failures(&json!({"has_secureboot": true}), &log),
        Check::SecureBoot
    )
    .contains("2 bytes"));
}

#[test]
fn secure_boot_data_changed_under_its_digest() {
    let mut off = SampleBoot::default();
    off.secure_boot = false;
    let built = off.log(&BANKS).build();
    let log = EventLog::parse(&built.bytes).unwrap();
    let ev = log
        .events()
        .iter()
        .find(|e| matches!(&e.body, super::super::EventBody::Variable(v) if v.name == "SecureBoot"))
        .unwrap();
    let mut bytes = built.bytes.clone();
    bytes[ev.data_offset + ev.data.len() - 1] = 1;
    let tampered = EventLog::parse(&bytes).unwrap();
    let f = failures(&json!({"has_secureboot": true}), &tampered);
    let m = only(f, Check::EventData);
    assert!(
        m.contains(&format!(
            "event {} (PCR 7, EV_EFI_VARIABLE_DRIVER_CONFIG)",
            ev.index
        )),
        "{m}"
    );
}

#[test]
fn key_databases() {
    let s = SampleBoot::default();
    let log = log_of(&s);
    let base = s.refstate();
    let key = |data: &[u8]| json!({"SignatureOwner": SAMPLE_OWNER.to_string(), "SignatureData": format!("0x{}", hex::encode(data))});

    // A PK the policy does not list.
    let mut r = base.clone();
    r["pk"] = json!([key(b"some other PK")]);
    let m = only(failures(&r, &log), Check::KeyDatabase);
    assert!(m.starts_with("PK (event ") && m.contains("contains a key the policy does not list: owner 77fa9abd-0359-4d32-bd60-28f4e78f784b data 0x30820100"), "{m}");

    // A db the policy only partly lists: one failure per unlisted key.
    let mut r = base.clone();
    r["db"] = json!([key(&s.db[0])]);
    assert!(only(failures(&r, &log), Check::KeyDatabase).starts_with("db (event"));

    // dbx must contain every listed revocation.
    let mut r = base.clone();
    r["dbx"].as_array_mut().unwrap().push(key(&[0xee; 32]));
    let m = only(failures(&r, &log), Check::KeyDatabase);
    assert!(
        m.contains(&format!(
            "lacks the entry owner {SAMPLE_OWNER} data 0x{}",
            "ee".repeat(32)
        )),
        "{m}"
    );

    // KEK holding a SHA-256 list.
    let mut s2 = SampleBoot::default();
    s2.kek = vec![];
    let mut b = s2.log(&BANKS);
    b.key_database(
        "KEK",
        &[SignatureList {
            signature_type: Guid::CERT_SHA256,
            header: vec![],
            signatures: vec![SignatureData {
                owner: SAMPLE_OWNER,
                data: vec![1; 32],
            }],
        }],
    );
    let log2 = EventLog::parse(&b.build().bytes).unwrap();
    let mut r = s2.refstate();
    r["kek"] = json!([key(&[1; 32])]);
    let f = failures(&r, &log2);
    // The empty KEK measured first and this one: measured twice.
    assert!(
        f.iter()
            .any(|f| f.message.contains("KEK is measured 2 times")),
        "{f:#?}"
    );

    // A policy listing dbx for a log without dbx.
    let mut b = LogBuilder::new(&BANKS);
    b.secure_boot(true);
    let log3 = EventLog::parse(&b.build().bytes).unwrap();
    let m = only(
        failures(&json!({"dbx": [key(&[0xdb; 32])]}), &log3),
        Check::KeyDatabase,
    );
    assert_eq!(
        m,
        "the policy lists dbx entries but the log has no dbx measurement in PCR 7"
    );

    // Without secure boot, empty lists accept anything (upstream).
    let mut nosb = SampleBoot::default();
    nosb.secure_boot = false;
    let mut r = nosb.refstate();
    r["pk"] = json!([]);
    r["db"] = json!([]);
    policy(&r).evaluate(&log_of(&nosb)).unwrap();

    // Signature types: a PK list of SHA-256 hashes.
    let mut b = LogBuilder::new(&BANKS);
    b.secure_boot(true).key_database(
        "PK",
        &[SignatureList {
            signature_type: Guid::CERT_SHA256,
            header: vec![],
            signatures: vec![SignatureData {
                owner: SAMPLE_OWNER,
                data: vec![1; 32],
            }],
        }],
    );
    let log4 = EventLog::parse(&b.build().bytes).unwrap();
    let m = only(
        failures(&json!({"pk": [key(&[1; 32])]}), &log4),
        Check::KeyDatabase,
    );
    assert!(
        m.contains(
            "has signature type c1c41626-504c-4092-aca9-41f936934328; the policy allows only X.509"
        ),
        "{m}"
    );

    // A malformed signature list.
    let mut b = LogBuilder::new(&BANKS);
    b.secure_boot(true).variable(
        7,
        EventType::EFI_VARIABLE_DRIVER_CONFIG,
        Guid::IMAGE_SECURITY_DATABASE,
        "db",
        &[0; 28],
    );
    let log5 = EventLog::parse(&b.build().bytes).unwrap();
    let m = only(failures(&json!({"db": []}), &log5), Check::KeyDatabase);
    assert!(
        m.contains(
            "is not a valid EFI_SIGNATURE_LIST sequence: EFI_SIGNATURE_LIST[0].SignatureListSize"
        ),
        "{m}"
    );
}

#[test]
fn scrtm_and_firmware() {
    let s = SampleBoot::default();
    let base = s.refstate();
    let mut other = SampleBoot::default();
    other.scrtm_version = "evil 1.0".into();
    let m = only(failures(&base, &log_of(&other)), Check::ScrtmAndBios);
    assert!(m.starts_with("S-CRTM version (event 1) is sha256:"), "{m}");
    assert!(
        m.ends_with(&format!(
            "the policy allows sha256:{}",
            sha(&super::super::build::utf16z("edk2-stable202302"))
        )),
        "{m}"
    );

    let mut other = SampleBoot::default();
    other.firmware[1] = b"patched DXE".to_vec();
    let m = only(failures(&base, &log_of(&other)), Check::ScrtmAndBios);
    assert!(
        m.starts_with(&format!(
            "platform firmware blob 1 (event 3) is sha256:{}",
            sha(b"patched DXE")
        )),
        "{m}"
    );

    let mut other = SampleBoot::default();
    other.firmware.push(b"extra".to_vec());
    let m = only(failures(&base, &log_of(&other)), Check::ScrtmAndBios);
    assert_eq!(
        m,
        "the log has 3 platform firmware blobs in PCR 0, the policy lists 2"
    );

    // Several allowed entries: matching any one is enough; matching none lists them all.
    let mut r = base.clone();
    let mut second = r["scrtm_and_bios"][0].clone();
    second["scrtm"] =
        json!({"sha256": format!("0x{}", sha(&super::super::build::utf16z("evil 1.0")))});
    r["scrtm_and_bios"] = json!([r["scrtm_and_bios"][0].clone(), second]);
    let mut evil = SampleBoot::default();
    evil.scrtm_version = "evil 1.0".into();
    policy(&r).evaluate(&log_of(&evil)).unwrap();
    let mut neither = SampleBoot::default();
    neither.scrtm_version = "3.0".into();
    let m = only(failures(&r, &log_of(&neither)), Check::ScrtmAndBios);
    assert!(
        m.starts_with(
            "the S-CRTM and firmware match none of the 2 scrtm_and_bios entries: [0] S-CRTM"
        ),
        "{m}"
    );
}

#[test]
fn mok_lists() {
    let s = SampleBoot::default();
    let mut other = SampleBoot::default();
    other.moklist = b"enrolled attacker key".to_vec();
    let m = only(failures(&s.refstate(), &log_of(&other)), Check::MokList);
    assert!(
        m.starts_with("MokList (event ")
            && m.contains(&format!(
                "is sha256:{}, which is not in the policy's mokdig",
                sha(b"enrolled attacker key")
            )),
        "{m}"
    );
}

#[test]
fn boot_applications() {
    let s = SampleBoot::default();
    let refstate = s.refstate();

    // A kernel the policy does not know.
    let mut evil = SampleBoot::default();
    evil.kernel = b"rootkit".to_vec();
    let f = failures(&refstate, &log_of(&evil));
    let apps: Vec<_> = f
        .iter()
        .filter(|f| f.check == Check::BootApplications)
        .collect();
    assert_eq!(apps.len(), 1, "{f:#?}");
    assert_eq!(
        apps[0].message,
        format!(
            "boot application sha256:{} (event {}, /boot/vmlinuz-6.1.0) is not allowed",
            sha(b"rootkit"),
            apps[0].event.unwrap()
        )
    );

    // An extra EFI application after the chain.
    let mut b = s.log(&BANKS);
    b.boot_application("\\EFI\\tools\\shell.efi", b"UEFI shell");
    let f = failures(&refstate, &EventLog::parse(&b.build().bytes).unwrap());
    let m = only(f, Check::BootApplications);
    assert!(
        m.starts_with(&format!(
            "boot application sha256:{} (event",
            sha(b"UEFI shell")
        )) && m.ends_with("\\EFI\\tools\\shell.efi) is not allowed"),
        "{m}"
    );

    // The kernel measured twice is fine (upstream's second tuple); three times is not.
    let mut b = s.log(&BANKS);
    b.boot_application("/boot/vmlinuz-6.1.0", &s.kernel);
    policy(&refstate)
        .evaluate(&EventLog::parse(&b.build().bytes).unwrap())
        .unwrap();
    b.boot_application("/boot/vmlinuz-6.1.0", &s.kernel);
    let m = only(
        failures(&refstate, &EventLog::parse(&b.build().bytes).unwrap()),
        Check::BootApplications,
    );
    assert!(
        m.contains("comes after the policy's boot chain ended"),
        "{m}"
    );

    // Swapped order: grub where shim should be.
    let mut swapped = SampleBoot::default();
    std::mem::swap(&mut swapped.shim, &mut swapped.grub);
    let f = failures(&refstate, &log_of(&swapped));
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(
        f[0].message
            .contains("but the policy expects the shim sha256:"),
        "{}",
        f[0].message
    );

    // Secure boot on but no kernel measured in PCR 4.
    let mut b = LogBuilder::new(&BANKS);
    b.secure_boot(true)
        .boot_application("a", &s.shim)
        .boot_application("b", &s.grub);
    let r = json!({"kernels": refstate["kernels"].clone()});
    let f = failures(&r, &EventLog::parse(&b.build().bytes).unwrap());
    let apps: Vec<_> = f
        .iter()
        .filter(|f| f.check == Check::BootApplications)
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(apps, vec!["the log has 2 boot applications in PCR 4, the policy expects shim, grub and the kernel (3, or 4 when the kernel is measured twice)"]);
}

#[test]
fn several_kernels_entries() {
    let s = SampleBoot::default();
    let mut newer = SampleBoot::default();
    newer.kernel = b"vmlinuz-6.2".to_vec();
    newer.initrd = b"initrd-6.2".to_vec();
    let mut r = s.refstate();
    let k2 = newer.refstate()["kernels"][0].clone();
    r["kernels"].as_array_mut().unwrap().push(k2);
    policy(&r).evaluate(&log_of(&s)).unwrap();
    policy(&r).evaluate(&log_of(&newer)).unwrap();
    // The 6.2 kernel with the old initrd matches neither entry completely.
    let mut mixed = newer.clone();
    mixed.initrd = s.initrd.clone();
    let m = only(failures(&r, &log_of(&mixed)), Check::Kernel);
    assert!(
        m.starts_with(
            "the boot chain matches none of the 2 kernels entries: [0] boot application sha256:"
        ) && m
            .contains("/boot/vmlinuz-6.1.0) is not allowed; [1] initrd \"/boot/initrd.img-6.1.0\""),
        "{m}"
    );
    // An unknown application is named directly.
    let mut evil = SampleBoot::default();
    evil.grub = b"evil grub".to_vec();
    let m = only(failures(&r, &log_of(&evil)), Check::BootApplications);
    assert!(m.contains("is not allowed by any kernels entry"), "{m}");
}

#[test]
fn initrd_cmdline_and_unknown_files() {
    let s = SampleBoot::default();
    let refstate = s.refstate();
    let mut other = SampleBoot::default();
    other.initrd = b"initrd with a backdoor".to_vec();
    let m = only(failures(&refstate, &log_of(&other)), Check::Initrd);
    assert!(
        m.starts_with("initrd \"/boot/initrd.img-6.1.0\" (event"),
        "{m}"
    );

    let mut other = SampleBoot::default();
    other.cmdline.push_str(" init=/bin/sh");
    let m = only(failures(&refstate, &log_of(&other)), Check::KernelCmdline);
    assert!(m.starts_with("kernel command line \"BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.1.0 root=UUID=1234 ro quiet init=/bin/sh\""), "{m}");
    assert!(
        m.contains("does not match the policy's kernel_cmdline"),
        "{m}"
    );

    // A regex rather than an escaped literal.
    let mut r = refstate.clone();
    r["kernels"][0]["kernel_cmdline"] =
        json!(r"BOOT_IMAGE=\S+ root=UUID=\d+ ro( quiet)?( init=/bin/sh)?");
    policy(&r).evaluate(&log_of(&other)).unwrap();

    // Without kernel_cmdline and initrd, those are not checked.
    let mut r = refstate.clone();
    r["kernels"][0]
        .as_object_mut()
        .unwrap()
        .remove("kernel_cmdline");
    r["kernels"][0]
        .as_object_mut()
        .unwrap()
        .remove("initrd_plain_sha256");
    let mut both = SampleBoot::default();
    both.cmdline = "single".into();
    both.initrd = b"other".to_vec();
    policy(&r).evaluate(&log_of(&both)).unwrap();

    // A file grub measured that is neither kernel, initrd nor grub's own.
    let mut b = s.log(&BANKS);
    b.ipl(9, "/boot/efi/evil.mod", b"module");
    let m = only(
        failures(&refstate, &EventLog::parse(&b.build().bytes).unwrap()),
        Check::Kernel,
    );
    assert!(
        m.contains("measures \"/boot/efi/evil.mod\", which is neither"),
        "{m}"
    );
    b.ipl(9, "/boot/grub2/grub.cfg", b"config");
    assert_eq!(
        failures(&refstate, &EventLog::parse(&b.build().bytes).unwrap()).len(),
        1
    );

    // Without secure boot grub's measurement of the kernel file counts.
    let mut nosb = SampleBoot::default();
    nosb.secure_boot = false;
    let r = nosb.refstate();
    let mut evil = nosb.clone();
    evil.kernel = b"rootkit".to_vec();
    let m = only(failures(&r, &log_of(&evil)), Check::Kernel);
    assert!(
        m.starts_with("kernel \"/boot/vmlinuz-6.1.0\" (event"),
        "{m}"
    );
}

#[test]
fn separators() {
    let mut b = LogBuilder::new(&BANKS);
    b.event(3, EventType::SEPARATOR, &[1, 0, 0, 0]);
    b.event(2, EventType::SEPARATOR, &[0xff; 4]);
    let log = EventLog::parse(&b.build().bytes).unwrap();
    let m = only(
        failures(&json!({"has_secureboot": false}), &log),
        Check::Separator,
    );
    assert_eq!(
        m,
        "event 1 (PCR 3, EV_SEPARATOR) has value 0x00000001, expected 0 or 0xffffffff"
    );
    let mut b = LogBuilder::new(&BANKS);
    b.measured(0, EventType::SEPARATOR, &[0; 4], b"something else");
    let log = EventLog::parse(&b.build().bytes).unwrap();
    assert!(only(
        failures(&json!({"has_secureboot": false}), &log),
        Check::EventData
    )
    .contains("does not hash to its sha1 digest"));
}
