//! Big-endian TPM wire encoding with errors that name the field and the byte offset.
//!
//! Every parser in this crate reads through [`Reader`], so a malformed structure is always
//! reported as "what was being read, where, and why" rather than as a bare length error.

use thiserror::Error;

/// A structure could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what} at offset {offset}: {reason}")]
pub struct WireError {
    /// Dotted path of the field being read, e.g. `TPMS_ATTEST.extraData`.
    pub what: String,
    /// Byte offset in the outermost buffer where the problem was found.
    pub offset: usize,
    pub reason: WireReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireReason {
    #[error("truncated: needs {needed} bytes, {available} left")]
    Truncated { needed: usize, available: usize },
    #[error("{0} trailing bytes after the structure")]
    Trailing(usize),
    #[error("size {size} exceeds the maximum {max}")]
    TooLarge { size: usize, max: usize },
    #[error("unknown value 0x{0:x}")]
    Unknown(u32),
    #[error("{0}")]
    Invalid(String),
}

/// Cursor over a byte slice. `base` is the offset of `buf[0]` in the outermost buffer, so
/// nested readers report absolute offsets.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Build an error located at the current position.
    pub fn error(&self, what: &str, reason: WireReason) -> WireError {
        WireError {
            what: what.to_string(),
            offset: self.offset(),
            reason,
        }
    }

    pub fn error_at(&self, offset: usize, what: &str, reason: WireReason) -> WireError {
        WireError {
            what: what.to_string(),
            offset,
            reason,
        }
    }

    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(self.error(
                what,
                WireReason::Truncated {
                    needed: n,
                    available: self.remaining(),
                },
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, WireError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, WireError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A TPM2B: u16 size followed by that many bytes, at most `max`.
    pub fn sized(&mut self, max: usize, what: &str) -> Result<&'a [u8], WireError> {
        let at = self.offset();
        let size = self.u16(what)? as usize;
        if size > max {
            return Err(self.error_at(at, what, WireReason::TooLarge { size, max }));
        }
        self.bytes(size, what)
    }

    /// A TPM2B whose contents are themselves a structure: returns a nested reader that
    /// reports absolute offsets.
    pub fn sized_reader(&mut self, max: usize, what: &str) -> Result<Reader<'a>, WireError> {
        let start = self.offset() + 2;
        let body = self.sized(max, what)?;
        Ok(Reader {
            buf: body,
            pos: 0,
            base: start,
        })
    }

    /// Fail if anything is left: TPM structures are parsed strictly.
    pub fn finish(&self, what: &str) -> Result<(), WireError> {
        if self.remaining() != 0 {
            return Err(self.error(what, WireReason::Trailing(self.remaining())));
        }
        Ok(())
    }
}

/// Big-endian writer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A TPM2B. Callers keep contents within the u16 range; longer input is truncated to the
    /// size field's range by construction of the types that call this.
    pub fn sized(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.buf.extend_from_slice(&v[..len as usize]);
        self
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_reader_reports_absolute_offsets() {
        let data = [0u8, 0, 0, 3, 1, 2, 3];
        let mut r = Reader::new(&data);
        r.u16("pad").unwrap();
        let mut inner = r.sized_reader(10, "outer").unwrap();
        let err = inner.u32("inner.field").unwrap_err();
        assert_eq!(err.offset, 4);
        assert_eq!(err.what, "inner.field");
        assert!(matches!(
            err.reason,
            WireReason::Truncated {
                needed: 4,
                available: 3
            }
        ));
    }

    #[test]
    fn sized_rejects_oversize_and_finish_rejects_trailing() {
        let data = [0u8, 9, 0];
        let err = Reader::new(&data).sized(4, "x").unwrap_err();
        assert_eq!(err.reason, WireReason::TooLarge { size: 9, max: 4 });
        let mut r = Reader::new(&data);
        r.u8("a").unwrap();
        assert_eq!(r.finish("s").unwrap_err().reason, WireReason::Trailing(2));
    }
}
