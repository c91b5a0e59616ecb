//! Attributes defined twice in one attribute set or `let`: Nix rejects the
//! whole file ("attribute 'a.x' already defined"), so the analysis says so
//! with both locations instead of picking one definition.
//!
//! Nix's rule (checked against Nix 2.8): two definitions of one path merge
//! when both are attribute set literals (`a.x = 1; a = { y = 2; };`);
//! any other pair is an error, `inherit` included.

use std::collections::HashMap;

use rnix::ast::{self, HasEntry};
use rnix::{SyntaxKind, SyntaxNode, TextRange};
use rowan::ast::AstNode;

use crate::diagnostic::{Diagnostic, FileId, Span};
use crate::flake::parse::attr_name;

/// Attribute paths are checked this many levels deep.
const MAX_NESTING: usize = 128;

enum Def {
    /// A value that does not merge, first defined at the range.
    Leaf(TextRange),
    /// An attribute set (literal or made by `a.b = …`), first defined at the range.
    Set(TextRange, HashMap<String, Def>),
}

impl Def {
    fn range(&self) -> TextRange {
        match self {
            Def::Leaf(r) | Def::Set(r, _) => *r,
        }
    }
}

/// One `duplicate_attribute` error per attribute defined twice in `root`.
pub(crate) fn check(file: FileId, root: &SyntaxNode) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for node in root.descendants() {
        let entries: Box<dyn Iterator<Item = ast::Entry>> = match node.kind() {
            SyntaxKind::NODE_ATTR_SET if !merged_into_parent(&node) => match ast::AttrSet::cast(node) {
                Some(set) => Box::new(set.entries()),
                None => continue,
            },
            SyntaxKind::NODE_LET_IN => match ast::LetIn::cast(node) {
                Some(l) => Box::new(l.entries()),
                None => continue,
            },
            _ => continue,
        };
        let mut tree = HashMap::new();
        for entry in entries {
            add_entry(&mut tree, &entry, &mut Vec::new(), file, &mut diags);
        }
    }
    diags
}

/// A set literal that is the value of `a = { … };` is checked as part of the
/// set or `let` it is written in (Nix merges it there).
fn merged_into_parent(node: &SyntaxNode) -> bool {
    let mut cur = node.parent();
    while let Some(p) = &cur {
        match p.kind() {
            SyntaxKind::NODE_PAREN => cur = p.parent(),
            SyntaxKind::NODE_ATTRPATH_VALUE => return true,
            _ => return false,
        }
    }
    false
}

/// The attribute set literal `expr` is, through parentheses.
fn set_literal(expr: Option<ast::Expr>) -> Option<ast::AttrSet> {
    let mut e = expr?;
    loop {
        match e {
            ast::Expr::Paren(p) => e = p.expr()?,
            ast::Expr::AttrSet(s) => return Some(s),
            _ => return None,
        }
    }
}

fn add_entry(
    tree: &mut HashMap<String, Def>,
    entry: &ast::Entry,
    prefix: &mut Vec<String>,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) {
    match entry {
        ast::Entry::AttrpathValue(apv) => {
            let Some(path) = apv.attrpath() else { return };
            let keys: Vec<(Option<String>, TextRange)> =
                path.attrs().map(|a| (attr_name(&a), a.syntax().text_range())).collect();
            add_path(tree, &keys, apv.value(), prefix, file, diags);
        }
        ast::Entry::Inherit(inh) => {
            for attr in inh.attrs() {
                let key = (attr_name(&attr), attr.syntax().text_range());
                add_path(tree, &[key], None, prefix, file, diags);
            }
        }
    }
}

fn add_path(
    tree: &mut HashMap<String, Def>,
    keys: &[(Option<String>, TextRange)],
    value: Option<ast::Expr>,
    prefix: &mut Vec<String>,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(((name, range), rest)) = keys.split_first() else { return };
    // A computed name is checked by Nix when it evaluates the set.
    let Some(name) = name else { return };
    // Deeper paths than any real file has are left to Nix (the recursion
    // stays small on hostile input).
    if prefix.len() >= MAX_NESTING {
        return;
    }
    prefix.push(name.clone());
    let literal = if rest.is_empty() { set_literal(value.clone()) } else { None };
    let merges = !rest.is_empty() || literal.is_some();
    match tree.get_mut(name) {
        Some(Def::Set(_, sub)) if merges => {
            if rest.is_empty() {
                if let Some(set) = &literal {
                    for e in set.entries() {
                        add_entry(sub, &e, prefix, file, diags);
                    }
                }
            } else {
                add_path(sub, rest, value, prefix, file, diags);
            }
        }
        Some(first) => diags.push(duplicate(file, prefix, *range, first.range())),
        None => {
            if merges {
                let mut sub = HashMap::new();
                if let Some(set) = &literal {
                    for e in set.entries() {
                        add_entry(&mut sub, &e, prefix, file, diags);
                    }
                } else {
                    add_path(&mut sub, rest, value, prefix, file, diags);
                }
                tree.insert(name.clone(), Def::Set(*range, sub));
            } else {
                tree.insert(name.clone(), Def::Leaf(*range));
            }
        }
    }
    prefix.pop();
}

fn duplicate(file: FileId, path: &[String], at: TextRange, first: TextRange) -> Diagnostic {
    let path = path.join(".");
    Diagnostic::error(
        "duplicate_attribute",
        Some(Span::new(file, at)),
        format!("attribute `{path}` is defined twice"),
    )
    .with_label("defined again here")
    .with_secondary(Span::new(file, first), "first defined here")
    .with_hint(format!(
        "Nix rejects this file (\"attribute '{path}' already defined\"); keep one definition (two definitions merge only when both are attribute sets written in place)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The duplicated paths Nix would report, per `text`.
    fn dupes(text: &str) -> Vec<String> {
        let parsed = rnix::Root::parse(text);
        assert!(parsed.errors().is_empty(), "{text}");
        check(FileId(0), &parsed.syntax())
            .into_iter()
            .map(|d| d.message.trim_start_matches("attribute `").split('`').next().unwrap_or("").to_string())
            .collect()
    }

    /// Each case was checked with `nix-instantiate --eval` (Nix 2.8).
    #[test]
    fn matches_nix() {
        let none: Vec<String> = Vec::new();
        assert_eq!(dupes("{ a.x = 1; a = { y = 2; }; }"), none);
        assert_eq!(dupes("{ a = { y = 2; }; a.x = 1; }"), none);
        assert_eq!(dupes("{ a = { y = 2; }; a = { x = 1; }; }"), none);
        assert_eq!(dupes("{ a.x = 1; a = rec { y = 2; }; }"), none);
        assert_eq!(dupes("{ a.x = 1; a = ({ y = 2; }); }"), none);
        assert_eq!(dupes("{ a.x = { z = 1; }; a.x.y = 2; }"), none);
        assert_eq!(dupes("{ a = 1; b = { a = 2; }; c = x: { a = 1; }; }"), none);
        assert_eq!(dupes("{ a.x = 1; a = let in { y = 2; }; }"), ["a"]);
        assert_eq!(dupes("{ a.x = 1; a.x = 2; }"), ["a.x"]);
        assert_eq!(dupes("{ a.x.y = 1; a.x = 2; }"), ["a.x"]);
        assert_eq!(dupes(r#"{ a = 1; ${"a"} = 2; }"#), ["a"]);
        assert_eq!(dupes("{ inherit ({ a = 1; }) a; a = 2; }"), ["a"]);
        assert_eq!(dupes("let a = 1; a = 2; in a"), ["a"]);
        assert_eq!(dupes("let a.x = 1; a.y = 2; in a"), none);
        assert_eq!(dupes("{ m = { n.a = ./a.nix; n = { a = ./b.nix; }; }; }"), ["m.n.a"]);
    }

    #[test]
    fn deep_paths_stay_cheap() {
        let path = vec!["a"; 2_000].join(".");
        let text = format!("{{ {path} = 1; {path} = 2; }}");
        let parsed = rnix::Root::parse(&text);
        // Too deep to check: no diagnostic, and no stack overflow.
        assert!(check(FileId(0), &parsed.syntax()).is_empty());
    }

    #[test]
    fn both_locations_are_given() {
        let text = "{\n  nixosModules.a = ./a.nix;\n  nixosModules = { a = ./b.nix; };\n}";
        let parsed = rnix::Root::parse(text);
        let d = check(FileId(0), &parsed.syntax());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "duplicate_attribute");
        assert_eq!(d[0].message, "attribute `nixosModules.a` is defined twice");
        let at = d[0].span.expect("span");
        assert_eq!(&text[at.start as usize..at.end as usize], "a");
        assert_eq!(at.start, text.rfind("a = ./b").expect("second") as u32);
        let (first, label) = &d[0].secondary[0];
        assert_eq!(first.start, text.find("a = ./a").expect("first") as u32);
        assert_eq!(label, "first defined here");
    }
}
