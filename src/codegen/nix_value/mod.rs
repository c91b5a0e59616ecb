//! Serializable values as readable Nix literals (used for the embedded plan).
//!
//! `builtins.toJSON` of the rendered literal gives back the JSON of the
//! value (`serde_json::to_value`): keys come out sorted (as Nix sorts
//! attributes), integers stay integers and floats stay floats. Short values
//! stay on one line, longer ones are laid out nixfmt-style with two-space
//! indentation.
//!
//! The value is first turned into a flat [`tree::Tree`] by a serializer of
//! our own, not into a `serde_json::Value`: that detour (a `String` per key
//! and value, a map per object, and dropping it all) was about a tenth of a
//! cold `check`. The tree is reused per thread, and names of struct fields
//! are prepared once per thread ([`names`]).

mod names;
mod tree;

use std::cell::RefCell;

use serde::Serialize;

pub use tree::Unrepresentable;
use tree::{Kind, Tree};

/// Lines longer than this are broken up.
const MAX_WIDTH: usize = 100;

/// Renders `value` to be placed after `prefix_width` characters on a line
/// whose indentation is `indent` spaces (continuation lines are indented
/// relative to it).
pub fn render(value: &serde_json::Value, indent: usize, prefix_width: usize) -> String {
    let mut out = String::new();
    render_into(&mut out, value, indent, prefix_width).expect("JSON values have string keys");
    out
}

thread_local! {
    /// The tree [`render_into`] builds, kept for the next value on this
    /// thread: its buffers grow once, and struct fields' names are
    /// prepared once.
    static TREE: RefCell<Tree> = RefCell::new(Tree::default());
}

/// [`render`] of any serializable value, appended to `out`: laid out from
/// the widths the tree knows, so each piece is copied once.
pub fn render_into<T: Serialize + ?Sized>(
    out: &mut String,
    value: &T,
    indent: usize,
    prefix_width: usize,
) -> Result<(), Unrepresentable> {
    TREE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut tree) => render_tree(out, &mut tree, value, indent, prefix_width),
        // A value whose serialization renders another one.
        Err(_) => render_tree(out, &mut Tree::default(), value, indent, prefix_width),
    })
}

fn render_tree<T: Serialize + ?Sized>(
    out: &mut String,
    tree: &mut Tree,
    value: &T,
    indent: usize,
    prefix_width: usize,
) -> Result<(), Unrepresentable> {
    tree.rebuild(value)?;
    // The one-line form and some indentation, so the text grows at most once.
    let width = tree.node(0).width as usize;
    out.reserve(width.min(1 << 20) + width.min(1 << 20) / 2);
    layout(out, tree, 0, indent, prefix_width);
    Ok(())
}

/// Lays out node `i` of `tree` (see [`render_into`]): on one line when it
/// fits, else one entry per line.
fn layout(out: &mut String, tree: &Tree, i: usize, indent: usize, prefix_width: usize) {
    let node = tree.node(i);
    if node.kind == Kind::Scalar {
        out.push_str(tree.scalar(node));
        return;
    }
    // One column is kept for the `;` that usually follows.
    let budget = MAX_WIDTH.saturating_sub(prefix_width + 1);
    if node.width as usize <= budget {
        inline(out, tree, i);
        return;
    }
    let pad = indent + 2;
    if node.kind == Kind::Attrs {
        out.push_str("{\n");
        for &child in tree.children(node) {
            let name = tree.node(child as usize).name;
            push_spaces(out, pad);
            out.push_str(tree.names.nix(name));
            out.push_str(" = ");
            layout(out, tree, child as usize, pad, pad + tree.names.width(name) as usize + 3);
            out.push_str(";\n");
        }
        push_spaces(out, indent);
        out.push('}');
    } else {
        out.push_str("[\n");
        for &child in tree.children(node) {
            push_spaces(out, pad);
            layout(out, tree, child as usize, pad, pad);
            out.push('\n');
        }
        push_spaces(out, indent);
        out.push(']');
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

/// Appends the one-line form of node `i`. Values inside lists are
/// self-delimiting (negative numbers are parenthesised), so the same form
/// works everywhere.
fn inline(out: &mut String, tree: &Tree, i: usize) {
    let node = tree.node(i);
    match node.kind {
        Kind::Scalar => out.push_str(tree.scalar(node)),
        Kind::List if tree.children(node).is_empty() => out.push_str("[ ]"),
        Kind::List => {
            out.push('[');
            for &child in tree.children(node) {
                out.push(' ');
                inline(out, tree, child as usize);
            }
            out.push_str(" ]");
        }
        Kind::Attrs if tree.children(node).is_empty() => out.push_str("{ }"),
        Kind::Attrs => {
            out.push('{');
            for &child in tree.children(node) {
                out.push(' ');
                out.push_str(tree.names.nix(tree.node(child as usize).name));
                out.push_str(" = ");
                inline(out, tree, child as usize);
                out.push(';');
            }
            out.push_str(" }");
        }
    }
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

    /// Any serializable value renders as its `serde_json::to_value` does:
    /// struct fields out of order, every enum shape, options, maps with
    /// number keys, non-finite floats, big integers.
    #[test]
    fn serializable_values_render_as_their_json() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        enum Shape {
            Unit,
            Newtype(u8),
            Tuple(i32, String),
            Struct { zeta: bool, alpha: Option<f64>, mid: Vec<u64> },
        }
        #[derive(serde::Serialize)]
        struct Outer {
            z: Vec<Shape>,
            b: std::collections::BTreeMap<i64, char>,
            a: (Option<String>, f32, i128, u128),
            #[serde(rename = "my key")]
            spaced: (),
            big: u64,
            neg: i64,
            nan: f64,
        }
        let value = Outer {
            z: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-2, "t${x}".into()),
                Shape::Struct { zeta: true, alpha: Some(-0.5), mid: vec![1, u64::MAX] },
                Shape::Struct { zeta: false, alpha: None, mid: vec![] },
            ],
            b: [(10, 'x'), (9, '"'), (-4, 'n'), (i64::MIN, 'm')].into_iter().collect(),
            a: (None, 1.5, -3, 4),
            spaced: (),
            big: u64::MAX,
            neg: i64::MIN,
            nan: f64::NAN,
        };
        let json = serde_json::to_value(&value).unwrap();
        for (indent, prefix) in [(0, 0), (4, 60), (14, 21)] {
            let mut got = String::new();
            render_into(&mut got, &value, indent, prefix).unwrap();
            assert_eq!(got, render(&json, indent, prefix), "at {indent}/{prefix}");
        }
    }

    /// A name given twice keeps its last value, as a JSON object does.
    #[test]
    fn repeated_names_keep_the_last_value() {
        struct Pairs;
        impl serde::Serialize for Pairs {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("b", &1)?;
                map.serialize_entry("a", &[1, 2])?;
                map.serialize_entry("b", &2)?;
                map.serialize_entry("c", &3)?;
                map.serialize_entry("a", &"last")?;
                map.end()
            }
        }
        let mut got = String::new();
        render_into(&mut got, &Pairs, 0, 0).unwrap();
        assert_eq!(got, r#"{ a = "last"; b = 2; c = 3; }"#);
        assert_eq!(got, render(&serde_json::to_value(Pairs).unwrap(), 0, 0));
    }

    #[test]
    fn keys_that_are_not_names_are_refused() {
        let map: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into_iter().collect();
        assert!(render_into(&mut String::new(), &map, 0, 0).is_err());
        assert!(render_into(&mut String::new(), &(1u128 << 70), 0, 0).is_err());
    }
}
