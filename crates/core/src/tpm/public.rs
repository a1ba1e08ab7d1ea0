//! TPMT_PUBLIC / TPM2B_PUBLIC for RSA and ECC keys, object attributes and TPM object Names.

use super::alg::*;
use super::wire::{Reader, WireError, WireReason, Writer};

/// Largest RSA modulus a TPM2B_PUBLIC_KEY_RSA may hold (TPM2_MAX_RSA_KEY_BYTES = 512).
pub const MAX_RSA_KEY_BYTES: usize = 512;
/// Largest ECC coordinate (TPM2_MAX_ECC_KEY_BYTES = 128).
pub const MAX_ECC_KEY_BYTES: usize = 128;
/// Largest digest (sizeof(TPMU_HA) = 64).
pub const MAX_DIGEST_BYTES: usize = 64;
/// authPolicy of the TCG low-range EK templates: PolicySecret(TPM_RH_ENDORSEMENT), SHA-256.
pub const TCG_EK_POLICY_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// Largest TPMT_PUBLIC a TPM2B_PUBLIC may carry: generous upper bound of the union.
pub const MAX_PUBLIC_BYTES: usize = 1024;

/// TPMA_OBJECT bit field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const ST_CLEAR: u32 = 1 << 2;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const NO_DA: u32 = 1 << 10;
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;

    /// The TCG EK Credential Profile's low-range templates (L-1 RSA-2048, L-2 P-256): a
    /// restricted decryption key usable only through PolicySecret(TPM_RH_ENDORSEMENT).
    pub const TCG_EK: ObjectAttributes = ObjectAttributes(
        Self::FIXED_TPM
            | Self::FIXED_PARENT
            | Self::SENSITIVE_DATA_ORIGIN
            | Self::ADMIN_WITH_POLICY
            | Self::RESTRICTED
            | Self::DECRYPT,
    );
    /// An attestation key as tpm2_createak and Vouch's device layer make it: a restricted
    /// signing key that never leaves its TPM.
    pub const AK: ObjectAttributes = ObjectAttributes(
        Self::FIXED_TPM
            | Self::FIXED_PARENT
            | Self::SENSITIVE_DATA_ORIGIN
            | Self::USER_WITH_AUTH
            | Self::RESTRICTED
            | Self::SIGN,
    );

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit == bit
    }
    pub fn restricted(self) -> bool {
        self.has(Self::RESTRICTED)
    }
    pub fn sign(self) -> bool {
        self.has(Self::SIGN)
    }
    pub fn decrypt(self) -> bool {
        self.has(Self::DECRYPT)
    }
    pub fn fixed_tpm(self) -> bool {
        self.has(Self::FIXED_TPM)
    }
}

/// TPMT_SYM_DEF_OBJECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymDef {
    Null,
    /// Any non-null symmetric cipher: algorithm, key bits, mode.
    Cipher {
        alg: u16,
        key_bits: u16,
        mode: u16,
    },
}

impl SymDef {
    /// AES-128-CFB, the parent protection of the TCG EK templates.
    pub const AES_128_CFB: SymDef = SymDef::Cipher {
        alg: TPM_ALG_AES,
        key_bits: 128,
        mode: TPM_ALG_CFB,
    };

    fn read(r: &mut Reader<'_>, what: &str) -> Result<Self, WireError> {
        let alg = r.u16(&format!("{what}.algorithm"))?;
        if alg == TPM_ALG_NULL {
            return Ok(SymDef::Null);
        }
        let key_bits = r.u16(&format!("{what}.keyBits"))?;
        let mode = r.u16(&format!("{what}.mode"))?;
        Ok(SymDef::Cipher {
            alg,
            key_bits,
            mode,
        })
    }

    fn write(&self, w: &mut Writer) {
        match *self {
            SymDef::Null => {
                w.u16(TPM_ALG_NULL);
            }
            SymDef::Cipher {
                alg,
                key_bits,
                mode,
            } => {
                w.u16(alg).u16(key_bits).u16(mode);
            }
        }
    }
}

/// A signing / encryption scheme as it appears in TPMT_RSA_SCHEME, TPMT_ECC_SCHEME and
/// TPMT_SIG_SCHEME: an algorithm and (for every scheme but RSAES and NULL) a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Null,
    Rsassa(HashAlg),
    Rsapss(HashAlg),
    Oaep(HashAlg),
    Rsaes,
    Ecdsa(HashAlg),
    Ecdh(HashAlg),
    Ecschnorr(HashAlg),
    Sm2(HashAlg),
    Ecdaa(HashAlg, u16),
}

impl Scheme {
    fn read(r: &mut Reader<'_>, what: &str) -> Result<Self, WireError> {
        let at = r.offset();
        let alg = r.u16(&format!("{what}.scheme"))?;
        let hash_what = format!("{what}.details.hashAlg");
        Ok(match alg {
            TPM_ALG_NULL => Scheme::Null,
            TPM_ALG_RSAES => Scheme::Rsaes,
            TPM_ALG_RSASSA => Scheme::Rsassa(HashAlg::read(r, &hash_what)?),
            TPM_ALG_RSAPSS => Scheme::Rsapss(HashAlg::read(r, &hash_what)?),
            TPM_ALG_OAEP => Scheme::Oaep(HashAlg::read(r, &hash_what)?),
            TPM_ALG_ECDSA => Scheme::Ecdsa(HashAlg::read(r, &hash_what)?),
            TPM_ALG_ECDH => Scheme::Ecdh(HashAlg::read(r, &hash_what)?),
            TPM_ALG_ECSCHNORR => Scheme::Ecschnorr(HashAlg::read(r, &hash_what)?),
            TPM_ALG_SM2 => Scheme::Sm2(HashAlg::read(r, &hash_what)?),
            TPM_ALG_ECDAA => {
                let h = HashAlg::read(r, &hash_what)?;
                Scheme::Ecdaa(h, r.u16(&format!("{what}.details.count"))?)
            }
            other => {
                return Err(r.error_at(
                    at,
                    &format!("{what}.scheme"),
                    WireReason::Unknown(other.into()),
                ))
            }
        })
    }

    fn write(&self, w: &mut Writer) {
        match *self {
            Scheme::Null => {
                w.u16(TPM_ALG_NULL);
            }
            Scheme::Rsaes => {
                w.u16(TPM_ALG_RSAES);
            }
            Scheme::Rsassa(h) => {
                w.u16(TPM_ALG_RSASSA).u16(h.id());
            }
            Scheme::Rsapss(h) => {
                w.u16(TPM_ALG_RSAPSS).u16(h.id());
            }
            Scheme::Oaep(h) => {
                w.u16(TPM_ALG_OAEP).u16(h.id());
            }
            Scheme::Ecdsa(h) => {
                w.u16(TPM_ALG_ECDSA).u16(h.id());
            }
            Scheme::Ecdh(h) => {
                w.u16(TPM_ALG_ECDH).u16(h.id());
            }
            Scheme::Ecschnorr(h) => {
                w.u16(TPM_ALG_ECSCHNORR).u16(h.id());
            }
            Scheme::Sm2(h) => {
                w.u16(TPM_ALG_SM2).u16(h.id());
            }
            Scheme::Ecdaa(h, c) => {
                w.u16(TPM_ALG_ECDAA).u16(h.id()).u16(c);
            }
        }
    }
}

/// TPMT_KDF_SCHEME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KdfScheme {
    Null,
    Kdf { alg: u16, hash: HashAlg },
}

impl KdfScheme {
    fn read(r: &mut Reader<'_>, what: &str) -> Result<Self, WireError> {
        let at = r.offset();
        let alg = r.u16(&format!("{what}.scheme"))?;
        match alg {
            TPM_ALG_NULL => Ok(KdfScheme::Null),
            TPM_ALG_KDF1_SP800_56A | TPM_ALG_KDF2 | TPM_ALG_KDF1_SP800_108 => Ok(KdfScheme::Kdf {
                alg,
                hash: HashAlg::read(r, &format!("{what}.details.hashAlg"))?,
            }),
            other => Err(r.error_at(
                at,
                &format!("{what}.scheme"),
                WireReason::Unknown(other.into()),
            )),
        }
    }

    fn write(&self, w: &mut Writer) {
        match *self {
            KdfScheme::Null => {
                w.u16(TPM_ALG_NULL);
            }
            KdfScheme::Kdf { alg, hash } => {
                w.u16(alg).u16(hash.id());
            }
        }
    }
}

/// NIST curves the TCG profiles use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EccCurve {
    NistP256,
    NistP384,
    NistP521,
}

impl EccCurve {
    pub fn id(self) -> u16 {
        match self {
            EccCurve::NistP256 => 0x0003,
            EccCurve::NistP384 => 0x0004,
            EccCurve::NistP521 => 0x0005,
        }
    }
    pub fn from_id(id: u16) -> Option<Self> {
        [EccCurve::NistP256, EccCurve::NistP384, EccCurve::NistP521]
            .into_iter()
            .find(|c| c.id() == id)
    }
    /// Size of one coordinate in bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            EccCurve::NistP256 => 32,
            EccCurve::NistP384 => 48,
            EccCurve::NistP521 => 66,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            EccCurve::NistP256 => "NIST P-256",
            EccCurve::NistP384 => "NIST P-384",
            EccCurve::NistP521 => "NIST P-521",
        }
    }
}

/// Type-specific parameters and unique field of a public area.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublicKey {
    Rsa {
        symmetric: SymDef,
        scheme: Scheme,
        key_bits: u16,
        /// Raw exponent field: 0 means the default 65537.
        exponent: u32,
        modulus: Vec<u8>,
    },
    Ecc {
        symmetric: SymDef,
        scheme: Scheme,
        curve: EccCurve,
        kdf: KdfScheme,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

impl PublicKey {
    /// The RSA public exponent with TPM's "0 means 65537" resolved.
    pub fn rsa_exponent(exponent: u32) -> u32 {
        if exponent == 0 {
            65537
        } else {
            exponent
        }
    }
}

/// TPMT_PUBLIC of an RSA or ECC object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Public {
    pub name_alg: HashAlg,
    pub attributes: ObjectAttributes,
    pub auth_policy: Vec<u8>,
    pub key: PublicKey,
}

impl Public {
    /// Parse a TPMT_PUBLIC that fills `bytes` exactly.
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let p = Self::read_tpmt(&mut r)?;
        r.finish("TPMT_PUBLIC")?;
        Ok(p)
    }

    /// Parse a TPM2B_PUBLIC (u16 size + TPMT_PUBLIC), as `tpm2_readpublic -o` writes it.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let p = Self::read_tpm2b(&mut r)?;
        r.finish("TPM2B_PUBLIC")?;
        Ok(p)
    }

    pub fn read_tpm2b(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut inner = r.sized_reader(MAX_PUBLIC_BYTES, "TPM2B_PUBLIC.size")?;
        if inner.remaining() == 0 {
            return Err(inner.error(
                "TPM2B_PUBLIC",
                WireReason::Invalid("empty public area".into()),
            ));
        }
        let p = Self::read_tpmt(&mut inner)?;
        inner.finish("TPM2B_PUBLIC.publicArea")?;
        Ok(p)
    }

    pub fn read_tpmt(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let at = r.offset();
        let ty = r.u16("TPMT_PUBLIC.type")?;
        if ty != TPM_ALG_RSA && ty != TPM_ALG_ECC {
            return Err(r.error_at(at, "TPMT_PUBLIC.type", WireReason::Unknown(ty.into())));
        }
        let name_alg = HashAlg::read(r, "TPMT_PUBLIC.nameAlg")?;
        let attributes = ObjectAttributes(r.u32("TPMT_PUBLIC.objectAttributes")?);
        let auth_policy = r
            .sized(MAX_DIGEST_BYTES, "TPMT_PUBLIC.authPolicy")?
            .to_vec();
        let key = if ty == TPM_ALG_RSA {
            let symmetric = SymDef::read(r, "TPMS_RSA_PARMS.symmetric")?;
            let scheme = Scheme::read(r, "TPMS_RSA_PARMS.scheme")?;
            if !matches!(
                scheme,
                Scheme::Null
                    | Scheme::Rsassa(_)
                    | Scheme::Rsapss(_)
                    | Scheme::Oaep(_)
                    | Scheme::Rsaes
            ) {
                return Err(r.error(
                    "TPMS_RSA_PARMS.scheme",
                    WireReason::Invalid(format!("{scheme:?} is not an RSA scheme")),
                ));
            }
            let key_bits = r.u16("TPMS_RSA_PARMS.keyBits")?;
            let exponent = r.u32("TPMS_RSA_PARMS.exponent")?;
            let at = r.offset();
            let modulus = r
                .sized(MAX_RSA_KEY_BYTES, "TPMT_PUBLIC.unique.rsa")?
                .to_vec();
            if !modulus.is_empty() && modulus.len() * 8 != key_bits as usize {
                return Err(r.error_at(
                    at,
                    "TPMT_PUBLIC.unique.rsa",
                    WireReason::Invalid(format!(
                        "modulus is {} bits, keyBits says {key_bits}",
                        modulus.len() * 8
                    )),
                ));
            }
            PublicKey::Rsa {
                symmetric,
                scheme,
                key_bits,
                exponent,
                modulus,
            }
        } else {
            let symmetric = SymDef::read(r, "TPMS_ECC_PARMS.symmetric")?;
            let scheme = Scheme::read(r, "TPMS_ECC_PARMS.scheme")?;
            if matches!(
                scheme,
                Scheme::Rsassa(_) | Scheme::Rsapss(_) | Scheme::Oaep(_) | Scheme::Rsaes
            ) {
                return Err(r.error(
                    "TPMS_ECC_PARMS.scheme",
                    WireReason::Invalid(format!("{scheme:?} is not an ECC scheme")),
                ));
            }
            let cat = r.offset();
            let cid = r.u16("TPMS_ECC_PARMS.curveID")?;
            let curve = EccCurve::from_id(cid).ok_or_else(|| {
                r.error_at(
                    cat,
                    "TPMS_ECC_PARMS.curveID",
                    WireReason::Unknown(cid.into()),
                )
            })?;
            let kdf = KdfScheme::read(r, "TPMS_ECC_PARMS.kdf")?;
            let x = r
                .sized(MAX_ECC_KEY_BYTES, "TPMT_PUBLIC.unique.ecc.x")?
                .to_vec();
            let y = r
                .sized(MAX_ECC_KEY_BYTES, "TPMT_PUBLIC.unique.ecc.y")?
                .to_vec();
            for (c, n) in [(&x, "x"), (&y, "y")] {
                if !c.is_empty() && c.len() > curve.coordinate_len() {
                    return Err(r.error(
                        &format!("TPMT_PUBLIC.unique.ecc.{n}"),
                        WireReason::Invalid(format!(
                            "{} bytes is longer than a {} coordinate",
                            c.len(),
                            curve.name()
                        )),
                    ));
                }
            }
            PublicKey::Ecc {
                symmetric,
                scheme,
                curve,
                kdf,
                x,
                y,
            }
        };
        Ok(Public {
            name_alg,
            attributes,
            auth_policy,
            key,
        })
    }

    /// Marshal as TPMT_PUBLIC.
    pub fn to_tpmt(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_tpmt(&mut w);
        w.into_vec()
    }

    /// Marshal as TPM2B_PUBLIC.
    pub fn to_tpm2b(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.sized(&self.to_tpmt());
        w.into_vec()
    }

    pub fn write_tpmt(&self, w: &mut Writer) {
        match &self.key {
            PublicKey::Rsa { .. } => w.u16(TPM_ALG_RSA),
            PublicKey::Ecc { .. } => w.u16(TPM_ALG_ECC),
        };
        w.u16(self.name_alg.id())
            .u32(self.attributes.0)
            .sized(&self.auth_policy);
        match &self.key {
            PublicKey::Rsa {
                symmetric,
                scheme,
                key_bits,
                exponent,
                modulus,
            } => {
                symmetric.write(w);
                scheme.write(w);
                w.u16(*key_bits).u32(*exponent).sized(modulus);
            }
            PublicKey::Ecc {
                symmetric,
                scheme,
                curve,
                kdf,
                x,
                y,
            } => {
                symmetric.write(w);
                scheme.write(w);
                w.u16(curve.id());
                kdf.write(w);
                w.sized(x).sized(y);
            }
        }
    }

    /// The object's Name: nameAlg || H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Name {
        let mut n = self.name_alg.id().to_be_bytes().to_vec();
        n.extend(self.name_alg.digest(&self.to_tpmt()));
        Name(n)
    }

    /// Short human description: "RSA-2048" / "ECC NIST P-256".
    pub fn describe(&self) -> String {
        match &self.key {
            PublicKey::Rsa { key_bits, .. } => format!("RSA-{key_bits}"),
            PublicKey::Ecc { curve, .. } => format!("ECC {}", curve.name()),
        }
    }
}

/// A TPM object Name (TPM2B_NAME contents): hash algorithm id followed by the digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(pub Vec<u8>);

impl Name {
    /// Parse and check that the digest length matches the algorithm.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let alg = HashAlg::read(&mut r, "TPM2B_NAME.hashAlg")?;
        let digest = r.bytes(r.remaining(), "TPM2B_NAME.digest")?;
        if digest.len() != alg.digest_len() {
            return Err(r.error_at(
                2,
                "TPM2B_NAME.digest",
                WireReason::Invalid(format!(
                    "{} bytes, {alg} needs {}",
                    digest.len(),
                    alg.digest_len()
                )),
            ));
        }
        Ok(Name(bytes.to_vec()))
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rsa_ak() -> Public {
        Public {
            name_alg: HashAlg::Sha256,
            attributes: ObjectAttributes::AK,
            auth_policy: vec![],
            key: PublicKey::Rsa {
                symmetric: SymDef::Null,
                scheme: Scheme::Rsassa(HashAlg::Sha256),
                key_bits: 2048,
                exponent: 0,
                modulus: vec![0xab; 256],
            },
        }
    }

    #[test]
    fn round_trip_and_name() {
        let p = rsa_ak();
        let b = p.to_tpm2b();
        assert_eq!(Public::from_tpm2b(&b).unwrap(), p);
        let name = p.name();
        assert_eq!(&name.0[..2], &[0x00, 0x0b]);
        assert_eq!(name.0.len(), 34);
        Name::from_bytes(&name.0).unwrap();
    }

    #[test]
    fn strictness() {
        let mut b = rsa_ak().to_tpm2b();
        b.push(0);
        let e = Public::from_tpm2b(&b).unwrap_err();
        assert_eq!(e.reason, WireReason::Trailing(1));
        let b = rsa_ak().to_tpm2b();
        let e = Public::from_tpm2b(&b[..b.len() - 1]).unwrap_err();
        assert!(matches!(e.reason, WireReason::Truncated { .. }), "{e}");
        let mut b = rsa_ak().to_tpm2b();
        b[2] = 0x00;
        b[3] = 0x25; // SYMCIPHER: not an asymmetric key
        let e = Public::from_tpm2b(&b).unwrap_err();
        assert_eq!((e.what.as_str(), e.offset), ("TPMT_PUBLIC.type", 2));
    }
}
