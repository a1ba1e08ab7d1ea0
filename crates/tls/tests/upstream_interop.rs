//! Interoperability with upstream keylime 7.14.3's own TLS code, run at test time:
//!
//! 1. upstream's tenant, with `tls_dir = default` and `$KEYLIME_DIR/cv_ca` = a Vouch directory,
//!    builds its client context with `web_util.get_tls_options` + `generate_tls_context` and
//!    talks to a Vouch mTLS server;
//! 2. upstream's server context (`get_tls_options("verifier")` + `generate_tls_context`, as
//!    `init_mtls` does) on Vouch's files serves a Vouch client;
//! 3. upstream's verifier generates its `cv_ca/` (`web_util.init_tls_dir`, i.e.
//!    `tls_dir = generate`), and Vouch serves and connects with that directory as is;
//! 4. upstream takes over a Vouch CA (`keylime_ca -c import-priv`, then `-c create`) and the
//!    certificate it issues is accepted by a Vouch server.
//!
//! The interpreter is `$VOUCH_KEYLIME_PYTHON`, by default `/opt/vouch/keylime-venv/bin/python3`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly
mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use vouch_tls::{client_config, load_roots, ClientCertMode, Identity, ServerNameCheck, TlsDir};

const DEFAULT_PYTHON: &str = "/opt/vouch/keylime-venv/bin/python3";

const PRELUDE: &str = r#"
import importlib.metadata, logging, os, sys
logging.disable(logging.WARNING)
_ver = importlib.metadata.version("keylime")
assert _ver == "7.14.3", f"expected upstream keylime 7.14.3 in this interpreter, found {_ver}"
from keylime import web_util, ca_util
"#;

const CONFIGS: &[(&str, &str)] = &[
    (
        "tenant.conf",
        "[tenant]\nversion = 2.6\ntls_dir = default\nclient_key = default\nclient_key_password =\n\
         client_cert = default\ntrusted_server_ca = default\n",
    ),
    (
        "verifier.conf",
        "[verifier]\nversion = 2.6\nip = 127.0.0.1\ntls_dir = generate\nserver_key = default\n\
         server_key_password =\nserver_cert = default\ntrusted_client_ca = default\n\
         client_key = default\nclient_key_password =\nclient_cert = default\n\
         trusted_server_ca = default\n",
    ),
    (
        "ca.conf",
        "[ca]\nversion = 2.6\npassword = default\ncert_country = US\ncert_ca_name = Keylime Test CA\n\
         cert_state = MA\ncert_locality = Lexington\ncert_organization = MITLL\ncert_org_unit = 53\n\
         cert_ca_lifetime = 3650\ncert_lifetime = 365\ncert_bits = 2048\n\
         cert_crl_dist = http://localhost:38080/crl\n",
    ),
];

fn python() -> PathBuf {
    let path = std::env::var_os("VOUCH_KEYLIME_PYTHON")
        .map_or_else(|| PathBuf::from(DEFAULT_PYTHON), PathBuf::from);
    assert!(
        path.exists(),
        "upstream keylime's Python interpreter {} does not exist. Run ci/test.sh, which installs \
         keylime 7.14.3 into /opt/vouch/keylime-venv, or point VOUCH_KEYLIME_PYTHON at a python3 \
         that has keylime 7.14.3 installed.",
        path.display()
    );
    path
}

/// `$KEYLIME_DIR` with upstream config files for the tenant, the verifier and the CA; the
/// TLS directory is `$KEYLIME_DIR/cv_ca`, where upstream's `default` options look.
struct KeylimeDir(tempfile::TempDir);

impl KeylimeDir {
    fn new() -> KeylimeDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in CONFIGS {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        KeylimeDir(dir)
    }

    fn cv_ca(&self) -> PathBuf {
        self.0.path().join("cv_ca")
    }

    fn command(&self, script: &str) -> tokio::process::Command {
        let root: &Path = self.0.path();
        let mut cmd = tokio::process::Command::new(python());
        cmd.arg("-c")
            .arg(format!("{PRELUDE}\n{script}"))
            .env("KEYLIME_DIR", root)
            .env("KEYLIME_TENANT_CONFIG", root.join("tenant.conf"))
            .env("KEYLIME_VERIFIER_CONFIG", root.join("verifier.conf"))
            .env("KEYLIME_CA_CONFIG", root.join("ca.conf"))
            .current_dir(root)
            .kill_on_drop(true);
        cmd
    }

    /// Run `script` to completion; its stdout, or a panic with its stderr.
    async fn run(&self, script: &str) -> String {
        let out = self.command(script).output().await.unwrap();
        assert!(
            out.status.success(),
            "upstream python failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Upstream's tenant side, byte for byte what `tenant.py` does for its verifier/registrar
/// connections: `get_tls_options("tenant", is_client=True)` then `generate_tls_context`.
const TENANT_GET: &str = r#"
import http.client
(cert, key, trusted_ca, pw), verify = web_util.get_tls_options("tenant", is_client=True)
ctx = web_util.generate_tls_context(cert, key, trusted_ca, pw, verify_peer_cert=verify, is_client=True)
conn = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=10)
conn.request("GET", "/whoami")
r = conn.getresponse()
print(r.status, r.read().decode())
"#;

#[tokio::test]
async fn upstream_tenant_context_on_a_vouch_directory_talks_to_a_vouch_server() {
    let kl = KeylimeDir::new();
    tls_dir(&kl.cv_ca());
    let dir = TlsDir::new(kl.cv_ca());
    let server = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;
    let out = kl
        .command(TENANT_GET)
        .arg(server.addr.port().to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "200 client");
    server.stop().await;
}

/// Upstream's server side (`init_mtls` minus the directory init): prints its port, then serves
/// one request answering the client certificate's CN.
const UPSTREAM_SERVER: &str = r#"
import http.server, threading
(cert, key, trusted_ca, pw), verify = web_util.get_tls_options("verifier")
ctx = web_util.generate_tls_context(cert, key, trusted_ca, pw, verify_peer_cert=verify)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        subject = dict(x[0] for x in self.connection.getpeercert()["subject"])
        body = subject["commonName"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.handle_request()
"#;

#[tokio::test]
async fn upstream_server_context_on_a_vouch_directory_serves_a_vouch_client() {
    let kl = KeylimeDir::new();
    tls_dir(&kl.cv_ca());
    let dir = TlsDir::new(kl.cv_ca());
    let mut child = kl
        .command(UPSTREAM_SERVER)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = match lines.next_line().await.unwrap() {
        Some(port) => port,
        None => {
            let out = child.wait_with_output().await.unwrap();
            panic!("{}", String::from_utf8_lossy(&out.stderr));
        }
    };
    let http = client(dir.client_config(ServerNameCheck::Required).unwrap());
    let url = format!("https://127.0.0.1:{port}/whoami");
    assert_eq!(get_text(&http, &url).await.unwrap(), "client");
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn vouch_uses_the_directory_upstreams_verifier_generates() {
    let kl = KeylimeDir::new();
    // What keylime_verifier does at startup with tls_dir = generate.
    let printed = kl
        .run("ca_util.read_password(None)\nprint(web_util.init_tls_dir('verifier'))")
        .await;
    assert_eq!(Path::new(printed.trim()), kl.cv_ca());
    let dir = TlsDir::new(kl.cv_ca());
    let server = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;
    // Upstream's server certificate names 127.0.0.1 (from `ip`), so names can be checked too.
    let http = client(dir.client_config(ServerNameCheck::Required).unwrap());
    assert_eq!(
        get_text(&http, &server.url("127.0.0.1")).await.unwrap(),
        "client"
    );
    // Upstream's tenant against the same server, for good measure.
    let out = kl
        .command(TENANT_GET)
        .arg(server.addr.port().to_string())
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200 client");
    server.stop().await;
}

#[tokio::test]
async fn upstream_keylime_ca_can_take_over_a_vouch_ca() {
    let kl = KeylimeDir::new();
    tls_dir(&kl.cv_ca());
    let dir = TlsDir::new(kl.cv_ca());
    // keylime_ca -d cv_ca -c import-priv -f ca-private.pem -s 1; keylime_ca -c create -n admin
    kl.run(
        "ca_util.read_password('test-password')\n\
         d = os.path.join(os.environ['KEYLIME_DIR'], 'cv_ca')\n\
         ca_util.cmd_import_priv(d, os.path.join(d, 'ca-private.pem'), 1)\n\
         ca_util.cmd_mkcert(d, 'admin')\n",
    )
    .await;
    let admin = dir.cert_files("admin");
    let identity = Identity::load(&admin.cert, &admin.key).unwrap();
    let server = Server::start(dir.server_config(ClientCertMode::Required).unwrap()).await;
    let roots = load_roots(&[dir.ca_cert()]).unwrap();
    let http = client(client_config(roots, Some(&identity), ServerNameCheck::Required).unwrap());
    assert_eq!(
        get_text(&http, &server.url("127.0.0.1")).await.unwrap(),
        "admin"
    );
    server.stop().await;
}
