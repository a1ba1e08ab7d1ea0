//! vouch-verifier: the keylime-compatible verifier (REST API 2.x, `docs/keylime-wire.md` §5).
//!
//! Tenants add agents (AK, tpm_policy, V); the verifier polls each agent for TPM quotes,
//! checks them (AK signature, nonce, PCR 16 = H(NK), tpm_policy, the measured-boot event log
//! against its refstate, the IMA log against its runtime policy), delivers V after the first
//! good quote, and marks the agent INVALID_QUOTE / FAILED with a reason when it stops
//! attesting. State lives in SQLite, so a restart resumes every agent where it was.

pub mod admission;
pub mod agent_client;
pub mod appraisal;
pub mod config;
pub mod db;
pub mod error;
pub mod hint;
pub mod mb_check;
pub mod mb_policy;
pub mod named_policy;
pub mod policy_routes;
pub mod poller;
pub mod revocation;
pub mod routes;
pub mod runtime_check;
pub mod runtime_policy;
pub mod scheduler;
pub mod server;

pub use config::{Config, ConfigArgs};
pub use error::ApiError;
pub use server::Verifier;
