//! EK and AK kinds, the AK blob the agent keeps, and the templates the TPM creates them from.

use crate::convert::hashing;
use crate::error::TpmError;
use tss_esapi::abstraction::{ek, AsymmetricAlgorithmSelection};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::structures::{
    EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme, Public as TssPublic,
    PublicBuilder, PublicEccParametersBuilder, PublicKeyRsa, PublicRsaParametersBuilder,
    RsaExponent, RsaScheme, SymmetricDefinitionObject,
};
use vouch_core::tpm::{HashAlg, Name, Public};

/// An endorsement key per the TCG EK Credential Profile templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EkKind {
    /// Template L-1 (low range); certificate at NV 0x01c00002.
    Rsa2048,
    /// Template L-2 (low range); certificate at NV 0x01c0000a. swtpm_setup writes none there.
    EccP256,
    /// Template H-3 (high range, SHA-384, userWithAuth); certificate at NV 0x01c00016. This is
    /// the ECC EK that swtpm_setup creates and certifies.
    EccP384,
}

impl EkKind {
    /// NV index of this kind's EK certificate.
    pub fn cert_nv_index(self) -> u32 {
        match self {
            EkKind::Rsa2048 => 0x01c0_0002,
            EkKind::EccP256 => 0x01c0_000a,
            EkKind::EccP384 => 0x01c0_0016,
        }
    }

    /// Low-range templates have userWithAuth clear: every use needs PolicySecret(endorsement).
    /// High-range ones set userWithAuth, so an (empty) password authorizes the USER role.
    pub(crate) fn needs_policy(self) -> bool {
        matches!(self, EkKind::Rsa2048 | EkKind::EccP256)
    }

    pub(crate) fn template(self) -> Result<TssPublic, TpmError> {
        let alg = match self {
            EkKind::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            EkKind::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            EkKind::EccP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
        };
        ek::create_ek_public_from_default_template_2(alg, None)
            .map_err(TpmError::conversion("EK template"))
    }
}

/// The attestation key types Vouch creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AkKind {
    /// RSA-2048, RSASSA (PKCS#1 v1.5) with the chosen hash.
    Rsa2048,
    /// ECC NIST P-256, ECDSA with the chosen hash.
    EccP256,
}

/// An attestation key as the agent stores it: enough to load it again under its EK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ak {
    pub public: Public,
    /// Marshalled TPM2B_PRIVATE (u16 size + blob), as `tpm2_create -r` writes it.
    pub private: Vec<u8>,
    pub name: Name,
    /// The EK this AK was created under (its parent).
    pub parent: EkKind,
}

impl Ak {
    /// The hash of the AK's signing scheme: the one its quotes' pcrDigest is computed with.
    pub fn sign_hash(&self) -> Option<HashAlg> {
        use vouch_core::tpm::{PublicKey, Scheme};
        let scheme = match &self.public.key {
            PublicKey::Rsa { scheme, .. } | PublicKey::Ecc { scheme, .. } => scheme,
        };
        match scheme {
            Scheme::Rsassa(h) | Scheme::Rsapss(h) | Scheme::Ecdsa(h) | Scheme::Ecschnorr(h) => {
                Some(*h)
            }
            _ => None,
        }
    }
}

/// Restricted signing key: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth,
/// restricted, sign. nameAlg is the signing hash (SHA-256 for SHA-1 AKs).
pub(crate) fn ak_template(kind: AkKind, hash: HashAlg) -> Result<TssPublic, TpmError> {
    let conv = TpmError::conversion;
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .build()
        .map_err(conv("AK attributes"))?;
    let name_alg = match hash {
        HashAlg::Sha1 => HashingAlgorithm::Sha256,
        other => hashing(other),
    };
    let h = hashing(hash);
    let builder = PublicBuilder::new()
        .with_name_hashing_algorithm(name_alg)
        .with_object_attributes(attributes);
    let builder = match kind {
        AkKind::Rsa2048 => builder
            .with_public_algorithm(PublicAlgorithm::Rsa)
            .with_rsa_parameters(
                PublicRsaParametersBuilder::new()
                    .with_symmetric(SymmetricDefinitionObject::Null)
                    .with_scheme(RsaScheme::RsaSsa(HashScheme::new(h)))
                    .with_key_bits(RsaKeyBits::Rsa2048)
                    .with_exponent(RsaExponent::default())
                    .with_is_signing_key(true)
                    .with_restricted(true)
                    .build()
                    .map_err(conv("AK RSA parameters"))?,
            )
            .with_rsa_unique_identifier(PublicKeyRsa::default()),
        AkKind::EccP256 => builder
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_ecc_parameters(
                PublicEccParametersBuilder::new()
                    .with_symmetric(SymmetricDefinitionObject::Null)
                    .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(h)))
                    .with_curve(EccCurve::NistP256)
                    .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                    .with_is_signing_key(true)
                    .with_restricted(true)
                    .build()
                    .map_err(conv("AK ECC parameters"))?,
            )
            .with_ecc_unique_identifier(EccPoint::default()),
    };
    builder.build().map_err(conv("AK template"))
}
