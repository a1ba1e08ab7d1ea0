//! Firmware and boot chain: S-CRTM and firmware blobs (PCR 0), separators (PCRs 0–7), boot
//! applications (PCR 4), shim's MOK lists (PCR 14), grub's kernel, initrd and command line
//! (PCRs 8 and 9), as upstream's example policy checks them.

use super::super::body::EventBody;
use super::super::parse::{Event, EventLog};
use super::super::replay::data_mismatch;
use super::super::types::EventType;
use super::refstate::{Kernel, RefState, ScrtmAndBios, Sha256Hex};
use super::{Check, PolicyFailure};
use crate::tpm::alg::HashAlg;

pub(super) fn check(rs: &RefState, log: &EventLog, out: &mut Vec<PolicyFailure>) {
    separators(log, out);
    if let Some(allowed) = &rs.scrtm_and_bios {
        scrtm_and_bios(allowed, log, out);
    }
    mok(rs, log, out);
    if let Some(kernels) = &rs.kernels {
        boot_chain(rs.has_secureboot, kernels, log, out);
    }
}

fn of_type<'a>(log: &'a EventLog, pcr: u8, types: &[EventType]) -> Vec<&'a Event> {
    log.events()
        .iter()
        .filter(|e| e.pcr == pcr && types.contains(&e.event_type))
        .collect()
}

fn text(ev: &Event) -> &str {
    match &ev.body {
        EventBody::Text(t) => t,
        _ => "",
    }
}

/// Upstream's `EvSeperatorTest`: 0 or 0xFFFFFFFF, and the digest is the hash of that value.
fn separators(log: &EventLog, out: &mut Vec<PolicyFailure>) {
    for ev in log.events() {
        if ev.event_type != EventType::SEPARATOR || ev.pcr > 7 {
            continue;
        }
        if let Some(f) = data_mismatch(ev) {
            out.push(PolicyFailure::new(
                Check::EventData,
                Some(ev.index),
                f.to_string(),
            ));
        } else if let EventBody::Separator(v) = ev.body {
            if v != 0 && v != 0xffff_ffff {
                out.push(PolicyFailure::new(
                    Check::Separator,
                    Some(ev.index),
                    format!(
                        "{} has value 0x{v:08x}, expected 0 or 0xffffffff",
                        ev.describe()
                    ),
                ));
            }
        }
    }
}

fn scrtm_and_bios(allowed: &[ScrtmAndBios], log: &EventLog, out: &mut Vec<PolicyFailure>) {
    let crtms = of_type(log, 0, &[EventType::S_CRTM_VERSION]);
    let blobs = of_type(
        log,
        0,
        &[
            EventType::EFI_PLATFORM_FIRMWARE_BLOB,
            EventType::EFI_PLATFORM_FIRMWARE_BLOB2,
        ],
    );
    let mut reasons = Vec::new();
    for entry in allowed {
        match scrtm_entry(entry, &crtms, &blobs) {
            None => return,
            Some(r) => reasons.push(r),
        }
    }
    let message = match reasons.as_slice() {
        [] => "the policy's scrtm_and_bios list is empty, so no firmware is allowed".to_string(),
        [(_, one)] => one.clone(),
        many => format!(
            "the S-CRTM and firmware match none of the {} scrtm_and_bios entries: {}",
            many.len(),
            many.iter()
                .enumerate()
                .map(|(i, (_, r))| format!("[{i}] {r}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let event = reasons.first().and_then(|(e, _)| *e);
    out.push(PolicyFailure::new(Check::ScrtmAndBios, event, message));
}

/// Why the log does not match this entry (`None`: it does).
fn scrtm_entry(
    entry: &ScrtmAndBios,
    crtms: &[&Event],
    blobs: &[&Event],
) -> Option<(Option<usize>, String)> {
    match crtms {
        [ev] if !entry.scrtm.matches(ev) => {
            return Some((
                Some(ev.index),
                format!(
                    "S-CRTM version (event {}) is {}, the policy allows {}",
                    ev.index,
                    entry.scrtm.show_event(ev),
                    entry.scrtm
                ),
            ))
        }
        [_] => {}
        _ => {
            return Some((
                None,
                format!(
                "the log has {} EV_S_CRTM_VERSION events in PCR 0, the policy expects exactly 1",
                crtms.len()
            ),
            ))
        }
    }
    if blobs.len() != entry.platform_firmware.len() {
        return Some((
            None,
            format!(
                "the log has {} platform firmware blobs in PCR 0, the policy lists {}",
                blobs.len(),
                entry.platform_firmware.len()
            ),
        ));
    }
    blobs
        .iter()
        .zip(&entry.platform_firmware)
        .enumerate()
        .find(|(_, (ev, want))| !want.matches(ev))
        .map(|(i, (ev, want))| {
            (
                Some(ev.index),
                format!(
                    "platform firmware blob {i} (event {}) is {}, the policy allows {want}",
                    ev.index,
                    want.show_event(ev)
                ),
            )
        })
}

/// PCR 14 EV_IPL "MokList"/"MokListX" digests against mokdig/mokxdig.
fn mok(rs: &RefState, log: &EventLog, out: &mut Vec<PolicyFailure>) {
    for ev in of_type(log, 14, &[EventType::IPL]) {
        let (key, allowed) = match text(ev) {
            "MokList" => ("mokdig", &rs.mokdig),
            "MokListX" => ("mokxdig", &rs.mokxdig),
            _ => continue,
        };
        let Some(allowed) = allowed else { continue };
        if !allowed.iter().any(|d| d.matches(ev)) {
            let shown = allowed
                .first()
                .map_or_else(|| "nothing".to_string(), |d| d.show_event(ev));
            out.push(PolicyFailure::new(
                Check::MokList,
                Some(ev.index),
                format!(
                    "{} (event {}) is {shown}, which is not in the policy's {key}",
                    text(ev),
                    ev.index
                ),
            ));
        }
    }
}

/// The events of a boot chain, classified as upstream's dispatcher does.
struct Chain<'a> {
    apps: Vec<&'a Event>,
    vmlinuz: Vec<&'a Event>,
    initrd: Vec<&'a Event>,
    cmdline: Vec<&'a Event>,
}

fn classify<'a>(log: &'a EventLog, out: &mut Vec<PolicyFailure>) -> Chain<'a> {
    let mut c = Chain {
        apps: of_type(log, 4, &[EventType::EFI_BOOT_SERVICES_APPLICATION]),
        vmlinuz: Vec::new(),
        initrd: Vec::new(),
        cmdline: Vec::new(),
    };
    for ev in of_type(log, 9, &[EventType::IPL]) {
        let t = text(ev);
        if t.contains("/loader/entries") || t.contains("/grub") {
            continue;
        } else if t.contains("/vmlinuz") {
            c.vmlinuz.push(ev);
        } else if t.contains("/initrd") || t.contains("/initramfs") {
            c.initrd.push(ev);
        } else {
            out.push(PolicyFailure::new(
                Check::Kernel,
                Some(ev.index),
                format!(
                    "{} measures {t:?}, which is neither a grub file, a loader entry, a kernel \
                     (/vmlinuz) nor an initrd",
                    ev.describe()
                ),
            ));
        }
    }
    for ev in of_type(log, 8, &[EventType::IPL]) {
        let t = text(ev);
        if t.starts_with("kernel_cmdline: ") {
            c.cmdline.push(ev);
        } else if !t.starts_with("grub_cmd: ") {
            out.push(PolicyFailure::new(
                Check::KernelCmdline,
                Some(ev.index),
                format!(
                    "{} measures {t:?}, which is neither a grub command nor a kernel command line",
                    ev.describe()
                ),
            ));
        }
    }
    c
}

fn sha256(ev: &Event) -> Option<[u8; 32]> {
    ev.digest(HashAlg::Sha256)
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
}

fn app_name(ev: &Event) -> String {
    let path = match &ev.body {
        EventBody::ImageLoad(i) => i.file_path(),
        _ => None,
    };
    match path {
        Some(p) => format!("event {}, {p}", ev.index),
        None => format!("event {}", ev.index),
    }
}

fn show(d: Option<[u8; 32]>) -> String {
    d.map_or_else(
        || "missing (no sha256 digest)".to_string(),
        |d| Sha256Hex(d).to_string(),
    )
}

type Reason = (Check, Option<usize>, String);

/// Why the chain does not match `k` (empty: it does).
fn kernel_reasons(sb: bool, k: &Kernel, c: &Chain<'_>) -> Vec<Reason> {
    let mut r = Vec::new();
    let mut expected = vec![
        ("shim", k.shim_authcode_sha256),
        ("grub", k.grub_authcode_sha256),
    ];
    if sb {
        if let Some(kern) = k.kernel_authcode_sha256 {
            expected.push(("kernel", kern));
        }
    }
    for (i, ev) in c.apps.iter().enumerate() {
        let d = sha256(ev);
        // With secure boot the kernel may be measured twice (upstream's second tuple).
        let slot = expected
            .get(i)
            .or_else(|| if sb && i == 3 { expected.get(2) } else { None });
        let known = expected.iter().any(|(_, w)| Some(w.0) == d);
        match slot {
            Some((_, w)) if Some(w.0) == d => {}
            _ if !known => r.push((
                Check::BootApplications,
                Some(ev.index),
                format!(
                    "boot application {} ({}) is not allowed",
                    show(d),
                    app_name(ev)
                ),
            )),
            Some((role, w)) => r.push((
                Check::BootApplications,
                Some(ev.index),
                format!(
                    "boot application {i} ({}) is {}, but the policy expects the {role} {w} there",
                    app_name(ev),
                    show(d)
                ),
            )),
            None => r.push((
                Check::BootApplications,
                Some(ev.index),
                format!(
                    "boot application {i} ({}) comes after the policy's boot chain ended",
                    app_name(ev)
                ),
            )),
        }
    }
    let n = c.apps.len();
    let len_ok = if sb { n == 3 || n == 4 } else { n == 2 };
    if !len_ok && r.is_empty() {
        r.push((
            Check::BootApplications,
            None,
            format!(
                "the log has {n} boot applications in PCR 4, the policy expects {}",
                if sb {
                    "shim, grub and the kernel (3, or 4 when the kernel is measured twice)"
                } else {
                    "shim and grub (2)"
                }
            ),
        ));
    }
    let files = [
        (Check::Initrd, "initrd", &c.initrd, k.initrd_plain_sha256),
        (
            Check::Kernel,
            "kernel",
            &c.vmlinuz,
            if sb { None } else { k.vmlinuz_plain_sha256 },
        ),
    ];
    for (check, what, evs, want) in files {
        let Some(want) = want else { continue };
        match evs.as_slice() {
            [ev] if sha256(ev) != Some(want.0) => r.push((
                check,
                Some(ev.index),
                format!(
                    "{what} {:?} (event {}) is {}, the policy allows {want}",
                    text(ev),
                    ev.index,
                    show(sha256(ev))
                ),
            )),
            [_] => {}
            _ => r.push((
                check,
                None,
                format!(
                    "the log has {} {what} measurements in PCR 9, the policy expects exactly 1",
                    evs.len()
                ),
            )),
        }
    }
    if let Some(re) = &k.kernel_cmdline {
        match c.cmdline.as_slice() {
            [ev] if !re.matches(text(ev)) => r.push((
                Check::KernelCmdline,
                Some(ev.index),
                format!(
                    "kernel command line {:?} (event {}) does not match the policy's kernel_cmdline {:?}",
                    text(ev).trim_start_matches("kernel_cmdline: "),
                    ev.index,
                    re.source
                ),
            )),
            [_] => {}
            many => r.push((
                Check::KernelCmdline,
                None,
                format!("the log has {} kernel_cmdline measurements in PCR 8, the policy expects exactly 1", many.len()),
            )),
        }
    }
    r
}

fn boot_chain(sb: bool, kernels: &[Kernel], log: &EventLog, out: &mut Vec<PolicyFailure>) {
    let chain = classify(log, out);
    let mut per_entry = Vec::with_capacity(kernels.len());
    for k in kernels {
        let reasons = kernel_reasons(sb, k, &chain);
        if reasons.is_empty() {
            return;
        }
        per_entry.push(reasons);
    }
    let push = |out: &mut Vec<PolicyFailure>, (check, ev, m): Reason| {
        out.push(PolicyFailure::new(check, ev, m))
    };
    match per_entry.len() {
        0 => out.push(PolicyFailure::new(
            Check::Kernel,
            None,
            "the policy's kernels list is empty, so no boot chain is allowed",
        )),
        1 => per_entry.into_iter().flatten().for_each(|r| push(out, r)),
        n => {
            // Name the boot applications no entry knows; otherwise summarise each entry.
            let mut unknown = false;
            for ev in &chain.apps {
                let d = sha256(ev);
                let known = kernels.iter().any(|k| {
                    [
                        Some(k.shim_authcode_sha256),
                        Some(k.grub_authcode_sha256),
                        k.kernel_authcode_sha256,
                    ]
                    .into_iter()
                    .flatten()
                    .any(|w| Some(w.0) == d)
                });
                if !known {
                    unknown = true;
                    push(
                        out,
                        (
                            Check::BootApplications,
                            Some(ev.index),
                            format!(
                                "boot application {} ({}) is not allowed by any kernels entry",
                                show(d),
                                app_name(ev)
                            ),
                        ),
                    );
                }
            }
            if !unknown {
                let summary: Vec<String> = per_entry
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| r.first().map(|(_, _, m)| format!("[{i}] {m}")))
                    .collect();
                out.push(PolicyFailure::new(
                    Check::Kernel,
                    None,
                    format!(
                        "the boot chain matches none of the {n} kernels entries: {}",
                        summary.join("; ")
                    ),
                ));
            }
        }
    }
}
