//! Round trips through a software ActivateCredential (the inverse, test-only).

use super::*;
use crate::tpm::{ObjectAttributes, Scheme};

fn ek_attributes() -> ObjectAttributes {
    ObjectAttributes::TCG_EK
}

/// A test EK: its private key and a TPM public area carrying the matching public key.
enum EkPriv {
    Rsa(rsa::PrivateDecryptingKey),
    Ecc(agreement::PrivateKey, EccCurve),
}

fn rsa_ek(name_alg: HashAlg) -> (EkPriv, Public) {
    let k = rsa::PrivateDecryptingKey::generate(rsa::KeySize::Rsa2048).unwrap();
    // Public modulus from the SPKI DER: the last 256 bytes before the exponent.
    let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
        &k.public_key(),
    )
    .unwrap();
    let spki = spki.as_ref();
    // SEQUENCE{..., BIT STRING{ SEQUENCE{ INTEGER n (257 bytes with 0x00), INTEGER e }}}
    let e_at = spki.len() - 5; // 02 03 01 00 01
    assert_eq!(&spki[e_at..], &[2, 3, 1, 0, 1]);
    let modulus = spki[e_at - 256..e_at].to_vec();
    let public = Public {
        name_alg,
        attributes: ek_attributes(),
        auth_policy: crate::tpm::public::TCG_EK_POLICY_SHA256.to_vec(),
        key: PublicKey::Rsa {
            symmetric: SymDef::AES_128_CFB,
            scheme: Scheme::Null,
            key_bits: 2048,
            exponent: 0,
            modulus,
        },
    };
    assert_eq!(
        der::spki(&public).unwrap(),
        spki,
        "test EK public area matches the private key"
    );
    (EkPriv::Rsa(k), public)
}

fn ecc_ek(curve: EccCurve, name_alg: HashAlg, sym: SymDef) -> (EkPriv, Public) {
    let alg = match curve {
        EccCurve::NistP256 => &agreement::ECDH_P256,
        EccCurve::NistP384 => &agreement::ECDH_P384,
        EccCurve::NistP521 => &agreement::ECDH_P521,
    };
    let k = agreement::PrivateKey::generate(alg).unwrap();
    let p = k.compute_public_key().unwrap();
    let n = curve.coordinate_len();
    let pt = p.as_ref();
    let public = Public {
        name_alg,
        attributes: ek_attributes(),
        auth_policy: vec![],
        key: PublicKey::Ecc {
            symmetric: sym,
            scheme: Scheme::Null,
            curve,
            kdf: crate::tpm::KdfScheme::Null,
            x: pt[1..1 + n].to_vec(),
            y: pt[1 + n..].to_vec(),
        },
    };
    (EkPriv::Ecc(k, curve), public)
}

#[derive(Debug, PartialEq)]
enum ActivateError {
    Secret,
    Integrity,
    Format,
}

/// TPM2_ActivateCredential in software: recover the seed with the EK private key, check the
/// outer HMAC against `name`, decrypt the identity.
fn activate(
    ek_priv: &EkPriv,
    ek: &Public,
    name: &Name,
    cred: &Credential,
) -> Result<Vec<u8>, ActivateError> {
    let p = check_ek(ek).unwrap();
    let seed = match ek_priv {
        EkPriv::Rsa(k) => {
            let k = rsa::OaepPrivateDecryptingKey::new(k.clone()).unwrap();
            let alg = match p.name_alg {
                HashAlg::Sha1 => &rsa::OAEP_SHA1_MGF1SHA1,
                HashAlg::Sha256 => &rsa::OAEP_SHA256_MGF1SHA256,
                HashAlg::Sha384 => &rsa::OAEP_SHA384_MGF1SHA384,
                HashAlg::Sha512 => &rsa::OAEP_SHA512_MGF1SHA512,
            };
            let mut out = vec![0u8; 256];
            k.decrypt(alg, cred.encrypted_secret(), &mut out, Some(IDENTITY_LABEL))
                .map_err(|_| ActivateError::Secret)?
                .to_vec()
        }
        EkPriv::Ecc(k, curve) => {
            let mut r = Reader::new(cred.encrypted_secret());
            let ex = r.sized(128, "x").map_err(|_| ActivateError::Format)?;
            let ey = r.sized(128, "y").map_err(|_| ActivateError::Format)?;
            r.finish("point").map_err(|_| ActivateError::Format)?;
            let point = der::ec_point(*curve, ex, ey).map_err(|_| ActivateError::Format)?;
            let z = agreement::agree(
                k,
                agreement::UnparsedPublicKey::new(k.algorithm(), &point),
                (),
                |z| Ok(z.to_vec()),
            )
            .map_err(|()| ActivateError::Secret)?;
            let PublicKey::Ecc { x, .. } = &ek.key else {
                unreachable!()
            };
            kdf::kdfe(
                p.name_alg,
                &z,
                b"IDENTITY",
                ex,
                x,
                (p.name_alg.digest_len() * 8) as u32,
            )
        }
    };
    let mut r = Reader::new(cred.id_object());
    let outer = r.sized(64, "hmac").map_err(|_| ActivateError::Format)?;
    let enc = r
        .bytes(r.remaining(), "enc")
        .map_err(|_| ActivateError::Format)?;
    let hmac_key = kdf::kdfa(
        p.name_alg,
        &seed,
        b"INTEGRITY",
        &[],
        &[],
        (p.name_alg.digest_len() * 8) as u32,
    );
    if kdf::hmac(p.name_alg, &hmac_key, &[enc, name.as_bytes()]) != outer {
        return Err(ActivateError::Integrity);
    }
    let sym_key = kdf::kdfa(
        p.name_alg,
        &seed,
        b"STORAGE",
        name.as_bytes(),
        &[],
        p.sym_key_bits.into(),
    );
    let mut plain = enc.to_vec();
    aes_cfb(&sym_key, &mut plain, true).unwrap();
    let mut r = Reader::new(&plain);
    let secret = r
        .sized(64, "credential")
        .map_err(|_| ActivateError::Format)?
        .to_vec();
    r.finish("credential").map_err(|_| ActivateError::Format)?;
    Ok(secret)
}

fn ak_name(byte: u8) -> Name {
    let mut n = vec![0x00, 0x0b];
    n.extend([byte; 32]);
    Name::from_bytes(&n).unwrap()
}

#[test]
fn rsa_round_trip_and_wrong_name() {
    for name_alg in [HashAlg::Sha256, HashAlg::Sha384] {
        let (k, ek) = rsa_ek(name_alg);
        let secret = b"0123456789abcdef0123456789abcdef";
        let cred = make_credential(&ek, &ak_name(1), secret).unwrap();
        assert_eq!(cred.encrypted_secret().len(), 256);
        assert_eq!(activate(&k, &ek, &ak_name(1), &cred).unwrap(), secret);
        assert_eq!(
            activate(&k, &ek, &ak_name(2), &cred),
            Err(ActivateError::Integrity)
        );
        // The ID object is HMAC TPM2B + encrypted TPM2B_DIGEST of the secret.
        assert_eq!(
            cred.id_object().len(),
            2 + name_alg.digest_len() + 2 + secret.len()
        );
    }
}

#[test]
fn ecc_round_trip_and_wrong_name() {
    for (curve, name_alg, sym) in [
        (EccCurve::NistP256, HashAlg::Sha256, SymDef::AES_128_CFB),
        (
            EccCurve::NistP384,
            HashAlg::Sha384,
            SymDef::Cipher {
                alg: TPM_ALG_AES,
                key_bits: 256,
                mode: TPM_ALG_CFB,
            },
        ),
        (
            EccCurve::NistP521,
            HashAlg::Sha512,
            SymDef::Cipher {
                alg: TPM_ALG_AES,
                key_bits: 256,
                mode: TPM_ALG_CFB,
            },
        ),
    ] {
        let (k, ek) = ecc_ek(curve, name_alg, sym);
        let secret = [0x5a; 20];
        let cred = make_credential(&ek, &ak_name(7), &secret).unwrap();
        assert_eq!(
            cred.encrypted_secret().len(),
            4 + 2 * curve.coordinate_len()
        );
        assert_eq!(activate(&k, &ek, &ak_name(7), &cred).unwrap(), secret);
        assert_eq!(
            activate(&k, &ek, &ak_name(8), &cred),
            Err(ActivateError::Integrity)
        );
    }
}

#[test]
fn tampered_credential_fails_integrity() {
    let (k, ek) = ecc_ek(EccCurve::NistP256, HashAlg::Sha256, SymDef::AES_128_CFB);
    let cred = make_credential(&ek, &ak_name(1), b"secret").unwrap();
    let mut id = cred.id_object().to_vec();
    let last = id.len() - 1;
    id[last] ^= 1;
    let bad = Credential::from_parts(id, cred.encrypted_secret().to_vec()).unwrap();
    assert_eq!(
        activate(&k, &ek, &ak_name(1), &bad),
        Err(ActivateError::Integrity)
    );
}

#[test]
fn input_validation() {
    let (_, ek) = rsa_ek(HashAlg::Sha256);
    let e = make_credential(&ek, &ak_name(1), &[1; 33]).unwrap_err();
    assert!(
        matches!(
            e,
            CredentialError::SecretTooLong {
                len: 33,
                max: 32,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        make_credential(&ek, &ak_name(1), &[]),
        Err(CredentialError::EmptySecret)
    ));
    let e = make_credential(&ek, &Name(vec![0x00, 0x0b, 1, 2]), b"s").unwrap_err();
    assert!(matches!(e, CredentialError::Name(_)), "{e}");
    assert!(e.to_string().contains("TPM2B_NAME.digest"), "{e}");

    let mut signing = ek.clone();
    signing.attributes = ObjectAttributes(signing.attributes.0 | ObjectAttributes::SIGN);
    let e = make_credential(&signing, &ak_name(1), b"s").unwrap_err();
    assert!(e.to_string().contains("sign=true"), "{e}");
    let mut unrestricted = ek.clone();
    unrestricted.attributes =
        ObjectAttributes(unrestricted.attributes.0 & !ObjectAttributes::RESTRICTED);
    assert!(matches!(
        make_credential(&unrestricted, &ak_name(1), b"s"),
        Err(CredentialError::NotRestrictedDecrypt {
            restricted: false,
            ..
        })
    ));

    let mut nosym = ek.clone();
    if let PublicKey::Rsa { symmetric, .. } = &mut nosym.key {
        *symmetric = SymDef::Null;
    }
    let e = make_credential(&nosym, &ak_name(1), b"s").unwrap_err();
    assert!(e.to_string().contains("TPM_ALG_NULL"), "{e}");

    let mut template = ek.clone();
    if let PublicKey::Rsa { modulus, .. } = &mut template.key {
        modulus.clear();
    }
    assert!(matches!(
        make_credential(&template, &ak_name(1), b"s"),
        Err(CredentialError::EmptyEkKey)
    ));

    let (_, mut off_curve) = ecc_ek(EccCurve::NistP256, HashAlg::Sha256, SymDef::AES_128_CFB);
    if let PublicKey::Ecc { y, .. } = &mut off_curve.key {
        y[31] ^= 1;
    }
    let e = make_credential(&off_curve, &ak_name(1), b"s").unwrap_err();
    assert!(e.to_string().contains("not on NIST P-256"), "{e}");
}

#[test]
fn tpm2_tools_file_round_trip_and_strictness() {
    let (_, ek) = rsa_ek(HashAlg::Sha256);
    let cred = make_credential(&ek, &ak_name(1), b"0123456789abcdef").unwrap();
    let file = cred.to_tpm2_tools_file();
    assert_eq!(&file[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    assert_eq!(&file[8..10], &(cred.id_object().len() as u16).to_be_bytes());
    let mut expect = vec![0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];
    expect.extend(cred.id_object_tpm2b());
    expect.extend(cred.encrypted_secret_tpm2b());
    assert_eq!(file, expect);
    assert_eq!(Credential::from_tpm2_tools_file(&file).unwrap(), cred);

    let mut trailing = file.clone();
    trailing.push(0);
    let e = Credential::from_tpm2_tools_file(&trailing).unwrap_err();
    assert!(e.to_string().contains("trailing"), "{e}");
    let e = Credential::from_tpm2_tools_file(&file[..file.len() - 1]).unwrap_err();
    assert!(e.to_string().contains("TPM2B_ENCRYPTED_SECRET"), "{e}");
    let mut magic = file.clone();
    magic[0] = 0;
    assert!(matches!(
        Credential::from_tpm2_tools_file(&magic),
        Err(CredentialError::FileMagic { found: 0x00dcc0de })
    ));
    let mut version = file;
    version[7] = 2;
    assert!(matches!(
        Credential::from_tpm2_tools_file(&version),
        Err(CredentialError::FileVersion { found: 2 })
    ));
}
