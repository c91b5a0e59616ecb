//! JSON values as readable Nix literals (used for the embedded plan).
//!
//! `builtins.toJSON` of the rendered literal gives back the same JSON value:
//! keys come out sorted (as Nix sorts attributes), integers stay integers and
//! floats stay floats. Short values stay on one line, longer ones are laid out
//! nixfmt-style with two-space indentation.

use serde_json::Value;

use super::escape::{is_nix_identifier, push_nix_string};

/// Lines longer than this are broken up.
const MAX_WIDTH: usize = 100;

/// Renders `value` to be placed after `prefix_width` characters on a line
/// whose indentation is `indent` spaces (continuation lines are indented
/// relative to it).
pub fn render(value: &Value, indent: usize, prefix_width: usize) -> String {
    let mut out = String::new();
    render_into(&mut out, value, indent, prefix_width);
    out
}

/// [`render`] appended to `out`. Everything is written into that one buffer:
/// a value is first tried on one line, and the attempt stops (and is cut
/// off again) as soon as it is too wide, so each level costs at most one
/// line's worth of work beyond its own output. (The former version built
/// the one-line form of every subtree as a `String` at every level: two
/// thirds of `check`'s instructions at 1,000 descriptions.)
pub fn render_into(out: &mut String, value: &Value, indent: usize, prefix_width: usize) {
    let start = out.len();
    // One column is kept for the `;` that usually follows.
    let budget = MAX_WIDTH.saturating_sub(prefix_width + 1);
    if is_scalar(value) {
        inline(out, value, &mut usize::MAX.clone());
        return;
    }
    let mut left = budget;
    if inline(out, value, &mut left) {
        return;
    }
    out.truncate(start);
    let pad = indent + 2;
    match value {
        Value::Object(map) => {
            out.push_str("{\n");
            for (key, item) in sorted(map) {
                let line = out.len();
                push_spaces(out, pad);
                push_attr_name(out, key);
                out.push_str(" = ");
                let head = out[line..].chars().count();
                render_into(out, item, pad, head);
                out.push_str(";\n");
            }
            push_spaces(out, indent);
            out.push('}');
        }
        Value::Array(items) => {
            out.push_str("[\n");
            for item in items {
                push_spaces(out, pad);
                render_into(out, item, pad, pad);
                out.push('\n');
            }
            push_spaces(out, indent);
            out.push(']');
        }
        _ => unreachable!("scalars are rendered inline above"),
    }
}

fn push_spaces(out: &mut String, n: usize) {
    // A slice at a time, not a char at a time.
    const SPACES: &str = "                                                                ";
    let mut left = n;
    while left > 0 {
        let k = left.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        left -= k;
    }
}

fn push_attr_name(out: &mut String, name: &str) {
    if is_nix_identifier(name) {
        out.push_str(name);
    } else {
        push_nix_string(out, name);
    }
}

/// Entries in Nix's attribute order (byte order of the names), whatever
/// order the map keeps. serde_json's map is a `BTreeMap` (unless some
/// crate turns on `preserve_order`), already in that order: then no
/// vector is allocated (these were 2 % of a cold `check`).
fn sorted(map: &serde_json::Map<String, Value>) -> Sorted<'_> {
    if map.keys().is_sorted() {
        return Sorted::InOrder(map.iter());
    }
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Sorted::Collected(entries.into_iter())
}

enum Sorted<'a> {
    InOrder(serde_json::map::Iter<'a>),
    Collected(std::vec::IntoIter<(&'a String, &'a Value)>),
}

impl<'a> Iterator for Sorted<'a> {
    type Item = (&'a String, &'a Value);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Sorted::InOrder(it) => it.next(),
            Sorted::Collected(it) => it.next(),
        }
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

/// Appends the one-line form while it fits in `left` characters (counted
/// down). Returns false as soon as it does not fit; what was appended is
/// then incomplete and the caller cuts it off. Values inside lists are
/// self-delimiting (negative numbers are parenthesised), so the same form
/// works everywhere.
fn inline(out: &mut String, value: &Value, left: &mut usize) -> bool {
    let mut mark = out.len();
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&render_number(n)),
        Value::String(s) => push_nix_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[ ]"),
        Value::Array(items) => {
            out.push('[');
            for item in items {
                out.push(' ');
                if !spend(out, &mut mark, left) || !inline(out, item, left) {
                    return false;
                }
                mark = out.len();
            }
            out.push_str(" ]");
        }
        Value::Object(map) if map.is_empty() => out.push_str("{ }"),
        Value::Object(map) => {
            out.push('{');
            for (key, item) in sorted(map) {
                out.push(' ');
                push_attr_name(out, key);
                out.push_str(" = ");
                if !spend(out, &mut mark, left) || !inline(out, item, left) {
                    return false;
                }
                mark = out.len();
                out.push(';');
            }
            out.push_str(" }");
        }
    }
    spend(out, &mut mark, left)
}

/// Counts the characters appended since `mark` against `left`; false when
/// they do not fit.
fn spend(out: &str, mark: &mut usize, left: &mut usize) -> bool {
    let added = &out[*mark..];
    let n = if added.is_ascii() { added.len() } else { added.chars().count() };
    *mark = out.len();
    match left.checked_sub(n) {
        Some(rest) => {
            *left = rest;
            true
        }
        None => false,
    }
}

/// Integers as integers; floats always with a decimal point and never in
/// exponent form (Nix float literals need the point; Rust's `Display` never
/// uses an exponent).
fn render_number(n: &serde_json::Number) -> String {
    let text = if n.as_i64() == Some(i64::MIN) {
        // Nix reads `-` and the literal separately; 2^63 overflows the literal.
        return format!("({} - 1)", i64::MIN + 1);
    } else if let Some(i) = n.as_i64() {
        i.to_string()
    } else {
        // Floats, and integers beyond Nix's 64-bit signed range (as floats).
        let f = n.as_f64().unwrap_or_default();
        let mut text = f.to_string();
        if !text.contains('.') {
            text.push_str(".0");
        }
        text
    };
    if text.starts_with('-') { format!("({text})") } else { text }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(render(&json!(null), 0, 0), "null");
        assert_eq!(render(&json!(300.0), 0, 0), "300.0");
        assert_eq!(render(&json!(2.5), 0, 0), "2.5");
        assert_eq!(render(&json!(-3), 0, 0), "(-3)");
        assert_eq!(render(&json!(1e20), 0, 0), "100000000000000000000.0");
        assert_eq!(render(&json!(i64::MIN), 0, 0), "(-9223372036854775807 - 1)");
        assert_eq!(render(&json!(u64::MAX), 0, 0), "18446744073709552000.0");
        assert_eq!(render(&json!("a\"${b}"), 0, 0), r#""a\"\${b}""#);
    }

    #[test]
    fn short_values_stay_inline() {
        let v = json!({ "nodes": ["a", "b"], "version": 1, "my key": {} });
        assert_eq!(render(&v, 0, 0), r#"{ "my key" = { }; nodes = [ "a" "b" ]; version = 1; }"#);
    }

    #[test]
    fn long_values_break_by_level() {
        let long = "x".repeat(90);
        let v = json!({ "steps": [ { "a": long, "b": [1, 2] } ], "v": 1 });
        let expected = format!(
            "{{\n  steps = [\n    {{\n      a = \"{long}\";\n      b = [ 1 2 ];\n    }}\n  ];\n  v = 1;\n}}"
        );
        assert_eq!(render(&v, 0, 0), expected);
    }
}
