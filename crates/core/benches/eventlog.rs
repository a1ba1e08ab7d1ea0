//! Measured-boot cost per quote: `cargo bench -p vouch-core --bench eventlog`.
//!
//! What the verifier does with every quote of an agent that has a measured-boot policy
//! (`tenant-stack/verifier/src/mb_check.rs`), timed step by step on the sample shim + grub +
//! Linux boot (`vouch_core::eventlog::sample`) with sha1 and sha256 banks, as firmware logs
//! them: decode and parse the base64 log the agent sent, replay it against the quoted PCRs,
//! load the stored refstate (the verifier keeps no compiled refstate between polls), evaluate
//! it. No assertion: figures are read, not gated. `VOUCH_BENCH_MS` sets the time per figure.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benches fail loudly

mod common;
use common::measure;
use std::hint::black_box;
use std::time::Duration;
use vouch_core::eventlog::sample::SampleBoot;
use vouch_core::eventlog::{replay, EventLog, MbPolicy};
use vouch_core::tpm::HashAlg;

fn main() {
    let budget = common::budget();
    let boot = SampleBoot::default();
    let built = boot.log(&[HashAlg::Sha1, HashAlg::Sha256]).build();
    let b64 = built.base64();
    let refstate = boot.refstate().to_string();
    let policy = MbPolicy::load("example", Some(&refstate)).expect("the sample refstate loads");
    let log = EventLog::from_base64(&b64).expect("the sample log parses");
    let pcrs = policy.pcrs_to_replay();
    replay::verify(&log, &built.pcrs, pcrs.iter().copied()).expect("the sample log replays");
    policy
        .evaluate(&log)
        .expect("the sample boot satisfies its refstate");

    let mut rows: Vec<(String, Duration)> = Vec::new();
    rows.push((
        "decode + parse the log (base64 from the agent)".into(),
        measure(budget, || {
            black_box(EventLog::from_base64(black_box(&b64)).unwrap());
        }),
    ));
    rows.push((
        format!("replay against the quoted PCRs {pcrs:?} and check data-bound events"),
        measure(budget, || {
            black_box(replay::verify(&log, &built.pcrs, pcrs.iter().copied()).unwrap());
        }),
    ));
    rows.push((
        "load the refstate (JSON, digests, GUIDs, the cmdline regex)".into(),
        measure(budget, || {
            black_box(MbPolicy::load("example", Some(black_box(&refstate))).unwrap());
        }),
    ));
    rows.push((
        "evaluate the refstate".into(),
        measure(budget, || {
            policy.evaluate(black_box(&log)).unwrap();
        }),
    ));
    let total = measure(budget, || {
        let log = EventLog::from_base64(&b64).unwrap();
        replay::verify(&log, &built.pcrs, pcrs.iter().copied()).unwrap();
        MbPolicy::load("example", Some(&refstate))
            .unwrap()
            .evaluate(&log)
            .unwrap();
    });
    rows.push(("**all of it, per quote**".into(), total));

    println!();
    println!(
        "Measured boot per quote: the sample boot log, {} events, {} bytes ({} base64), banks sha1 + sha256.",
        built.event_count,
        built.bytes.len(),
        b64.len()
    );
    println!();
    println!("| step | mean per call |");
    println!("|---|---:|");
    for (what, t) in rows {
        println!("| {what} | {:.1} µs |", t.as_secs_f64() * 1e6);
    }
}
