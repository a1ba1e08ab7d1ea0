//! The TLS directory on disk: names, modes, refusing to replace a CA, reloading it, and load
//! errors that name the file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly
mod common;
use common::*;

use rustls::pki_types::UnixTime;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use vouch_tls::{
    load_roots, provider, Ca, CaOptions, CertRequest, ClientCertMode, Identity, ServerNameCheck,
    TlsDir, TlsError,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn generated_directory_has_upstream_names_and_private_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cv_ca");
    tls_dir(&root);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "ca-private.pem",
            "ca-public.pem",
            "cacert.crt",
            "client-cert.crt",
            "client-private.pem",
            "client-public.pem",
            "server-cert.crt",
            "server-private.pem",
            "server-public.pem",
        ]
    );
    assert_eq!(mode(&root), 0o700);
    for key in ["ca-private.pem", "server-private.pem", "client-private.pem"] {
        assert_eq!(mode(&root.join(key)), 0o600, "{key}");
    }
}

#[test]
fn create_refuses_an_existing_ca_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Ca::create(tmp.path(), "one").unwrap();
    let err = Ca::create(tmp.path(), "two").unwrap_err();
    assert!(matches!(err, TlsError::AlreadyExists { .. }), "{err}");
    assert!(
        err.to_string().contains("cacert.crt: already exists"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("cacert.crt")).unwrap(),
        first.cert_pem()
    );
    let options = CaOptions {
        force: true,
        ..CaOptions::default()
    };
    let second = Ca::create_with(tmp.path(), "two", &options).unwrap();
    assert_ne!(first.cert_pem(), second.cert_pem());
}

#[test]
fn a_reloaded_ca_issues_certificates_that_chain_to_cacert() {
    let tmp = tempfile::tempdir().unwrap();
    let created = Ca::create(tmp.path(), "Vouch Test CA").unwrap();
    let ca = Ca::load(tmp.path()).unwrap();
    assert_eq!(ca.cert_pem(), created.cert_pem());
    let files = ca.issue_client("alice").unwrap();
    let alice = Identity::load(&files.cert, &files.key).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        load_roots(&[ca.dir().ca_cert()]).unwrap().into(),
        provider(),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(alice.certificate(), &[], UnixTime::now())
        .unwrap();
    assert_eq!(
        vouch_tls::common_name(alice.certificate()).as_deref(),
        Some("alice")
    );
}

#[test]
fn load_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let server = dir.server();

    std::fs::write(&server.cert, "").unwrap();
    let err = dir.server_config(ClientCertMode::Required).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("server-cert.crt: no certificate found"),
        "{err}"
    );

    std::fs::write(
        &server.cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = dir.server_config(ClientCertMode::Required).unwrap_err();
    assert!(
        err.to_string()
            .contains("server-cert.crt: not a valid X.509 certificate"),
        "{err}"
    );

    // A certificate with another certificate's key.
    ca.issue(&CertRequest::server(&names(&["127.0.0.1"])))
        .unwrap()
        .write(&server)
        .unwrap();
    std::fs::copy(dir.client().key, &server.key).unwrap();
    let err = dir.server_config(ClientCertMode::Required).unwrap_err();
    assert!(
        err.to_string()
            .contains("server-private.pem: key does not match certificate"),
        "{err}"
    );

    std::fs::write(&server.key, dir.ca_cert().to_str().unwrap()).unwrap();
    let err = dir.server_config(ClientCertMode::Required).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("server-private.pem: no private key found"),
        "{err}"
    );

    std::fs::remove_file(dir.client().cert).unwrap();
    let err = dir.client_config(ServerNameCheck::Required).unwrap_err();
    assert!(
        err.to_string().contains("client-cert.crt: No such file"),
        "{err}"
    );

    std::fs::write(dir.ca_cert(), "not pem at all").unwrap();
    let err = Ca::load(tmp.path()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("cacert.crt: no certificate found"),
        "{err}"
    );
}

#[test]
fn a_ca_key_that_is_not_the_certificates_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    std::fs::copy(dir.server().key, dir.ca_key()).unwrap();
    let err = Ca::load(tmp.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("ca-private.pem: key does not match certificate"),
        "{err}"
    );
}

#[test]
fn subject_names_parse_as_ip_or_dns() {
    use vouch_tls::SubjectName;
    assert!(matches!("::1".parse().unwrap(), SubjectName::Ip(_)));
    assert!(matches!("10.0.0.1".parse().unwrap(), SubjectName::Ip(_)));
    assert_eq!(
        "Registrar.Example".parse::<SubjectName>().unwrap(),
        SubjectName::Dns("registrar.example".into())
    );
    assert!("bad name".parse::<SubjectName>().is_err());
    assert!("".parse::<SubjectName>().is_err());
}
