#![no_main]
//! tpm2-tools credential file: never panics; what parses writes back to the same bytes.
//! The same input as a TPM2B_PUBLIC EK drives a software MakeCredential, which may refuse the
//! key but must not panic.
use libfuzzer_sys::fuzz_target;
use vouch_core::credential::{make_credential, Credential};
use vouch_core::tpm::{Name, Public};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Credential::from_tpm2_tools_file(data) {
        assert_eq!(c.to_tpm2_tools_file(), data);
        let again = Credential::from_parts(c.id_object().to_vec(), c.encrypted_secret().to_vec())
            .expect("parsed parts re-check");
        assert_eq!(again, c);
    }
    if let Ok(ek) = Public::from_tpm2b(data) {
        // A SHA-256 Name (0x000b || 32 bytes) and a secret every nameAlg can carry.
        let mut name = vec![0x00, 0x0b];
        name.extend_from_slice(&[0x5a; 32]);
        let name = Name::from_bytes(&name).expect("valid Name");
        if let Ok(c) = make_credential(&ek, &name, &[0xa5; 16]) {
            let file = c.to_tpm2_tools_file();
            assert_eq!(Credential::from_tpm2_tools_file(&file).expect("made parses"), c);
        }
    }
});
