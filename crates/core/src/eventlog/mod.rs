//! Measured boot: the UEFI/TCG2 event log an agent sends as `mb_measurement_list`, replayed
//! against the quote and checked against a measured-boot policy (upstream keylime's `mba`).
//!
//! The flow in the verifier:
//!
//! 1. [`EventLog::from_base64`] parses the log strictly ([`parse`], [`body`]).
//! 2. [`replay::verify`] replays it into every bank the log carries and compares the PCRs the
//!    policy cares about ([`MbPolicy::pcrs_to_replay`]) with the verified quote. Only a log
//!    that replays to the quote says anything about the boot.
//! 3. [`MbPolicy::evaluate`] checks the events against the refstate.
//!
//! [`build::LogBuilder`] and [`sample::SampleBoot`] make logs for tests in any crate. Format
//! decisions are written down in `README.md` next to this file.

pub mod body;
pub mod build;
mod error;
pub mod parse;
pub mod policy;
mod reader;
pub mod replay;
pub mod sample;
pub mod siglist;
pub mod types;

pub use body::{EventBody, FirmwareBlob, ImageLoad, UefiVariable};
pub use error::{LogError, PolicyError};
pub use parse::{AlgorithmSize, Event, EventDigest, EventLog, SpecId};
pub use policy::{Check, MbPolicy, PolicyFailure, RefState};
pub use replay::{Replay, ReplayFailure};
pub use siglist::{SignatureData, SignatureList};
pub use types::{EventType, Guid};

#[cfg(test)]
mod tests;
