//! Building runtime policies for the tenant CLI (upstream:
//! keylime/policy/create_runtime_policy.py `create_runtime_policy`, `path_digests`,
//! `get_hashes_from_measurement_list`, `process_ima_buf_in_measurement_list`,
//! `process_signature_verification_keys`).
//!
//! As upstream: file digests are sha256 by default, spaces in paths become `_` (IMA prints
//! them so), every digest list is sorted and de-duplicated, the generator is
//! `LegacyAllowList` and the timestamp is Python's `str(datetime.now())` layout (in UTC here).
//! Unlike upstream, violation records (all-zero template hash) are not copied from a log, and
//! no digest-algorithm consistency between sources is enforced.

use super::entry::{parse_log, Event};
use super::error::{ParseError, PolicyError};
use super::key::{ImaKey, KeyError};
use super::keyring::Keyring;
use super::policy::{DigestMap, Generator, RuntimePolicy};
use super::pyregex;
use crate::tpm::HashAlg;
use aws_lc_rs::digest;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Error)]
pub enum CreateError {
    #[error("cannot read {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{path} is not valid UTF-8, so it cannot be a runtime policy key")]
    NonUtf8Path { path: String },
    #[error("{path} is not under {root}")]
    OutsideRoot { path: String, root: String },
    #[error("digest {digest:?} for {path}: not 40 to 128 lowercase hex characters")]
    BadDigest { path: String, digest: String },
    #[error("{0}")]
    Log(ParseError),
    #[error("verification key {what}: {cause}")]
    Key { what: String, cause: KeyError },
    #[error("verification key {what} is neither a certificate nor a public key")]
    NotAKey { what: String },
    #[error("{0}")]
    Policy(PolicyError),
}

/// What to take from an IMA log besides file digests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogImport {
    /// `--keyrings`: digests of keys measured into keyrings go to `keyrings`.
    pub keyrings: bool,
    /// `--ima-buf`: digests of other `ima-buf` entries go to `ima-buf`.
    pub ima_buf: bool,
}

/// Accumulates a runtime policy.
#[derive(Debug, Clone)]
pub struct PolicyBuilder {
    policy: RuntimePolicy,
    keys: Keyring,
}

impl Default for PolicyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyBuilder {
    pub fn new() -> Self {
        Self {
            policy: RuntimePolicy::empty(),
            keys: Keyring::default(),
        }
    }

    /// Start from an existing policy (`--base-policy`): its digests, excludes, keyrings,
    /// ima-buf, ignored keyrings, log hash algorithm and verification keys are kept.
    pub fn from_base(base: RuntimePolicy) -> Result<Self, CreateError> {
        let keys =
            Keyring::from_policy_json(&base.verification_keys).map_err(CreateError::Policy)?;
        Ok(Self { policy: base, keys })
    }

    /// Allow `hex` (lowercase) for `path`.
    pub fn add_digest(&mut self, path: &str, hex: &str) -> Result<(), CreateError> {
        add_to(&mut self.policy.digests, path, hex)
    }

    /// Hash a file with sha256 and allow it under `policy_path` (spaces become `_`).
    pub fn add_file(&mut self, file: &Path, policy_path: &str) -> Result<String, CreateError> {
        let hex = file_digest(file, HashAlg::Sha256)?;
        self.add_digest(&policy_path.replace(' ', "_"), &hex)?;
        Ok(hex)
    }

    /// Hash files with sha256. With a `root` (an image mounted elsewhere), the policy path is
    /// the file's path below it; otherwise the path as given (make it absolute).
    pub fn add_files<P: AsRef<Path>>(
        &mut self,
        files: &[P],
        root: Option<&Path>,
    ) -> Result<usize, CreateError> {
        for f in files {
            let f = f.as_ref();
            let shown = f.display().to_string();
            let rel = match root {
                Some(r) if r != Path::new("/") => {
                    f.strip_prefix(r).map_err(|_| CreateError::OutsideRoot {
                        path: shown.clone(),
                        root: r.display().to_string(),
                    })?
                }
                _ => f,
            };
            let rel = rel
                .to_str()
                .ok_or(CreateError::NonUtf8Path { path: shown })?;
            let policy_path = if rel.starts_with('/') {
                rel.to_string()
            } else {
                format!("/{rel}")
            };
            self.add_file(f, &policy_path)?;
        }
        Ok(files.len())
    }

    /// Take every `ima-ng`/`ima-sig` entry's digest by path from an IMA log (and, as asked,
    /// keyring and buffer digests). Returns the number of digests taken.
    pub fn add_ima_log(&mut self, log: &str, import: LogImport) -> Result<usize, CreateError> {
        let mut n = 0;
        for le in parse_log(log, 0).map_err(CreateError::Log)? {
            if le.entry.is_violation() {
                continue;
            }
            match &le.entry.event {
                Event::ImaNg { digest, path } | Event::ImaSig { digest, path, .. } => {
                    add_to(&mut self.policy.digests, path, &digest.hex())?;
                    n += 1;
                }
                Event::ImaBuf { digest, name, data } => {
                    let is_cert =
                        matches!(X509Certificate::from_der(data), Ok((rest, _)) if rest.is_empty());
                    if is_cert {
                        let ignored = self.policy.ima.ignored_keyrings.iter().any(|k| k == name);
                        if import.keyrings && !ignored {
                            add_to(&mut self.policy.keyrings, name, &digest.hex())?;
                            n += 1;
                        }
                    } else if import.ima_buf {
                        add_to(&mut self.policy.ima_buf, name, &digest.hex())?;
                        n += 1;
                    }
                }
                Event::Ima { .. } => {}
            }
        }
        Ok(n)
    }

    /// Add a Python regex to `excludes` (checked now, as upstream's exclude-list file loader).
    pub fn add_exclude(&mut self, pattern: &str) -> Result<(), CreateError> {
        pyregex::compile_excludes(&[pattern.to_string()]).map_err(|(pattern, problem)| {
            CreateError::Policy(PolicyError::Exclude { pattern, problem })
        })?;
        self.policy.excludes.push(pattern.to_string());
        Ok(())
    }

    /// `--ignored-keyrings`.
    pub fn ignore_keyring(&mut self, name: &str) {
        self.policy.ima.ignored_keyrings.push(name.to_string());
    }

    /// `--add-ima-signature-verification-key`: a certificate or public key (DER or PEM).
    pub fn add_verification_key(&mut self, what: &str, data: &[u8]) -> Result<u32, CreateError> {
        let key = ImaKey::from_file_data(data)
            .map_err(|cause| CreateError::Key {
                what: what.to_string(),
                cause,
            })?
            .ok_or_else(|| CreateError::NotAKey {
                what: what.to_string(),
            })?;
        let id = key.keyid();
        self.keys.add(key);
        Ok(id)
    }

    /// Finish: de-duplicate and sort, stamp, validate.
    pub fn build(mut self, timestamp: Option<String>) -> Result<RuntimePolicy, CreateError> {
        for map in [
            &mut self.policy.digests,
            &mut self.policy.keyrings,
            &mut self.policy.ima_buf,
        ] {
            for list in map.values_mut() {
                list.sort();
                list.dedup();
            }
        }
        self.policy.excludes.sort();
        self.policy.excludes.dedup();
        self.policy.ima.ignored_keyrings.sort();
        self.policy.ima.ignored_keyrings.dedup();
        if !self.keys.is_empty() {
            self.policy.verification_keys = self.keys.to_policy_json();
        }
        self.policy.meta.generator = Generator::LegacyAllowList;
        self.policy.meta.timestamp =
            Some(timestamp.unwrap_or_else(|| python_timestamp(SystemTime::now())));
        self.policy.validate().map_err(CreateError::Policy)?;
        Ok(self.policy)
    }
}

fn add_to(map: &mut DigestMap, path: &str, hex: &str) -> Result<(), CreateError> {
    let ok = (40..=128).contains(&hex.len())
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(CreateError::BadDigest {
            path: path.to_string(),
            digest: hex.to_string(),
        });
    }
    map.entry(path.to_string())
        .or_default()
        .push(hex.to_string());
    Ok(())
}

/// Hex digest of a file's content, read in chunks.
pub fn file_digest(file: &Path, alg: HashAlg) -> Result<String, CreateError> {
    let io = |cause| CreateError::Io {
        path: file.display().to_string(),
        cause,
    };
    let mut f = std::fs::File::open(file).map_err(io)?;
    let ring_alg = match alg {
        HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => &digest::SHA256,
        HashAlg::Sha384 => &digest::SHA384,
        HashAlg::Sha512 => &digest::SHA512,
    };
    let mut ctx = digest::Context::new(ring_alg);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, the layout of Python's `str(datetime)`, in UTC.
pub fn python_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let rem = secs % 86_400;
    let (year, month, day) = crate::calendar::civil_from_days(secs / 86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ima::testlog::LogWriter;
    use std::time::Duration;

    #[test]
    fn timestamp_layout() {
        let t = UNIX_EPOCH + Duration::from_micros(1_714_557_600_123_456);
        assert_eq!(python_timestamp(t), "2024-05-01 10:00:00.123456");
        assert_eq!(python_timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000000");
    }

    #[test]
    fn from_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("usr/bin");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("my tool"), b"abc").unwrap();
        let mut b = PolicyBuilder::new();
        b.add_files(&[a.join("my tool")], Some(dir.path())).unwrap();
        assert!(matches!(
            b.add_files(&[Path::new("/etc/passwd")], Some(dir.path())),
            Err(CreateError::OutsideRoot { .. })
        ));
        assert!(matches!(
            b.add_file(&dir.path().join("missing"), "/x"),
            Err(CreateError::Io { .. })
        ));
        let p = b.build(Some("t".into())).unwrap();
        assert_eq!(
            p.digests["/usr/bin/my_tool"],
            vec!["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string()]
        );
        assert_eq!(p.meta.generator, Generator::LegacyAllowList);
        assert_eq!(p.meta.timestamp.as_deref(), Some("t"));
    }

    #[test]
    fn from_ima_log() {
        let mut log = LogWriter::new();
        log.boot_aggregate(&[7; 32]);
        let ls = log.file("/usr/bin/ls", b"ls v1");
        log.file("/usr/bin/ls", b"ls v1");
        let ls2 = log.file("/usr/bin/ls", b"ls v2");
        log.signed_file("/usr/bin/sig", b"s", &[]);
        log.violation("/tmp/x");
        log.buffer("kexec-cmdline", b"root=/dev/sda");
        let ck = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["k".into()])
            .unwrap()
            .self_signed(&ck)
            .unwrap();
        let key = log.buffer(".ima", cert.der());
        log.buffer(".builtin_trusted_keys", cert.der());

        let mut b = PolicyBuilder::new();
        b.ignore_keyring(".builtin_trusted_keys");
        b.add_ima_log(
            &log.text(),
            LogImport {
                keyrings: true,
                ima_buf: false,
            },
        )
        .unwrap();
        b.add_exclude("/tmp/.*").unwrap();
        assert!(b.add_exclude("(?<=x)").is_err());
        b.add_verification_key("cert", cert.pem().as_bytes())
            .unwrap();
        let p = b.build(None).unwrap();
        let mut both = vec![ls.digest_hex(), ls2.digest_hex()];
        both.sort();
        assert_eq!(p.digests["/usr/bin/ls"], both);
        assert!(p.digests.contains_key("boot_aggregate") && p.digests.contains_key("/usr/bin/sig"));
        assert!(!p.digests.contains_key("/tmp/x"));
        assert_eq!(p.keyrings.len(), 1);
        assert_eq!(p.keyrings[".ima"], vec![key.digest_hex()]);
        assert!(p.ima_buf.is_empty());
        assert!(p.verification_keys.contains("pubkeys"));
        // The output parses back as a policy and upstream's layout.
        let text = p.to_json();
        assert_eq!(RuntimePolicy::from_json(&text).unwrap(), p);
    }
}
