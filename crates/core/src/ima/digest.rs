//! File and buffer digests as IMA logs print them: `alg:hex` (upstream ast.py `Digest`).

use super::error::LogProblem;
use std::fmt;

/// Digest lengths of the kernel's `hash_algo_name` entries (include/crypto/hash_info.h).
const KNOWN_DIGESTS: &[(&str, usize)] = &[
    ("md4", 16),
    ("md5", 16),
    ("sha1", 20),
    ("rmd160", 20),
    ("sha256", 32),
    ("sha384", 48),
    ("sha512", 64),
    ("sha224", 28),
    ("rmd128", 16),
    ("rmd256", 32),
    ("rmd320", 40),
    ("wp256", 32),
    ("wp384", 48),
    ("wp512", 64),
    ("tgr128", 16),
    ("tgr160", 20),
    ("tgr192", 24),
    ("sm3", 32),
    ("sm3-256", 32),
    ("streebog256", 32),
    ("streebog512", 64),
    ("sha3-256", 32),
    ("sha3-384", 48),
    ("sha3-512", 64),
];

/// A file (or buffer) digest with its algorithm name as the kernel prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    alg: String,
    bytes: Vec<u8>,
}

impl FileDigest {
    /// A digest; the algorithm name is not checked (use `parse` for log text).
    pub fn new(alg: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            alg: alg.into(),
            bytes,
        }
    }

    /// `alg:hex`, or bare hex of 20 (sha1) or 16 (md5) bytes, as upstream's `ast.Digest`.
    pub fn parse(s: &str) -> Result<Self, LogProblem> {
        let mut parts = s.split(':');
        let first = parts.next().unwrap_or_default();
        let (alg, hex_part) = match (parts.next(), parts.next()) {
            (None, _) => (None, first),
            (Some(h), None) => (Some(first), h),
            (Some(_), Some(_)) => return Err(LogProblem::ExtraColon(s.to_string())),
        };
        let bytes = decode_hex(hex_part)?;
        let alg = match alg {
            None => match bytes.len() {
                20 => "sha1".to_string(),
                16 => "md5".to_string(),
                len => return Err(LogProblem::UnnamedDigest { len }),
            },
            Some(a) => {
                let well_formed = !a.is_empty()
                    && a.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if !well_formed {
                    return Err(LogProblem::BadAlgorithm(a.to_string()));
                }
                a.to_string()
            }
        };
        if let Some(&(_, expected)) = KNOWN_DIGESTS.iter().find(|(n, _)| *n == alg) {
            if bytes.len() != expected {
                return Err(LogProblem::DigestLength {
                    alg,
                    len: bytes.len(),
                    expected,
                });
            }
        } else if bytes.is_empty() {
            return Err(LogProblem::Empty);
        }
        Ok(Self { alg, bytes })
    }

    pub fn alg(&self) -> &str {
        &self.alg
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Lowercase hex, the form runtime policies list.
    pub fn hex(&self) -> String {
        hex::encode(&self.bytes)
    }
}

impl fmt::Display for FileDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg, self.hex())
    }
}

pub(crate) fn decode_hex(s: &str) -> Result<Vec<u8>, LogProblem> {
    hex::decode(s).map_err(|_| {
        let shown: String = s.chars().take(80).collect();
        LogProblem::NotHex(shown)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_digests_follow_upstream() {
        assert_eq!(FileDigest::parse(&"ab".repeat(20)).unwrap().alg(), "sha1");
        assert_eq!(FileDigest::parse(&"ab".repeat(16)).unwrap().alg(), "md5");
        assert_eq!(
            FileDigest::parse(&"ab".repeat(32)).unwrap_err(),
            LogProblem::UnnamedDigest { len: 32 }
        );
        assert_eq!(
            FileDigest::parse("sha3-256:").unwrap_err(),
            LogProblem::DigestLength {
                alg: "sha3-256".into(),
                len: 0,
                expected: 32
            }
        );
        assert_eq!(FileDigest::parse("newalg:abcd").unwrap().alg(), "newalg");
        assert_eq!(FileDigest::parse("newalg:").unwrap_err(), LogProblem::Empty);
        assert_eq!(
            FileDigest::parse(&format!("sha1:{}", "AB".repeat(20)))
                .unwrap()
                .to_string(),
            format!("sha1:{}", "ab".repeat(20))
        );
    }
}
