//! Which TPM to talk to: a TCTI configuration string as tpm2-tools spells it.

use crate::error::TpmError;
use std::fmt;
use std::str::FromStr;
use tss_esapi::tcti_ldr::TctiNameConf;

/// Environment variables consulted by [`Tcti::from_env`], in order.
pub const TCTI_ENV_VARS: [&str; 2] = ["VOUCH_TCTI", "TPM2TOOLS_TCTI"];

/// A validated TCTI string: `swtpm:host=127.0.0.1,port=2321`, `device:/dev/tpmrm0`,
/// `tabrmd`, `mssim:host=..,port=..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcti(String);

impl Tcti {
    /// From `VOUCH_TCTI`, else `TPM2TOOLS_TCTI`.
    pub fn from_env() -> Result<Tcti, TpmError> {
        TCTI_ENV_VARS
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
            .ok_or(TpmError::NoTcti)?
            .parse()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn name_conf(&self) -> Result<TctiNameConf, TpmError> {
        TctiNameConf::from_str(&self.0).map_err(|source| TpmError::InvalidTcti {
            tcti: self.0.clone(),
            cause: source,
        })
    }
}

impl FromStr for Tcti {
    type Err = TpmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = Tcti(s.trim().to_string());
        t.name_conf()?;
        Ok(t)
    }
}

impl fmt::Display for Tcti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_spellings() {
        for s in [
            "swtpm:host=127.0.0.1,port=2321",
            "device:/dev/tpmrm0",
            "tabrmd",
            "mssim:host=localhost,port=2321",
        ] {
            assert_eq!(s.parse::<Tcti>().unwrap().as_str(), s);
        }
        let e = "nonsense:foo".parse::<Tcti>().unwrap_err();
        assert!(e.to_string().contains("nonsense:foo"), "{e}");
    }
}
