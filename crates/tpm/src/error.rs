//! Errors of the TPM device layer, with the TPM return code spelled out.

use tss_esapi::constants::response_code::Tss2ResponseCode;

#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("no TPM configured: pass a TCTI (e.g. swtpm:host=127.0.0.1,port=2321 or device:/dev/tpmrm0) or set VOUCH_TCTI / TPM2TOOLS_TCTI")]
    NoTcti,
    #[error("invalid TCTI {tcti:?}: {cause}")]
    InvalidTcti {
        tcti: String,

        cause: tss_esapi::Error,
    },
    #[error("could not connect to the TPM at {tcti}: {detail} (is the TPM / swtpm running?)")]
    Connect { tcti: String, detail: String },
    #[error("TPM command {command} failed: {detail}")]
    Command {
        command: &'static str,
        /// The TSS2_RC, when the error came from the TPM or the TSS rather than the wrapper.
        code: Option<u32>,
        detail: String,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("could not convert {what}: {detail}")]
    Conversion { what: &'static str, detail: String },
    #[error("PCR values changed during the quote {attempts} times in a row; giving up")]
    PcrsChanged { attempts: u32 },
    #[error("the TPM owner thread has stopped (a previous call panicked?)")]
    Closed,
}

impl TpmError {
    /// Map a tss-esapi error from `command` (e.g. "Quote") to an actionable message:
    /// `TPM command Quote failed: TPM_RC_FAILURE (0x101): ...`.
    pub(crate) fn command(command: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
        move |e| {
            let (code, detail) = describe(e);
            TpmError::Command {
                command,
                code,
                detail,
            }
        }
    }

    pub(crate) fn conversion(what: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
        move |e| TpmError::Conversion {
            what,
            detail: e.to_string(),
        }
    }

    /// The TPM return code (TPM_RC) or TSS layer code, if there was one.
    pub fn response_code(&self) -> Option<u32> {
        match self {
            TpmError::Command { code, .. } => *code,
            _ => None,
        }
    }
}

/// The raw code and a description ("TPM_RC_HANDLE (0x18b): ...").
pub(crate) fn describe(e: tss_esapi::Error) -> (Option<u32>, String) {
    let rc = match e {
        tss_esapi::Error::WrapperError(kind) => return (None, format!("{kind} (tss-esapi)")),
        tss_esapi::Error::Tss2Error(rc) => rc,
    };
    let Some(code) = raw_code(rc) else {
        return (None, rc.to_string());
    };
    let layer = code >> 16;
    if layer != 0 {
        let name = match layer {
            0x06 => "FAPI",
            0x07 => "ESAPI",
            0x08 => "SAPI",
            0x09 => "MU",
            0x0a => "TCTI",
            0x0b | 0x0c => "resource manager",
            _ => "TSS",
        };
        let hint = if layer == 0x0a {
            " (I/O error talking to the TPM: did it stop?)"
        } else {
            ""
        };
        return (Some(code), format!("{name} layer error {code:#x}{hint}"));
    }
    let name = rc
        .kind()
        .map(|k| format!("TPM_RC_{}", upper_snake(&format!("{k:?}"))))
        .unwrap_or_else(|| "TPM_RC_?".to_string());
    (Some(code), format!("{name} ({code:#x}): {rc}"))
}

/// tss-esapi hides the number; its Display for the raw code types is "Response code value: 0x..".
fn raw_code(rc: Tss2ResponseCode) -> Option<u32> {
    let text = match rc {
        Tss2ResponseCode::Success => return Some(0),
        Tss2ResponseCode::FormatZero(c) => c.to_string(),
        Tss2ResponseCode::FormatOne(c) => c.to_string(),
    };
    let hex = text.rsplit("0x").next()?;
    u32::from_str_radix(hex.trim(), 16).ok()
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_spelling() {
        assert_eq!(upper_snake("PcrChanged"), "PCR_CHANGED");
        assert_eq!(upper_snake("Failure"), "FAILURE");
        assert_eq!(upper_snake("ReferenceH0"), "REFERENCE_H0");
    }
}
