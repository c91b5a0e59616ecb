//! Values of a description that only Nix can compute: store paths, node
//! facts, anything the static parse cannot fold (`"${pkgs.hello}/bin/hello"`).
//!
//! The parse keeps the structure and replaces each such string by a
//! placeholder ([`placeholder`]) that indexes [`crate::spec::TestSpec::computed`].
//! The generator then refers to the value inside the imported description
//! (`builtins.elemAt description.steps 2`), so Nix evaluates it, and wraps
//! it in a type check that names the file, the step and the expected type.
//! Nothing here evaluates: `check` and `generate` stay evaluator-free, and a
//! changed computed value leaves the generated file unchanged.

use crate::diagnostic::Span;

/// Marks the start of a placeholder. Private-use code points: descriptions
/// may not contain them (see [`has_marker`]).
pub const OPEN: char = '\u{E000}';
/// Marks the end of a placeholder.
pub const CLOSE: char = '\u{E001}';

/// What type Nix must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComputedType {
    String,
}

impl ComputedType {
    /// `builtins.typeOf`'s name for the type.
    pub fn nix_type(self) -> &'static str {
        match self {
            ComputedType::String => "string",
        }
    }
}

/// One computed value.
#[derive(Clone, Debug, PartialEq)]
pub struct Computed {
    /// A Nix expression for the value, relative to the evaluated
    /// description bound as `description` (`(builtins.elemAt description.steps 0).succeed`).
    pub expr: String,
    pub ty: ComputedType,
    /// A POSIX extended regular expression (for `builtins.match`) the value
    /// must match in full, for values the stock driver puts into a shell
    /// unquoted.
    pub pattern: Option<&'static str>,
    /// What the value is, for the evaluation-time message (`the command of `succeed``).
    pub what: String,
    /// Where it is written.
    pub span: Span,
}

/// The placeholder string standing for computed value `index`.
pub fn placeholder(index: usize) -> String {
    format!("{OPEN}{index}{CLOSE}")
}

/// The index of a string that is exactly a placeholder.
pub fn placeholder_index(s: &str) -> Option<usize> {
    let inner = s.strip_prefix(OPEN)?.strip_suffix(CLOSE)?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok()
}

/// Whether `s` is a placeholder.
pub fn is_placeholder(s: &str) -> bool {
    placeholder_index(s).is_some()
}

/// Whether `s` contains a placeholder delimiter (literal descriptions may not).
pub fn has_marker(s: &str) -> bool {
    s.contains([OPEN, CLOSE])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_round_trip() {
        for i in [0, 7, 1234] {
            assert_eq!(placeholder_index(&placeholder(i)), Some(i));
        }
        assert_eq!(placeholder_index("\u{E000}\u{E001}"), None);
        assert_eq!(placeholder_index("x\u{E000}1\u{E001}"), None);
        assert_eq!(placeholder_index("\u{E000}+1\u{E001}"), None);
        assert!(has_marker("a\u{E001}"));
        assert!(!has_marker("plain"));
    }
}
