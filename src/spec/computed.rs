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
    /// An integer from `min` to `max` (ports, statuses, exit codes, ttys).
    Int {
        min: i64,
        max: i64,
    },
    /// A step timeout: an integer or float above zero. The Python script
    /// gets it rounded up, as static timeouts are (the stock `retry` counts
    /// whole seconds).
    Timeout,
    /// Seconds to sleep: an integer or float, zero or more.
    Seconds,
}

impl ComputedType {
    /// For a number: what it must be (for the evaluation-time message) and
    /// a Nix function that holds for the values that are allowed.
    pub fn number_check(self) -> Option<(String, String)> {
        match self {
            ComputedType::String => None,
            ComputedType::Int { min, max } => Some((
                format!("an integer from {min} to {max}"),
                format!("v: builtins.isInt v && v >= {min} && v <= {max}"),
            )),
            ComputedType::Timeout => Some((
                "a number of seconds greater than 0".to_string(),
                "v: (builtins.isInt v || builtins.isFloat v) && v > 0".to_string(),
            )),
            ComputedType::Seconds => Some((
                "a number of seconds, 0 or more".to_string(),
                "v: (builtins.isInt v || builtins.isFloat v) && v >= 0".to_string(),
            )),
        }
    }
}

/// A number a step takes: written literally, or computed by Nix (an index
/// into [`crate::spec::TestSpec::computed`], written as its [`placeholder`]
/// until the generator replaces it by the checked value). A plan that Nix
/// evaluated holds literals only: deserializing accepts numbers alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Num<T> {
    Lit(T),
    Computed(usize),
}

impl<T: Copy> Num<T> {
    /// The literal value, `None` when Nix computes it.
    pub fn literal(self) -> Option<T> {
        match self {
            Num::Lit(v) => Some(v),
            Num::Computed(_) => None,
        }
    }

    /// The value in a plan that Nix evaluated. Plan files hold numbers only
    /// (deserializing refuses placeholders), so the error is for plans
    /// built in memory from a description without Nix.
    pub fn evaluated(self) -> Result<T, Unevaluated> {
        match self {
            Num::Lit(v) => Ok(v),
            Num::Computed(i) => Err(Unevaluated(i)),
        }
    }
}

/// A computed number reached the test driver unevaluated.
#[derive(Debug, thiserror::Error)]
#[error(
    "the plan holds a number that only Nix computes (computed value {0}); run the plan Nix evaluated (the generated check's)"
)]
pub struct Unevaluated(pub usize);

impl<T> From<T> for Num<T> {
    fn from(v: T) -> Self {
        Num::Lit(v)
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Num<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Lit(v) => v.fmt(f),
            Num::Computed(_) => f.write_str("(a value computed by Nix)"),
        }
    }
}

impl<T: serde::Serialize> serde::Serialize for Num<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Num::Lit(v) => v.serialize(s),
            Num::Computed(i) => s.serialize_str(&placeholder(*i)),
        }
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Num<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Num::Lit)
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

    #[test]
    fn numbers_serialize_as_literals_or_placeholders() {
        assert_eq!(serde_json::to_value(Num::Lit(80u16)).unwrap(), serde_json::json!(80));
        assert_eq!(serde_json::to_value(Num::<u16>::Computed(3)).unwrap(), serde_json::json!(placeholder(3)));
        // An evaluated plan holds numbers only.
        assert_eq!(serde_json::from_value::<Num<u16>>(serde_json::json!(80)).unwrap(), Num::Lit(80));
        assert!(serde_json::from_value::<Num<u16>>(serde_json::json!(placeholder(3))).is_err());
        assert!(serde_json::from_value::<Num<u16>>(serde_json::json!(70000)).is_err());
        assert_eq!(Num::Lit(2.5).to_string(), "2.5");
    }
}
