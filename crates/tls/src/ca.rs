//! A small certificate authority kept in a [`TlsDir`]: the CA itself, and server and client
//! certificates for the mTLS links of section 7 of docs/keylime-wire.md.
//!
//! Key type and lifetimes are upstream keylime's defaults (`ca_impl_openssl.py`, `[ca]
//! cert_bits = 2048`, `cert_ca_lifetime = 3650`, `cert_lifetime = 365`): RSA-2048 with
//! SHA-256. Upstream's own CA tooling asserts an RSA CA key (`ca_util.cmd_mkcert`), so an RSA CA
//! is the one upstream can take over with `keylime_ca -c import-priv`.

use crate::error::{Result, TlsError};
use crate::layout::{CertFiles, TlsDir, SERVER};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, RsaKeySize, SanType, PKCS_RSA_SHA256,
};
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// Days a generated CA is valid (upstream `[ca] cert_ca_lifetime`).
pub const CA_LIFETIME_DAYS: u32 = 3650;
/// Days a generated server or client certificate is valid (upstream `[ca] cert_lifetime`).
pub const CERT_LIFETIME_DAYS: u32 = 365;
/// Certificates start this long before "now", so that a peer whose clock is a little behind
/// does not reject a certificate issued a second ago.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
const ORGANIZATION: &str = "Vouch";
const KEY_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// A subjectAltName entry of a server certificate: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectName {
    Dns(String),
    Ip(IpAddr),
}

impl FromStr for SubjectName {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<SubjectName> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(SubjectName::Ip(ip));
        }
        let bad = |reason: &str| TlsError::BadName {
            name: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() || s.len() > 253 {
            return Err(bad("a DNS name has 1 to 253 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '_'))
        {
            return Err(bad("neither an IP address nor a DNS name"));
        }
        Ok(SubjectName::Dns(s.to_ascii_lowercase()))
    }
}

impl fmt::Display for SubjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectName::Dns(name) => f.write_str(name),
            SubjectName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// What upstream puts in a generated server certificate when nothing else is configured
/// (`ca_impl_openssl.get_san_entries`): localhost, 127.0.0.1, ::1 and this host's name.
pub fn default_server_names() -> Vec<SubjectName> {
    let mut names = vec![
        SubjectName::Dns("localhost".into()),
        SubjectName::Ip(IpAddr::from([127, 0, 0, 1])),
        SubjectName::Ip(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
    ];
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if let Ok(host) = host.trim().parse::<SubjectName>() {
        if !names.contains(&host) {
            names.push(host);
        }
    }
    names
}

/// The validity period of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From a few minutes ago until `days` from now.
    pub fn days_from_now(days: u32) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - BACKDATE,
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }
}

/// Sets `params`' validity. Goes through x509-parser's `ASN1Time` to build the
/// `time::OffsetDateTime` rcgen wants without depending on `time` directly.
fn set_validity(params: &mut CertificateParams, validity: Validity) -> Result<()> {
    let convert = |t: SystemTime| {
        let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        x509_parser::time::ASN1Time::from_timestamp(secs)
            .map(|t| t.to_datetime())
            .map_err(|e| TlsError::BadValidity(e.to_string()))
    };
    params.not_before = convert(validity.not_before)?;
    params.not_after = convert(validity.not_after)?;
    Ok(())
}

/// What a certificate is for; decides its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (EKU serverAuth), with subjectAltNames.
    Server,
    /// TLS client (EKU clientAuth); its CN is the identity upstream's authorization sees.
    Client,
}

/// A certificate to issue.
#[derive(Debug, Clone)]
pub struct CertRequest {
    common_name: String,
    names: Vec<SubjectName>,
    usage: Usage,
    validity: Validity,
}

impl CertRequest {
    /// A server certificate for `names`; CN `server`, as upstream names its own.
    pub fn server(names: &[SubjectName]) -> CertRequest {
        CertRequest {
            common_name: SERVER.to_owned(),
            names: names.to_vec(),
            usage: Usage::Server,
            validity: Validity::days_from_now(CERT_LIFETIME_DAYS),
        }
    }

    /// A client certificate whose subject CN is `common_name`.
    pub fn client(common_name: &str) -> CertRequest {
        CertRequest {
            common_name: common_name.to_owned(),
            names: Vec::new(),
            usage: Usage::Client,
            validity: Validity::days_from_now(CERT_LIFETIME_DAYS),
        }
    }

    pub fn common_name(mut self, common_name: &str) -> CertRequest {
        common_name.clone_into(&mut self.common_name);
        self
    }

    pub fn validity(mut self, validity: Validity) -> CertRequest {
        self.validity = validity;
        self
    }
}

/// A freshly issued certificate and its key, in memory.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// PKCS#8 PEM, unencrypted (upstream's generated keys are too, unless a password is set).
    pub key_pem: String,
    /// SubjectPublicKeyInfo PEM (upstream writes `{name}-public.pem`).
    pub public_pem: String,
}

impl IssuedCert {
    /// Write the three files; the key with mode 0600. Each file is replaced atomically.
    pub fn write(&self, files: &CertFiles) -> Result<()> {
        write_file(&files.key, self.key_pem.as_bytes(), KEY_MODE)?;
        write_file(&files.public, self.public_pem.as_bytes(), PUBLIC_MODE)?;
        write_file(&files.cert, self.cert_pem.as_bytes(), PUBLIC_MODE)
    }
}

/// Options for [`Ca::create_with`].
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// Replace an existing CA (its certificate or key) instead of refusing.
    pub force: bool,
    pub validity: Validity,
}

impl Default for CaOptions {
    fn default() -> CaOptions {
        CaOptions {
            force: false,
            validity: Validity::days_from_now(CA_LIFETIME_DAYS),
        }
    }
}

/// A CA whose certificate and key live in a [`TlsDir`].
pub struct Ca {
    dir: TlsDir,
    cert_pem: String,
    key: KeyPair,
    /// The CA as rcgen needs it to sign: its subject, key identifier and key usages.
    issuer: rcgen::Certificate,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Create a new CA named `name` in `dir` (created 0700 if missing); refuses to replace one.
    pub fn create(dir: impl AsRef<Path>, name: &str) -> Result<Ca> {
        Ca::create_with(dir, name, &CaOptions::default())
    }

    pub fn create_with(dir: impl AsRef<Path>, name: &str, options: &CaOptions) -> Result<Ca> {
        let dir = TlsDir::new(dir.as_ref());
        if !options.force {
            for path in [dir.ca_cert(), dir.ca_key()] {
                if path.exists() {
                    return Err(TlsError::AlreadyExists { path });
                }
            }
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.root())
            .map_err(|e| TlsError::io(dir.root(), e))?;

        let key = generate_key(name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, options.validity)?;
        let issuer = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: format!("CA certificate {name:?}"),
                source,
            })?;
        let cert_pem = issuer.pem();

        write_file(&dir.ca_key(), key.serialize_pem().as_bytes(), KEY_MODE)?;
        write_file(
            &dir.ca_public(),
            key.public_key_pem().as_bytes(),
            PUBLIC_MODE,
        )?;
        write_file(&dir.ca_cert(), cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(Ca {
            dir,
            cert_pem,
            key,
            issuer,
        })
    }

    /// Load the CA of `dir`: `cacert.crt` and `ca-private.pem` (any key type rcgen can sign
    /// with: RSA, ECDSA P-256/P-384, Ed25519), checked to belong together.
    pub fn load(dir: impl AsRef<Path>) -> Result<Ca> {
        let dir = TlsDir::new(dir.as_ref());
        let (cert_path, key_path) = (dir.ca_cert(), dir.ca_key());
        let certs = crate::pem::load_certs(&cert_path)?;
        let cert_pem =
            std::fs::read_to_string(&cert_path).map_err(|e| TlsError::io(&cert_path, e))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(|e| TlsError::io(&key_path, e))?;
        if !key_pem.contains("PRIVATE KEY-----") {
            return Err(TlsError::NoPrivateKey { path: key_path });
        }
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::UnusableKey {
            path: key_path.clone(),
            source: rustls::Error::General(e.to_string()),
        })?;
        let ca_der = certs.first().ok_or_else(|| TlsError::NoCertificate {
            path: cert_path.clone(),
        })?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(ca_der).map_err(|e| TlsError::BadCertificate {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(TlsError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        let params =
            CertificateParams::from_ca_cert_der(ca_der).map_err(|e| TlsError::BadCertificate {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        // Only the subject, key identifier and key usages of this re-signed copy are used (as
        // the issuer of new certificates); `cacert.crt` on disk stays as it is.
        let issuer = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: format!("issuer from {}", cert_path.display()),
                source,
            })?;
        Ok(Ca {
            dir,
            cert_pem,
            key,
            issuer,
        })
    }

    pub fn dir(&self) -> &TlsDir {
        &self.dir
    }

    /// The CA certificate as stored in `cacert.crt`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issue a certificate (in memory) signed by this CA, with a fresh RSA-2048 key.
    pub fn issue(&self, request: &CertRequest) -> Result<IssuedCert> {
        let what = format!("certificate for {:?}", request.common_name);
        let key = generate_key(&request.common_name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&request.common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match request.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.subject_alt_names = request
            .names
            .iter()
            .map(|name| match name {
                SubjectName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                SubjectName::Dns(dns) => {
                    dns.clone()
                        .try_into()
                        .map(SanType::DnsName)
                        .map_err(|e: rcgen::Error| TlsError::BadName {
                            name: dns.clone(),
                            reason: e.to_string(),
                        })
                }
            })
            .collect::<Result<_>>()?;
        set_validity(&mut params, request.validity)?;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|source| TlsError::Generate { what, source })?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        })
    }

    /// Issue a server certificate for `names` and write it as `server-cert.crt`,
    /// `server-private.pem`, `server-public.pem` (replacing them).
    pub fn issue_server(&self, names: &[SubjectName]) -> Result<CertFiles> {
        let files = self.dir.server();
        self.issue(&CertRequest::server(names))?.write(&files)?;
        Ok(files)
    }

    /// Issue a client certificate with CN `common_name` and write it as `client-cert.crt`,
    /// `client-private.pem`, `client-public.pem` (replacing them).
    pub fn issue_client(&self, common_name: &str) -> Result<CertFiles> {
        let files = self.dir.client();
        self.issue(&CertRequest::client(common_name))?
            .write(&files)?;
        Ok(files)
    }
}

/// A self-signed **end-entity** certificate (not a CA) with a fresh RSA-2048 key, as an
/// upstream agent presents for its API (rust-keylime `crypto::generate_x509`: self-signed, CN
/// = the agent UUID). Peers trust it by pinning it as their only root (upstream loads the
/// registrar's `mtls_cert` as an extra CA). It is deliberately not a CA: rustls/webpki refuse a
/// peer certificate with `basicConstraints CA:TRUE` (`CaUsedAsEndEntity`), while OpenSSL (upstream's
/// Python tenant and verifier) accepts a self-signed end-entity certificate as a trust anchor.
/// EKU serverAuth and clientAuth; subjectAltNames `names`.
pub fn self_signed(common_name: &str, names: &[SubjectName]) -> Result<IssuedCert> {
    let what = format!("self-signed certificate for {common_name:?}");
    let key = generate_key(common_name)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.subject_alt_names = san_entries(names)?;
    set_validity(&mut params, Validity::days_from_now(CERT_LIFETIME_DAYS))?;
    let cert = params
        .self_signed(&key)
        .map_err(|source| TlsError::Generate { what, source })?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        public_pem: key.public_key_pem(),
    })
}

fn san_entries(names: &[SubjectName]) -> Result<Vec<SanType>> {
    names
        .iter()
        .map(|name| match name {
            SubjectName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            SubjectName::Dns(dns) => {
                dns.clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e: rcgen::Error| TlsError::BadName {
                        name: dns.clone(),
                        reason: e.to_string(),
                    })
            }
        })
        .collect()
}

fn generate_key(name: &str) -> Result<KeyPair> {
    KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(|source| {
        TlsError::Generate {
            what: format!("RSA-2048 key for {name:?}"),
            source,
        }
    })
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

/// Write `bytes` to `path` with `mode` through a temporary file and a rename, so that a reader
/// never sees half a key and a key is never, even briefly, readable by others. The temporary
/// name carries the process id, so two processes writing the same file do not collide.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| TlsError::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| TlsError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TlsError::io(path, e))
}
