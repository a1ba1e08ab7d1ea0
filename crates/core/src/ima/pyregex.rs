//! Runtime-policy `excludes` are Python `re` patterns. Upstream joins them as
//! `"(" + ")|(".join(excludes) + ")"` and tests each path with `re.match`, i.e. anchored at the
//! start only (keylime/common/validators.py `valid_exclude_list`, keylime/ima/ima.py
//! `_validate_ima_ng`). This module rewrites that Python syntax into the `regex` crate's
//! syntax where the two differ only in spelling, and rejects, with a message saying why, what
//! the `regex` crate cannot express or would read differently:
//!
//! - rewritten: `\Z` → `\z`; `{,n}` → `{0,n}`; a `{` or `}` that is not a quantifier is a
//!   literal in Python → escaped; `\<` `\>` are literals in Python (word boundaries in Rust);
//!   inside a class `[` `&` `~` are literals in Python (nesting / set operators in Rust) →
//!   escaped; `[\b]` is a backspace in Python → `\x08`; `(?#...)` comments are dropped.
//! - rejected: look-ahead/behind, back-references (`\1`, `(?P=n)`), octal escapes, atomic
//!   groups, possessive quantifiers, conditionals, `\N{...}`, the `a`/`L` flags, global inline
//!   flags (Python refuses them inside keylime's wrapping group anyway), `--` inside a class,
//!   and escapes Python does not know (`\p`, `\z`, ...).

use regex::{Regex, RegexBuilder};

/// Compiled size limit: exclude lists of a few thousand patterns stay well inside it.
const SIZE_LIMIT: usize = 256 << 20;

/// Compile an exclude list the way upstream does; `None` for an empty list. The error names
/// the first pattern that cannot be used, with the reason.
pub fn compile_excludes(excludes: &[String]) -> Result<Option<Regex>, (String, String)> {
    if excludes.is_empty() {
        return Ok(None);
    }
    for p in excludes {
        let rust = translate(p).map_err(|why| (p.clone(), why))?;
        build(&rust).map_err(|why| (p.clone(), why))?;
    }
    let combined = format!("({})", excludes.join(")|("));
    let rust = translate(&combined).map_err(|why| (combined.clone(), why))?;
    build(&rust).map(Some).map_err(|why| (combined, why))
}

fn build(translated: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{translated})"))
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let msg = e.to_string();
            let last = msg.lines().last().unwrap_or("").trim();
            let last = last.strip_prefix("error: ").unwrap_or(last);
            format!("not a valid regular expression: {last}")
        })
}

fn unsupported(what: &str) -> String {
    format!("{what} are not supported by Vouch's regex engine (Rust `regex` crate)")
}

/// Rewrite one Python pattern into `regex` crate syntax (see the module docs).
pub fn translate(py: &str) -> Result<String, String> {
    let chars: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let (text, used) = escape_outside(&chars, i)?;
                out.push_str(&text);
                i += used;
            }
            '[' => {
                let (text, used) = class(&chars, i)?;
                out.push_str(&text);
                i += used;
            }
            '(' => {
                let (text, used) = group_open(&chars, i)?;
                out.push_str(&text);
                i += used;
            }
            '*' | '+' | '?' => {
                out.push(c);
                i += 1;
                i = after_quantifier(&chars, i, &mut out)?;
            }
            '{' => match counted(&chars, i) {
                Some((text, used)) => {
                    out.push_str(&text);
                    i = after_quantifier(&chars, i + used, &mut out)?;
                }
                None => {
                    out.push_str("\\{");
                    i += 1;
                }
            },
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// After a quantifier: keep a lazy `?`, reject a possessive `+`.
fn after_quantifier(chars: &[char], mut i: usize, out: &mut String) -> Result<usize, String> {
    if chars.get(i) == Some(&'?') {
        out.push('?');
        i += 1;
    } else if chars.get(i) == Some(&'+') {
        return Err(unsupported("possessive quantifiers (*+, ++, ?+, {m,n}+)"));
    }
    Ok(i)
}

/// Python's `{m}`, `{m,}`, `{,n}`, `{m,n}`, `{,}`; anything else makes `{` a literal.
fn counted(chars: &[char], start: usize) -> Option<(String, usize)> {
    let mut i = start + 1;
    let mut lo = String::new();
    while let Some(d) = chars.get(i).filter(|c| c.is_ascii_digit()) {
        lo.push(*d);
        i += 1;
    }
    let mut hi = None;
    if chars.get(i) == Some(&',') {
        i += 1;
        let mut h = String::new();
        while let Some(d) = chars.get(i).filter(|c| c.is_ascii_digit()) {
            h.push(*d);
            i += 1;
        }
        hi = Some(h);
    }
    if chars.get(i) != Some(&'}') || (lo.is_empty() && hi.is_none()) {
        return None;
    }
    let lo = if lo.is_empty() { "0".to_string() } else { lo };
    let text = match hi {
        None => format!("{{{lo}}}"),
        Some(h) => format!("{{{lo},{h}}}"),
    };
    Some((text, i + 1 - start))
}

fn hex_digits(chars: &[char], from: usize, n: usize) -> Result<String, String> {
    let s: String = chars.iter().skip(from).take(n).collect();
    if s.chars().count() == n && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(format!("incomplete escape: expected {n} hex digits"))
    }
}

/// `\x..`, `\u....`, `\U........`: same spelling in both engines.
fn hex_escape(chars: &[char], i: usize, letter: char) -> Result<(String, usize), String> {
    let n = match letter {
        'x' => 2,
        'u' => 4,
        _ => 8,
    };
    let digits = hex_digits(chars, i + 2, n)?;
    Ok((format!("\\{letter}{digits}"), 2 + n))
}

/// A character Python reads literally after a backslash. ASCII punctuation keeps its
/// backslash (the `regex` crate accepts that for all of it, and it stays literal in `x` mode),
/// except `<` and `>`, which the `regex` crate would read as word boundaries.
fn literal(c: char) -> String {
    match c {
        '<' | '>' => c.to_string(),
        c if c.is_ascii_punctuation() || c == ' ' => format!("\\{c}"),
        c => regex::escape(&c.to_string()),
    }
}

fn escape_outside(chars: &[char], i: usize) -> Result<(String, usize), String> {
    let Some(&c) = chars.get(i + 1) else {
        return Err("pattern ends with a lone backslash".into());
    };
    match c {
        'Z' => Ok(("\\z".into(), 2)),
        'A' | 'b' | 'B' | 'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'a' | 'f' | 'n' | 'r' | 't' | 'v' => {
            Ok((format!("\\{c}"), 2))
        }
        'x' | 'u' | 'U' => hex_escape(chars, i, c),
        'N' => Err(unsupported("named Unicode escapes (\\N{...})")),
        '0'..='9' => Err(unsupported(
            "back-references and octal escapes (\\1, \\0, ...)",
        )),
        c if c.is_ascii_alphabetic() => Err(format!("bad escape \\{c} (Python rejects it too)")),
        c => Ok((literal(c), 2)),
    }
}

fn group_open(chars: &[char], i: usize) -> Result<(String, usize), String> {
    if chars.get(i + 1) != Some(&'?') {
        return Ok(("(".into(), 1));
    }
    let next = chars.get(i + 2).copied();
    let after = chars.get(i + 3).copied();
    match (next, after) {
        (Some(':'), _) => Ok(("(?:".into(), 3)),
        (Some('P'), Some('<')) => Ok(("(?P<".into(), 4)),
        (Some('P'), Some('=')) => Err(unsupported("back-references ((?P=name))")),
        (Some('=' | '!'), _) => Err(unsupported("look-ahead assertions ((?=...), (?!...))")),
        (Some('<'), Some('=' | '!')) => {
            Err(unsupported("look-behind assertions ((?<=...), (?<!...))"))
        }
        (Some('<'), _) => Err("named groups are written (?P<name>...) in Python".into()),
        (Some('>'), _) => Err(unsupported("atomic groups ((?>...))")),
        (Some('('), _) => Err(unsupported("conditional groups ((?(id)yes|no))")),
        (Some('#'), _) => {
            let close = chars[i..]
                .iter()
                .position(|&c| c == ')')
                .ok_or("unterminated comment (?#...")?;
            Ok((String::new(), close + 1))
        }
        _ => {
            let mut j = i + 2;
            let mut flags = String::new();
            while let Some(&f) = chars
                .get(j)
                .filter(|c| c.is_ascii_alphabetic() || **c == '-')
            {
                flags.push(f);
                j += 1;
            }
            if flags.is_empty() {
                return Err("unknown extension after '(?'".into());
            }
            for f in flags.chars() {
                match f {
                    'i' | 'm' | 's' | 'x' | 'u' | '-' => {}
                    'a' | 'L' => return Err(unsupported("the ASCII (a) and LOCALE (L) flags")),
                    other => return Err(format!("unknown inline flag '{other}'")),
                }
            }
            match chars.get(j) {
                Some(':') => Ok((format!("(?{flags}:"), j + 1 - i)),
                Some(')') => Err(
                    "global inline flags like (?i) must start the whole expression in Python, \
                     and keylime wraps each exclude in a group, so use the scoped form (?i:...)"
                        .into(),
                ),
                _ => Err("missing ':' or ')' after inline flags".into()),
            }
        }
    }
}

/// A bracket expression from `[` to its closing `]`.
fn class(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let mut out = String::from("[");
    let mut i = start + 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A leading ']' is a literal in both engines; escaping it leaves no doubt.
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("unterminated character set".into());
        };
        match c {
            ']' => {
                out.push(']');
                return Ok((out, i + 1 - start));
            }
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("pattern ends with a lone backslash".into());
                };
                match e {
                    'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'a' | 'f' | 'n' | 'r' | 't' | 'v' => {
                        out.push('\\');
                        out.push(e);
                        i += 2;
                    }
                    'b' => {
                        out.push_str("\\x08");
                        i += 2;
                    }
                    'x' | 'u' | 'U' => {
                        let (text, used) = hex_escape(chars, i, e)?;
                        out.push_str(&text);
                        i += used;
                    }
                    'N' => return Err(unsupported("named Unicode escapes (\\N{...})")),
                    '0'..='9' => return Err(unsupported("octal escapes")),
                    e if e.is_ascii_alphabetic() => {
                        return Err(format!(
                            "bad escape \\{e} in a character set (Python rejects it too)"
                        ))
                    }
                    e => {
                        out.push_str(&literal(e));
                        i += 2;
                    }
                }
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                return Err(
                    "'--' inside a character set means a range in Python but set difference in \
                     Rust; escape the '-'"
                        .into(),
                )
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn matches(excludes: &[&str], path: &str) -> bool {
        let list: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        compile_excludes(&list).unwrap().unwrap().is_match(path)
    }

    fn rejected(p: &str) -> String {
        compile_excludes(&[p.to_string()]).unwrap_err().1
    }

    #[test]
    fn anchored_at_start_like_re_match() {
        assert!(matches(&["/tmp/.*"], "/tmp/x"));
        assert!(!matches(&["/tmp/.*"], "/var/tmp/x"));
        assert!(matches(&["/usr/lib"], "/usr/lib64/libc.so"));
        assert!(matches(&["/a$", "/b"], "/b/c"));
        assert!(!matches(&["/a$"], "/a/c"));
        assert!(compile_excludes(&[]).unwrap().is_none());
    }

    #[test]
    fn spelling_differences_are_rewritten() {
        assert!(matches(&[r"/x\Z"], "/x"));
        assert!(!matches(&[r"/x\Z"], "/xy"));
        assert!(matches(&["/a{,2}b$"], "/aab"));
        assert!(matches(&["/{foo}"], "/{foo}"));
        assert!(matches(&["/a{}"], "/a{}"));
        assert!(matches(&["/[[]x"], "/[x"));
        assert!(matches(&["/[a&&b]"], "/&"));
        assert!(matches(&["/[]a]"], "/]"));
        assert!(matches(&[r"/\<x\>"], "/<x>"));
        assert!(matches(&["/(?i:abc)"], "/ABC"));
        assert!(matches(&["/x(?#comment)y"], "/xy"));
        assert!(matches(&[r"/\x41\u0042"], "/AB"));
        assert!(matches(&[r"/a\.b"], "/a.b"));
        assert!(!matches(&[r"/a\.b"], "/axb"));
        assert!(matches(&["/(?P<n>a)+?"], "/a"));
    }

    #[test]
    fn unsupported_constructs_are_named() {
        assert!(rejected("/(?=x)").contains("look-ahead"));
        assert!(rejected("/(?<!x)").contains("look-behind"));
        assert!(rejected(r"/(a)\1").contains("back-references"));
        assert!(rejected("/(?P<n>a)(?P=n)").contains("back-references"));
        assert!(rejected("/(?>a)").contains("atomic"));
        assert!(rejected("/a*+").contains("possessive"));
        assert!(rejected("/(?(1)a|b)").contains("conditional"));
        assert!(rejected("(?i)/tmp").contains("global inline flags"));
        assert!(rejected("/(?a:x)").contains("ASCII"));
        assert!(rejected(r"/\p{L}").contains("bad escape"));
        assert!(rejected("/[+--]").contains("'--'"));
        assert!(rejected("/(unclosed").contains("not a valid regular expression"));
        assert!(rejected("*x").contains("not a valid regular expression"));
        assert!(rejected("/x\\").contains("backslash"));
    }
}
