//! vouch-registrar: the keylime-compatible registrar (REST API 2.x, `docs/keylime-wire.md` §3).
//!
//! Agents register their EK, EK certificate and AK; the registrar checks them, answers with a
//! MakeCredential `blob` only the TPM holding that EK and AK can open, and activates the agent
//! when it proves it did (`auth_tag`). Tenants and verifiers read the activated records.

pub mod config;
pub mod db;
pub mod error;
pub mod registration;
pub mod routes;
pub mod server;

pub use config::{Config, ConfigArgs};
pub use error::ApiError;
pub use server::Registrar;
