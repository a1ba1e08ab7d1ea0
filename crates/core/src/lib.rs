//! vouch-core: pure-Rust TPM 2.0 evidence handling for Vouch.
//!
//! Everything here verifies or constructs; nothing talks to a TPM. The verifier and registrar
//! depend only on this crate, so they carry no C TPM library.

pub mod api;
pub mod calendar;
pub mod credential;
pub mod der;
pub mod ekcert;
pub mod eventlog;
pub mod ima;
pub mod keylime;
pub mod keys;
pub mod pyjson;
pub mod quote;
pub mod revocation;
pub mod tools;
pub mod tpm;
