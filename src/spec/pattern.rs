//! Regular expressions in descriptions (`expect.matches`,
//! `waitForConsoleText`) run under both backends: Rust's `regex` crate in
//! nixvm-driver and Python's `re` in the stock driver. Only the common subset
//! is accepted, so a test cannot pass under one backend and break under the
//! other.

use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassSet, ClassSetItem, Flag, FlagsItemKind, GroupKind, LiteralKind,
};

/// Why a pattern is rejected: a message and a hint.
#[derive(Debug, PartialEq, Eq)]
pub struct PatternError {
    pub message: String,
    pub hint: String,
}

/// Checks that `pattern` compiles with `regex` and uses nothing Python's
/// `re` lacks or reads differently.
pub fn check(pattern: &str) -> Result<(), PatternError> {
    let parsed = ast::parse::Parser::new().parse(pattern).map_err(|e| {
        let at = e.span().start;
        let place =
            if at.line == 1 { format!("character {}", at.column) } else { format!("byte {}", at.offset) };
        PatternError {
            message: format!("invalid regular expression: {} (at {place})", e.kind()),
            hint: "regular expressions use the syntax of Rust's `regex` / Python's `re`; escape literal \
                   metacharacters such as `(` `[` `.` `*` with a backslash"
                .into(),
        }
    })?;
    unportable(&parsed).map_or(Ok(()), |(what, hint)| {
        Err(PatternError {
            message: format!("{what} is not supported by both test drivers"),
            hint: hint.into(),
        })
    })?;
    // Translation catches what the AST parser does not (unknown classes,
    // size limits).
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| PatternError {
        message: format!("invalid regular expression: {}", first_line(&e.to_string())),
        hint: "simplify the pattern".into(),
    })
}

fn first_line(s: &str) -> &str {
    s.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_else(|| s.lines().next().unwrap_or(s))
}

const BOTH: &str = "write it so that Rust's `regex` and Python's `re` read it the same way";

/// The first construct only one side understands (or reads differently).
fn unportable(node: &Ast) -> Option<(String, &'static str)> {
    match node {
        Ast::Empty(_) | Ast::Dot(_) | Ast::ClassPerl(_) => None,
        Ast::Flags(set) => {
            if set.span.start.offset != 0 {
                return Some((
                    "an inline flag group in the middle of a pattern".into(),
                    "put `(?i)` etc. at the very start, or scope it: `(?i:…)`",
                ));
            }
            flags(&set.flags.items, true)
        }
        Ast::Literal(lit) => literal(lit),
        Ast::Assertion(a) => match a.kind {
            AssertionKind::StartLine
            | AssertionKind::EndLine
            | AssertionKind::StartText
            | AssertionKind::WordBoundary => None,
            // On empty input Rust's `\B` matches and Python's does not.
            AssertionKind::NotWordBoundary => Some((
                "`\\B`".into(),
                "Rust and Python disagree on `\\B` at the edges of the text; use `\\w\\w` or `\\W\\W`",
            )),
            AssertionKind::EndText => {
                Some(("`\\z`".into(), "Python's `re` has no `\\z`; use `$` (or `\\Z` is Python-only)"))
            }
            _ => Some(("a word-boundary assertion like `\\b{start}` or `\\<`".into(), "use `\\b`")),
        },
        Ast::ClassUnicode(_) => Some((
            "a Unicode class (`\\p{…}`)".into(),
            "Python's `re` has no `\\p{…}`; list the characters in `[…]` or use `\\w`",
        )),
        Ast::ClassBracketed(class) => class_set(&class.kind),
        // Python's `re` refuses `a**`, `a{2}{3}` and `^+`, and reads `a*+`
        // as possessive (3.11) where Rust reads `(a*)+`.
        Ast::Repetition(rep) => match &*rep.ast {
            Ast::Repetition(_) => Some((
                "a repetition of a repetition (`a**`, `a*+`, `a{2}{3}`)".into(),
                "group the inner part first: `(?:a*)*`, or write one quantifier",
            )),
            Ast::Assertion(_) | Ast::Empty(_) | Ast::Flags(_) => Some((
                "a repetition of an assertion or of nothing (`^+`, `\\b*`)".into(),
                "remove the quantifier: an assertion matches no characters",
            )),
            inner => unportable(inner),
        },
        Ast::Group(group) => {
            let own = match &group.kind {
                GroupKind::CaptureIndex(_) => None,
                GroupKind::CaptureName { starts_with_p: true, .. } => None,
                GroupKind::CaptureName { starts_with_p: false, .. } => {
                    Some(("a named group written `(?<name>…)`".into(), "write named groups as `(?P<name>…)`"))
                }
                GroupKind::NonCapturing(f) => flags(&f.items, false),
            };
            own.or_else(|| unportable(&group.ast))
        }
        Ast::Alternation(alt) => alt.asts.iter().find_map(unportable),
        Ast::Concat(cat) => cat.asts.iter().find_map(unportable),
    }
}

fn flags(items: &[ast::FlagsItem], global: bool) -> Option<(String, &'static str)> {
    let mut negated = false;
    for item in items {
        match item.kind {
            FlagsItemKind::Negation if global => {
                return Some((
                    "a negated global flag (`(?-…)`)".into(),
                    "leave the flag out instead of turning it off",
                ));
            }
            FlagsItemKind::Negation => negated = true,
            FlagsItemKind::Flag(Flag::SwapGreed) => {
                return Some(("the `U` (swap greed) flag".into(), "use lazy quantifiers like `*?` instead"));
            }
            FlagsItemKind::Flag(Flag::CRLF) => {
                return Some(("the `R` (CRLF) flag".into(), "match `\\r?$` explicitly instead"));
            }
            FlagsItemKind::Flag(Flag::Unicode) if negated => {
                return Some(("turning Unicode off (`-u`)".into(), "Python's `re` cannot turn Unicode off"));
            }
            FlagsItemKind::Flag(_) => {}
        }
    }
    None
}

fn literal(lit: &ast::Literal) -> Option<(String, &'static str)> {
    match lit.kind {
        LiteralKind::HexBrace(_) => {
            Some(("a braced hex escape (`\\x{…}`)".into(), "use `\\xHH`, `\\uHHHH` or `\\UHHHHHHHH`"))
        }
        LiteralKind::Octal => Some(("an octal escape".into(), "use `\\xHH`")),
        _ => None,
    }
}

fn class_set(set: &ClassSet) -> Option<(String, &'static str)> {
    match set {
        ClassSet::BinaryOp(_) => {
            Some(("a class set operation (`&&`, `--`, `~~`)".into(), "spell out the characters of the class"))
        }
        ClassSet::Item(item) => class_item(item),
    }
}

fn class_item(item: &ClassSetItem) -> Option<(String, &'static str)> {
    match item {
        ClassSetItem::Empty(_) | ClassSetItem::Range(_) | ClassSetItem::Perl(_) => None,
        ClassSetItem::Literal(lit) => literal(lit),
        ClassSetItem::Ascii(_) => Some((
            "a POSIX class (`[[:alpha:]]`)".into(),
            "Python's `re` reads `[[:alpha:]]` as a set of characters; use `[A-Za-z]` or `\\d`, `\\w`, `\\s`",
        )),
        ClassSetItem::Unicode(_) => Some((
            "a Unicode class (`\\p{…}`)".into(),
            "Python's `re` has no `\\p{…}`; list the characters or use `\\w`",
        )),
        ClassSetItem::Bracketed(_) => Some(("a nested character class".into(), BOTH)),
        ClassSetItem::Union(u) => u.items.iter().find_map(class_item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_patterns_pass() {
        for p in [
            "Healthy",
            r"^\d+ (ok|fail)$",
            r"(?i)hello\s+world",
            r"(?P<n>[a-z0-9_-]+)\.service",
            r"a{2,3}b*?c+",
            r"\bword\b \x41 \u00e9",
            r"(?s:a.b)",
            r"[^\]\-]",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn invalid_patterns_fail() {
        for p in ["(unclosed", "a{3,2}", "[z-a]", r"\q", "*"] {
            let err = check(p).expect_err(p);
            assert!(err.message.starts_with("invalid regular expression"), "{p}: {}", err.message);
        }
    }

    #[test]
    fn one_sided_patterns_fail() {
        for p in [
            r"\p{Greek}",
            r"\pL",
            "[[:alpha:]]",
            "[a-z&&[^aeiou]]",
            "[a[bc]]",
            r"(?<name>x)",
            "a(?i)b",
            "(?U)a*",
            r"\x{41}",
            r"\z",
            r"\b{start}x",
            "(?-u:.)",
            // Issue 11: accepted before, but Python refuses them or matches differently.
            "a**",
            "^+",
            "a{2}{3}",
            "a*+a",
            r"\B",
        ] {
            let err = check(p).expect_err(p);
            assert!(err.message.contains("not supported by both"), "{p}: {}", err.message);
        }
    }

    #[test]
    fn lookaround_is_rejected_by_regex() {
        assert!(check("(?=a)").is_err());
        assert!(check(r"(a)\1").is_err());
    }
}
