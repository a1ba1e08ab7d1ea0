//! When each agent's next step runs: one task owns a time-ordered queue and spawns a short step
//! per due agent (the state machine itself is `poller.rs`).
//!
//! Invariants:
//! - **At most one queued entry per agent.** Each entry carries a token; queuing an agent again
//!   replaces its token, so an older entry is skipped when it comes up. Without this a hint (or
//!   a reactivate racing a poll) would leave two entries and double the agent's polling rate.
//! - **At most one step in flight per agent.** An entry that comes due while its agent's step
//!   is running waits for the step to end.
//! - **Epochs only move forward.** A step of an old epoch (the tenant stopped, reactivated or
//!   deleted the agent meanwhile) never replaces an entry of a newer one.
//! - **A hint never loses a change.** "Attest me now" for an agent whose step is in flight
//!   marks it for an immediate re-run when the step ends (that step may have quoted before the
//!   change); otherwise the queued entry is moved to now. Hints for one agent are at least
//!   `min_hint_gap` apart (a chatty or hostile agent gets a quote per gap, no more); one that
//!   comes sooner moves the entry to the end of the gap instead of being dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What a step reports back: run again after this delay, or stop polling the agent.
pub type StepOutcome = Option<Duration>;

enum Msg {
    /// Queue `agent_id` (epoch `epoch`) at `at`, replacing what is queued for it.
    Due {
        agent_id: String,
        epoch: i64,
        at: Instant,
    },
    /// A step ended.
    Done {
        agent_id: String,
        epoch: i64,
        next: StepOutcome,
    },
    /// The agent asked to be attested now.
    Hint { agent_id: String },
}

/// Handle to the scheduler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scheduler {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Due { agent_id, .. } => write!(f, "Due({agent_id})"),
            Msg::Done { agent_id, .. } => write!(f, "Done({agent_id})"),
            Msg::Hint { agent_id } => write!(f, "Hint({agent_id})"),
        }
    }
}

impl Scheduler {
    /// Run the agent's next step (for `epoch`) after `delay`, replacing its queued entry.
    pub fn schedule(&self, agent_id: &str, epoch: i64, delay: Duration) {
        self.send(Msg::Due {
            agent_id: agent_id.to_owned(),
            epoch,
            at: Instant::now() + delay,
        });
    }

    /// Attest `agent_id` as soon as possible (an authenticated hint). Ignored for an agent
    /// that is not being polled.
    pub fn hint(&self, agent_id: &str) {
        self.send(Msg::Hint {
            agent_id: agent_id.to_owned(),
        });
    }

    fn send(&self, msg: Msg) {
        if self.tx.send(msg).is_err() {
            tracing::debug!("scheduler stopped; dropping a request");
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Queued {
    token: u64,
    epoch: i64,
    at: Instant,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<(Instant, u64, String)>>,
    queued: HashMap<String, Queued>,
    in_flight: HashMap<String, i64>,
    rerun: HashSet<String>,
    last_hint: HashMap<String, Instant>,
    next_token: u64,
}

impl State {
    fn queue(&mut self, agent_id: String, epoch: i64, at: Instant) {
        if self.queued.get(&agent_id).is_some_and(|q| q.epoch > epoch) {
            return; // a newer epoch is queued; this request is stale
        }
        self.next_token += 1;
        let token = self.next_token;
        self.queued
            .insert(agent_id.clone(), Queued { token, epoch, at });
        self.heap.push(Reverse((at, token, agent_id)));
    }

    fn hint(&mut self, agent_id: String, now: Instant, min_gap: Duration) {
        let earliest = self
            .last_hint
            .get(&agent_id)
            .map_or(now, |t| (*t + min_gap).max(now));
        if self.in_flight.contains_key(&agent_id) {
            self.rerun.insert(agent_id);
            return;
        }
        let Some(q) = self.queued.get(&agent_id).copied() else {
            tracing::debug!(
                agent_id,
                "hint for an agent that is not being polled; ignored"
            );
            return;
        };
        if q.at > earliest {
            self.last_hint.insert(agent_id.clone(), earliest);
            self.queue(agent_id, q.epoch, earliest);
        }
    }

    /// The next entry due at or before `now` whose agent is free, if any.
    fn pop_due(&mut self, now: Instant) -> Option<(String, i64)> {
        let mut waiting = Vec::new();
        let mut found = None;
        while let Some(Reverse((at, token, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let token = *token;
            let Some(Reverse((at, _, agent_id))) = self.heap.pop() else {
                break;
            };
            match self.queued.get(&agent_id) {
                Some(q) if q.token == token => {}
                _ => continue, // replaced by a later request
            }
            if self.in_flight.contains_key(&agent_id) {
                waiting.push(Reverse((at, token, agent_id)));
                continue;
            }
            let epoch = self.queued.remove(&agent_id).map_or(0, |q| q.epoch);
            found = Some((agent_id, epoch));
            break;
        }
        // Entries whose agent is busy wait for its `Done` (which re-queues them).
        for w in waiting {
            self.heap.push(w);
        }
        found
    }

    fn next_wake(&self) -> Option<Instant> {
        // Entries of busy agents stay in the heap; wake for the first one that is free.
        self.heap
            .iter()
            .filter(|Reverse((_, _, id))| !self.in_flight.contains_key(id))
            .map(|Reverse((at, ..))| *at)
            .min()
    }

    fn done(&mut self, agent_id: String, epoch: i64, next: StepOutcome, now: Instant) {
        self.in_flight.remove(&agent_id);
        let rerun = self.rerun.remove(&agent_id);
        let Some(delay) = next else {
            return;
        };
        let at = if rerun {
            self.last_hint.insert(agent_id.clone(), now);
            now
        } else {
            now + delay
        };
        match self.queued.get(&agent_id) {
            // Something newer (a tenant action) is queued: it wins.
            Some(q) if q.epoch > epoch => {}
            // Same epoch queued meanwhile (a hint while busy, or a start-up entry): keep the
            // earlier of the two.
            Some(q) if q.at <= at => {}
            _ => self.queue(agent_id, epoch, at),
        }
    }
}

/// Start the scheduler. `step(agent_id, epoch)` runs one turn for an agent and says when to run
/// again; it is spawned, at most one per agent at a time. Stops when `shutdown` becomes true
/// (steps in flight are aborted).
pub fn start<F, Fut>(
    step: F,
    min_hint_gap: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> (Scheduler, JoinHandle<()>)
where
    F: Fn(String, i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = StepOutcome> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let handle = Scheduler { tx: tx.clone() };
    let step = Arc::new(step);
    let task = tokio::spawn(async move {
        let mut st = State::default();
        let mut steps = JoinSet::new();
        loop {
            while let Some((agent_id, epoch)) = st.pop_due(Instant::now()) {
                st.in_flight.insert(agent_id.clone(), epoch);
                let step = step.clone();
                let tx = tx.clone();
                steps.spawn(async move {
                    let next = step(agent_id.clone(), epoch).await;
                    let _ = tx.send(Msg::Done {
                        agent_id,
                        epoch,
                        next,
                    });
                });
            }
            let wake = st.next_wake();
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                msg = rx.recv() => match msg {
                    Some(Msg::Due { agent_id, epoch, at }) => st.queue(agent_id, epoch, at),
                    Some(Msg::Done { agent_id, epoch, next }) => {
                        st.done(agent_id, epoch, next, Instant::now());
                    }
                    Some(Msg::Hint { agent_id }) => st.hint(agent_id, Instant::now(), min_hint_gap),
                    None => break,
                },
                _ = timer => {}
                Some(_) = steps.join_next(), if !steps.is_empty() => {}
            }
        }
        steps.shutdown().await;
        tracing::info!("poller stopped");
    });
    (handle, task)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Log = Arc<Mutex<Vec<(String, i64, Instant)>>>;
    type StepFuture = std::pin::Pin<Box<dyn Future<Output = StepOutcome> + Send>>;

    /// Records (agent, epoch, time) of every step; each step sleeps `busy` and asks to run
    /// again after `again`.
    fn recorder(
        busy: Duration,
        again: Option<Duration>,
    ) -> (
        Log,
        impl Fn(String, i64) -> StepFuture + Send + Sync + 'static,
    ) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let step = move |id: String, epoch: i64| {
            let l = l.clone();
            Box::pin(async move {
                l.lock().unwrap().push((id, epoch, Instant::now()));
                tokio::time::sleep(busy).await;
                again
            }) as StepFuture
        };
        (log, step)
    }

    fn count(log: &Mutex<Vec<(String, i64, Instant)>>, id: &str) -> usize {
        log.lock().unwrap().iter().filter(|(a, ..)| a == id).count()
    }

    #[tokio::test(start_paused = true)]
    async fn polls_at_the_interval_and_dedups_schedules() {
        let (log, step) = recorder(Duration::from_millis(5), Some(Duration::from_secs(1)));
        let (_stop_tx, stop) = watch::channel(false);
        let (s, _task) = start(step, Duration::from_millis(50), stop);
        s.schedule("a", 0, Duration::from_millis(100));
        s.schedule("a", 0, Duration::from_millis(100)); // duplicate: replaced, not doubled
        tokio::time::sleep(Duration::from_millis(3500)).await;
        // t = 0.1, ~1.105, ~2.11, ~3.115
        assert_eq!(count(&log, "a"), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hint_moves_the_next_poll_to_now_without_adding_one() {
        let (log, step) = recorder(Duration::from_millis(5), Some(Duration::from_secs(10)));
        let (_stop_tx, stop) = watch::channel(false);
        let (s, _task) = start(step, Duration::from_millis(50), stop);
        s.schedule("a", 0, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(count(&log, "a"), 1);
        s.hint("a");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(count(&log, "a"), 2, "the hint ran a poll at once");
        // Then back to the interval: no extra poll before t ≈ 10.1 s.
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(count(&log, "a"), 2);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count(&log, "a"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hint_during_a_step_reruns_it_right_after() {
        let (log, step) = recorder(Duration::from_millis(200), Some(Duration::from_secs(10)));
        let (_stop_tx, stop) = watch::channel(false);
        let (s, _task) = start(step, Duration::from_millis(50), stop);
        s.schedule("a", 0, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(100)).await; // step in flight
        s.hint("a");
        tokio::time::sleep(Duration::from_millis(150)).await; // step ended at 200 ms
        assert_eq!(
            count(&log, "a"),
            2,
            "re-run immediately after the busy step"
        );
        let l = log.lock().unwrap();
        assert!(
            l[1].2 - l[0].2 >= Duration::from_millis(200),
            "never two at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hints_are_rate_limited_not_dropped() {
        let (log, step) = recorder(Duration::from_millis(1), Some(Duration::from_secs(10)));
        let (_stop_tx, stop) = watch::channel(false);
        let (s, _task) = start(step, Duration::from_millis(100), stop);
        s.schedule("a", 0, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..20 {
            s.hint("a");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // 100 ms of hints every 5 ms: polls at ~10 ms and ~110 ms, not 20.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(count(&log, "a"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn hints_for_unpolled_agents_do_nothing_and_old_epochs_never_win() {
        let (log, step) = recorder(Duration::from_millis(300), Some(Duration::from_secs(1)));
        let (_stop_tx, stop) = watch::channel(false);
        let (s, _task) = start(step, Duration::from_millis(50), stop);
        s.hint("nobody");
        s.schedule("a", 0, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A tenant action (epoch 1) while the epoch-0 step runs.
        s.schedule("a", 1, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let l = log.lock().unwrap();
        assert_eq!(count(&Mutex::new(l.clone()), "nobody"), 0);
        assert_eq!(l[0].1, 0);
        assert!(l[1..].iter().all(|(_, e, _)| *e == 1), "{l:?}");
        assert_eq!(
            l[1].2 - l[0].2,
            Duration::from_millis(300),
            "ran as soon as free"
        );
    }
}
