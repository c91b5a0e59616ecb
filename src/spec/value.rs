//! A small spanned value tree: the static-data subset of a Nix expression.
//!
//! Lowering turns literals, lists and attribute sets into data and anything
//! else (variables, `let`, calls, interpolation, `//`, paths, …) into
//! [`Kind::Opaque`] with a reason, so that later checks can say exactly which
//! sub-expression is not plain data. The values of `nodes.<name>` are NixOS
//! modules and are never lowered ([`Kind::Module`]). The same tree is built
//! from evaluator JSON ([`from_json`]), so both paths share one converter.

use std::collections::HashMap;
use std::rc::Rc;

use rnix::ast::{self, HasEntry};
use rnix::{SyntaxKind, SyntaxNode};
use rowan::ast::AstNode;

use crate::diagnostic::{Diagnostic, FileId, Span};
use crate::spec::strings;

mod green;
mod json;

pub use json::{from_json, from_json_located};

/// Nesting deeper than this is reported rather than recursed into.
const MAX_DEPTH: usize = 200;
/// Expressions lowered per description, folding included: a bound on the
/// time and memory `let`, `map` and `++` can make the folding take
/// (`let a = [ b b ]; b = [ c c ]; …` doubles at every name).
const MAX_WORK: usize = 200_000;

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
    /// Not static data in `steps`, where Nix may compute it: `expr` is a Nix
    /// expression for the value inside the evaluated description
    /// (`(builtins.elemAt description.steps 2).succeed`).
    Computed {
        why: String,
        expr: String,
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
            Kind::Opaque { why } | Kind::Computed { why, .. } => why.clone(),
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
    /// `test`: a runNixOSTest module; its top-level names are read, its
    /// values are modules.
    Test,
    Data,
}

impl Shape {
    fn child(self, key: &str) -> Shape {
        match self {
            Shape::Top if key == "nodes" => Shape::Nodes,
            Shape::Top if key == "test" => Shape::Test,
            Shape::Top | Shape::Data => Shape::Data,
            Shape::Nodes | Shape::Module | Shape::Test => Shape::Module,
        }
    }
}

/// Lowers a description's top-level expression. Problems found on the way
/// (duplicate attributes, out-of-range integers) are appended to `diags`.
/// A top-level `let … in` or `with …;` is looked through, and so is a
/// top-level function (`{ pkgs, lib, nodes, ... }: { … }`, see
/// [`lower_description`]): `let` bindings of plain data are folded where
/// the data uses them, other values stay opaque at the exact variable.
pub fn lower_root(file: FileId, expr: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Value {
    lower_description(file, expr, diags).0
}

/// [`lower_root`], also telling whether the description is a function.
/// Non-data values under `steps` become [`Kind::Computed`], located in the
/// evaluated description.
pub fn lower_description(file: FileId, expr: &ast::Expr, diags: &mut Vec<Diagnostic>) -> (Value, bool) {
    let mut l = Lowering { file, diags, env: None, work: 0 };
    let mut expr = expr.clone();
    let mut function = false;
    loop {
        let body = match &expr {
            ast::Expr::LetIn(let_in) => {
                l.push_let(let_in);
                let_in.body()
            }
            ast::Expr::With(w) => w.body(),
            ast::Expr::Paren(p) => p.expr(),
            ast::Expr::Root(r) => r.expr(),
            ast::Expr::Lambda(lambda) if !function => {
                function = true;
                l.push_params(lambda);
                lambda.body()
            }
            _ => None,
        };
        match body {
            Some(body) => expr = body,
            None => break,
        }
    }
    let mut root = l.expr(&expr, Shape::Top, 0);
    if let Kind::Attrs(entries) = &mut root.kind {
        for e in entries.iter_mut().filter(|e| e.key == "steps") {
            mark_computed(&mut e.value, "description.steps".to_string());
        }
    }
    (root, function)
}

/// Turns every opaque value below `v` into [`Kind::Computed`] at `path`.
/// The Nix path of a value is written out only for the opaque ones
/// (writing it for every value was 2 % of a cold `check`).
fn mark_computed(v: &mut Value, path: String) {
    mark_computed_at(v, &ValuePath::Root(&path));
}

/// Where a value is below the description, written out on demand.
enum ValuePath<'a> {
    Root(&'a str),
    Attr(&'a ValuePath<'a>, &'a str),
    Elem(&'a ValuePath<'a>, usize),
}

impl std::fmt::Display for ValuePath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValuePath::Root(root) => f.write_str(root),
            ValuePath::Attr(parent, key) => {
                write!(f, "{parent}.{}", crate::spec::strings::nix_attr_name(key))
            }
            ValuePath::Elem(parent, i) => write!(f, "(builtins.elemAt {parent} {i})"),
        }
    }
}

fn mark_computed_at(v: &mut Value, path: &ValuePath) {
    match &mut v.kind {
        Kind::Opaque { why } => {
            v.kind = Kind::Computed { why: std::mem::take(why), expr: path.to_string() };
        }
        Kind::List(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                mark_computed_at(item, &ValuePath::Elem(path, i));
            }
        }
        Kind::Attrs(entries) => {
            for e in entries {
                mark_computed_at(&mut e.value, &ValuePath::Attr(path, &e.key));
            }
        }
        _ => {}
    }
}

/// What a name in scope stands for.
#[derive(Clone)]
enum Binding {
    /// A `let` binding, lowered where it is used (in its own scope, as
    /// `let` is recursive).
    Expr(ast::Expr),
    /// A value already lowered (a `map` function's argument).
    Value(Value),
    /// Known to exist, value unknown (`pkgs`, `nodes`, …).
    Unknown,
}

/// One level of names: a `let`, a function's parameters.
struct Scope {
    vars: HashMap<String, Binding>,
    parent: Option<Rc<Scope>>,
}

struct Lowering<'a> {
    file: FileId,
    diags: &'a mut Vec<Diagnostic>,
    /// Names in scope, innermost first.
    env: Option<Rc<Scope>>,
    /// Expressions lowered so far (bounded by [`MAX_WORK`]).
    work: usize,
}

/// `e` without surrounding parentheses.
fn strip_parens(e: &ast::Expr) -> ast::Expr {
    let mut e = e.clone();
    while let ast::Expr::Paren(p) = &e {
        match p.expr() {
            Some(inner) => e = inner,
            None => break,
        }
    }
    e
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
        if shape == Shape::Module || (shape == Shape::Test && !matches!(expr, ast::Expr::AttrSet(_))) {
            return Value { kind: Kind::Module, span };
        }
        if depth > MAX_DEPTH {
            return opaque("an expression nested too deeply", span);
        }
        self.work += 1;
        if self.work > MAX_WORK {
            return opaque("an expression too large to fold statically", span);
        }
        match expr {
            ast::Expr::Paren(p) => match p.expr() {
                Some(inner) => self.expr(&inner, shape, depth + 1),
                None => opaque("an incomplete expression", span),
            },
            ast::Expr::Literal(lit) => self.literal(lit, span),
            ast::Expr::Str(s) => self.string(s, span),
            ast::Expr::Ident(id) => match green::ident_text(id).unwrap_or_default() {
                "true" => Value { kind: Kind::Bool(true), span },
                "false" => Value { kind: Kind::Bool(false), span },
                "null" => Value { kind: Kind::Null, span },
                name => self.variable(name, shape, span, depth),
            },
            ast::Expr::UnaryOp(op) => self.unary(op, span, depth),
            ast::Expr::List(list) => {
                let items = list.items().map(|item| self.expr(&item, Shape::Data, depth + 1)).collect();
                Value { kind: Kind::List(items), span }
            }
            ast::Expr::AttrSet(set) => self.attrset(set, shape, span, depth),
            ast::Expr::Lambda(_) => Value { kind: Kind::Lambda, span },
            ast::Expr::Apply(app) => {
                if let Some(v) = self.apply(app, span, depth) {
                    return v;
                }
                let callee = app.lambda().map(|l| l.syntax().text().to_string());
                match callee.as_deref() {
                    Some("import") => opaque("an `import`", span),
                    Some(name) if name.len() <= 40 && !name.contains('\n') => {
                        opaque(format!("a function call (`{name} …`)"), span)
                    }
                    _ => opaque("a function call", span),
                }
            }
            ast::Expr::LetIn(let_in) => {
                let saved = self.env.clone();
                self.push_let(let_in);
                let v = match let_in.body() {
                    Some(body) => self.expr(&body, shape, depth + 1),
                    None => opaque("an incomplete `let … in` expression", span),
                };
                self.env = saved;
                v
            }
            ast::Expr::LegacyLet(_) => opaque("a `let { … }` expression", span),
            ast::Expr::With(_) => opaque("a `with` expression", span),
            ast::Expr::IfElse(ite) => {
                // A condition that folds picks its branch (`if ok then … else …`
                // in a `let`-bound helper); anything else stays opaque.
                let cond = ite.condition().map(|c| self.expr(&c, Shape::Data, depth + 1).kind);
                let branch = match cond {
                    Some(Kind::Bool(true)) => ite.body(),
                    Some(Kind::Bool(false)) => ite.else_body(),
                    _ => return opaque("an `if … then … else` expression", span),
                };
                match branch {
                    Some(b) => self.expr(&b, shape, depth + 1),
                    None => opaque("an incomplete `if … then … else` expression", span),
                }
            }
            ast::Expr::Assert(_) => opaque("an `assert` expression", span),
            ast::Expr::Select(sel) => self.select(sel, span, depth),
            ast::Expr::HasAttr(_) => opaque("an `?` attribute test", span),
            ast::Expr::BinOp(op) => {
                if let Some(v) = self.binop(op, span, depth) {
                    return v;
                }
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
        self.string_in(s, span, 0)
    }

    /// A string literal; interpolations of values that fold to strings are
    /// folded (`"${port}"` with `port = "80"`, `"${toString 80}"`). Each
    /// interpolation is decoded as a private-use stand-in first, so that an
    /// indented string's indentation is stripped exactly as Nix does it
    /// (an interpolation counts as text).
    fn string_in(&mut self, s: &ast::Str, span: Span, depth: usize) -> Value {
        const SLOT: char = '\u{E002}';
        if let Some((multiline, raw)) = green::plain_string(s) {
            let text = if multiline { strings::decode_indented(&raw) } else { strings::decode_plain(&raw) };
            if text.contains('\0') {
                return self.nul_in_string(span);
            }
            return Value { kind: Kind::Str(text), span };
        }
        let mut raw = String::new();
        let mut multiline = false;
        let mut parts: Vec<String> = Vec::new();
        for child in s.syntax().children_with_tokens() {
            match child {
                rnix::NodeOrToken::Token(t) => match t.kind() {
                    SyntaxKind::TOKEN_STRING_START => multiline = t.text() == "''",
                    SyntaxKind::TOKEN_STRING_CONTENT => raw.push_str(t.text()),
                    _ => {}
                },
                rnix::NodeOrToken::Node(n) => {
                    let inner = ast::Interpol::cast(n.clone()).and_then(|i| i.expr());
                    let folded = match inner {
                        Some(e) if depth <= MAX_DEPTH => self.expr(&e, Shape::Data, depth + 1),
                        _ => opaque("string interpolation (`${…}`)", self.span(&n)),
                    };
                    match folded.kind {
                        Kind::Str(text) if !s.syntax().text().contains_char(SLOT) => {
                            raw.push(SLOT);
                            parts.push(text);
                        }
                        Kind::Invalid => return Value { kind: Kind::Invalid, span },
                        _ => return opaque("string interpolation (`${…}`)", self.span(&n)),
                    }
                }
            }
        }
        let text = if multiline { strings::decode_indented(&raw) } else { strings::decode_plain(&raw) };
        if text.contains('\0') {
            return self.nul_in_string(span);
        }
        if parts.is_empty() {
            return Value { kind: Kind::Str(text), span };
        }
        let mut out = String::with_capacity(text.len());
        let mut parts = parts.into_iter();
        for c in text.chars() {
            if c == SLOT {
                out.push_str(&parts.next().unwrap_or_default());
            } else {
                out.push(c);
            }
        }
        Value { kind: Kind::Str(out), span }
    }

    /// Nix ends a string at a NUL byte; the Python script would keep the
    /// rest. Neither meaning is safe to pick.
    fn nul_in_string(&mut self, span: Span) -> Value {
        self.diags.push(
            Diagnostic::error("nul_in_string", Some(span), "the string contains a NUL byte")
                .with_label("Nix would cut the string here")
                .with_hint("remove the NUL byte; Nix strings cannot carry it"),
        );
        Value { kind: Kind::Invalid, span }
    }

    // ----- folding: a small evaluator for the plain-data subset of Nix -----

    /// Adds the bindings of a `let` as the innermost scope.
    fn push_let(&mut self, let_in: &ast::LetIn) {
        let mut vars = HashMap::new();
        for entry in let_in.entries() {
            match entry {
                ast::Entry::AttrpathValue(apv) => {
                    let (path, value) = green::attrpath_value(&apv);
                    let mut attrs = path.into_iter().flat_map(|p| p.attrs());
                    let name = match attrs.next() {
                        Some(ast::Attr::Ident(id)) => green::ident_text(&id).map(str::to_owned),
                        _ => None,
                    };
                    let Some(name) = name else { continue };
                    let binding = match (attrs.next(), value) {
                        (None, Some(value)) => Binding::Expr(value),
                        _ => Binding::Unknown,
                    };
                    vars.insert(name, binding);
                }
                ast::Entry::Inherit(inh) => {
                    for attr in inh.attrs() {
                        if let ast::Attr::Ident(id) = attr
                            && let Some(t) = id.ident_token()
                        {
                            let name = t.text().to_string();
                            // `inherit x;` is the outer `x`, which would be
                            // this binding again in the recursive scope.
                            let binding = match (inh.from().is_some(), self.lookup(&name)) {
                                (false, Some((Binding::Value(v), _))) => Binding::Value(v),
                                _ => Binding::Unknown,
                            };
                            vars.insert(name, binding);
                        }
                    }
                }
            }
        }
        self.env = Some(Rc::new(Scope { vars, parent: self.env.take() }));
    }

    /// Adds a function's parameters (values unknown) as the innermost scope.
    fn push_params(&mut self, lambda: &ast::Lambda) {
        let mut vars = HashMap::new();
        match lambda.param() {
            Some(ast::Param::IdentParam(p)) => {
                if let Some(name) = p.ident().and_then(|i| i.ident_token()) {
                    vars.insert(name.text().to_string(), Binding::Unknown);
                }
            }
            Some(ast::Param::Pattern(pat)) => {
                for entry in pat.pat_entries() {
                    if let Some(name) = entry.ident().and_then(|i| i.ident_token()) {
                        vars.insert(name.text().to_string(), Binding::Unknown);
                    }
                }
                if let Some(name) = pat.pat_bind().and_then(|b| b.ident()).and_then(|i| i.ident_token()) {
                    vars.insert(name.text().to_string(), Binding::Unknown);
                }
            }
            None => {}
        }
        self.env = Some(Rc::new(Scope { vars, parent: self.env.take() }));
    }

    /// The binding of `name` and the scope that holds it.
    fn lookup(&self, name: &str) -> Option<(Binding, Rc<Scope>)> {
        let mut scope = self.env.clone();
        while let Some(s) = scope {
            if let Some(b) = s.vars.get(name) {
                return Some((b.clone(), s));
            }
            scope = s.parent.clone();
        }
        None
    }

    fn variable(&mut self, name: &str, shape: Shape, span: Span, depth: usize) -> Value {
        match self.lookup(name) {
            Some((Binding::Expr(e), scope)) => {
                let saved = self.env.replace(scope);
                let v = self.expr(&e, shape, depth + 1);
                self.env = saved;
                match v.kind {
                    // Say which variable, not what it is bound to.
                    Kind::Opaque { why } if !why.starts_with("the variable") => {
                        opaque(format!("the variable `{name}` ({why})"), span)
                    }
                    Kind::Opaque { why } => opaque(why, span),
                    _ => v,
                }
            }
            Some((Binding::Value(v), _)) => v,
            Some((Binding::Unknown, _)) | None => opaque(format!("the variable `{name}`"), span),
        }
    }

    /// Folds calls of `toString`, `map`, `concatMap` and `concatLists` on
    /// known values; `None` leaves the call opaque.
    fn apply(&mut self, app: &ast::Apply, span: Span, depth: usize) -> Option<Value> {
        // `f a b` is `(f a) b`: collect the arguments.
        let mut args = vec![app.argument()?];
        let mut callee = app.lambda()?;
        while let ast::Expr::Apply(inner) = &callee {
            args.push(inner.argument()?);
            callee = inner.lambda()?;
        }
        args.reverse();
        // A function bound by `let` (a Python `def` helper's counterpart).
        if let Some((lambda, scope)) = self.bound_lambda(&callee) {
            return self.call_curried(lambda, scope, &args, depth);
        }
        let name = callee.syntax().text().to_string();
        let base = name.strip_prefix("builtins.").or_else(|| name.strip_prefix("lib.")).unwrap_or(&name);
        // A local binding of that name is not the builtin.
        let head = name.split('.').next().unwrap_or_default();
        if self.lookup(head).is_some_and(|(b, _)| !matches!(b, Binding::Unknown) || head == base) {
            return None;
        }
        match (base, args.as_slice()) {
            ("toString", [x]) => {
                let v = self.expr(x, Shape::Data, depth + 1);
                let text = match v.kind {
                    Kind::Str(s) => s,
                    Kind::Int(i) => i.to_string(),
                    Kind::Bool(true) => "1".into(),
                    Kind::Bool(false) | Kind::Null => String::new(),
                    _ => return None,
                };
                Some(Value { kind: Kind::Str(text), span })
            }
            ("map" | "concatMap", [f, xs]) => {
                // `f`, `x: …`, or `f a` (a `let`-bound function given its first arguments).
                let mut fixed = Vec::new();
                let mut head = strip_parens(f);
                while let ast::Expr::Apply(inner) = &head {
                    fixed.push(inner.argument()?);
                    head = strip_parens(&inner.lambda()?);
                }
                fixed.reverse();
                let (lambda, scope) = match &head {
                    ast::Expr::Lambda(lambda) if fixed.is_empty() => (lambda.clone(), self.env.clone()),
                    _ => self.bound_lambda(&head)?,
                };
                let Kind::List(items) = self.expr(xs, Shape::Data, depth + 1).kind else { return None };
                let mut out = Vec::new();
                for item in items {
                    let v = if fixed.is_empty() {
                        self.call(&lambda, scope.clone(), item, depth)?
                    } else {
                        self.call_partial(lambda.clone(), scope.clone(), &fixed, item, depth)?
                    };
                    if base == "map" {
                        out.push(v);
                    } else {
                        let Kind::List(inner) = v.kind else { return None };
                        out.extend(inner);
                    }
                }
                Some(Value { kind: Kind::List(out), span })
            }
            ("concatLists", [xs]) => {
                let Kind::List(lists) = self.expr(xs, Shape::Data, depth + 1).kind else { return None };
                let mut out = Vec::new();
                for list in lists {
                    let Kind::List(inner) = list.kind else { return None };
                    out.extend(inner);
                }
                Some(Value { kind: Kind::List(out), span })
            }
            _ => None,
        }
    }

    /// The function literal a `let` binds to the name `e`, with the scope
    /// it was defined in (where its body's free names resolve).
    fn bound_lambda(&self, e: &ast::Expr) -> Option<(ast::Lambda, Option<Rc<Scope>>)> {
        let ast::Expr::Ident(id) = strip_parens(e) else { return None };
        let name = id.ident_token()?.text().to_string();
        match self.lookup(&name)? {
            (Binding::Expr(bound), scope) => match strip_parens(&bound) {
                ast::Expr::Lambda(lambda) => Some((lambda, Some(scope))),
                _ => None,
            },
            _ => None,
        }
    }

    /// Applies a `let`-bound function to all of its arguments
    /// (`f a b` with `f = a: b: …`); a partial application stays opaque.
    fn call_curried(
        &mut self,
        mut lambda: ast::Lambda,
        mut scope: Option<Rc<Scope>>,
        args: &[ast::Expr],
        depth: usize,
    ) -> Option<Value> {
        let (last, init) = args.split_last()?;
        for arg in init {
            let value = self.expr(arg, Shape::Data, depth + 1);
            let vars = self.bind_params(&lambda, value)?;
            let ast::Expr::Lambda(inner) = strip_parens(&lambda.body()?) else { return None };
            scope = Some(Rc::new(Scope { vars, parent: scope }));
            lambda = inner;
        }
        let value = self.expr(last, Shape::Data, depth + 1);
        self.call(&lambda, scope, value, depth + 1)
    }

    /// Applies a `let`-bound function to its first arguments `fixed` and
    /// then to the already lowered `last` (`map (check "a") xs`).
    fn call_partial(
        &mut self,
        mut lambda: ast::Lambda,
        mut scope: Option<Rc<Scope>>,
        fixed: &[ast::Expr],
        last: Value,
        depth: usize,
    ) -> Option<Value> {
        for arg in fixed {
            let value = self.expr(arg, Shape::Data, depth + 1);
            let vars = self.bind_params(&lambda, value)?;
            let ast::Expr::Lambda(inner) = strip_parens(&lambda.body()?) else { return None };
            scope = Some(Rc::new(Scope { vars, parent: scope }));
            lambda = inner;
        }
        self.call(&lambda, scope, last, depth + 1)
    }

    /// Applies a function literal to a known value (`x: …` or `{ a, b ? 1 }: …`),
    /// its body seeing `scope` (where it was defined) and its parameters.
    fn call(
        &mut self,
        lambda: &ast::Lambda,
        scope: Option<Rc<Scope>>,
        arg: Value,
        depth: usize,
    ) -> Option<Value> {
        let vars = self.bind_params(lambda, arg)?;
        let saved = self.env.replace(Rc::new(Scope { vars, parent: scope }));
        let v = lambda.body().map(|body| self.expr(&body, Shape::Data, depth + 1));
        self.env = saved;
        v
    }

    /// A function's parameters bound to its argument; `None` when a pattern
    /// does not fit the value.
    fn bind_params(&mut self, lambda: &ast::Lambda, arg: Value) -> Option<HashMap<String, Binding>> {
        let mut vars = HashMap::new();
        match lambda.param()? {
            ast::Param::IdentParam(p) => {
                vars.insert(p.ident()?.ident_token()?.text().to_string(), Binding::Value(arg));
            }
            ast::Param::Pattern(pat) => {
                let entries = arg.attrs()?.to_vec();
                for entry in pat.pat_entries() {
                    let name = entry.ident()?.ident_token()?.text().to_string();
                    let binding = match entries.iter().find(|e| e.key == name) {
                        Some(e) => Binding::Value(e.value.clone()),
                        None => Binding::Expr(entry.default()?),
                    };
                    vars.insert(name, binding);
                }
                if let Some(name) = pat.pat_bind().and_then(|b| b.ident()).and_then(|i| i.ident_token()) {
                    vars.insert(name.text().to_string(), Binding::Value(arg));
                }
            }
        }
        Some(vars)
    }

    /// Folds `++` of lists and `+` of strings or integers.
    fn binop(&mut self, op: &ast::BinOp, span: Span, depth: usize) -> Option<Value> {
        let kind = op.operator()?;
        if matches!(kind, ast::BinOpKind::Equal | ast::BinOpKind::NotEqual) {
            // Equality of known scalars (strings, integers, booleans, null).
            let lhs = self.expr(&op.lhs()?, Shape::Data, depth + 1).kind;
            let rhs = self.expr(&op.rhs()?, Shape::Data, depth + 1).kind;
            let scalar = |k: &Kind| matches!(k, Kind::Str(_) | Kind::Int(_) | Kind::Bool(_) | Kind::Null);
            if !scalar(&lhs) || !scalar(&rhs) {
                return None;
            }
            let equal = lhs == rhs;
            let kind = Kind::Bool(if matches!(kind, ast::BinOpKind::Equal) { equal } else { !equal });
            return Some(Value { kind, span });
        }
        if !matches!(kind, ast::BinOpKind::Concat | ast::BinOpKind::Add) {
            return None;
        }
        let lhs = self.expr(&op.lhs()?, Shape::Data, depth + 1);
        let rhs = self.expr(&op.rhs()?, Shape::Data, depth + 1);
        let kind = match (kind, lhs.kind, rhs.kind) {
            (ast::BinOpKind::Concat, Kind::List(mut a), Kind::List(b)) => {
                a.extend(b);
                Kind::List(a)
            }
            (ast::BinOpKind::Add, Kind::Str(a), Kind::Str(b)) => Kind::Str(a + &b),
            (ast::BinOpKind::Add, Kind::Int(a), Kind::Int(b)) => Kind::Int(a.checked_add(b)?),
            _ => return None,
        };
        Some(Value { kind, span })
    }

    /// `a.b.c` of a known attribute set (no `or` default).
    fn select(&mut self, sel: &ast::Select, span: Span, depth: usize) -> Value {
        let not_static = || opaque("an attribute selection", span);
        if sel.default_expr().is_some() {
            return not_static();
        }
        let Some(base) = sel.expr() else { return not_static() };
        let mut v = self.expr(&base, Shape::Data, depth + 1);
        for attr in sel.attrpath().into_iter().flat_map(|p| p.attrs()) {
            let Ok((name, _)) = self.attr_name(&attr) else { return not_static() };
            let found = v.attrs().and_then(|es| es.iter().find(|e| e.key == name)).map(|e| e.value.clone());
            match found {
                Some(inner) => v = inner,
                None => return not_static(),
            }
        }
        v
    }

    /// The static name of one attribute path element.
    fn attr_name(&mut self, attr: &ast::Attr) -> Result<(String, Span), Value> {
        let span = self.span(attr.syntax());
        match attr {
            ast::Attr::Ident(id) => match green::ident_text(id) {
                Some(name) => Ok((name.to_owned(), span)),
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
                    let (attrpath, value_expr) = green::attrpath_value(&apv);
                    // The first name apart: most paths have one, and need no `Vec`.
                    let mut first = None;
                    let mut rest = Vec::new();
                    let mut bad = None;
                    for attr in attrpath.into_iter().flat_map(|p| p.attrs()) {
                        match self.attr_name(&attr) {
                            Ok(name) if first.is_none() => first = Some(name),
                            Ok(name) => rest.push(name),
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
                    let (Some(value_expr), Some(first)) = (value_expr, first) else { continue };
                    self.insert(&mut entries, first, rest.into_iter(), &value_expr, shape, depth);
                }
                ast::Entry::Inherit(inh) => {
                    let from = inh.from().is_some();
                    for attr in inh.attrs() {
                        match self.attr_name(&attr) {
                            Ok((key, key_span)) => {
                                let why = |key: &str| {
                                    if from {
                                        format!("`inherit (…) {key}`")
                                    } else {
                                        format!("`inherit {key}` (a variable)")
                                    }
                                };
                                let child = shape.child(&key);
                                let value = if child == Shape::Module {
                                    Value { kind: Kind::Module, span: key_span }
                                } else if from {
                                    opaque(why(&key), key_span)
                                } else {
                                    // `inherit x;` is `x = x;` with the outer `x`.
                                    match self.variable(&key, child, key_span, depth + 1) {
                                        Value { kind: Kind::Opaque { .. }, .. } => {
                                            opaque(why(&key), key_span)
                                        }
                                        v => Value { span: key_span, ..v },
                                    }
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
        (key, key_span): (String, Span),
        mut rest: std::vec::IntoIter<(String, Span)>,
        expr: &ast::Expr,
        shape: Shape,
        depth: usize,
    ) {
        let child_shape = shape.child(&key);
        let Some(next) = rest.next() else {
            let value = self.expr(expr, child_shape, depth + 1);
            self.add(entries, Entry { key, key_span, value });
            return;
        };
        if child_shape == Shape::Module {
            // `nodes.machine.foo = …`: the node exists; its body is not ours.
            if !entries.iter().any(|e| e.key == key) {
                let value = Value { kind: Kind::Module, span: key_span };
                entries.push(Entry { key, key_span, value });
            }
            return;
        }
        let Some(idx) = entries.iter().position(|e| e.key == key) else {
            let mut inner = Vec::new();
            self.insert(&mut inner, next, rest, expr, child_shape, depth + 1);
            let value = Value { kind: Kind::Attrs(inner), span: key_span };
            entries.push(Entry { key, key_span, value });
            return;
        };
        let first_span = entries[idx].key_span;
        match &mut entries[idx].value.kind {
            Kind::Attrs(inner) => {
                let mut inner = std::mem::take(inner);
                self.insert(&mut inner, next, rest, expr, child_shape, depth + 1);
                entries[idx].value.kind = Kind::Attrs(inner);
            }
            _ => self.duplicate(&key, key_span, first_span),
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

#[cfg(test)]
mod tests;
