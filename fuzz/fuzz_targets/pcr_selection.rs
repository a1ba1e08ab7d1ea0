#![no_main]
//! TPML_PCR_SELECTION (binary) and tpm2-tools' selection syntax (text): never panic; binary
//! round-trips, and a parsed text selection prints back to a selection that parses the same.
use libfuzzer_sys::fuzz_target;
use vouch_core::tpm::PcrSelection;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = PcrSelection::from_bytes(data) {
        assert_eq!(s.to_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = text.parse::<PcrSelection>() {
            let again: PcrSelection = s.to_string().parse().expect("printed selection parses");
            assert_eq!(again, s);
        }
    }
});
