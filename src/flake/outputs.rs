//! Walking the typed AST of a flake's `outputs` to find `nixosModules`.
//!
//! This is a deliberately tiny "evaluator": it follows parentheses, `let`
//! and `rec` bindings, `//`, `import <path>` (with arguments consumed by the
//! imported file's lambdas), flake-parts' `mkFlake` and flake-utils'
//! `eachSystem` family. Everything else is reported, never guessed: a part
//! of an attribute set that cannot be read statically becomes an [`Opaque`]
//! piece, which turns into an `Unresolved` entry where it matters.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use rnix::TextRange;
use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use crate::diagnostic::{Diagnostic, Sources, Span};
use crate::flake::imports::{FileIx, Files};
use crate::flake::parse::{attr_name, ident_name, literal_path, short_text};
use crate::flake::{Module, ModuleKind, Unresolved};

/// Recursion budget: deep enough for real flakes, small enough that a cyclic
/// `let` or import chain stops quickly and the stack stays small.
const MAX_DEPTH: usize = 64;
/// Work budget of one analysis: real flakes need a few hundred steps.
const MAX_STEPS: usize = 20_000;

/// A lexical scope: names bound by `let`, `rec` or a lambda.
type Scope = Option<Rc<Frame>>;

struct Frame {
    names: HashMap<String, Slot>,
    parent: Scope,
    /// `let` and `rec`: the values see the frame's own names.
    recursive: bool,
}

enum Slot {
    /// `name = expr;` in file.
    Bound(ast::Expr, FileIx),
    /// A function argument, or a binding whose value is not rebuilt.
    Param,
}

/// What a name means.
enum Entry {
    /// A `let`/`rec` binding: its value can be followed.
    Bound(Val),
    /// A function argument: its value is unknown.
    Param,
}

fn lookup(scope: &Scope, name: &str) -> Option<Entry> {
    let mut cur = scope;
    while let Some(frame) = cur {
        match frame.names.get(name) {
            Some(Slot::Bound(expr, file)) => {
                let scope = if frame.recursive { Some(frame.clone()) } else { frame.parent.clone() };
                return Some(Entry::Bound(Val { expr: expr.clone(), file: *file, scope }));
            }
            Some(Slot::Param) => return Some(Entry::Param),
            None => cur = &frame.parent,
        }
    }
    None
}

fn push_frame(parent: &Scope, names: HashMap<String, Slot>, recursive: bool) -> Scope {
    if names.is_empty() {
        parent.clone()
    } else {
        Some(Rc::new(Frame { names, parent: parent.clone(), recursive }))
    }
}

/// An expression together with where it is and what its names mean.
#[derive(Clone)]
struct Val {
    expr: ast::Expr,
    file: FileIx,
    scope: Scope,
}

/// One attribute key.
#[derive(Clone)]
struct Key {
    /// `None` for a computed name (`${…}`).
    name: Option<String>,
    range: TextRange,
    text: String,
}

/// One `a.b.c = value;` (or `inherit a;`) read from an attribute set.
#[derive(Clone)]
struct Bind {
    keys: Vec<Key>,
    value: Result<Val, String>,
    file: FileIx,
}

/// A part of an attribute set that static analysis cannot see into.
#[derive(Clone)]
struct Opaque {
    reason: String,
    file: FileIx,
    range: TextRange,
}

/// What is known about an attribute set.
#[derive(Clone, Default)]
struct SetView {
    binds: Vec<Bind>,
    opaque: Vec<Opaque>,
}

impl SetView {
    fn opaque(val: &Val, reason: impl Into<String>) -> Self {
        SetView {
            binds: Vec::new(),
            opaque: vec![Opaque {
                reason: reason.into(),
                file: val.file,
                range: val.expr.syntax().text_range(),
            }],
        }
    }
    fn extend(&mut self, other: SetView) {
        self.binds.extend(other.binds);
        self.opaque.extend(other.opaque);
    }
}

/// Everything the walk found.
#[derive(Default)]
pub(crate) struct Found {
    pub modules: Vec<Module>,
    pub unresolved: Vec<Unresolved>,
    pub test_files: Vec<PathBuf>,
    pub diagnostics: Vec<Diagnostic>,
}

pub(crate) struct Walker<'a> {
    files: &'a mut Files,
    sources: &'a mut Sources,
    depth: usize,
    steps: usize,
    found: Found,
    /// Modules by name; later definitions win, as with `//`.
    modules: BTreeMap<String, Module>,
    /// The flake's outputs, once known: `self.<path>` reads from them.
    outputs: Option<SetView>,
}

impl<'a> Walker<'a> {
    pub fn new(files: &'a mut Files, sources: &'a mut Sources) -> Self {
        Walker {
            files,
            sources,
            depth: 0,
            steps: 0,
            found: Found::default(),
            modules: BTreeMap::new(),
            outputs: None,
        }
    }

    /// Analyzes the flake whose `flake.nix` is file `flake`.
    pub fn run(mut self, flake: FileIx) -> Found {
        self.flake(flake);
        self.check_alias_cycles();
        self.check_aliases();
        self.found.modules = std::mem::take(&mut self.modules).into_values().collect();
        self.found
            .unresolved
            .sort_by(|a, b| (&a.file, a.line, a.column, &a.what).cmp(&(&b.file, b.line, b.column, &b.what)));
        self.found
    }

    fn flake(&mut self, ix: FileIx) {
        let loaded = self.files.get(ix);
        if loaded.broken {
            // The syntax diagnostics say what to fix; results from a
            // recovered tree would be guesses.
            return;
        }
        let id = loaded.id;
        let Some(root) = loaded.root.clone() else {
            self.found.diagnostics.push(
                Diagnostic::error("flake_empty", None, format!("{} is empty", loaded.rel.display()))
                    .with_hint("a flake is an attribute set with `inputs` and `outputs`"),
            );
            return;
        };
        let root_val = Val { expr: root.clone(), file: ix, scope: None };
        let inner = self.peel(&root_val);
        let ast::Expr::AttrSet(_) = inner.expr else {
            self.found.diagnostics.push(
                Diagnostic::error(
                    "flake_not_attrset",
                    Some(Span::new(id, root.syntax().text_range())),
                    "flake.nix must be an attribute set",
                )
                .with_label("expected `{ inputs = …; outputs = …; }`")
                .with_hint(
                    "Nix reads flake.nix as `{ description = …; inputs = …; outputs = inputs: { … }; }`",
                ),
            );
            return;
        };
        let view = self.set_view(&inner);
        let outputs: Vec<Bind> = view.binds.into_iter().filter(|b| key_is(&b.keys, 0, "outputs")).collect();
        let Some(out) = outputs.last() else {
            self.found.diagnostics.push(
                Diagnostic::error(
                    "flake_no_outputs",
                    Some(Span::new(id, TextRange::empty(root.syntax().text_range().start()))),
                    "flake.nix has no `outputs`",
                )
                .with_label("this attribute set")
                .with_hint("add `outputs = { self, ... }: { nixosModules.default = ./module.nix; };`"),
            );
            return;
        };
        let body = match &out.value {
            Ok(v) if out.keys.len() == 1 => self.apply_function(v, 1),
            Ok(v) => {
                Err(format!("`outputs` is set attribute by attribute (`{}`)", short_text(v.expr.syntax())))
            }
            Err(e) => Err(e.clone()),
        };
        let outputs_view = match body {
            Ok(body) => self.set_view(&body),
            Err(reason) => {
                let key = &out.keys[0];
                self.unresolved("outputs", out.file, key.range, reason);
                return;
            }
        };
        self.outputs = Some(outputs_view.clone());
        self.outputs_of(outputs_view);
    }

    /// Reads the module and test lists out of the outputs attribute set.
    fn outputs_of(&mut self, view: SetView) {
        let modules = self.select(&view, "nixosModules");
        self.modules_from(modules);
        for b in view.binds.iter().filter(|b| key_is(&b.keys, 0, "nixosModule")) {
            let key = &b.keys[0];
            self.found.diagnostics.push(
                Diagnostic::warning(
                    "legacy_nixos_module",
                    Some(Span::new(self.files.get(b.file).id, key.range)),
                    "`nixosModule` is a deprecated flake output and is not used for tests",
                )
                .with_label("deprecated")
                .with_hint("rename it to `nixosModules.default` (Nix itself warns about `nixosModule`)"),
            );
        }
        for b in view.binds.iter().filter(|b| key_is(&b.keys, 0, "nixvmTests")) {
            self.test_list(b);
        }
    }

    fn test_list(&mut self, b: &Bind) {
        let key = &b.keys[0];
        let val = match (&b.value, b.keys.len()) {
            (Ok(v), 1) => self.whnf(v),
            (Ok(_), _) => Err("`nixvmTests` must be a list of paths, not an attribute set".to_string()),
            (Err(e), _) => Err(e.clone()),
        };
        let list = match val {
            Ok(Val { expr: ast::Expr::List(l), file, .. }) => (l, file),
            Ok(other) => {
                let reason = format!(
                    "`nixvmTests` must be a literal list of paths, found `{}`",
                    short_text(other.expr.syntax())
                );
                return self.unresolved("nixvmTests", b.file, key.range, reason);
            }
            Err(reason) => return self.unresolved("nixvmTests", b.file, key.range, reason),
        };
        let (list, file) = list;
        for item in list.items() {
            match literal_path(&item) {
                Some(lit) => {
                    let abs = self.files.resolve(file, &lit);
                    let rel = self.files.rel(&abs);
                    self.found.test_files.push(rel);
                }
                None => {
                    let reason = format!(
                        "list item `{}` is not a literal path like `./tests/vm/a.nix`",
                        short_text(item.syntax())
                    );
                    self.unresolved("nixvmTests", file, item.syntax().text_range(), reason);
                }
            }
        }
    }

    /// Records the modules of a `nixosModules` attribute set.
    fn modules_from(&mut self, view: SetView) {
        for o in &view.opaque {
            self.unresolved("nixosModules", o.file, o.range, o.reason.clone());
        }
        // Group by module name, keeping definition order.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<&Bind>> = HashMap::new();
        for b in &view.binds {
            let Some(key) = b.keys.first() else { continue };
            match &key.name {
                Some(name) => {
                    if !groups.contains_key(name) {
                        order.push(name.clone());
                    }
                    groups.entry(name.clone()).or_default().push(b);
                }
                None => {
                    let reason = format!("the module name `{}` is computed", key.text);
                    self.unresolved(&format!("nixosModules.{}", key.text), b.file, key.range, reason);
                }
            }
        }
        for name in order {
            let binds = groups.remove(&name).unwrap_or_default();
            // A whole definition (`name = …;`) wins; `name.imports = …;`
            // style definitions build an inline module.
            let whole = binds.iter().rev().find(|b| b.keys.len() == 1).copied();
            let Some(last) = whole.or_else(|| binds.last().copied()) else { continue };
            let key = &last.keys[0];
            let kind = match (whole, &last.value) {
                (Some(_), Ok(v)) => self.classify(v),
                (Some(_), Err(e)) => Err(e.clone()),
                (None, _) => Ok(ModuleKind::Inline),
            };
            let what = format!("nixosModules.{name}");
            match kind {
                Ok(kind) => {
                    self.check_source_exists(&name, &kind, last.file, key.range);
                    let (file, line, column) = self.location(last.file, key.range);
                    self.modules.insert(name.clone(), Module { name, file, line, column, kind });
                }
                Err(reason) => {
                    self.modules.remove(&name);
                    self.unresolved(&what, last.file, key.range, reason);
                }
            }
        }
    }

    /// A module file that does not exist fails only when a test imports
    /// the module; say so now, at the definition.
    fn check_source_exists(&mut self, name: &str, kind: &ModuleKind, file: FileIx, range: TextRange) {
        let (ModuleKind::Path { source }
        | ModuleKind::Import { source }
        | ModuleKind::ImportApply { source }) = kind
        else {
            return;
        };
        if self.files.root.join(source).exists() {
            return;
        }
        self.found.diagnostics.push(
            Diagnostic::warning(
                "missing_module_file",
                Some(Span::new(self.files.get(file).id, range)),
                format!("module `{name}` is `{}`, which does not exist", source.display()),
            )
            .with_label("defined here")
            .with_hint(
                "create the file or fix the path (paths are relative to the file they are written in)",
            ),
        );
    }

    /// Aliases must point to a module that exists.
    fn check_aliases(&mut self) {
        let names: Vec<String> = self.modules.keys().cloned().collect();
        let bad: Vec<(String, String)> = self
            .modules
            .values()
            .filter_map(|m| {
                m.kind
                    .alias_target()
                    .filter(|t| !names.iter().any(|n| n == t))
                    .map(|t| (m.name.clone(), t.to_string()))
            })
            .collect();
        for (name, target) in bad {
            let Some(m) = self.modules.remove(&name) else { continue };
            let similar = names
                .iter()
                .filter(|n| **n != name)
                .map(|n| (strsim::jaro_winkler(n, &target), n))
                .filter(|(s, _)| *s > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            self.found.unresolved.push(Unresolved {
                what: format!("nixosModules.{name}"),
                file: m.file,
                line: m.line,
                column: m.column,
                reason: format!("refers to `self.nixosModules.{target}`, which the flake does not define statically{similar}"),
            });
        }
    }

    /// Aliases that lead back to themselves (`a = self.nixosModules.b;
    /// b = self.nixosModules.a;`) name no module at all: Nix would fail with
    /// infinite recursion, so they are reported instead of generated.
    fn check_alias_cycles(&mut self) {
        let target_of =
            |name: &str| self.modules.get(name).and_then(|m| m.kind.alias_target()).map(str::to_string);
        let mut cyclic: Vec<(String, String)> = Vec::new();
        for start in self.modules.keys() {
            let mut chain = vec![start.clone()];
            let mut current = start.clone();
            while let Some(next) = target_of(&current) {
                if next == *start {
                    chain.push(next);
                    cyclic.push((start.clone(), chain.join(" -> ")));
                    break;
                }
                if chain.contains(&next) {
                    break;
                }
                chain.push(next.clone());
                current = next;
            }
        }
        for (name, chain) in cyclic {
            let Some(m) = self.modules.remove(&name) else { continue };
            self.found.unresolved.push(Unresolved {
                what: format!("nixosModules.{name}"),
                file: m.file,
                line: m.line,
                column: m.column,
                reason: format!(
                    "aliases form a cycle ({chain}), so no module is defined; point one of them at a module"
                ),
            });
        }
    }

    // --- module values -------------------------------------------------

    /// What kind of module a value is.
    fn classify(&mut self, val: &Val) -> Result<ModuleKind, String> {
        self.enter()?;
        let r = self.classify_inner(val);
        self.depth -= 1;
        r
    }

    fn classify_inner(&mut self, val: &Val) -> Result<ModuleKind, String> {
        let v = self.peel(val);
        match &v.expr {
            ast::Expr::AttrSet(_) | ast::Expr::Lambda(_) => Ok(ModuleKind::Inline),
            ast::Expr::PathRel(_) | ast::Expr::PathAbs(_) => {
                let source = self.path_source(&v)?;
                Ok(ModuleKind::Path { source })
            }
            ast::Expr::PathHome(_) | ast::Expr::PathSearch(_) => {
                Err(format!("`{}` depends on the machine, not on the flake", short_text(v.expr.syntax())))
            }
            ast::Expr::Apply(app) => {
                let (head, args) = flatten_apply(app);
                let name = head_name(&head);
                let first =
                    args.first().map(|a| Val { expr: a.clone(), file: v.file, scope: v.scope.clone() });
                match (name.as_deref(), first) {
                    (Some("import"), Some(arg)) if is_import_head(&head) => {
                        let source = self.path_source(&self.peel(&arg))?;
                        Ok(ModuleKind::Import { source })
                    }
                    (Some("importApply"), Some(arg)) => {
                        let source = self.path_source(&self.peel(&arg))?;
                        Ok(ModuleKind::ImportApply { source })
                    }
                    _ => Err(format!(
                        "the value is computed by a function call (`{}`)",
                        short_text(head.syntax())
                    )),
                }
            }
            ast::Expr::Select(sel) => match self_module_ref(sel, &v.scope) {
                Some(target) => Ok(ModuleKind::Alias { target }),
                None => Err(format!(
                    "refers to `{}`, which is not a module of this flake (another flake's value or a function argument)",
                    short_text(sel.syntax())
                )),
            },
            ast::Expr::Ident(i) => Err(format!(
                "refers to `{}`, which is a function argument or not bound in this file",
                ident_name(i)
            )),
            ast::Expr::BinOp(_) => {
                Err(format!("the value is computed with an operator (`{}`)", short_text(v.expr.syntax())))
            }
            ast::Expr::IfElse(_) => Err("the value is chosen by `if … then … else`".to_string()),
            _ => Err(format!(
                "`{}` is not a module (a path, an attribute set or a function)",
                short_text(v.expr.syntax())
            )),
        }
    }

    /// The module file a path literal names, relative to the flake root.
    fn path_source(&mut self, v: &Val) -> Result<PathBuf, String> {
        let Some(lit) = literal_path(&v.expr) else {
            return Err(format!("the path `{}` is computed", short_text(v.expr.syntax())));
        };
        let abs = self.files.resolve(v.file, &lit);
        Ok(self.files.rel(&Files::module_file(&abs)))
    }

    // --- attribute sets ------------------------------------------------

    /// The attributes under `name` in `view` (`name = { … }` and `name.x = …`
    /// both count). Opaque parts of `view` may hide `name` too, so they
    /// carry over.
    fn select(&mut self, view: &SetView, name: &str) -> SetView {
        let mut out = SetView { binds: Vec::new(), opaque: view.opaque.clone() };
        for b in view.binds.iter().filter(|b| key_is(&b.keys, 0, name)) {
            if b.keys.len() > 1 {
                out.binds.push(Bind { keys: b.keys[1..].to_vec(), value: b.value.clone(), file: b.file });
                continue;
            }
            match &b.value {
                Ok(v) => {
                    let sub = self.set_view(v);
                    out.extend(sub);
                }
                Err(reason) => {
                    out.opaque.push(Opaque { reason: reason.clone(), file: b.file, range: b.keys[0].range })
                }
            }
        }
        out
    }

    /// What is statically known about the attribute set `val` evaluates to.
    fn set_view(&mut self, val: &Val) -> SetView {
        if let Err(reason) = self.enter() {
            return SetView::opaque(val, reason);
        }
        let r = self.set_view_inner(val);
        self.depth -= 1;
        r
    }

    fn set_view_inner(&mut self, val: &Val) -> SetView {
        let v = match self.whnf(val) {
            Ok(v) => v,
            Err(reason) => return SetView::opaque(val, reason),
        };
        match &v.expr {
            ast::Expr::AttrSet(set) => self.attrset(set, &v),
            ast::Expr::BinOp(op) if op.operator() == Some(ast::BinOpKind::Update) => {
                let mut view = SetView::default();
                for side in [op.lhs(), op.rhs()].into_iter().flatten() {
                    let side = Val { expr: side, file: v.file, scope: v.scope.clone() };
                    let sub = self.set_view(&side);
                    view.extend(sub);
                }
                view
            }
            ast::Expr::Apply(app) => self.apply_view(app, &v),
            ast::Expr::Lambda(_) => {
                SetView::opaque(&v, "this is a function, where an attribute set is expected")
            }
            ast::Expr::Select(sel) => match (self_output_path(sel, &v.scope), self.outputs.clone()) {
                // `self.modules.nixos`: another attribute of the outputs.
                (Some(path), Some(outputs)) => {
                    path.iter().fold(outputs, |view, name| self.select(&view, name))
                }
                _ => SetView::opaque(
                    &v,
                    format!("refers to `{}`, which needs evaluation", short_text(sel.syntax())),
                ),
            },
            ast::Expr::Ident(i) => SetView::opaque(
                &v,
                format!(
                    "refers to `{}`, which is a function argument or not bound in this file",
                    ident_name(i)
                ),
            ),
            ast::Expr::IfElse(_) => SetView::opaque(&v, "the value is chosen by `if … then … else`"),
            _ => SetView::opaque(&v, format!("`{}` is not an attribute set", short_text(v.expr.syntax()))),
        }
    }

    fn attrset(&mut self, set: &ast::AttrSet, v: &Val) -> SetView {
        let mut view = SetView::default();
        // In `rec { … }` the set's own attributes are in scope.
        let scope = if set.rec_token().is_some() {
            push_frame(&v.scope, let_names(set, v.file), true)
        } else {
            v.scope.clone()
        };
        for entry in set.entries() {
            match entry {
                ast::Entry::AttrpathValue(apv) => {
                    let (Some(path), Some(value)) = (apv.attrpath(), apv.value()) else { continue };
                    let keys = keys_of(&path);
                    if keys.is_empty() {
                        continue;
                    }
                    view.binds.push(Bind {
                        keys,
                        value: Ok(Val { expr: value, file: v.file, scope: scope.clone() }),
                        file: v.file,
                    });
                }
                ast::Entry::Inherit(inh) => {
                    let from = inh.from().and_then(|f| f.expr());
                    for attr in inh.attrs() {
                        let key = key_of(&attr);
                        let Some(name) = key.name.clone() else { continue };
                        let value = match &from {
                            Some(src) => Err(format!(
                                "inherited from `{}`, which needs evaluation",
                                short_text(src.syntax())
                            )),
                            None => match lookup(&v.scope, &name) {
                                Some(Entry::Bound(val)) => Ok(val),
                                Some(Entry::Param) => {
                                    Err(format!("`inherit {name};` takes a function argument"))
                                }
                                None => {
                                    Err(format!("`inherit {name};` refers to a name not bound in this file"))
                                }
                            },
                        };
                        view.binds.push(Bind { keys: vec![key], value, file: v.file });
                    }
                }
            }
        }
        view
    }

    /// `f a b` where an attribute set is expected: flake-parts and
    /// flake-utils are understood, anything else is opaque.
    fn apply_view(&mut self, app: &ast::Apply, v: &Val) -> SetView {
        let (head, args) = flatten_apply(app);
        let name = head_name(&head).unwrap_or_default();
        let arg =
            |i: usize| args.get(i).map(|a| Val { expr: a.clone(), file: v.file, scope: v.scope.clone() });
        match name.as_str() {
            // flake-parts: `mkFlake { inherit inputs; } module`
            "mkFlake" if args.len() == 2 => match arg(1) {
                Some(module) => self.flake_parts(&module),
                None => SetView::opaque(v, "`mkFlake` without a module"),
            },
            // flake-utils: per-system outputs (`packages.<system>.…`); a
            // `nixosModules` in there would be per-system, which is wrong.
            "eachDefaultSystem" | "eachSystem" | "eachDefaultSystemMap" | "eachSystemMap" => {
                if let Some(f) =
                    args.last().map(|a| Val { expr: a.clone(), file: v.file, scope: v.scope.clone() })
                    && let Ok(body) = self.apply_function(&f, 1)
                {
                    let inner = self.set_view(&body);
                    for b in inner.binds.iter().filter(|b| key_is(&b.keys, 0, "nixosModules")) {
                        self.unresolved(
                            "nixosModules",
                            b.file,
                            b.keys[0].range,
                            format!("`nixosModules` inside `{name}` becomes `nixosModules.<system>.…`; define it next to `{name} …` with `//`"),
                        );
                    }
                }
                SetView::default()
            }
            // flake-utils: the function's result is merged as is.
            "eachDefaultSystemPassThrough" | "eachSystemPassThrough" => {
                match args.last().map(|a| Val { expr: a.clone(), file: v.file, scope: v.scope.clone() }) {
                    Some(f) => match self.apply_function(&f, 1) {
                        Ok(body) => self.set_view(&body),
                        Err(reason) => SetView::opaque(&f, reason),
                    },
                    None => SetView::opaque(v, format!("`{name}` without a function")),
                }
            }
            _ => SetView::opaque(
                v,
                format!("the value is computed by a function call (`{}`)", short_text(head.syntax())),
            ),
        }
    }

    /// The flake outputs defined by a flake-parts module (its `flake`
    /// option), following `imports = [ ./file.nix … ]`.
    fn flake_parts(&mut self, module: &Val) -> SetView {
        if let Err(reason) = self.enter() {
            return SetView::opaque(module, reason);
        }
        let r = self.flake_parts_inner(module);
        self.depth -= 1;
        r
    }

    fn flake_parts_inner(&mut self, module: &Val) -> SetView {
        // A module given as a path is that file's value.
        let peeled = self.peel(module);
        let module = match literal_path(&peeled.expr) {
            Some(lit) => match self.load_root(peeled.file, &lit) {
                Ok(root) => root,
                Err(reason) => return SetView::opaque(&peeled, reason),
            },
            None => peeled,
        };
        let module = &module;
        let body = match self.whnf(module) {
            Ok(v) if matches!(v.expr, ast::Expr::Lambda(_)) => match self.apply_function(&v, 1) {
                Ok(b) => b,
                Err(reason) => return SetView::opaque(&v, reason),
            },
            Ok(v) => v,
            Err(reason) => return SetView::opaque(module, reason),
        };
        let view = self.set_view(&body);
        let mut out = SetView { binds: Vec::new(), opaque: view.opaque.clone() };
        for b in &view.binds {
            if key_is(&b.keys, 0, "flake") {
                if b.keys.len() > 1 {
                    out.binds.push(Bind { keys: b.keys[1..].to_vec(), value: b.value.clone(), file: b.file });
                    continue;
                }
                // `flake` is a submodule: an attribute set or a function.
                let sub = match &b.value {
                    Ok(val) => match self.whnf(val) {
                        Ok(f) if matches!(f.expr, ast::Expr::Lambda(_)) => match self.apply_function(&f, 1) {
                            Ok(body) => self.set_view(&body),
                            Err(reason) => SetView::opaque(&f, reason),
                        },
                        Ok(set) => self.set_view(&set),
                        Err(reason) => SetView::opaque(val, reason),
                    },
                    Err(reason) => SetView {
                        binds: Vec::new(),
                        opaque: vec![Opaque { reason: reason.clone(), file: b.file, range: b.keys[0].range }],
                    },
                };
                out.extend(sub);
            } else if key_is(&b.keys, 0, "imports") && b.keys.len() == 1 {
                // Local flake-parts modules are followed; modules of other
                // flakes (`inputs.x.flakeModule`) cannot define our
                // `nixosModules` in a way we could see, and are skipped.
                let list = match &b.value {
                    Ok(val) => self.whnf(val),
                    Err(reason) => Err(reason.clone()),
                };
                let (items, list) = match list {
                    Ok(list) => match &list.expr {
                        ast::Expr::List(items) => (items.clone(), list),
                        _ => {
                            let reason = format!(
                                "flake-parts `imports` is computed (`{}`)",
                                short_text(list.expr.syntax())
                            );
                            out.opaque.push(Opaque { reason, file: b.file, range: b.keys[0].range });
                            continue;
                        }
                    },
                    Err(reason) => {
                        out.opaque.push(Opaque { reason, file: b.file, range: b.keys[0].range });
                        continue;
                    }
                };
                for item in items.items() {
                    let item = self.peel(&Val { expr: item, file: list.file, scope: list.scope.clone() });
                    let local = match &item.expr {
                        ast::Expr::AttrSet(_) | ast::Expr::Lambda(_) => true,
                        ast::Expr::Apply(app) => is_import_head(&flatten_apply(app).0),
                        e => literal_path(e).is_some(),
                    };
                    if local {
                        let sub = self.flake_parts(&item);
                        out.extend(sub);
                    }
                }
            }
        }
        out
    }

    // --- values --------------------------------------------------------

    /// Follows parentheses, `let … in`, `with … ;` and `let`-bound names.
    fn peel(&self, val: &Val) -> Val {
        let mut v = val.clone();
        for _ in 0..MAX_DEPTH {
            match &v.expr {
                ast::Expr::Paren(p) => match p.expr() {
                    Some(e) => v = Val { expr: e, ..v },
                    None => return v,
                },
                ast::Expr::LetIn(l) => {
                    let Some(body) = l.body() else { return v };
                    let scope = push_frame(&v.scope, let_names(l, v.file), true);
                    v = Val { expr: body, file: v.file, scope };
                }
                ast::Expr::Ident(i) => match lookup(&v.scope, &ident_name(i)) {
                    Some(Entry::Bound(b)) => v = b,
                    _ => return v,
                },
                // Lexical bindings win over `with` in Nix, so looking names
                // up in the body's scope stays right; names only `with`
                // provides stay unbound, hence unresolved.
                ast::Expr::With(w) => match w.body() {
                    Some(body) => v = Val { expr: body, ..v },
                    None => return v,
                },
                _ => return v,
            }
        }
        v
    }

    /// [`Self::peel`] plus `import <path> args…`: the imported file's value,
    /// with each argument consuming one of its lambdas.
    fn whnf(&mut self, val: &Val) -> Result<Val, String> {
        self.enter()?;
        let r = self.whnf_inner(val);
        self.depth -= 1;
        r
    }

    fn whnf_inner(&mut self, val: &Val) -> Result<Val, String> {
        let mut v = self.peel(val);
        let mut chain: Vec<FileIx> = vec![v.file];
        loop {
            let ast::Expr::Apply(app) = &v.expr else { return Ok(v) };
            let (head, args) = flatten_apply(app);
            if !is_import_head(&head) {
                return Ok(v);
            }
            let Some(first) = args.first() else { return Ok(v) };
            let target = self.peel(&Val { expr: first.clone(), file: v.file, scope: v.scope.clone() });
            let Some(lit) = literal_path(&target.expr) else {
                return Err(format!("imports a computed path (`{}`)", short_text(first.syntax())));
            };
            let imported = self.load_root(target.file, &lit)?;
            let ix = imported.file;
            if chain.contains(&ix) {
                let names: Vec<String> =
                    chain.iter().chain([&ix]).map(|f| self.files.get(*f).rel.display().to_string()).collect();
                return Err(format!("import cycle: {}", names.join(" → ")));
            }
            chain.push(ix);
            v = self.apply_function(&imported, args.len() - 1)?;
        }
    }

    /// The value of the file a path literal (written in `from`) names.
    fn load_root(&mut self, from: FileIx, lit: &str) -> Result<Val, String> {
        let abs = self.files.resolve(from, lit);
        let ix = self.files.load(&abs, self.sources).map_err(|e| e.reason())?;
        let loaded = self.files.get(ix);
        if loaded.broken {
            return Err(format!("imports `{}`, which has syntax errors", loaded.rel.display()));
        }
        let Some(root) = loaded.root.clone() else {
            return Err(format!("imports `{}`, which is empty", loaded.rel.display()));
        };
        Ok(Val { expr: root, file: ix, scope: None })
    }

    /// The body of the function `val` after `n` arguments; its parameters
    /// are bound as unknown.
    fn apply_function(&mut self, val: &Val, n: usize) -> Result<Val, String> {
        let mut v = self.peel(val);
        for _ in 0..n {
            v = self.whnf(&v)?;
            let ast::Expr::Lambda(lambda) = &v.expr else {
                return Err(format!(
                    "`{}` is called like a function but is not a lambda",
                    short_text(v.expr.syntax())
                ));
            };
            let Some(body) = lambda.body() else { return Err("the function has no body".to_string()) };
            let names = lambda.param().map(param_names).unwrap_or_default();
            v = Val { expr: body, file: v.file, scope: push_frame(&v.scope, names, false) };
            v = self.peel(&v);
        }
        Ok(v)
    }

    // --- helpers -------------------------------------------------------

    /// Counts one step of the walk; fails when nesting is too deep or the
    /// step budget is spent (`let a = b // b; b = c // c; …` doubles the
    /// work per level).
    fn enter(&mut self) -> Result<(), String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "nested more than {MAX_DEPTH} levels deep (an import cycle or a recursive binding?)"
            ));
        }
        if self.steps >= MAX_STEPS {
            return Err(format!(
                "the flake needs more than {MAX_STEPS} analysis steps; it is too complex to read statically"
            ));
        }
        self.depth += 1;
        self.steps += 1;
        Ok(())
    }

    fn location(&self, file: FileIx, range: TextRange) -> (PathBuf, usize, usize) {
        let loaded = self.files.get(file);
        let (line, column) = self.sources.line_col(loaded.id, range.start().into());
        (loaded.rel.clone(), line, column)
    }

    fn unresolved(&mut self, what: &str, file: FileIx, range: TextRange, reason: String) {
        let (file, line, column) = self.location(file, range);
        let u = Unresolved { what: what.to_string(), file, line, column, reason };
        if !self.found.unresolved.contains(&u) {
            self.found.unresolved.push(u);
        }
    }
}

/// Single-name bindings of a `let` or `rec` set. `inherit a;` is skipped
/// (it names the outer `a` anyway); `a.b = …;` binds `a` to an unknown value.
fn let_names(node: &impl HasEntry, file: FileIx) -> HashMap<String, Slot> {
    let mut names = HashMap::new();
    for apv in node.attrpath_values() {
        let (Some(path), Some(value)) = (apv.attrpath(), apv.value()) else { continue };
        let keys = keys_of(&path);
        match keys.as_slice() {
            [k] => {
                if let Some(name) = &k.name {
                    names.insert(name.clone(), Slot::Bound(value, file));
                }
            }
            [k, ..] => {
                if let Some(name) = &k.name {
                    names.insert(name.clone(), Slot::Param);
                }
            }
            [] => {}
        }
    }
    names
}

fn key_is(keys: &[Key], i: usize, name: &str) -> bool {
    keys.get(i).and_then(|k| k.name.as_deref()) == Some(name)
}

fn key_of(attr: &ast::Attr) -> Key {
    Key { name: attr_name(attr), range: attr.syntax().text_range(), text: short_text(attr.syntax()) }
}

fn keys_of(path: &ast::Attrpath) -> Vec<Key> {
    path.attrs().map(|a| key_of(&a)).collect()
}

/// Names bound by a lambda's parameter (`x:` or `{ a, b, ... }@x:`).
fn param_names(param: ast::Param) -> HashMap<String, Slot> {
    let mut names = HashMap::new();
    match param {
        ast::Param::IdentParam(p) => {
            if let Some(i) = p.ident() {
                names.insert(ident_name(&i), Slot::Param);
            }
        }
        ast::Param::Pattern(p) => {
            for e in p.pat_entries() {
                if let Some(i) = e.ident() {
                    names.insert(ident_name(&i), Slot::Param);
                }
            }
            if let Some(i) = p.pat_bind().and_then(|b| b.ident()) {
                names.insert(ident_name(&i), Slot::Param);
            }
        }
    }
    names
}

/// `f a b` → (`f`, [`a`, `b`]).
fn flatten_apply(app: &ast::Apply) -> (ast::Expr, Vec<ast::Expr>) {
    let mut args = Vec::new();
    let mut cur = ast::Expr::Apply(app.clone());
    while let ast::Expr::Apply(a) = &cur {
        let (Some(f), Some(x)) = (a.lambda(), a.argument()) else { break };
        args.push(x);
        cur = f;
    }
    while let ast::Expr::Paren(p) = &cur {
        match p.expr() {
            Some(e) => cur = e,
            None => break,
        }
    }
    args.reverse();
    (cur, args)
}

/// The function's name: `f` for `f`, `c` for `a.b.c`.
fn head_name(head: &ast::Expr) -> Option<String> {
    match head {
        ast::Expr::Ident(i) => Some(ident_name(i)),
        ast::Expr::Select(s) => s.attrpath()?.attrs().last().and_then(|a| attr_name(&a)),
        _ => None,
    }
}

/// `import` or `builtins.import`.
fn is_import_head(head: &ast::Expr) -> bool {
    match head {
        ast::Expr::Ident(i) => ident_name(i) == "import",
        ast::Expr::Select(s) => {
            matches!(s.expr(), Some(ast::Expr::Ident(i)) if ident_name(&i) == "builtins")
                && s.attrpath().is_some_and(|p| {
                    let names: Vec<_> = p.attrs().map(|a| attr_name(&a)).collect();
                    names == [Some("import".to_string())]
                })
        }
        _ => false,
    }
}

/// `self.a.b`, `inputs.self.a.b` and flake-parts' `config.flake.a.b` →
/// `[a, b]`: a path into the flake's own outputs.
fn self_output_path(sel: &ast::Select, scope: &Scope) -> Option<Vec<String>> {
    if sel.default_expr().is_some() {
        return None;
    }
    let ast::Expr::Ident(root) = sel.expr()? else { return None };
    let root = ident_name(&root);
    let binding = lookup(scope, &root);
    // A `let`-bound `self` is somebody's value, not the flake.
    if matches!(binding, Some(Entry::Bound(_))) {
        return None;
    }
    let names: Vec<String> = sel.attrpath()?.attrs().map(|a| attr_name(&a)).collect::<Option<_>>()?;
    let skip = match (root.as_str(), names.first().map(String::as_str)) {
        ("self", _) => 0,
        (_, Some("self")) if root == "inputs" || matches!(binding, Some(Entry::Param)) => 1,
        ("config", Some("flake")) => 1,
        _ => return None,
    };
    let path = names[skip..].to_vec();
    (!path.is_empty()).then_some(path)
}

/// `self.nixosModules.X`, `inputs.self.nixosModules.X` and flake-parts'
/// `config.flake.nixosModules.X` → `X`.
fn self_module_ref(sel: &ast::Select, scope: &Scope) -> Option<String> {
    match self_output_path(sel, scope)?.as_slice() {
        [modules, x] if modules == "nixosModules" => Some(x.clone()),
        _ => None,
    }
}
