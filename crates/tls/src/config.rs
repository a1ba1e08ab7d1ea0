//! rustls configurations for Vouch's servers and clients, always built with the aws-lc-rs
//! provider and TLS 1.2/1.3 (upstream: `minimum_version = TLSv1_2`).

use crate::error::Result;
use crate::layout::TlsDir;
use crate::pem::{load_roots, provider, Identity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use std::sync::Arc;

/// How a server treats client certificates.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client certificates asked for (plain server TLS).
    None,
    /// A client must present a certificate chaining to these roots or the handshake fails.
    Required(RootCertStore),
    /// A client may present a certificate; if it does, it must chain to these roots. This is
    /// upstream's `CERT_OPTIONAL` (the handler then answers 403 to a client without one).
    Optional(RootCertStore),
}

/// Whether a client checks that the server certificate names the host it connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNameCheck {
    /// Chain and name are both checked (the default for Vouch-to-Vouch links).
    Required,
    /// Only the chain is checked, as upstream does everywhere (`check_hostname = False`):
    /// needed for agents whose certificate names neither their IP nor their host.
    ChainOnly,
}

/// A server configuration presenting `identity`. No ALPN is advertised: peers speak HTTP/1.1,
/// like upstream's tornado servers (the `serve_tls` connection builder still understands h2
/// with prior knowledge).
pub fn server_config(identity: &Identity, client_auth: ClientAuth) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?,
        ),
        ClientAuth::Optional(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?,
        ),
    };
    let config = builder.with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    Ok(Arc::new(config))
}

/// A client configuration trusting `roots`, presenting `identity` if given. Returned by value
/// because `reqwest::ClientBuilder::use_preconfigured_tls` takes it that way.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<&Identity>,
    names: ServerNameCheck,
) -> Result<ClientConfig> {
    let provider = provider();
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let builder =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let builder = match names {
        ServerNameCheck::Required => builder.with_webpki_verifier(webpki),
        ServerNameCheck::ChainOnly => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki))),
    };
    Ok(match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    })
}

/// How a [`TlsDir`] server treats client certificates; the roots are the directory's
/// `cacert.crt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    None,
    Optional,
    Required,
}

impl TlsDir {
    /// The server side of the directory: presents `server-cert.crt` + `server-private.pem`;
    /// checks client certificates against `cacert.crt` as `mode` says.
    pub fn server_config(&self, mode: ClientCertMode) -> Result<Arc<ServerConfig>> {
        let server = self.server();
        let identity = Identity::load(&server.cert, &server.key)?;
        let client_auth = match mode {
            ClientCertMode::None => ClientAuth::None,
            ClientCertMode::Optional => ClientAuth::Optional(load_roots(&[self.ca_cert()])?),
            ClientCertMode::Required => ClientAuth::Required(load_roots(&[self.ca_cert()])?),
        };
        server_config(&identity, client_auth)
    }

    /// The client side: trusts `cacert.crt`, presents `client-cert.crt` + `client-private.pem`.
    pub fn client_config(&self, names: ServerNameCheck) -> Result<ClientConfig> {
        let client = self.client();
        let identity = Identity::load(&client.cert, &client.key)?;
        client_config(load_roots(&[self.ca_cert()])?, Some(&identity), names)
    }
}

/// Upstream's `check_hostname = False`: the usual WebPKI verification, except that a
/// certificate valid in every respect but the name is accepted. webpki checks the chain,
/// validity and EKU before the name, so nothing else is skipped.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
