#![no_main]
//! TPMT_SIGNATURE: never panics; whatever parses marshals back to the same bytes.
use libfuzzer_sys::fuzz_target;
use vouch_core::tpm::Signature;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Signature::from_bytes(data) {
        assert_eq!(s.to_bytes(), data);
    }
});
