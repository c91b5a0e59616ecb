//! rnix's syntax errors as diagnostics.

use rnix::SyntaxKind;

use crate::diagnostic::{Diagnostic, FileId, Span};

pub(super) fn syntax_error(file: FileId, err: &rnix::ParseError, len: usize) -> Diagnostic {
    use rnix::ParseError as E;
    let end = u32::try_from(len).unwrap_or(u32::MAX);
    let eof = Span { file, start: end, end };
    let (span, message, label) = match err {
        E::Unexpected(r) => (Span::new(file, *r), "unexpected input".to_string(), "not valid Nix here"),
        E::UnexpectedExtra(r) => (
            Span::new(file, *r),
            "unexpected text after the end of the expression".to_string(),
            "the description ends before this",
        ),
        E::UnexpectedWanted(got, r, wanted) => (
            Span::new(file, *r),
            format!("expected {}, found {}", wanted_list(wanted), kind_name(*got)),
            "unexpected here",
        ),
        E::UnexpectedDoubleBind(r) => {
            (Span::new(file, *r), "a function pattern is bound twice".to_string(), "second binding")
        }
        E::UnexpectedEOF => (eof, "unexpected end of file".to_string(), "the file ends here"),
        E::UnexpectedEOFWanted(wanted) => {
            (eof, format!("unexpected end of file, expected {}", wanted_list(wanted)), "the file ends here")
        }
        E::DuplicatedArgs(r, name) => {
            (Span::new(file, *r), format!("function argument `{name}` is listed twice"), "duplicate")
        }
        E::RecursionLimitExceeded => {
            (Span { file, start: 0, end: 0 }, "expression nested too deeply".to_string(), "in this file")
        }
        // rnix may add variants; report them generically.
        #[allow(unreachable_patterns)]
        other => (Span { file, start: 0, end: 0 }, format!("syntax error: {other}"), "in this file"),
    };
    Diagnostic::error("nix_syntax", Some(span), format!("Nix syntax error: {message}"))
        .with_label(label)
        .with_hint("fix the syntax; `nix-instantiate --parse <file>` shows Nix's own reading")
}

fn wanted_list(kinds: &[SyntaxKind]) -> String {
    let mut names: Vec<String> = kinds.iter().map(|k| kind_name(*k)).collect();
    names.dedup();
    match names.len() {
        0 => "something else".into(),
        1 => names.remove(0),
        _ => {
            let last = names.pop().unwrap_or_default();
            format!("{} or {last}", names.join(", "))
        }
    }
}

fn kind_name(kind: SyntaxKind) -> String {
    use SyntaxKind::*;
    let s = match kind {
        TOKEN_SEMICOLON => "`;`",
        TOKEN_ASSIGN => "`=`",
        TOKEN_L_BRACE => "`{`",
        TOKEN_R_BRACE | TOKEN_INTERPOL_END => "`}`",
        TOKEN_L_BRACK => "`[`",
        TOKEN_R_BRACK => "`]`",
        TOKEN_L_PAREN => "`(`",
        TOKEN_R_PAREN => "`)`",
        TOKEN_COLON => "`:`",
        TOKEN_COMMA => "`,`",
        TOKEN_DOT => "`.`",
        TOKEN_IN => "`in`",
        TOKEN_THEN => "`then`",
        TOKEN_ELSE => "`else`",
        TOKEN_IDENT | NODE_IDENT => "a name",
        TOKEN_STRING_START | TOKEN_STRING_END => "a string quote",
        TOKEN_ERROR => "an invalid token",
        TOKEN_INTEGER | TOKEN_FLOAT => "a number",
        _ => return format!("`{kind:?}`").to_lowercase().replace("token_", "").replace("node_", ""),
    };
    s.to_string()
}
