//! Little-endian cursor for the event log (the TPM's own structures are big-endian, the log is
//! written by firmware in host order). Errors reuse [`WireError`] so they read like every other
//! parser in this crate: field, absolute byte offset, reason.

use crate::tpm::wire::{WireError, WireReason};

#[derive(Debug, Clone)]
pub(crate) struct LeReader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> LeReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// A reader over `buf` whose first byte is at absolute offset `base`.
    pub(crate) fn at(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn error_at(&self, offset: usize, what: &str, reason: WireReason) -> WireError {
        WireError {
            what: what.to_string(),
            offset,
            reason,
        }
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(self.error_at(
                self.offset(),
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

    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, WireError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length field that must not exceed what is left (nor `max`): read before allocating.
    pub(crate) fn len_u64(
        &mut self,
        what: &str,
        unit: usize,
        max: usize,
    ) -> Result<usize, WireError> {
        let at = self.offset();
        let n = self.u64(what)?;
        let bytes = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .filter(|&b| b <= max)
            .ok_or_else(|| {
                self.error_at(
                    at,
                    what,
                    WireReason::TooLarge {
                        size: usize::try_from(n).unwrap_or(usize::MAX),
                        max: max / unit.max(1),
                    },
                )
            })?;
        if bytes > self.remaining() {
            return Err(self.error_at(
                at,
                what,
                WireReason::Truncated {
                    needed: bytes,
                    available: self.remaining(),
                },
            ));
        }
        Ok(bytes)
    }

    /// Fail if anything is left.
    pub(crate) fn finish(&self, what: &str) -> Result<(), WireError> {
        if self.remaining() != 0 {
            return Err(self.error_at(self.offset(), what, WireReason::Trailing(self.remaining())));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_with_absolute_offsets() {
        let data = [1u8, 0, 2, 0, 0, 0, 9];
        let mut r = LeReader::at(&data, 100);
        assert_eq!(r.u16("a").unwrap(), 1);
        assert_eq!(r.u32("b").unwrap(), 2);
        let e = r.u16("c").unwrap_err();
        assert_eq!((e.what.as_str(), e.offset), ("c", 106));
        assert_eq!(
            e.reason,
            WireReason::Truncated {
                needed: 2,
                available: 1
            }
        );
        assert_eq!(r.finish("s").unwrap_err().reason, WireReason::Trailing(1));
    }

    #[test]
    fn length_fields_are_checked_before_use() {
        let mut data = 3u64.to_le_bytes().to_vec();
        data.extend([0u8; 5]);
        // 3 UTF-16 units = 6 bytes, only 5 left.
        let e = LeReader::new(&data).len_u64("n", 2, 1000).unwrap_err();
        assert_eq!(
            e.reason,
            WireReason::Truncated {
                needed: 6,
                available: 5
            }
        );
        let huge = u64::MAX.to_le_bytes();
        let e = LeReader::new(&huge).len_u64("n", 2, 1000).unwrap_err();
        assert!(matches!(e.reason, WireReason::TooLarge { max: 500, .. }));
        assert_eq!(LeReader::new(&data).len_u64("n", 1, 1000).unwrap(), 3);
    }
}
