//! Event-driven detection, agent side: watch the IMA log and the PCRs, and when either changes
//! send the verifier a signed "attest me now" hint (`vouch_core::api::hint`). The verifier
//! then quotes at once instead of at its next poll. Polling stays the source of truth — a lost
//! hint costs only time, so a hint is retried only briefly (transport errors, 5xx).
//!
//! - IMA: the log is re-read from where it ended last time (a seek and a short read) every
//!   `hint_ima_poll_ms`. securityfs files support neither inotify nor a meaningful size, so
//!   this is a poll, but a cheap one.
//! - PCRs: PCRs 0–23 except 16 (the agent's own NK binding) of the quote bank are read every
//!   `hint_pcr_poll_ms` (three TPM2_PCR_Read calls) and compared with the last read.

use crate::measurements::ImaLog;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vouch_core::api::hint::{Hint, HintReason, HINT_PATH};
use vouch_core::keylime::NodeKey;
use vouch_core::tpm::HashAlg;
use vouch_tpm::TpmHandle;

/// What the watcher needs.
pub struct WatchSettings {
    /// The verifier's hint listener, e.g. `http://127.0.0.1:8882`.
    pub verifier: String,
    pub agent_id: String,
    pub ima_log: PathBuf,
    pub ima_every: Duration,
    /// Zero = PCRs not watched.
    pub pcr_every: Duration,
    pub bank: HashAlg,
}

/// A source of the NK for signing (the agent's `Keys`).
pub trait Signer: Send + Sync + 'static {
    fn nk(&self) -> &NodeKey;
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Sender<S> {
    url: String,
    agent_id: String,
    signer: Arc<S>,
    http: reqwest::Client,
    last_counter: u64,
}

impl<S: Signer> Sender<S> {
    async fn send(&mut self, reason: HintReason) {
        // Strictly increasing even if two hints fall in the same microsecond.
        let counter = micros_now().max(self.last_counter + 1);
        self.last_counter = counter;
        let hint = match Hint::sign(self.signer.nk(), &self.agent_id, counter, reason) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("hint not sent: {e}");
                return;
            }
        };
        // A transport error or 5xx is retried twice (the verifier may be busy or restarting);
        // a 4xx is a verdict on the hint itself and is not.
        for attempt in 1..=3u32 {
            match self.http.post(&self.url).json(&hint).send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(reason = reason.as_str(), "hint delivered");
                    return;
                }
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    tracing::warn!(%status, "verifier refused the hint: {body}");
                    return;
                }
                Ok(r) => tracing::warn!(status = %r.status(), attempt, "hint not taken"),
                Err(e) => tracing::warn!(attempt, "hint to {} failed: {e}", self.url),
            }
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
    }
}

/// Read every watched PCR; `None` if the TPM could not be read (then nothing is compared).
async fn read_pcrs(tpm: &TpmHandle, bank: HashAlg) -> Option<Vec<(HashAlg, u8, Vec<u8>)>> {
    let pcrs: Vec<u8> = (0u8..24).filter(|i| *i != 16).collect();
    let mut out = Vec::new();
    for chunk in pcrs.chunks(8) {
        match tpm.pcr_read(&[(bank, chunk.to_vec())]).await {
            Ok(v) => out.extend(v),
            Err(e) => {
                tracing::debug!("PCR watch: {e}");
                return None;
            }
        }
    }
    Some(out)
}

/// Start watching; the task ends when `stop` becomes true.
pub fn start<S: Signer>(
    settings: WatchSettings,
    signer: Arc<S>,
    tpm: TpmHandle,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, reqwest::Error> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut sender = Sender {
        url: format!("{}{HINT_PATH}", settings.verifier.trim_end_matches('/')),
        agent_id: settings.agent_id.clone(),
        signer,
        http,
        last_counter: 0,
    };
    Ok(tokio::spawn(async move {
        let log = Arc::new(ImaLog::new(&settings.ima_log));
        let mut entries = {
            let log = log.clone();
            tokio::task::spawn_blocking(move || log.read_from(0))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .map_or(0, |s| s.count)
        };
        let mut pcrs = if settings.pcr_every.is_zero() {
            None
        } else {
            read_pcrs(&tpm, settings.bank).await
        };
        let mut ima_tick = tokio::time::interval(settings.ima_every.max(Duration::from_millis(1)));
        ima_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pcr_every = if settings.pcr_every.is_zero() {
            Duration::from_secs(86_400)
        } else {
            settings.pcr_every
        };
        let mut pcr_tick = tokio::time::interval(pcr_every);
        pcr_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            verifier = %sender.url,
            ima_ms = settings.ima_every.as_millis() as u64,
            pcr_ms = settings.pcr_every.as_millis() as u64,
            "watching IMA log and PCRs; hints on change"
        );
        loop {
            tokio::select! {
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break,
                _ = ima_tick.tick() => {
                    let (l, from) = (log.clone(), entries);
                    let read = tokio::task::spawn_blocking(move || l.read_from(from)).await;
                    let Ok(Ok(Some(slice))) = read else { continue };
                    if slice.first_entry < entries {
                        // A new, shorter log (reboot or rewrite): a change too.
                        entries = slice.first_entry + slice.count;
                        sender.send(HintReason::Ima).await;
                    } else if slice.count > 0 {
                        entries = slice.first_entry + slice.count;
                        sender.send(HintReason::Ima).await;
                    }
                }
                _ = pcr_tick.tick(), if !settings.pcr_every.is_zero() => {
                    let now = read_pcrs(&tpm, settings.bank).await;
                    if now.is_some() && pcrs.is_some() && now != pcrs {
                        sender.send(HintReason::Pcr).await;
                    }
                    if now.is_some() {
                        pcrs = now;
                    }
                }
            }
        }
    }))
}
