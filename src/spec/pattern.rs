//! Regular expressions in descriptions (`expect.matches`,
//! `waitForConsoleText`) run under both backends: Rust's `regex` crate in
//! nixvm-driver and Python's `re` in the stock driver. Only the common subset
//! is accepted, so a test cannot pass under one backend and break under the
//! other; `tests/integration/regex_dialect.rs` holds [`check`] to that
//! against `python3` with random patterns.

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

/// `re.search(pattern, text)` with Rust's engine: as in Python, a `$`
/// outside `(?m)` also matches before a final newline (command output ends
/// with one). [`check`] refuses a `$` that anything consuming follows, so
/// searching the text without that newline as well is exact.
pub fn is_match(re: &regex::Regex, text: &str) -> bool {
    re.is_match(text) || text.strip_suffix('\n').is_some_and(|t| re.is_match(t))
}

/// [`is_match`] that returns the match (the console wait needs its end).
pub fn find<'t>(re: &regex::Regex, text: &'t str) -> Option<regex::Match<'t>> {
    re.find(text).or_else(|| text.strip_suffix('\n').and_then(|t| re.find(t)))
}

fn first_line(s: &str) -> &str {
    s.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_else(|| s.lines().next().unwrap_or(s))
}

const BOTH: &str = "write it so that Rust's `regex` and Python's `re` read it the same way";

/// The flags in force at a node (`i`, `m`), and whether something that
/// consumes a character may follow it (which a single-line `$` must not
/// have: see [`is_match`]).
#[derive(Clone, Copy, Default)]
struct Scope {
    case_insensitive: bool,
    multi_line: bool,
    followed: bool,
}

/// The first construct only one side understands (or reads differently).
fn unportable(node: &Ast) -> Option<(String, &'static str)> {
    // Global flags (only at the very start) hold for the rest, across `|`.
    let mut scope = Scope::default();
    let mut first = node;
    loop {
        match first {
            Ast::Alternation(alt) if !alt.asts.is_empty() => first = &alt.asts[0],
            Ast::Concat(cat) if !cat.asts.is_empty() => first = &cat.asts[0],
            Ast::Flags(set) => break set_flags(&mut scope, &set.flags.items),
            _ => break,
        }
    }
    walk(node, scope)
}

fn walk(node: &Ast, scope: Scope) -> Option<(String, &'static str)> {
    match node {
        Ast::Empty(_) | Ast::Dot(_) => None,
        Ast::ClassPerl(class) => perl(class),
        Ast::Flags(set) => {
            if set.span.start.offset != 0 {
                return Some((
                    "an inline flag group in the middle of a pattern".into(),
                    "put `(?i)` etc. at the very start, or scope it: `(?i:…)`",
                ));
            }
            flags(&set.flags.items, true)
        }
        Ast::Literal(lit) => literal(lit).or_else(|| folded(scope, lit.c, lit.c)),
        Ast::Assertion(a) => match a.kind {
            AssertionKind::StartLine | AssertionKind::StartText => None,
            // Python's `$` also matches before a final newline; the driver
            // does the same (`is_match`), which holds only while nothing
            // after the `$` can consume that newline.
            AssertionKind::EndLine if !scope.multi_line && scope.followed => Some((
                "`$` followed by more pattern".into(),
                "`$` is the end of the text (or before a final newline); end the pattern there, or use \
                 `(?m)$` for the end of any line",
            )),
            AssertionKind::EndLine => None,
            AssertionKind::WordBoundary => Some(("`\\b`".into(), TABLES_HINT_BOUNDARY)),
            AssertionKind::NotWordBoundary => Some((
                "`\\B`".into(),
                "Rust and Python disagree on `\\B` at the edges of the text and next to non-ASCII \
                 characters; spell the characters out",
            )),
            AssertionKind::EndText => {
                Some(("`\\z`".into(), "Python's `re` has no `\\z`; use `$` (or `\\Z` is Python-only)"))
            }
            _ => Some(("a word-boundary assertion like `\\b{start}` or `\\<`".into(), TABLES_HINT_BOUNDARY)),
        },
        Ast::ClassUnicode(_) => Some((
            "a Unicode class (`\\p{…}`)".into(),
            "Python's `re` has no `\\p{…}`; list the characters in `[…]`",
        )),
        Ast::ClassBracketed(class) => class_set(&class.kind, scope),
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
            inner => {
                let again = !matches!(rep.op.kind, ast::RepetitionKind::ZeroOrOne)
                    && !matches!(
                        rep.op.kind,
                        ast::RepetitionKind::Range(ast::RepetitionRange::Exactly(0 | 1))
                    )
                    && !matches!(
                        rep.op.kind,
                        ast::RepetitionKind::Range(ast::RepetitionRange::Bounded(_, 0 | 1))
                    );
                walk(inner, Scope { followed: scope.followed || (again && consumes(inner)), ..scope })
            }
        },
        Ast::Group(group) => {
            let mut inner = scope;
            let own = match &group.kind {
                GroupKind::CaptureIndex(_) => None,
                // Rust also allows `.`, `[`, `]` and non-ASCII letters in
                // names; Python wants an identifier.
                GroupKind::CaptureName { starts_with_p: true, name }
                    if !name.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    Some((
                        "a group name with characters other than ASCII letters, digits and `_`".into(),
                        "Python's `re` wants an identifier: `(?P<name_1>…)`",
                    ))
                }
                GroupKind::CaptureName { starts_with_p: true, .. } => None,
                GroupKind::CaptureName { starts_with_p: false, .. } => {
                    Some(("a named group written `(?<name>…)`".into(), "write named groups as `(?P<name>…)`"))
                }
                GroupKind::NonCapturing(f) => {
                    set_flags(&mut inner, &f.items);
                    flags(&f.items, false)
                }
            };
            own.or_else(|| walk(&group.ast, inner))
        }
        Ast::Alternation(alt) => alt.asts.iter().find_map(|a| walk(a, scope)),
        Ast::Concat(cat) => cat.asts.iter().enumerate().find_map(|(i, a)| {
            let followed = scope.followed || cat.asts[i + 1..].iter().any(consumes);
            walk(a, Scope { followed, ..scope })
        }),
    }
}

const TABLES_HINT_BOUNDARY: &str = "Rust's `regex` and Python's `re` classify non-ASCII characters differently \
                                    (combining marks, `²`) for `\\b`; spell the boundary out, e.g. \
                                    `(^|[^A-Za-z0-9_])word([^A-Za-z0-9_]|$)`";

/// Whether `node` can match a character (not only assertions and nothing).
fn consumes(node: &Ast) -> bool {
    match node {
        Ast::Empty(_) | Ast::Flags(_) | Ast::Assertion(_) => false,
        Ast::Literal(_) | Ast::Dot(_) | Ast::ClassPerl(_) | Ast::ClassUnicode(_) | Ast::ClassBracketed(_) => {
            true
        }
        Ast::Repetition(rep) => consumes(&rep.ast),
        Ast::Group(group) => consumes(&group.ast),
        Ast::Alternation(alt) => alt.asts.iter().any(consumes),
        Ast::Concat(cat) => cat.asts.iter().any(consumes),
    }
}

fn set_flags(scope: &mut Scope, items: &[ast::FlagsItem]) {
    let mut on = true;
    for item in items {
        match item.kind {
            FlagsItemKind::Negation => on = false,
            FlagsItemKind::Flag(Flag::CaseInsensitive) => scope.case_insensitive = on,
            FlagsItemKind::Flag(Flag::MultiLine) => scope.multi_line = on,
            FlagsItemKind::Flag(_) => {}
        }
    }
}

/// `\w`, `\d`, `\s` and their negations follow each engine's own Unicode
/// tables.
fn perl(class: &ast::ClassPerl) -> Option<(String, &'static str)> {
    let (name, hint) = match class.kind {
        ast::ClassPerlKind::Word => (
            "w",
            "Rust and Python disagree on which non-ASCII characters are word characters (combining marks \
             like U+0307, `²`, `‿`); use `[A-Za-z0-9_]` (or `[^A-Za-z0-9_]` for `\\W`)",
        ),
        ast::ClassPerlKind::Digit => (
            "d",
            "Rust and Python use different Unicode versions for non-ASCII digits; use `[0-9]` (or `[^0-9]` \
             for `\\D`)",
        ),
        ast::ClassPerlKind::Space => (
            "s",
            "Python also counts `\\x1c`–`\\x1f` as space, Rust does not; use `[ \\t\\n\\r]` (or \
             `[^ \\t\\n\\r]` for `\\S`)",
        ),
    };
    let name = if class.negated { name.to_uppercase() } else { name.to_owned() };
    Some((format!("`\\{name}`"), hint))
}

/// Under `(?i)`, Python also matches `İ` and `ı` for `i`, and folds other
/// non-ASCII letters by its own tables; Rust uses Unicode simple case
/// folding.
fn folded(scope: Scope, from: char, to: char) -> Option<(String, &'static str)> {
    let risky =
        !from.is_ascii() || !to.is_ascii() || (from..=to).contains(&'i') || (from..=to).contains(&'I');
    (scope.case_insensitive && risky).then(|| {
        (
            "`i`, `I` or a non-ASCII letter under `(?i)`".into(),
            "Python's `(?i)` also matches `İ` and `ı` for `i` and folds non-ASCII letters by other tables; \
             take the letter out of `(?i)` and list its cases: `(?i:fa)[iI](?i:led)`",
        )
    })
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
            FlagsItemKind::Flag(Flag::IgnoreWhitespace) => {
                return Some((
                    "the `x` (verbose) flag".into(),
                    "Rust also ignores non-ASCII and in-class whitespace there, Python does not; write the \
                     pattern without `(?x)`",
                ));
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

fn class_set(set: &ClassSet, scope: Scope) -> Option<(String, &'static str)> {
    match set {
        ClassSet::BinaryOp(_) => {
            Some(("a class set operation (`&&`, `--`, `~~`)".into(), "spell out the characters of the class"))
        }
        ClassSet::Item(item) => class_item(item, scope),
    }
}

fn class_item(item: &ClassSetItem, scope: Scope) -> Option<(String, &'static str)> {
    match item {
        ClassSetItem::Empty(_) => None,
        ClassSetItem::Perl(class) => perl(class),
        ClassSetItem::Range(r) => {
            if [&r.start, &r.end].iter().any(|l| l.c == '-' && l.kind == LiteralKind::Verbatim) {
                return Some((
                    "a range from or to an unescaped `-` in a class".into(),
                    "Python reads `[--x]` differently or refuses it; escape the `-`: `[\\--x]`",
                ));
            }
            literal(&r.start).or_else(|| literal(&r.end)).or_else(|| folded(scope, r.start.c, r.end.c))
        }
        ClassSetItem::Literal(lit) => literal(lit).or_else(|| folded(scope, lit.c, lit.c)),
        ClassSetItem::Ascii(_) => Some((
            "a POSIX class (`[[:alpha:]]`)".into(),
            "Python's `re` reads `[[:alpha:]]` as a set of characters; use `[A-Za-z]` or `[0-9]`",
        )),
        ClassSetItem::Unicode(_) => {
            Some(("a Unicode class (`\\p{…}`)".into(), "Python's `re` has no `\\p{…}`; list the characters"))
        }
        ClassSetItem::Bracketed(_) => Some(("a nested character class".into(), BOTH)),
        ClassSetItem::Union(u) => {
            // Python warns that `--`, `&&`, `~~` and `||` in a class will
            // become set operations (Rust already reads three of them so).
            // And Python reads a leading `]-x` as a range, Rust as three
            // characters.
            let pair = |w: &[ClassSetItem]| match (&w[0], &w[1]) {
                (ClassSetItem::Literal(a), ClassSetItem::Literal(b))
                    if a.kind == LiteralKind::Verbatim && b.kind == LiteralKind::Verbatim =>
                {
                    Some((a.c, b.c))
                }
                _ => None,
            };
            for (a, b) in u.items.windows(2).filter_map(pair) {
                if a == b && "-&~|".contains(a) {
                    return Some((
                        "a doubled `-`, `&`, `~` or `|` in a class".into(),
                        "Python reads these as (future) set operations; escape one of them: `[\\--]`",
                    ));
                }
                if a == ']' && b == '-' {
                    return Some((
                        "a class starting with `]-`".into(),
                        "Python reads `[]-x]` as a range; escape them: `[\\]\\-x]`",
                    ));
                }
            }
            u.items.iter().find_map(|i| class_item(i, scope))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_patterns_pass() {
        for p in [
            "Healthy",
            r"^[0-9]+ (ok|fail)$",
            r"(?i)hello[ \t]+world",
            r"(?P<n>[a-z0-9_-]+)\.service",
            r"a{2,3}b*?c+",
            r"(^|[^A-Za-z0-9_])word \x41 \u00e9",
            r"(?s:a.b)",
            r"[^\]\-]",
            "^active$",
            "(a$|b)$",
            "(?m)^a$\nb$",
            "a$(?:)",
            "(?i:error)I",
            "[a-]",
            r"[\--x]",
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
            // Found by tests/integration/regex_dialect.rs (Rust and Python
            // disagree on U+0307, `²`, `\x1c`, `İ`, U+00A0 in `(?x)`, …).
            r"\w",
            r"\W",
            r"\d",
            r"[^\D]",
            r"\s",
            r"[\S]",
            r"\b",
            "(?x)a b",
            "(?x:\u{a0})",
            "(?i)i",
            "(?i)[A-Z]",
            "(?i:é)",
            "(?i)[^h-j]",
            "[--0]",
            "[a||b]",
            "[a&&]",
            "[a~~]",
            "a$\n",
            "(a$)+",
            "(a$|b)c",
            "$.",
            "(?i)a|ı",
            "[]-\t]",
            "(?P<a.b>x)",
            "(?P<a[0]>x)",
            "(?P<é>x)",
        ] {
            let err = check(p).expect_err(p);
            assert!(err.message.contains("not supported by both"), "{p}: {}", err.message);
        }
    }

    #[test]
    fn dollar_matches_before_a_final_newline_as_in_python() {
        let re = regex::Regex::new("^active$").unwrap();
        assert!(is_match(&re, "active") && is_match(&re, "active\n"));
        assert!(!is_match(&re, "active\n\n") && !is_match(&re, "active\nx"));
        let multi = regex::Regex::new("(?m)^a$").unwrap();
        assert!(is_match(&multi, "b\na\nc"));
        assert_eq!(find(&re, "active\n").map(|m| m.end()), Some(6));
    }

    #[test]
    fn lookaround_is_rejected_by_regex() {
        assert!(check("(?=a)").is_err());
        assert!(check(r"(a)\1").is_err());
    }
}
