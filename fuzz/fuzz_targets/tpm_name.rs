#![no_main]
//! TPM2B_NAME contents: never panics; accepted names have a digest of the algorithm's length.
use libfuzzer_sys::fuzz_target;
use vouch_core::tpm::{HashAlg, Name};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Name::from_bytes(data) {
        let alg = HashAlg::from_id(u16::from_be_bytes([data[0], data[1]])).expect("known alg");
        assert_eq!(n.as_bytes().len(), 2 + alg.digest_len());
    }
});
