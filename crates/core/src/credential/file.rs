//! tpm2-tools' credential file: what `tpm2_makecredential -o` writes and
//! `tpm2_activatecredential -i` reads, and what keylime's registrar sends to its agent
//! (base64) as the `blob`.
//!
//! Layout (all big-endian): u32 magic 0xBADCC0DE, u32 version 1, TPM2B_ID_OBJECT,
//! TPM2B_ENCRYPTED_SECRET.

use super::{Credential, CredentialError};
use crate::tpm::{Reader, Writer};

pub const CREDENTIAL_FILE_MAGIC: u32 = 0xBADC_C0DE;
pub const CREDENTIAL_FILE_VERSION: u32 = 1;

impl Credential {
    /// The tpm2-tools credential file.
    pub fn to_tpm2_tools_file(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(CREDENTIAL_FILE_MAGIC)
            .u32(CREDENTIAL_FILE_VERSION)
            .sized(&self.id_object)
            .sized(&self.encrypted_secret);
        w.into_vec()
    }

    /// Parse a tpm2-tools credential file strictly (no trailing bytes).
    pub fn from_tpm2_tools_file(bytes: &[u8]) -> Result<Self, CredentialError> {
        let mut r = Reader::new(bytes);
        let magic = r.u32("credential file magic")?;
        if magic != CREDENTIAL_FILE_MAGIC {
            return Err(CredentialError::FileMagic { found: magic });
        }
        let version = r.u32("credential file version")?;
        if version != CREDENTIAL_FILE_VERSION {
            return Err(CredentialError::FileVersion { found: version });
        }
        let c = Credential::read(&mut r)?;
        r.finish("credential file")?;
        Ok(c)
    }
}
