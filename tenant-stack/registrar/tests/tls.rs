//! The mTLS listener (`tls_listen` + `tls_dir`, wire doc §3, §7): admin routes over mTLS with
//! a client certificate from the directory's CA; refused without one or with another CA's;
//! agents still register and activate on the plain-HTTP port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestRegistrar, TestTpm};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use vouch_tls::{
    client_config, default_server_names, load_roots, Ca, Identity, ServerNameCheck, TlsDir,
};

const ID: &str = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000";

fn make_tls_dir(dir: &Path) {
    let ca = Ca::create(dir, "registrar test CA").unwrap();
    ca.issue_server(&default_server_names()).unwrap();
    ca.issue_client("admin").unwrap();
}

fn mtls_client(dir: &Path) -> reqwest::Client {
    let config = TlsDir::new(dir)
        .client_config(ServerNameCheck::Required)
        .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

async fn get_json(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = client.get(url).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap())
}

#[tokio::test]
async fn admin_routes_over_mtls_and_registration_over_http() {
    let tpm = TestTpm::start().await;
    let tls = tempfile::tempdir().unwrap();
    make_tls_dir(tls.path());
    let reg = TestRegistrar::start_with(|c| {
        c.ek_ca_dir = tpm.swtpm.ca_dir();
        c.insecure_admin_over_http = false;
        c.tls_dir = Some(tls.path().to_path_buf());
        c.tls_listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let tls_addr = reg.registrar.as_ref().unwrap().tls_addr().unwrap();
    let base = format!("https://localhost:{}", tls_addr.port());

    // Registration + activation on the plain-HTTP port (what agents use).
    let (s, v) = reg
        .post(&format!("/v2.6/agents/{ID}"), &tpm.register_body())
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let blob = v["results"]["blob"].as_str().unwrap().to_owned();
    let tag = tpm.auth_tag(ID, &blob).await;
    let (s, v) = reg
        .put(&format!("/v2.6/agents/{ID}"), &json!({ "auth_tag": tag }))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Admin routes are refused on HTTP ...
    let (s, _) = reg.get(&format!("/v2.6/agents/{ID}")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // ... and served over mTLS.
    let client = mtls_client(tls.path());
    let (s, v) = get_json(&client, &format!("{base}/version")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = get_json(&client, &format!("{base}/v2.6/agents/")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"]["uuids"], json!([ID]));
    let (s, v) = get_json(&client, &format!("{base}/v2.6/agents/{ID}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"]["agent_id"], ID);
    assert_eq!(v["results"]["regcount"], 1);
    assert!(v["results"]["aik_tpm"].is_string());

    let r = client
        .delete(format!("{base}/v2.6/agents/{ID}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _) = get_json(&client, &format!("{base}/v2.6/agents/{ID}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Registration also works on the TLS port (upstream serves every route on both).
    let (s, v) = {
        let r = client
            .post(format!("{base}/v2.6/agents/{ID}"))
            .json(&tpm.register_body())
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json::<Value>().await.unwrap())
    };
    assert_eq!(s, StatusCode::OK, "{v}");

    let mut reg = reg;
    reg.stop().await;
}

#[tokio::test]
async fn no_client_cert_or_another_ca_is_refused() {
    let tls = tempfile::tempdir().unwrap();
    make_tls_dir(tls.path());
    let other = tempfile::tempdir().unwrap();
    make_tls_dir(other.path());
    let mut reg = TestRegistrar::start_with(|c| {
        c.require_ek_cert = false;
        c.insecure_admin_over_http = false;
        c.tls_dir = Some(tls.path().to_path_buf());
        c.tls_listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let tls_addr = reg.registrar.as_ref().unwrap().tls_addr().unwrap();
    let url = format!("https://localhost:{}/v2.6/agents/", tls_addr.port());
    let roots = || load_roots(&[TlsDir::new(tls.path()).ca_cert()]).unwrap();

    // No client certificate: the handshake fails.
    let config = client_config(roots(), None, ServerNameCheck::Required).unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap();
    let e = client.get(&url).send().await.unwrap_err();
    assert!(e.is_connect() || e.is_request(), "{e:?}");

    // A client certificate from another CA: refused too.
    let files = TlsDir::new(other.path()).client();
    let foreign = Identity::load(&files.cert, &files.key).unwrap();
    let config = client_config(roots(), Some(&foreign), ServerNameCheck::Required).unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap();
    let e = client.get(&url).send().await.unwrap_err();
    assert!(e.is_connect() || e.is_request(), "{e:?}");

    // The right one works (the server is not wedged by the failed handshakes).
    let (s, v) = get_json(&mtls_client(tls.path()), &url).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"]["uuids"], json!([]));
    reg.stop().await;
}

#[tokio::test]
async fn missing_tls_dir_files_fail_start_naming_the_dir() {
    let empty = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = vouch_registrar::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: dir.path().join("state"),
        require_ek_cert: false,
        tls_dir: Some(empty.path().to_path_buf()),
        ..vouch_registrar::Config::default()
    };
    let e = vouch_registrar::Registrar::start(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&empty.path().display().to_string()), "{e}");
    assert!(e.contains("vouch certs init"), "{e}");
}
