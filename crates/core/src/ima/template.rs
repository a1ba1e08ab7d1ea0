//! Template data as the kernel hashes it (security/integrity/ima/ima_template_lib.c and
//! `ima_calc_field_array_hash`; upstream keylime/ima/ast.py `*.struct()` / `Mode.bytes()`):
//!
//! - `ima` (legacy): the raw digest, then the name NUL-padded to 256 bytes; no length fields.
//! - every other template: each field as `u32 little-endian length || bytes`, where
//!   - `d-ng` is `alg ":" NUL digest`,
//!   - `n-ng` is the path followed by a NUL (the NUL is counted),
//!   - `sig` and `buf` are the raw bytes (an absent signature is a zero-length field).
//!
//! The template hash is that data hashed with the log's template-hash algorithm (sha1 in the
//! default `ascii_runtime_measurements`); a PCR bank is extended with the data hashed with the
//! bank's algorithm, except for violation records, which extend all 0xFF.

use super::digest::FileDigest;
use super::entry::{Entry, Event, LEGACY_NAME_MAX};
use crate::tpm::HashAlg;

fn push_field(out: &mut Vec<u8>, data: &[u8]) {
    // Lines are capped far below 4 GiB, so the length always fits.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
}

fn push_digest_ng(out: &mut Vec<u8>, d: &FileDigest) {
    let mut field = Vec::with_capacity(d.alg().len() + 2 + d.bytes().len());
    field.extend_from_slice(d.alg().as_bytes());
    field.push(b':');
    field.push(0);
    field.extend_from_slice(d.bytes());
    push_field(out, &field);
}

fn push_name_ng(out: &mut Vec<u8>, name: &str) {
    let mut field = Vec::with_capacity(name.len() + 1);
    field.extend_from_slice(name.as_bytes());
    field.push(0);
    push_field(out, &field);
}

impl Event {
    /// The template data the kernel hashed for this event.
    pub fn template_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Event::Ima { digest, path } => {
                out.extend_from_slice(digest.bytes());
                let mut name = [0u8; LEGACY_NAME_MAX + 1];
                let n = path.len().min(LEGACY_NAME_MAX);
                name[..n].copy_from_slice(&path.as_bytes()[..n]);
                out.extend_from_slice(&name);
            }
            Event::ImaNg { digest, path } => {
                push_digest_ng(&mut out, digest);
                push_name_ng(&mut out, path);
            }
            Event::ImaSig {
                digest,
                path,
                signature,
            } => {
                push_digest_ng(&mut out, digest);
                push_name_ng(&mut out, path);
                push_field(&mut out, signature);
            }
            Event::ImaBuf { digest, name, data } => {
                push_digest_ng(&mut out, digest);
                push_name_ng(&mut out, name);
                push_field(&mut out, data);
            }
        }
        out
    }
}

/// What one entry extends into PCR 10 of a bank.
pub fn extend_value(entry: &Entry, template_data: &[u8], bank: HashAlg) -> Vec<u8> {
    if entry.is_violation() {
        vec![0xFF; bank.digest_len()]
    } else {
        bank.digest(template_data)
    }
}

/// `PCR_new = H(PCR_old || value)`.
pub fn extend(bank: HashAlg, pcr: &[u8], value: &[u8]) -> Vec<u8> {
    bank.digest_parts(&[pcr, value])
}

impl Entry {
    /// Recompute the template hash from the data with the stated hash's algorithm.
    pub fn computed_template_hash(&self) -> Vec<u8> {
        self.template_hash_alg().digest(&self.event.template_data())
    }

    /// The value this entry extends into PCR 10 of `bank`.
    pub fn extend_value(&self, bank: HashAlg) -> Vec<u8> {
        extend_value(self, &self.event.template_data(), bank)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Lines printed by a real kernel (quoted in keylime's create_runtime_policy tests): their
    /// template hashes are known answers for the ima-ng encoding.
    pub(crate) const KERNEL_LINES: [&str; 3] = [
        "10 0adefe762c149c7cec19da62f0da1297fcfbffff ima-ng sha256:0000000000000000000000000000000000000000000000000000000000000000 boot_aggregate",
        "10 cff3da2ff339a1f07bb0dbcbc0381e794ed09555 ima-ng sha256:3e5e8ad9d8b4dd191413aba6166c7a975c3eab903d1fad77ecfa2d5810d6585c /usr/bin/kmod",
        "10 13d5b414e08a45698ce9e3c66545b25ba694046c ima-ng sha256:f51de8688a2903b94016c06f186cf1f053ececd2a88a5f349f29b35a06e94c43 /usr/lib64/ld-linux-x86-64.so.2",
    ];

    #[test]
    fn kernel_template_hashes_recompute() {
        for line in KERNEL_LINES {
            let e = Entry::parse(line).unwrap();
            assert_eq!(e.computed_template_hash(), e.template_hash, "{line}");
        }
    }

    /// PCR 10 after the kernel lines plus a violation record, as upstream's
    /// `ima.process_measurement_list` computes it (sha1 and sha256 banks).
    #[test]
    fn aggregate_matches_upstream() {
        let mut lines: Vec<String> = KERNEL_LINES.iter().map(|s| s.to_string()).collect();
        lines.push(format!(
            "10 {} ima-ng sha256:{} /tmp/x",
            "00".repeat(20),
            "00".repeat(32)
        ));
        for (bank, expected) in [
            (HashAlg::Sha1, "00e8c32cfcf923b1977ba7b53689cb694e1b2c02"),
            (
                HashAlg::Sha256,
                "0481bc7480cd04a05367eaac1016a93fdde4035c3b77ab0442084e1ee210fcce",
            ),
        ] {
            let mut pcr = vec![0u8; bank.digest_len()];
            for l in &lines {
                pcr = extend(bank, &pcr, &Entry::parse(l).unwrap().extend_value(bank));
            }
            assert_eq!(hex::encode(pcr), expected);
        }
    }

    /// Template hashes of the other templates as upstream's ast.py computes them.
    #[test]
    fn other_templates_match_upstream() {
        let th = "11".repeat(20);
        for (data, sha1, sha256) in [
            (
                format!(
                    "ima-sig sha256:{} /usr/bin/x 030204deadbeef0002abcd",
                    "ab".repeat(32)
                ),
                "8b897d9af250b52d29f65174fc0462a3cfe76834",
                "687fcea6304c20e9885ef7183ec8b293148f8eb668e084c2773f1df16d04da4e",
            ),
            (
                format!(
                    "ima-buf sha256:{} kexec-cmdline 2f626f6f742f766d6c696e757a",
                    "cd".repeat(32)
                ),
                "94003320486929378a30fcec8edc01f36fbf4d4b",
                "9829dc2d0105f9be119ec56987f55b8dc61cfbc2fe24e9bb08eec44a7a05036e",
            ),
            (
                format!("ima {} /init", "ef".repeat(20)),
                "9ca3ac8ba1d01ef813c6944fc579e5b7cb8fb16f",
                "c3e270a92f5c8790c5c074bad66558436df88efea94005640342475205e5e543",
            ),
        ] {
            let e = Entry::parse(&format!("10 {th} {data}")).unwrap();
            assert_eq!(hex::encode(e.extend_value(HashAlg::Sha1)), sha1, "{data}");
            assert_eq!(
                hex::encode(e.extend_value(HashAlg::Sha256)),
                sha256,
                "{data}"
            );
        }
    }

    #[test]
    fn ima_ng_layout() {
        let e = Entry::parse(KERNEL_LINES[0]).unwrap();
        let data = e.event.template_data();
        // d-ng: len(sha256 + ':' + NUL + 32 bytes) = 40
        assert_eq!(&data[..4], &40u32.to_le_bytes());
        assert_eq!(&data[4..12], b"sha256:\0");
        assert_eq!(&data[44..48], &15u32.to_le_bytes());
        assert_eq!(&data[48..], b"boot_aggregate\0");
    }

    #[test]
    fn legacy_ima_layout() {
        let line = format!("10 {} ima {} /init", "11".repeat(20), "ab".repeat(20));
        let e = Entry::parse(&line).unwrap();
        let data = e.event.template_data();
        assert_eq!(data.len(), 20 + 256);
        assert_eq!(&data[20..25], b"/init");
        assert!(data[25..].iter().all(|&b| b == 0));
    }

    #[test]
    fn sig_and_buf_layout() {
        let d = format!("sha1:{}", "cd".repeat(20));
        let e = Entry::parse(&format!("10 {} ima-sig {d} /a ", "11".repeat(20))).unwrap();
        let data = e.event.template_data();
        assert_eq!(&data[data.len() - 4..], &[0, 0, 0, 0]);
        let e = Entry::parse(&format!("10 {} ima-buf {d} n 0102", "11".repeat(20))).unwrap();
        let data = e.event.template_data();
        assert_eq!(&data[data.len() - 6..], &[2, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn violations_extend_ff() {
        let line = format!(
            "10 {} ima-ng sha256:{} /tmp/x",
            "00".repeat(20),
            "00".repeat(32)
        );
        let e = Entry::parse(&line).unwrap();
        assert_eq!(e.extend_value(HashAlg::Sha256), vec![0xFF; 32]);
        assert_eq!(e.extend_value(HashAlg::Sha1), vec![0xFF; 20]);
    }
}
