//! Enrollment decisions: what a registration must satisfy, how it changes the stored record,
//! and activation. Pure checks run on the request task ([`check_submission`]); the
//! read-compare-write steps ([`commit_registration`], [`activate`]) run inside one database
//! closure, so concurrent requests for one agent cannot interleave.

use crate::db::{self, AgentRow, DbError};
use crate::error::ApiError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rusqlite::Connection;
use std::time::SystemTime;
use vouch_core::api::enrollment::{make_enrollment, name_of_tpm2b_public, ActivationKey};
use vouch_core::api::registrar::{AgentId, AgentRecord, RegisterRequest};
use vouch_core::ekcert::{verify_ek_cert, EkCaStore};
use vouch_core::tpm::Public;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What the operator decided about registrations.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `Some` when `require_ek_cert`: EK certificates must chain to it.
    pub ek_ca: Option<EkCaStore>,
    pub allow_reregistration_with_new_keys: bool,
}

impl Policy {
    pub fn require_ek_cert(&self) -> bool {
        self.ek_ca.is_some()
    }
}

/// A field of a re-registration: absent keeps the stored value, present replaces it (even
/// with `null`), as upstream's `cast_changes` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update<T> {
    Keep,
    Set(T),
}

impl<T: Clone> Update<T> {
    fn from_wire(v: Option<T>) -> Self {
        v.map_or(Update::Keep, Update::Set)
    }
    fn apply(&self, stored: &T) -> T {
        match self {
            Update::Keep => stored.clone(),
            Update::Set(v) => v.clone(),
        }
    }
}

/// A registration whose keys and certificate passed every check that needs no stored state.
#[derive(Debug, Clone)]
pub struct Submission {
    pub agent_id: AgentId,
    /// Canonical base64 of the EK TPM2B_PUBLIC.
    pub ek_tpm: String,
    /// Canonical base64 DER of the EK certificate (`Set(None)` = explicit null).
    pub ekcert: Update<Option<String>>,
    pub aik_tpm: String,
    pub mtls_cert: Update<Option<String>>,
    pub ip: Update<Option<String>>,
    pub port: Update<Option<u16>>,
    /// Registration blob to return and key to store.
    pub blob: String,
    pub key: ActivationKey,
}

/// Upstream `Binary.cast`: strict base64 first, then hex (optional `0x`).
fn decode_binary(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    if let Ok(b) = B64.decode(text) {
        return Ok(b);
    }
    hex::decode(text.strip_prefix("0x").unwrap_or(text)).map_err(|_| {
        ApiError::InvalidRegistration(format!("{field} is neither valid base64 nor hex"))
    })
}

/// EK certificate as received: PEM (the first CERTIFICATE block of a chain) or base64 DER.
/// Returns the bytes `verify_ek_cert` accepts.
fn ekcert_input(text: &str) -> Result<Vec<u8>, ApiError> {
    if text.contains("-----BEGIN ") {
        Ok(text.as_bytes().to_vec())
    } else {
        decode_binary("ekcert", text.trim())
    }
}

/// Check everything that does not depend on the stored record; make the credential.
pub fn check_submission(
    policy: &Policy,
    agent_id: AgentId,
    req: RegisterRequest,
    now: SystemTime,
) -> Result<Submission, ApiError> {
    let invalid = ApiError::InvalidRegistration;
    let ek_text = req.ek_tpm.as_deref().ok_or_else(|| {
        invalid("ek_tpm is required (registration by IAK/IDevID alone is not supported)".into())
    })?;
    let ek_raw = decode_binary("ek_tpm", ek_text)?;
    let ek = Public::from_tpm2b(&ek_raw)
        .map_err(|e| invalid(format!("ek_tpm is not a valid TPM2B_PUBLIC: {e}")))?;
    if !(ek.attributes.restricted() && ek.attributes.decrypt() && !ek.attributes.sign()) {
        return Err(invalid(format!(
            "ek_tpm ({}) is not a restricted decryption key (objectAttributes 0x{:08x})",
            ek.describe(),
            ek.attributes.0
        )));
    }

    let aik_raw = decode_binary("aik_tpm", &req.aik_tpm)?;
    let (ak, _) = name_of_tpm2b_public(&aik_raw)
        .map_err(|e| invalid(format!("aik_tpm is not a valid TPM2B_PUBLIC: {e}")))?;
    if !(ak.attributes.restricted() && ak.attributes.sign() && !ak.attributes.decrypt()) {
        return Err(invalid(format!(
            "aik_tpm ({}) is not a restricted signing key (objectAttributes 0x{:08x}: restricted={}, sign={}, decrypt={})",
            ak.describe(),
            ak.attributes.0,
            ak.attributes.restricted(),
            ak.attributes.sign(),
            ak.attributes.decrypt()
        )));
    }

    let ekcert = match req.ekcert {
        None => Update::Keep,
        Some(None) => Update::Set(None),
        Some(Some(text)) => {
            let der = check_ek_cert(policy, &agent_id, &ekcert_input(&text)?, &ek, now)?;
            Update::Set(Some(B64.encode(der)))
        }
    };

    if let Some(Some(m)) = &req.mtls_cert {
        check_mtls_cert(m)?;
    }

    let enrollment = make_enrollment(&ek, &aik_raw).map_err(|e| invalid(e.to_string()))?;
    Ok(Submission {
        agent_id,
        ek_tpm: B64.encode(&ek_raw),
        ekcert,
        aik_tpm: B64.encode(&aik_raw),
        mtls_cert: Update::from_wire(req.mtls_cert),
        ip: Update::from_wire(req.ip),
        port: Update::from_wire(req.port),
        blob: enrollment.blob,
        key: enrollment.key,
    })
}

/// The EK certificate chains to the CA store (unless `require_ek_cert = false`) and certifies
/// exactly this EK. Returns its DER.
fn check_ek_cert(
    policy: &Policy,
    agent_id: &AgentId,
    input: &[u8],
    ek: &Public,
    now: SystemTime,
) -> Result<Vec<u8>, ApiError> {
    let invalid = ApiError::InvalidRegistration;
    if let Some(store) = &policy.ek_ca {
        let verified = verify_ek_cert(input, store, Some(ek), now)
            .map_err(|e| invalid(format!("ekcert: {e}")))?;
        tracing::info!(cert = %verified.id(), anchor = verified.anchor(), "EK certificate verified");
        return Ok(verified.der().to_vec());
    }
    // require_ek_cert = false: no chain check, but the certificate must still be an X.509
    // certificate of this EK (upstream `_check_key_against_cert` compares the SPKI).
    let der = if let Ok(text) = std::str::from_utf8(input).map(str::trim) {
        if text.starts_with("-----BEGIN") {
            vouch_core::der::pem_decode("CERTIFICATE", text)
                .map_err(|e| invalid(format!("ekcert: {e}")))?
        } else {
            input.to_vec()
        }
    } else {
        input.to_vec()
    };
    let der = vouch_core::ekcert::trim_der(&der)
        .map_err(|e| invalid(format!("ekcert: {e}")))?
        .to_vec();
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| invalid(format!("ekcert is not an X.509 certificate: {e}")))?;
    let ek_spki =
        vouch_core::der::spki(ek).map_err(|e| invalid(format!("ek_tpm public key: {e}")))?;
    if cert.public_key().raw != ek_spki.as_slice() {
        return Err(invalid(format!(
            "ekcert (subject {}) certifies a different public key than ek_tpm",
            cert.subject()
        )));
    }
    tracing::warn!(
        agent_id = %agent_id,
        "EK certificate chain NOT verified (require_ek_cert = false)"
    );
    Ok(der)
}

fn check_mtls_cert(text: &str) -> Result<(), ApiError> {
    if text == "disabled" {
        return Ok(());
    }
    let der = vouch_core::der::pem_decode("CERTIFICATE", text).map_err(|e| {
        ApiError::InvalidRegistration(format!(
            "mtls_cert must be a PEM certificate, \"disabled\" or null: {e}"
        ))
    })?;
    X509Certificate::from_der(&der).map_err(|e| {
        ApiError::InvalidRegistration(format!("mtls_cert is not an X.509 certificate: {e}"))
    })?;
    Ok(())
}

/// Store a checked registration, deciding against the stored record (runs on the DB thread).
///
/// Upstream semantics (`RegistrarAgent.update`): a different `ek_tpm`, `aik_tpm` or `ekcert`
/// (including `null` over a stored certificate) for an existing id → 403 unless the operator
/// allows it; otherwise `active := false`, `regcount += 1`, a new `key`, and the fields sent
/// replace the stored ones.
pub fn commit_registration(
    conn: &Connection,
    policy: &Policy,
    s: Submission,
) -> Result<String, ApiError> {
    let id = s.agent_id.as_str();
    let existing = db::get_agent(conn, id)?;
    let (old_ekcert, old_mtls, old_ip, old_port, old_regcount) = match &existing {
        Some(e) => (
            e.ekcert.clone(),
            e.mtls_cert.clone(),
            e.ip.clone(),
            e.port,
            e.regcount,
        ),
        None => (None, None, None, None, 0),
    };
    let mut changed = Vec::new();
    if let Some(e) = &existing {
        if e.ek_tpm != s.ek_tpm {
            changed.push("ek_tpm");
        }
        if let (Some(old), Update::Set(new)) = (&e.ekcert, &s.ekcert) {
            if new.as_ref() != Some(old) {
                changed.push("ekcert");
            }
        }
        if e.aik_tpm != s.aik_tpm {
            changed.push("aik_tpm");
        }
    }
    if !changed.is_empty() {
        if !policy.allow_reregistration_with_new_keys {
            tracing::warn!(
                changed = ?changed,
                "SECURITY: refused re-registration with a different TPM identity"
            );
            return Err(ApiError::IdentityChanged {
                agent_id: id.to_owned(),
                fields: changed,
            });
        }
        tracing::warn!(changed = ?changed, "re-registration with new keys (allowed by configuration)");
    }
    let ek_changed = changed.contains(&"ek_tpm");
    let ekcert = match (&s.ekcert, ek_changed) {
        // The stored certificate was checked against the old EK only.
        (Update::Keep, true) if old_ekcert.is_some() => {
            return Err(ApiError::InvalidRegistration(
                "ekcert must be sent again when the EK changes".into(),
            ))
        }
        (u, _) => u.apply(&old_ekcert),
    };
    if policy.require_ek_cert() && ekcert.is_none() {
        return Err(ApiError::InvalidRegistration(
            "ekcert is required: this registrar verifies EK certificates (require_ek_cert = true)"
                .into(),
        ));
    }
    if !policy.require_ek_cert() && ekcert.is_none() {
        tracing::warn!("agent registered without an EK certificate (require_ek_cert = false)");
    }
    let row = AgentRow {
        agent_id: id.to_owned(),
        ek_tpm: s.ek_tpm,
        ekcert,
        aik_tpm: s.aik_tpm,
        key: s.key.as_str().to_owned(),
        active: false,
        regcount: old_regcount.saturating_add(1),
        ip: s.ip.apply(&old_ip),
        port: s.port.apply(&old_port),
        mtls_cert: s.mtls_cert.apply(&old_mtls),
    };
    db::put_agent(conn, &row)?;
    tracing::info!(
        regcount = row.regcount,
        "agent registered, awaiting activation"
    );
    Ok(s.blob)
}

/// Check the activation proof (runs on the DB thread). Match → active. Mismatch → refused and
/// nothing changes. Upstream deletes the registration here; Vouch does not (README, "Activation").
pub fn activate(conn: &Connection, agent_id: &AgentId, auth_tag: &str) -> Result<(), ApiError> {
    let id = agent_id.as_str();
    let row = db::get_agent(conn, id)?.ok_or_else(|| ApiError::NotFound(id.to_owned()))?;
    let ok = ActivationKey::from_stored(&row.key)
        .map(|k| k.verify_auth_tag(id, auth_tag))
        .map_err(|_| DbError::Corrupt {
            agent_id: id.to_owned(),
            column: "key",
        })?;
    if ok {
        db::set_active(conn, id, true)?;
        tracing::info!("agent activated");
        Ok(())
    } else {
        tracing::warn!("SECURITY: wrong auth_tag; activation refused, registration kept");
        Err(ApiError::AuthTagMismatch {
            agent_id: id.to_owned(),
            tag: auth_tag.to_owned(),
        })
    }
}

/// The record `GET` returns: 404 unless registered *and* active.
pub fn show(conn: &Connection, agent_id: &AgentId) -> Result<AgentRecord, ApiError> {
    let id = agent_id.as_str();
    let row = db::get_agent(conn, id)?.ok_or_else(|| ApiError::NotFound(id.to_owned()))?;
    if !row.active {
        return Err(ApiError::NotActivated(id.to_owned()));
    }
    Ok(AgentRecord {
        agent_id: row.agent_id,
        ek_tpm: Some(row.ek_tpm),
        ekcert: row.ekcert,
        aik_tpm: row.aik_tpm,
        mtls_cert: row.mtls_cert,
        ip: row.ip,
        port: row.port,
        regcount: row.regcount,
    })
}
