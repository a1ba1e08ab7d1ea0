//! `vouch ca init|issue|revoke|crl|list|pkg`: a keylime_ca-style CA directory driven through
//! the built binary, checked with OpenSSL (`openssl verify -crl_check`) and by unzipping the
//! package.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn vouch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(args)
        .env_remove("VOUCH_CA_DIR")
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

/// `openssl verify -crl_check` of `NAME-cert.crt` against the directory's CA and CRL.
fn openssl_accepts(dir: &Path, name: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-crl_check")
        .arg("-CAfile")
        .arg(dir.join("cacert.crt"))
        .arg("-CRLfile")
        .arg(dir.join("cacrl.pem"))
        .arg(dir.join(format!("{name}-cert.crt")))
        .output()
        .expect("openssl must be installed for this test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn issue_revoke_crl_list_and_package() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let d = dir.to_str().unwrap();

    // Without a CA: a clear error that says how to make one.
    let e = failed(&vouch(&["ca", "issue", "--dir", d, "--name", "node1"]));
    assert!(e.contains("vouch ca init"), "{e}");

    let text = ok(&vouch(&["ca", "init", "--dir", d]));
    assert!(text.contains("cacert.crt"), "{text}");
    for f in ["cacert.crt", "ca-private.pem", "cacrl.der", "cacrl.pem"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let e = failed(&vouch(&["ca", "init", "--dir", d]));
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");

    let text = ok(&vouch(&["ca", "issue", "--dir", d, "--name", "node1"]));
    assert!(text.contains("serial 2"), "{text}");
    ok(&vouch(&["ca", "issue", "--dir", d, "--name", "node2"]));
    let mode = std::fs::metadata(dir.join("node1-private.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let e = failed(&vouch(&["ca", "issue", "--dir", d, "--name", "node1"]));
    assert!(e.contains("revoke it first"), "{e}");
    let e = failed(&vouch(&["ca", "issue", "--dir", d, "--name", "../evil"]));
    assert!(e.contains("invalid certificate name"), "{e}");

    let (accepted, text) = openssl_accepts(&dir, "node1");
    assert!(accepted, "{text}");

    // Package: upstream's certpkg files plus the notifier certificate and --include files.
    let include = tmp.path().join("include");
    std::fs::create_dir(&include).unwrap();
    std::fs::write(include.join("action_list"), "local_action_update_crl\n").unwrap();
    let zip_path = tmp.path().join("node1-pkg.zip");
    let text = ok(&vouch(&[
        "ca",
        "pkg",
        "--dir",
        d,
        "--name",
        "node1",
        "--out",
        zip_path.to_str().unwrap(),
        "--include",
        include.to_str().unwrap(),
    ]));
    assert!(text.contains("issued RevocationNotifier"), "{text}");
    assert!(text.contains("O=Vouch,CN=node1"), "{text}");
    assert!(text.contains("RevocationNotifier-private.pem"), "{text}");
    let mode = std::fs::metadata(&zip_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut names: Vec<_> = zip.file_names().map(str::to_owned).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "RevocationNotifier-cert.crt",
            "action_list",
            "cacert.crt",
            "cacrl.der",
            "cacrl.pem",
            "node1-cert.crt",
            "node1-private.pem",
            "node1-public.pem",
        ]
    );
    let mut key = String::new();
    zip.by_name("node1-private.pem")
        .unwrap()
        .read_to_string(&mut key)
        .unwrap();
    assert_eq!(
        key,
        std::fs::read_to_string(dir.join("node1-private.pem")).unwrap()
    );

    // Revoke by name: the CRL lists serial 2; OpenSSL refuses node1 and accepts node2.
    let text = ok(&vouch(&["ca", "revoke", "--dir", d, "--name", "node1"]));
    assert!(text.contains("revoked node1 (serial 2)"), "{text}");
    let (accepted, text) = openssl_accepts(&dir, "node1");
    assert!(!accepted && text.contains("revoked"), "{text}");
    let (accepted, text) = openssl_accepts(&dir, "node2");
    assert!(accepted, "{text}");
    let crl = Command::new("openssl")
        .arg("crl")
        .arg("-in")
        .arg(dir.join("cacrl.pem"))
        .args(["-noout", "-text"])
        .output()
        .unwrap();
    let crl = String::from_utf8(crl.stdout).unwrap();
    assert!(crl.contains("Serial Number: 02"), "{crl}");

    // By serial (hex as OpenSSL prints it), then an unknown serial.
    let text = ok(&vouch(&["ca", "revoke", "--dir", d, "--serial", "0x03"]));
    assert!(text.contains("revoked node2"), "{text}");
    let e = failed(&vouch(&["ca", "revoke", "--dir", d, "--serial", "77"]));
    assert!(e.contains("no certificate with serial 77"), "{e}");
    let e = failed(&vouch(&["ca", "revoke", "--dir", d]));
    assert!(e.contains("--name") || e.contains("--serial"), "{e}");

    let text = ok(&vouch(&["ca", "crl", "--dir", d]));
    assert!(text.contains("revoked      serial 2"), "{text}");
    assert!(text.contains("revoked      serial 3"), "{text}");
    let before: u64 = crl_number(&text);
    let text = ok(&vouch(&["ca", "crl", "--dir", d, "--refresh"]));
    assert_eq!(crl_number(&text), before + 1, "{text}");

    let text = ok(&vouch(&["ca", "list", "--dir", d]));
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[1].contains("revoked") && lines[1].ends_with("node1"),
        "{text}"
    );
    assert!(
        lines[3].contains("valid") && lines[3].ends_with("RevocationNotifier"),
        "{text}"
    );

    // The directory's env var works as --dir does.
    let out = Command::new(env!("CARGO_BIN_EXE_vouch"))
        .args(["ca", "list"])
        .env("VOUCH_CA_DIR", d)
        .output()
        .unwrap();
    assert_eq!(ok(&out), text);
}

fn crl_number(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("CRL number "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
