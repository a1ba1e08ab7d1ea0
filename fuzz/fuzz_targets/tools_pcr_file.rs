#![no_main]
//! tpm2-tools' PCR output file: never panics; what parses writes back to a file that parses the same.
use libfuzzer_sys::fuzz_target;
use vouch_core::tools::{read_pcr_file, write_pcr_file};

fuzz_target!(|data: &[u8]| {
    if let Ok((sel, values)) = read_pcr_file(data) {
        let out = write_pcr_file(&sel, &values).expect("parsed values write back");
        let (sel2, values2) = read_pcr_file(&out).expect("written file parses");
        assert_eq!(sel2, sel);
        assert_eq!(values2, values);
    }
});
