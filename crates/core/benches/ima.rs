//! IMA verification cost and memory per agent: `cargo bench -p vouch-core --bench ima`
//! (ci/bench-ima.sh adds upstream keylime's figures on the same log).
//!
//! A 10,000-file ima-ng log (plus `boot_aggregate`) and a runtime policy allowing every file,
//! plain and with 100 exclude regexes that match none of them (so every entry pays for the
//! regex and the digest lookup). Prints one markdown table: one-shot and incremental replay
//! against the final PCR 10 (sha1 and sha256 banks), parsing and policy evaluation per entry,
//! and the memory the verifier keeps per agent (the serialized `ImaReplayState` and the heap
//! it holds, counted by a global allocator in this binary) against the target of ≤ 256 KB.
//! No assertion: figures are read, not gated. `VOUCH_BENCH_MS` sets the time per figure.
//!
//! Arguments (after `--`):
//! - `--emit DIR`: write the fixtures (`log.txt`, `policy.json`, `policy-excludes.json`,
//!   `fixture.json` with the PCR 10 values) for timing upstream on the same log, and exit;
//! - `--upstream FILE`: upstream's seconds per call, as written by ci/bench-ima.sh, added to
//!   the table with the ratio upstream ÷ Vouch.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// tests and benches fail loudly
// The counting allocator below must implement `GlobalAlloc`, an unsafe trait; it only
// forwards to the system allocator.
#![allow(unsafe_code)]

mod common;
use common::measure;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vouch_core::ima::testlog::LogWriter;
use vouch_core::ima::{
    parse_log, replay, BootIdentity, CheckOptions, Checker, CompiledPolicy, ImaReplayState,
    LogImport, PolicyBuilder, ReplayInput,
};
use vouch_core::tpm::HashAlg;

/// Files in the log (the log has one more line: `boot_aggregate`).
const FILES: usize = 10_000;
/// New entries per attestation in the incremental case.
const NEW: usize = 10;
/// Exclude regexes in the second policy.
const EXCLUDES: usize = 100;
/// The per-agent target (upstream reports ~60 MB per agent with IMA).
const TARGET_BYTES: usize = 256 * 1024;

// --- counting allocator -------------------------------------------------------------------

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn grew(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes `make` leaves allocated in what it returns, and the peak above the starting
/// point while it ran.
fn heap_of<T>(make: impl FnOnce() -> T) -> (T, usize, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let value = make();
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    (value, held, peak)
}

// --- timing -------------------------------------------------------------------------------

// --- fixtures -----------------------------------------------------------------------------

/// A path like a distribution's, distinct per file.
fn file_path(i: usize) -> String {
    match i % 5 {
        0 => format!("/usr/bin/tool-{i:05}"),
        1 => format!("/usr/lib/x86_64-linux-gnu/libbench{i:05}.so.1"),
        2 => format!(
            "/usr/lib/python3.11/site-packages/pkg{}/mod_{i:05}.py",
            i / 100
        ),
        3 => format!("/usr/sbin/daemon-{i:05}"),
        _ => format!("/etc/bench.d/conf-{i:05}.conf"),
    }
}

/// Excludes of the kinds real policies carry, none matching `file_path`.
fn exclude(i: usize) -> String {
    match i % 4 {
        0 => format!("/opt/vendor{i}/.*"),
        1 => format!("/var/cache/app{i}/.*"),
        2 => format!(r".*\.cache{i}$"),
        _ => format!("/home/[^/]+/build{i}/.*"),
    }
}

struct Fixture {
    log: LogWriter,
    text: String,
    policy: CompiledPolicy,
    policy_excl: CompiledPolicy,
    policy_json: String,
    policy_excl_json: String,
}

fn fixture() -> Fixture {
    let mut log = LogWriter::new();
    log.boot_aggregate(&HashAlg::Sha256.digest(b"pcrs 0-9"));
    for i in 0..FILES {
        log.file(&file_path(i), format!("content of file {i}").as_bytes());
    }
    let text = log.text();
    let mut builder = PolicyBuilder::new();
    builder
        .add_ima_log(&text, LogImport::default())
        .expect("policy from log");
    let plain = builder.build(Some("bench".into())).expect("policy");
    let mut builder = PolicyBuilder::from_base(plain.clone()).expect("base policy");
    for i in 0..EXCLUDES {
        builder.add_exclude(&exclude(i)).expect("exclude");
    }
    let with_excludes = builder.build(Some("bench".into())).expect("policy");
    let policy_json = plain.to_json();
    let policy_excl_json = with_excludes.to_json();
    Fixture {
        policy: CompiledPolicy::from_json(&policy_json).expect("compile"),
        policy_excl: CompiledPolicy::from_json(&policy_excl_json).expect("compile"),
        log,
        text,
        policy_json,
        policy_excl_json,
    }
}

const BOOT: BootIdentity = BootIdentity {
    reset_count: 1,
    restart_count: 0,
};

fn input<'a>(served_from: usize, log: &'a str, bank: HashAlg, pcr: &'a [u8]) -> ReplayInput<'a> {
    ReplayInput {
        boot: BOOT,
        served_from: served_from as u64,
        log,
        bank,
        quoted_pcr10: pcr,
        boot_aggregates: &[],
        options: CheckOptions::default(),
    }
}

/// The state a verifier keeps after accepting the first `n` entries.
fn state_after(fx: &Fixture, n: usize, bank: HashAlg, policy: &CompiledPolicy) -> ImaReplayState {
    let pcr = fx.log.pcr10_after(n, bank);
    let text = fx.log.text_range(0, n);
    let out = replay(
        &ImaReplayState::new(BOOT),
        &input(0, &text, bank, &pcr),
        policy,
    )
    .expect("replay prefix");
    assert_eq!(out.state.next_entry(), n as u64);
    out.state
}

fn emit(fx: &Fixture, dir: &Path) {
    std::fs::create_dir_all(dir).expect("emit dir");
    let total = fx.log.len();
    let split = total - NEW;
    let pcrs = |n: usize| {
        json!({
            "sha1": hex::encode(fx.log.pcr10_after(n, HashAlg::Sha1)),
            "sha256": hex::encode(fx.log.pcr10_after(n, HashAlg::Sha256)),
        })
    };
    let meta = json!({
        "entries": total,
        "split": split,
        "pcr10": pcrs(total),
        "pcr10_split": pcrs(split),
    });
    std::fs::write(dir.join("log.txt"), &fx.text).expect("write log");
    std::fs::write(dir.join("policy.json"), &fx.policy_json).expect("write policy");
    std::fs::write(dir.join("policy-excludes.json"), &fx.policy_excl_json).expect("write policy");
    std::fs::write(dir.join("fixture.json"), meta.to_string()).expect("write fixture");
    println!("fixtures for {total} entries written to {}", dir.display());
}

// --- the table ----------------------------------------------------------------------------

struct Row {
    what: String,
    total: String,
    unit: String,
    /// Upstream's seconds per call (for timed rows that have an upstream counterpart).
    upstream: Option<f64>,
    /// Vouch's seconds per call, for the ratio.
    ours: Option<f64>,
    per: usize,
    /// For memory rows: upstream's bytes for the same thing (tracemalloc, same run).
    bytes: Option<(usize, Option<usize>)>,
}

impl Row {
    fn timed(what: &str, mean: Duration, per: usize, upstream: Option<f64>) -> Self {
        let s = mean.as_secs_f64();
        Self {
            what: what.into(),
            total: if s >= 1e-3 {
                format!("{:.2} ms", s * 1e3)
            } else {
                format!("{:.1} µs", s * 1e6)
            },
            unit: format!("{:.2} µs", s * 1e6 / per as f64),
            upstream,
            ours: Some(s),
            per,
            bytes: None,
        }
    }

    /// A memory row; `upstream`: upstream's bytes for the same thing, when measured.
    fn bytes(what: &str, n: usize, upstream: Option<usize>) -> Self {
        Self {
            what: what.into(),
            total: human_bytes(n),
            unit: "—".into(),
            upstream: None,
            ours: None,
            per: 1,
            bytes: Some((n, upstream)),
        }
    }
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let budget = common::budget();

    let fx = fixture();
    if let Some(dir) = arg("--emit") {
        emit(&fx, &dir);
        return;
    }
    let upstream: Value = arg("--upstream")
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("read upstream figures");
            serde_json::from_str(&text).expect("upstream figures are JSON")
        })
        .unwrap_or(Value::Null);
    let up = |key: &str| upstream.get(key).and_then(Value::as_f64);
    let up_bytes = |key: &str| {
        upstream
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
    };

    let total = fx.log.len();
    let split = total - NEW;
    let new_text = fx.log.text_from(split);
    let mut rows = Vec::new();
    let policies = [
        ("", &fx.policy, ""),
        (", 100 excludes", &fx.policy_excl, "_excl"),
    ];

    // (a) one-shot replay of the whole log.
    for (bank, name) in [(HashAlg::Sha1, "sha1"), (HashAlg::Sha256, "sha256")] {
        let pcr = fx.log.pcr10(bank);
        for (label, policy, key) in policies {
            if bank == HashAlg::Sha1 && !key.is_empty() {
                continue;
            }
            let fresh = ImaReplayState::new(BOOT);
            let inp = input(0, &fx.text, bank, &pcr);
            let mean = measure(budget, || {
                let out = replay(&fresh, black_box(&inp), policy).expect("replay");
                assert_eq!(out.certified, total as u64);
            });
            rows.push(Row::timed(
                &format!("(a) one-shot replay, {total} entries, {name} bank{label}"),
                mean,
                total,
                up(&format!("oneshot_{name}{key}")),
            ));
        }
    }

    // (b) incremental replay: NEW entries on top of the state after `split`.
    for (bank, name) in [(HashAlg::Sha1, "sha1"), (HashAlg::Sha256, "sha256")] {
        let pcr = fx.log.pcr10(bank);
        for (label, policy, key) in policies {
            if bank == HashAlg::Sha1 && !key.is_empty() {
                continue;
            }
            let state = state_after(&fx, split, bank, policy);
            let inp = input(split, &new_text, bank, &pcr);
            let mean = measure(budget, || {
                let out = replay(&state, black_box(&inp), policy).expect("replay");
                assert_eq!(out.state.next_entry(), total as u64);
            });
            rows.push(Row::timed(
                &format!("(b) incremental: {NEW} new entries after {split}, {name} bank{label}"),
                mean,
                NEW,
                up(&format!("incr_{name}{key}")),
            ));
        }
    }

    // (c) parsing only.
    let mean = measure(budget, || {
        let entries = parse_log(black_box(&fx.text), 0).expect("parse");
        assert_eq!(entries.len(), total);
    });
    rows.push(Row::timed(
        &format!("(c) parse only, {total} lines"),
        mean,
        total,
        None,
    ));

    // (d) policy evaluation only (template data computed beforehand; includes the
    // template-hash check, which is part of the verdict).
    let entries = parse_log(&fx.text, 0).expect("parse");
    let data: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| e.entry.event.template_data())
        .collect();
    for (label, policy, _) in policies {
        let mean = measure(budget, || {
            let mut checker = Checker::new(policy, Default::default(), &[], Default::default());
            for (le, d) in entries.iter().zip(&data) {
                checker.check(le.index, &le.entry, d).expect("allowed");
            }
        });
        rows.push(Row::timed(
            &format!("(d) policy evaluation, {total} entries{label}"),
            mean,
            total,
            None,
        ));
    }

    // Memory: what the verifier keeps per agent, and what is shared per policy.
    let mut per_agent = 0;
    for (bank, name) in [(HashAlg::Sha1, "sha1"), (HashAlg::Sha256, "sha256")] {
        let state = state_after(&fx, total, bank, &fx.policy);
        let stored = serde_json::to_string(&state).expect("serialize state");
        let (copy, held, _) = heap_of(|| state.clone());
        drop(copy);
        per_agent = per_agent.max(stored.len() + held);
        rows.push(Row::bytes(
            &format!("per agent: ImaReplayState as stored (serde_json), {name} bank"),
            stored.len(),
            None,
        ));
        rows.push(Row::bytes(
            &format!(
                "per agent: heap held by one ImaReplayState, {name} bank \
                 (upstream: its AgentAttestState after the same log)"
            ),
            held,
            up_bytes(&format!("mem_state_{name}")),
        ));
    }
    for (label, json) in [
        ("", &fx.policy_json),
        (", 100 excludes", &fx.policy_excl_json),
    ] {
        let (policy, held, _) = heap_of(|| CompiledPolicy::from_json(json).expect("compile"));
        drop(policy);
        rows.push(Row::bytes(
            &format!(
                "per policy (shared): heap held by CompiledPolicy, {total} digests{label} \
                 (upstream: the policy as json.loads holds it, per agent and quote)"
            ),
            held,
            up_bytes(&format!(
                "mem_policy{}",
                if label.is_empty() { "" } else { "_excl" }
            )),
        ));
    }
    let pcr = fx.log.pcr10(HashAlg::Sha256);
    let fresh = ImaReplayState::new(BOOT);
    let (out, _, peak) = heap_of(|| {
        replay(
            &fresh,
            &input(0, &fx.text, HashAlg::Sha256, &pcr),
            &fx.policy,
        )
        .expect("replay")
    });
    drop(out);
    rows.push(Row::bytes(
        &format!("transient: peak heap of one one-shot replay, {total} entries (freed after)"),
        peak,
        up_bytes("mem_peak_oneshot_sha256"),
    ));
    let state = state_after(&fx, split, HashAlg::Sha256, &fx.policy);
    let (out, _, peak) = heap_of(|| {
        replay(
            &state,
            &input(split, &new_text, HashAlg::Sha256, &pcr),
            &fx.policy,
        )
        .expect("replay")
    });
    drop(out);
    rows.push(Row::bytes(
        &format!("transient: peak heap of one incremental replay, {NEW} entries (freed after)"),
        peak,
        up_bytes("mem_peak_incr_sha256"),
    ));

    let version = upstream
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or("(not run)");
    println!();
    println!(
        "| measurement | Vouch | Vouch per entry | upstream keylime {version} (per entry; memory: total) | upstream ÷ Vouch |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        let (up_cell, ratio) = match (r.bytes, r.upstream, r.ours) {
            (Some((n, Some(u))), _, _) => (
                human_bytes(u),
                format!("{:.1}×", u as f64 / n.max(1) as f64),
            ),
            (Some(_), _, _) => (String::new(), String::new()),
            (None, Some(u), Some(o)) => (
                format!("{:.2} µs", u * 1e6 / r.per as f64),
                format!("{:.1}×", u / o),
            ),
            (None, None, Some(_)) => ("—".into(), "—".into()),
            _ => (String::new(), String::new()),
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.total, r.unit, up_cell, ratio
        );
    }
    println!(
        "| **target: IMA state per agent ≤ 256 KB** (upstream reports ~60 MB per agent with IMA) | {} | | | {} |",
        human_bytes(per_agent),
        if per_agent <= TARGET_BYTES { "met" } else { "NOT met" }
    );
}
