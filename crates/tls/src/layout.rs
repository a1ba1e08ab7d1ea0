//! Where things live in a TLS directory. The names are upstream keylime's: what
//! `ca_util.cmd_init` / `cmd_mkcert` write when the verifier runs with `tls_dir = generate`
//! (`$KEYLIME_DIR/cv_ca/`) and what `web_util.get_tls_options` reads for `default` options. So a
//! Vouch directory can be used as upstream's `cv_ca/`, and upstream's `cv_ca/` by Vouch.

use std::path::{Path, PathBuf};

/// CA certificate: upstream's `trusted_client_ca` / `trusted_server_ca = default`.
pub const CA_CERT: &str = "cacert.crt";
/// CA private key. Upstream keeps it only inside the encrypted `private.yml`; this is the file
/// name `keylime_ca -c import-priv` reads by default, so upstream can take over a Vouch CA.
pub const CA_KEY: &str = "ca-private.pem";
/// CA public key (SubjectPublicKeyInfo), written by upstream too.
pub const CA_PUBLIC: &str = "ca-public.pem";
/// File stem of the server certificate (upstream: `server_cert`/`server_key = default`).
pub const SERVER: &str = "server";
/// File stem of the client certificate (upstream: `client_cert`/`client_key = default`).
pub const CLIENT: &str = "client";

/// A TLS directory laid out like upstream keylime's `cv_ca/`:
///
/// ```text
/// cacert.crt  ca-private.pem  ca-public.pem
/// server-cert.crt  server-private.pem  server-public.pem
/// client-cert.crt  client-private.pem  client-public.pem
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsDir {
    root: PathBuf,
}

/// The three files of one issued certificate: `{stem}-cert.crt`, `{stem}-private.pem`,
/// `{stem}-public.pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub public: PathBuf,
}

impl TlsDir {
    pub fn new(root: impl Into<PathBuf>) -> TlsDir {
        TlsDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join(CA_CERT)
    }

    pub fn ca_key(&self) -> PathBuf {
        self.root.join(CA_KEY)
    }

    pub fn ca_public(&self) -> PathBuf {
        self.root.join(CA_PUBLIC)
    }

    /// Files of the certificate named `stem` (upstream's `-n NAME` of `keylime_ca -c create`).
    pub fn cert_files(&self, stem: &str) -> CertFiles {
        CertFiles {
            cert: self.root.join(format!("{stem}-cert.crt")),
            key: self.root.join(format!("{stem}-private.pem")),
            public: self.root.join(format!("{stem}-public.pem")),
        }
    }

    pub fn server(&self) -> CertFiles {
        self.cert_files(SERVER)
    }

    pub fn client(&self) -> CertFiles {
        self.cert_files(CLIENT)
    }
}
