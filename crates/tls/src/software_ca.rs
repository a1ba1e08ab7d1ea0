//! A software CA for node certificates, as upstream's `keylime_ca` (`ca_util.py`,
//! `ca_impl_openssl.py`): issue a certificate and key per node, ship them to the node in the
//! tenant's `--cert` package, revoke them, and publish a CRL signed by the CA.
//!
//! The CA is the one [`Ca`] creates and loads (`cacert.crt`, `ca-private.pem`); this module
//! adds the bookkeeping upstream keeps in its encrypted `private.yml` (`lastserial`,
//! `revoked_keys`), in the plain files `openssl ca` uses, so the directory can be read with
//! standard tools:
//!
//! ```text
//! cacert.crt  ca-private.pem  ca-public.pem    the CA (upstream names; ca-private.pem 0600)
//! cacrl.der  cacrl.pem                          CRL, rewritten on every revocation (upstream)
//! index.txt                                     openssl-ca database: one line per issued cert
//!                                               V|R <tab> notAfter <tab> revoked-at <tab>
//!                                               serial(hex) <tab> unknown <tab> /CN=name/O=Vouch
//! serial  crlnumber                             next serial / next CRL number, hex (openssl ca)
//! .ca.lock                                      flock(2) held by every change
//! NAME-cert.crt  NAME-private.pem  NAME-public.pem   per issued name (upstream names)
//! RevocationNotifier-*                          the key the verifier signs notices with
//! ```
//!
//! Serials count up from 2 (upstream: the CA is serial 1, `lastserial + 1` for each cert). Every
//! change takes an exclusive `flock` on `.ca.lock`, re-reads the state under it and replaces
//! each file by an atomic rename, so a verifier revoking on failure and an operator issuing at
//! the same time cannot lose an update or reuse a serial. All calls block (RSA key generation,
//! file locks): call them from `spawn_blocking` in async code.
//!
//! Differences from upstream: no password-encrypted `private.yml` (the CA key is the 0600 PEM
//! `keylime_ca -c import-priv` reads); `init` refuses to replace an existing CA without `force`
//! instead of deleting `*.pem *.crt *.zip *.der`; the CRL's `nextUpdate` is
//! [`CRL_LIFETIME_DAYS`] ahead (upstream sets it equal to `lastUpdate`, which OpenSSL reports
//! as expired) and it carries a CRL number; no CRL distribution point (nothing here serves the
//! CRL over HTTP).

use crate::ca::{Ca, CaOptions, IssuedCert, Validity, CERT_LIFETIME_DAYS};
use crate::error::TlsError;
use crate::layout::TlsDir;
use rcgen::{
    Certificate, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    KeyPair, RevokedCertParams, RsaKeySize, SanType, SerialNumber, PKCS_RSA_SHA256,
};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The CRL in DER (upstream `cacrl.der`).
pub const CRL_DER: &str = "cacrl.der";
/// The CRL in PEM (upstream `cacrl.pem`).
pub const CRL_PEM: &str = "cacrl.pem";
/// The certificate database, `openssl ca`'s format.
pub const INDEX: &str = "index.txt";
/// The next serial number, hex (`openssl ca`'s `serial`).
pub const SERIAL: &str = "serial";
/// The next CRL number, hex (`openssl ca`'s `crlnumber`).
pub const CRL_NUMBER: &str = "crlnumber";
/// Held with `flock` while the CA changes.
pub const LOCK: &str = ".ca.lock";
/// Name of the notice-signing certificate (upstream tenant: `cmd_mkcert(ca_dir,
/// "RevocationNotifier")`); its key is the `revocation_key` the verifier gets.
pub const REVOCATION_NOTIFIER: &str = "RevocationNotifier";
/// Days a CRL is valid; refresh with [`SoftwareCa::write_crl`] before then.
pub const CRL_LIFETIME_DAYS: u32 = 30;
/// Upstream: the CA certificate is serial 1, the first issued one `lastserial + 1` = 2.
const FIRST_SERIAL: u64 = 2;
/// Same margin as the certificates [`Ca`] issues, for nodes whose clock is a little behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
const ORGANIZATION: &str = "Vouch";
const KEY_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum SoftwareCaError {
    #[error("{0}")]
    Tls(TlsError),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: line {line}: {reason}", path.display())]
    Index {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: {reason}", path.display())]
    Counter { path: PathBuf, reason: String },
    #[error(
        "{}: already exists; not replacing a CA directory without force (vouch ca init --force)",
        path.display()
    )]
    AlreadyExists { path: PathBuf },
    #[error("invalid certificate name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error(
        "a valid certificate named {name:?} already exists (serial {serial}); revoke it first to \
         issue a new one"
    )]
    AlreadyIssued { name: String, serial: Serial },
    #[error("{}: exists but was not issued by this CA (no entry in index.txt); not replacing it", path.display())]
    NotOurs { path: PathBuf },
    #[error("no certificate named {name:?} in {}", index.display())]
    UnknownName { name: String, index: PathBuf },
    #[error("no certificate with serial {serial} in {}", index.display())]
    UnknownSerial { serial: Serial, index: PathBuf },
    #[error("invalid serial number {text:?}: {reason}")]
    BadSerial { text: String, reason: String },
    #[error("generating {what}: {cause}")]
    Generate { what: String, cause: rcgen::Error },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("building the certificate package: {cause}")]
    Zip { cause: zip::result::ZipError },
    #[error("certificate package: extra file {name:?}: {reason}")]
    PackageFile { name: String, reason: String },
}

impl From<TlsError> for SoftwareCaError {
    fn from(e: TlsError) -> SoftwareCaError {
        SoftwareCaError::Tls(e)
    }
}

pub type Result<T, E = SoftwareCaError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SoftwareCaError + '_ {
    move |cause| SoftwareCaError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// A certificate serial number: unsigned, big-endian, no leading zero bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    pub fn from_u64(n: u64) -> Serial {
        Serial::from_be_bytes(&n.to_be_bytes())
    }

    pub fn from_be_bytes(bytes: &[u8]) -> Serial {
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let mut v = bytes[first..].to_vec();
        if v.is_empty() {
            v.push(0);
        }
        Serial(v)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value, when it fits (upstream's metadata `cert_serial` is this integer).
    pub fn to_u64(&self) -> Option<u64> {
        (self.0.len() <= 8).then(|| self.0.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
    }

    /// Upper-case hex with an even number of digits, as `openssl ca` writes serials.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02X}")).collect()
    }

    fn from_hex(text: &str) -> Option<Serial> {
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes = (0..padded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Serial::from_be_bytes(&bytes))
    }

    /// Numeric order (for listings).
    fn sort_key(&self) -> (usize, &[u8]) {
        (self.0.len(), &self.0)
    }
}

/// Decimal when it fits in 64 bits (as upstream prints serials), else `0x` and hex.
impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_u64() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "0x{}", self.to_hex()),
        }
    }
}

/// Decimal (`12`), `0x`-prefixed hex (`0x0C`) or colon-separated hex (`0C:1F`, as OpenSSL
/// prints serials).
impl FromStr for Serial {
    type Err = SoftwareCaError;

    fn from_str(s: &str) -> Result<Serial> {
        let text = s.trim();
        let bad = || SoftwareCaError::BadSerial {
            text: s.to_owned(),
            reason: "expected a decimal number, 0x-prefixed hex, or colon-separated hex".into(),
        };
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            return Serial::from_hex(hex).ok_or_else(bad);
        }
        if text.contains(':') {
            return Serial::from_hex(text).ok_or_else(bad);
        }
        text.parse::<u64>().map(Serial::from_u64).map_err(|_| bad())
    }
}

/// One line of `index.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub serial: Serial,
    /// The subject CN, which is also the file stem.
    pub name: String,
    /// OpenSSL one-line form, e.g. `/CN=node1/O=Vouch`.
    pub subject: String,
    pub not_after: SystemTime,
    pub revoked_at: Option<SystemTime>,
}

impl IndexEntry {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\tunknown\t{}\n",
            if self.is_revoked() { 'R' } else { 'V' },
            asn1_time(self.not_after),
            self.revoked_at.map(asn1_time).unwrap_or_default(),
            self.serial.to_hex(),
            self.subject
        )
    }

    fn parse(line: &str) -> std::result::Result<IndexEntry, String> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [status, not_after, revoked, serial, _file, subject] = fields[..] else {
            return Err(format!("{} tab-separated fields, expected 6", fields.len()));
        };
        let not_after =
            parse_asn1_time(not_after).ok_or_else(|| format!("bad expiry date {not_after:?}"))?;
        let revoked_at = match status {
            "V" | "E" => None,
            "R" => {
                // `date` or `date,reason`.
                let date = revoked.split(',').next().unwrap_or_default();
                Some(parse_asn1_time(date).ok_or_else(|| format!("bad revocation date {date:?}"))?)
            }
            other => return Err(format!("unknown status {other:?} (expected V, R or E)")),
        };
        let serial = Serial::from_hex(serial).ok_or_else(|| format!("bad serial {serial:?}"))?;
        let name = subject
            .split('/')
            .find_map(|rdn| rdn.strip_prefix("CN="))
            .ok_or_else(|| format!("subject {subject:?} has no CN"))?
            .to_owned();
        Ok(IndexEntry {
            serial,
            name,
            subject: subject.to_owned(),
            not_after,
            revoked_at,
        })
    }
}

/// What a CRL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    pub number: u64,
    pub this_update: SystemTime,
    pub next_update: SystemTime,
    pub revoked: Vec<Serial>,
}

/// The result of [`SoftwareCa::revoke`].
#[derive(Debug, Clone)]
pub struct Revoked {
    pub entry: IndexEntry,
    /// False when it had been revoked before (the CRL is regenerated anyway, as upstream does).
    pub newly_revoked: bool,
    pub crl: CrlInfo,
}

/// Which certificate to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// The newest certificate issued for this name (upstream `-n NAME`).
    Name(String),
    Serial(Serial),
}

/// The zip the tenant delivers as the node's payload (upstream `ca_util.cmd_certpkg` plus what
/// `tenant.py` adds for `--cert`), and what the tenant sends to the verifier.
#[derive(Debug, Clone)]
pub struct CertPackage {
    /// Uncompressed zip: `NAME-public.pem`, `NAME-cert.crt`, `NAME-private.pem`,
    /// `cacert.crt`, `cacrl.der`, `cacrl.pem`, `RevocationNotifier-cert.crt`, then the extra
    /// files in the order given.
    pub zip: Vec<u8>,
    pub name: String,
    pub serial: Serial,
    /// RFC 4514 subject, as upstream's metadata `subject` (`cert.subject.rfc4514_string()`).
    pub subject: String,
    /// `RevocationNotifier-private.pem`: the tenant's `revocation_key` for the verifier.
    pub revocation_key_pem: String,
    /// Names this call had to issue first (the node's and/or the notifier's).
    pub issued: Vec<String>,
}

/// The CA directory; see the module docs.
pub struct SoftwareCa {
    dir: TlsDir,
    cert_pem: String,
    issuer: Certificate,
    key: KeyPair,
}

impl fmt::Debug for SoftwareCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The exclusive `flock` on `.ca.lock`; released when dropped (the file closes).
struct CaLock {
    _file: File,
}

/// `index.txt`, `serial` and `crlnumber`, read under the lock.
struct State {
    entries: Vec<IndexEntry>,
    next_serial: u64,
    next_crl: u64,
}

impl State {
    fn newest(&self, name: &str) -> Option<&IndexEntry> {
        self.entries.iter().rev().find(|e| e.name == name)
    }

    fn valid(&self, name: &str) -> Option<&IndexEntry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.name == name && !e.is_revoked())
    }
}

impl SoftwareCa {
    /// Create the CA (RSA-2048, named `ca_name`), an empty index, the serial counter and an
    /// empty CRL (upstream `cmd_init`). Refuses an existing CA unless `options.force`; with
    /// force the old CA is replaced and the index starts over (issued files stay on disk).
    pub fn init(dir: impl AsRef<Path>, ca_name: &str, options: &CaOptions) -> Result<SoftwareCa> {
        let layout = TlsDir::new(dir.as_ref());
        if !options.force {
            for path in [layout.ca_cert(), layout.ca_key(), layout.root().join(INDEX)] {
                if path.exists() {
                    return Err(SoftwareCaError::AlreadyExists { path });
                }
            }
        }
        Ca::create_with(dir.as_ref(), ca_name, options)?;
        let ca = SoftwareCa::open(dir)?;
        let _lock = ca.lock()?;
        ca.write_state_file(INDEX, b"")?;
        ca.write_counter(SERIAL, FIRST_SERIAL)?;
        ca.write_counter(CRL_NUMBER, 1)?;
        let state = ca.read_state()?;
        ca.write_crl_locked(&state)?;
        Ok(ca)
    }

    /// Open the CA of `dir`: `cacert.crt` and `ca-private.pem` must exist and match (as
    /// [`Ca::load`] checks). A directory from `vouch certs init` works too: a missing index
    /// counts as empty, a missing `serial` as 2, a missing `crlnumber` as 1.
    pub fn open(dir: impl AsRef<Path>) -> Result<SoftwareCa> {
        let ca = Ca::load(dir.as_ref())?;
        let layout = ca.dir().clone();
        let key_path = layout.ca_key();
        let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| SoftwareCaError::BadFile {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let cert_path = layout.ca_cert();
        let certs = crate::pem::load_certs(&cert_path)?;
        let der = certs.first().ok_or_else(|| TlsError::NoCertificate {
            path: cert_path.clone(),
        })?;
        let params =
            CertificateParams::from_ca_cert_der(der).map_err(|e| SoftwareCaError::BadFile {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        // Used only as the issuer of what this CA signs: its subject, key identifier (the
        // SKI of cacert.crt, so AKIs match) and key usages.
        let issuer = params
            .self_signed(&key)
            .map_err(|cause| SoftwareCaError::Generate {
                what: format!("issuer from {}", cert_path.display()),
                cause,
            })?;
        Ok(SoftwareCa {
            dir: layout,
            cert_pem: ca.cert_pem().to_owned(),
            issuer,
            key,
        })
    }

    pub fn dir(&self) -> &TlsDir {
        &self.dir
    }

    /// `cacert.crt` as stored.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.root().join(file)
    }

    /// Issue a certificate and RSA-2048 key for `name` and write `NAME-cert.crt`,
    /// `NAME-private.pem` (0600), `NAME-public.pem` (upstream `cmd_mkcert`). Refused while a
    /// valid certificate for `name` exists, and when those files exist but this CA never
    /// issued `name` (e.g. the TLS directory's own `server`).
    pub fn issue(&self, name: &str) -> Result<IndexEntry> {
        check_name(name)?;
        let _lock = self.lock()?;
        let mut state = self.read_state()?;
        if let Some(e) = state.valid(name) {
            return Err(SoftwareCaError::AlreadyIssued {
                name: name.to_owned(),
                serial: e.serial.clone(),
            });
        }
        self.issue_locked(name, &mut state)
    }

    /// The valid certificate for `name`, issued now if there is none. `true` when issued.
    pub fn ensure_issued(&self, name: &str) -> Result<(IndexEntry, bool)> {
        check_name(name)?;
        let _lock = self.lock()?;
        let mut state = self.read_state()?;
        if let Some(e) = state.valid(name) {
            return Ok((e.clone(), false));
        }
        Ok((self.issue_locked(name, &mut state)?, true))
    }

    fn issue_locked(&self, name: &str, state: &mut State) -> Result<IndexEntry> {
        let files = self.dir.cert_files(name);
        if state.newest(name).is_none() {
            for path in [&files.cert, &files.key] {
                if path.exists() {
                    return Err(SoftwareCaError::NotOurs { path: path.clone() });
                }
            }
        }
        // Reserve the serial before anything is signed: a crash leaves a gap, never a reuse.
        let serial = state.next_serial;
        self.write_counter(SERIAL, serial + 1)?;
        state.next_serial = serial + 1;

        let what = format!("certificate for {name:?}");
        let key =
            KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(|cause| {
                SoftwareCaError::Generate {
                    what: format!("RSA-2048 key for {name:?}"),
                    cause,
                }
            })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, ORGANIZATION);
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial));
        // Upstream `mk_signed_cert`: the name as DNS SAN, AKI, no key usage restrictions.
        params.subject_alt_names = vec![SanType::DnsName(name.try_into().map_err(
            |cause: rcgen::Error| SoftwareCaError::Generate {
                what: what.clone(),
                cause,
            },
        )?)];
        params.use_authority_key_identifier_extension = true;
        let validity = Validity::days_from_now(CERT_LIFETIME_DAYS);
        params.not_before = asn1(validity.not_before)?.to_datetime();
        params.not_after = asn1(validity.not_after)?.to_datetime();
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|cause| SoftwareCaError::Generate { what, cause })?;
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        }
        .write(&files)?;

        let entry = IndexEntry {
            serial: Serial::from_u64(serial),
            name: name.to_owned(),
            subject: format!("/CN={name}/O={ORGANIZATION}"),
            not_after: truncate_to_seconds(validity.not_after),
            revoked_at: None,
        };
        state.entries.push(entry.clone());
        self.write_index(&state.entries)?;
        tracing::info!(name, serial = %entry.serial, "issued certificate");
        Ok(entry)
    }

    /// Revoke a certificate and write a new CRL (upstream `cmd_revoke`). Revoking one that is
    /// already revoked only regenerates the CRL.
    pub fn revoke(&self, target: &RevokeTarget) -> Result<Revoked> {
        let _lock = self.lock()?;
        let mut state = self.read_state()?;
        let index = self.path(INDEX);
        let position = match target {
            RevokeTarget::Name(name) => {
                let valid = state
                    .entries
                    .iter()
                    .rposition(|e| &e.name == name && !e.is_revoked());
                valid
                    .or_else(|| state.entries.iter().rposition(|e| &e.name == name))
                    .ok_or_else(|| SoftwareCaError::UnknownName {
                        name: name.clone(),
                        index: index.clone(),
                    })?
            }
            RevokeTarget::Serial(serial) => state
                .entries
                .iter()
                .position(|e| &e.serial == serial)
                .ok_or_else(|| SoftwareCaError::UnknownSerial {
                    serial: serial.clone(),
                    index: index.clone(),
                })?,
        };
        let newly_revoked = state.entries[position].revoked_at.is_none();
        if newly_revoked {
            state.entries[position].revoked_at = Some(truncate_to_seconds(SystemTime::now()));
            self.write_index(&state.entries)?;
        }
        let entry = state.entries[position].clone();
        let crl = self.write_crl_locked(&state)?;
        tracing::info!(name = %entry.name, serial = %entry.serial, newly_revoked, crl_number = crl.number, "revoked certificate");
        Ok(Revoked {
            entry,
            newly_revoked,
            crl,
        })
    }

    /// Write a fresh CRL (next CRL number, new validity) listing every revoked certificate.
    pub fn write_crl(&self) -> Result<CrlInfo> {
        let _lock = self.lock()?;
        let state = self.read_state()?;
        self.write_crl_locked(&state)
    }

    fn write_crl_locked(&self, state: &State) -> Result<CrlInfo> {
        let number = state.next_crl;
        self.write_counter(CRL_NUMBER, number + 1)?;
        let now = truncate_to_seconds(SystemTime::now());
        let this_update = now - BACKDATE;
        let next_update = now + Duration::from_secs(u64::from(CRL_LIFETIME_DAYS) * 86_400);
        let revoked = state
            .entries
            .iter()
            .filter_map(|e| e.revoked_at.map(|at| (e.serial.clone(), at)))
            .collect::<Vec<_>>();
        let params = CertificateRevocationListParams {
            this_update: asn1(this_update)?.to_datetime(),
            next_update: asn1(next_update)?.to_datetime(),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|(serial, at)| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(serial.as_bytes()),
                        revocation_time: asn1(*at)?.to_datetime(),
                        reason_code: None,
                        invalidity_date: None,
                    })
                })
                .collect::<Result<_>>()?,
            // The AKI must be cacert.crt's SKI for OpenSSL to match CRL and CA.
            key_identifier_method: self.issuer.params().key_identifier_method.clone(),
        };
        let crl = params.signed_by(&self.issuer, &self.key).map_err(|cause| {
            SoftwareCaError::Generate {
                what: format!("CRL number {number}"),
                cause,
            }
        })?;
        let pem = crl.pem().map_err(|cause| SoftwareCaError::Generate {
            what: format!("PEM of CRL number {number}"),
            cause,
        })?;
        write_file(&self.path(CRL_DER), crl.der().as_ref(), PUBLIC_MODE)?;
        write_file(&self.path(CRL_PEM), pem.as_bytes(), PUBLIC_MODE)?;
        Ok(CrlInfo {
            number,
            this_update,
            next_update,
            revoked: revoked.into_iter().map(|(s, _)| s).collect(),
        })
    }

    /// Parse `cacrl.der`; `None` when there is none yet.
    pub fn crl(&self) -> Result<Option<CrlInfo>> {
        let path = self.path(CRL_DER);
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        parse_crl(&der)
            .map(Some)
            .map_err(|reason| SoftwareCaError::BadFile { path, reason })
    }

    /// Every certificate this CA issued, by serial.
    pub fn entries(&self) -> Result<Vec<IndexEntry>> {
        let mut entries = self.read_index()?;
        entries.sort_by(|a, b| a.serial.sort_key().cmp(&b.serial.sort_key()));
        Ok(entries)
    }

    /// The payload for node `name` (see [`CertPackage`]), issuing the node's certificate and
    /// the `RevocationNotifier` one first if they have no valid certificate (the tenant's
    /// `--cert` does the same), and writing a CRL if there is none. `extra` are added after
    /// (upstream `--include`): plain file names that do not clash with the package's own.
    pub fn cert_package(&self, name: &str, extra: &[(String, Vec<u8>)]) -> Result<CertPackage> {
        let mut issued = Vec::new();
        let (entry, new) = self.ensure_issued(name)?;
        if new {
            issued.push(name.to_owned());
        }
        if self.ensure_issued(REVOCATION_NOTIFIER)?.1 {
            issued.push(REVOCATION_NOTIFIER.to_owned());
        }
        if !self.path(CRL_DER).exists() || !self.path(CRL_PEM).exists() {
            self.write_crl()?;
        }
        let node = self.dir.cert_files(name);
        let notifier = self.dir.cert_files(REVOCATION_NOTIFIER);
        let read = |path: &Path| std::fs::read(path).map_err(io_err(path));
        let cert = read(&node.cert)?;
        let mut files: Vec<(String, Vec<u8>)> = vec![
            (format!("{name}-public.pem"), read(&node.public)?),
            (format!("{name}-cert.crt"), cert.clone()),
            (format!("{name}-private.pem"), read(&node.key)?),
            (
                crate::layout::CA_CERT.to_owned(),
                read(&self.dir.ca_cert())?,
            ),
            (CRL_DER.to_owned(), read(&self.path(CRL_DER))?),
            (CRL_PEM.to_owned(), read(&self.path(CRL_PEM))?),
            (
                format!("{REVOCATION_NOTIFIER}-cert.crt"),
                read(&notifier.cert)?,
            ),
        ];
        for (file, data) in extra {
            if file.is_empty() || file.contains('/') || file == "." || file == ".." {
                return Err(SoftwareCaError::PackageFile {
                    name: file.clone(),
                    reason: "not a plain file name".into(),
                });
            }
            if files.iter().any(|(n, _)| n == file) {
                return Err(SoftwareCaError::PackageFile {
                    name: file.clone(),
                    reason: "the certificate package already has a file of that name".into(),
                });
            }
            files.push((file.clone(), data.clone()));
        }
        let zip = build_zip(&files).map_err(|cause| SoftwareCaError::Zip { cause })?;
        let ders = crate::pem::load_certs(&node.cert)?;
        let der = ders.first().map(|d| d.as_ref()).unwrap_or_default();
        let subject = rfc4514_subject(der).map_err(|reason| SoftwareCaError::BadFile {
            path: node.cert.clone(),
            reason,
        })?;
        let key_path = notifier.key;
        let revocation_key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        Ok(CertPackage {
            zip,
            name: name.to_owned(),
            serial: entry.serial,
            subject,
            revocation_key_pem,
            issued,
        })
    }

    fn lock(&self) -> Result<CaLock> {
        let path = self.path(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(KEY_MODE)
            .open(&path)
            .map_err(io_err(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(&path)(e.into()))?;
        Ok(CaLock { _file: file })
    }

    fn read_state(&self) -> Result<State> {
        Ok(State {
            entries: self.read_index()?,
            next_serial: self.read_counter(SERIAL, FIRST_SERIAL)?,
            next_crl: self.read_counter(CRL_NUMBER, 1)?,
        })
    }

    fn read_index(&self) -> Result<Vec<IndexEntry>> {
        let path = self.path(INDEX);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                IndexEntry::parse(line).map_err(|reason| SoftwareCaError::Index {
                    path: path.clone(),
                    line: i + 1,
                    reason,
                })
            })
            .collect()
    }

    fn write_index(&self, entries: &[IndexEntry]) -> Result<()> {
        let text: String = entries.iter().map(IndexEntry::to_line).collect();
        self.write_state_file(INDEX, text.as_bytes())
    }

    fn read_counter(&self, file: &str, default: u64) -> Result<u64> {
        let path = self.path(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Serial::from_hex(text.trim())
                .and_then(|s| s.to_u64())
                .ok_or_else(|| SoftwareCaError::Counter {
                    path,
                    reason: format!("{:?} is not a hex number below 2^64", text.trim()),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(default),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn write_counter(&self, file: &str, value: u64) -> Result<()> {
        let text = format!("{}\n", Serial::from_u64(value).to_hex());
        self.write_state_file(file, text.as_bytes())
    }

    fn write_state_file(&self, file: &str, bytes: &[u8]) -> Result<()> {
        write_file(&self.path(file), bytes, PUBLIC_MODE)
    }
}

/// A name becomes a file stem and the subject CN: 1 to 64 of `A-Z a-z 0-9 . _ -`, not
/// starting with `.` or `-`, and not `ca` (whose files are the CA's own).
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason: &str| SoftwareCaError::BadName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("a name has 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(bad(
            "only letters, digits, '.', '_' and '-' (it becomes a file name and the CN)",
        ));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(bad("it must not start with '.' or '-'"));
    }
    if name == "ca" {
        return Err(bad("reserved: ca-private.pem is the CA's own key"));
    }
    Ok(())
}

fn build_zip(files: &[(String, Vec<u8>)]) -> std::result::Result<Vec<u8>, zip::result::ZipError> {
    // Upstream: ZIP_STORED, "no compression to avoid extraction errors in tmpfs".
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        zip.start_file(name.as_str(), options)?;
        zip.write_all(data)?;
    }
    Ok(zip.finish()?.into_inner())
}

fn parse_crl(der: &[u8]) -> std::result::Result<CrlInfo, String> {
    let (_, crl) =
        x509_parser::parse_x509_crl(der).map_err(|e| format!("not a DER X.509 CRL: {e}"))?;
    let number = crl
        .crl_number()
        .map(|n| Serial::from_be_bytes(&n.to_bytes_be()))
        .and_then(|n| n.to_u64())
        .unwrap_or(0);
    let time = |t: x509_parser::time::ASN1Time| {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    Ok(CrlInfo {
        number,
        this_update: time(crl.last_update()),
        next_update: crl.next_update().map(time).unwrap_or(UNIX_EPOCH),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| Serial::from_be_bytes(r.raw_serial()))
            .collect(),
    })
}

/// `cryptography`'s `Name.rfc4514_string()`: RDNs last to first, joined by `,`.
fn rfc4514_subject(der: &[u8]) -> std::result::Result<String, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("not X.509: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let parts = rdn
            .iter()
            .map(|atv| {
                let oid = atv.attr_type().to_id_string();
                let key = match oid.as_str() {
                    "2.5.4.3" => "CN",
                    "2.5.4.6" => "C",
                    "2.5.4.7" => "L",
                    "2.5.4.8" => "ST",
                    "2.5.4.9" => "STREET",
                    "2.5.4.10" => "O",
                    "2.5.4.11" => "OU",
                    "0.9.2342.19200300.100.1.1" => "UID",
                    "0.9.2342.19200300.100.1.25" => "DC",
                    _ => oid.as_str(),
                }
                .to_owned();
                let value = atv
                    .as_str()
                    .map_err(|e| format!("subject attribute {oid}: {e}"))?;
                Ok(format!("{key}={}", rfc4514_escape(value)))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn rfc4514_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | '"' | '+' | ',' | ';' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    if out.starts_with('#') || out.starts_with(' ') {
        out.insert(0, '\\');
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_seconds(t)).unwrap_or(0))
}

/// `t` for rcgen: callers take `.to_datetime()` (rcgen's `time` type) from this, as `ca.rs`
/// does, to avoid a direct `time` dependency.
fn asn1(t: SystemTime) -> Result<x509_parser::time::ASN1Time> {
    x509_parser::time::ASN1Time::from_timestamp(unix_seconds(t))
        .map_err(|e| SoftwareCaError::Tls(TlsError::BadValidity(e.to_string())))
}

/// `YYMMDDHHMMSSZ` (UTCTime) for 1950–2049, else `YYYYMMDDHHMMSSZ`, as OpenSSL's index has it.
fn asn1_time(t: SystemTime) -> String {
    let secs = u64::try_from(unix_seconds(t)).unwrap_or(0);
    let (y, mo, d) = vouch_core::calendar::civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let hms = format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if (1950..2050).contains(&y) {
        format!("{:02}{mo:02}{d:02}{hms}Z", y % 100)
    } else {
        format!("{y:04}{mo:02}{d:02}{hms}Z")
    }
}

fn parse_asn1_time(s: &str) -> Option<SystemTime> {
    let digits = s.strip_suffix('Z')?;
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits.get(r)?.parse::<u64>().ok();
    let (year, rest) = match digits.len() {
        12 => {
            let yy = num(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        14 => (num(0..4)?, 4),
        _ => return None,
    };
    let (mo, d) = (num(rest..rest + 2)?, num(rest + 2..rest + 4)?);
    let (h, mi, sec) = (
        num(rest + 4..rest + 6)?,
        num(rest + 6..rest + 8)?,
        num(rest + 8..rest + 10)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = vouch_core::calendar::days_from_civil(year, mo, d)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + sec))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    Ok(crate::ca::write_file(path, bytes, mode)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Read;
    use std::process::Command;

    fn openssl(args: &[&str]) -> std::process::Output {
        Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl must be installed for these tests")
    }

    fn verify(ca: &SoftwareCa, name: &str) -> (bool, String) {
        let root = ca.dir().root();
        let out = openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            root.join("cacert.crt").to_str().unwrap(),
            "-CRLfile",
            root.join(CRL_PEM).to_str().unwrap(),
            root.join(format!("{name}-cert.crt")).to_str().unwrap(),
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn new_ca() -> (tempfile::TempDir, SoftwareCa) {
        let tmp = tempfile::tempdir().unwrap();
        let ca = SoftwareCa::init(tmp.path().join("ca"), "Test CA", &CaOptions::default()).unwrap();
        (tmp, ca)
    }

    #[test]
    fn serials_parse_and_print() {
        assert_eq!("12".parse::<Serial>().unwrap(), Serial::from_u64(12));
        assert_eq!("0x0c".parse::<Serial>().unwrap(), Serial::from_u64(12));
        assert_eq!("0C:1F".parse::<Serial>().unwrap(), Serial::from_u64(0x0c1f));
        assert!("twelve".parse::<Serial>().is_err());
        assert_eq!(Serial::from_u64(2).to_hex(), "02");
        assert_eq!(Serial::from_u64(0x1234).to_string(), "4660");
        let big = Serial::from_be_bytes(&[0x7f; 20]);
        assert!(big.to_string().starts_with("0x7F"));
    }

    #[test]
    fn index_times_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_453_501);
        assert_eq!(asn1_time(t), "261123170501Z");
        assert_eq!(parse_asn1_time("261123170501Z"), Some(t));
        let far = UNIX_EPOCH + Duration::from_secs(2_556_143_999); // 2050-12-31
        assert_eq!(asn1_time(far), "20501231235959Z");
        assert_eq!(parse_asn1_time("20501231235959Z"), Some(far));
        assert_eq!(parse_asn1_time("261323170501Z"), None);
    }

    #[test]
    fn init_writes_upstream_files_and_an_empty_crl() {
        let (_tmp, ca) = new_ca();
        let root = ca.dir().root();
        for f in [
            "cacert.crt",
            "ca-private.pem",
            "ca-public.pem",
            CRL_DER,
            CRL_PEM,
        ] {
            assert!(root.join(f).is_file(), "{f}");
        }
        assert_eq!(std::fs::read_to_string(root.join(SERIAL)).unwrap(), "02\n");
        assert_eq!(
            std::fs::read_to_string(root.join(CRL_NUMBER)).unwrap(),
            "02\n"
        );
        let crl = ca.crl().unwrap().unwrap();
        assert_eq!(crl.number, 1);
        assert!(crl.revoked.is_empty());
        assert!(crl.next_update > SystemTime::now());
        assert!(ca.entries().unwrap().is_empty());

        let again = SoftwareCa::init(root, "Test CA", &CaOptions::default()).unwrap_err();
        assert!(
            matches!(again, SoftwareCaError::AlreadyExists { .. }),
            "{again}"
        );
    }

    /// Issue → valid and accepted by `openssl verify -crl_check`; revoke → listed in the CRL
    /// (x509-parser and `openssl crl`) and refused by `openssl verify`, while another
    /// certificate of the same CA is still accepted.
    #[test]
    fn revoked_certificates_are_in_the_crl_and_refused_by_openssl() {
        let (_tmp, ca) = new_ca();
        let a = ca.issue("node-a").unwrap();
        let b = ca.issue("node-b").unwrap();
        assert_eq!(a.serial, Serial::from_u64(2));
        assert_eq!(b.serial, Serial::from_u64(3));
        assert!(!a.is_revoked());
        let (ok, text) = verify(&ca, "node-a");
        assert!(ok, "{text}");

        let r = ca.revoke(&RevokeTarget::Name("node-a".into())).unwrap();
        assert!(r.newly_revoked);
        assert_eq!(r.crl.number, 2);
        assert_eq!(r.crl.revoked, vec![Serial::from_u64(2)]);

        let der = std::fs::read(ca.dir().root().join(CRL_DER)).unwrap();
        let (_, parsed) = x509_parser::parse_x509_crl(&der).unwrap();
        let serials: Vec<_> = parsed
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        assert_eq!(serials, vec![vec![2u8]]);
        assert_eq!(
            parsed.crl_number().unwrap().to_bytes_be(),
            vec![2u8],
            "CRL number"
        );

        let text = openssl(&[
            "crl",
            "-in",
            ca.dir().root().join(CRL_PEM).to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(text.status.success());
        let text = String::from_utf8(text.stdout).unwrap();
        assert!(text.contains("Serial Number: 02"), "{text}");
        assert!(!text.contains("Serial Number: 03"), "{text}");

        let (ok, text) = verify(&ca, "node-a");
        assert!(!ok && text.contains("revoked"), "{text}");
        let (ok, text) = verify(&ca, "node-b");
        assert!(ok, "{text}");

        // By serial; revoking again only refreshes the CRL.
        let r = ca
            .revoke(&RevokeTarget::Serial(Serial::from_u64(3)))
            .unwrap();
        assert_eq!(r.entry.name, "node-b");
        assert_eq!(r.crl.revoked.len(), 2);
        let again = ca.revoke(&RevokeTarget::Name("node-b".into())).unwrap();
        assert!(!again.newly_revoked);
        assert_eq!(again.crl.number, 4);
        assert_eq!(ca.crl().unwrap().unwrap().number, 4);

        let e = ca
            .revoke(&RevokeTarget::Serial(Serial::from_u64(99)))
            .unwrap_err();
        assert!(matches!(e, SoftwareCaError::UnknownSerial { .. }), "{e}");
        let e = ca.revoke(&RevokeTarget::Name("nobody".into())).unwrap_err();
        assert!(matches!(e, SoftwareCaError::UnknownName { .. }), "{e}");
    }

    #[test]
    fn issuing_refuses_duplicates_foreign_files_and_bad_names() {
        let (_tmp, ca) = new_ca();
        ca.issue("node1").unwrap();
        let e = ca.issue("node1").unwrap_err();
        assert!(matches!(e, SoftwareCaError::AlreadyIssued { .. }), "{e}");
        // After revocation a new certificate (new serial) replaces the files.
        ca.revoke(&RevokeTarget::Name("node1".into())).unwrap();
        let old = std::fs::read(ca.dir().root().join("node1-cert.crt")).unwrap();
        let new = ca.issue("node1").unwrap();
        assert_eq!(new.serial, Serial::from_u64(3));
        assert_ne!(
            std::fs::read(ca.dir().root().join("node1-cert.crt")).unwrap(),
            old
        );
        let (ok, text) = verify(&ca, "node1");
        assert!(ok, "{text}");
        // Revoke by name picks the valid one.
        let r = ca.revoke(&RevokeTarget::Name("node1".into())).unwrap();
        assert_eq!(r.entry.serial, Serial::from_u64(3));

        // The TLS directory's own server certificate is not ours to replace.
        Ca::load(ca.dir().root())
            .unwrap()
            .issue_server(&crate::ca::default_server_names())
            .unwrap();
        let e = ca.issue("server").unwrap_err();
        assert!(matches!(e, SoftwareCaError::NotOurs { .. }), "{e}");

        for bad in [
            "",
            "ca",
            "../x",
            "a/b",
            ".hidden",
            "-n",
            "sp ace",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(ca.issue(bad), Err(SoftwareCaError::BadName { .. })),
                "{bad:?}"
            );
        }
        let mode = |f: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(ca.dir().root().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("node1-private.pem"), 0o600);
        assert_eq!(mode("ca-private.pem"), 0o600);
    }

    #[test]
    fn cert_package_is_upstreams_zip_plus_the_notifier_certificate() {
        let (_tmp, ca) = new_ca();
        let pkg = ca
            .cert_package("node1", &[("action_list".into(), b"local_action".to_vec())])
            .unwrap();
        assert_eq!(
            pkg.issued,
            vec!["node1".to_owned(), REVOCATION_NOTIFIER.to_owned()]
        );
        assert_eq!(pkg.serial, Serial::from_u64(2));
        assert_eq!(pkg.subject, "O=Vouch,CN=node1");
        let root = ca.dir().root();
        assert_eq!(
            pkg.revocation_key_pem,
            std::fs::read_to_string(root.join("RevocationNotifier-private.pem")).unwrap()
        );
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(pkg.zip.clone())).unwrap();
        let names: Vec<_> = zip.file_names().map(str::to_owned).collect();
        let mut sorted_by_index = Vec::new();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).unwrap();
            assert_eq!(f.compression(), zip::CompressionMethod::Stored);
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            sorted_by_index.push((f.name().to_owned(), data));
        }
        assert_eq!(names.len(), 8);
        let order: Vec<_> = sorted_by_index.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            order,
            [
                "node1-public.pem",
                "node1-cert.crt",
                "node1-private.pem",
                "cacert.crt",
                "cacrl.der",
                "cacrl.pem",
                "RevocationNotifier-cert.crt",
                "action_list"
            ]
        );
        for (name, data) in &sorted_by_index[..7] {
            assert_eq!(data, &std::fs::read(root.join(name)).unwrap(), "{name}");
        }

        // Second time: nothing new is issued.
        let again = ca.cert_package("node1", &[]).unwrap();
        assert!(again.issued.is_empty());
        let e = ca
            .cert_package("node1", &[("cacert.crt".into(), vec![])])
            .unwrap_err();
        assert!(matches!(e, SoftwareCaError::PackageFile { .. }), "{e}");
    }

    #[test]
    fn a_vouch_certs_directory_can_be_adopted() {
        let tmp = tempfile::tempdir().unwrap();
        Ca::create(tmp.path(), "Vouch CA").unwrap();
        let ca = SoftwareCa::open(tmp.path()).unwrap();
        assert!(ca.crl().unwrap().is_none());
        assert_eq!(ca.issue("n").unwrap().serial, Serial::from_u64(2));
        ca.write_crl().unwrap();
        let (ok, text) = verify(&ca, "n");
        assert!(ok, "{text}");
    }

    /// Parallel issuers and revokers (separate `SoftwareCa` values, as separate processes
    /// would have) never reuse a serial or lose an index line.
    #[test]
    fn concurrent_changes_are_serialized() {
        let (tmp, _ca) = new_ca();
        let dir = tmp.path().join("ca");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let ca = SoftwareCa::open(&dir).unwrap();
                    for i in 0..2 {
                        ca.issue(&format!("n{t}-{i}")).unwrap();
                    }
                    ca.revoke(&RevokeTarget::Name(format!("n{t}-0"))).unwrap()
                })
            })
            .collect();
        let crl_numbers: Vec<u64> = threads
            .into_iter()
            .map(|t| t.join().unwrap().crl.number)
            .collect();
        let ca = SoftwareCa::open(&dir).unwrap();
        let entries = ca.entries().unwrap();
        assert_eq!(entries.len(), 8);
        let serials: Vec<u64> = entries.iter().map(|e| e.serial.to_u64().unwrap()).collect();
        assert_eq!(serials, (2..10).collect::<Vec<_>>());
        assert_eq!(entries.iter().filter(|e| e.is_revoked()).count(), 4);
        let mut sorted = crl_numbers.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4, "{crl_numbers:?}");
        assert_eq!(ca.crl().unwrap().unwrap().revoked.len(), 4);
    }
}
