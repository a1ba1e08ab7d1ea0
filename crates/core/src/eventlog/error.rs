//! Errors of event-log parsing and of measured-boot policy loading.

use crate::tpm::wire::{WireError, WireReason};
use thiserror::Error;

/// The binary event log could not be parsed. Nothing of a log that fails here is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogError {
    #[error("the measured boot event log is empty")]
    Empty,

    #[error("the measured boot event log is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },

    #[error("the measured boot event log (mb_measurement_list) is not valid base64: {cause}")]
    Base64 { cause: base64::DecodeError },

    #[error("the measured boot event log has more than {max} events")]
    TooManyEvents { max: usize },

    /// `event` counts as tpm2_eventlog's `EventNum` does: 0 is the Spec ID event.
    #[error("event {event}: {field} at byte {offset}: {reason}")]
    Malformed {
        event: usize,
        field: String,
        offset: usize,
        reason: WireReason,
    },
}

impl LogError {
    pub(crate) fn at(event: usize, e: WireError) -> Self {
        LogError::Malformed {
            event,
            field: e.what,
            offset: e.offset,
            reason: e.reason,
        }
    }

    /// Index of the offending event, when the error is about one.
    pub fn event(&self) -> Option<usize> {
        match self {
            LogError::Malformed { event, .. } => Some(*event),
            _ => None,
        }
    }
}

/// A measured-boot policy (refstate) could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error(
        "unknown measured boot policy name {0:?}: Vouch knows \"accept-all\", \"reject-all\" and \
         \"example\" (upstream keylime's refstate policy)"
    )]
    UnknownName(String),

    /// serde_json's message names the offending key or value and its line and column.
    #[error("measured boot refstate is not valid: {0}")]
    Json(String),

    #[error("measured boot refstate: {path}: {reason}")]
    Invalid { path: String, reason: String },
}
