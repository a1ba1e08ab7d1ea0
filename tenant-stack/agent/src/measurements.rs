//! The logs an integrity quote carries: the IMA log (ASCII, from entry N on) and the UEFI
//! measured-boot event log (binary, base64 on the wire).
//!
//! The IMA log is read *after* the quote, so it holds at least every entry the quoted PCR 10
//! covers; entries added in between are the verifier's to hold back (it replays up to the point
//! where the running value equals PCR 10 and accepts only that prefix).
//!
//! Serving entry N again and again would mean re-reading a log that only grows. The reader
//! remembers the byte offset of the last entry count it served and seeks there when the
//! verifier asks for exactly that entry next (the usual incremental case); anything else reads
//! from the start. A log with fewer than N entries (a reboot, or a verifier that is ahead) is
//! served from entry 0 with `ima_measurement_list_entry = 0`, which makes the verifier start
//! over (rust-keylime behaves the same way).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thiserror::Error;

/// A single IMA log line longer than this is refused (a policy path is at most PATH_MAX, a
/// signature a few hundred bytes; ima-buf entries carry keys of a few KiB).
const MAX_LINE: usize = 64 * 1024;
/// An event log larger than this is not sent (real ones are tens of KiB).
const MAX_EVENT_LOG: u64 = 8 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("reading {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{path}: line {line} is longer than {MAX_LINE} bytes; not an IMA log?")]
    LineTooLong { path: PathBuf, line: u64 },
    #[error("{path} is {size} bytes, more than the {MAX_EVENT_LOG}-byte limit for an event log")]
    TooLarge { path: PathBuf, size: u64 },
}

/// Where reading the IMA log left off: `entries` whole lines end at byte `offset`.
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    entries: u64,
    offset: u64,
}

/// The IMA log as the agent serves it.
#[derive(Debug)]
pub struct ImaLog {
    path: PathBuf,
    mark: Mutex<Mark>,
}

/// The part of the IMA log served to the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaSlice {
    /// The number of the first entry in `text`.
    pub first_entry: u64,
    /// Whole lines, each ending in `\n`.
    pub text: String,
    /// Entries in `text`.
    pub count: u64,
}

impl ImaLog {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            mark: Mutex::new(Mark::default()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether there is a log to serve (the kernel has IMA, or a test wrote one).
    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    fn io(&self, e: impl std::fmt::Display) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    /// Entries from `nth` on (blocking file IO: call from `spawn_blocking`). `None`: no log.
    pub fn read_from(&self, nth: u64) -> Result<Option<ImaSlice>, LogError> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let mark = self.mark.lock().map(|m| *m).unwrap_or_default();
        // Resume at the remembered offset only when it is exactly what is asked for and the
        // log did not shrink (a shrunk log is a new boot or a rewritten file: read it all).
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let resume = nth > 0 && mark.entries == nth && (len == 0 || len >= mark.offset);
        let (start_entry, start_offset) = if resume {
            (mark.entries, mark.offset)
        } else {
            (0, 0)
        };
        if start_offset > 0 {
            file.seek(SeekFrom::Start(start_offset))
                .map_err(|e| self.io(e))?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| self.io(e))?;
        // Only whole lines: the kernel never shows half an entry, but a test writer might.
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(whole);

        let mut entry = start_entry;
        let mut pos = 0usize;
        let mut served_from = None;
        let mut line_start = 0usize;
        for (i, b) in bytes.iter().enumerate() {
            if *b != b'\n' {
                continue;
            }
            if i - line_start > MAX_LINE {
                return Err(LogError::LineTooLong {
                    path: self.path.clone(),
                    line: entry,
                });
            }
            if entry == nth {
                served_from = Some(line_start);
            }
            entry += 1;
            line_start = i + 1;
            pos = line_start;
        }
        let total = entry;
        let (first_entry, from) = match served_from {
            Some(at) => (nth, at),
            // Asked for the end exactly: nothing new.
            None if nth == total => (nth, pos),
            // Fewer entries than asked for: a new boot (or a confused verifier): from 0.
            None => return self.read_from_start(),
        };
        let text = String::from_utf8(bytes[from..].to_vec()).map_err(|_| {
            self.io(format!(
                "entries from {first_entry} on are not UTF-8 text; not an ASCII IMA log?"
            ))
        })?;
        if let Ok(mut m) = self.mark.lock() {
            *m = Mark {
                entries: total,
                offset: start_offset + pos as u64,
            };
        }
        Ok(Some(ImaSlice {
            first_entry,
            count: total - first_entry,
            text,
        }))
    }

    fn read_from_start(&self) -> Result<Option<ImaSlice>, LogError> {
        if let Ok(mut m) = self.mark.lock() {
            *m = Mark::default();
        }
        self.read_from(0)
    }
}

/// The binary UEFI event log, base64 as the wire wants it; `None` if there is none.
pub fn read_event_log(path: &Path) -> Result<Option<String>, LogError> {
    use base64::Engine;
    let io = |e: std::io::Error| LogError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    // securityfs reports size 0: read with a cap instead of trusting metadata.
    file.take(MAX_EVENT_LOG + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_EVENT_LOG {
        return Err(LogError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    Ok(Some(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

/// Boot time in seconds since the epoch (`btime` of /proc/stat, what rust-keylime sends as
/// `boottime`); 0 if unknown.
pub fn boottime() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(i: u64) -> String {
        format!("10 {:040x} ima-ng sha256:{:064x} /bin/f{i}\n", i, i)
    }

    fn append(path: &Path, from: u64, to: u64) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for i in from..to {
            f.write_all(line(i).as_bytes()).unwrap();
        }
    }

    #[test]
    fn serves_from_the_requested_entry_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ima");
        let log = ImaLog::new(&p);
        assert_eq!(log.read_from(0).unwrap(), None);
        append(&p, 0, 3);
        let s = log.read_from(0).unwrap().unwrap();
        assert_eq!((s.first_entry, s.count), (0, 3));
        assert_eq!(s.text, (0..3).map(line).collect::<String>());
        append(&p, 3, 5);
        let s = log.read_from(3).unwrap().unwrap();
        assert_eq!((s.first_entry, s.count), (3, 2));
        assert_eq!(s.text, line(3) + &line(4));
        // Nothing new.
        let s = log.read_from(5).unwrap().unwrap();
        assert_eq!((s.first_entry, s.count, s.text.as_str()), (5, 0, ""));
        // Not the remembered mark: read from the start, still right.
        let s = log.read_from(1).unwrap().unwrap();
        assert_eq!((s.first_entry, s.count), (1, 4));
    }

    #[test]
    fn a_shorter_log_is_served_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ima");
        append(&p, 0, 4);
        let log = ImaLog::new(&p);
        assert_eq!(log.read_from(0).unwrap().unwrap().count, 4);
        // "Reboot": a new, shorter log.
        std::fs::remove_file(&p).unwrap();
        append(&p, 0, 2);
        let s = log.read_from(4).unwrap().unwrap();
        assert_eq!((s.first_entry, s.count), (0, 2));
    }

    #[test]
    fn a_partial_last_line_is_held_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ima");
        append(&p, 0, 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"10 abc ima-ng")
            .unwrap();
        let s = ImaLog::new(&p).read_from(0).unwrap().unwrap();
        assert_eq!(s.count, 1);
    }

    #[test]
    fn event_log_is_base64_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bios");
        assert_eq!(read_event_log(&p).unwrap(), None);
        std::fs::write(&p, [1u8, 2, 3]).unwrap();
        assert_eq!(read_event_log(&p).unwrap().unwrap(), "AQID");
    }
}
