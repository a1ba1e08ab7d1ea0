//! Progress lines with the time since the operation started: `[  0.84s] quote verified`.

use std::fmt::Display;
use std::time::Instant;

pub struct Progress {
    start: Instant,
    sink: Box<dyn FnMut(&str) + Send>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("start", &self.start)
            .finish()
    }
}

impl Progress {
    pub fn new(sink: impl FnMut(&str) + Send + 'static) -> Self {
        Self {
            start: Instant::now(),
            sink: Box::new(sink),
        }
    }

    /// Lines to stdout.
    pub fn stdout() -> Self {
        Self::new(|line| println!("{line}"))
    }

    /// Lines to the `tracing` log only (tests, library use).
    pub fn log() -> Self {
        Self::new(|line| tracing::info!("{line}"))
    }

    pub fn step(&mut self, msg: impl Display) {
        let line = format!("[{:>7.2}s] {msg}", self.start.elapsed().as_secs_f64());
        (self.sink)(&line);
    }
}
