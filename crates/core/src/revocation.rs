//! Signed revocation notices: what a verifier sends to the other agents when one agent fails
//! attestation (`POST /vX/notifications/revocation`, docs/keylime-wire.md §4.7), and how an
//! agent checks one before it runs any revocation action.
//!
//! # Wire format (upstream keylime 7.14.3)
//!
//! The body is [`RevocationNotice`] `{"msg": "<JSON text>", "signature": "<base64>"}`
//! (`cloud_verifier_common.py:prepare_error`). `msg` is `json.dumps` of
//!
//! ```text
//! {"type": "revocation", "ip": ..., "agent_id": ..., "port": ..., "tpm_policy": ...,
//!  "meta_data": ..., "event_time": "Mon Nov 23 17:05:01 2026"
//!  [, "event_id": ..., "severity_label": ..., "context": ...]}
//! ```
//!
//! in that key order, with Python's separators (`", "`, `": "`) and `ensure_ascii`
//! ([`RevocationMessage::to_json`] writes it the same way). `signature` is
//! `crypto.rsa_sign`: RSA-PSS with SHA-256, MGF1-SHA-256 and the *maximum* salt length
//! (`PSS.MAX_LENGTH`, 222 bytes for RSA-2048), over the bytes of `msg`, base64-encoded. The key
//! is the `RevocationNotifier` key the tenant created with `--cert` and sent to the verifier as
//! `revocation_key`; agents verify with `RevocationNotifier-cert.crt` from their payload
//! (rust-keylime `revocation.rs:process_revocation`, `crypto.rs:asym_verify` with
//! `RsaPssSaltlen::MAXIMUM_LENGTH`). Upstream sends `signature: ""` when the verifier has no
//! revocation key; [`verify_notice`] refuses such a notice, and `"none"` too.
//!
//! # Replay protection (Vouch addition, wire-compatible)
//!
//! Upstream checks only the signature, so a recorded notice can be posted again and again, and
//! every delivery runs the revocation actions anew. Vouch closes that in two halves:
//!
//! * **Sender** ([`RevocationMessage::revocation`]): after upstream's fields the message gets two
//!   more, `"notice_id"` (128 random bits, hex) and `"issued_at"` (Unix seconds). Extra keys are
//!   harmless to upstream agents: rust-keylime parses `msg` as a generic JSON value and hands it
//!   to the actions, and Python actions read only the keys they know. The id makes every genuine
//!   notice distinct, even two for the same event within one second.
//! * **Receiver** (the agent's seen-store, `vouch-agent` `revocation.rs`): a notice is
//!   identified by [`VerifiedNotice::replay_id`], the SHA-256 of the signed `msg` bytes, so
//!   the id covers `notice_id` when present and the whole message when not (a notice from an
//!   upstream verifier is still refused the second time it arrives byte for byte). After the
//!   signature has verified, and *before* any action runs, the agent records the id in a small
//!   file in its state directory (atomic rename) and refuses any notice whose id is already
//!   there. The file is bounded: when it is full the oldest id is dropped and its `issued_at`
//!   becomes the store's *horizon*; a notice with an `issued_at` at or before the horizon is
//!   refused as too old to be checked, so an evicted notice cannot be replayed either. Only
//!   notices without `issued_at` (upstream verifiers) fall back to the id check alone.
//!
//! Only a signed and verified notice reaches the store, so unsigned traffic cannot fill it.

use crate::der::pem_decode;
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{
    RsaParameters, RsaPssSaltLength, RsaSignatureEncoding, UnparsedPublicKey,
    RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256,
};
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

pub use crate::api::agent::RevocationNotice;

/// `type` of a revocation (upstream's other value is `comm_error`).
pub const TYPE_REVOCATION: &str = "revocation";
/// The file name of the notifier certificate in the agent's payload (tenant `--cert`).
pub const NOTIFIER_CERT: &str = "RevocationNotifier-cert.crt";

/// `crypto.rsa_sign`: PSS with the largest salt the key allows.
const SIGN_PSS_MAX: RsaSignatureEncoding =
    RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
/// `crypto.rsa_verify` / rust-keylime `asym_verify`: the salt must have that length.
const VERIFY_PSS_MAX: RsaParameters =
    RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
/// Signature values upstream uses for "not signed".
const UNSIGNED: [&str; 2] = ["", "none"];

#[derive(Debug, Error)]
pub enum RevocationError {
    #[error(
        "revocation notice body is not a JSON object with string fields \"msg\" and \
         \"signature\": {cause}"
    )]
    Body { cause: serde_json::Error },

    #[error(
        "revocation notice is unsigned (signature {signature:?}): the verifier holds no \
         revocation key for the failed agent (the tenant sends one with a --cert package); refused"
    )]
    Unsigned { signature: String },

    #[error("revocation notice signature is not valid standard base64: {cause}")]
    SignatureBase64 { cause: base64::DecodeError },

    #[error(
        "revocation notice signature does not verify with the notifier certificate ({subject}): \
         the notice was forged or modified, or signed with another RevocationNotifier key than \
         the one this agent's payload trusts"
    )]
    BadSignature { subject: String },

    #[error("revocation notifier certificate: {reason}")]
    Certificate { reason: String },

    #[error(
        "revocation notifier certificate ({subject}) holds a {algorithm} key; revocation notices \
         are RSA-PSS signatures, so it must be an RSA key of 2048 to 8192 bits"
    )]
    NotRsa { subject: String, algorithm: String },

    #[error(
        "revocation notice \"msg\" is not the JSON object upstream's prepare_error writes: {cause}"
    )]
    Message { cause: serde_json::Error },

    #[error("revocation signing key: {reason}")]
    Key { reason: String },

    #[error("RSA-PSS signing of the revocation notice failed")]
    Sign,

    #[error("system random number generator failed")]
    Random,
}

pub type Result<T, E = RevocationError> = std::result::Result<T, E>;

/// The failure event upstream adds when it knows one (`failure.py:Event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEvent {
    /// e.g. `ima.validation.ima-ng.not_in_allowlist`.
    pub event_id: String,
    /// e.g. `high`.
    pub severity_label: String,
    /// `json.dumps` of the event context, as a string.
    pub context: String,
}

/// The content of `msg`. Field order is upstream's key order; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevocationMessage {
    /// `revocation` or `comm_error`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub ip: String,
    pub agent_id: String,
    /// An integer on the wire; a numeric string is accepted too.
    #[serde(default, deserialize_with = "lenient_port")]
    pub port: u16,
    /// What the verifier stored for the agent; upstream: the tenant's JSON text.
    #[serde(default)]
    pub tpm_policy: Value,
    /// Upstream: the tenant's metadata JSON text (`{"cert_serial": …, "subject": …}`).
    #[serde(default)]
    pub meta_data: Value,
    /// `time.asctime()`, e.g. `Mon Nov 23 17:05:01 2026`.
    #[serde(default)]
    pub event_time: String,
    #[serde(flatten)]
    pub event: Option<RevocationEvent>,
    /// Vouch: unique per notice (replay protection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_id: Option<String>,
    /// Vouch: Unix seconds when the notice was made (replay horizon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
}

fn lenient_port<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u16, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| serde::de::Error::custom(format!("port {n} is not a TCP port"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("port {s:?} is not a TCP port"))),
        other => Err(serde::de::Error::custom(format!(
            "port {other} is not a TCP port"
        ))),
    }
}

impl RevocationMessage {
    /// A `revocation` notice about `agent_id` made now, with a fresh `notice_id`.
    pub fn revocation(
        agent_id: &str,
        ip: &str,
        port: u16,
        tpm_policy: Value,
        meta_data: Value,
    ) -> Result<RevocationMessage> {
        Self::revocation_at(agent_id, ip, port, tpm_policy, meta_data, SystemTime::now())
    }

    /// As [`Self::revocation`], at `now`.
    pub fn revocation_at(
        agent_id: &str,
        ip: &str,
        port: u16,
        tpm_policy: Value,
        meta_data: Value,
        now: SystemTime,
    ) -> Result<RevocationMessage> {
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| RevocationError::Random)?;
        Ok(RevocationMessage {
            kind: TYPE_REVOCATION.to_owned(),
            ip: ip.to_owned(),
            agent_id: agent_id.to_owned(),
            port,
            tpm_policy,
            meta_data,
            event_time: asctime(now),
            event: None,
            notice_id: Some(hex::encode(id)),
            issued_at: Some(unix_seconds(now)),
        })
    }

    /// Attach the failure event (upstream's `event_id`, `severity_label`, `context`).
    pub fn with_event(mut self, event: RevocationEvent) -> RevocationMessage {
        self.event = Some(event);
        self
    }

    /// `json.dumps` of the message as upstream writes it: Python separators, `ensure_ascii`.
    pub fn to_json(&self) -> String {
        python_json(self)
    }
}

/// Serialize like Python's `json.dumps(obj)` with default arguments.
pub use crate::pyjson::to_string as python_json;

/// Python's `time.asctime()` for `t` in UTC: `Mon Nov  3 17:05:01 2026` (day padded to width 3
/// with the separating space, as CPython's `"%s %s%3d %.2d:%.2d:%.2d %d"`). Upstream uses the
/// verifier host's local time; Vouch writes UTC so the text does not depend on the host.
pub fn asctime(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_seconds(t);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = crate::calendar::civil_from_days(days);
    format!(
        "{} {}{:3} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The RSA key a verifier signs notices with (upstream: the agent's `revocation_key`).
pub struct RevocationSigningKey {
    key: KeyPair,
}

impl std::fmt::Debug for RevocationSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationSigningKey")
            .field("bits", &(self.key.public_modulus_len() * 8))
            .finish_non_exhaustive()
    }
}

impl RevocationSigningKey {
    /// From a PEM `PRIVATE KEY` (PKCS#8, what upstream's `keylime_ca` and the tenant write) or
    /// `RSA PRIVATE KEY` (PKCS#1). Encrypted keys are refused.
    pub fn from_pem(pem: &str) -> Result<RevocationSigningKey> {
        let bad = |reason: String| RevocationError::Key { reason };
        let key = if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(bad(
                "the PEM key is encrypted; upstream's revocation_key is an unencrypted PKCS#8 key"
                    .into(),
            ));
        } else if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            let der = pem_decode("RSA PRIVATE KEY", pem).map_err(|e| bad(e.to_string()))?;
            KeyPair::from_der(&der)
                .map_err(|e| bad(format!("not a usable PKCS#1 RSA private key: {e}")))?
        } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
            let der = pem_decode("PRIVATE KEY", pem).map_err(|e| bad(e.to_string()))?;
            KeyPair::from_pkcs8(&der).map_err(|e| {
                bad(format!(
                    "not a usable PKCS#8 RSA private key of 2048 to 8192 bits: {e}"
                ))
            })?
        } else {
            return Err(bad(
                "no '-----BEGIN PRIVATE KEY-----' or '-----BEGIN RSA PRIVATE KEY-----' block"
                    .into(),
            ));
        };
        Ok(RevocationSigningKey { key })
    }

    /// `crypto.rsa_sign(key, bytes)` before base64: RSA-PSS-SHA256, maximum salt.
    pub fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&SIGN_PSS_MAX, &SystemRandom::new(), bytes, &mut sig)
            .map_err(|_| RevocationError::Sign)?;
        Ok(sig)
    }
}

/// Sign `message` as `prepare_error` does: `msg` = [`RevocationMessage::to_json`].
pub fn sign_message(
    message: &RevocationMessage,
    key: &RevocationSigningKey,
) -> Result<RevocationNotice> {
    sign_msg(&message.to_json(), key)
}

/// Sign an already serialized `msg`.
pub fn sign_msg(msg: &str, key: &RevocationSigningKey) -> Result<RevocationNotice> {
    let sig = key.sign(msg.as_bytes())?;
    Ok(RevocationNotice {
        msg: msg.to_owned(),
        signature: base64::engine::general_purpose::STANDARD.encode(sig),
    })
}

/// Parse the body of `POST /vX/notifications/revocation`.
pub fn parse_notice(body: &[u8]) -> Result<RevocationNotice> {
    serde_json::from_slice(body).map_err(|cause| RevocationError::Body { cause })
}

/// The public half of the notifier certificate, ready to verify notices.
#[derive(Debug, Clone)]
pub struct NotifierKey {
    /// PKCS#1 RSAPublicKey.
    rsa_public: Vec<u8>,
    subject: String,
}

impl NotifierKey {
    /// From `RevocationNotifier-cert.crt` (PEM). Only the key is used: the certificate is
    /// trusted because it came inside the encrypted payload, as upstream trusts it.
    pub fn from_cert_pem(pem: &str) -> Result<NotifierKey> {
        let bad = |reason: String| RevocationError::Certificate { reason };
        let der = pem_decode("CERTIFICATE", pem).map_err(|e| bad(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
        let subject = cert.subject().to_string();
        let spki = cert.public_key();
        let oid = spki.algorithm.algorithm.to_id_string();
        if oid != "1.2.840.113549.1.1.1" {
            return Err(RevocationError::NotRsa {
                subject,
                algorithm: oid,
            });
        }
        Ok(NotifierKey {
            rsa_public: spki.subject_public_key.data.to_vec(),
            subject,
        })
    }

    /// The certificate's subject, for messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Check `notice` and parse its message; see [`verify_notice`].
    pub fn verify(&self, notice: &RevocationNotice) -> Result<VerifiedNotice> {
        let signature = notice.signature.trim();
        if UNSIGNED.contains(&signature.to_ascii_lowercase().as_str()) {
            return Err(RevocationError::Unsigned {
                signature: notice.signature.clone(),
            });
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .map_err(|cause| RevocationError::SignatureBase64 { cause })?;
        UnparsedPublicKey::new(&VERIFY_PSS_MAX, &self.rsa_public)
            .verify(notice.msg.as_bytes(), &sig)
            .map_err(|_| RevocationError::BadSignature {
                subject: self.subject.clone(),
            })?;
        let message = serde_json::from_str(&notice.msg)
            .map_err(|cause| RevocationError::Message { cause })?;
        Ok(VerifiedNotice {
            replay_id: hex::encode(digest::digest(&digest::SHA256, notice.msg.as_bytes())),
            msg: notice.msg.clone(),
            message,
        })
    }
}

/// Verify `notice` against the notifier certificate `cert_pem`: refuses unsigned notices
/// (`""`, `"none"`), bad base64, a signature that does not verify, and a `msg` that is not
/// upstream's message object (checked only after the signature).
pub fn verify_notice(notice: &RevocationNotice, cert_pem: &str) -> Result<VerifiedNotice> {
    NotifierKey::from_cert_pem(cert_pem)?.verify(notice)
}

/// A notice whose signature verified. Only [`NotifierKey::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedNotice {
    msg: String,
    message: RevocationMessage,
    replay_id: String,
}

impl VerifiedNotice {
    /// `msg` exactly as signed (what revocation actions get as their JSON file).
    pub fn msg(&self) -> &str {
        &self.msg
    }

    pub fn message(&self) -> &RevocationMessage {
        &self.message
    }

    /// Lowercase hex SHA-256 of the signed `msg` bytes: the id the replay store keeps.
    pub fn replay_id(&self) -> &str {
        &self.replay_id
    }

    /// `issued_at` when the sender wrote one (Vouch verifiers do, upstream does not).
    pub fn issued_at(&self) -> Option<u64> {
        self.message.issued_at
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::der::pem_encode;
    use aws_lc_rs::encoding::AsDer;
    use rcgen::{CertificateParams, DnType, PublicKeyData, SignatureAlgorithm};
    use serde_json::json;
    use std::path::PathBuf;
    use std::time::Duration;

    /// RSA-2048 key as PKCS#8 PEM, its PKCS#1 PEM, and a certificate for it (signed by a
    /// throw-away ECDSA issuer: only the subject key matters to notice verification).
    struct Notifier {
        pkcs8_pem: String,
        pkcs1_pem: String,
        cert_pem: String,
    }

    struct RsaPub(Vec<u8>);
    impl PublicKeyData for RsaPub {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &SignatureAlgorithm {
            &rcgen::PKCS_RSA_SHA256
        }
    }

    /// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo (the OCTET STRING after version and
    /// algorithm), for the PKCS#1 test.
    fn pkcs1_from_pkcs8(p8: &[u8]) -> Vec<u8> {
        fn tlv(b: &[u8]) -> (usize, usize) {
            // (header length, content length)
            if b[1] < 0x80 {
                (2, b[1] as usize)
            } else {
                let n = (b[1] & 0x7f) as usize;
                let len = b[2..2 + n]
                    .iter()
                    .fold(0usize, |a, &x| (a << 8) | x as usize);
                (2 + n, len)
            }
        }
        let (h, _) = tlv(p8);
        let mut rest = &p8[h..];
        for _ in 0..2 {
            let (h, l) = tlv(rest);
            rest = &rest[h + l..];
        }
        assert_eq!(rest[0], 0x04);
        let (h, l) = tlv(rest);
        rest[h..h + l].to_vec()
    }

    fn notifier() -> Notifier {
        let key = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let p8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let p8 = p8.as_ref().to_vec();
        let public = RsaPub(
            aws_lc_rs::signature::KeyPair::public_key(&key)
                .as_ref()
                .to_vec(),
        );
        let issuer_key = rcgen::KeyPair::generate().unwrap();
        let mut ip = CertificateParams::new(vec![]).unwrap();
        ip.distinguished_name.push(DnType::CommonName, "Test CA");
        let issuer = ip.self_signed(&issuer_key).unwrap();
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "RevocationNotifier");
        let cert = p.signed_by(&public, &issuer, &issuer_key).unwrap();
        Notifier {
            pkcs8_pem: pem_encode("PRIVATE KEY", &p8),
            pkcs1_pem: pem_encode("RSA PRIVATE KEY", &pkcs1_from_pkcs8(&p8)),
            cert_pem: cert.pem(),
        }
    }

    fn message() -> RevocationMessage {
        RevocationMessage::revocation_at(
            "d432fbb3-d2f1-4a97-9ef7-75bd81c00000",
            "10.0.0.7",
            9002,
            json!("{\"mask\": \"0x408000\"}"),
            json!("{\"cert_serial\": 2, \"subject\": \"O=Vouch,CN=d432fbb3\"}"),
            UNIX_EPOCH + Duration::from_secs(1_795_453_501),
        )
        .unwrap()
    }

    #[test]
    fn asctime_matches_python() {
        // python3 -c 'import time; print(time.asctime(time.gmtime(1795453501)))'
        let t = |s| asctime(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(1_795_453_501), "Mon Nov 23 17:05:01 2026");
        assert_eq!(t(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(t(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(t(1_709_251_199), "Thu Feb 29 23:59:59 2024");
    }

    #[test]
    fn message_is_written_as_python_json_dumps() {
        let m = message().with_event(RevocationEvent {
            event_id: "ima.validation.ima-ng.not_in_allowlist".into(),
            severity_label: "high".into(),
            context: "{\"message\": \"File not found in allowlist: /usr/bin/caf\u{e9}\"}".into(),
        });
        let id = m.notice_id.clone().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(
            m.to_json(),
            format!(
                "{{\"type\": \"revocation\", \"ip\": \"10.0.0.7\", \"agent_id\": \
                 \"d432fbb3-d2f1-4a97-9ef7-75bd81c00000\", \"port\": 9002, \"tpm_policy\": \
                 \"{{\\\"mask\\\": \\\"0x408000\\\"}}\", \"meta_data\": \"{{\\\"cert_serial\\\": 2, \
                 \\\"subject\\\": \\\"O=Vouch,CN=d432fbb3\\\"}}\", \"event_time\": \"Mon Nov 23 \
                 17:05:01 2026\", \"event_id\": \"ima.validation.ima-ng.not_in_allowlist\", \
                 \"severity_label\": \"high\", \"context\": \"{{\\\"message\\\": \\\"File not \
                 found in allowlist: /usr/bin/caf\\u00e9\\\"}}\", \"notice_id\": \"{id}\", \
                 \"issued_at\": 1795453501}}"
            )
        );
        assert_eq!(
            python_json(&json!(["😀", [1, 2]])),
            "[\"\\ud83d\\ude00\", [1, 2]]"
        );
        // And it reads back.
        let back: RevocationMessage = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn signed_notice_verifies_with_pkcs8_and_pkcs1_keys() {
        let n = notifier();
        for pem in [&n.pkcs8_pem, &n.pkcs1_pem] {
            let key = RevocationSigningKey::from_pem(pem).unwrap();
            let m = message();
            let notice = sign_message(&m, &key).unwrap();
            let body = serde_json::to_vec(&notice).unwrap();
            let verified = verify_notice(&parse_notice(&body).unwrap(), &n.cert_pem).unwrap();
            assert_eq!(verified.message(), &m);
            assert_eq!(verified.msg(), m.to_json());
            assert_eq!(verified.issued_at(), Some(1_795_453_501));
            assert_eq!(verified.replay_id().len(), 64);
            // Maximum salt: two signatures of the same text differ (random salt) and are
            // 256 bytes.
            let again = sign_message(&m, &key).unwrap();
            assert_ne!(again.signature, notice.signature);
        }
    }

    #[test]
    fn refusals_are_precise() {
        let n = notifier();
        let key = RevocationSigningKey::from_pem(&n.pkcs8_pem).unwrap();
        let good = sign_message(&message(), &key).unwrap();

        for sig in ["", "none", "None"] {
            let notice = RevocationNotice {
                msg: good.msg.clone(),
                signature: sig.into(),
            };
            assert!(
                matches!(
                    verify_notice(&notice, &n.cert_pem),
                    Err(RevocationError::Unsigned { .. })
                ),
                "{sig:?}"
            );
        }
        let bad_b64 = RevocationNotice {
            msg: good.msg.clone(),
            signature: "not*base64".into(),
        };
        assert!(matches!(
            verify_notice(&bad_b64, &n.cert_pem),
            Err(RevocationError::SignatureBase64 { .. })
        ));
        let tampered = RevocationNotice {
            msg: good.msg.replace("10.0.0.7", "10.0.0.8"),
            signature: good.signature.clone(),
        };
        let e = verify_notice(&tampered, &n.cert_pem).unwrap_err();
        assert!(matches!(e, RevocationError::BadSignature { .. }), "{e}");
        assert!(e.to_string().contains("RevocationNotifier"), "{e}");

        // Another notifier's certificate.
        let other = notifier();
        assert!(matches!(
            verify_notice(&good, &other.cert_pem),
            Err(RevocationError::BadSignature { .. })
        ));

        // Signed but not a message.
        let junk = sign_msg("[1, 2]", &key).unwrap();
        assert!(matches!(
            verify_notice(&junk, &n.cert_pem),
            Err(RevocationError::Message { .. })
        ));

        // A digest-length salt is not upstream's and is refused.
        let kp = KeyPair::from_pkcs8(&pem_decode("PRIVATE KEY", &n.pkcs8_pem).unwrap()).unwrap();
        let mut sig = vec![0; kp.public_modulus_len()];
        kp.sign(
            &RSA_PSS_SHA256,
            &SystemRandom::new(),
            good.msg.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let short_salt = RevocationNotice {
            msg: good.msg.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(sig),
        };
        assert!(matches!(
            verify_notice(&short_salt, &n.cert_pem),
            Err(RevocationError::BadSignature { .. })
        ));

        assert!(matches!(
            parse_notice(b"{\"msg\": 1}"),
            Err(RevocationError::Body { .. })
        ));
        assert!(matches!(
            verify_notice(&good, "not a certificate"),
            Err(RevocationError::Certificate { .. })
        ));
        assert!(matches!(
            RevocationSigningKey::from_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n"),
            Err(RevocationError::Key { .. })
        ));
    }

    #[test]
    fn upstream_messages_without_vouch_fields_parse() {
        let m: RevocationMessage = serde_json::from_str(
            r#"{"type": "revocation", "ip": "127.0.0.1", "agent_id": "a", "port": "9002", "tpm_policy": "{}", "meta_data": "{}", "event_time": "Mon Nov 23 17:27:59 2026"}"#,
        )
        .unwrap();
        assert_eq!(m.port, 9002);
        assert_eq!(m.notice_id, None);
        assert_eq!(m.issued_at, None);
        assert_eq!(m.event, None);
    }

    fn python() -> PathBuf {
        std::env::var_os("VOUCH_KEYLIME_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/vouch/keylime-venv/bin/python3"))
    }

    fn run_python(script: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(python())
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): install keylime 7.14.3 into /opt/vouch/keylime-venv, \
                     or point VOUCH_KEYLIME_PYTHON at a python3 that imports keylime",
                    python().display()
                )
            });
        assert!(
            out.status.success(),
            "upstream python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Upstream's `prepare_error` signs, Vouch verifies; Vouch signs, upstream's
    /// `crypto.rsa_verify` accepts; and the JSON text is byte for byte `json.dumps`'.
    #[test]
    fn interoperates_with_upstream_prepare_error_and_rsa_verify() {
        let n = notifier();
        let tmp = std::env::temp_dir().join(format!("vouch-revocation-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let (key_path, cert_path) = (tmp.join("key.pem"), tmp.join("cert.pem"));
        std::fs::write(&key_path, &n.pkcs8_pem).unwrap();
        std::fs::write(&cert_path, &n.cert_pem).unwrap();

        let upstream = run_python(
            r#"
import sys, json as pyjson
from keylime import cloud_verifier_common as c
from keylime.failure import Event, Component
agent = {"ip": "10.0.0.7", "agent_id": "a1", "port": 9002,
         "tpm_policy": '{"mask": "0x408000"}', "meta_data": '{"cert_serial": 2}',
         "revocation_key": open(sys.argv[1]).read()}
ev = Event(Component.QUOTE_VALIDATION, ["pcr"], "invalid_pcr_0", "PCR 0 caf\u00e9", False)
t = c.prepare_error(agent, "revocation", ev)
print(pyjson.dumps({"msg": t["msg"].decode(), "signature": t["signature"].decode()}))
"#,
            &[key_path.to_str().unwrap()],
        );
        let notice = parse_notice(upstream.trim().as_bytes()).unwrap();
        let verified = verify_notice(&notice, &n.cert_pem).unwrap();
        let m = verified.message();
        assert_eq!(
            (m.kind.as_str(), m.agent_id.as_str(), m.port),
            ("revocation", "a1", 9002)
        );
        assert_eq!(m.notice_id, None);
        let event = m.event.clone().expect("upstream event fields");
        assert_eq!(event.event_id, "qoute_validation.pcr.invalid_pcr_0"); // sic, upstream
                                                                          // Our serializer reproduces upstream's text for the same fields.
        assert_eq!(m.to_json(), notice.msg);

        let key = RevocationSigningKey::from_pem(&n.pkcs8_pem).unwrap();
        let ours = sign_message(&message(), &key).unwrap();
        let ok = run_python(
            r#"
import sys
from keylime import crypto
pub = crypto.x509_import_pubkey(open(sys.argv[1], "rb").read())
print(crypto.rsa_verify(pub, sys.argv[2].encode(), sys.argv[3].encode()))
"#,
            &[cert_path.to_str().unwrap(), &ours.msg, &ours.signature],
        );
        assert_eq!(ok.trim(), "True");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
