//! JSON written the way Python's `json.dumps` writes it by default (`", "` and `": "`
//! separators, non-ASCII escaped as `\uXXXX`), so a policy Vouch creates is byte-for-byte what
//! upstream's `keylime_policy create runtime` would write for the same content and key order,
//! and a revocation message is the text upstream's `prepare_error` signs.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};
use std::io;

struct PythonFormatter;

/// Python's default item separator, `", "`, before every item but the first.
fn item_separator<W: ?Sized + io::Write>(w: &mut W, first: bool) -> io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        item_separator(w, first)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        item_separator(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                let mut buf = [0u8; 1];
                w.write_all(c.encode_utf8(&mut buf).as_bytes())?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        // Python spells control characters the same way serde_json does, with lowercase hex.
        let s: String = match escape {
            CharEscape::Quote => "\\\"".into(),
            CharEscape::ReverseSolidus => "\\\\".into(),
            CharEscape::Solidus => "/".into(),
            CharEscape::Backspace => "\\b".into(),
            CharEscape::FormFeed => "\\f".into(),
            CharEscape::LineFeed => "\\n".into(),
            CharEscape::CarriageReturn => "\\r".into(),
            CharEscape::Tab => "\\t".into(),
            CharEscape::AsciiControl(b) => format!("\\u{b:04x}"),
        };
        w.write_all(s.as_bytes())
    }
}

/// Serialize with Python's default `json.dumps` layout.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    // Serializing plain data into a Vec cannot fail; an empty string would only hide a bug in
    // a custom Serialize impl, which the tests exercise.
    if value.serialize(&mut ser).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn python_layout() {
        let v = serde_json::json!({"a": [1, 2, {}], "b": "é\u{1F600}\n\u{1}", "c": []});
        assert_eq!(
            to_string(&v),
            "{\"a\": [1, 2, {}], \"b\": \"\\u00e9\\ud83d\\ude00\\n\\u0001\", \"c\": []}"
        );
    }
}
