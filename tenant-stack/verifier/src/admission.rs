//! Checking an add body (`docs/keylime-wire.md` §5.1) before anything is stored.
//!
//! Upstream stores nearly anything and fails later (at the first quote, or with a Python
//! exception); Vouch refuses a body it could never attest with, naming the field. Refusals
//! never touch the database.

use crate::db::StoredAgent;
use crate::error::ApiError;
use crate::mb_policy;
use crate::named_policy::PolicyChoice;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::net::IpAddr;
use vouch_core::api::registrar::AgentId;
use vouch_core::api::verifier::{AddAgentRequest, OperationalState, TpmPolicy, MTLS_CERT_DISABLED};
use vouch_core::api::version::AGENT_SUPPORTED_VERSIONS;
use vouch_core::keylime::KeyShare;
use vouch_core::keys::VerifyingKey;
use vouch_core::tpm::Public;

/// `accept_tpm_hash_algs` names keylime knows (`common/algorithms.py:Hash`).
pub const HASH_ALGS: &[&str] = &["sha1", "sha256", "sha384", "sha512", "sm3_256"];
/// `accept_tpm_encryption_algs` (`Encrypt`, with the v2.5 key-size forms).
pub const ENC_ALGS: &[&str] = &[
    "rsa", "ecc", "rsa1024", "rsa2048", "rsa3072", "rsa4096", "ecc192", "ecc224", "ecc256",
    "ecc384", "ecc521",
];
/// `accept_tpm_signing_algs` (`Sign`).
pub const SIGN_ALGS: &[&str] = &["rsassa", "rsapss", "ecdsa", "ecdaa", "ecschnorr", "sm2"];

/// V is a 32-byte share (`K, V` random 32 bytes, §4.5).
pub const V_LEN: usize = 32;

fn check_algs(field: &'static str, list: &[String], known: &[&str]) -> Result<(), ApiError> {
    if list.is_empty() {
        return Err(ApiError::invalid(
            field,
            "empty list: no quote could ever be accepted",
        ));
    }
    if let Some(bad) = list.iter().find(|a| !known.contains(&a.as_str())) {
        return Err(ApiError::invalid(
            field,
            format!("unknown algorithm {bad:?} (known: {})", known.join(", ")),
        ));
    }
    Ok(())
}

/// Parse `ak_tpm` (base64 TPM2B_PUBLIC) into a key that can verify quotes: it must be a
/// restricted signing key (an unrestricted one could sign a forged TPMS_ATTEST).
pub fn parse_ak(ak_tpm: &str) -> Result<VerifyingKey, String> {
    let bytes = STANDARD
        .decode(ak_tpm.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let public = Public::from_tpm2b(&bytes).map_err(|e| format!("not a TPM2B_PUBLIC: {e}"))?;
    let a = public.attributes;
    if !(a.restricted() && a.sign()) {
        return Err(format!(
            "not a restricted signing key (objectAttributes 0x{:08x}); an AK must be restricted \
             so that it only signs TPM-generated attestations",
            a.0
        ));
    }
    VerifyingKey::from_public(&public).map_err(|e| format!("unusable key: {e}"))
}

fn check_host(ip: &str) -> Result<(), ApiError> {
    let ok_name = !ip.is_empty()
        && ip.len() <= 253
        && ip
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if ip.parse::<IpAddr>().is_ok() || ok_name {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "cloudagent_ip",
            format!("{ip:?} is neither an IP address nor a host name"),
        ))
    }
}

/// `mtls_cert`: a PEM certificate, or `"disabled"`/null for an agent serving plain HTTP.
///
/// With `enable_agent_mtls` on, `"disabled"`/null is refused as upstream refuses it
/// (`cloud_verifier_tornado.py`: 400 "mTLS certificate for agent is required!"); accepting it
/// would mean polling that agent over plain HTTP although the operator asked for mTLS.
/// Upstream exempts `supported_version` "1.0" and push mode; Vouch refuses 1.0 anyway (see
/// the `supported_version` check) and only pulls.
pub fn check_mtls_cert(mtls_cert: Option<&str>, enable_agent_mtls: bool) -> Result<(), ApiError> {
    match mtls_cert {
        None | Some(MTLS_CERT_DISABLED) if enable_agent_mtls => {
            let what = match mtls_cert {
                None => "mtls_cert is null: the agent registered no mTLS certificate",
                Some(_) => "mtls_cert is \"disabled\": the agent serves its API over plain HTTP",
            };
            Err(ApiError::MtlsCertRequired(format!(
                "{what}; start the agent with mTLS (vouch-agent: set trusted_client_ca), or set \
                 enable_agent_mtls = false on the verifier to attest agents over plain HTTP"
            )))
        }
        None | Some(MTLS_CERT_DISABLED) => Ok(()),
        Some(pem) if pem.trim_start().starts_with("-----BEGIN CERTIFICATE-----") => {
            vouch_tls::roots_from_pem(pem, "mtls_cert")
                .map(drop)
                .map_err(|e| {
                    ApiError::invalid("mtls_cert", format!("not a usable certificate: {e}"))
                })
        }
        Some(other) => Err(ApiError::invalid(
            "mtls_cert",
            format!(
                "expected a PEM certificate, \"disabled\" or null, got {:?}",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// An add body that passed every check: the record to store (state START) and its policies.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub agent: StoredAgent,
    pub runtime: PolicyChoice,
    pub mb: PolicyChoice,
}

/// Check the body; measured-boot refstates are loaded with `mb_engine`; with
/// `enable_agent_mtls` (the verifier's config key) the body must carry a PEM `mtls_cert`.
pub fn admit(
    id: &AgentId,
    req: AddAgentRequest,
    mb_engine: mb_policy::Engine,
    enable_agent_mtls: bool,
) -> Result<Admitted, ApiError> {
    if let Some(v) = &req.v {
        let why = |e: String| {
            ApiError::invalid(
                "v",
                format!(
                    "{e} (V must be base64 of exactly {V_LEN} bytes, or null without a payload)"
                ),
            )
        };
        let share = KeyShare::from_base64(v).map_err(|e| why(e.to_string()))?;
        let len = share.as_bytes().len();
        if len != V_LEN {
            return Err(why(format!("V is {len} bytes")));
        }
    }
    check_host(&req.cloudagent_ip)?;
    // Stored as the tenant's string, verbatim (status echoes it), once proven sane.
    let mask = TpmPolicy::parse(&req.tpm_policy)
        .and_then(|p| p.mask_pcrs())
        .map_err(|e| ApiError::invalid("tpm_policy", e.to_string()))?;
    let runtime = crate::runtime_policy::choose(
        id.as_str(),
        &req.runtime_policy_name,
        &req.runtime_policy,
        &req.runtime_policy_key,
        &req.ima_sign_verification_keys,
    )?;
    let mb = mb_policy::choose(
        id.as_str(),
        &req.mb_policy_name,
        req.mb_policy.as_deref(),
        mb_engine,
        &mask,
    )?;
    match serde_json::from_str::<serde_json::Value>(&req.metadata) {
        Ok(serde_json::Value::Object(_)) => {}
        _ => {
            return Err(ApiError::invalid(
                "metadata",
                format!(
                    "{:?} is not a JSON object string such as \"{{}}\"",
                    req.metadata
                ),
            ))
        }
    }
    check_algs("accept_tpm_hash_algs", &req.accept_tpm_hash_algs, HASH_ALGS)?;
    check_algs(
        "accept_tpm_encryption_algs",
        &req.accept_tpm_encryption_algs,
        ENC_ALGS,
    )?;
    check_algs(
        "accept_tpm_signing_algs",
        &req.accept_tpm_signing_algs,
        SIGN_ALGS,
    )?;
    parse_ak(&req.ak_tpm).map_err(|why| ApiError::invalid("ak_tpm", why))?;
    check_mtls_cert(req.mtls_cert.as_deref(), enable_agent_mtls)?;
    if let Some(v) = req.supported_version {
        if !AGENT_SUPPORTED_VERSIONS.contains(&v) {
            return Err(ApiError::invalid(
                "supported_version",
                format!(
                    "agent API {v} is not one this verifier speaks ({})",
                    AGENT_SUPPORTED_VERSIONS
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let agent = StoredAgent {
        agent_id: id.as_str().to_owned(),
        v: req.v,
        ip: req.cloudagent_ip,
        port: req.cloudagent_port.0,
        tpm_policy: req.tpm_policy,
        meta_data: req.metadata,
        accept_tpm_hash_algs: req.accept_tpm_hash_algs,
        accept_tpm_encryption_algs: req.accept_tpm_encryption_algs,
        accept_tpm_signing_algs: req.accept_tpm_signing_algs,
        ak_tpm: req.ak_tpm,
        mtls_cert: req.mtls_cert,
        supported_version: req.supported_version.map(|v| v.to_string()),
        revocation_key: req.revocation_key,
        state: OperationalState::Start,
        epoch: 0,
        public_key: None,
        v_delivered: false,
        hash_alg: String::new(),
        enc_alg: String::new(),
        sign_alg: String::new(),
        attestation_count: 0,
        last_received_quote: 0,
        last_successful_attestation: 0,
        tpm_clock: None,
        retry_count: 0,
        severity_level: None,
        last_event_id: None,
        failure_reason: None,
        runtime_policy_name: runtime.name().map(str::to_owned),
        ima_sign_verification_keys: req.ima_sign_verification_keys,
        ima_state: None,
        mb_policy_name: mb.name().map(str::to_owned),
    };
    Ok(Admitted { agent, runtime, mb })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn agent_mtls_on_requires_a_pem_mtls_cert() {
        for cert in [None, Some(MTLS_CERT_DISABLED)] {
            let e = check_mtls_cert(cert, true).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            let msg = e.to_string();
            assert!(
                msg.starts_with("mTLS certificate for agent is required! mtls_cert is "),
                "{msg}"
            );
            assert!(msg.contains("enable_agent_mtls = false"), "{msg}");
            // Off: plain HTTP is what the operator asked for.
            check_mtls_cert(cert, false).unwrap();
        }
        let e = check_mtls_cert(Some("bogus"), false).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Invalid agent data: mtls_cert: expected a PEM"));
        let e = check_mtls_cert(Some("-----BEGIN CERTIFICATE-----\nAAAA\n"), true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Invalid agent data: mtls_cert: not a usable certificate"),
            "{e}"
        );
    }
}
