//! Decoding of Nix string literals exactly as Nix (2.8) does, because the
//! generated code must reproduce every step's command byte for byte.
//!
//! rnix only tokenizes; its own `normalized_parts` does not treat escaped
//! characters (`''\n`, `''$`, …) the way Nix's `stripIndentation` does, so
//! the lexer rules and the indentation algorithm are re-implemented here
//! from Nix's `src/libexpr/lexer.l` and `parser.y` (paraphrased, not copied).

/// A double-quoted Nix string literal denoting exactly `s`.
///
/// Escapes `\`, `"`, the `${` that would start an interpolation, and the
/// newline, carriage return and tab (the only escapes Nix has); other control
/// characters are legal as they are.
pub fn nix_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_nix_string(&mut out, s);
    out
}

/// [`nix_string`] appended to `out` (rendering writes into one buffer).
pub fn push_nix_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Runs between the (ASCII) characters to escape are copied whole.
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b'$' if bytes.get(i + 1) == Some(&b'{') => "\\$",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        out.push_str(escaped);
        from = i + 1;
    }
    out.push_str(&s[from..]);
    out.push('"');
}

/// Whether `s` can be written as a bare Nix identifier (attribute name,
/// function argument, variable).
pub fn is_nix_identifier(s: &str) -> bool {
    // Bytes: a non-ASCII character's bytes fail the test as the character would.
    let Some((&first, rest)) = s.as_bytes().split_first() else { return false };
    (first.is_ascii_alphabetic() || first == b'_')
        && rest.iter().all(|&c| IDENTIFIER_TAIL[usize::from(c)])
        && !is_keyword(s)
}

/// The bytes that may follow the first of an identifier: a table, as code
/// generation asks for every attribute name it writes.
const IDENTIFIER_TAIL: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b'\'' || b == b'-';
        c += 1;
    }
    table
};

/// A Nix keyword, which cannot be a bare attribute name.
fn is_keyword(s: &str) -> bool {
    match s.len() {
        2 => matches!(s, "if" | "in" | "or"),
        3 => matches!(s, "let" | "rec"),
        4 => matches!(s, "else" | "then" | "with"),
        6 => s == "assert",
        7 => s == "inherit",
        _ => false,
    }
}

/// An attribute name: bare when it is an identifier, quoted otherwise
/// (`"my mod"`, `"if"`).
pub fn nix_attr_name(s: &str) -> String {
    if is_nix_identifier(s) { s.to_string() } else { nix_string(s) }
}

/// Decodes the raw text between the quotes of a `"…"` string without
/// interpolation: `\n`, `\r`, `\t` are control characters, `\x` is `x` for
/// any other character, and a bare CR or CR LF becomes LF.
pub fn decode_plain(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    // Runs without `\\` or CR (most strings are one) are copied whole.
    let bytes = raw.as_bytes();
    let mut from = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'\\' || b == b'\r') {
        let at = i + at;
        out.push_str(&raw[from..at]);
        if bytes[at] == b'\r' {
            out.push('\n');
            i = if bytes.get(at + 1) == Some(&b'\n') { at + 2 } else { at + 1 };
        } else {
            let escaped = raw[at + 1..].chars().next();
            match escaped {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                // The tokenizer never ends a string on a lone backslash.
                None => out.push('\\'),
            }
            i = at + 1 + escaped.map_or(0, char::len_utf8);
        }
        from = i;
    }
    out.push_str(&raw[from..]);
    out
}

/// One lexer token of an indented string: literal text that takes part in
/// indentation stripping, or an escape (`''$`, `'''`, `''\x`, a lone `$` or
/// `'`) that does not.
#[derive(Debug, PartialEq)]
struct IndToken {
    text: String,
    has_indentation: bool,
}

/// Splits the raw content of `''…''` (no interpolation) the way Nix's lexer
/// does in its `IND_STRING` state.
fn lex_indented(raw: &str) -> Vec<IndToken> {
    let b: Vec<char> = raw.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let escape = |text: String| IndToken { text, has_indentation: false };
    while i < b.len() {
        let at = |k: usize| b.get(i + k).copied();
        if at(0) == Some('\'') && at(1) == Some('\'') {
            match at(2) {
                Some('$') => {
                    tokens.push(escape("$".into()));
                    i += 3;
                }
                Some('\'') => {
                    tokens.push(escape("''".into()));
                    i += 3;
                }
                Some('\\') => match at(3) {
                    Some(c) => {
                        tokens.push(escape(decode_plain(&format!("\\{c}"))));
                        i += 4;
                    }
                    None => {
                        tokens.push(escape("\\".into()));
                        i += 3;
                    }
                },
                // A closing `''` cannot occur inside the content; keep the
                // text rather than lose it.
                _ => {
                    tokens.push(escape("''".into()));
                    i += 2;
                }
            }
            continue;
        }
        // The longest run of `[^$']`, `$[^{']` and `'[^'$]`.
        let start = i;
        loop {
            match b.get(i) {
                Some('$') => match b.get(i + 1) {
                    Some(n) if *n != '{' && *n != '\'' => i += 2,
                    _ => break,
                },
                Some('\'') => match b.get(i + 1) {
                    Some(n) if *n != '\'' && *n != '$' => i += 2,
                    _ => break,
                },
                Some(_) => i += 1,
                None => break,
            }
        }
        if i > start {
            tokens.push(IndToken { text: b[start..i].iter().collect(), has_indentation: true });
        } else {
            // A lone `$` or `'` that cannot start a run.
            tokens.push(escape(b[i].to_string()));
            i += 1;
        }
    }
    tokens
}

/// Decodes the raw text between `''` and `''` of an indented string without
/// interpolation: drops a first line holding only spaces, strips the common
/// indentation (escapes end a line's leading whitespace), removes a final
/// line of only spaces, and resolves the `''` escapes.
pub fn decode_indented(raw: &str) -> String {
    // The opening token `''` swallows spaces followed by a newline.
    let trimmed = raw.trim_start_matches(' ');
    let raw = trimmed.strip_prefix('\n').unwrap_or(raw);
    let tokens = lex_indented(raw);
    if tokens.is_empty() {
        return String::new();
    }

    // Minimum indentation; whitespace-only lines do not count.
    let mut at_start_of_line = true;
    let mut min_indent = usize::MAX;
    let mut cur_indent = 0;
    for t in &tokens {
        if !t.has_indentation {
            if at_start_of_line {
                at_start_of_line = false;
                min_indent = min_indent.min(cur_indent);
            }
            continue;
        }
        for c in t.text.chars() {
            if at_start_of_line {
                match c {
                    ' ' => cur_indent += 1,
                    '\n' => cur_indent = 0,
                    _ => {
                        at_start_of_line = false;
                        min_indent = min_indent.min(cur_indent);
                    }
                }
            } else if c == '\n' {
                at_start_of_line = true;
                cur_indent = 0;
            }
        }
    }

    // Strip it from every line (escapes included, as Nix does).
    let mut out = String::with_capacity(raw.len());
    at_start_of_line = true;
    let mut cur_dropped = 0;
    let last = tokens.len() - 1;
    for (n, t) in tokens.iter().enumerate() {
        let mut s = String::with_capacity(t.text.len());
        for c in t.text.chars() {
            if at_start_of_line {
                match c {
                    ' ' => {
                        if cur_dropped >= min_indent {
                            s.push(c);
                        }
                        cur_dropped += 1;
                    }
                    '\n' => {
                        cur_dropped = 0;
                        s.push(c);
                    }
                    _ => {
                        at_start_of_line = false;
                        cur_dropped = 0;
                        s.push(c);
                    }
                }
            } else {
                s.push(c);
                if c == '\n' {
                    at_start_of_line = true;
                }
            }
        }
        // The last token loses a final line of only spaces.
        if n == last
            && let Some(p) = s.rfind('\n')
            && s[p + 1..].chars().all(|c| c == ' ')
        {
            s.truncate(p + 1);
        }
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_escapes() {
        assert_eq!(decode_plain(r#"a\nb\tc\rd"#), "a\nb\tc\rd");
        assert_eq!(decode_plain(r#"\"q\" \\ \${x} \$ \a"#), "\"q\" \\ ${x} $ a");
        assert_eq!(decode_plain("$${x}"), "$${x}");
        assert_eq!(decode_plain("a\r\nb\rc"), "a\nb\nc");
        assert_eq!(decode_plain("ünï ✓"), "ünï ✓");
        assert_eq!(decode_plain("\\é\\\r\r\n\r\\"), "é\r\n\n\\");
    }

    #[test]
    fn identifiers_and_keywords() {
        for ok in ["a", "_", "a-b", "a'", "x1", "In", "inherits", "lets", "o"] {
            assert!(is_nix_identifier(ok), "{ok}");
        }
        let keywords = ["assert", "else", "if", "in", "inherit", "let", "or", "rec", "then", "with"];
        for bad in keywords.iter().chain(&["", "1a", "-a", "'a", "a b", "a.b", "é", "aé", "a$"]) {
            assert!(!is_nix_identifier(bad), "{bad}");
        }
    }

    proptest::proptest! {
        /// The table against the character classes it was built from.
        #[test]
        fn identifier_bytes_as_the_classes(s in r"[a-zA-Z_][a-zA-Z0-9_'.é\- ]{0,8}") {
            let tail = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-');
            let keywords = ["assert", "else", "if", "in", "inherit", "let", "or", "rec", "then", "with"];
            let expected = s.chars().skip(1).all(tail) && !keywords.contains(&s.as_str());
            proptest::prop_assert_eq!(is_nix_identifier(&s), expected);
        }

        /// The run-copying decoder against the character-at-a-time one it replaced.
        #[test]
        fn plain_decodes_as_char_by_char(raw in r"(\\|\r|\n|[a-zé$\{])*") {
            let mut expected = String::new();
            let mut chars = raw.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => expected.push('\n'),
                        Some('r') => expected.push('\r'),
                        Some('t') => expected.push('\t'),
                        Some(other) => expected.push(other),
                        None => expected.push('\\'),
                    },
                    '\r' => {
                        expected.push('\n');
                        if chars.peek() == Some(&'\n') {
                            chars.next();
                        }
                    }
                    other => expected.push(other),
                }
            }
            proptest::prop_assert_eq!(decode_plain(&raw), expected);
        }
    }

    #[test]
    fn indented_strips_common_indentation() {
        assert_eq!(decode_indented("\n    foo\n      bar\n  "), "foo\n  bar\n");
        assert_eq!(decode_indented("  \n  a\n\n  b"), "a\n\nb");
        assert_eq!(decode_indented("x"), "x");
        assert_eq!(decode_indented(""), "");
        // The first line is kept when it has text.
        assert_eq!(decode_indented(" a\n b\n"), "a\nb\n");
    }

    #[test]
    fn indented_escapes() {
        assert_eq!(decode_indented("'''"), "''");
        assert_eq!(decode_indented("''${x}"), "${x}");
        assert_eq!(decode_indented(r"''\n"), "\n");
        // `''\'` is a quote; `'\` after it is plain text (checked with Nix 2.8).
        assert_eq!(decode_indented(r"''\t''\''\\"), "\t''\\\\");
        assert_eq!(decode_indented("a'b$c $'x"), "a'b$c $'x");
        assert_eq!(decode_indented("$${x}"), "$${x}");
    }

    #[test]
    fn indented_escape_ends_leading_whitespace() {
        // `''\ ` at the start of a line fixes the minimum indentation at 2.
        assert_eq!(decode_indented("\n  ''\\ x\n    y\n"), " x\n  y\n");
    }

    /// The hand-written cases above, checked against the real evaluator
    /// when it is installed (the integration tests cover random strings).
    #[test]
    fn cases_agree_with_nix_instantiate() {
        let plain = [r#"a\nb\tc\rd"#, r#"\"q\" \\ \${x} \$ \a"#, "$${x}", "a\r\nb\rc", "ünï ✓"];
        let indented = [
            "\n    foo\n      bar\n  ",
            "  \n  a\n\n  b",
            " a\n b\n",
            "'''",
            "''${x}",
            r"''\n",
            r"''\t''\''\\",
            "a'b$c $'x",
            "$${x}",
            "\n  ''\\ x\n    y\n",
        ];
        let mut expr = String::from("[\n");
        let mut ours = Vec::new();
        for raw in plain {
            expr.push_str(&format!("\"{raw}\"\n"));
            ours.push(decode_plain(raw));
        }
        for raw in indented {
            expr.push_str(&format!("''{raw}''\n"));
            ours.push(decode_indented(raw));
        }
        expr.push(']');
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cases.nix");
        std::fs::write(&file, &expr).expect("write");
        let Ok(out) = std::process::Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json"])
            .arg(&file)
            .output()
        else {
            // Like the integration tests' `util::require`: loud locally, a
            // failure on CI, which installs Nix.
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "nix-instantiate is required on CI");
            eprintln!("\n!!! SKIPPED: nix-instantiate is not installed\n");
            return;
        };
        assert!(out.status.success(), "{}\n{expr}", String::from_utf8_lossy(&out.stderr));
        let nix: Vec<String> = serde_json::from_slice(&out.stdout).expect("json list of strings");
        assert_eq!(nix, ours);
    }
}
