//! Building IMA logs the way the kernel writes them, for tests that extend a real (software)
//! TPM: every call appends one well-formed line and returns the value the kernel would extend
//! into PCR 10 for a bank, so a test can `TPM2_PCR_Extend` exactly that and then quote.
//!
//! ```
//! use vouch_core::ima::testlog::LogWriter;
//! use vouch_core::tpm::HashAlg;
//!
//! let mut log = LogWriter::new();
//! log.boot_aggregate(&[0u8; 32]);
//! let ls = log.file("/usr/bin/ls", b"ELF...");
//! let extend_sha256 = ls.extend_value(HashAlg::Sha256); // what to PCR_Extend into PCR 10
//! assert_eq!(extend_sha256.len(), 32);
//! let pcr10 = log.pcr10(HashAlg::Sha256); // PCR 10 after all entries
//! assert_eq!(pcr10.len(), 32);
//! let text = log.text(); // what the agent serves
//! assert_eq!(text.lines().count(), 2);
//! ```

use super::digest::FileDigest;
use super::entry::{Entry, Event, IMA_PCR};
use super::template::extend;
use crate::tpm::HashAlg;

/// One appended line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The line without its newline.
    pub line: String,
    pub entry: Entry,
}

impl Logged {
    /// What the kernel extends into PCR 10 of `bank` for this entry.
    pub fn extend_value(&self, bank: HashAlg) -> Vec<u8> {
        self.entry.extend_value(bank)
    }

    /// The file digest in lowercase hex, as a runtime policy lists it.
    pub fn digest_hex(&self) -> String {
        self.entry.event.digest().hex()
    }
}

/// Appends kernel-format lines; `sha1` template hashes (the default
/// `ascii_runtime_measurements`) and `sha256` file digests unless told otherwise.
#[derive(Debug, Clone)]
pub struct LogWriter {
    template_hash_alg: HashAlg,
    file_hash_alg: HashAlg,
    entries: Vec<Logged>,
}

impl Default for LogWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl LogWriter {
    pub fn new() -> Self {
        Self::with_algorithms(HashAlg::Sha1, HashAlg::Sha256)
    }

    pub fn with_algorithms(template_hash_alg: HashAlg, file_hash_alg: HashAlg) -> Self {
        Self {
            template_hash_alg,
            file_hash_alg,
            entries: Vec::new(),
        }
    }

    /// Append an event with a correct template hash.
    pub fn push(&mut self, event: Event) -> Logged {
        let template_hash = self.template_hash_alg.digest(&event.template_data());
        self.push_entry(Entry {
            pcr: IMA_PCR,
            template_hash,
            event,
        })
    }

    /// Append an entry exactly as given (it may be deliberately wrong).
    pub fn push_entry(&mut self, entry: Entry) -> Logged {
        let logged = Logged {
            line: entry.to_string(),
            entry,
        };
        self.entries.push(logged.clone());
        logged
    }

    fn file_digest(&self, content: &[u8]) -> FileDigest {
        FileDigest::new(
            self.file_hash_alg.name(),
            self.file_hash_alg.digest(content),
        )
    }

    /// The first entry of every log: `boot_aggregate`, an ima-ng entry whose digest is the
    /// hash of PCRs 0-7 (or 0-9).
    pub fn boot_aggregate(&mut self, aggregate: &[u8]) -> Logged {
        let alg = HashAlg::ALL
            .into_iter()
            .find(|a| a.digest_len() == aggregate.len())
            .unwrap_or(self.file_hash_alg);
        self.push(Event::ImaNg {
            digest: FileDigest::new(alg.name(), aggregate.to_vec()),
            path: "boot_aggregate".into(),
        })
    }

    /// An `ima-ng` measurement of a file with this content.
    pub fn file(&mut self, path: &str, content: &[u8]) -> Logged {
        let digest = self.file_digest(content);
        self.push(Event::ImaNg {
            digest,
            path: path.into(),
        })
    }

    /// An `ima-sig` measurement; `signature` is the whole xattr (see
    /// `signature::signature_v2`), empty for an unsigned file.
    pub fn signed_file(&mut self, path: &str, content: &[u8], signature: &[u8]) -> Logged {
        let digest = self.file_digest(content);
        self.push(Event::ImaSig {
            digest,
            path: path.into(),
            signature: signature.to_vec(),
        })
    }

    /// An `ima-buf` measurement (a key added to keyring `name`, or critical data).
    pub fn buffer(&mut self, name: &str, data: &[u8]) -> Logged {
        let digest = self.file_digest(data);
        self.push(Event::ImaBuf {
            digest,
            name: name.into(),
            data: data.to_vec(),
        })
    }

    /// A violation record (ToMToU / open-writers): zero digest, zero template hash.
    pub fn violation(&mut self, path: &str) -> Logged {
        let digest = FileDigest::new(
            self.file_hash_alg.name(),
            vec![0; self.file_hash_alg.digest_len()],
        );
        self.push_entry(Entry {
            pcr: IMA_PCR,
            template_hash: vec![0; self.template_hash_alg.digest_len()],
            event: Event::ImaNg {
                digest,
                path: path.into(),
            },
        })
    }

    pub fn entries(&self) -> &[Logged] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The whole log, one line per entry, each ending in a newline.
    pub fn text(&self) -> String {
        self.text_range(0, self.entries.len())
    }

    /// Entries `from..` as the agent serves `ima_ml_entry=from`.
    pub fn text_from(&self, from: usize) -> String {
        self.text_range(from, self.entries.len())
    }

    /// Entries `from..to`.
    pub fn text_range(&self, from: usize, to: usize) -> String {
        let to = to.min(self.entries.len());
        let from = from.min(to);
        self.entries[from..to]
            .iter()
            .map(|e| format!("{}\n", e.line))
            .collect()
    }

    /// PCR 10 of `bank` after every entry (from a PCR of zeros).
    pub fn pcr10(&self, bank: HashAlg) -> Vec<u8> {
        self.pcr10_after(self.entries.len(), bank)
    }

    /// PCR 10 of `bank` after the first `n` entries.
    pub fn pcr10_after(&self, n: usize, bank: HashAlg) -> Vec<u8> {
        self.entries
            .iter()
            .take(n)
            .fold(vec![0; bank.digest_len()], |pcr, e| {
                extend(bank, &pcr, &e.extend_value(bank))
            })
    }
}
