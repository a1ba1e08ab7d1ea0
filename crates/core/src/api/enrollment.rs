//! keylime enrollment encodings: the registration `blob` (MakeCredential of a random secret to
//! the EK, bound to the AK's Name) and the activation proof `auth_tag`.
//!
//! Exactly as upstream 7.14.3 (`docs/keylime-wire.md` §3.1–3.2):
//! - `Tpm.encrypt_aik_with_ek` (`tpm/tpm_main.py`): `challenge = random_password(32)` (32 chars of
//!   `[A-Z0-9a-z]`), `key = base64(challenge)` (stored in the registrar's `key` column),
//!   `blob = base64(tpm2-tools credential file of makecredential(ek, challenge, name(aik)))`;
//! - `RegistrarAgent.verify_ak_response`: `crypto.do_hmac(self.key.encode(), agent_id)` —
//!   HMAC-SHA384 keyed with the **ASCII of the base64 text**, message the UTF-8 agent id,
//!   lowercase hex — compared with `hmac.compare_digest` on the *strings* (so an upper-case
//!   tag is refused);
//! - agent side (`rk:keylime/src/agent_registration.rs`): `mackey = base64(ActivateCredential
//!   output)`, `auth_tag = hex(hmac(mackey, uuid))`.

use crate::credential::{make_credential, Credential, CredentialError};
use crate::tpm::{Name, Public, WireError};
use aws_lc_rs::{constant_time, hmac, rand};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fmt;
use thiserror::Error;

/// Length of the credential secret (`random_password(32)`).
pub const CREDENTIAL_SECRET_LEN: usize = 32;
/// `string.ascii_uppercase + string.digits + string.ascii_lowercase`, in that order
/// (`tpm_util.random_password`).
const PASSWORD_CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz";
/// HMAC-SHA384 output, hex encoded.
pub const AUTH_TAG_HEX_LEN: usize = 96;

#[derive(Debug, Error)]
pub enum EnrollmentError {
    #[error("random number generator failed")]
    Random,
    #[error("aik_tpm is not a valid TPM2B_PUBLIC: {0}")]
    AkPublic(WireError),
    #[error("ek_tpm is not a valid TPM2B_PUBLIC: {0}")]
    EkPublic(WireError),
    #[error("MakeCredential to the EK failed: {0}")]
    MakeCredential(#[from] CredentialError),
    #[error("blob is not valid base64: {0}")]
    BlobBase64(base64::DecodeError),
    #[error("blob is not a tpm2-tools credential file: {0}")]
    BlobFile(CredentialError),
    #[error("stored activation key is not base64 of a {CREDENTIAL_SECRET_LEN}-byte secret")]
    StoredKey,
}

/// The 32-character secret the registrar wraps to the EK (`random_password(32)`).
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialSecret(String);

impl CredentialSecret {
    /// 32 characters of `[A-Z0-9a-z]`, each `CHARS[random_byte % 62]`, as upstream draws them.
    pub fn generate() -> Result<Self, EnrollmentError> {
        let mut rnd = [0u8; CREDENTIAL_SECRET_LEN];
        rand::fill(&mut rnd).map_err(|_| EnrollmentError::Random)?;
        Ok(Self(
            rnd.iter()
                .map(|&b| char::from(PASSWORD_CHARS[usize::from(b) % PASSWORD_CHARS.len()]))
                .collect(),
        ))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The activation key derived from this secret.
    pub fn activation_key(&self) -> ActivationKey {
        ActivationKey::from_secret(self.as_bytes())
    }
}

impl fmt::Debug for CredentialSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialSecret(..)")
    }
}

/// `base64(secret)`: what the registrar stores as `key` and what the HMAC is keyed with (its
/// ASCII bytes). The agent makes the same value from the ActivateCredential output.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationKey(String);

impl ActivationKey {
    /// From the secret bytes (the agent: what TPM2_ActivateCredential returned).
    pub fn from_secret(secret: &[u8]) -> Self {
        Self(B64.encode(secret))
    }

    /// From the registrar's stored `key` column: must be base64 of 32 bytes.
    pub fn from_stored(text: &str) -> Result<Self, EnrollmentError> {
        match B64.decode(text) {
            Ok(b) if b.len() == CREDENTIAL_SECRET_LEN => Ok(Self(text.to_owned())),
            _ => Err(EnrollmentError::StoredKey),
        }
    }

    /// The base64 text (44 characters for a 32-byte secret), for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `hex(HMAC-SHA384(key = ASCII(self), msg = UTF-8(agent_id)))`, lowercase.
    pub fn auth_tag(&self, agent_id: &str) -> String {
        let k = hmac::Key::new(hmac::HMAC_SHA384, self.0.as_bytes());
        hex::encode(hmac::sign(&k, agent_id.as_bytes()).as_ref())
    }

    /// Whether `presented` is this key's auth tag for `agent_id`: a constant-time comparison of
    /// the strings, like `hmac.compare_digest(response, expected)` (lowercase hex only).
    pub fn verify_auth_tag(&self, agent_id: &str, presented: &str) -> bool {
        let expected = self.auth_tag(agent_id);
        constant_time::verify_slices_are_equal(expected.as_bytes(), presented.as_bytes()).is_ok()
    }
}

impl fmt::Debug for ActivationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ActivationKey(..)")
    }
}

/// The object Name exactly as upstream computes it (`tpm2_objects.get_tpm2b_public_name`):
/// `nameAlg || H_nameAlg(the TPMT_PUBLIC bytes as received)`. Hashing the received bytes (not
/// a re-marshalled parse) keeps the Name identical to the TPM's whatever the encoding details.
pub fn name_of_tpm2b_public(tpm2b: &[u8]) -> Result<(Public, Name), WireError> {
    let public = Public::from_tpm2b(tpm2b)?;
    // from_tpm2b checked the u16 size prefix covers the rest exactly.
    let tpmt = tpm2b.get(2..).unwrap_or_default();
    let mut name = public.name_alg.id().to_be_bytes().to_vec();
    name.extend(public.name_alg.digest(tpmt));
    Ok((public, Name(name)))
}

/// What the registrar produces on registration: the `blob` to send and the key to store.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// Standard base64 of the tpm2-tools credential file (`results.blob`).
    pub blob: String,
    /// `base64(secret)`, stored as `key`; verifies the `auth_tag` later.
    pub key: ActivationKey,
}

/// Make the registration challenge for `ek` (parsed EK) and the AK given as its raw
/// TPM2B_PUBLIC bytes (`aik_tpm` decoded).
pub fn make_enrollment(ek: &Public, aik_tpm: &[u8]) -> Result<Enrollment, EnrollmentError> {
    let (_, ak_name) = name_of_tpm2b_public(aik_tpm).map_err(EnrollmentError::AkPublic)?;
    let secret = CredentialSecret::generate()?;
    let cred = make_credential(ek, &ak_name, secret.as_bytes())?;
    Ok(Enrollment {
        blob: B64.encode(cred.to_tpm2_tools_file()),
        key: secret.activation_key(),
    })
}

/// Agent side: decode a registration `blob` into the credential for TPM2_ActivateCredential.
pub fn decode_blob(blob: &str) -> Result<Credential, EnrollmentError> {
    let bytes = B64
        .decode(blob.trim())
        .map_err(EnrollmentError::BlobBase64)?;
    Credential::from_tpm2_tools_file(&bytes).map_err(EnrollmentError::BlobFile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::{HashAlg, ObjectAttributes, PublicKey, Scheme, SymDef};
    use std::process::Command;

    fn attrs(bits: u32) -> ObjectAttributes {
        ObjectAttributes(
            ObjectAttributes::FIXED_TPM
                | ObjectAttributes::FIXED_PARENT
                | ObjectAttributes::SENSITIVE_DATA_ORIGIN
                | bits,
        )
    }

    fn rsa_public(bits: u32, sym: SymDef, scheme: Scheme, modulus_byte: u8) -> Public {
        Public {
            name_alg: HashAlg::Sha256,
            attributes: attrs(bits),
            auth_policy: vec![],
            key: PublicKey::Rsa {
                symmetric: sym,
                scheme,
                key_bits: 2048,
                exponent: 0,
                modulus: {
                    let mut m = vec![modulus_byte; 256];
                    m[0] |= 0x80;
                    m
                },
            },
        }
    }

    fn test_ek() -> Public {
        // A real RSA key is needed for OAEP: take the modulus of a fresh key from aws-lc.
        let k = aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .unwrap();
        let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            &k.public_key(),
        )
        .unwrap();
        let spki = spki.as_ref();
        let e_at = spki.len() - 5;
        let mut ek = rsa_public(
            ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT,
            SymDef::AES_128_CFB,
            Scheme::Null,
            0,
        );
        if let PublicKey::Rsa { modulus, .. } = &mut ek.key {
            *modulus = spki[e_at - 256..e_at].to_vec();
        }
        ek
    }

    fn test_ak() -> Public {
        rsa_public(
            ObjectAttributes::RESTRICTED
                | ObjectAttributes::SIGN
                | ObjectAttributes::USER_WITH_AUTH,
            SymDef::Null,
            Scheme::Rsassa(HashAlg::Sha256),
            0x5a,
        )
    }

    #[test]
    fn secret_is_32_alphanumerics_and_key_is_its_base64() {
        let s = CredentialSecret::generate().unwrap();
        assert_eq!(s.as_bytes().len(), 32);
        assert!(s.as_bytes().iter().all(u8::is_ascii_alphanumeric));
        let k = s.activation_key();
        assert_eq!(k.as_str().len(), 44);
        assert_eq!(B64.decode(k.as_str()).unwrap(), s.as_bytes());
        assert_eq!(ActivationKey::from_stored(k.as_str()).unwrap(), k);
        assert!(ActivationKey::from_stored("AAAA").is_err());
        assert!(ActivationKey::from_stored("not base64!").is_err());
        assert_ne!(CredentialSecret::generate().unwrap(), s);
    }

    #[test]
    fn blob_is_a_tpm2_tools_credential_file() {
        let ek = test_ek();
        let ak = test_ak().to_tpm2b();
        let e = make_enrollment(&ek, &ak).unwrap();
        let raw = B64.decode(&e.blob).unwrap();
        // RSA-2048 EK, SHA-256: 336 bytes, header badcc0de 00000001 0044 0020 (wire doc §3.1)
        assert_eq!(raw.len(), 336);
        assert_eq!(
            &raw[..12],
            &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1, 0, 0x44, 0, 0x20]
        );
        assert_eq!(&raw[78..80], &[0x01, 0x00]); // 8 + 2 + 0x44
        let c = decode_blob(&e.blob).unwrap();
        assert_eq!(c.encrypted_secret().len(), 256);
        assert!(matches!(
            decode_blob("%%%"),
            Err(EnrollmentError::BlobBase64(_))
        ));
        assert!(matches!(
            decode_blob("AAAA"),
            Err(EnrollmentError::BlobFile(_))
        ));
    }

    #[test]
    fn bad_inputs_are_named() {
        let ek = test_ek();
        let err = make_enrollment(&ek, &[0, 4, 1, 2, 3, 4]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("aik_tpm is not a valid TPM2B_PUBLIC"),
            "{err}"
        );
        // An AK is not a decryption key: MakeCredential to it is refused.
        let err = make_enrollment(&test_ak(), &test_ak().to_tpm2b()).unwrap_err();
        assert!(matches!(err, EnrollmentError::MakeCredential(_)), "{err}");
    }

    #[test]
    fn name_hashes_received_bytes() {
        let ak = test_ak();
        let (parsed, name) = name_of_tpm2b_public(&ak.to_tpm2b()).unwrap();
        assert_eq!(parsed, ak);
        assert_eq!(name, ak.name());
    }

    #[test]
    fn auth_tag_known_answer_and_strict_compare() {
        // Python: crypto.do_hmac(base64.b64encode(b"A"*32), "agent")
        let k = ActivationKey::from_secret(&[b'A'; 32]);
        assert_eq!(k.as_str(), "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=");
        let tag = k.auth_tag("agent");
        assert_eq!(tag.len(), AUTH_TAG_HEX_LEN);
        assert!(k.verify_auth_tag("agent", &tag));
        assert!(!k.verify_auth_tag("agent", &tag.to_uppercase()));
        assert!(!k.verify_auth_tag("agent", &tag[..95]));
        assert!(!k.verify_auth_tag("agent2", &tag));
        assert!(!k.verify_auth_tag("agent", ""));
        // Keyed with the base64 text, not the raw secret.
        let raw = hmac::Key::new(hmac::HMAC_SHA384, &[b'A'; 32]);
        assert_ne!(tag, hex::encode(hmac::sign(&raw, b"agent").as_ref()));
    }

    fn keylime_python() -> String {
        let py = std::env::var("VOUCH_KEYLIME_PYTHON")
            .unwrap_or_else(|_| "/opt/vouch/keylime-venv/bin/python3".into());
        assert!(
            std::path::Path::new(&py).exists(),
            "upstream keylime Python interpreter {py} not found: install keylime 7.14.3 into \
             /opt/vouch/keylime-venv or set VOUCH_KEYLIME_PYTHON to a python3 that can `import keylime`"
        );
        py
    }

    /// Upstream's own code computes key, auth_tag and AK Name for the same inputs.
    #[test]
    fn matches_upstream_python() {
        let py = keylime_python();
        let script = r#"
import base64, sys
from keylime import crypto
from keylime.tpm import tpm2_objects
secret, agent_id, aik = sys.argv[1].encode(), sys.argv[2], base64.b64decode(sys.argv[3])
key = base64.b64encode(secret).decode("utf-8")          # Tpm.encrypt_aik_with_ek
print(key)
print(crypto.do_hmac(key.encode(), agent_id))           # RegistrarAgent.verify_ak_response
print(tpm2_objects.get_tpm2b_public_name(aik))
"#;
        let secret = CredentialSecret::generate().unwrap();
        let secret_text = std::str::from_utf8(secret.as_bytes()).unwrap();
        let ak = test_ak().to_tpm2b();
        for agent_id in ["d432fbb3-d2f1-4a97-9ef7-75bd81c00000", "agent.ü-1"] {
            let out = Command::new(&py)
                .args(["-c", script, secret_text, agent_id, &B64.encode(&ak)])
                .output()
                .unwrap_or_else(|e| panic!("running {py}: {e}"));
            assert!(
                out.status.success(),
                "upstream python failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let key = secret.activation_key();
            assert_eq!(lines[0], key.as_str());
            assert_eq!(lines[1], key.auth_tag(agent_id));
            assert!(key.verify_auth_tag(agent_id, lines[1]));
            let (_, name) = name_of_tpm2b_public(&ak).unwrap();
            assert_eq!(lines[2], hex::encode(name.as_bytes()));
        }
    }
}
