//! Reading the files and arguments operators pass: keys in any of tpm2-tools' formats, hex or
//! file arguments, with errors that name the file.

use anyhow::{bail, Context, Result};
use std::path::Path;
use vouch_core::keys::VerifyingKey;
use vouch_core::tpm::Public;

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn write(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

/// A TPM2B_PUBLIC file (`tpm2_readpublic -o`, `tpm2_createak -u`, `tpm2_createek -u`).
pub fn tpm_public(path: &Path) -> Result<Public> {
    let bytes = read(path)?;
    Public::from_tpm2b(&bytes).with_context(|| format!("{}: not a TPM2B_PUBLIC", path.display()))
}

/// A verifying key from TPM2B_PUBLIC (attributes checkable), PEM or DER SubjectPublicKeyInfo
/// (`tpm2_readpublic -f pem|der`: no TPM attributes).
pub fn verifying_key(path: &Path) -> Result<VerifyingKey> {
    let bytes = read(path)?;
    let shown = path.display();
    if bytes.starts_with(b"-----BEGIN") {
        let text = String::from_utf8_lossy(&bytes);
        return VerifyingKey::from_pem(&text).with_context(|| format!("{shown}: PEM public key"));
    }
    if bytes.first() == Some(&0x30) {
        if let Ok(k) = VerifyingKey::from_spki_der(&bytes) {
            return Ok(k);
        }
    }
    let public = Public::from_tpm2b(&bytes)
        .with_context(|| format!("{shown}: neither a TPM2B_PUBLIC nor a PEM/DER public key"))?;
    VerifyingKey::from_public(&public)
        .with_context(|| format!("{shown}: unusable as a signing key"))
}

/// Hex on the command line (`0x` prefix allowed), or else the path of a binary file — the two
/// forms tpm2-tools accepts for qualification data and names.
pub fn hex_or_file(arg: &str, what: &str) -> Result<Vec<u8>> {
    let hex = arg.strip_prefix("0x").unwrap_or(arg);
    if let Ok(b) = hex::decode(hex) {
        return Ok(b);
    }
    let path = Path::new(arg);
    if path.is_file() {
        return read(path);
    }
    bail!("{what} {arg:?} is neither hex nor a readable file")
}
