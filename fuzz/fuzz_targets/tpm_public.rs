#![no_main]
//! TPM2B_PUBLIC: never panics; whatever parses marshals back to the same bytes.
use libfuzzer_sys::fuzz_target;
use vouch_core::tpm::Public;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Public::from_tpm2b(data) {
        assert_eq!(p.to_tpm2b(), data);
        let _ = p.name();
        let _ = vouch_core::der::spki(&p);
    }
    if let Ok(p) = Public::from_tpmt(data) {
        assert_eq!(p.to_tpmt(), data);
    }
});
