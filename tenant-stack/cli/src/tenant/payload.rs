//! The payload the tenant delivers with U, in upstream's formats (`tenant.py:Tenant.init_add`):
//! a file is sent as its bytes (`-f FILE`); a directory becomes a zip of its top-level regular
//! files, stored uncompressed under their base names (what `--include DIR` adds to the
//! `--cert` package: `next(os.walk(dir))[2]`, `zf.writestr(basename, data)`, `ZIP_STORED`).
//! The agent unzips it and runs `autorun.sh` if present (rust-keylime `payloads.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PayloadError {
    #[error("payload {}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("payload directory {}: building the zip: {cause}", path.display())]
    Zip {
        path: PathBuf,
        cause: zip::result::ZipError,
    },
    #[error("payload directory {} has no regular files at its top level", path.display())]
    EmptyDir { path: PathBuf },
}

/// Payload plaintext, ready to encrypt under K.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub bytes: Vec<u8>,
    /// What it is, for progress lines: `file x (12 bytes)` / `zip of 3 files from dir/`.
    pub description: String,
}

impl Payload {
    pub fn from_path(path: &Path) -> Result<Payload, PayloadError> {
        let io = |cause| PayloadError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Self::zip_dir(path);
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Ok(Payload {
            description: format!("file {} ({} bytes)", path.display(), bytes.len()),
            bytes,
        })
    }

    fn zip_dir(dir: &Path) -> Result<Payload, PayloadError> {
        let io = |cause| PayloadError::Io {
            path: dir.to_path_buf(),
            cause,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            // os.walk's file list: follows symlinks to files, skips directories.
            let meta = std::fs::metadata(entry.path()).map_err(io)?;
            if meta.is_file() {
                files.push(entry.path());
            }
        }
        if files.is_empty() {
            return Err(PayloadError::EmptyDir {
                path: dir.to_path_buf(),
            });
        }
        files.sort();
        let zerr = |cause| PayloadError::Zip {
            path: dir.to_path_buf(),
            cause,
        };
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let mut names = Vec::new();
        for f in &files {
            let data = std::fs::read(f).map_err(|cause| PayloadError::Io {
                path: f.clone(),
                cause,
            })?;
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // writestr keeps no Unix mode; the agent runs autorun.sh with `sh`, not exec.
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            zip.start_file(name.as_str(), options).map_err(zerr)?;
            zip.write_all(&data).map_err(|cause| PayloadError::Io {
                path: f.clone(),
                cause,
            })?;
            names.push(name);
        }
        let bytes = zip.finish().map_err(zerr)?.into_inner();
        Ok(Payload {
            description: format!(
                "zip of {} file(s) from {} ({} bytes): {}",
                names.len(),
                dir.display(),
                bytes.len(),
                names.join(", ")
            ),
            bytes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn file_is_sent_as_is_and_dir_is_a_flat_stored_zip() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("autorun.sh"), "echo hi\n").unwrap();
        std::fs::write(d.path().join("data.txt"), "secret").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/ignored"), "x").unwrap();

        let f = Payload::from_path(&d.path().join("data.txt")).unwrap();
        assert_eq!(f.bytes, b"secret");

        let z = Payload::from_path(d.path()).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(z.bytes)).unwrap();
        let names: Vec<_> = archive.file_names().map(str::to_owned).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let mut s = String::new();
        let mut entry = archive.by_name("autorun.sh").unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        entry.read_to_string(&mut s).unwrap();
        assert_eq!(s, "echo hi\n");

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Payload::from_path(empty.path()),
            Err(PayloadError::EmptyDir { .. })
        ));
    }
}
