//! mTLS over `serve_tls` with a real axum server on 127.0.0.1 and reqwest clients: the right
//! client certificate gets through; no certificate, another CA's, an expired one, and a server
//! certificate for another name are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly
mod common;
use common::*;

use std::time::{Duration, SystemTime};
use vouch_tls::{
    client_config, load_roots, server_config, Ca, CertRequest, ClientAuth, ClientCertMode,
    Identity, ServerNameCheck, TlsDir, Validity,
};

fn identity_of(ca: &Ca, request: &CertRequest, stem: &str) -> Identity {
    let files = ca.dir().cert_files(stem);
    ca.issue(request).unwrap().write(&files).unwrap();
    Identity::load(&files.cert, &files.key).unwrap()
}

#[tokio::test]
async fn right_client_certificate_is_accepted_and_its_cn_reaches_the_handler() {
    let tmp = tempfile::tempdir().unwrap();
    tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let server = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;
    let http = client(dir.client_config(ServerNameCheck::Required).unwrap());
    for host in ["127.0.0.1", "localhost"] {
        assert_eq!(get_text(&http, &server.url(host)).await.unwrap(), "client");
    }
    server.stop().await;
}

#[tokio::test]
async fn no_client_certificate_is_refused_under_required_and_anonymous_under_optional() {
    let tmp = tempfile::tempdir().unwrap();
    tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let roots = load_roots(&[dir.ca_cert()]).unwrap();
    let anonymous = client(client_config(roots, None, ServerNameCheck::Required).unwrap());

    let required = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;
    let err = get_text(&anonymous, &required.url("127.0.0.1"))
        .await
        .unwrap_err();
    assert!(err.contains("CertificateRequired"), "{err}");
    required.stop().await;

    // Upstream's CERT_OPTIONAL: the handshake succeeds, the handler sees no certificate.
    let optional = Server::start(dir.server_config(ClientCertMode::Optional).unwrap()).await;
    assert_eq!(
        get_text(&anonymous, &optional.url("127.0.0.1"))
            .await
            .unwrap(),
        "anonymous"
    );
    optional.stop().await;
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let other_tmp = tempfile::tempdir().unwrap();
    tls_dir(tmp.path());
    let other = Ca::create(other_tmp.path(), "Other CA").unwrap();
    let dir = TlsDir::new(tmp.path());
    let server = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;

    // Same CN as the good client, and it trusts the right server CA: only the issuer differs.
    let stranger = identity_of(&other, &CertRequest::client("client"), "client");
    let roots = load_roots(&[dir.ca_cert()]).unwrap();
    let http = client(client_config(roots, Some(&stranger), ServerNameCheck::Required).unwrap());
    let err = get_text(&http, &server.url("127.0.0.1")).await.unwrap_err();
    assert!(
        err.contains("UnknownCA") || err.contains("BadCertificate"),
        "{err}"
    );

    let good = client(dir.client_config(ServerNameCheck::Required).unwrap());
    assert_eq!(
        get_text(&good, &server.url("127.0.0.1")).await.unwrap(),
        "client"
    );
    server.stop().await;
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let server = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;

    let day = Duration::from_secs(86_400);
    let expired = Validity {
        not_before: SystemTime::now() - 10 * day,
        not_after: SystemTime::now() - day,
    };
    let old = identity_of(&ca, &CertRequest::client("old").validity(expired), "old");
    let roots = load_roots(&[dir.ca_cert()]).unwrap();
    let http = client(client_config(roots, Some(&old), ServerNameCheck::Required).unwrap());
    let err = get_text(&http, &server.url("127.0.0.1")).await.unwrap_err();
    assert!(err.contains("CertificateExpired"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn expired_server_certificate_is_refused_by_the_client() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let day = Duration::from_secs(86_400);
    let expired = Validity {
        not_before: SystemTime::now() - 10 * day,
        not_after: SystemTime::now() - day,
    };
    let old = identity_of(
        &ca,
        &CertRequest::server(&names(&["127.0.0.1"])).validity(expired),
        "old-server",
    );
    let roots = load_roots(&[dir.ca_cert()]).unwrap();
    let server = Server::start(server_config(&old, ClientAuth::Required(roots)).unwrap()).await;
    let http = client(dir.client_config(ServerNameCheck::ChainOnly).unwrap());
    let err = get_text(&http, &server.url("127.0.0.1")).await.unwrap_err();
    assert!(err.contains("expired"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn server_certificate_for_another_name_is_refused_unless_chain_only() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let elsewhere = identity_of(
        &ca,
        &CertRequest::server(&names(&["registrar.example", "10.9.8.7"])),
        "elsewhere",
    );
    let roots = load_roots(&[dir.ca_cert()]).unwrap();
    let server =
        Server::start(server_config(&elsewhere, ClientAuth::Required(roots)).unwrap()).await;

    let strict = client(dir.client_config(ServerNameCheck::Required).unwrap());
    for host in ["127.0.0.1", "localhost"] {
        let err = get_text(&strict, &server.url(host)).await.unwrap_err();
        assert!(err.contains("not valid for name"), "{host}: {err}");
    }
    // Upstream's check_hostname = False: chain still checked, name not.
    let lax = client(dir.client_config(ServerNameCheck::ChainOnly).unwrap());
    assert_eq!(
        get_text(&lax, &server.url("127.0.0.1")).await.unwrap(),
        "client"
    );

    // ...and ChainOnly still refuses a server from another CA.
    let other_tmp = tempfile::tempdir().unwrap();
    let other = Ca::create(other_tmp.path(), "Other CA").unwrap();
    let impostor = identity_of(
        &other,
        &CertRequest::server(&names(&["127.0.0.1"])),
        "server",
    );
    let roots = load_roots(&[dir.ca_cert()]).unwrap();
    let fake = Server::start(server_config(&impostor, ClientAuth::Required(roots)).unwrap()).await;
    let err = get_text(&lax, &fake.url("127.0.0.1")).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    fake.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_serve_tls_and_closes_the_port() {
    let tmp = tempfile::tempdir().unwrap();
    tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let server = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;
    let http = client(dir.client_config(ServerNameCheck::Required).unwrap());
    // A pooled keep-alive connection is open when shutdown starts; serve_tls must not hang on it.
    assert_eq!(
        get_text(&http, &server.url("127.0.0.1")).await.unwrap(),
        "client"
    );
    let addr = server.addr;
    server.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_stalled_handshake_does_not_block_other_clients() {
    let tmp = tempfile::tempdir().unwrap();
    tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let server = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;
    let _silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let http = client(dir.client_config(ServerNameCheck::Required).unwrap());
    assert_eq!(
        get_text(&http, &server.url("127.0.0.1")).await.unwrap(),
        "client"
    );
    server.stop().await;
}

/// Agent mTLS (docs/keylime-wire.md §7): a client pinned to a self-signed end-entity
/// certificate (`self_signed`) accepts it; pinned to a self-signed *CA* certificate presented
/// as the server certificate, rustls refuses (`CaUsedAsEndEntity`) — why agents' certificates
/// are not CAs. Pinned to another self-signed certificate: refused.
#[tokio::test]
async fn pinned_self_signed_end_entity_is_accepted_and_a_ca_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    tls_dir(tmp.path());
    let dir = TlsDir::new(tmp.path());
    let roots_of = |pem: &str| vouch_tls::roots_from_pem(pem, "pinned").unwrap();
    let write = |issued: &vouch_tls::IssuedCert, stem: &str| {
        let files = dir.cert_files(stem);
        issued.write(&files).unwrap();
        Identity::load(&files.cert, &files.key).unwrap()
    };
    let names = vouch_tls::default_server_names();
    let agent = vouch_tls::self_signed("agent-uuid", &names).unwrap();
    let other = vouch_tls::self_signed("agent-uuid", &names).unwrap();
    let agent_id = write(&agent, "agent");
    let client_id = Identity::load(dir.client().cert, dir.client().key).unwrap();
    let client_roots = load_roots(&[dir.ca_cert()]).unwrap();
    let server = Server::start(
        server_config(&agent_id, ClientAuth::Required(client_roots.clone())).unwrap(),
    )
    .await;
    let pinned = client(
        client_config(
            roots_of(&agent.cert_pem),
            Some(&client_id),
            ServerNameCheck::ChainOnly,
        )
        .unwrap(),
    );
    assert_eq!(
        get_text(&pinned, &server.url("127.0.0.1")).await.unwrap(),
        "client"
    );
    let wrong = client(
        client_config(
            roots_of(&other.cert_pem),
            Some(&client_id),
            ServerNameCheck::ChainOnly,
        )
        .unwrap(),
    );
    let err = get_text(&wrong, &server.url("127.0.0.1"))
        .await
        .unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
    server.stop().await;

    // The CA's own certificate as a server certificate, pinned: refused as a CA.
    let ca_id = Identity::load(dir.ca_cert(), dir.ca_key()).unwrap();
    let server =
        Server::start(server_config(&ca_id, ClientAuth::Required(client_roots)).unwrap()).await;
    let ca_pem = std::fs::read_to_string(dir.ca_cert()).unwrap();
    let pinned_ca = client(
        client_config(
            roots_of(&ca_pem),
            Some(&client_id),
            ServerNameCheck::ChainOnly,
        )
        .unwrap(),
    );
    let err = get_text(&pinned_ca, &server.url("127.0.0.1"))
        .await
        .unwrap_err();
    assert!(err.contains("CaUsedAsEndEntity"), "{err}");
    server.stop().await;
}
