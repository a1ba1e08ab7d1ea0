//! PCR 7: the SecureBoot variable and the key databases (PK, KEK, db, dbx, vendor_db), as
//! upstream's example policy checks them (`Example.refstate_to_test`, `tests.KeySubset`,
//! `tests.KeySubsetMulti`, `tests.KeySuperset`).

use super::super::body::{EventBody, UefiVariable};
use super::super::parse::{Event, EventLog};
use super::super::replay::data_mismatch;
use super::super::siglist::{signature_lists, SignatureData};
use super::super::types::{EventType, Guid};
use super::refstate::{KeyRef, RefState};
use super::{Check, PolicyFailure};
use std::collections::BTreeSet;

/// How a key database is held against its refstate list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Every key in the variable must be listed; only these signature types may appear.
    Subset(&'static [Guid]),
    /// Every listed key must be in the variable.
    Superset,
}

const X509: &[Guid] = &[Guid::CERT_X509];
const X509_OR_SHA256: &[Guid] = &[Guid::CERT_X509, Guid::CERT_SHA256];

/// PCR 7 EV_EFI_VARIABLE_DRIVER_CONFIG events for `guid`/`name`, with the variable.
fn variables<'a>(log: &'a EventLog, guid: Guid, name: &str) -> Vec<(&'a Event, &'a UefiVariable)> {
    log.events()
        .iter()
        .filter(|e| e.pcr == 7 && e.event_type == EventType::EFI_VARIABLE_DRIVER_CONFIG)
        .filter_map(|e| match &e.body {
            EventBody::Variable(v) if v.guid == guid && v.name == name => Some((e, v)),
            _ => None,
        })
        .collect()
}

/// The single trustworthy measurement of a variable, or why there is none.
fn single<'a>(
    log: &'a EventLog,
    guid: Guid,
    name: &str,
    out: &mut Vec<PolicyFailure>,
) -> Option<(&'a Event, &'a UefiVariable)> {
    let found = variables(log, guid, name);
    if found.len() > 1 {
        let idx: Vec<String> = found.iter().map(|(e, _)| e.index.to_string()).collect();
        out.push(PolicyFailure::new(
            if name == "SecureBoot" {
                Check::SecureBoot
            } else {
                Check::KeyDatabase
            },
            found.get(1).map(|(e, _)| e.index),
            format!(
                "{name} is measured {} times in PCR 7 (events {}); the policy expects it once",
                found.len(),
                idx.join(", ")
            ),
        ));
        return None;
    }
    let (ev, var) = found.into_iter().next()?;
    if let Some(f) = data_mismatch(ev) {
        out.push(PolicyFailure::new(
            Check::EventData,
            Some(ev.index),
            f.to_string(),
        ));
        return None;
    }
    Some((ev, var))
}

pub(super) fn check(rs: &RefState, log: &EventLog, out: &mut Vec<PolicyFailure>) {
    secure_boot(rs, log, out);
    let dbs: [(&str, Guid, &Option<Vec<KeyRef>>, Rule); 5] = [
        ("PK", Guid::EFI_GLOBAL_VARIABLE, &rs.pk, Rule::Subset(X509)),
        (
            "KEK",
            Guid::EFI_GLOBAL_VARIABLE,
            &rs.kek,
            Rule::Subset(X509),
        ),
        (
            "db",
            Guid::IMAGE_SECURITY_DATABASE,
            &rs.db,
            Rule::Subset(X509_OR_SHA256),
        ),
        (
            "vendor_db",
            Guid::IMAGE_SECURITY_DATABASE,
            &rs.vendor_db,
            Rule::Subset(X509_OR_SHA256),
        ),
        (
            "dbx",
            Guid::IMAGE_SECURITY_DATABASE,
            &rs.dbx,
            Rule::Superset,
        ),
    ];
    for (name, guid, keys, rule) in dbs {
        let Some(keys) = keys else { continue };
        // Upstream: without secure boot, an empty list means "anything".
        if !rs.has_secureboot && keys.is_empty() {
            continue;
        }
        let Some((ev, var)) = single(log, guid, name, out) else {
            if rs.has_secureboot && name != "vendor_db" && variables(log, guid, name).is_empty() {
                out.push(PolicyFailure::new(
                    Check::KeyDatabase,
                    None,
                    format!(
                        "the policy lists {name} entries but the log has no {name} measurement in \
                         PCR 7"
                    ),
                ));
            }
            continue;
        };
        key_database(name, ev, var, keys, rule, out);
    }
}

fn secure_boot(rs: &RefState, log: &EventLog, out: &mut Vec<PolicyFailure>) {
    let fail = |ev: Option<usize>, m: String| PolicyFailure::new(Check::SecureBoot, ev, m);
    let Some((ev, var)) = single(log, Guid::EFI_GLOBAL_VARIABLE, "SecureBoot", out) else {
        if rs.has_secureboot && variables(log, Guid::EFI_GLOBAL_VARIABLE, "SecureBoot").is_empty() {
            out.push(fail(
                None,
                "the log has no SecureBoot measurement in PCR 7, so secure boot cannot be shown \
                 to be enabled, but the policy requires it"
                    .into(),
            ));
        }
        return;
    };
    let value = match var.data.as_slice() {
        [] => 0,
        [v] => *v,
        d => {
            out.push(fail(
                Some(ev.index),
                format!(
                    "SecureBoot value is {} bytes (event {}), a UEFI boolean is 1",
                    d.len(),
                    ev.index
                ),
            ));
            return;
        }
    };
    match (value, rs.has_secureboot) {
        (1, true) | (0, false) => {}
        (0, true) => out.push(fail(
            Some(ev.index),
            format!(
                "SecureBoot is 0 (disabled) (event {}) but the policy requires it",
                ev.index
            ),
        )),
        (1, false) => out.push(fail(
            Some(ev.index),
            format!(
                "SecureBoot is 1 (enabled) (event {}) but the policy has has_secureboot: false, \
                 which expects it disabled (as upstream)",
                ev.index
            ),
        )),
        (v, _) => out.push(fail(
            Some(ev.index),
            format!(
                "SecureBoot is {v} (event {}), neither 1 (enabled) nor 0 (disabled)",
                ev.index
            ),
        )),
    }
}

fn key_database(
    name: &str,
    ev: &Event,
    var: &UefiVariable,
    keys: &[KeyRef],
    rule: Rule,
    out: &mut Vec<PolicyFailure>,
) {
    let fail = |m: String| PolicyFailure::new(Check::KeyDatabase, Some(ev.index), m);
    // The variable data sits at the end of the event data.
    let base = ev.data_offset + ev.data.len() - var.data.len();
    let lists = match signature_lists(&var.data, base) {
        Ok(l) => l,
        Err(e) => {
            out.push(fail(format!(
                "{name} (event {}) is not a valid EFI_SIGNATURE_LIST sequence: {e}",
                ev.index
            )));
            return;
        }
    };
    let allowed: BTreeSet<(_, &[u8])> = keys.iter().map(|k| (k.owner, k.data.as_slice())).collect();
    match rule {
        Rule::Subset(types) => {
            for (i, l) in lists.iter().enumerate() {
                if !types.contains(&l.signature_type) {
                    out.push(fail(format!(
                        "{name} (event {}) list {i} has signature type {}; the policy allows only {}",
                        ev.index,
                        l.signature_type,
                        if types.len() == 1 { "X.509 certificates" } else { "X.509 certificates and SHA-256 hashes" }
                    )));
                    continue;
                }
                for s in &l.signatures {
                    if !allowed.contains(&(s.owner, s.data.as_slice())) {
                        out.push(fail(format!(
                            "{name} (event {}) contains a key the policy does not list: {}",
                            ev.index,
                            show(s)
                        )));
                    }
                }
            }
        }
        Rule::Superset => {
            let present: BTreeSet<(_, &[u8])> = lists
                .iter()
                .flat_map(|l| &l.signatures)
                .map(|s| (s.owner, s.data.as_slice()))
                .collect();
            for k in keys {
                if !present.contains(&(k.owner, k.data.as_slice())) {
                    out.push(fail(format!(
                        "{name} (event {}) lacks the entry {k} that the policy requires",
                        ev.index
                    )));
                }
            }
        }
    }
}

fn show(s: &SignatureData) -> String {
    const MAX: usize = 48;
    let shown = &s.data[..s.data.len().min(MAX)];
    format!(
        "owner {} data 0x{}{} ({} bytes)",
        s.owner,
        hex::encode(shown),
        if s.data.len() > MAX { "…" } else { "" },
        s.data.len()
    )
}
