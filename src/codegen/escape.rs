//! Escaping for the three languages a description string can reach: Nix
//! (string literals and attribute names), Python (string literals in the
//! generated testScript) and the guest shell.
//!
//! Every function here is total: any Rust string (Nix itself cannot hold NUL,
//! so descriptions never contain one) comes back unchanged after the target
//! language reads the escaped form. The property tests in
//! `tests/integration/codegen.rs` check that against the real `nix-instantiate`,
//! `python3` and `sh`.

use std::fmt;

// Nix's own literal syntax lives with its decoder in `spec::strings`.
pub use crate::spec::strings::{is_nix_identifier, nix_attr_name, nix_string, push_nix_string};

/// An indented (`''…''`) Nix string literal denoting exactly `s`, laid out
/// for readability: `''`, then every line of `s` prefixed with `indent`, then
/// the closing `''` on its own line (prefixed with `close_indent`, usually
/// the indentation of the attribute) when `s` ends with a newline.
///
/// Nix strips the common indentation of an indented string (counting spaces
/// only, ignoring space-only lines) and drops a space-only last line. When
/// no line of `s` starts with a non-space, the first space of each line is
/// escaped (`''\ `; escaped characters never count as indentation), which
/// keeps the stripped amount exactly `indent`; so is the first space of a
/// space-only last line. Both indents must consist of spaces only.
///
/// Above [`MAX_INDENTED_ESCAPES`] escapes the literal is a `"…"` string
/// instead: every escape splits an indented string into parts, and Nix 2.8
/// overflows its (8 MiB) stack at about three million of them (2.5 million
/// still evaluate), while a `"…"` string is one token however many escapes
/// it holds.
pub fn nix_indented_string(s: &str, indent: &str, close_indent: &str) -> String {
    let mut out = String::new();
    push_nix_indented_string(&mut out, s, indent, close_indent);
    out
}

/// Escapes in one indented string above which [`nix_indented_string`]
/// writes a `"…"` string: a fiftieth of what Nix 2.8 still evaluates.
pub const MAX_INDENTED_ESCAPES: usize = 50_000;

/// [`nix_indented_string`] appended to `out`.
pub fn push_nix_indented_string(out: &mut String, s: &str, indent: &str, close_indent: &str) {
    let start = out.len();
    if push_indented(out, s, indent, close_indent) > MAX_INDENTED_ESCAPES {
        out.truncate(start);
        push_nix_string(out, s);
    }
}

/// Writes the indented form; returns the number of escapes in it.
fn push_indented(out: &mut String, s: &str, indent: &str, close_indent: &str) -> usize {
    let mut escapes = 0;
    // Whether some non-empty line starts without a space: usually the
    // first, else a search for the newlines (memchr) finds one.
    let bytes = s.as_bytes();
    let starts_unindented = |at: usize| !matches!(bytes.get(at), None | Some(b'\n' | b' '));
    let unindented_line = starts_unindented(0)
        || memchr::memchr_iter(b'\n', bytes).any(|newline| starts_unindented(newline + 1));
    // Room for an indent per 32 bytes of text; longer lines leave some over.
    out.reserve(s.len() + (s.len() / 32 + 1) * indent.len() + close_indent.len() + 8);
    out.push_str("''\n");
    let mut rest = s;
    loop {
        let newline = memchr::memchr(b'\n', rest.as_bytes());
        let last = newline.is_none();
        let line = &rest[..newline.unwrap_or(rest.len())];
        if last && line.is_empty() {
            // `s` ended with a newline (or is empty): close on a line of its own.
            // Nix drops this whitespace-only last line.
            out.push_str(close_indent);
            break;
        }
        if !line.is_empty() {
            let space_only_last = last && line.bytes().all(|b| b == b' ');
            out.push_str(indent);
            escapes += push_nix_indented_line(out, line, !unindented_line || space_only_last);
        }
        match newline {
            Some(at) => {
                out.push('\n');
                rest = &rest[at + 1..];
            }
            None => break,
        }
    }
    out.push_str("''");
    escapes
}

/// Escapes one line (no `\n`) for the inside of an indented string whose
/// layout is handled by [`nix_indented_string`]; `escape_leading_space`
/// escapes a first space so it cannot count as indentation. Returns the
/// number of escapes written.
fn push_nix_indented_line(out: &mut String, line: &str, escape_leading_space: bool) -> usize {
    let bytes = line.as_bytes();
    // Everything escaped is ASCII: bytes are searched (memchr) for the few
    // that may need an escape, and the runs between escapes are copied whole.
    let mut escapes = 0;
    let mut from = 0;
    if escape_leading_space && bytes.first() == Some(&b' ') {
        // A leading space would be taken for indentation.
        out.push_str("''\\ ");
        escapes += 1;
        from = 1;
    }
    let mut at = from;
    while let Some(found) = memchr::memchr3(b'\'', b'$', b'\r', &bytes[at..]) {
        let i = at + found;
        at = i + 1;
        let next = bytes.get(i + 1).copied();
        let escape = match bytes[i] {
            // A quote stays literal only when the encoded text after it does
            // not start with a quote (the two would pair up: `''` closes the
            // string, `'''` is an escape) or a `$`. The next character's
            // encoding starts with one of those exactly when it is a quote,
            // a `$` or a carriage return; nothing follows the last character
            // but the closing `''`. Otherwise `''\'` denotes a single quote.
            b'\'' if next.is_some_and(|n| !matches!(n, b'\'' | b'$' | b'\r')) => continue,
            b'\'' => "''\\'",
            b'$' if next == Some(b'{') => "''$",
            b'$' => continue,
            _ => "''\\r",
        };
        out.push_str(&line[from..i]);
        out.push_str(escape);
        escapes += 1;
        from = at;
    }
    out.push_str(&line[from..]);
    escapes
}

/// Whether `s` can be written as a Nix path literal component sequence
/// (`../tests/vm/health.nix`): only `[A-Za-z0-9._+-]` between slashes.
pub fn is_nix_path_literal_safe(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
        })
}

/// A double-quoted Python string literal denoting exactly `s`.
///
/// Escapes `\`, `"` and every control character (C0, DEL, C1) as `\n`, `\r`,
/// `\t` or `\xNN`, so the literal is always one physical line; other Unicode
/// is kept as it is.
pub fn python_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    // Writing to a `String` cannot fail.
    let _ = write_python_string(&mut out, s);
    out
}

/// [`python_string`] written where it is formatted (`{}`), without a
/// `String` of its own.
#[derive(Clone, Copy)]
pub struct PyStr<'a>(pub &'a str);

impl fmt::Display for PyStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_python_string(f, self.0)
    }
}

/// Writes [`python_string`]: the runs between escapes are copied whole.
fn write_python_string(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    let mut from = 0;
    for (at, c) in special_chars(s, |b| b == b'\\' || b == b'"') {
        w.write_str(&s[from..at])?;
        from = at + c.len_utf8();
        match c {
            '\\' => w.write_str("\\\\")?,
            '"' => w.write_str("\\\"")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            // Line and paragraph separators are not newlines for Python's
            // tokenizer, but escaping them keeps editors and diffs sane.
            '\u{2028}' | '\u{2029}' => write!(w, "\\u{:04x}", c as u32)?,
            // `is_control` is exactly C0, DEL and C1, all below U+0100.
            c => write!(w, "\\x{:02x}", c as u32)?,
        }
    }
    w.write_str(&s[from..])?;
    w.write_char('"')
}

/// The control characters (C0, DEL, C1), line and paragraph separators,
/// and the ASCII characters `also` picks, with their byte offsets: a scan
/// of bytes that decodes only non-ASCII characters.
fn special_chars<'s>(s: &'s str, also: impl Fn(u8) -> bool + 's) -> impl Iterator<Item = (usize, char)> + 's {
    let bytes = s.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() {
            let b = bytes[at];
            let start = at;
            if b.is_ascii() {
                at += 1;
                if b < b' ' || b == 0x7f || also(b) {
                    return Some((start, char::from(b)));
                }
            } else {
                let c = s[at..].chars().next()?;
                at += c.len_utf8();
                if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                    return Some((start, c));
                }
            }
        }
        None
    })
}

pub use crate::guest::shell_quote;

/// Makes `s` safe as the text of a one-line comment (Nix or Python, both
/// `#`): control characters, which could end the comment, are shown escaped.
pub fn comment_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Writing to a `String` cannot fail.
    let _ = write_comment_text(&mut out, s);
    out
}

/// [`comment_text`] written where it is formatted (`{}`).
#[derive(Clone, Copy)]
pub struct Comment<'a>(pub &'a str);

impl fmt::Display for Comment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_comment_text(f, self.0)
    }
}

fn write_comment_text(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut from = 0;
    for (at, c) in special_chars(s, |_| false) {
        w.write_str(&s[from..at])?;
        from = at + c.len_utf8();
        write!(w, "{}", c.escape_default())?;
    }
    w.write_str(&s[from..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_string_escapes() {
        assert_eq!(nix_string("plain"), r#""plain""#);
        assert_eq!(nix_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(nix_string("${x} $y $${z}"), r#""\${x} $y $\${z}""#);
        assert_eq!(nix_string("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
    }

    #[test]
    fn indented_string_layout() {
        assert_eq!(nix_indented_string("a\nb\n", "  ", ""), "''\n  a\n  b\n''");
        assert_eq!(nix_indented_string("a\n\nb", "  ", ""), "''\n  a\n\n  b''");
        assert_eq!(nix_indented_string("", "  ", "  "), "''\n  ''");
        assert_eq!(nix_indented_string(" x\n", "", ""), "''\n''\\ x\n''");
        assert_eq!(nix_indented_string("a\n  b\n", "  ", ""), "''\n  a\n    b\n''");
        assert_eq!(nix_indented_string("a\n  ", "  ", ""), "''\n  a\n  ''\\  ''");
    }

    fn nix_indented_line(line: &str, escape_leading_space: bool) -> String {
        let mut out = String::new();
        push_nix_indented_line(&mut out, line, escape_leading_space);
        out
    }

    #[test]
    fn many_escapes_make_a_quoted_string() {
        let few = "'".repeat(MAX_INDENTED_ESCAPES);
        assert!(nix_indented_string(&few, "  ", "").starts_with("''"));
        let many = "'".repeat(MAX_INDENTED_ESCAPES + 1);
        assert_eq!(nix_indented_string(&many, "  ", ""), nix_string(&many));
        let mut out = "x = ".to_owned();
        push_nix_indented_string(&mut out, &format!("a\n{many}"), "  ", "");
        assert_eq!(out, format!("x = {}", nix_string(&format!("a\n{many}"))));
    }

    #[test]
    fn indented_string_quotes_and_interpolation() {
        assert_eq!(nix_indented_line("it's", false), "it's");
        assert_eq!(nix_indented_line("a''b", false), "a''\\''b");
        assert_eq!(nix_indented_line("x'", false), "x''\\'");
        assert_eq!(nix_indented_line("'${a}", false), "''\\'''${a}");
        assert_eq!(nix_indented_line("$x ${y}", false), "$x ''${y}");
        assert_eq!(nix_indented_line("'\r", false), "''\\'''\\r");
        assert_eq!(nix_indented_line(" '", true), "''\\ ''\\'");
    }

    #[test]
    fn attr_names() {
        assert_eq!(nix_attr_name("default"), "default");
        assert_eq!(nix_attr_name("x86_64-linux"), "x86_64-linux");
        assert_eq!(nix_attr_name("my mod"), "\"my mod\"");
        assert_eq!(nix_attr_name("if"), "\"if\"");
        assert_eq!(nix_attr_name("1st"), "\"1st\"");
        assert_eq!(nix_attr_name(""), "\"\"");
    }

    #[test]
    fn path_literals() {
        assert!(is_nix_path_literal_safe("../tests/vm/health.nix"));
        assert!(!is_nix_path_literal_safe("tests/vm/my test.nix"));
        assert!(!is_nix_path_literal_safe("a//b"));
    }

    #[test]
    fn python_strings() {
        assert_eq!(python_string("plain"), "\"plain\"");
        assert_eq!(python_string("a\"b\\c'"), "\"a\\\"b\\\\c'\"");
        assert_eq!(python_string("\n\u{1}\u{7f}\u{85}é"), "\"\\n\\x01\\x7f\\x85é\"");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("/etc/hosts"), "/etc/hosts");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
    }

    #[test]
    fn comments_stay_on_one_line() {
        assert_eq!(comment_text("a\nb\tc"), "a\\nb\\tc");
    }
}
