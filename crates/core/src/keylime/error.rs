//! Errors of the keylime bootstrap-key crypto.

use crate::der::DerError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KeylimeError {
    #[error(
        "{what} is {len} bytes; keylime keys are AES-GCM keys of 16 or 32 bytes (the tenant \
         generates 32)"
    )]
    KeyLength { what: &'static str, len: usize },

    #[error(
        "cannot combine key shares of different lengths (U is {u} bytes, V is {v} bytes): they \
         were not split from the same bootstrap key"
    )]
    ShareLengthMismatch { u: usize, v: usize },

    #[error(
        "encrypted payload is {len} bytes, shorter than keylime's 16-byte IV plus 16-byte GCM \
         tag: it is truncated or not a keylime payload"
    )]
    PayloadTooShort { len: usize },

    #[error(
        "encrypted payload failed AES-GCM authentication: it was encrypted under a different \
         bootstrap key, or it was modified in transit"
    )]
    PayloadAuthentication,

    #[error("AES-GCM encryption of the payload failed (payload too large for one GCM message?)")]
    PayloadEncryption,

    #[error("{field} is not valid standard base64: {cause}")]
    Base64 {
        field: &'static str,

        cause: base64::DecodeError,
    },

    #[error("{field} is not valid hex: {cause}")]
    Hex {
        field: &'static str,

        cause: hex::FromHexError,
    },

    #[error("HMAC is {len} bytes; keylime's HMAC-SHA384 is 48 bytes (96 hex characters)")]
    HmacLength { len: usize },

    #[error(
        "challenge {challenge:?} is empty or not strictly alphanumeric, which the keylime agent \
         rejects"
    )]
    Challenge { challenge: String },

    #[error("node key PEM is neither a 'PUBLIC KEY' nor an 'RSA PUBLIC KEY' block: {0}")]
    NodeKeyPem(DerError),

    #[error("node key is not an RSA public key of 2048 to 8192 bits: {reason}")]
    NodeKeyRejected { reason: String },

    #[error("could not generate the RSA-2048 node key")]
    NodeKeyGeneration,

    #[error("RSA-OAEP (SHA-1, MGF1-SHA-1) encryption of a key share to the node key failed")]
    ShareEncryption,

    #[error(
        "RSA-OAEP (SHA-1, MGF1-SHA-1) decryption of a key share failed: it was encrypted to a \
         different node key (did the agent restart?), with other OAEP parameters, or corrupted"
    )]
    ShareDecryption,

    #[error("system random number generator failed")]
    Random,
}
