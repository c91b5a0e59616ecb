//! A small spanned value tree: the static-data subset of a Nix expression.
//!
//! Lowering turns literals, lists and attribute sets into data and anything
//! else (variables, `let`, calls, interpolation, `//`, paths, …) into
//! [`Kind::Opaque`] with a reason, so that later checks can say exactly which
//! sub-expression is not plain data. The values of `nodes.<name>` are NixOS
//! modules and are never lowered ([`Kind::Module`]). The same tree is built
//! from evaluator JSON ([`from_json`]), so both paths share one converter.

use rnix::ast::{self, HasEntry};
use rnix::{SyntaxKind, SyntaxNode};
use rowan::ast::AstNode;

use crate::diagnostic::{Diagnostic, FileId, Span};
use crate::spec::strings;

/// Nesting deeper than this is reported rather than recursed into.
const MAX_DEPTH: usize = 200;

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: Kind,
    /// The whole expression; for an interpolated string, the interpolation.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Attrs(Vec<Entry>),
    /// A function (only recorded so that a top-level `{ ... }: { … }` gets a
    /// precise error).
    Lambda,
    /// A node definition: any NixOS module, never interpreted.
    Module,
    /// Not static data; `why` names the construct ("a `let … in` expression").
    Opaque {
        why: String,
    },
    /// A value already reported as wrong while lowering; checks skip it.
    Invalid,
}

/// One attribute with the span of its name.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Value,
}

impl Kind {
    /// What the value is, for "expected …, found …" messages.
    pub fn describe(&self) -> String {
        match self {
            Kind::Null => "null".into(),
            Kind::Bool(b) => format!("the boolean `{b}`"),
            Kind::Int(i) => format!("the integer `{i}`"),
            Kind::Float(f) => format!("the float `{f}`"),
            Kind::Str(_) => "a string".into(),
            Kind::List(_) => "a list".into(),
            Kind::Attrs(_) => "an attribute set".into(),
            Kind::Lambda => "a function".into(),
            Kind::Module => "a module".into(),
            Kind::Opaque { why } => why.clone(),
            Kind::Invalid => "an invalid value".into(),
        }
    }
}

impl Value {
    /// The entries of an attribute set, if it is one.
    pub fn attrs(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Attrs(entries) => Some(entries),
            _ => None,
        }
    }
}

/// Where in a description a value sits; decides what is lowered.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// The top-level attribute set: `nodes` gets [`Shape::Nodes`].
    Top,
    /// `nodes`: each attribute is a module.
    Nodes,
    /// Inside a node: not lowered at all.
    Module,
    Data,
}

impl Shape {
    fn child(self, key: &str) -> Shape {
        match self {
            Shape::Top if key == "nodes" => Shape::Nodes,
            Shape::Top | Shape::Data => Shape::Data,
            Shape::Nodes | Shape::Module => Shape::Module,
        }
    }
}

/// Lowers a description's top-level expression. Problems found on the way
/// (duplicate attributes, out-of-range integers) are appended to `diags`.
/// A top-level `let … in` or `with …;` is looked through: its bindings may
/// serve the node modules (which are imported by reference), and any use in
/// the data is reported at the exact variable.
pub fn lower_root(file: FileId, expr: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Value {
    let mut expr = expr.clone();
    loop {
        let body = match &expr {
            ast::Expr::LetIn(l) => l.body(),
            ast::Expr::With(w) => w.body(),
            ast::Expr::Paren(p) => p.expr(),
            _ => None,
        };
        match body {
            Some(body) => expr = body,
            None => break,
        }
    }
    let mut l = Lowering { file, diags };
    l.expr(&expr, Shape::Top, 0)
}

struct Lowering<'a> {
    file: FileId,
    diags: &'a mut Vec<Diagnostic>,
}

fn opaque(why: impl Into<String>, span: Span) -> Value {
    Value { kind: Kind::Opaque { why: why.into() }, span }
}

impl Lowering<'_> {
    fn span(&self, node: &SyntaxNode) -> Span {
        Span::new(self.file, node.text_range())
    }

    fn expr(&mut self, expr: &ast::Expr, shape: Shape, depth: usize) -> Value {
        let span = self.span(expr.syntax());
        if shape == Shape::Module {
            return Value { kind: Kind::Module, span };
        }
        if depth > MAX_DEPTH {
            return opaque("an expression nested too deeply", span);
        }
        match expr {
            ast::Expr::Paren(p) => match p.expr() {
                Some(inner) => self.expr(&inner, shape, depth + 1),
                None => opaque("an incomplete expression", span),
            },
            ast::Expr::Literal(lit) => self.literal(lit, span),
            ast::Expr::Str(s) => self.string(s, span),
            ast::Expr::Ident(id) => {
                let name = id.ident_token().map(|t| t.text().to_string()).unwrap_or_default();
                match name.as_str() {
                    "true" => Value { kind: Kind::Bool(true), span },
                    "false" => Value { kind: Kind::Bool(false), span },
                    "null" => Value { kind: Kind::Null, span },
                    _ => opaque(format!("the variable `{name}`"), span),
                }
            }
            ast::Expr::UnaryOp(op) => self.unary(op, span, depth),
            ast::Expr::List(list) => {
                let items = list.items().map(|item| self.expr(&item, Shape::Data, depth + 1)).collect();
                Value { kind: Kind::List(items), span }
            }
            ast::Expr::AttrSet(set) => self.attrset(set, shape, span, depth),
            ast::Expr::Lambda(_) => Value { kind: Kind::Lambda, span },
            ast::Expr::Apply(app) => {
                let callee = app.lambda().map(|l| l.syntax().text().to_string());
                match callee.as_deref() {
                    Some("import") => opaque("an `import`", span),
                    Some(name) if name.len() <= 40 && !name.contains('\n') => {
                        opaque(format!("a function call (`{name} …`)"), span)
                    }
                    _ => opaque("a function call", span),
                }
            }
            ast::Expr::LetIn(_) | ast::Expr::LegacyLet(_) => opaque("a `let … in` expression", span),
            ast::Expr::With(_) => opaque("a `with` expression", span),
            ast::Expr::IfElse(_) => opaque("an `if … then … else` expression", span),
            ast::Expr::Assert(_) => opaque("an `assert` expression", span),
            ast::Expr::Select(_) => opaque("an attribute selection", span),
            ast::Expr::HasAttr(_) => opaque("an `?` attribute test", span),
            ast::Expr::BinOp(op) => {
                let what = match op.operator() {
                    Some(ast::BinOpKind::Update) => "the `//` operator".to_string(),
                    Some(ast::BinOpKind::Concat) => "the `++` operator".to_string(),
                    Some(ast::BinOpKind::Add) => "an addition (`+`)".to_string(),
                    Some(_) | None => "an operator expression".to_string(),
                };
                opaque(what, span)
            }
            ast::Expr::PathAbs(_)
            | ast::Expr::PathRel(_)
            | ast::Expr::PathHome(_)
            | ast::Expr::PathSearch(_) => opaque("a path", span),
            ast::Expr::CurPos(_) => opaque("`__curPos`", span),
            ast::Expr::Root(r) => match r.expr() {
                Some(inner) => self.expr(&inner, shape, depth + 1),
                None => opaque("an empty file", span),
            },
            ast::Expr::Error(_) => opaque("a syntax error", span),
        }
    }

    fn literal(&mut self, lit: &ast::Literal, span: Span) -> Value {
        let Some(tok) = lit.syntax().first_token() else {
            return opaque("an incomplete literal", span);
        };
        let text = tok.text();
        match tok.kind() {
            SyntaxKind::TOKEN_INTEGER => self.integer(text, span),
            SyntaxKind::TOKEN_FLOAT => match text.parse::<f64>() {
                Ok(f) => Value { kind: Kind::Float(f), span },
                Err(_) => opaque("a malformed float", span),
            },
            // A URI literal (`https://x`) is a string in Nix.
            SyntaxKind::TOKEN_URI => Value { kind: Kind::Str(text.to_string()), span },
            _ => opaque("an unknown literal", span),
        }
    }

    /// Nix parses the digits first and negates afterwards, so
    /// `-9223372036854775808` is out of range in Nix too.
    fn integer(&mut self, digits: &str, span: Span) -> Value {
        match digits.parse::<i64>() {
            Ok(i) => Value { kind: Kind::Int(i), span },
            Err(_) => {
                self.diags.push(
                    Diagnostic::error("integer_overflow", Some(span), "integer literal out of range")
                        .with_label("does not fit in 64 bits")
                        .with_hint("Nix integers are signed 64-bit numbers; use a smaller value"),
                );
                Value { kind: Kind::Invalid, span }
            }
        }
    }

    fn unary(&mut self, op: &ast::UnaryOp, span: Span, depth: usize) -> Value {
        if op.operator() == Some(ast::UnaryOpKind::Negate)
            && let Some(inner) = op.expr()
        {
            // `-5` and `-(5)` are data; fold them so ranges can be checked.
            let inner = self.expr(&inner, Shape::Data, depth + 1);
            return match inner.kind {
                Kind::Int(i) => Value { kind: Kind::Int(i.wrapping_neg()), span },
                Kind::Float(f) => Value { kind: Kind::Float(-f), span },
                Kind::Invalid => Value { kind: Kind::Invalid, span },
                _ => opaque("a negation", span),
            };
        }
        opaque("a boolean negation (`!`)", span)
    }

    fn string(&mut self, s: &ast::Str, span: Span) -> Value {
        let mut raw = String::new();
        let mut multiline = false;
        for child in s.syntax().children_with_tokens() {
            match child {
                rnix::NodeOrToken::Token(t) => match t.kind() {
                    SyntaxKind::TOKEN_STRING_START => multiline = t.text() == "''",
                    SyntaxKind::TOKEN_STRING_CONTENT => raw.push_str(t.text()),
                    _ => {}
                },
                rnix::NodeOrToken::Node(n) => {
                    return opaque("string interpolation (`${…}`)", self.span(&n));
                }
            }
        }
        let text = if multiline { strings::decode_indented(&raw) } else { strings::decode_plain(&raw) };
        if text.contains('\0') {
            // Nix ends a string at a NUL byte; the Python script would keep
            // the rest. Neither meaning is safe to pick.
            self.diags.push(
                Diagnostic::error("nul_in_string", Some(span), "the string contains a NUL byte")
                    .with_label("Nix would cut the string here")
                    .with_hint("remove the NUL byte; Nix strings cannot carry it"),
            );
            return Value { kind: Kind::Invalid, span };
        }
        Value { kind: Kind::Str(text), span }
    }

    /// The static name of one attribute path element.
    fn attr_name(&mut self, attr: &ast::Attr) -> Result<(String, Span), Value> {
        let span = self.span(attr.syntax());
        match attr {
            ast::Attr::Ident(id) => match id.ident_token() {
                Some(t) => Ok((t.text().to_string(), span)),
                None => Err(opaque("a malformed attribute name", span)),
            },
            ast::Attr::Str(s) => match self.string(s, span) {
                Value { kind: Kind::Str(name), .. } => Ok((name, span)),
                other => Err(other),
            },
            ast::Attr::Dynamic(_) => Err(opaque("a computed attribute name (`${…}`)", span)),
        }
    }

    fn attrset(&mut self, set: &ast::AttrSet, shape: Shape, span: Span, depth: usize) -> Value {
        let mut entries: Vec<Entry> = Vec::new();
        for entry in set.entries() {
            match entry {
                ast::Entry::AttrpathValue(apv) => {
                    let mut path = Vec::new();
                    let mut bad = None;
                    for attr in apv.attrpath().into_iter().flat_map(|p| p.attrs()) {
                        match self.attr_name(&attr) {
                            Ok(name) => path.push(name),
                            Err(v) => {
                                bad = Some(v);
                                break;
                            }
                        }
                    }
                    if let Some(v) = bad {
                        self.not_static_name(v);
                        continue;
                    }
                    let Some(value_expr) = apv.value() else { continue };
                    self.insert(&mut entries, &path, &value_expr, shape, depth);
                }
                ast::Entry::Inherit(inh) => {
                    let from = inh.from().is_some();
                    for attr in inh.attrs() {
                        match self.attr_name(&attr) {
                            Ok((key, key_span)) => {
                                let why = if from {
                                    format!("`inherit (…) {key}`")
                                } else {
                                    format!("`inherit {key}` (a variable)")
                                };
                                let value = if shape.child(&key) == Shape::Module {
                                    Value { kind: Kind::Module, span: key_span }
                                } else {
                                    opaque(why, key_span)
                                };
                                self.add(&mut entries, Entry { key, key_span, value });
                            }
                            Err(v) => self.not_static_name(v),
                        }
                    }
                }
            }
        }
        Value { kind: Kind::Attrs(entries), span }
    }

    fn not_static_name(&mut self, v: Value) {
        let why = v.kind.describe();
        self.diags.push(
            Diagnostic::error("not_static", Some(v.span), format!("attribute name is {why}, not plain data"))
                .with_label("computed here")
                .with_hint("write the attribute name literally"),
        );
    }

    /// Inserts `path = value` the way Nix merges attribute paths: dotted
    /// prefixes extend existing attribute sets; a repeated final name is a
    /// duplicate unless both sides are attribute sets (then they merge one
    /// level deep).
    fn insert(
        &mut self,
        entries: &mut Vec<Entry>,
        path: &[(String, Span)],
        expr: &ast::Expr,
        shape: Shape,
        depth: usize,
    ) {
        let Some(((key, key_span), rest)) = path.split_first() else { return };
        let child_shape = shape.child(key);
        if rest.is_empty() {
            let value = self.expr(expr, child_shape, depth + 1);
            self.add(entries, Entry { key: key.clone(), key_span: *key_span, value });
            return;
        }
        if child_shape == Shape::Module {
            // `nodes.machine.foo = …`: the node exists; its body is not ours.
            if !entries.iter().any(|e| e.key == *key) {
                let value = Value { kind: Kind::Module, span: *key_span };
                entries.push(Entry { key: key.clone(), key_span: *key_span, value });
            }
            return;
        }
        let idx = match entries.iter().position(|e| e.key == *key) {
            Some(i) => i,
            None => {
                let value = Value { kind: Kind::Attrs(Vec::new()), span: *key_span };
                entries.push(Entry { key: key.clone(), key_span: *key_span, value });
                entries.len() - 1
            }
        };
        let first_span = entries[idx].key_span;
        match &mut entries[idx].value.kind {
            Kind::Attrs(inner) => {
                let mut inner = std::mem::take(inner);
                self.insert(&mut inner, rest, expr, child_shape, depth + 1);
                entries[idx].value.kind = Kind::Attrs(inner);
            }
            _ => self.duplicate(key, *key_span, first_span),
        }
    }

    /// Adds one fully built attribute, merging or reporting a duplicate.
    fn add(&mut self, entries: &mut Vec<Entry>, entry: Entry) {
        let Some(idx) = entries.iter().position(|e| e.key == entry.key) else {
            entries.push(entry);
            return;
        };
        let first_span = entries[idx].key_span;
        let both_modules = entries[idx].value.kind == Kind::Module && entry.value.kind == Kind::Module;
        if let (Kind::Attrs(existing), Kind::Attrs(new)) = (&mut entries[idx].value.kind, entry.value.kind) {
            let mut dups = Vec::new();
            for e in new {
                match existing.iter().find(|x| x.key == e.key) {
                    Some(first) => dups.push((e.key.clone(), e.key_span, first.key_span)),
                    None => existing.push(e),
                }
            }
            for (key, span, first) in dups {
                self.duplicate(&key, span, first);
            }
        } else if both_modules {
            // Two definitions of one node merge in Nix when both are
            // attribute sets; the bodies are not ours to check.
        } else {
            self.duplicate(&entry.key, entry.key_span, first_span);
        }
    }

    fn duplicate(&mut self, key: &str, span: Span, first: Span) {
        self.diags.push(
            Diagnostic::error("duplicate_key", Some(span), format!("attribute `{key}` is defined twice"))
                .with_label("defined again here")
                .with_secondary(first, "first defined here")
                .with_hint("Nix rejects repeated attributes; keep one definition"),
        );
    }
}

/// Builds the tree from evaluator output (`builtins.toJSON` of the
/// description with every `nodes.<name>` replaced by `null`). Every span is
/// `span`, since JSON carries no positions.
pub fn from_json(value: &serde_json::Value, span: Span) -> Value {
    json(value, Shape::Top, span)
}

/// [`from_json`] with positions borrowed from `located`, the static
/// lowering of the same file (whose data was not all static, or it would
/// not have been evaluated). Walking both trees together, a JSON value gets
/// the span of the static value at the same place: an attribute present in
/// both, a list item when both lists have the same length. Where the trees
/// part, the values below get the span of the last place they agreed (e.g.
/// every step of `steps = map f [ … ];` gets the span of `map f [ … ]`).
/// Values that agree on nothing below the root keep `fallback`: the root
/// spans the whole file, which would put them all on line 1.
pub fn from_json_located(value: &serde_json::Value, located: Option<&Value>, fallback: Span) -> Value {
    let root_span = located.map_or(fallback, |l| l.span);
    let kind = match (value, located.map(|l| &l.kind)) {
        (serde_json::Value::Object(map), Some(Kind::Attrs(entries))) => Kind::Attrs(
            map.iter()
                .map(|(k, v)| {
                    let at = entries.iter().find(|e| &e.key == k);
                    Entry {
                        key: k.clone(),
                        key_span: at.map_or(fallback, |e| e.key_span),
                        value: json_located(v, Shape::Top.child(k), at.map(|e| &e.value), fallback),
                    }
                })
                .collect(),
        ),
        _ => return from_json(value, fallback),
    };
    Value { kind, span: root_span }
}

/// One level of [`from_json_located`] below the root: `located` is the static
/// value at the same place, if the trees still agree; `inherited` the span
/// of the closest place where they did.
fn json_located(value: &serde_json::Value, shape: Shape, located: Option<&Value>, inherited: Span) -> Value {
    use serde_json::Value as J;
    let span = located.map_or(inherited, |l| l.span);
    if shape == Shape::Module {
        return Value { kind: Kind::Module, span };
    }
    let kind = match value {
        J::Array(items) => {
            let statics = match located.map(|l| &l.kind) {
                Some(Kind::List(s)) if s.len() == items.len() => Some(s),
                _ => None,
            };
            Kind::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| json_located(v, Shape::Data, statics.and_then(|s| s.get(i)), span))
                    .collect(),
            )
        }
        J::Object(map) => {
            let entries = located.and_then(Value::attrs);
            Kind::Attrs(
                map.iter()
                    .map(|(k, v)| {
                        let at = entries.and_then(|es| es.iter().find(|e| &e.key == k));
                        Entry {
                            key: k.clone(),
                            key_span: at.map_or(span, |e| e.key_span),
                            value: json_located(v, shape.child(k), at.map(|e| &e.value), span),
                        }
                    })
                    .collect(),
            )
        }
        scalar => json(scalar, shape, span).kind,
    };
    Value { kind, span }
}

fn json(value: &serde_json::Value, shape: Shape, span: Span) -> Value {
    use serde_json::Value as J;
    if shape == Shape::Module {
        return Value { kind: Kind::Module, span };
    }
    let kind = match value {
        J::Null => Kind::Null,
        J::Bool(b) => Kind::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Kind::Int(i),
            None => Kind::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Kind::Str(s.clone()),
        J::Array(items) => Kind::List(items.iter().map(|v| json(v, Shape::Data, span)).collect()),
        J::Object(map) => Kind::Attrs(
            map.iter()
                .map(|(k, v)| Entry { key: k.clone(), key_span: span, value: json(v, shape.child(k), span) })
                .collect(),
        ),
    };
    Value { kind, span }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(text: &str) -> (Value, Vec<Diagnostic>) {
        let parsed = rnix::Root::parse(text);
        assert!(parsed.errors().is_empty(), "{:?}", parsed.errors());
        let expr = parsed.tree().expr().expect("expression");
        let mut diags = Vec::new();
        (lower_root(FileId(0), &expr, &mut diags), diags)
    }

    fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
        &v.attrs().expect("attrs").iter().find(|e| e.key == key).expect(key).value
    }

    #[test]
    fn literals() {
        let (v, d) =
            lower(r#"{ a = 1; b = -2; c = 1.5; d = -0.5; e = true; f = null; g = "x"; h = [ 1 "y" ]; }"#);
        assert!(d.is_empty());
        assert_eq!(get(&v, "a").kind, Kind::Int(1));
        assert_eq!(get(&v, "b").kind, Kind::Int(-2));
        assert_eq!(get(&v, "c").kind, Kind::Float(1.5));
        assert_eq!(get(&v, "d").kind, Kind::Float(-0.5));
        assert_eq!(get(&v, "e").kind, Kind::Bool(true));
        assert_eq!(get(&v, "f").kind, Kind::Null);
        assert_eq!(get(&v, "g").kind, Kind::Str("x".into()));
        assert!(matches!(&get(&v, "h").kind, Kind::List(items) if items.len() == 2));
    }

    #[test]
    fn dotted_paths_merge() {
        let (v, d) = lower(r#"{ a.b = 1; a.c = 2; x = { y = 1; }; x = { z = 2; }; "q r" = 3; }"#);
        assert!(d.is_empty(), "{d:?}");
        let a = get(&v, "a");
        assert_eq!(get(a, "b").kind, Kind::Int(1));
        assert_eq!(get(a, "c").kind, Kind::Int(2));
        assert_eq!(get(get(&v, "x"), "z").kind, Kind::Int(2));
        assert_eq!(get(&v, "q r").kind, Kind::Int(3));
    }

    #[test]
    fn duplicates_are_reported() {
        for text in ["{ a = 1; a = 2; }", "{ a = 1; a.b = 2; }", "{ a.b = 1; a = { b = 2; }; }"] {
            let (_, d) = lower(text);
            assert_eq!(d.len(), 1, "{text}: {d:?}");
            assert_eq!(d[0].code, "duplicate_key");
        }
    }

    #[test]
    fn non_data_is_opaque_with_exact_span() {
        let text = r#"{ a = "x${y}z"; b = let q = 1; in q; c = f 1; d = x // y; e = ./p; }"#;
        let (v, _) = lower(text);
        let a = get(&v, "a");
        assert!(matches!(&a.kind, Kind::Opaque { why } if why.contains("interpolation")));
        assert_eq!(&text[a.span.start as usize..a.span.end as usize], "${y}");
        for key in ["b", "c", "d", "e"] {
            assert!(matches!(get(&v, key).kind, Kind::Opaque { .. }), "{key}");
        }
    }

    #[test]
    fn nodes_are_not_lowered() {
        let (v, d) = lower(
            r#"{ nodes.a = { pkgs, ... }: { x = pkgs.y; }; nodes = { b = import ./b.nix; }; nodes.c.d = 1; }"#,
        );
        assert!(d.is_empty(), "{d:?}");
        let nodes = get(&v, "nodes");
        for n in ["a", "b", "c"] {
            assert_eq!(get(nodes, n).kind, Kind::Module, "{n}");
        }
    }

    #[test]
    fn json_nodes_become_modules() {
        let j = serde_json::json!({ "nodes": { "m": null }, "steps": [ { "sleep": 1.5 } ], "timeout": 3 });
        let v = from_json(&j, Span::default());
        assert_eq!(get(get(&v, "nodes"), "m").kind, Kind::Module);
        assert_eq!(get(&v, "timeout").kind, Kind::Int(3));
    }
}
