//! Revocation notices from the verifier (`POST /vX/notifications/revocation`), handled as
//! rust-keylime's `revocation.rs:process_revocation` does, plus replay protection.
//!
//! 1. **Verify** the body with `RevocationNotifier-cert.crt` from the payload
//!    (`<secure_mount>/unzipped/`, or the configured `revocation_cert`): RSA-PSS, see
//!    [`vouch_core::revocation`]. Unsigned notices, bad signatures and a missing certificate
//!    are refused before anything else happens.
//! 2. **Refuse replays**: the SHA-256 of the signed `msg` is looked up in, then added to, a
//!    small JSON file in the state directory ([`SEEN_FILE`]), before any action runs. The file
//!    keeps the newest [`MAX_SEEN`] ids; when one is dropped its `issued_at` becomes the
//!    *horizon*, and notices issued at or before it are refused too (module docs of
//!    `vouch_core::revocation` explain the design).
//! 3. **Run the actions**: the names in `revocation_actions` (config), then those in the
//!    payload's `action_list` (comma- or whitespace-separated, optional `[ ]` and quotes).
//!    Each is looked up first in `revocation_actions_dir`, then (only when
//!    `allow_payload_revocation_actions`) in the payload directory, and run with the path of a
//!    temporary file holding the signed message JSON as its only argument, in the state
//!    directory, with a timeout. Every action runs even when an earlier one failed (rust-keylime
//!    stops at the first failure); each outcome is logged and returned.
//!
//! Differences from rust-keylime: action names must be plain file names (a name with `/`
//! could otherwise point anywhere); payload actions are made executable (0700) first, as
//! the payload's `autorun.sh` is, since zip payloads carry no modes; Python actions through
//! `shim.py` (its `legacy-python-actions` feature) are not supported.

use crate::script::NotFinished;
use crate::secure_mount::set_mode;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use vouch_core::revocation::{parse_notice, NotifierKey, VerifiedNotice, NOTIFIER_CERT};

/// The payload file listing revocation actions (rust-keylime / upstream `action_list`).
pub const ACTION_LIST: &str = "action_list";
/// The replay record, in the agent's state directory.
pub const SEEN_FILE: &str = "revocation-seen.json";
/// rust-keylime's default `revocation_actions_dir`.
pub const DEFAULT_ACTIONS_DIR: &str = "/usr/libexec/keylime";
/// Default time an action may run before its process group is killed.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Notice ids the replay record keeps.
pub const MAX_SEEN: usize = 1024;

/// What the agent config decides (rust-keylime's keys in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// Actions run for every notice, before the payload's (`revocation_actions`, a list as
    /// [`parse_action_list`] reads it; default empty).
    pub actions: String,
    /// Where installed actions live (`revocation_actions_dir`, default
    /// `/usr/libexec/keylime`).
    pub actions_dir: PathBuf,
    /// Whether actions shipped in the payload may run (`allow_payload_revocation_actions`,
    /// default true).
    pub allow_payload_actions: bool,
    /// Per action (Vouch: `revocation_action_timeout_secs`, default 60).
    pub action_timeout: Duration,
    /// The notifier certificate; `None` = `<unzipped>/RevocationNotifier-cert.crt`
    /// (`revocation_cert = "default"`).
    pub cert: Option<PathBuf>,
}

impl Default for RevocationConfig {
    fn default() -> RevocationConfig {
        RevocationConfig {
            actions: String::new(),
            actions_dir: PathBuf::from(DEFAULT_ACTIONS_DIR),
            allow_payload_actions: true,
            action_timeout: DEFAULT_ACTION_TIMEOUT,
            cert: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum RevocationError {
    #[error("{0}")]
    Notice(vouch_core::revocation::RevocationError),
    #[error(
        "no revocation notifier certificate at {}: the payload did not include {NOTIFIER_CERT} \
         (the tenant adds it to a --cert package; `vouch ca pkg` builds one), so revocation \
         notices cannot be verified; refused",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error("reading the revocation notifier certificate {}: {cause}", path.display())]
    Certificate {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "revocation notice {id} was already acted on; a replayed notice is refused and its \
         actions are not run again"
    )]
    Replay { id: String },
    #[error(
        "revocation notice issued at {issued_at} (Unix time) is not newer than {horizon}, the \
         oldest time this agent still remembers notices from; refused as a possible replay"
    )]
    Stale { issued_at: u64, horizon: u64 },
    #[error(
        "revocation replay record {}: {cause}; notices are refused until it is fixed (deleting \
         it forgets which notices were already acted on)",
        path.display()
    )]
    SeenStore { path: PathBuf, cause: String },
}

impl From<vouch_core::revocation::RevocationError> for RevocationError {
    fn from(e: vouch_core::revocation::RevocationError) -> RevocationError {
        RevocationError::Notice(e)
    }
}

/// Where a revocation action was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionSource {
    /// `revocation_actions_dir`.
    Installed,
    /// The payload directory.
    Payload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionStatus {
    Succeeded,
    /// Exit code, or `None` when killed by a signal.
    Failed {
        code: Option<i32>,
    },
    TimedOut {
        after: Duration,
    },
    NotFound {
        searched: Vec<PathBuf>,
    },
    InvalidName {
        reason: &'static str,
    },
    StartFailed {
        cause: String,
    },
}

/// One action's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    pub action: String,
    pub path: Option<PathBuf>,
    pub source: Option<ActionSource>,
    pub status: ActionStatus,
    /// At most 16 KiB each.
    pub stdout: String,
    pub stderr: String,
}

impl ActionOutcome {
    pub fn succeeded(&self) -> bool {
        self.status == ActionStatus::Succeeded
    }

    fn without_run(action: &str, status: ActionStatus) -> ActionOutcome {
        ActionOutcome {
            action: action.to_owned(),
            path: None,
            source: None,
            status,
            stdout: String::new(),
            stderr: String::new(),
        }
    }
}

/// A notice that verified and was recorded as seen; only [`accept_notice`] makes one.
#[derive(Debug, Clone)]
pub struct AcceptedNotice {
    notice: VerifiedNotice,
}

impl AcceptedNotice {
    pub fn notice(&self) -> &VerifiedNotice {
        &self.notice
    }
}

/// Verify, refuse replays, run the actions (see the module docs). Temporary message files go
/// next to `seen_store` (the state directory), which is also the actions' working directory.
pub async fn handle_notice(
    body: &[u8],
    unzipped_dir: &Path,
    config: &RevocationConfig,
    seen_store: &Path,
) -> Result<Vec<ActionOutcome>, RevocationError> {
    let accepted = accept_notice(body, unzipped_dir, config, seen_store).await?;
    let work_dir = seen_store.parent().unwrap_or(Path::new("."));
    Ok(run_actions(&accepted, unzipped_dir, config, work_dir).await)
}

/// Steps 1 and 2 only: an HTTP handler can answer as soon as this returns and run
/// [`run_actions`] in the background.
pub async fn accept_notice(
    body: &[u8],
    unzipped_dir: &Path,
    config: &RevocationConfig,
    seen_store: &Path,
) -> Result<AcceptedNotice, RevocationError> {
    let notice = parse_notice(body)?;
    let cert_path = config
        .cert
        .clone()
        .unwrap_or_else(|| unzipped_dir.join(NOTIFIER_CERT));
    let cert = match tokio::fs::read_to_string(&cert_path).await {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RevocationError::NoCertificate { path: cert_path })
        }
        Err(cause) => {
            return Err(RevocationError::Certificate {
                path: cert_path,
                cause,
            })
        }
    };
    let verified = NotifierKey::from_cert_pem(&cert)?.verify(&notice)?;
    let m = verified.message();
    tracing::info!(
        revoked_agent = %m.agent_id,
        kind = %m.kind,
        event_id = m.event.as_ref().map(|e| e.event_id.as_str()).unwrap_or(""),
        notice = %verified.replay_id(),
        "revocation notice verified"
    );
    record_seen(seen_store, &verified).await?;
    Ok(AcceptedNotice { notice: verified })
}

/// Step 3: run every action (see the module docs), in order, each to completion or timeout.
pub async fn run_actions(
    accepted: &AcceptedNotice,
    unzipped_dir: &Path,
    config: &RevocationConfig,
    work_dir: &Path,
) -> Vec<ActionOutcome> {
    let mut names = parse_action_list(&config.actions);
    let list = unzipped_dir.join(ACTION_LIST);
    match tokio::fs::read_to_string(&list).await {
        Ok(text) => names.extend(parse_action_list(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %list.display(), "no action_list in the payload")
        }
        Err(e) => {
            tracing::error!(path = %list.display(), "cannot read action_list: {e}; running only the configured revocation actions")
        }
    }
    if names.is_empty() {
        tracing::warn!("no revocation actions configured or in the payload");
    }
    let mut outcomes = Vec::with_capacity(names.len());
    for name in names {
        let outcome = match lookup(&name, unzipped_dir, config) {
            Ok((path, source)) => {
                run_one(
                    &name,
                    path,
                    source,
                    accepted.notice.msg(),
                    work_dir,
                    config.action_timeout,
                )
                .await
            }
            Err(status) => ActionOutcome::without_run(&name, status),
        };
        log_outcome(&outcome);
        outcomes.push(outcome);
    }
    outcomes
}

/// A list as upstream configs write them: `a, b`, `a b`, `[a, b]`, `["a", 'b']`, newlines.
pub fn parse_action_list(text: &str) -> Vec<String> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    t.split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| {
            let s = s.trim();
            ['"', '\'']
                .iter()
                .find_map(|q| s.strip_prefix(*q).and_then(|s| s.strip_suffix(*q)))
                .unwrap_or(s)
        })
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn lookup(
    name: &str,
    unzipped_dir: &Path,
    config: &RevocationConfig,
) -> Result<(PathBuf, ActionSource), ActionStatus> {
    if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(ActionStatus::InvalidName {
            reason: "an action is a plain file name in the actions or payload directory",
        });
    }
    let mut candidates = vec![(config.actions_dir.join(name), ActionSource::Installed)];
    if config.allow_payload_actions {
        candidates.push((unzipped_dir.join(name), ActionSource::Payload));
    }
    candidates
        .iter()
        .find(|(path, _)| {
            std::fs::metadata(path)
                .map(|m| m.is_file())
                .unwrap_or(false)
        })
        .cloned()
        .ok_or_else(|| ActionStatus::NotFound {
            searched: candidates.into_iter().map(|(p, _)| p).collect(),
        })
}

async fn run_one(
    name: &str,
    path: PathBuf,
    source: ActionSource,
    msg: &str,
    work_dir: &Path,
    timeout: Duration,
) -> ActionOutcome {
    let mut outcome = ActionOutcome {
        action: name.to_owned(),
        path: Some(path.clone()),
        source: Some(source),
        status: ActionStatus::Succeeded,
        stdout: String::new(),
        stderr: String::new(),
    };
    let start_failed = |cause: String| ActionStatus::StartFailed { cause };
    if source == ActionSource::Payload {
        if let Err(e) = set_mode(&path, 0o700) {
            outcome.status = start_failed(format!("making it executable: {e}"));
            return outcome;
        }
    }
    // One message file per action, so that an action cannot change what the next one reads.
    let json_path = match write_message_file(work_dir, msg).await {
        Ok(p) => p,
        Err(e) => {
            outcome.status = start_failed(format!("writing the message file: {e}"));
            return outcome;
        }
    };
    tracing::info!(action = name, path = %path.display(), "running revocation action");
    let args = [json_path.as_os_str()];
    outcome.status = match crate::script::run(&path, &args, work_dir, timeout).await {
        Ok(out) => {
            outcome.stdout = out.stdout;
            outcome.stderr = out.stderr;
            if out.status.success() {
                ActionStatus::Succeeded
            } else {
                ActionStatus::Failed {
                    code: out.status.code(),
                }
            }
        }
        Err(NotFinished::Start(e)) => start_failed(e.to_string()),
        Err(NotFinished::TimedOut) => ActionStatus::TimedOut { after: timeout },
    };
    let _ = tokio::fs::remove_file(&json_path).await;
    outcome
}

async fn write_message_file(dir: &Path, msg: &str) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("revocation-{}-{n}.json", std::process::id()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, msg.as_bytes()).await?;
    Ok(path)
}

fn log_outcome(o: &ActionOutcome) {
    let path = o
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match &o.status {
        ActionStatus::Succeeded => tracing::info!(
            action = %o.action, %path, stdout = %o.stdout, stderr = %o.stderr,
            "revocation action succeeded"
        ),
        status => tracing::error!(
            action = %o.action, %path, ?status, stdout = %o.stdout, stderr = %o.stderr,
            "revocation action failed"
        ),
    }
}

/// The replay record: ids of notices acted on, oldest first.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SeenRecord {
    version: u32,
    /// Notices with `issued_at` at or before this are refused.
    horizon: u64,
    seen: VecDeque<SeenEntry>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SeenEntry {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_at: Option<u64>,
    received_at: u64,
}

/// Serializes check-and-record within the agent (one process owns the state directory).
static SEEN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn record_seen(path: &Path, notice: &VerifiedNotice) -> Result<(), RevocationError> {
    let _guard = SEEN_LOCK.lock().await;
    let (path, id, issued_at) = (
        path.to_path_buf(),
        notice.replay_id().to_owned(),
        notice.issued_at(),
    );
    let p = path.clone();
    tokio::task::spawn_blocking(move || check_and_record(&p, &id, issued_at, MAX_SEEN))
        .await
        .map_err(|e| RevocationError::SeenStore {
            path,
            cause: e.to_string(),
        })?
}

/// Refuse `id` if recorded or older than the horizon, else record it (evicting the oldest
/// beyond `capacity`) and persist the record atomically.
fn check_and_record(
    path: &Path,
    id: &str,
    issued_at: Option<u64>,
    capacity: usize,
) -> Result<(), RevocationError> {
    let store_err = |cause: String| RevocationError::SeenStore {
        path: path.to_path_buf(),
        cause,
    };
    let mut record: SeenRecord = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| store_err(format!("not a replay record: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SeenRecord {
            version: 1,
            ..SeenRecord::default()
        },
        Err(e) => return Err(store_err(e.to_string())),
    };
    if record.seen.iter().any(|e| e.id == id) {
        return Err(RevocationError::Replay { id: id.to_owned() });
    }
    if let Some(t) = issued_at {
        if record.horizon > 0 && t <= record.horizon {
            return Err(RevocationError::Stale {
                issued_at: t,
                horizon: record.horizon,
            });
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    record.seen.push_back(SeenEntry {
        id: id.to_owned(),
        issued_at,
        received_at: now,
    });
    while record.seen.len() > capacity.max(1) {
        if let Some(old) = record.seen.pop_front() {
            if let Some(t) = old.issued_at {
                record.horizon = record.horizon.max(t);
            }
        }
    }
    let bytes = serde_json::to_vec(&record).map_err(|e| store_err(e.to_string()))?;
    write_atomic(path, &bytes).map_err(|e| store_err(e.to_string()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use vouch_core::revocation::{
        sign_message, RevocationMessage, RevocationNotice, RevocationSigningKey,
    };
    use vouch_tls::software_ca::SoftwareCa;

    /// A node that got a `vouch ca pkg` payload (with an `action_list` and a payload action
    /// that appends the message it gets to `marker`), and the key the verifier signs with.
    struct Node {
        _tmp: tempfile::TempDir,
        unzipped: PathBuf,
        state: PathBuf,
        actions_dir: PathBuf,
        marker: PathBuf,
        key: RevocationSigningKey,
    }

    impl Node {
        fn seen(&self) -> PathBuf {
            self.state.join(SEEN_FILE)
        }

        fn config(&self) -> RevocationConfig {
            RevocationConfig {
                actions_dir: self.actions_dir.clone(),
                action_timeout: Duration::from_secs(10),
                ..RevocationConfig::default()
            }
        }

        fn marker_lines(&self) -> Vec<String> {
            std::fs::read_to_string(&self.marker)
                .map(|s| s.lines().map(str::to_owned).collect())
                .unwrap_or_default()
        }

        fn notice(&self) -> Vec<u8> {
            let m = RevocationMessage::revocation(
                "failed-agent",
                "10.0.0.9",
                9002,
                serde_json::json!("{}"),
                serde_json::json!("{}"),
            )
            .unwrap();
            serde_json::to_vec(&sign_message(&m, &self.key).unwrap()).unwrap()
        }
    }

    fn node(action_list: &str, extra: &[(&str, &str)]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("marker");
        let ca = SoftwareCa::init(
            tmp.path().join("ca"),
            "Test CA",
            &vouch_tls::CaOptions::default(),
        )
        .unwrap();
        let mut files = vec![
            ("action_list".to_owned(), action_list.as_bytes().to_vec()),
            (
                "mark.sh".to_owned(),
                // No `#!` and no exec bit in the zip: the agent must cope, as with autorun.sh.
                format!(
                    "cat \"$1\" >> '{}'\necho >> '{}'\n",
                    marker.display(),
                    marker.display()
                )
                .into_bytes(),
            ),
        ];
        for (n, d) in extra {
            files.push(((*n).to_owned(), d.as_bytes().to_vec()));
        }
        let pkg = ca.cert_package("node1", &files).unwrap();
        let unzipped = tmp.path().join("mnt/unzipped");
        std::fs::create_dir_all(unzipped.parent().unwrap()).unwrap();
        crate::payload::write_out(&unzipped, &[0; 32], &pkg.zip, true).unwrap();
        let state = tmp.path().join("state");
        let actions_dir = tmp.path().join("actions");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&actions_dir).unwrap();
        Node {
            unzipped,
            state,
            actions_dir,
            marker,
            key: RevocationSigningKey::from_pem(&pkg.revocation_key_pem).unwrap(),
            _tmp: tmp,
        }
    }

    #[tokio::test]
    async fn a_good_notice_runs_the_payload_action_with_the_message_file() {
        let n = node("mark.sh", &[]);
        let body = n.notice();
        let outcomes = handle_notice(&body, &n.unzipped, &n.config(), &n.seen())
            .await
            .unwrap();
        assert_eq!(outcomes.len(), 1);
        let o = &outcomes[0];
        assert!(o.succeeded(), "{o:?}");
        assert_eq!(o.source, Some(ActionSource::Payload));
        let sent: RevocationNotice = serde_json::from_slice(&body).unwrap();
        assert_eq!(n.marker_lines(), vec![sent.msg]);
        assert!(n.seen().is_file());
        // The message file is gone afterwards.
        let leftovers: Vec<_> = std::fs::read_dir(&n.state)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.starts_with("revocation-").then_some(name)
            })
            .collect();
        assert_eq!(leftovers, vec![SEEN_FILE.to_owned()]);
    }

    #[tokio::test]
    async fn a_bad_signature_is_refused_and_nothing_runs() {
        let n = node("mark.sh", &[]);
        let mut notice: RevocationNotice = serde_json::from_slice(&n.notice()).unwrap();
        notice.msg = notice.msg.replace("failed-agent", "other-agent");
        let body = serde_json::to_vec(&notice).unwrap();
        let e = handle_notice(&body, &n.unzipped, &n.config(), &n.seen())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                RevocationError::Notice(
                    vouch_core::revocation::RevocationError::BadSignature { .. }
                )
            ),
            "{e}"
        );
        assert!(n.marker_lines().is_empty());
        assert!(!n.seen().exists(), "a refused notice is not recorded");

        notice.signature = String::new();
        let body = serde_json::to_vec(&notice).unwrap();
        let e = handle_notice(&body, &n.unzipped, &n.config(), &n.seen())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unsigned"), "{e}");
        assert!(n.marker_lines().is_empty());
    }

    #[tokio::test]
    async fn a_replayed_notice_is_refused_and_nothing_runs_again() {
        let n = node("mark.sh", &[]);
        let body = n.notice();
        handle_notice(&body, &n.unzipped, &n.config(), &n.seen())
            .await
            .unwrap();
        let e = handle_notice(&body, &n.unzipped, &n.config(), &n.seen())
            .await
            .unwrap_err();
        assert!(matches!(e, RevocationError::Replay { .. }), "{e}");
        assert_eq!(n.marker_lines().len(), 1);
        // A new notice about the same event (new notice_id) is acted on.
        handle_notice(&n.notice(), &n.unzipped, &n.config(), &n.seen())
            .await
            .unwrap();
        assert_eq!(n.marker_lines().len(), 2);
    }

    #[tokio::test]
    async fn a_missing_certificate_is_refused() {
        let n = node("mark.sh", &[]);
        std::fs::remove_file(n.unzipped.join(NOTIFIER_CERT)).unwrap();
        let e = handle_notice(&n.notice(), &n.unzipped, &n.config(), &n.seen())
            .await
            .unwrap_err();
        assert!(matches!(e, RevocationError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains(NOTIFIER_CERT), "{e}");
        assert!(n.marker_lines().is_empty());
    }

    #[tokio::test]
    async fn every_action_runs_and_reports_its_own_outcome() {
        let n = node(
            "[fail.sh, 'mark.sh', missing, ../../bin/true, slow.sh]",
            &[
                ("fail.sh", "echo oops >&2; exit 3\n"),
                ("slow.sh", "sleep 30\n"),
            ],
        );
        // An installed action runs first (config list) and wins over a payload one of the
        // same name.
        let installed = n.actions_dir.join("first.sh");
        std::fs::write(
            &installed,
            format!("#!/bin/sh\necho installed >> '{}'\n", n.marker.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = RevocationConfig {
            actions: "first.sh".into(),
            action_timeout: Duration::from_millis(500),
            ..n.config()
        };
        let outcomes = handle_notice(&n.notice(), &n.unzipped, &config, &n.seen())
            .await
            .unwrap();
        let statuses: Vec<_> = outcomes
            .iter()
            .map(|o| (o.action.as_str(), o.status.clone()))
            .collect();
        assert_eq!(statuses.len(), 6, "{statuses:?}");
        assert_eq!(statuses[0], ("first.sh", ActionStatus::Succeeded));
        assert_eq!(outcomes[0].source, Some(ActionSource::Installed));
        assert_eq!(
            statuses[1],
            ("fail.sh", ActionStatus::Failed { code: Some(3) })
        );
        assert_eq!(outcomes[1].stderr, "oops\n");
        assert_eq!(statuses[2], ("mark.sh", ActionStatus::Succeeded));
        assert!(matches!(statuses[3].1, ActionStatus::NotFound { .. }));
        assert!(matches!(statuses[4].1, ActionStatus::InvalidName { .. }));
        assert_eq!(
            statuses[5],
            (
                "slow.sh",
                ActionStatus::TimedOut {
                    after: Duration::from_millis(500)
                }
            )
        );
        assert_eq!(n.marker_lines()[0], "installed");

        // Payload actions switched off: only installed ones are found.
        let config = RevocationConfig {
            allow_payload_actions: false,
            ..config
        };
        let outcomes = handle_notice(&n.notice(), &n.unzipped, &config, &n.seen())
            .await
            .unwrap();
        assert!(outcomes[0].succeeded());
        assert!(outcomes[1..]
            .iter()
            .all(|o| !o.succeeded() && o.source.is_none()));
    }

    #[test]
    fn the_replay_record_is_bounded_and_keeps_a_horizon() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(SEEN_FILE);
        check_and_record(&path, "a", Some(10), 2).unwrap();
        check_and_record(&path, "b", Some(20), 2).unwrap();
        assert!(matches!(
            check_and_record(&path, "b", Some(20), 2),
            Err(RevocationError::Replay { .. })
        ));
        check_and_record(&path, "c", Some(30), 2).unwrap(); // drops a, horizon 10
        assert!(matches!(
            check_and_record(&path, "a", Some(10), 2),
            Err(RevocationError::Stale {
                issued_at: 10,
                horizon: 10
            })
        ));
        // Upstream notices carry no issued_at: the id check alone.
        check_and_record(&path, "u", None, 2).unwrap(); // drops b, horizon 20
        assert!(matches!(
            check_and_record(&path, "u", None, 2),
            Err(RevocationError::Replay { .. })
        ));
        check_and_record(&path, "d", Some(25), 2).unwrap();
        let record: SeenRecord = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(record.horizon, 30);
        assert_eq!(record.seen.len(), 2);

        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            check_and_record(&path, "e", None, 2),
            Err(RevocationError::SeenStore { .. })
        ));
    }

    #[test]
    fn action_lists_parse_like_upstream_configs() {
        assert_eq!(parse_action_list("a,b , c"), ["a", "b", "c"]);
        assert_eq!(parse_action_list("a b\nc\t"), ["a", "b", "c"]);
        assert_eq!(parse_action_list("[\"a\", 'b']"), ["a", "b"]);
        assert!(parse_action_list(" [] ").is_empty());
        assert!(parse_action_list("").is_empty());
    }
}
