//! What the cost tables share: timing a closure.

use std::time::{Duration, Instant};

/// Mean time of `f` over enough calls to fill `budget` (at least 3, after a warm-up of about
/// a tenth of the budget).
pub fn measure(budget: Duration, mut f: impl FnMut()) -> Duration {
    let warm = Instant::now();
    f();
    while warm.elapsed() < budget / 10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while n < 3 || start.elapsed() < budget {
        f();
        n += 1;
    }
    start.elapsed() / n
}

/// The time per figure: `VOUCH_BENCH_MS` milliseconds, default 1000.
pub fn budget() -> Duration {
    Duration::from_millis(
        std::env::var("VOUCH_BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    )
}
