//! Parsing one Nix file with rnix and reading static facts (attribute names,
//! literal paths and strings) out of the typed AST.
//!
//! rnix's own helpers (`Str::parts`, `Path::parts`, `Literal::kind`) assert on
//! the shape of the tree, which error recovery can break; the helpers here
//! look at tokens directly so that no input can make them panic.

use rnix::ast;
use rnix::{NodeOrToken, SyntaxKind, TextRange, TextSize};
use rowan::ast::AstNode;

use crate::diagnostic::{Diagnostic, FileId, Span};

/// At most this many syntax errors are reported per file: rnix's error
/// recovery tends to cascade, and the first one is what the user must fix.
const MAX_SYNTAX_ERRORS: usize = 3;

/// Parses `text`. Returns the root expression (when there is one) and one
/// `nix_syntax` diagnostic per parse error.
pub(crate) fn parse(file: FileId, text: &str) -> (Option<ast::Expr>, Vec<Diagnostic>) {
    if let Some(d) = crate::limits::nesting_diagnostic(file, text) {
        return (None, vec![d]);
    }
    let parsed = rnix::Root::parse(text);
    let end = TextSize::try_from(text.len()).unwrap_or(TextSize::from(u32::MAX));
    let diags = parsed
        .errors()
        .iter()
        .take(MAX_SYNTAX_ERRORS)
        .map(|e| syntax_diagnostic(file, text, e, end))
        .collect();
    (parsed.tree().expr(), diags)
}

fn syntax_diagnostic(file: FileId, text: &str, err: &rnix::ParseError, end: TextSize) -> Diagnostic {
    use rnix::ParseError as E;
    let eof = TextRange::empty(end);
    let (range, message) = match err {
        E::Unexpected(r) => (*r, format!("unexpected `{}`", snippet(text, *r))),
        E::UnexpectedExtra(r) => {
            (*r, format!("unexpected `{}` after the end of the expression", snippet(text, *r)))
        }
        E::UnexpectedWanted(_, r, wanted) => {
            (*r, format!("unexpected `{}`, expected {}", snippet(text, *r), describe_wanted(wanted)))
        }
        E::UnexpectedDoubleBind(r) => (*r, "the function argument is bound twice with `@`".to_string()),
        E::UnexpectedEOF => (eof, "unexpected end of file".to_string()),
        E::UnexpectedEOFWanted(wanted) => {
            (eof, format!("unexpected end of file, expected {}", describe_wanted(wanted)))
        }
        E::DuplicatedArgs(r, name) => (*r, format!("duplicated function argument `{name}`")),
        E::RecursionLimitExceeded => (eof, "the expression is nested too deeply to parse".to_string()),
        // `ParseError` is not exhaustive in spirit; keep rnix's own words.
        #[allow(unreachable_patterns)]
        other => (eof, other.to_string()),
    };
    Diagnostic::error(
        "nix_syntax",
        Some(Span::new(file, clamp(range, end))),
        format!("Nix syntax error: {message}"),
    )
    .with_label("here")
    .with_hint("fix the syntax; `nix-instantiate --parse FILE` prints Nix's own message")
}

fn clamp(r: TextRange, end: TextSize) -> TextRange {
    TextRange::new(r.start().min(end), r.end().min(end))
}

/// The source text of `r`, shortened for messages.
fn snippet(text: &str, r: TextRange) -> String {
    let s = text.get(usize::from(r.start())..usize::from(r.end())).unwrap_or("");
    let s = s.lines().next().unwrap_or("");
    if s.chars().count() > 30 {
        format!("{}…", s.chars().take(30).collect::<String>())
    } else {
        s.to_string()
    }
}

fn describe_wanted(kinds: &[SyntaxKind]) -> String {
    let names: Vec<String> = kinds.iter().map(|k| token_name(*k)).collect();
    match names.as_slice() {
        [] => "something else".to_string(),
        [one] => one.clone(),
        _ => format!("one of {}", names.join(", ")),
    }
}

fn token_name(kind: SyntaxKind) -> String {
    use SyntaxKind::*;
    let s = match kind {
        TOKEN_SEMICOLON => "`;`",
        TOKEN_ASSIGN => "`=`",
        TOKEN_COLON => "`:`",
        TOKEN_COMMA => "`,`",
        TOKEN_DOT => "`.`",
        TOKEN_L_BRACE => "`{`",
        TOKEN_R_BRACE => "`}`",
        TOKEN_L_BRACK => "`[`",
        TOKEN_R_BRACK => "`]`",
        TOKEN_L_PAREN => "`(`",
        TOKEN_R_PAREN => "`)`",
        TOKEN_IN => "`in`",
        TOKEN_THEN => "`then`",
        TOKEN_ELSE => "`else`",
        TOKEN_IDENT => "an identifier",
        TOKEN_STRING_END => "the end of the string",
        TOKEN_INTERPOL_END => "`}` closing the interpolation",
        NODE_ATTRPATH | NODE_IDENT => "an attribute name",
        _ => {
            return format!("{kind:?}")
                .trim_start_matches("TOKEN_")
                .trim_start_matches("NODE_")
                .to_lowercase();
        }
    };
    s.to_string()
}

/// The name of an identifier node (`or` is a keyword token but a valid name).
pub(crate) fn ident_name(ident: &ast::Ident) -> String {
    ident.syntax().text().to_string()
}

/// The static name of an attribute (`a`, `"a"`, `${"a"}`), or `None` when it
/// is computed.
pub(crate) fn attr_name(attr: &ast::Attr) -> Option<String> {
    match attr {
        ast::Attr::Ident(i) => Some(ident_name(i)),
        ast::Attr::Str(s) => static_str(s),
        ast::Attr::Dynamic(d) => match d.expr()? {
            ast::Expr::Str(s) => static_str(&s),
            _ => None,
        },
    }
}

/// The value of a string without interpolation. Indented strings are only
/// accepted on one line (their indentation rules do not matter then).
pub(crate) fn static_str(s: &ast::Str) -> Option<String> {
    let mut out = String::new();
    let mut indented = false;
    for child in s.syntax().children_with_tokens() {
        match child {
            NodeOrToken::Token(t) => match t.kind() {
                SyntaxKind::TOKEN_STRING_START => indented = t.text() == "''",
                SyntaxKind::TOKEN_STRING_END => {}
                SyntaxKind::TOKEN_STRING_CONTENT => {
                    if indented {
                        if t.text().contains('\n') || t.text().contains("''") {
                            return None;
                        }
                        out.push_str(t.text());
                    } else {
                        out.push_str(&unescape(t.text()));
                    }
                }
                _ => return None,
            },
            NodeOrToken::Node(_) => return None,
        }
    }
    Some(out)
}

/// Unescapes a `"…"` string body (`\n`, `\t`, `\r`, and `\x` for anything else).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The text of a relative or absolute path literal without interpolation
/// (`./a.nix`, `/etc/x`), or `None`.
pub(crate) fn literal_path(expr: &ast::Expr) -> Option<String> {
    let node = match expr {
        ast::Expr::PathRel(p) => p.syntax(),
        ast::Expr::PathAbs(p) => p.syntax(),
        _ => return None,
    };
    let mut out = String::new();
    for child in node.children_with_tokens() {
        match child {
            NodeOrToken::Token(t)
                if matches!(t.kind(), SyntaxKind::TOKEN_PATH_REL | SyntaxKind::TOKEN_PATH_ABS) =>
            {
                out.push_str(t.text());
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Short source text of an expression for messages (first line, ≤ 40 chars).
pub(crate) fn short_text(node: &rnix::SyntaxNode) -> String {
    let text = node.text().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let mut s: String = first.chars().take(40).collect();
    if first.chars().count() > 40 || text.trim().lines().nth(1).is_some() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(text: &str) -> ast::Expr {
        let (e, d) = parse(FileId(0), text);
        assert!(d.is_empty(), "{d:?}");
        e.expect("an expression")
    }

    fn first_attr(text: &str) -> ast::Attr {
        let ast::Expr::AttrSet(set) = expr(text) else { panic!("not a set") };
        use rnix::ast::HasEntry;
        set.attrpath_values()
            .next()
            .and_then(|v| v.attrpath())
            .and_then(|p| p.attrs().next())
            .expect("an attr")
    }

    #[test]
    fn attr_names() {
        assert_eq!(attr_name(&first_attr("{ a = 1; }")).as_deref(), Some("a"));
        assert_eq!(attr_name(&first_attr(r#"{ "a-b" = 1; }"#)).as_deref(), Some("a-b"));
        assert_eq!(attr_name(&first_attr(r#"{ ${"x"} = 1; }"#)).as_deref(), Some("x"));
        assert_eq!(attr_name(&first_attr(r#"{ "a\"b" = 1; }"#)).as_deref(), Some("a\"b"));
        assert_eq!(attr_name(&first_attr(r#"{ ${x} = 1; }"#)), None);
        assert_eq!(attr_name(&first_attr(r#"{ "a${x}" = 1; }"#)), None);
    }

    #[test]
    fn paths() {
        assert_eq!(literal_path(&expr("./a/b.nix")).as_deref(), Some("./a/b.nix"));
        assert_eq!(literal_path(&expr("/abs/x.nix")).as_deref(), Some("/abs/x.nix"));
        assert_eq!(literal_path(&expr("./a/${x}.nix")), None);
        assert_eq!(literal_path(&expr("<nixpkgs>")), None);
        assert_eq!(literal_path(&expr("~/x.nix")), None);
    }

    #[test]
    fn syntax_errors_have_spans_and_hints() {
        let (_, d) = parse(FileId(0), "{ a = 1 }");
        assert!(!d.is_empty());
        assert_eq!(d[0].code, "nix_syntax");
        assert!(d[0].span.is_some());
        assert!(!d[0].hints.is_empty());
        let (_, d) = parse(FileId(0), "{ a = ");
        assert!(d.iter().any(|d| d.message.contains("end of file")), "{d:?}");
    }
}
