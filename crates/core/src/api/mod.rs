//! keylime REST API 2.x wire types and encodings, shared by registrar, verifier, agent and CLI.
//! Reference: `docs/keylime-wire.md` (upstream keylime 7.14.3, with file:function citations).

pub mod agent;
pub mod binding;
pub mod enrollment;
pub mod envelope;
pub mod hint;
pub mod quote_string;
pub mod registrar;
pub mod verifier;
pub mod version;
