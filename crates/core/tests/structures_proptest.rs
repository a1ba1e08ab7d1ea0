//! Property tests for the TPM structures: marshal → unmarshal gives the same value back, and
//! unmarshalling arbitrary or corrupted bytes returns an error instead of panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches fail loudly

use proptest::prelude::*;
use vouch_core::tools::{read_pcr_file, write_pcr_file};
use vouch_core::tpm::attest::{CertifyInfo, ClockInfo, QuoteInfo};
use vouch_core::tpm::{
    Attest, Attested, BankSelection, EccCurve, HashAlg, KdfScheme, Name, ObjectAttributes,
    PcrSelection, PcrValues, Public, PublicKey, Scheme, Signature, SymDef,
};

fn hash() -> impl Strategy<Value = HashAlg> {
    prop::sample::select(HashAlg::ALL.to_vec())
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn selection() -> impl Strategy<Value = PcrSelection> {
    (
        Just(HashAlg::ALL.to_vec()).prop_shuffle(),
        0..=4usize,
        prop::collection::vec((3..=4usize, any::<[u8; 4]>()), 4),
    )
        .prop_map(|(algs, n, maps)| {
            let banks = algs
                .into_iter()
                .zip(maps)
                .take(n)
                .map(|(h, (size, map))| BankSelection::from_bitmap(h, &map[..size]).unwrap())
                .collect();
            PcrSelection::new(banks).unwrap()
        })
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![
        Just(Name(vec![])),
        any::<[u8; 4]>().prop_map(|h| Name(h.to_vec())),
        (hash(), any::<u8>()).prop_map(|(h, fill)| {
            let mut n = h.id().to_be_bytes().to_vec();
            n.extend(vec![fill; h.digest_len()]);
            Name(n)
        }),
    ]
}

fn attest() -> impl Strategy<Value = Attest> {
    let attested = prop_oneof![
        (selection(), bytes(64)).prop_map(|(selection, pcr_digest)| Attested::Quote(QuoteInfo {
            selection,
            pcr_digest
        })),
        (name(), name()).prop_map(|(name, qualified_name)| Attested::Certify(CertifyInfo {
            name,
            qualified_name
        })),
    ];
    (
        name(),
        bytes(64),
        any::<(u64, u32, u32, bool)>(),
        any::<u64>(),
        attested,
    )
        .prop_map(
            |(
                qualified_signer,
                extra_data,
                (clock, reset_count, restart_count, safe),
                firmware_version,
                attested,
            )| Attest {
                qualified_signer,
                extra_data,
                clock_info: ClockInfo {
                    clock,
                    reset_count,
                    restart_count,
                    safe,
                },
                firmware_version,
                attested,
            },
        )
}

fn signature() -> impl Strategy<Value = Signature> {
    prop_oneof![
        (hash(), bytes(512)).prop_map(|(hash, sig)| Signature::Rsassa { hash, sig }),
        (hash(), bytes(512)).prop_map(|(hash, sig)| Signature::Rsapss { hash, sig }),
        (hash(), bytes(128), bytes(128)).prop_map(|(hash, r, s)| Signature::Ecdsa { hash, r, s }),
    ]
}

fn sym() -> impl Strategy<Value = SymDef> {
    prop_oneof![
        Just(SymDef::Null),
        Just(SymDef::AES_128_CFB),
        (any::<u16>(), any::<u16>()).prop_map(|(key_bits, mode)| {
            SymDef::Cipher {
                alg: 0x0006,
                key_bits,
                mode,
            }
        })
    ]
}

fn public() -> impl Strategy<Value = Public> {
    let rsa_scheme = prop_oneof![
        Just(Scheme::Null),
        Just(Scheme::Rsaes),
        hash().prop_map(Scheme::Rsassa),
        hash().prop_map(Scheme::Rsapss),
        hash().prop_map(Scheme::Oaep),
    ];
    let ecc_scheme = prop_oneof![
        Just(Scheme::Null),
        hash().prop_map(Scheme::Ecdsa),
        hash().prop_map(Scheme::Ecdh),
        hash().prop_map(Scheme::Ecschnorr),
        hash().prop_map(Scheme::Sm2),
        (hash(), any::<u16>()).prop_map(|(h, c)| Scheme::Ecdaa(h, c)),
    ];
    let rsa = (
        sym(),
        rsa_scheme,
        prop::sample::select(vec![0usize, 128, 256, 384, 512]),
        any::<u32>(),
        any::<u8>(),
    )
        .prop_map(|(symmetric, scheme, len, exponent, fill)| PublicKey::Rsa {
            symmetric,
            scheme,
            key_bits: if len == 0 { 2048 } else { (len * 8) as u16 },
            exponent,
            modulus: vec![fill | 0x80; len],
        });
    let kdf = prop_oneof![
        Just(KdfScheme::Null),
        (0x20u16..=0x22, hash()).prop_map(|(alg, hash)| KdfScheme::Kdf { alg, hash })
    ];
    let curve = prop::sample::select(vec![
        EccCurve::NistP256,
        EccCurve::NistP384,
        EccCurve::NistP521,
    ]);
    let ecc = (sym(), ecc_scheme, curve, kdf, bytes(66), bytes(66)).prop_map(
        |(symmetric, scheme, curve, kdf, x, y)| {
            let n = curve.coordinate_len();
            PublicKey::Ecc {
                symmetric,
                scheme,
                curve,
                kdf,
                x: x.into_iter().take(n).collect(),
                y: y.into_iter().take(n).collect(),
            }
        },
    );
    (hash(), any::<u32>(), bytes(64), prop_oneof![rsa, ecc]).prop_map(
        |(name_alg, attrs, auth_policy, key)| Public {
            name_alg,
            attributes: ObjectAttributes(attrs),
            auth_policy,
            key,
        },
    )
}

fn selection_and_values() -> impl Strategy<Value = (PcrSelection, PcrValues)> {
    (selection(), any::<u8>()).prop_map(|(sel, seed)| {
        let mut v = PcrValues::new();
        for (h, i) in sel.iter() {
            v.insert(h, i, vec![seed ^ i; h.digest_len()]).unwrap();
        }
        (sel, v)
    })
}

/// Flip some bytes of a valid encoding: reaches deeper parser paths than random bytes do.
fn corrupt(mut b: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    for &(at, v) in edits {
        if !b.is_empty() {
            let i = at % b.len();
            b[i] = v;
        }
    }
    b
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)
}

proptest! {
    #[test]
    fn public_round_trips(p in public()) {
        prop_assert_eq!(Public::from_tpm2b(&p.to_tpm2b()).unwrap(), p.clone());
        prop_assert_eq!(Public::from_tpmt(&p.to_tpmt()).unwrap(), p);
    }

    #[test]
    fn attest_round_trips(a in attest()) {
        prop_assert_eq!(Attest::from_bytes(&a.to_bytes()).unwrap(), a);
    }

    #[test]
    fn signature_round_trips(s in signature()) {
        prop_assert_eq!(Signature::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn pcr_selection_round_trips(s in selection()) {
        prop_assert_eq!(PcrSelection::from_bytes(&s.to_bytes()).unwrap(), s.clone());
        if s.banks().iter().all(|b| !b.is_empty()) && !s.banks().is_empty() {
            let parsed: PcrSelection = s.to_string().parse().unwrap();
            prop_assert_eq!(parsed.iter().collect::<Vec<_>>(), s.iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn pcr_file_round_trips((sel, values) in selection_and_values()) {
        let b = write_pcr_file(&sel, &values).unwrap();
        prop_assert_eq!(read_pcr_file(&b).unwrap(), (sel, values));
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in bytes(700)) {
        let _ = Public::from_tpm2b(&b);
        let _ = Public::from_tpmt(&b);
        let _ = Attest::from_bytes(&b);
        let _ = Signature::from_bytes(&b);
        let _ = PcrSelection::from_bytes(&b);
        let _ = read_pcr_file(&b);
        let _ = String::from_utf8_lossy(&b).parse::<PcrSelection>();
    }

    #[test]
    fn corrupted_encodings_never_panic(
        p in public(), a in attest(), s in signature(), (sel, v) in selection_and_values(), e in edits()
    ) {
        let _ = Public::from_tpm2b(&corrupt(p.to_tpm2b(), &e));
        let _ = Attest::from_bytes(&corrupt(a.to_bytes(), &e));
        let _ = Signature::from_bytes(&corrupt(s.to_bytes(), &e));
        let _ = PcrSelection::from_bytes(&corrupt(sel.to_bytes(), &e));
        let _ = read_pcr_file(&corrupt(write_pcr_file(&sel, &v).unwrap(), &e));
    }
}
