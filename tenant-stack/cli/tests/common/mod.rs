//! Shared helpers for the `vouch` CLI integration tests: a real swtpm per test, tpm2-tools
//! against it, and the `vouch` binary under test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vouch_testkit::Swtpm;

pub struct Lab {
    pub tpm: Swtpm,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        let tpm = Swtpm::start().expect("start swtpm");
        let dir = tempfile::tempdir().expect("tempdir");
        Lab { tpm, dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Run a tpm2-tools command against this lab's swtpm; panics with its stderr on failure.
    pub fn tools(&self, tool: &str, args: &[&str]) -> Output {
        let out = self.tools_raw(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn tools_raw(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tpm.tcti())
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    /// Run `vouch` with the lab's TCTI in the environment.
    pub fn vouch(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vouch"))
            .args(args)
            .env("VOUCH_TCTI", self.tpm.tcti())
            .current_dir(self.dir.path())
            .output()
            .expect("run vouch")
    }

    /// Primary EK (RSA or ECC) in `ek.ctx` / `ek.pub`, then an AK with the given tpm2-tools
    /// algorithm spec (`rsa2048:rsassa:null`, `ecc256:ecdsa:null`, ...) in `ak.ctx`/`ak.pub`.
    pub fn make_ak(&self, ek_alg: &str, ak_alg: &str, ak_hash: &str, scheme: &str) {
        self.tools(
            "tpm2_createek",
            &["-c", "ek.ctx", "-G", ek_alg, "-u", "ek.pub"],
        );
        self.tools(
            "tpm2_createak",
            &[
                "-C", "ek.ctx", "-c", "ak.ctx", "-G", ak_alg, "-g", ak_hash, "-s", scheme, "-u",
                "ak.pub", "-n", "ak.name",
            ],
        );
        self.tools("tpm2_flushcontext", &["-t"]);
        self.tools(
            "tpm2_readpublic",
            &["-c", "ak.ctx", "-o", "ak.tpm2b", "-f", "tss"],
        );
        self.tools(
            "tpm2_readpublic",
            &["-c", "ak.ctx", "-o", "ak.pem", "-f", "pem"],
        );
        self.tools("tpm2_flushcontext", &["-t"]);
    }

    /// tpm2_quote with the AK in `ak.ctx`, writing q.msg / q.sig / q.pcrs.
    pub fn quote(&self, selection: &str, nonce_hex: &str, extra: &[&str]) {
        let mut args = vec![
            "-c", "ak.ctx", "-l", selection, "-q", nonce_hex, "-m", "q.msg", "-s", "q.sig", "-o",
            "q.pcrs",
        ];
        args.extend_from_slice(extra);
        self.tools("tpm2_quote", &args);
        self.tools("tpm2_flushcontext", &["-t"]);
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read file")
    }

    pub fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.path(name), data).expect("write file")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert `vouch` failed and its error mentions `needle` (case-insensitive).
pub fn assert_rejected(o: &Output, needle: &str) {
    let err = stderr(o);
    eprintln!("refused as expected: {}", err.trim());
    assert!(
        !o.status.success(),
        "expected failure mentioning {needle:?}, got success: {}",
        stdout(o)
    );
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "expected error mentioning {needle:?}, got: {err}"
    );
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "vouch failed: {}{}",
        stdout(o),
        stderr(o)
    );
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
