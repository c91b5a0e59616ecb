//! JSON values as readable Nix literals (used for the embedded plan).
//!
//! `builtins.toJSON` of the rendered literal gives back the same JSON value:
//! keys come out sorted (as Nix sorts attributes), integers stay integers and
//! floats stay floats. Short values stay on one line, longer ones are laid out
//! nixfmt-style with two-space indentation.

use serde_json::Value;

use super::escape::{nix_attr_name, nix_string};

/// Lines longer than this are broken up.
const MAX_WIDTH: usize = 100;

/// Renders `value` to be placed after `prefix_width` characters on a line
/// whose indentation is `indent` spaces (continuation lines are indented
/// relative to it).
pub fn render(value: &Value, indent: usize, prefix_width: usize) -> String {
    let inline = render_inline(value);
    // One column is kept for the `;` that usually follows.
    if prefix_width + inline.chars().count() < MAX_WIDTH || is_scalar(value) {
        return inline;
    }
    let pad = " ".repeat(indent + 2);
    let mut out = String::new();
    match value {
        Value::Object(map) => {
            out.push_str("{\n");
            for (key, item) in sorted(map) {
                let key = nix_attr_name(key);
                let head = format!("{pad}{key} = ");
                out.push_str(&head);
                out.push_str(&render(item, indent + 2, head.chars().count()));
                out.push_str(";\n");
            }
            out.push_str(&" ".repeat(indent));
            out.push('}');
        }
        Value::Array(items) => {
            out.push_str("[\n");
            for item in items {
                out.push_str(&pad);
                out.push_str(&render(item, indent + 2, indent + 2));
                out.push('\n');
            }
            out.push_str(&" ".repeat(indent));
            out.push(']');
        }
        scalar => out.push_str(&render_inline(scalar)),
    }
    out
}

/// Entries in Nix's attribute order (byte order of the names), whatever
/// order the map keeps.
fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

/// The one-line form. Values inside lists are self-delimiting (negative
/// numbers are parenthesised), so the same form works everywhere.
fn render_inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => render_number(n),
        Value::String(s) => nix_string(s),
        Value::Array(items) if items.is_empty() => "[ ]".to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(render_inline).collect();
            format!("[ {} ]", items.join(" "))
        }
        Value::Object(map) if map.is_empty() => "{ }".to_string(),
        Value::Object(map) => {
            let attrs: Vec<String> = sorted(map)
                .into_iter()
                .map(|(k, v)| format!("{} = {};", nix_attr_name(k), render_inline(v)))
                .collect();
            format!("{{ {} }}", attrs.join(" "))
        }
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
