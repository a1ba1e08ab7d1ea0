#![no_main]
//! TPMS_ATTEST: never panics; whatever parses marshals back to the same bytes.
use libfuzzer_sys::fuzz_target;
use vouch_core::tpm::Attest;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Attest::from_bytes(data) {
        assert_eq!(a.to_bytes(), data);
    }
});
