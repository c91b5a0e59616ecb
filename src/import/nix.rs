//! The Nix side of `import`: finds the tests in a file (every attribute set
//! with a `testScript`, wherever it sits: the argument of `runNixOSTest`,
//! `makeTest`, `import ./make-test-python.nix (…)`, the body of a function of
//! `{ pkgs, lib, … }`), and takes them apart into nodes (copied source, with
//! comments), other options and the testScript (decoded as Nix decodes it,
//! with every `${…}` replaced by a placeholder the Python side can see).

use std::collections::BTreeSet;

use rnix::ast::{self, HasEntry};
use rnix::{NodeOrToken, SyntaxKind, SyntaxNode};
use rowan::ast::AstNode;

use crate::spec::strings::{decode_indented, decode_plain};

/// The prefix of the Python identifier that stands for the `N`th
/// interpolation of a testScript: `__nixvm_interp_N__`.
pub const PLACEHOLDER_PREFIX: &str = "__nixvm_interp_";

/// The placeholder of interpolation `n`.
pub fn placeholder(n: usize) -> String {
    format!("{PLACEHOLDER_PREFIX}{n}__")
}

/// One test found in a file.
#[derive(Debug)]
pub struct TestSource {
    /// `name = "…"` when it is a plain string.
    pub name: Option<String>,
    /// Key of the attribute holding the test when a file holds several
    /// (`{ a = makeTest {…}; b = makeTest {…}; }`).
    pub attr: Option<String>,
    pub nodes: Vec<NodeSource>,
    pub script: Option<ScriptSource>,
    /// Options other than `name`, `nodes`, `testScript`.
    pub options: Vec<OptionSource>,
    /// 1-based line of the test's attribute set.
    pub line: usize,
    /// Problems with the Nix side (a `nodes` that is not an attribute set …).
    pub problems: Vec<(usize, String, String)>,
    /// Things of the Nix side dropped or replaced on purpose, said once.
    pub notes: Vec<(usize, String)>,
    /// `let` bindings around the test (innermost first), which copied
    /// nodes may need.
    pub scope: Vec<Binding>,
}

/// One `name = value;` of a `let` around the test.
#[derive(Clone, Debug)]
pub struct Binding {
    pub name: String,
    /// The whole binding's source, `name = value;`.
    pub text: String,
    pub free: BTreeSet<String>,
    /// The value when it is a plain string or integer literal.
    pub literal: Option<Literal>,
    /// Columns of indentation of the line the binding starts on.
    pub indent: usize,
}

/// A literal a `${…}` in the testScript can be replaced with.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
}

/// One node: its name and the source of its module, comments included.
#[derive(Debug)]
pub struct NodeSource {
    pub name: String,
    pub text: String,
    pub line: usize,
    /// Indentation (columns) of the line the value starts on, to re-indent.
    pub indent: usize,
    /// Variables the module uses that it does not bind itself.
    pub free: BTreeSet<String>,
    /// Whether the module is a function (`{ pkgs, ... }: …`).
    pub is_function: bool,
    /// The comments right above the node's definition.
    pub comments: Vec<String>,
}

/// An option of the test other than nodes and testScript.
#[derive(Debug)]
pub struct OptionSource {
    pub key: String,
    pub text: String,
    pub line: usize,
    /// Indentation (columns) of the line the option starts on, to re-indent.
    pub indent: usize,
    /// The value when it is an integer literal (`globalTimeout`).
    pub int: Option<i64>,
}

/// The testScript, decoded.
#[derive(Debug)]
pub struct ScriptSource {
    /// The Python text as Nix would produce it, with placeholders.
    pub text: String,
    /// Source text of each interpolation (`pkgs.hello`), by index.
    pub interpolations: Vec<String>,
    /// File line of the script's first decoded line.
    pub first_line: usize,
    /// The file line of each decoded line (a `${…}` spanning lines, or
    /// `''…'' + ''…''`, moves later lines down).
    pub line_map: Vec<usize>,
    /// The script is a function (`{ nodes, ... }: ''…''`).
    pub is_function: bool,
    /// Interpolations replaced by their literal value from the scope.
    pub resolved: Vec<usize>,
    /// The bindings the interpolations see: the script's own `let`s, then
    /// those around the test.
    pub scope: Vec<Binding>,
}

impl ScriptSource {
    /// The file line of 1-based decoded line `line`.
    pub fn file_line(&self, line: usize) -> usize {
        match self.line_map.get(line.saturating_sub(1)) {
            Some(l) => *l,
            None => match self.line_map.last() {
                Some(last) => last + line.saturating_sub(self.line_map.len()),
                None => self.first_line + line.saturating_sub(1),
            },
        }
    }
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Every test in `text` (already parsed by rnix without errors).
pub fn find_tests(root: &SyntaxNode, text: &str) -> Vec<TestSource> {
    let mut tests = Vec::new();
    for node in root.descendants() {
        let Some(set) = ast::AttrSet::cast(node.clone()) else { continue };
        if find_entry(&set, "testScript").is_none() {
            continue;
        }
        // A test nested inside another test (a node that is itself a test) is
        // not one of the file's tests.
        if node
            .ancestors()
            .skip(1)
            .any(|a| ast::AttrSet::cast(a).is_some_and(|s| find_entry(&s, "testScript").is_some()))
        {
            continue;
        }
        tests.push(read_test(&set, text));
    }
    tests
}

/// The value of `key = …;` (a one-element attribute path) in `set`.
fn find_entry(set: &ast::AttrSet, key: &str) -> Option<ast::Expr> {
    set.attrpath_values().find_map(|apv| {
        let path: Vec<_> = apv.attrpath()?.attrs().collect();
        (path.len() == 1 && attr_name(&path[0]).as_deref() == Some(key)).then(|| apv.value()).flatten()
    })
}

/// The name of a static attribute (`a`, `"a"`).
fn attr_name(attr: &ast::Attr) -> Option<String> {
    match attr {
        ast::Attr::Ident(id) => id.ident_token().map(|t| t.text().to_string()),
        ast::Attr::Str(s) => static_string(s),
        ast::Attr::Dynamic(_) => None,
    }
}

/// The value of a string without interpolations.
fn static_string(s: &ast::Str) -> Option<String> {
    let (text, interps) = decode_string(s);
    interps.is_empty().then_some(text)
}

/// Decodes a Nix string, replacing the `N`th interpolation by
/// [`placeholder`]`(N)`; returns the text and the interpolations' source
/// (trimmed).
fn decode_string(s: &ast::Str) -> (String, Vec<String>) {
    let (text, interps) = decode_string_raw(s);
    (text, interps.into_iter().map(|i| i.trim().to_string()).collect())
}

/// [`decode_string`] with the interpolations' source as written.
fn decode_string_raw(s: &ast::Str) -> (String, Vec<String>) {
    decode_string_from(s, 0)
}

/// [`decode_string_raw`] numbering placeholders from `first`.
fn decode_string_from(s: &ast::Str, first: usize) -> (String, Vec<String>) {
    let mut raw = String::new();
    let mut interps = Vec::new();
    let mut indented = false;
    for child in s.syntax().children_with_tokens() {
        match child {
            NodeOrToken::Token(t) => match t.kind() {
                SyntaxKind::TOKEN_STRING_CONTENT => raw.push_str(t.text()),
                SyntaxKind::TOKEN_STRING_START => indented = t.text() == "''",
                _ => {}
            },
            NodeOrToken::Node(n) if n.kind() == SyntaxKind::NODE_INTERPOL => {
                let inner = n.text().to_string();
                let inner = inner.strip_prefix("${").and_then(|i| i.strip_suffix('}')).unwrap_or(&inner);
                raw.push_str(&placeholder(first + interps.len()));
                interps.push(inner.to_string());
            }
            NodeOrToken::Node(_) => {}
        }
    }
    let text = if indented { decode_indented(&raw) } else { decode_plain(&raw) };
    (text, interps)
}

fn read_test(set: &ast::AttrSet, text: &str) -> TestSource {
    let line = line_of(text, usize::from(set.syntax().text_range().start()));
    let mut test = TestSource {
        name: None,
        attr: None,
        nodes: Vec::new(),
        script: None,
        options: Vec::new(),
        line,
        problems: Vec::new(),
        notes: Vec::new(),
        scope: enclosing_bindings(set.syntax()),
    };
    // `{ a = makeTest { … }; }`: remember `a`.
    for anc in set.syntax().ancestors().skip(1) {
        if let Some(apv) = ast::AttrpathValue::cast(anc.clone()) {
            test.attr = apv.attrpath().and_then(|p| p.attrs().last()).and_then(|a| attr_name(&a));
            break;
        }
    }
    for entry in set.entries() {
        let entry_line = line_of(text, usize::from(entry.syntax().text_range().start()));
        let apv = match entry {
            ast::Entry::AttrpathValue(apv) => apv,
            ast::Entry::Inherit(inh) => {
                test.problems.push((
                    entry_line,
                    "inherit".into(),
                    format!(
                        "`{}` is kept only as a comment: a description cannot inherit from the file's scope",
                        inh.syntax().text()
                    ),
                ));
                continue;
            }
        };
        let Some(path) = apv.attrpath() else { continue };
        let path: Vec<_> = path.attrs().collect();
        let Some(value) = apv.value() else { continue };
        let names: Option<Vec<String>> = path.iter().map(attr_name).collect();
        let Some(names) = names else {
            test.problems.push((
                entry_line,
                "dynamic attribute".into(),
                "a computed attribute name is not imported".into(),
            ));
            continue;
        };
        match names.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            // The name changes no Machine call: a computed one is replaced
            // by the file name, and said so.
            ["name"] => match &value {
                ast::Expr::Str(s) if static_string(s).is_some() => test.name = static_string(s),
                _ => test.notes.push((
                    entry_line,
                    format!(
                        "the name `{}` is computed; the file name is used instead",
                        value.syntax().text()
                    ),
                )),
            },
            ["testScript"] => test.script = read_script(&value, text, &test.scope),
            ["nodes"] => match strip_parens(&value) {
                ast::Expr::AttrSet(nodes) if nodes.rec_token().is_none() => {
                    for node_entry in nodes.entries() {
                        let nl = line_of(text, usize::from(node_entry.syntax().text_range().start()));
                        match node_entry {
                            ast::Entry::AttrpathValue(n) => {
                                let npath: Vec<_> =
                                    n.attrpath().map(|p| p.attrs().collect()).unwrap_or_default();
                                let (Some(name), Some(v)) = (npath.first().and_then(attr_name), n.value())
                                else {
                                    continue;
                                };
                                if npath.len() == 1 {
                                    let mut node = node_source(name, &v, text);
                                    node.comments = leading_comments(n.syntax());
                                    test.nodes.push(node);
                                } else {
                                    test.problems.push((nl, "nodes".into(), format!("`nodes.{name}` is set through a nested attribute path; write it as one module")));
                                }
                            }
                            ast::Entry::Inherit(_) => test.problems.push((
                                nl,
                                "nodes".into(),
                                "`inherit` in `nodes` names a module from the file's scope".into(),
                            )),
                        }
                    }
                }
                _ => test.problems.push((
                    entry_line,
                    "nodes".into(),
                    "`nodes` is not a literal attribute set".into(),
                )),
            },
            ["nodes", name] => {
                let mut node = node_source(name.to_string(), &value, text);
                node.comments = leading_comments(apv.syntax());
                test.nodes.push(node);
            }
            // The old single-node form (`machine = { … };`) of makeTest.
            ["machine"] => test.nodes.push(node_source("machine".into(), &value, text)),
            _ => {
                let int = match &value {
                    ast::Expr::Literal(l) => l.syntax().text().to_string().parse().ok(),
                    _ => None,
                };
                let start = usize::from(apv.syntax().text_range().start());
                let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
                test.options.push(OptionSource {
                    key: names.join("."),
                    text: apv.syntax().text().to_string(),
                    line: entry_line,
                    indent: text[line_start..start].chars().take_while(|c| *c == ' ').count(),
                    int,
                });
            }
        }
    }
    test
}

fn strip_parens(expr: &ast::Expr) -> ast::Expr {
    let mut e = expr.clone();
    while let ast::Expr::Paren(p) = &e {
        match p.expr() {
            Some(inner) => e = inner,
            None => break,
        }
    }
    e
}

fn node_source(name: String, value: &ast::Expr, text: &str) -> NodeSource {
    let start = usize::from(value.syntax().text_range().start());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let indent = text[line_start..start].chars().take_while(|c| *c == ' ').count();
    let mut free = BTreeSet::new();
    free_vars(value.syntax(), &mut Vec::new(), &mut free, 0);
    NodeSource {
        name,
        text: value.syntax().text().to_string(),
        line: line_of(text, start),
        indent,
        free,
        is_function: matches!(strip_parens(value), ast::Expr::Lambda(_)),
        comments: Vec::new(),
    }
}

/// The comment tokens right before `node` (only whitespace between).
fn leading_comments(node: &SyntaxNode) -> Vec<String> {
    let mut comments = Vec::new();
    let mut at = node.prev_sibling_or_token();
    while let Some(el) = at {
        match el.kind() {
            SyntaxKind::TOKEN_WHITESPACE => {}
            SyntaxKind::TOKEN_COMMENT => {
                if let Some(t) = el.as_token() {
                    comments.push(t.text().to_string());
                }
            }
            _ => break,
        }
        at = el.prev_sibling_or_token();
    }
    comments.reverse();
    comments
}

/// The `let` bindings of the expressions around `node`, innermost first.
fn enclosing_bindings(node: &SyntaxNode) -> Vec<Binding> {
    let mut out = Vec::new();
    for anc in node.ancestors().skip(1) {
        let Some(let_in) = ast::LetIn::cast(anc) else { continue };
        out.extend(bindings_of(&let_in));
    }
    out
}

/// The `name = value;` bindings of one `let`.
fn bindings_of(let_in: &ast::LetIn) -> Vec<Binding> {
    let mut out = Vec::new();
    for apv in let_in.attrpath_values() {
        let path: Vec<_> = apv.attrpath().map(|p| p.attrs().collect()).unwrap_or_default();
        let [attr] = path.as_slice() else { continue };
        let (Some(name), Some(value)) = (attr_name(attr), apv.value()) else { continue };
        let mut free = BTreeSet::new();
        free_vars(value.syntax(), &mut Vec::new(), &mut free, 0);
        let literal = match strip_parens(&value) {
            ast::Expr::Str(s) => static_string(&s).map(Literal::Str),
            ast::Expr::Literal(l)
                if l.syntax().first_token().is_some_and(|t| t.kind() == SyntaxKind::TOKEN_INTEGER) =>
            {
                l.syntax().text().to_string().parse().ok().map(Literal::Int)
            }
            _ => None,
        };
        let start = usize::from(apv.syntax().text_range().start());
        let full = apv.syntax().ancestors().last().map(|r| r.text().to_string()).unwrap_or_default();
        let before = &full[..start.min(full.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let indent = before[line_start..].chars().take_while(|c| *c == ' ').count();
        out.push(Binding { name, text: apv.syntax().text().to_string(), free, literal, indent });
    }
    out
}

/// The value of an interpolation that is a literal binding of the scope:
/// `${port}`, `${toString port}`, `${builtins.toString port}`, `${toString 80}`.
fn static_interpolation(src: &str, scope: &[Binding]) -> Option<String> {
    let src = src.trim();
    let (arg, stringify) = match src.split_once(char::is_whitespace) {
        Some((f, arg)) if f == "toString" || f == "builtins.toString" => (arg.trim(), true),
        Some(_) => return None,
        None => (src, false),
    };
    if let Ok(i) = arg.parse::<i64>() {
        return stringify.then(|| i.to_string());
    }
    let binding = scope.iter().find(|b| b.name == arg)?;
    match binding.literal.as_ref()? {
        Literal::Str(s) => Some(s.clone()),
        // Nix refuses to interpolate an integer without toString.
        Literal::Int(i) => stringify.then(|| i.to_string()),
    }
}

fn read_script(value: &ast::Expr, text: &str, scope: &[Binding]) -> Option<ScriptSource> {
    let mut value = strip_parens(value);
    let mut is_function = false;
    if let ast::Expr::Lambda(l) = &value {
        is_function = true;
        value = strip_parens(&l.body()?);
    }
    // `let … in ''…''`: its literal bindings resolve interpolations too.
    let mut scope: Vec<Binding> = scope.to_vec();
    while let ast::Expr::LetIn(l) = &value {
        let mut inner = bindings_of(l);
        inner.extend(scope);
        scope = inner;
        value = strip_parens(&l.body()?);
    }
    // `''…'' + ''…''` (and `+ import ./helpers.nix`, kept as a placeholder).
    let mut parts = Vec::new();
    flatten_concat(&value, &mut parts, 0);
    if !parts.iter().any(|p| matches!(p, ast::Expr::Str(_))) {
        return None;
    }
    let mut script = ScriptSource {
        text: String::new(),
        interpolations: Vec::new(),
        first_line: 0,
        line_map: Vec::new(),
        is_function,
        resolved: Vec::new(),
        scope: Vec::new(),
    };
    let mut extra = Vec::new();
    for (n, part) in parts.iter().enumerate() {
        let start = usize::from(part.syntax().text_range().start());
        let mut first_line = line_of(text, start);
        let (decoded, raw_interps) = match part {
            ast::Expr::Str(s) => {
                // An indented string whose first line is blank starts on the next line.
                let raw = s.syntax().text().to_string();
                if let Some(rest) = raw.strip_prefix("''")
                    && rest.trim_start_matches(' ').starts_with('\n')
                {
                    first_line += 1;
                }
                decode_string_from(s, script.interpolations.len())
            }
            other => (placeholder(script.interpolations.len()), vec![other.syntax().text().to_string()]),
        };
        if n == 0 {
            script.first_line = first_line;
        }
        extra.extend(raw_interps.iter().map(|i| i.matches('\n').count()));
        // The file line of each decoded line of this part.
        let base = script.interpolations.len();
        let mut shift = 0;
        for (i, line) in decoded.split('\n').enumerate() {
            let l = first_line + i + shift;
            if i == 0 && !script.text.is_empty() && !script.text.ends_with('\n') {
                // Continues the previous part's last line.
            } else {
                script.line_map.push(l);
            }
            for (j, raw) in raw_interps.iter().enumerate() {
                if line.contains(&placeholder(base + j)) {
                    shift += raw.matches('\n').count();
                }
            }
        }
        script.text.push_str(&decoded);
        script.interpolations.extend(raw_interps.iter().map(|i| i.trim().to_string()));
    }
    // Interpolations of literal bindings are what Nix would produce: put
    // them in (the line map is already made).
    for (i, src) in script.interpolations.clone().iter().enumerate() {
        if extra[i] == 0
            && let Some(value) = static_interpolation(src, &scope)
            && !value.contains('\n')
        {
            script.text = script.text.replace(&placeholder(i), &value);
            script.resolved.push(i);
        }
    }
    script.scope = scope;
    Some(script)
}

/// The operands of a chain of `+`, in order.
fn flatten_concat(expr: &ast::Expr, out: &mut Vec<ast::Expr>, depth: usize) {
    let expr = strip_parens(expr);
    if let ast::Expr::BinOp(op) = &expr
        && op.operator() == Some(ast::BinOpKind::Add)
        && depth < MAX_WALK_DEPTH
        && let (Some(l), Some(r)) = (op.lhs(), op.rhs())
    {
        flatten_concat(&l, out, depth + 1);
        flatten_concat(&r, out, depth + 1);
        return;
    }
    out.push(expr);
}

/// Names every Nix evaluation has in scope.
const NIX_GLOBALS: &[&str] = &[
    "builtins",
    "true",
    "false",
    "null",
    "import",
    "toString",
    "map",
    "throw",
    "abort",
    "baseNameOf",
    "dirOf",
    "derivation",
    "isNull",
    "removeAttrs",
    "fetchTarball",
    "fetchurl",
    "fetchGit",
    "placeholder",
    "scopedImport",
    "__curPos",
    "fromTOML",
    "__nixPath",
];

/// Deepest expression nesting walked; the file passed a bracket-depth
/// check already, so this only guards the recursion.
const MAX_WALK_DEPTH: usize = 400;

/// Collects the variables `node` uses without binding them. Inside `with`
/// every name may come from the namespace, so none is reported there.
fn free_vars(
    node: &SyntaxNode,
    scopes: &mut Vec<BTreeSet<String>>,
    out: &mut BTreeSet<String>,
    depth: usize,
) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    let bound = |scopes: &Vec<BTreeSet<String>>, name: &str| {
        NIX_GLOBALS.contains(&name) || scopes.iter().any(|s| s.contains(name) || s.contains("\u{0}with"))
    };
    let ident = |n: &SyntaxNode| n.first_token().map(|t| t.text().to_string()).unwrap_or_default();
    match node.kind() {
        SyntaxKind::NODE_IDENT => {
            let name = ident(node);
            if !bound(scopes, &name) {
                out.insert(name);
            }
        }
        SyntaxKind::NODE_ATTRPATH => {
            for child in node.children() {
                if child.kind() != SyntaxKind::NODE_IDENT {
                    free_vars(&child, scopes, out, depth + 1);
                }
            }
        }
        SyntaxKind::NODE_LAMBDA => {
            let mut scope = BTreeSet::new();
            let children: Vec<_> = node.children().collect();
            for c in &children {
                match c.kind() {
                    SyntaxKind::NODE_IDENT_PARAM => {
                        scope.extend(c.children().map(|i| ident(&i)));
                    }
                    SyntaxKind::NODE_PATTERN => {
                        for p in c.children() {
                            match p.kind() {
                                SyntaxKind::NODE_PAT_ENTRY => {
                                    if let Some(i) = p.children().find(|i| i.kind() == SyntaxKind::NODE_IDENT)
                                    {
                                        scope.insert(ident(&i));
                                    }
                                }
                                SyntaxKind::NODE_PAT_BIND => {
                                    scope.extend(
                                        p.children()
                                            .filter(|i| i.kind() == SyntaxKind::NODE_IDENT)
                                            .map(|i| ident(&i)),
                                    );
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            scopes.push(scope);
            for c in &children {
                match c.kind() {
                    SyntaxKind::NODE_IDENT_PARAM => {}
                    SyntaxKind::NODE_PATTERN => {
                        // Defaults see the formals.
                        for p in c.children().filter(|p| p.kind() == SyntaxKind::NODE_PAT_ENTRY) {
                            for d in p.children().skip(1) {
                                free_vars(&d, scopes, out, depth + 1);
                            }
                        }
                    }
                    _ => free_vars(c, scopes, out, depth + 1),
                }
            }
            scopes.pop();
        }
        SyntaxKind::NODE_LET_IN | SyntaxKind::NODE_ATTR_SET | SyntaxKind::NODE_LEGACY_LET => {
            let binds = node.kind() != SyntaxKind::NODE_ATTR_SET
                || node.children_with_tokens().any(|c| c.kind() == SyntaxKind::TOKEN_REC);
            let mut scope = BTreeSet::new();
            if binds {
                for e in node.children() {
                    match e.kind() {
                        SyntaxKind::NODE_ATTRPATH_VALUE => {
                            if let Some(first) = e
                                .children()
                                .find(|c| c.kind() == SyntaxKind::NODE_ATTRPATH)
                                .and_then(|p| p.children().next())
                                .filter(|a| a.kind() == SyntaxKind::NODE_IDENT)
                            {
                                scope.insert(ident(&first));
                            }
                        }
                        SyntaxKind::NODE_INHERIT => {
                            scope.extend(
                                e.children()
                                    .filter(|c| c.kind() == SyntaxKind::NODE_IDENT)
                                    .map(|c| ident(&c)),
                            );
                        }
                        _ => {}
                    }
                }
            }
            // `inherit x;` reads `x` from the enclosing scope.
            for e in node.children().filter(|e| e.kind() == SyntaxKind::NODE_INHERIT) {
                free_vars(&e, scopes, out, depth + 1);
            }
            scopes.push(scope);
            for e in node.children().filter(|e| e.kind() != SyntaxKind::NODE_INHERIT) {
                free_vars(&e, scopes, out, depth + 1);
            }
            scopes.pop();
        }
        SyntaxKind::NODE_INHERIT => {
            match node.children().find(|c| c.kind() == SyntaxKind::NODE_INHERIT_FROM) {
                Some(from) => free_vars(&from, scopes, out, depth + 1),
                None => {
                    for c in node.children().filter(|c| c.kind() == SyntaxKind::NODE_IDENT) {
                        free_vars(&c, scopes, out, depth + 1);
                    }
                }
            }
        }
        SyntaxKind::NODE_WITH => {
            let mut children = node.children();
            if let Some(ns) = children.next() {
                free_vars(&ns, scopes, out, depth + 1);
            }
            scopes.push(BTreeSet::from(["\u{0}with".to_string()]));
            for c in children {
                free_vars(&c, scopes, out, depth + 1);
            }
            scopes.pop();
        }
        _ => {
            for c in node.children() {
                free_vars(&c, scopes, out, depth + 1);
            }
        }
    }
}

/// Source text of `set.key` entries matching `self.nixosModules.X` or
/// `inputs.self.nixosModules.X` (and `…nixosModules."X"`): the imports of
/// the flake's own modules, which a description names in `modules`.
pub fn own_module_imports(node_text: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let parsed = rnix::Root::parse(node_text);
    let mut found = Vec::new();
    for n in parsed.syntax().descendants() {
        let Some(list) = ast::List::cast(n) else { continue };
        let mut here = Vec::new();
        let mut others = 0;
        for item in list.items() {
            match own_module_name(&item) {
                Some(name) => {
                    let r = item.syntax().text_range();
                    here.push((usize::from(r.start())..usize::from(r.end()), name));
                }
                None => others += 1,
            }
        }
        if here.is_empty() {
            continue;
        }
        // `imports = [ self.nixosModules.x ];` goes as a whole, with its line.
        let binding = list.syntax().parent().and_then(ast::AttrpathValue::cast).filter(|apv| {
            apv.attrpath().map(|p| p.syntax().text().to_string()).as_deref() == Some("imports")
        });
        match binding {
            Some(apv) if others == 0 => {
                let r = apv.syntax().text_range();
                let (mut start, mut end) = (usize::from(r.start()), usize::from(r.end()));
                let line_start = node_text[..start].rfind('\n').map_or(0, |i| i + 1);
                if node_text[line_start..start].trim().is_empty() && node_text[end..].starts_with('\n') {
                    start = line_start;
                    end += 1;
                }
                let names = here.into_iter().map(|(_, n)| n);
                for (i, name) in names.enumerate() {
                    found.push((if i == 0 { start..end } else { start..start }, name));
                }
            }
            _ => found.extend(here),
        }
    }
    found
}

/// `X` of `self.nixosModules.X` or `inputs.self.nixosModules.X`.
fn own_module_name(item: &ast::Expr) -> Option<String> {
    let ast::Expr::Select(sel) = item else { return None };
    if sel.or_token().is_some() {
        return None;
    }
    let base = sel.expr().map(|e| e.syntax().text().to_string()).unwrap_or_default();
    let path: Vec<_> = sel.attrpath().map(|p| p.attrs().collect()).unwrap_or_default();
    let names: Vec<String> = path.iter().map(attr_name).collect::<Option<_>>()?;
    match (base.as_str(), names.iter().map(String::as_str).collect::<Vec<_>>().as_slice()) {
        ("self", ["nixosModules", name]) | ("inputs", ["self", "nixosModules", name]) => {
            Some(name.to_string())
        }
        _ => None,
    }
}

/// Relative path literals (`./x.nix`, `../y`) in `text`, with their ranges.
pub fn relative_paths(text: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let parsed = rnix::Root::parse(text);
    parsed
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == SyntaxKind::TOKEN_PATH_REL)
        .map(|t| {
            let r = t.text_range();
            (usize::from(r.start())..usize::from(r.end()), t.text().to_string())
        })
        .collect()
}

/// The free variables of a Nix expression's source (see [`free_vars`]).
pub fn free_vars_of(text: &str) -> BTreeSet<String> {
    let parsed = rnix::Root::parse(text);
    let mut out = BTreeSet::new();
    free_vars(&parsed.syntax(), &mut Vec::new(), &mut out, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tests_of(text: &str) -> Vec<TestSource> {
        let parsed = rnix::Root::parse(text);
        assert!(parsed.errors().is_empty(), "{:?}", parsed.errors());
        find_tests(&parsed.syntax(), text)
    }

    #[test]
    fn free_variables_respect_scopes() {
        let free = free_vars_of(
            "{ pkgs, ... }: let a = b; in { x = a; y = lib.id c; inherit d; z = rec { e = 1; f = e; }; }",
        );
        assert_eq!(free, BTreeSet::from(["b".into(), "lib".into(), "c".into(), "d".into()]));
        // Inside `with`, a name may come from the namespace.
        assert_eq!(free_vars_of("with pkgs; [ hello ]"), BTreeSet::from(["pkgs".into()]));
        // Attribute names and selected attributes are not variables.
        assert_eq!(free_vars_of("{ a.b = x.y.z; }"), BTreeSet::from(["x".into()]));
    }

    #[test]
    fn literal_interpolations_are_resolved_and_lines_kept() {
        let text = "let port = 80; name = \"web\"; in {\n  nodes.m = { };\n  testScript = ''\n    m.wait_for_open_port(${toString port})\n    m.succeed(\"${pkgs.x} ${\n      name}\")\n    m.succeed(\"${name}\")\n  '';\n}\n";
        let tests = tests_of(text);
        let script = tests[0].script.as_ref().unwrap();
        assert_eq!(script.first_line, 4);
        assert!(script.text.starts_with("m.wait_for_open_port(80)\n"), "{}", script.text);
        // `${pkgs.x}` stays a placeholder; a multi-line one too (it shifts lines).
        assert!(script.text.contains(&placeholder(1)), "{}", script.text);
        assert!(script.text.contains("m.succeed(\"web\")"), "{}", script.text);
        assert_eq!(script.file_line(2), 5);
        assert_eq!(script.file_line(3), 7);
    }

    #[test]
    fn the_usual_shapes_are_found() {
        for text in [
            "pkgs.testers.runNixOSTest { name = \"a\"; nodes.m = { }; testScript = \"\"; }",
            "import ./make-test-python.nix ({ pkgs, ... }: { name = \"a\"; nodes.m = { }; testScript = \"\"; })",
            "{ pkgs, lib, ... }: { name = \"a\"; machine = { }; testScript = { nodes, ... }: \"\"; }",
        ] {
            let tests = tests_of(text);
            assert_eq!(tests.len(), 1, "{text}");
            assert_eq!(tests[0].name.as_deref(), Some("a"));
            assert_eq!(tests[0].nodes.len(), 1);
            assert!(tests[0].script.is_some());
        }
    }

    #[test]
    fn own_module_imports_are_found() {
        let text = "{ imports = [ inputs.self.nixosModules.default self.nixosModules.\"x\" ./y.nix ]; }";
        let found: Vec<String> = own_module_imports(text).into_iter().map(|(_, n)| n).collect();
        assert_eq!(found, ["default", "x"]);
    }
}
