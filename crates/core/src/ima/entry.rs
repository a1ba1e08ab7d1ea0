//! Parsing `ascii_runtime_measurements` lines (upstream: keylime/ima/ast.py `Entry` and the
//! `Ima`/`ImaNg`/`ImaSig`/`ImaBuf` modes).
//!
//! A line is `PCR TEMPLATE-HASH TEMPLATE-NAME TEMPLATE-DATA...`, fields separated by single
//! spaces. The number of splits follows upstream exactly: the path of `ima`/`ima-ng` is the
//! rest of the line (it may contain spaces), `ima-sig`/`ima-buf` split into exactly three
//! template fields (the kernel escapes spaces in `n-ng`, and keeps the separator before an
//! empty last field).

use super::digest::{decode_hex, FileDigest};
use super::error::{LogField, LogProblem, ParseError};
use crate::tpm::HashAlg;
use std::fmt;

/// Longest line accepted. The largest real entries are `ima-buf` keyring measurements (an
/// X.509 certificate in hex) and `ima-sig` lines of RSA-4096 signatures, both far below this.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// The PCR IMA extends (keylime `config.IMA_PCR`).
pub const IMA_PCR: u32 = 10;

/// Longest name the legacy `ima` template can carry (`TCG_EVENT_NAME_LEN_MAX`).
pub const LEGACY_NAME_MAX: usize = 255;

/// The templates keylime 7.14 understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Ima,
    ImaNg,
    ImaSig,
    ImaBuf,
}

impl Template {
    pub fn name(self) -> &'static str {
        match self {
            Template::Ima => "ima",
            Template::ImaNg => "ima-ng",
            Template::ImaSig => "ima-sig",
            Template::ImaBuf => "ima-buf",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [
            Template::Ima,
            Template::ImaNg,
            Template::ImaSig,
            Template::ImaBuf,
        ]
        .into_iter()
        .find(|t| t.name() == s)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The template data of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Legacy `ima`: fixed-size digest and name.
    Ima { digest: FileDigest, path: String },
    /// `ima-ng`: `d-ng|n-ng`.
    ImaNg { digest: FileDigest, path: String },
    /// `ima-sig`: `d-ng|n-ng|sig`; an empty signature is allowed.
    ImaSig {
        digest: FileDigest,
        path: String,
        signature: Vec<u8>,
    },
    /// `ima-buf`: `d-ng|n-ng|buf`; the name is a keyring or critical-data label.
    ImaBuf {
        digest: FileDigest,
        name: String,
        data: Vec<u8>,
    },
}

impl Event {
    pub fn template(&self) -> Template {
        match self {
            Event::Ima { .. } => Template::Ima,
            Event::ImaNg { .. } => Template::ImaNg,
            Event::ImaSig { .. } => Template::ImaSig,
            Event::ImaBuf { .. } => Template::ImaBuf,
        }
    }

    /// The file path, or the buffer name of `ima-buf`.
    pub fn path(&self) -> &str {
        match self {
            Event::Ima { path, .. } | Event::ImaNg { path, .. } | Event::ImaSig { path, .. } => {
                path
            }
            Event::ImaBuf { name, .. } => name,
        }
    }

    pub fn digest(&self) -> &FileDigest {
        match self {
            Event::Ima { digest, .. }
            | Event::ImaNg { digest, .. }
            | Event::ImaSig { digest, .. }
            | Event::ImaBuf { digest, .. } => digest,
        }
    }
}

/// One measurement: the PCR, the template hash as the log states it, and the template data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub pcr: u32,
    /// The stated template hash; its algorithm follows from its length.
    pub template_hash: Vec<u8>,
    pub event: Event,
}

impl Entry {
    /// Parse one line (without its newline). Errors carry the field, not the position; see
    /// `parse_log` for positioned errors.
    pub fn parse(line: &str) -> Result<Self, (LogField, LogProblem)> {
        if line.len() > MAX_LINE_LEN {
            return Err((
                LogField::Line,
                LogProblem::TooLong {
                    len: line.len(),
                    max: MAX_LINE_LEN,
                },
            ));
        }
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        let missing = |got: usize| LogProblem::Missing {
            template: "measurement",
            expected: 4,
            got,
        };
        let field_missing = [
            LogField::Pcr,
            LogField::TemplateHash,
            LogField::TemplateName,
            LogField::FileDigest,
        ];
        if fields.len() < 4 {
            return Err((field_missing[fields.len()], missing(fields.len())));
        }
        let pcr = parse_pcr(fields[0]).map_err(|p| (LogField::Pcr, p))?;
        let template_hash = decode_hex(fields[1]).map_err(|p| (LogField::TemplateHash, p))?;
        if template_hash_alg(&template_hash).is_none() {
            return Err((
                LogField::TemplateHash,
                LogProblem::TemplateHashLength {
                    len: template_hash.len(),
                },
            ));
        }
        let template = Template::from_name(fields[2]).ok_or_else(|| {
            (
                LogField::TemplateName,
                LogProblem::UnknownTemplate(fields[2].to_string()),
            )
        })?;
        let event = parse_event(template, fields[3])?;
        Ok(Self {
            pcr,
            template_hash,
            event,
        })
    }

    /// The algorithm of the stated template hash (by its length).
    pub fn template_hash_alg(&self) -> HashAlg {
        template_hash_alg(&self.template_hash).unwrap_or(HashAlg::Sha1)
    }

    /// An IMA violation record (ToMToU / open-writers): the kernel logs an all-zero template
    /// hash and extends every bank with all 0xFF bytes.
    pub fn is_violation(&self) -> bool {
        self.template_hash.iter().all(|&b| b == 0)
    }
}

/// The line as `ascii_runtime_measurements` prints it (without the newline).
impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ",
            self.pcr,
            hex::encode(&self.template_hash),
            self.event.template()
        )?;
        match &self.event {
            Event::Ima { digest, path } => write!(f, "{} {path}", digest.hex()),
            Event::ImaNg { digest, path } => write!(f, "{digest} {path}"),
            Event::ImaSig {
                digest,
                path,
                signature,
            } => write!(f, "{digest} {path} {}", hex::encode(signature)),
            Event::ImaBuf { digest, name, data } => {
                write!(f, "{digest} {name} {}", hex::encode(data))
            }
        }
    }
}

/// Template hash algorithm by length.
pub fn template_hash_alg(hash: &[u8]) -> Option<HashAlg> {
    HashAlg::ALL
        .into_iter()
        .find(|a| a.digest_len() == hash.len())
}

fn parse_pcr(s: &str) -> Result<u32, LogProblem> {
    // Canonical decimal only: upstream compares the field to the string "10".
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(LogProblem::NotDecimal(s.to_string()));
    }
    s.parse().map_err(|_| LogProblem::NotDecimal(s.to_string()))
}

fn parse_event(template: Template, data: &str) -> Result<Event, (LogField, LogProblem)> {
    let name = template.name();
    match template {
        Template::Ima | Template::ImaNg => {
            let mut it = data.splitn(2, ' ');
            let digest = it.next().unwrap_or_default();
            let path = it.next().ok_or((
                LogField::Path,
                LogProblem::Missing {
                    template: name,
                    expected: 5,
                    got: 4,
                },
            ))?;
            let digest = FileDigest::parse(digest).map_err(|p| (LogField::FileDigest, p))?;
            if template == Template::Ima {
                if path.len() > LEGACY_NAME_MAX {
                    return Err((
                        LogField::Path,
                        LogProblem::LegacyNameTooLong { len: path.len() },
                    ));
                }
                Ok(Event::Ima {
                    digest,
                    path: path.to_string(),
                })
            } else {
                Ok(Event::ImaNg {
                    digest,
                    path: path.to_string(),
                })
            }
        }
        Template::ImaSig | Template::ImaBuf => {
            let parts: Vec<&str> = data.splitn(3, ' ').collect();
            if parts.len() < 3 {
                let field = if parts.len() == 1 {
                    LogField::Path
                } else if template == Template::ImaSig {
                    LogField::Signature
                } else {
                    LogField::Buffer
                };
                return Err((
                    field,
                    LogProblem::Missing {
                        template: name,
                        expected: 6,
                        got: 3 + parts.len(),
                    },
                ));
            }
            let digest = FileDigest::parse(parts[0]).map_err(|p| (LogField::FileDigest, p))?;
            let path = parts[1].to_string();
            if template == Template::ImaSig {
                let signature = decode_hex(parts[2]).map_err(|p| (LogField::Signature, p))?;
                Ok(Event::ImaSig {
                    digest,
                    path,
                    signature,
                })
            } else {
                if path.is_empty() {
                    return Err((LogField::BufferName, LogProblem::Empty));
                }
                let data = decode_hex(parts[2]).map_err(|p| (LogField::Buffer, p))?;
                Ok(Event::ImaBuf {
                    digest,
                    name: path,
                    data,
                })
            }
        }
    }
}

/// One parsed line with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Absolute index in the kernel's measurement list.
    pub index: u64,
    /// 1-based line number within the parsed text.
    pub line: usize,
    pub entry: Entry,
}

/// Parse log text whose first line is entry `first_entry`. Empty lines are skipped (upstream
/// does the same); the text may or may not end with a newline.
pub fn parse_log(text: &str, first_entry: u64) -> Result<Vec<LogEntry>, ParseError> {
    let mut out = Vec::new();
    let mut index = first_entry;
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry = Entry::parse(line).map_err(|(field, problem)| ParseError {
            line: i + 1,
            entry: index,
            field,
            problem,
        })?;
        out.push(LogEntry {
            index,
            line: i + 1,
            entry,
        });
        index += 1;
    }
    Ok(out)
}

/// Agent side: the part of the log starting at entry `nth`, as the keylime agent serves
/// `ima_ml_entry=nth`. Returns the index actually served: `nth` when
/// `nth <= number of complete lines` (equal means "nothing new yet", an empty slice), else 0
/// and the whole log (rust-keylime's `MeasurementList::read`).
pub fn slice_from_entry(text: &str, nth: u64) -> (u64, &str) {
    let mut offset = 0usize;
    let mut count = 0u64;
    loop {
        if count == nth {
            return (nth, &text[offset..]);
        }
        match text[offset..].find('\n') {
            Some(i) => {
                offset += i + 1;
                count += 1;
            }
            None => return (0, text),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SHA1_ZERO: &str = "0000000000000000000000000000000000000000";
    const TH: &str = "b1c6f5e7a2d3c4b5a6978877665544332211ffee";
    const SHA256_D: &str =
        "sha256:f1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00";

    fn err(line: &str) -> (LogField, LogProblem) {
        Entry::parse(line).unwrap_err()
    }

    #[test]
    fn parses_every_template() {
        let e = Entry::parse(&format!("10 {TH} ima-ng {SHA256_D} /usr/bin/my file")).unwrap();
        assert_eq!(e.pcr, 10);
        assert_eq!(e.event.template(), Template::ImaNg);
        assert_eq!(e.event.path(), "/usr/bin/my file");
        assert_eq!(e.event.digest().alg(), "sha256");
        assert_eq!(e.template_hash_alg(), HashAlg::Sha1);

        let e = Entry::parse(&format!("10 {TH} ima {} /bin/x", "ab".repeat(20))).unwrap();
        assert!(matches!(e.event, Event::Ima { .. }));
        assert_eq!(e.event.digest().alg(), "sha1");

        let e = Entry::parse(&format!("10 {TH} ima-sig {SHA256_D} /bin/x ")).unwrap();
        assert!(matches!(&e.event, Event::ImaSig { signature, .. } if signature.is_empty()));
        let e = Entry::parse(&format!(
            "10 {TH} ima-sig {SHA256_D} /bin/x 030204aabbccdd0001ff"
        ))
        .unwrap();
        assert!(matches!(&e.event, Event::ImaSig { signature, .. } if signature.len() == 10));

        let e = Entry::parse(&format!("10 {TH} ima-buf {SHA256_D} kexec-cmdline 6869")).unwrap();
        assert!(
            matches!(&e.event, Event::ImaBuf { name, data, .. } if name == "kexec-cmdline" && data == b"hi")
        );

        let th256 = "ab".repeat(32);
        let e = Entry::parse(&format!("10 {th256} ima-ng {SHA256_D} /x")).unwrap();
        assert_eq!(e.template_hash_alg(), HashAlg::Sha256);

        let e = Entry::parse(&format!("10 {SHA1_ZERO} ima-ng {SHA256_D} /x")).unwrap();
        assert!(e.is_violation());
    }

    #[test]
    fn display_round_trips() {
        for line in [
            format!("10 {TH} ima-ng {SHA256_D} /usr/bin/my file"),
            format!("10 {TH} ima {} /bin/x", "ab".repeat(20)),
            format!("10 {TH} ima-sig {SHA256_D} /bin/x "),
            format!("10 {TH} ima-sig {SHA256_D} /bin/x 030204aabbccdd0001ff"),
            format!("10 {TH} ima-buf {SHA256_D} kexec-cmdline 6869"),
        ] {
            assert_eq!(Entry::parse(&line).unwrap().to_string(), line);
        }
    }

    #[test]
    fn every_parser_error_names_its_field() {
        let long = format!("10 {TH} ima-ng {SHA256_D} /{}", "a".repeat(MAX_LINE_LEN));
        assert!(matches!(
            err(&long),
            (LogField::Line, LogProblem::TooLong { .. })
        ));
        assert_eq!(err("10").0, LogField::TemplateHash);
        assert_eq!(err(&format!("10 {TH}")).0, LogField::TemplateName);
        assert_eq!(err(&format!("10 {TH} ima-ng")).0, LogField::FileDigest);
        assert!(matches!(
            err(&format!("x {TH} ima-ng {SHA256_D} /a")),
            (LogField::Pcr, LogProblem::NotDecimal(_))
        ));
        assert!(matches!(
            err(&format!("010 {TH} ima-ng {SHA256_D} /a")),
            (LogField::Pcr, LogProblem::NotDecimal(_))
        ));
        assert!(matches!(
            err(&format!("10 zz{} ima-ng {SHA256_D} /a", &TH[2..])),
            (LogField::TemplateHash, LogProblem::NotHex(_))
        ));
        assert!(matches!(
            err(&format!("10 abcd ima-ng {SHA256_D} /a")),
            (
                LogField::TemplateHash,
                LogProblem::TemplateHashLength { len: 2 }
            )
        ));
        assert!(
            matches!(err(&format!("10 {TH} ima-modsig {SHA256_D} /a")), (LogField::TemplateName, LogProblem::UnknownTemplate(t)) if t == "ima-modsig")
        );
        assert!(matches!(
            err(&format!("10 {TH} ima-ng {SHA256_D}")),
            (LogField::Path, LogProblem::Missing { .. })
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-ng sha256:abc /a")),
            (LogField::FileDigest, LogProblem::NotHex(_))
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-ng sha256:abcd /a")),
            (LogField::FileDigest, LogProblem::DigestLength { .. })
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-ng SHA256:abcd /a")),
            (LogField::FileDigest, LogProblem::BadAlgorithm(_))
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-ng a:b:c /a")),
            (LogField::FileDigest, LogProblem::ExtraColon(_))
        ));
        assert!(matches!(
            err(&format!(
                "10 {TH} ima {} /{}",
                "ab".repeat(20),
                "a".repeat(255)
            )),
            (LogField::Path, LogProblem::LegacyNameTooLong { len: 256 })
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-sig {SHA256_D} /a")),
            (LogField::Signature, LogProblem::Missing { .. })
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-sig {SHA256_D}")),
            (LogField::Path, LogProblem::Missing { .. })
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-sig {SHA256_D} /a 0x12")),
            (LogField::Signature, LogProblem::NotHex(_))
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-buf {SHA256_D} name")),
            (LogField::Buffer, LogProblem::Missing { .. })
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-buf {SHA256_D}  00")),
            (LogField::BufferName, LogProblem::Empty)
        ));
        assert!(matches!(
            err(&format!("10 {TH} ima-buf {SHA256_D} n 0g")),
            (LogField::Buffer, LogProblem::NotHex(_))
        ));
    }

    #[test]
    fn parse_log_positions_errors() {
        let good = format!("10 {TH} ima-ng {SHA256_D} /a");
        let text = format!("{good}\n\n{good}\n10 {TH} bogus x y\n");
        let e = parse_log(&text, 7).unwrap_err();
        assert_eq!((e.line, e.entry, e.field), (4, 9, LogField::TemplateName));
        let msg = e.to_string();
        assert!(
            msg.contains("line 4") && msg.contains("entry 9") && msg.contains("template name"),
            "{msg}"
        );
        let ok = parse_log(&format!("{good}\n{good}"), 3).unwrap();
        assert_eq!(
            ok.iter().map(|e| (e.index, e.line)).collect::<Vec<_>>(),
            vec![(3, 1), (4, 2)]
        );
    }

    #[test]
    fn slicing_follows_the_agent() {
        let text = "a\nb\nc\n";
        assert_eq!(slice_from_entry(text, 0), (0, text));
        assert_eq!(slice_from_entry(text, 2), (2, "c\n"));
        assert_eq!(slice_from_entry(text, 3), (3, ""));
        assert_eq!(slice_from_entry(text, 4), (0, text));
    }
}
