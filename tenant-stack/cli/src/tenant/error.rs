//! Why a tenant operation failed, naming the agent and the party at fault.

use super::http::HttpError;
use super::payload::PayloadError;
use super::policies::PolicyFileError;
use thiserror::Error;
use vouch_core::api::binding::BindingError;
use vouch_core::api::quote_string::QuoteStringError;
use vouch_core::api::registrar::AgentIdError;
use vouch_core::api::verifier::TpmPolicyError;
use vouch_core::ekcert::EkCertError;
use vouch_core::keylime::KeylimeError;
use vouch_core::quote::QuoteError;

#[derive(Debug, Error)]
pub enum TenantError {
    #[error(transparent)]
    AgentId(#[from] AgentIdError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Policy(#[from] TpmPolicyError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    PolicyFile(#[from] PolicyFileError),
    #[error("TLS directory {dir}: {cause} (create it with `vouch certs init --dir {dir}`, or set --tls-dir / VOUCH_TLS_DIR)")]
    Tls { dir: String, cause: String },
    #[error("EK CA directory {dir}: {cause} (or pass --skip-ek-cert-check to trust the registrar's check)")]
    EkCaStore { dir: String, cause: EkCertError },
    #[error("keylime crypto: {0}")]
    Crypto(#[from] KeylimeError),

    #[error("registrar record of agent {agent}: {field}: {why}")]
    Record {
        agent: String,
        field: &'static str,
        why: String,
    },
    #[error("agent {agent} has no EK certificate in the registrar, so its TPM cannot be checked against the EK CAs (pass --skip-ek-cert-check to accept it)")]
    NoEkCert { agent: String },
    #[error("agent {agent}'s {cause}")]
    EkCert { agent: String, cause: EkCertError },
    #[error("agent {agent}'s address is unknown: the registrar has no ip/port for it; pass --ip and --port")]
    NoAddress { agent: String },
    #[error("agent {agent}'s registered mtls_cert cannot be used for mTLS: {cause}")]
    AgentMtls { agent: String, cause: String },

    #[error("agent {agent}'s identity quote is malformed: {cause}")]
    QuoteFormat {
        agent: String,
        cause: QuoteStringError,
    },
    #[error("agent {agent}'s quote is signed by a key other than the AK the registrar holds for it ({cause}); the host at that address is not the TPM that enrolled as {agent}")]
    QuoteWrongAk { agent: String, cause: QuoteError },
    #[error("agent {agent}'s quote is for nonce {found}, not the fresh nonce {expected} we sent: a replayed or relayed quote")]
    QuoteReplay {
        agent: String,
        expected: String,
        found: String,
    },
    #[error("agent {agent}'s identity quote does not verify: {cause}")]
    Quote { agent: String, cause: QuoteError },
    #[error("agent {agent}'s identity quote: {why}")]
    QuoteContent { agent: String, why: String },
    #[error("agent {agent}'s node key is not the one bound into its quote: {cause}")]
    Binding { agent: String, cause: BindingError },

    #[error("agent {agent} did not prove it holds the bootstrap key within {seconds} s: {last}")]
    VerifyTimeout {
        agent: String,
        seconds: u64,
        last: String,
    },
}
