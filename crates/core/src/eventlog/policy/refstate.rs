//! The reference state ("refstate", the agent's `mb_policy`) in upstream keylime's format
//! (`keylime/mba/elchecking/example.py`, written by `keylime-policy create measured-boot`).
//!
//! Every key of upstream's format is accepted, so an upstream refstate file loads; unknown keys
//! are rejected (upstream ignores them) so a typo cannot silently switch a check off. Values are
//! checked when the file is loaded: a digest must be `0x` + hex of the right length for its
//! algorithm, an owner a GUID, `kernel_cmdline` a regular expression.

use super::super::error::PolicyError;
use super::super::parse::Event;
use super::super::types::Guid;
use crate::tpm::alg::HashAlg;
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A parsed refstate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefState {
    /// Upstream's default is `true`: SecureBoot must be measured as enabled.
    #[serde(default = "default_true")]
    pub has_secureboot: bool,
    /// Allowed (S-CRTM version, platform firmware blob sequence) combinations.
    #[serde(default)]
    pub scrtm_and_bios: Option<Vec<ScrtmAndBios>>,
    /// Every key in PK must be one of these.
    #[serde(default)]
    pub pk: Option<Vec<KeyRef>>,
    /// Every key in KEK must be one of these.
    #[serde(default)]
    pub kek: Option<Vec<KeyRef>>,
    /// Every certificate or hash in db must be one of these.
    #[serde(default)]
    pub db: Option<Vec<KeyRef>>,
    /// dbx must contain at least these revocations.
    #[serde(default)]
    pub dbx: Option<Vec<KeyRef>>,
    /// shim's vendor_db, if measured, holds only these.
    #[serde(default)]
    pub vendor_db: Option<Vec<KeyRef>>,
    /// Allowed digests of shim's MokList (PCR 14 EV_IPL "MokList").
    #[serde(default)]
    pub mokdig: Option<Vec<DigestSet>>,
    /// Allowed digests of shim's MokListX.
    #[serde(default)]
    pub mokxdig: Option<Vec<DigestSet>>,
    /// Allowed boot chains.
    #[serde(default)]
    pub kernels: Option<Vec<Kernel>>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrtmAndBios {
    /// Digest of the single EV_S_CRTM_VERSION event in PCR 0.
    pub scrtm: DigestSet,
    /// Digests of the EV_EFI_PLATFORM_FIRMWARE_BLOB(2) events in PCR 0, in order.
    pub platform_firmware: Vec<DigestSet>,
}

/// One allowed boot chain. With secure boot, PCR 4 must hold exactly shim, grub and the kernel
/// (the kernel possibly twice); without, shim and grub, and grub's PCR 9 measurement of the
/// kernel file must be `vmlinuz_plain_sha256`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    pub shim_authcode_sha256: Sha256Hex,
    pub grub_authcode_sha256: Sha256Hex,
    /// Required when `has_secureboot` is true.
    #[serde(default)]
    pub kernel_authcode_sha256: Option<Sha256Hex>,
    /// Checked only when `has_secureboot` is false (as upstream).
    #[serde(default)]
    pub vmlinuz_plain_sha256: Option<Sha256Hex>,
    /// Upstream requires it; Vouch skips the initrd check when it is absent.
    #[serde(default)]
    pub initrd_plain_sha256: Option<Sha256Hex>,
    /// Python-style regex the text after `kernel_cmdline: ` must match in full. Upstream
    /// requires it; Vouch skips the command-line check when it is absent.
    #[serde(default)]
    pub kernel_cmdline: Option<CmdlineRegex>,
}

/// `{"SignatureOwner": "<guid>", "SignatureData": "0x<hex>"}`: one EFI_SIGNATURE_DATA.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    #[serde(rename = "SignatureOwner", deserialize_with = "guid")]
    pub owner: Guid,
    #[serde(rename = "SignatureData", deserialize_with = "hex0x")]
    pub data: Vec<u8>,
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "owner {} data 0x{}", self.owner, hex::encode(&self.data))
    }
}

/// `{"sha256": "0x…", "sha1": "0x…"}`: an event matches if any of its digests in these
/// algorithms equals the value given (upstream's `DigestTest`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>")]
pub struct DigestSet(BTreeMap<HashAlg, Vec<u8>>);

impl DigestSet {
    pub fn new(digests: BTreeMap<HashAlg, Vec<u8>>) -> Self {
        Self(digests)
    }

    pub fn matches(&self, ev: &Event) -> bool {
        self.0
            .iter()
            .any(|(h, want)| ev.digest(*h) == Some(want.as_slice()))
    }

    /// The event's digests in this set's algorithms, for messages: `sha256:ab…`.
    pub fn show_event(&self, ev: &Event) -> String {
        let shown: Vec<String> = self
            .0
            .keys()
            .filter_map(|h| ev.digest(*h).map(|d| format!("{h}:{}", hex::encode(d))))
            .collect();
        if shown.is_empty() {
            let algs: Vec<&str> = self.0.keys().map(|h| h.name()).collect();
            format!("no digest in {}", algs.join("/"))
        } else {
            shown.join(" ")
        }
    }
}

impl fmt::Display for DigestSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (h, d)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{h}:{}", hex::encode(d))?;
        }
        Ok(())
    }
}

impl TryFrom<BTreeMap<String, String>> for DigestSet {
    type Error = String;

    fn try_from(m: BTreeMap<String, String>) -> Result<Self, String> {
        if m.is_empty() {
            return Err("a digest needs at least one algorithm, e.g. {\"sha256\": \"0x…\"}".into());
        }
        let mut out = BTreeMap::new();
        for (alg, value) in m {
            let h = HashAlg::from_name(&alg).ok_or_else(|| {
                format!("{alg:?} is not a hash algorithm (sha1, sha256, sha384, sha512)")
            })?;
            let d = parse_hex0x(&value)?;
            if d.len() != h.digest_len() {
                return Err(format!(
                    "{alg} digest {value:?} is {} bytes, a {alg} digest is {}",
                    d.len(),
                    h.digest_len()
                ));
            }
            out.insert(h, d);
        }
        Ok(Self(out))
    }
}

/// `0x` + 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Sha256Hex(pub [u8; 32]);

impl TryFrom<String> for Sha256Hex {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let d = parse_hex0x(&s)?;
        <[u8; 32]>::try_from(d.as_slice())
            .map(Sha256Hex)
            .map_err(|_| format!("{s:?} is {} bytes, a sha256 digest is 32", d.len()))
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// Upstream matches `"kernel_cmdline: " + regex` against the whole event text (Python
/// `re.fullmatch`). Rust's regex syntax agrees with Python's for what `re.escape` writes;
/// look-around and back-references are rejected at load time.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CmdlineRegex {
    pub source: String,
    re: Regex,
}

impl CmdlineRegex {
    /// Whether `text` (the full event text, `kernel_cmdline: …`) matches.
    pub fn matches(&self, text: &str) -> bool {
        self.re.is_match(text)
    }
}

impl TryFrom<String> for CmdlineRegex {
    type Error = String;

    fn try_from(source: String) -> Result<Self, String> {
        let re = regex::RegexBuilder::new(&format!(r"\A(?:kernel_cmdline: (?:{source}))\z"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                format!("kernel_cmdline {source:?} is not a usable regular expression: {e}")
            })?;
        Ok(Self { source, re })
    }
}

fn parse_hex0x(s: &str) -> Result<Vec<u8>, String> {
    let h = s
        .strip_prefix("0x")
        .ok_or_else(|| format!("{s:?} does not start with 0x"))?;
    if h.is_empty() {
        return Err(format!("{s:?} has no hex digits after 0x"));
    }
    hex::decode(h).map_err(|e| format!("{s:?} is not 0x followed by hex bytes: {e}"))
}

fn guid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Guid, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn hex0x<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    parse_hex0x(&s).map_err(serde::de::Error::custom)
}

impl RefState {
    /// Parse and validate. `{}` is valid (and evaluates like accept-all, as upstream).
    pub fn from_json(json: &str) -> Result<Self, PolicyError> {
        let rs: RefState =
            serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
        if let Some(kernels) = &rs.kernels {
            for (i, k) in kernels.iter().enumerate() {
                if rs.has_secureboot && k.kernel_authcode_sha256.is_none() {
                    return Err(PolicyError::Invalid {
                        path: format!("kernels[{i}]"),
                        reason: "kernel_authcode_sha256 is required when has_secureboot is true \
                                 (shim measures the kernel into PCR 4)"
                            .into(),
                    });
                }
            }
        }
        Ok(rs)
    }

    /// `{}`: upstream's "no refstate", nothing to evaluate.
    pub fn is_empty_object(json: &str) -> bool {
        matches!(
            serde_json::from_str::<serde_json::Value>(json),
            Ok(serde_json::Value::Object(m)) if m.is_empty()
        )
    }
}
