//! `vouch certs init|issue-server|issue-client`: the files upstream's `tls_dir = generate`
//! would write, private keys 0600, no overwriting without `--force`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn vouch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(args)
        .env_remove("VOUCH_TLS_DIR")
        .output()
        .expect("run vouch")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "vouch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "vouch should have failed");
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cn(path: &Path) -> String {
    let certs = vouch_tls::load_certs(path).unwrap();
    vouch_tls::common_name(&certs[0]).unwrap()
}

#[test]
fn init_writes_a_working_tls_directory_and_refuses_to_overwrite_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cv_ca");
    let d = dir.to_str().unwrap();
    let text = ok(&vouch(&[
        "certs",
        "init",
        "--dir",
        d,
        "--server-name",
        "registrar.example",
        "--server-name",
        "10.0.0.5",
        "--client-name",
        "admin",
    ]));
    for file in [
        "cacert.crt",
        "ca-private.pem",
        "ca-public.pem",
        "server-cert.crt",
        "server-private.pem",
        "server-public.pem",
        "client-cert.crt",
        "client-private.pem",
        "client-public.pem",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
        assert!(text.contains(file), "{file} not reported:\n{text}");
    }
    assert!(
        text.contains("server certificate for registrar.example, 10.0.0.5"),
        "{text}"
    );
    assert!(text.contains("client certificate CN=admin"), "{text}");
    assert_eq!(mode(&dir), 0o700);
    for key in ["ca-private.pem", "server-private.pem", "client-private.pem"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    assert_eq!(cn(&dir.join("client-cert.crt")), "admin");
    assert_eq!(cn(&dir.join("cacert.crt")), "Vouch CA");

    // What the directory is for: both sides of mTLS load from it.
    let tls = vouch_tls::TlsDir::new(&dir);
    tls.server_config(vouch_tls::ClientCertMode::Required)
        .unwrap();
    tls.client_config(vouch_tls::ServerNameCheck::Required)
        .unwrap();

    let ca_before = std::fs::read(dir.join("cacert.crt")).unwrap();
    let err = failed(&vouch(&["certs", "init", "--dir", d]));
    assert!(err.contains("cacert.crt already exists"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(dir.join("cacert.crt")).unwrap(), ca_before);

    ok(&vouch(&["certs", "init", "--dir", d, "--force"]));
    assert_ne!(std::fs::read(dir.join("cacert.crt")).unwrap(), ca_before);
    assert_eq!(cn(&dir.join("client-cert.crt")), "client");
}

#[test]
fn init_does_not_replace_an_operators_server_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    std::fs::write(tmp.path().join("server-cert.crt"), "operator's").unwrap();
    let err = failed(&vouch(&["certs", "init", "--dir", d]));
    assert!(err.contains("server-cert.crt already exists"), "{err}");
    assert!(!tmp.path().join("cacert.crt").exists());
}

#[test]
fn issue_client_and_server_use_the_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    ok(&vouch(&["certs", "init", "--dir", d]));
    let ca_before = std::fs::read(tmp.path().join("cacert.crt")).unwrap();

    let text = ok(&vouch(&[
        "certs",
        "issue-client",
        "--dir",
        d,
        "--client-name",
        "alice",
        "--stem",
        "alice",
    ]));
    assert!(text.contains("alice-cert.crt"), "{text}");
    assert_eq!(cn(&tmp.path().join("alice-cert.crt")), "alice");
    assert_eq!(mode(&tmp.path().join("alice-private.pem")), 0o600);

    ok(&vouch(&[
        "certs",
        "issue-server",
        "--dir",
        d,
        "--server-name",
        "verifier.example",
    ]));
    assert_eq!(
        std::fs::read(tmp.path().join("cacert.crt")).unwrap(),
        ca_before
    );
    vouch_tls::TlsDir::new(tmp.path())
        .server_config(vouch_tls::ClientCertMode::Required)
        .unwrap();
}

#[test]
fn bad_input_fails_with_one_line_that_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let err = failed(&vouch(&["certs", "issue-client", "--dir", d]));
    assert!(err.contains("cacert.crt"), "{err}");
    assert!(err.contains("vouch certs init"), "{err}");

    let err = failed(&vouch(&[
        "certs",
        "init",
        "--dir",
        d,
        "--server-name",
        "not a name",
    ]));
    assert!(err.contains("not a name"), "{err}");

    ok(&vouch(&["certs", "init", "--dir", d]));
    let err = failed(&vouch(&[
        "certs",
        "issue-client",
        "--dir",
        d,
        "--stem",
        "../x",
    ]));
    assert!(err.contains("--stem"), "{err}");
}
