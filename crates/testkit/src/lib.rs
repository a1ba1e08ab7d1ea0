//! Test harness: real `swtpm` processes with EK certificates from a CA private to each state.
//!
//! ```no_run
//! let tpm = vouch_testkit::Swtpm::start()?;          // copy of a per-process template
//! std::env::set_var("TPM2TOOLS_TCTI", tpm.tcti());   // swtpm:host=127.0.0.1,port=P
//! let trust_anchors = tpm.ca_dir();                   // root-ca.pem + intermediate-ca.pem
//! # Ok::<(), vouch_testkit::TestkitError>(())
//! ```
//!
//! Provisioning (`swtpm_setup`: RSA-2048 and ECC P-384 EKs, their certificates, a platform
//! certificate, PCR banks sha1/sha256/sha384) happens once per process; each
//! [`Swtpm::start`] copies that state into its own temp dir, so tests in threads (cargo test)
//! or processes (nextest) never share a TPM. [`Swtpm::start_fresh`] provisions a new EK.

mod error;
mod provision;
mod swtpm;

pub use error::TestkitError;
pub use swtpm::{Swtpm, ECC_P384_EK_CERT_NV_INDEX, PLATFORM_CERT_NV_INDEX, RSA_EK_CERT_NV_INDEX};

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Instant;

    fn nvread(tpm: &Swtpm, index: u32) -> Vec<u8> {
        let out = Command::new("tpm2_nvread")
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .arg(format!("{index:#x}"))
            .output()
            .expect("run tpm2_nvread");
        assert!(
            out.status.success(),
            "tpm2_nvread {index:#x}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// DER length of a certificate: SEQUENCE header + contents.
    fn der_len(b: &[u8]) -> usize {
        assert_eq!(b[0], 0x30, "not a DER SEQUENCE");
        match b[1] {
            n if n < 0x80 => 2 + n as usize,
            0x81 => 3 + b[2] as usize,
            0x82 => 4 + ((b[2] as usize) << 8 | b[3] as usize),
            other => panic!("unexpected DER length byte {other:#x}"),
        }
    }

    fn openssl_verify(tpm: &Swtpm, der: &[u8]) {
        let cert = tpm.dir().join("cert.der");
        std::fs::write(&cert, der).unwrap();
        let pem = tpm.dir().join("cert.pem");
        let conv = Command::new("openssl")
            .args(["x509", "-inform", "der", "-in"])
            .arg(&cert)
            .arg("-out")
            .arg(&pem)
            .status()
            .unwrap();
        assert!(conv.success());
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(tpm.ca_dir().join("root-ca.pem"))
            .arg("-untrusted")
            .arg(tpm.ca_dir().join("intermediate-ca.pem"))
            .arg(&pem)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn start_reads_ek_certs_that_chain_to_ca_dir() {
        let t = Instant::now();
        let tpm = Swtpm::start().unwrap();
        eprintln!(
            "Swtpm::start (incl. template if first) took {:?}",
            t.elapsed()
        );
        assert!(tpm.tcti().starts_with("swtpm:host=127.0.0.1,port="));

        for index in [RSA_EK_CERT_NV_INDEX, ECC_P384_EK_CERT_NV_INDEX] {
            let nv = nvread(&tpm, index);
            let len = der_len(&nv);
            assert!(
                len <= nv.len() && len > 500,
                "{index:#x}: {len} of {}",
                nv.len()
            );
            openssl_verify(&tpm, &nv[..len]);
        }
        let mut names: Vec<_> = std::fs::read_dir(tpm.ca_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["intermediate-ca.pem", "root-ca.pem"]);
    }

    #[test]
    fn copies_share_the_ek_and_fresh_ones_do_not() {
        let a = Swtpm::start().unwrap();
        let t = Instant::now();
        let b = Swtpm::start().unwrap();
        eprintln!("Swtpm::start (template ready) took {:?}", t.elapsed());
        let t = Instant::now();
        let c = Swtpm::start_fresh().unwrap();
        eprintln!("Swtpm::start_fresh took {:?}", t.elapsed());
        assert_ne!(a.port(), b.port());
        let ek_a = nvread(&a, RSA_EK_CERT_NV_INDEX);
        assert_eq!(ek_a, nvread(&b, RSA_EK_CERT_NV_INDEX));
        let ek_c = nvread(&c, RSA_EK_CERT_NV_INDEX);
        assert_ne!(ek_a, ek_c);
        openssl_verify(&c, &ek_c[..der_len(&ek_c)]);
    }

    #[test]
    fn restart_keeps_state_and_stop_frees_the_port() {
        let mut tpm = Swtpm::start().unwrap();
        let tcti = tpm.tcti();
        let before = nvread(&tpm, PLATFORM_CERT_NV_INDEX);
        tpm.restart().unwrap();
        assert!(tpm.is_running());
        assert_eq!(tpm.tcti(), tcti);
        assert_eq!(before, nvread(&tpm, PLATFORM_CERT_NV_INDEX));
        tpm.stop().unwrap();
        assert!(!tpm.is_running());
        assert!(std::net::TcpStream::connect(("127.0.0.1", tpm.port())).is_err());
        tpm.stop().unwrap();
    }

    #[test]
    fn many_in_parallel() {
        let handles: Vec<_> = (0..6).map(|_| std::thread::spawn(Swtpm::start)).collect();
        let tpms: Vec<Swtpm> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        let mut ports: Vec<u16> = tpms.iter().map(Swtpm::port).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }
}
